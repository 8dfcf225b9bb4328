//! Interop with the real iperf3 (3.12) on loopback: netblame's client against `iperf3 -s`, and
//! `iperf3 -c` against netblame's server. Byte counts of both ends agree within one interval.

mod common;

use common::*;
use netblame_bench::config::{ClientConfig, TestParams};
use netblame_bench::run_client;
use netblame_bench::server::ServerConfig;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn client_cfg(port: u16, params: TestParams) -> ClientConfig {
    ClientConfig {
        host: "127.0.0.1".into(),
        port,
        params,
        interval: Duration::from_millis(500),
        ..ClientConfig::default()
    }
}

fn two_seconds() -> TestParams {
    TestParams {
        time_s: 2,
        ..TestParams::default()
    }
}

/// netblame client -> iperf3 -s: both ends' per-stream byte counts agree.
fn against_iperf3_server(params: TestParams) {
    let (_iperf, port) = iperf3_server();
    let want_streams = params.total_streams();
    let mut lines = 0;
    let out = run_client(&client_cfg(port, params.clone()), &mut |_| lines += 1)
        .expect("test against iperf3 -s");
    assert!(lines >= 2, "live intervals: {lines}");
    assert_eq!(out.totals.len(), want_streams);
    assert!(out.server.is_none(), "iperf3 sends no netblame extension");
    let tol = max_interval_bytes(&out.intervals);
    for t in &out.totals {
        let srv = t.server_bytes.expect("iperf3 reported the stream");
        assert!(t.client_bytes > 0 && srv > 0, "{t:?}");
        assert!(
            t.client_bytes.abs_diff(srv) <= tol,
            "stream {}: client {} vs server {} (tolerance {tol})",
            t.id,
            t.client_bytes,
            srv
        );
    }
    if params.bidir {
        assert!(
            out.totals.iter().any(|t| t.client_sends) && out.totals.iter().any(|t| !t.client_sends)
        );
    }
}

#[test]
fn client_to_iperf3_single() {
    against_iperf3_server(two_seconds());
}

#[test]
fn client_to_iperf3_parallel() {
    against_iperf3_server(TestParams {
        parallel: 2,
        ..two_seconds()
    });
}

#[test]
fn client_to_iperf3_reverse() {
    against_iperf3_server(TestParams {
        reverse: true,
        ..two_seconds()
    });
}

#[test]
fn client_to_iperf3_bidir() {
    against_iperf3_server(TestParams {
        bidir: true,
        ..two_seconds()
    });
}

#[test]
fn client_to_iperf3_window() {
    let (_iperf, port) = iperf3_server();
    let p = TestParams {
        window: Some(256 << 10),
        ..two_seconds()
    };
    let out = run_client(&client_cfg(port, p), &mut |_| {}).unwrap();
    let b = out.streams[0].buffers;
    assert_eq!(b.requested_rcvbuf_bytes, Some(256 << 10));
    assert_eq!(b.requested_sndbuf_bytes, Some(256 << 10));
    assert!(b.actual_rcvbuf_bytes > 0 && b.actual_sndbuf_bytes > 0);
    let t = out.totals[0];
    assert!(t.client_bytes.abs_diff(t.server_bytes.unwrap()) <= max_interval_bytes(&out.intervals));
}

