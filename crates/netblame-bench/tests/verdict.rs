//! The end-of-test verdict on real loopback transfers: a receiver-only SO_RCVBUF of 64 KiB gives
//! `rcvbuf-fixed-small`; an unconstrained run does not blame the receiver.

mod common;

use common::*;
use netblame_bench::config::{ClientConfig, TestParams};
use netblame_bench::report::observations;
use netblame_bench::run_client;
use netblame_bench::server::ServerConfig;
use netblame_core::diagnose::{diagnose, Observations};
use netblame_core::{Finding, Severity};
use std::time::Duration;

/// One transfer at a time: these verdicts depend on whether the receiver gets a CPU, and on
/// two cores several concurrent loopback transfers starve receivers into real window limits.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(params: TestParams) -> (netblame_bench::ClientOutcome, Vec<Finding>) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let srv = nb_server(ServerConfig::default());
    let cfg = ClientConfig {
        host: "127.0.0.1".into(),
        port: srv.addr.port(),
        params,
        interval: Duration::from_millis(500),
        app_timeout: Some(Duration::from_secs(30)),
        ..ClientConfig::default()
    };
    let out = run_client(&cfg, &mut |_| {}).unwrap();
    let findings = judge(observations(&out, cfg.app_timeout));
    for f in &findings {
        eprintln!(
            "{} {:?} {} | {} | {}",
            f.id, f.severity, f.summary, f.explanation, f.fix
        );
    }
    (out, findings)
}

/// The diagnose step every command runs, on a test's transfers.
fn judge(transfers: Vec<netblame_core::observe::Transfer>) -> Vec<Finding> {
    diagnose(&Observations {
        transfers,
        ..Default::default()
    })
    .all
}

fn judge_outcome(out: &netblame_bench::ClientOutcome) -> Vec<Finding> {
    judge(observations(out, Some(Duration::from_secs(30))))
}

#[test]
fn receiver_only_rcvbuf_applies_to_the_receiver_alone() {
    // Loopback: the client reads (-R) with SO_RCVBUF=64 KiB; the server's sender is untouched.
    let (out, findings) = run(TestParams {
        time_s: 2,
        reverse: true,
        rcvbuf: Some(64 << 10),
        ..TestParams::default()
    });
    let client = out.streams[0].buffers;
    assert_eq!(client.requested_rcvbuf_bytes, Some(64 << 10));
    assert_eq!(
        client.actual_rcvbuf_bytes,
        128 << 10,
        "the kernel doubles SO_RCVBUF"
    );
    assert_eq!(
        client.requested_sndbuf_bytes, None,
        "receiver-only: no SO_SNDBUF"
    );
    let server = out.server.as_ref().unwrap().buffers[0];
    assert_eq!(
        server.requested_rcvbuf_bytes, None,
        "the sender keeps autotuning"
    );
    assert_eq!(server.requested_sndbuf_bytes, None);
    // The sender's view of the window is bounded by the 128 KiB buffer.
    let rw = findings.iter().find(|f| f.id == "receiver-window-limited");
    if let Some(rw) = rw {
        assert!(
            rw.value("window").is_some_and(|w| w <= 128.0 * 1024.0),
            "{rw:?}"
        );
    }
}

/// The Netflix shape over a real 40 ms path (two namespaces joined by netblame-lab's emulator):
/// the client reads with SO_RCVBUF=64 KiB and the sender is receiver-window limited.
#[test]
fn receiver_only_rcvbuf_64k_gives_the_receiver_window_verdict() {
    if !netblame_testkit::require_root("receiver_only_rcvbuf_64k_gives_the_receiver_window_verdict")
    {
        return;
    }
    use netblame_lab::{netns, Lab, LabConfig, Side};
    let name = netblame_testkit::unique_name("bv");
    let lab =
        Lab::up(LabConfig::symmetric(&name, Duration::from_millis(40), None)).expect("lab up");
    let server_addr = std::net::SocketAddr::new(Side::Server.addr().into(), 5201);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = netns::spawn_in(&lab.netns(Side::Server), move || {
        let srv = netblame_bench::Server::bind(
            ServerConfig {
                bind: server_addr,
                one_off: true,
                idle_timeout: Duration::from_secs(20),
                ..ServerConfig::default()
            },
            |_| {},
        )?;
        let _ = ready_tx.send(());
        srv.serve()
    })
    .unwrap();
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    let out = netns::run_in(&lab.netns(Side::Client), move || {
        let cfg = ClientConfig {
            host: Side::Server.addr().to_string(),
            port: 5201,
            params: TestParams {
                time_s: 3,
                reverse: true,
                rcvbuf: Some(64 << 10),
                ..TestParams::default()
            },
            interval: Duration::from_millis(500),
            ..ClientConfig::default()
        };
        run_client(&cfg, &mut |_| {}).map_err(std::io::Error::other)
    })
    .expect("client run");
    let _ = server.join();
    drop(lab);
    let findings = judge_outcome(&out);
    for f in &findings {
        eprintln!(
            "{} {:?} {} | {} | {}",
            f.id, f.severity, f.summary, f.explanation, f.fix
        );
    }
    // The same id the lab and a live socket give for this incident (one rule decides).
    let first = findings
        .iter()
        .find(|f| f.severity >= Severity::Warning)
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(first.id, "rcvbuf-fixed-small", "{findings:#?}");
    assert_eq!(first.layer, netblame_core::Layer::Application);
    assert!(first.fix.contains("do not set SO_RCVBUF"), "{}", first.fix);
    assert_eq!(first.value("sk_rcvbuf"), Some(128.0 * 1024.0), "{first:?}");
    assert!(
        first
            .value("window_clamp")
            .is_some_and(|w| w <= 128.0 * 1024.0),
        "{first:?}"
    );
    assert!(
        first.explanation.contains("ceiling"),
        "{}",
        first.explanation
    );
    // The ceiling is window / RTT at the measured RTT (about 40 ms).
    let rtt = first.value("rtt").unwrap();
    assert!(rtt > 35_000.0, "rtt {rtt} us");
}

