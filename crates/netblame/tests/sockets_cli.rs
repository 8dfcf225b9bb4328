//! `netblame sockets` end to end: real loopback connections held by this test process, the real
//! binary, its JSON and text output, and bad input.

use netblame_testkit::schema::assert_valid;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn netblame(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run netblame")
}

fn pair(listen: &str) -> (TcpListener, TcpStream, TcpStream, u16) {
    let l = TcpListener::bind(listen).unwrap();
    let port = l.local_addr().unwrap().port();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (l, c, s, port)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_valid("sockets", &v);
    v
}

#[test]
fn once_json_lists_both_ends_owned_by_this_process() {
    let (_l, _c, _s, port) = pair("127.0.0.1:0");
    let p = port.to_string();
    let doc = json(&netblame(&[
        "sockets",
        "--once",
        "--json",
        "--state",
        "established",
        "--port",
        &p,
    ]));
    let conns = doc["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{doc:#}");
    let me = std::process::id() as u64;
    for c in conns {
        assert_eq!(c["state"], "established");
        assert!(c["tcp_info"]["rtt_us"].is_u64());
        assert!(c["skmem"]["rcvbuf_bytes"].as_u64().unwrap() > 0);
        assert!(c["recv_q_bytes"].is_u64());
        assert_eq!(c["owners"][0]["pid"].as_u64(), Some(me), "{c:#}");
    }
    assert!(doc["interval_us"].is_null(), "--once has no interval");
    assert_eq!(doc["stats"]["sockets"], 2);
}

#[test]
fn ipv6_is_listed_and_pid_filter_applies() {
    let (_l, _c, _s, port) = pair("[::1]:0");
    let p = port.to_string();
    let me = std::process::id().to_string();
    let doc = json(&netblame(&[
        "sockets",
        "--once",
        "--json",
        "--state",
        "established",
        "--port",
        &p,
        "--pid",
        &me,
        "--peer",
        "::1",
    ]));
    let conns = doc["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{doc:#}");
    assert!(conns
        .iter()
        .all(|c| c["local"].as_str().unwrap().starts_with("[::1]")));
    let none = json(&netblame(&[
        "sockets",
        "--once",
        "--json",
        "--state",
        "established",
        "--port",
        &p,
        "--pid",
        "1",
    ]));
    assert_eq!(none["connections"].as_array().unwrap().len(), 0);
}

#[test]
fn stalled_receiver_is_a_problem_with_evidence() {
    let (_l, mut client, _server_never_reads, port) = pair("127.0.0.1:0");
    client
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let buf = vec![1u8; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                let _ = client.write(&buf);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let p = port.to_string();
    let doc = json(&netblame(&[
        "sockets",
        "--interval",
        "500ms",
        "--problems",
        "--json",
        "--state",
        "established",
        "--port",
        &p,
    ]));
    let text = netblame(&[
        "sockets",
        "--interval",
        "300ms",
        "--explain",
        "--state",
        "established",
        "--port",
        &p,
    ]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    assert!(doc["interval_us"].as_u64().unwrap() >= 500_000);
    let conns = doc["connections"].as_array().unwrap();
    let ids: Vec<&str> = conns
        .iter()
        .flat_map(|c| c["verdict"]["findings"].as_array().unwrap())
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"receiver-zero-window"), "{ids:?}");
    assert!(ids.contains(&"receiver-window-limited"), "{ids:?}");
    // Problems come first and every listed connection is one.
    for c in conns {
        assert!(!c["verdict"]["findings"].as_array().unwrap().is_empty());
    }
    let sender = conns
        .iter()
        .find(|c| c["peer"].as_str().unwrap().ends_with(&format!(":{port}")))
        .unwrap();
    assert_eq!(sender["verdict"]["limit"], "rwnd");

    let out = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success());
    assert!(out.contains("receiver-zero-window"), "{out}");
    assert!(out.contains("evidence:") && out.contains("fix:"), "{out}");
    assert!(
        out.contains(&format!("[{}]", std::process::id())),
        "names the process: {out}"
    );
}

#[test]
fn idle_connection_is_not_a_problem() {
    let (_l, _c, _s, port) = pair("127.0.0.1:0");
    let p = port.to_string();
    let doc = json(&netblame(&[
        "sockets",
        "--interval",
        "300ms",
        "--json",
        "--state",
        "established",
        "--port",
        &p,
    ]));
    let conns = doc["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    for c in conns {
        assert_eq!(c["verdict"]["limit"], "app");
        assert!(
            c["verdict"]["findings"].as_array().unwrap().is_empty(),
            "{c:#}"
        );
    }
    let problems = json(&netblame(&[
        "sockets",
        "--interval",
        "300ms",
        "--json",
        "--problems",
        "--port",
        &p,
    ]));
    assert!(problems["connections"].as_array().unwrap().is_empty());
}

#[test]
fn watch_prints_json_lines() {
    let (_l, _c, _s, port) = pair("127.0.0.1:0");
    let p = port.to_string();
    let out = netblame(&[
        "sockets",
        "--watch",
        "0.2",
        "--count",
        "2",
        "--json",
        "--state",
        "established",
        "--port",
        &p,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_valid("sockets", &v);
        assert!(v["interval_us"].as_u64().unwrap() >= 200_000);
        assert_eq!(v["connections"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn bad_input_is_a_usage_error() {
    for args in [
        &["sockets", "--state", "bogus"][..],
        &["sockets", "--peer", "not-an-address"],
        &["sockets", "--once", "--watch"],
        &["sockets", "--port", "70000"],
        &["sockets", "--interval", "fast"],
        &["sockets", "--no-processes", "--pid", "1"],
    ] {
        let out = netblame(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let out = netblame(&["sockets", "--interval", "0s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval"));
}

#[test]
fn unprivileged_run_says_what_it_could_not_map() {
    if !netblame_testkit::require_root("unprivileged_run_says_what_it_could_not_map") {
        return;
    }
    let (_l, _c, _s, port) = pair("127.0.0.1:0");
    let p = port.to_string();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_netblame"))
        .args([
            "sockets",
            "--once",
            "--json",
            "--state",
            "established",
            "--port",
            &p,
        ])
        .output()
        .expect("setpriv");
    let doc = json(&out);
    let conns = doc["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "a user sees every socket");
    assert!(conns
        .iter()
        .all(|c| c["owners"].as_array().unwrap().is_empty()));
    let lims = doc["limitations"].as_array().unwrap();
    assert_eq!(lims.len(), 1, "{doc:#}");
    assert!(
        lims[0].as_str().unwrap().contains("other users"),
        "{lims:?}"
    );
    assert_eq!(doc["stats"]["unmapped_sockets"], 2);
}
