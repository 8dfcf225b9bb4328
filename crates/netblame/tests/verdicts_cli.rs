//! Verdicts a user meets every day that used to point at the wrong culprit: a buffer request
//! a plain `iperf3 -s` ignores, and a probe target that does not speak the probe's protocol.

use netblame_testkit::schema::assert_valid;
use serde_json::Value;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_netblame");

/// A child killed on drop.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn finding<'a>(v: &'a Value, id: &str) -> Option<&'a Value> {
    v.as_array()?.iter().find(|f| f["id"] == id)
}

#[test]
fn rcvbuf_against_a_plain_iperf3_server_is_said_loudly() {
    let port = free_port().to_string();
    let _srv = Killed(
        Command::new("iperf3")
            .args(["-s", "-1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 (apt-get install iperf3)"),
    );
    std::thread::sleep(Duration::from_millis(500));
    // The client sends: the receive-only buffer belongs to the server, which ignores it.
    let o = Command::new(BIN)
        .args([
            "bench",
            "client",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "1",
            "--rcvbuf",
            "64k",
            "-J",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = finding(&v["netblame"]["findings"], "buffer-request-ignored")
        .unwrap_or_else(|| panic!("{}", v["netblame"]["findings"]));
    assert_eq!(f["severity"], "warning");
    assert!(f["summary"].as_str().unwrap().contains("SO_RCVBUF"), "{f}");
    // The same test as text says it too.
    let port2 = free_port().to_string();
    let _srv2 = Killed(
        Command::new("iperf3")
            .args(["-s", "-1", "-p", &port2])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let o = Command::new(BIN)
        .args([
            "bench",
            "client",
            "127.0.0.1",
            "-p",
            &port2,
            "-t",
            "1",
            "--rcvbuf",
            "64k",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("buffer-request-ignored"), "{text}");
}

#[test]
fn a_target_that_does_not_speak_the_protocol_is_not_network_loss() {
    // A listener that accepts and never answers (as a web server waits for a request line).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    let o = Command::new(BIN)
        .args([
            "probe",
            "--kind",
            "rr",
            "--count",
            "4",
            "--interval",
            "100ms",
            "--timeout",
            "500ms",
            "--json",
            &addr,
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_valid("probe", &v);
    let f = finding(&v["findings"], "probe-protocol-mismatch")
        .unwrap_or_else(|| panic!("{}", v["findings"]));
    assert_eq!(f["layer"], "application");
    assert!(
        finding(&v["findings"], "probe-loss").is_none(),
        "not loss: {}",
        v["findings"]
    );
}
