//! `netblame trace` end to end: the plain line and exit code 4 without root or BTF, and a real
//! trace of a lossy lab link (`netblame lab up trace-... --loss 5%`) kept to the lab's client
//! namespace with `--netns`.

use netblame_testkit::schema::{assert_valid, assert_valid_lines};
use netblame_testkit::{is_root, require_root, unique_name};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_netblame");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn netblame(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run netblame")
}

#[test]
fn without_root_one_line_and_exit_4() {
    // As root, drop to nobody for this one run; without root, run as we are.
    let o = if is_root() {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(["trace", "--duration", "1s"])
            .output()
            .expect("setpriv")
    } else {
        netblame(&["trace", "--duration", "1s"])
    };
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tracing needs root"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn without_btf_one_line_and_exit_4() {
    if !require_root("without_btf_one_line_and_exit_4") {
        return;
    }
    let o = Command::new(BIN)
        .args(["trace", "--duration", "1s"])
        .env("NETBLAME_BTF", "/nonexistent/vmlinux")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no BTF"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_netns_is_a_clear_error() {
    let o = netblame(&["trace", "--netns", "trace-no-such-ns", "--duration", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--netns trace-no-such-ns"),
        "{}",
        text(&o)
    );
}

struct Lab(String);
impl Drop for Lab {
    fn drop(&mut self) {
        let _ = netblame(&["lab", "down", &self.0]);
    }
}

/// A 3 s bench transfer from the lab's client to its server (a netblame server, one test).
fn transfer_through(name: &str) {
    let mut server = Command::new(BIN)
        .args([
            "lab",
            "exec",
            name,
            "server",
            "--",
            BIN,
            "bench",
            "server",
            "--one-off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let c = Command::new(BIN)
        .args([
            "lab",
            "exec",
            name,
            "client",
            "--",
            "sh",
            "-c",
            &format!("{BIN} bench client $NETBLAME_PEER -t 3 -J"),
        ])
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", text(&c));
    let _ = server.wait();
}

#[test]
fn lossy_lab_link_shows_retransmits_to_the_peer() {
    if !require_root("lossy_lab_link_shows_retransmits_to_the_peer") {
        return;
    }
    let name = unique_name("trace-x");
    let o = netblame(&[
        "lab",
        "up",
        &name,
        "--rtt",
        "10ms",
        "--rate",
        "200mbit",
        "--loss",
        "5%",
        "--client-sysctl",
        "net.ipv4.tcp_rmem=4096 131072 2097152",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let _lab = Lab(name.clone());
    let client_ns = format!("nbl-{name}-c");
    let trace = Command::new(BIN)
        .args(["trace", "--duration", "7s", "--json", "--netns", &client_ns])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    transfer_through(&name);
    let out = trace.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines = assert_valid_lines("trace", &String::from_utf8_lossy(&out.stdout));
    let rtx: Vec<_> = lines
        .iter()
        .filter(|v| v["event"] == "retransmit")
        .collect();
    assert!(rtx.len() >= 10, "{} retransmits", rtx.len());
    assert!(rtx.iter().all(|v| v["conn"]["dst"] == "198.19.0.1"));
    assert!(
        rtx.iter().any(|v| v["owner"]["pid"].as_u64().is_some()),
        "{:?}",
        rtx[0]
    );
    let last = lines.last().unwrap();
    assert_eq!(last["filtered"], true);
    let findings = last["findings"].as_array().unwrap();
    let f = findings
        .iter()
        .find(|f| f["id"] == "retransmits-concentrated")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert_eq!(f["subject"], "198.19.0.1");
    assert!(last["summary"]["connects"].as_array().unwrap().len() >= 2);
    // The limits are the traced namespace's, not the host's.
    assert_eq!(last["summary"]["limits"]["tcp_rmem"][2], 2097152);
}

/// `doctor --trace`: the kernel's own evidence joins the one verdict (retransmits to one peer
/// over a lossy lab link, traced host-wide while doctor watches).
#[test]
fn doctor_trace_adds_kernel_evidence_to_the_verdict() {
    if !require_root("doctor_trace_adds_kernel_evidence_to_the_verdict") {
        return;
    }
    let name = unique_name("trace-d");
    let o = netblame(&[
        "lab", "up", &name, "--rtt", "10ms", "--rate", "200mbit", "--loss", "5%",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let _lab = Lab(name.clone());
    let doctor = Command::new(BIN)
        .args(["doctor", "--trace", "--duration", "6s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    transfer_through(&name);
    let out = doctor.wait_with_output().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_valid("doctor", &v);
    assert!(
        v["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["section"] != "trace"),
        "tracing ran: {}",
        v["skipped"]
    );
    let findings = v["findings"].as_array().unwrap();
    let f = findings
        .iter()
        .find(|f| f["id"] == "retransmits-concentrated")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert_eq!(f["subject"], "198.19.0.1");
}

/// `probe --trace`: each of the largest spikes comes with the kernel events while it was in
/// flight, and the trace's summary rides along in JSON.
#[test]
fn probe_trace_puts_spikes_beside_kernel_events() {
    if !require_root("probe_trace_puts_spikes_beside_kernel_events") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut responder = Command::new(BIN)
        .args(["probe", "serve", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let o = netblame(&[
        "probe",
        "--kind",
        "rr",
        "--count",
        "30",
        "--interval",
        "20ms",
        "--spikes",
        "3",
        "--trace",
        "--json",
        &addr,
    ]);
    let _ = responder.kill();
    let _ = responder.wait();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("probe", &v);
    let near = v["spikes_with_kernel_events"]
        .as_array()
        .expect("spikes with kernel events");
    assert_eq!(near.len(), 3, "{near:?}");
    for s in near {
        assert!(s["latency_us"].as_u64().unwrap() > 0);
        assert!(s["kernel_events"].is_array());
    }
    assert!(v["trace"]["net_rx"].is_array(), "{}", v["trace"]);
}