/// iperf3 -c -> netblame server: iperf3's sum_sent / sum_received and the server's own counts.
fn iperf3_client(extra: &[&str]) -> (Value, Box<netblame_bench::server::SessionReport>) {
    let srv = nb_server(ServerConfig::default());
    let port = srv.addr.port().to_string();
    let mut args = vec!["-c", "127.0.0.1", "-p", &port, "-t", "2", "-J", "-i", "0.5"];
    args.extend_from_slice(extra);
    let out = Command::new("iperf3")
        .args(&args)
        .output()
        .expect("iperf3 runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("iperf3 -J output: {e}: {text}"));
    assert!(
        out.status.success() && v.get("error").is_none(),
        "iperf3 failed: {} {}",
        v.get("error").cloned().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = srv.finished(30);
    (v, report)
}

fn check_sums(
    v: &Value,
    report: &netblame_bench::server::SessionReport,
    sent_key: &str,
    recv_key: &str,
) {
    let sent = v["end"][sent_key]["bytes"].as_u64().unwrap();
    let recvd = v["end"][recv_key]["bytes"].as_u64().unwrap();
    let tol = v["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|iv| {
            iv["sum"]["bytes"].as_u64().unwrap_or(0)
                + iv["sum_bidir_reverse"]["bytes"].as_u64().unwrap_or(0)
        })
        .max()
        .unwrap()
        .max(max_interval_bytes(&report.intervals));
    assert!(sent > 0 && recvd > 0, "{sent} {recvd}");
    assert!(
        sent.abs_diff(recvd) <= tol,
        "{sent_key} {sent} vs {recv_key} {recvd} (tolerance {tol})"
    );
    // Per stream, by id: what iperf3 reported in its results against the server's own count.
    for s in &report.streams {
        let theirs = s.client_bytes.expect("iperf3 reported every stream");
        assert!(
            theirs.abs_diff(s.server_bytes) <= tol,
            "stream {}: iperf3 {theirs} vs server {}",
            s.id,
            s.server_bytes
        );
    }
}

#[test]
fn iperf3_to_server_single() {
    let (v, r) = iperf3_client(&[]);
    check_sums(&v, &r, "sum_sent", "sum_received");
    assert_eq!(r.streams.len(), 1);
    assert!(!r.peer_is_netblame);
    // The server's own count of the one stream matches iperf3's receiver figure.
    let recvd = v["end"]["sum_received"]["bytes"].as_u64().unwrap();
    assert_eq!(r.streams[0].server_bytes, recvd);
}

#[test]
fn iperf3_to_server_parallel() {
    let (v, r) = iperf3_client(&["-P", "2"]);
    check_sums(&v, &r, "sum_sent", "sum_received");
    assert_eq!(r.streams.len(), 2);
    assert_eq!(v["end"]["streams"].as_array().unwrap().len(), 2);
}

#[test]
fn iperf3_to_server_reverse() {
    let (v, r) = iperf3_client(&["-R"]);
    check_sums(&v, &r, "sum_sent", "sum_received");
    assert!(r.streams[0].server_sends);
    // The server was the sender: its samples carry the kernel's stopwatches.
    assert!(r
        .intervals
        .iter()
        .flat_map(|i| &i.streams)
        .any(|s| s.sender && s.busy_us.is_some()));
}

#[test]
fn iperf3_to_server_bidir() {
    let (v, r) = iperf3_client(&["--bidir"]);
    check_sums(&v, &r, "sum_sent", "sum_received");
    check_sums(
        &v,
        &r,
        "sum_sent_bidir_reverse",
        "sum_received_bidir_reverse",
    );
    assert_eq!(r.streams.iter().filter(|s| s.server_sends).count(), 1);
    assert_eq!(r.streams.len(), 2);
}

#[test]
fn iperf3_to_server_window() {
    let (v, r) = iperf3_client(&["-w", "256K"]);
    check_sums(&v, &r, "sum_sent", "sum_received");
    let b = r.streams[0].buffers;
    assert_eq!(b.requested_rcvbuf_bytes, Some(256 << 10));
    assert!(b.actual_rcvbuf_bytes >= 256 << 10);
}

#[test]
fn netblame_to_netblame_carries_server_samples() {
    let srv = nb_server(ServerConfig::default());
    let p = TestParams {
        reverse: true,
        parallel: 2,
        ..two_seconds()
    };
    let out = run_client(&client_cfg(srv.addr.port(), p), &mut |_| {}).unwrap();
    let ext = out.server.as_ref().expect("netblame server extension");
    assert!(!ext.intervals.is_empty());
    assert_eq!(ext.buffers.len(), 2);
    // The server sent, so its samples carry sender tcp_info.
    assert!(ext
        .intervals
        .iter()
        .flat_map(|i| &i.streams)
        .any(|s| s.sender && s.rtt_us > 0));
    let tol = max_interval_bytes(&out.intervals);
    for t in &out.totals {
        assert!(
            t.client_bytes.abs_diff(t.server_bytes.unwrap()) <= tol,
            "{t:?}"
        );
    }
    let _ = srv.finished(30);
}
