//! iperf3's `-b` (target rate, paced with SO_MAX_PACING_RATE) and `-4`/`-6`, against the real
//! iperf3 3.12 and netblame's own server: the rate holds within 5% over five seconds in both
//! roles on loopback and across a 1500-byte-MTU veth between two namespaces, and IPv6 tests run
//! both ways on ::1.

mod common;

use common::*;
use netblame_bench::config::{ClientConfig, Family, TestParams};
use netblame_bench::run_client;
use netblame_bench::server::ServerConfig;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const RATE: u64 = 100_000_000;

fn within_5_percent(what: &str, bits_per_second: f64) {
    let off = (bits_per_second - RATE as f64).abs() / RATE as f64;
    assert!(
        off <= 0.05,
        "{what}: {:.2} Mbit/s is {:.1}% off the asked 100 Mbit/s",
        bits_per_second / 1e6,
        off * 100.0
    );
}

/// `-b 100m` from netblame's client to netblame's server: five seconds at 100 Mbit/s, counted
/// at both ends.
#[test]
fn bitrate_holds_from_the_client() {
    let srv = nb_server(ServerConfig::default());
    let cfg = ClientConfig {
        host: "127.0.0.1".into(),
        port: srv.addr.port(),
        params: TestParams {
            time_s: 5,
            bandwidth: RATE,
            ..TestParams::default()
        },
        ..ClientConfig::default()
    };
    let out = run_client(&cfg, &mut |_| {}).expect("test");
    let t = &out.totals[0];
    within_5_percent("client sent", t.client_bytes as f64 * 8.0 / out.seconds);
    within_5_percent(
        "server received",
        t.server_bytes.unwrap() as f64 * 8.0 / out.seconds,
    );
}

/// `-b 100m` across a veth (MTU 1500, where headers are 3-5% of each packet) from a client in
/// one namespace to the real `iperf3 -s` in another.
#[test]
fn bitrate_holds_across_a_veth_to_iperf3() {
    if !netblame_testkit::require_root("bitrate_holds_across_a_veth_to_iperf3") {
        return;
    }
    let a = netblame_testkit::Netns::new("nbba");
    let b = netblame_testkit::Netns::new("nbbb");
    let (va, vb) = (
        netblame_testkit::unique_name("nbva"),
        netblame_testkit::unique_name("nbvb"),
    );
    netblame_testkit::run_ok(&[
        "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
    ]);
    netblame_testkit::run_ok(&["ip", "link", "set", &va, "netns", a.name()]);
    netblame_testkit::run_ok(&["ip", "link", "set", &vb, "netns", b.name()]);
    a.exec(&["ip", "addr", "add", "10.201.0.1/24", "dev", &va]);
    b.exec(&["ip", "addr", "add", "10.201.0.2/24", "dev", &vb]);
    a.exec(&["ip", "link", "set", &va, "up"]);
    b.exec(&["ip", "link", "set", &vb, "up"]);
    let _iperf = Iperf3(a.spawn(&["iperf3", "-s", "-1", "-B", "10.201.0.1", "-p", "5201"]));
    // Wait until it listens, without a connection that would use up its one test.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a.exec(&["ss", "-Hltn", "sport = :5201"]).trim().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "iperf3 -s did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = b.run(|| {
        let cfg = ClientConfig {
            host: "10.201.0.1".into(),
            port: 5201,
            params: TestParams {
                time_s: 5,
                bandwidth: RATE,
                ..TestParams::default()
            },
            ..ClientConfig::default()
        };
        run_client(&cfg, &mut |_| {})
    });
    let out = out.expect("test against iperf3 -s in the other namespace");
    let t = &out.totals[0];
    within_5_percent("client sent", t.client_bytes as f64 * 8.0 / out.seconds);
    within_5_percent(
        "iperf3 received",
        t.server_bytes.unwrap() as f64 * 8.0 / out.seconds,
    );
}

/// The real `iperf3 -c -R -b 100M` asks netblame's server (the sender) for the rate over the
/// wire (`bandwidth`); iperf3 measures what arrives.
#[test]
fn bitrate_asked_by_iperf3_holds_on_the_netblame_server() {
    let srv = nb_server(ServerConfig::default());
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &srv.addr.port().to_string()])
        .args(["-R", "-b", "100M", "-t", "5", "-J"])
        .output()
        .expect("iperf3 is installed");
    let j: Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J output");
    assert!(out.status.success(), "{j}");
    let got = j["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    within_5_percent("iperf3 received", got);
    let report = srv.finished(10);
    assert_eq!(report.params["bandwidth"], 100_000_000);
}

/// netblame's client with -6 against the real `iperf3 -s -6` on ::1.
#[test]
fn ipv6_client_against_iperf3_server() {
    let (_iperf, port) = iperf3_server_with(&["-6", "-B", "::1"]);
    let cfg = ClientConfig {
        host: "::1".into(),
        port,
        params: TestParams {
            time_s: 2,
            ..TestParams::default()
        },
        interval: Duration::from_millis(500),
        family: Family::V6,
        ..ClientConfig::default()
    };
    let out = run_client(&cfg, &mut |_| {}).expect("test against iperf3 -s -6");
    assert!(
        out.control_remote.starts_with("[::1]:"),
        "{}",
        out.control_remote
    );
    assert!(out.streams.iter().all(|s| s.remote.starts_with("[::1]:")));
    let tol = max_interval_bytes(&out.intervals);
    let t = &out.totals[0];
    let srv = t.server_bytes.expect("iperf3 reported the stream");
    assert!(
        t.client_bytes > 0 && t.client_bytes.abs_diff(srv) <= tol,
        "{t:?}"
    );

    // -4 finds no IPv4 address in ::1.
    let err = run_client(
        &ClientConfig {
            family: Family::V4,
            ..cfg
        },
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no IPv4 address"), "{err}");
}

/// The real `iperf3 -c ::1 -6` against netblame's server on ::1; and an IPv4 client on a
/// dual-stack server shows up as plain IPv4.
#[test]
fn iperf3_client_over_ipv6_against_netblame_server() {
    let srv = nb_server_at(ServerConfig {
        bind: "[::1]:0".parse().unwrap(),
        v6_only: true,
        ..ServerConfig::default()
    });
    let out = Command::new("iperf3")
        .args(["-c", "::1", "-6", "-p", &srv.addr.port().to_string()])
        .args(["-t", "2", "-J"])
        .output()
        .expect("iperf3 is installed");
    let j: Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J output");
    assert!(out.status.success(), "{j}");
    assert_eq!(j["start"]["connected"][0]["remote_host"], "::1");
    let sent = j["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    let report = srv.finished(10);
    assert!(report.peer.starts_with("[::1]:"), "{}", report.peer);
    let got: u64 = report.streams.iter().map(|s| s.server_bytes).sum();
    let tol = max_interval_bytes(&report.intervals);
    assert!(
        sent > 0 && sent.abs_diff(got) <= tol,
        "iperf3 sent {sent}, netblame got {got}"
    );
    drop(srv);

    let srv = nb_server_at(ServerConfig {
        bind: "[::]:0".parse().unwrap(),
        ..ServerConfig::default()
    });
    let cfg = ClientConfig {
        host: "127.0.0.1".into(),
        port: srv.addr.port(),
        params: TestParams {
            time_s: 1,
            ..TestParams::default()
        },
        family: Family::V4,
        ..ClientConfig::default()
    };
    run_client(&cfg, &mut |_| {}).expect("IPv4 client on a dual-stack server");
    let report = srv.finished(10);
    assert!(report.peer.starts_with("127.0.0.1:"), "{}", report.peer);
}