#[test]
fn unconstrained_loopback_does_not_blame_the_receiver() {
    let (_out, findings) = run(TestParams {
        time_s: 2,
        ..TestParams::default()
    });
    assert!(!findings.is_empty());
    assert_ne!(findings[0].id, "receiver-window-limited", "{findings:#?}");
    assert!(
        !findings
            .iter()
            .any(|f| f.id == "receiver-window-limited" && f.severity >= Severity::Warning),
        "{findings:#?}"
    );
    let timeout = findings
        .iter()
        .find(|f| f.id == "application-timeout")
        .expect("--app-timeout finding");
    assert_eq!(timeout.severity, Severity::Info);
}

#[test]
fn a_small_tcp_rmem_max_at_the_receiver_is_blamed_with_its_arithmetic() {
    if !netblame_testkit::require_root(
        "a_small_tcp_rmem_max_at_the_receiver_is_blamed_with_its_arithmetic",
    ) {
        return;
    }
    // Both ends in a namespace whose autotuning ceiling is 32 KiB: the server's receive window
    // cannot grow, the sender waits on it, and the server reports its settings to the client.
    let ns = netblame_testkit::Netns::new("nbrmem");
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 16384 32768"]);
    let (out, findings) = ns.run(|| {
        run(TestParams {
            time_s: 2,
            ..TestParams::default()
        })
    });
    let server = out.server.as_ref().expect("a netblame server");
    assert_eq!(
        server.host.rcv_settings.as_ref().map(|s| s.tcp_rmem),
        Some([4096, 16384, 32768]),
        "the server reports its namespace's tcp_rmem"
    );
    let f = findings
        .iter()
        .find(|f| f.id == "buffer-max-below-bdp")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(f.layer, netblame_core::Layer::Host);
    assert_eq!(f.value("buffer_max"), Some(32768.0));
    let clamp = f.value("window_clamp").unwrap();
    assert!(clamp > 0.0 && clamp <= 32768.0, "{f:?}");
    assert!(
        f.explanation.contains("of tcp_rmem[2] 32 KiB"),
        "{}",
        f.explanation
    );
    assert!(f.fix.contains("tcp_rmem[2]"), "{}", f.fix);
    assert!(
        findings.iter().all(|f| f.id != "receiver-window-limited"),
        "the specific verdict replaces the generic one: {findings:#?}"
    );
}

#[test]
fn window_scaling_off_at_the_receiver_is_named() {
    if !netblame_testkit::require_root("window_scaling_off_at_the_receiver_is_named") {
        return;
    }
    // Window scaling off in the namespace: the window field caps the window at 64 KiB.
    let ns = netblame_testkit::Netns::new("nbwscale");
    ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_window_scaling=0"]);
    let (out, findings) = ns.run(|| {
        run(TestParams {
            time_s: 2,
            ..TestParams::default()
        })
    });
    let sender = &out.server.as_ref().expect("a netblame server").intervals;
    assert!(
        sender
            .iter()
            .flat_map(|iv| &iv.streams)
            .all(|s| s.window_scaling == Some(false)),
        "tcp_info says no window scaling"
    );
    let f = findings
        .iter()
        .find(|f| f.id == "window-scaling-absent")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(
        f.layer,
        netblame_core::Layer::Host,
        "the receiving host's sysctl is known to be 0"
    );
    assert_eq!(f.value("window_cap"), Some(65535.0));
    assert!(f.explanation.contains("65535 B /"), "{}", f.explanation);
}
