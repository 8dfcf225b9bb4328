//! Every probe kind against the responder on loopback: every probe sent, every reply matched.

mod common;

use common::{config, probe};
use netblame_core::observe::latency::{Measures, ProbeOutcome};
use netblame_probe::responder::Responder;
use netblame_probe::ProbeKind;
use std::time::Duration;

fn responder() -> Responder {
    Responder::start("127.0.0.1:0".parse().unwrap()).expect("responder")
}

#[test]
fn every_kind_gets_its_replies() {
    let r = responder();
    let target = r.local_addr().to_string();
    for kind in [
        ProbeKind::Rr,
        ProbeKind::Udp,
        ProbeKind::Tcp,
        ProbeKind::Http,
    ] {
        let runs = probe(config(
            kind,
            std::slice::from_ref(&target),
            5,
            40,
            Duration::from_secs(5),
        ));
        let l = &runs[0].latency;
        assert_eq!(l.summary.sent, 40, "{kind}");
        assert_eq!(l.summary.received, 40, "{kind}: {:?}", l.summary);
        assert_eq!(l.samples.len(), 40);
        assert!(
            l.summary.min_us > 0.0
                && l.summary.min_us <= l.summary.p50_us
                && l.summary.p50_us <= l.summary.max_us
        );
        assert_eq!(
            l.values.iter().map(|v| v.1).sum::<u64>(),
            40,
            "{kind}: histogram holds every reply"
        );
        assert_eq!(runs[0].histogram.len(), 40);
        match kind {
            ProbeKind::Tcp => {
                assert_eq!(l.measures, Measures::Connect);
                // Linux 6.7+ reports tcpi_total_rto, zero for a clean handshake.
                assert!(l
                    .samples
                    .iter()
                    .all(|s| s.connect_us.is_some() && s.total_rto.unwrap_or(0) == 0));
            }
            ProbeKind::Http => {
                assert!(l
                    .samples
                    .iter()
                    .all(|s| s.first_byte_us.is_some() && s.connect_us.is_some()));
            }
            _ => assert!(l.samples.iter().all(|s| s.connect_us.is_none())),
        }
    }
}

#[test]
fn tcp_with_a_request_measures_the_round_trip() {
    let r = responder();
    let mut cfg = config(
        ProbeKind::Tcp,
        &[r.local_addr().to_string()],
        5,
        20,
        Duration::from_secs(5),
    );
    cfg.request = true;
    let runs = probe(cfg);
    let l = &runs[0].latency;
    assert_eq!((l.summary.sent, l.summary.received), (20, 20));
    assert_eq!(l.measures, Measures::RoundTrip);
    for s in &l.samples {
        assert!(
            s.latency_us().unwrap() >= s.connect_us.unwrap(),
            "reply after connect: {s:?}"
        );
    }
}

#[test]
fn icmp_echo_on_loopback_needs_privilege_or_says_so() {
    let t = vec!["127.0.0.1".to_string()];
    match netblame_probe::start(config(ProbeKind::Icmp, &t, 5, 20, Duration::from_secs(2))) {
        Ok(run) => {
            let runs = run.wait();
            assert_eq!(runs[0].latency.summary.sent, 20);
            assert_eq!(runs[0].latency.summary.received, 20);
        }
        Err(e) => {
            assert!(
                !netblame_testkit::is_root(),
                "root must be able to open a raw socket: {e}"
            );
            assert!(e.to_string().contains("privilege"), "{e}");
        }
    }
}

#[test]
fn refused_and_closed_targets_are_failures_not_hangs() {
    // A port nobody listens on: every tcp probe fails fast with "connection refused".
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let runs = probe(config(
        ProbeKind::Tcp,
        std::slice::from_ref(&addr),
        5,
        10,
        Duration::from_secs(2),
    ));
    let l = &runs[0].latency;
    assert_eq!(
        (l.summary.sent, l.summary.received, l.summary.failed),
        (10, 0, 10)
    );
    assert!(l.samples.iter().all(|s| matches!(&s.outcome, ProbeOutcome::Failed { error, .. } if error == "connection refused")));
    // rr needs a connection before the first probe: a clear error.
    let err = netblame_probe::start(config(
        ProbeKind::Rr,
        &[addr],
        5,
        10,
        Duration::from_secs(2),
    ))
    .err()
    .expect("rr to a closed port must fail");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn several_targets_run_side_by_side() {
    let a = responder();
    let b = responder();
    let targets = vec![a.local_addr().to_string(), b.local_addr().to_string()];
    let runs = probe(config(
        ProbeKind::Udp,
        &targets,
        5,
        30,
        Duration::from_secs(2),
    ));
    assert_eq!(runs.len(), 2);
    for (r, t) in runs.iter().zip(&targets) {
        assert_eq!(&r.latency.target, t);
        assert_eq!(r.latency.summary.received, 30);
        assert_eq!(r.schedule.probes, 30);
    }
}

#[test]
fn icmp_through_an_unprivileged_ping_socket() {
    if !netblame_testkit::require_root("icmp_through_an_unprivileged_ping_socket") {
        return;
    }
    // ping_group_range is per namespace: allow every group inside a fresh one, so the ping
    // (datagram) socket is tried first and works.
    let ns = common::Netns::new("nbpicmp");
    let st = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "sysctl",
            "-qw",
            "net.ipv4.ping_group_range=0 2147483647",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let runs = ns.run(|| {
        // The datagram socket opens (the raw fallback is not needed here).
        assert!(socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::ICMPV4)
        )
        .is_ok());
        probe(config(
            ProbeKind::Icmp,
            &["127.0.0.1".to_string()],
            5,
            20,
            Duration::from_secs(2),
        ))
    });
    assert_eq!(
        (
            runs[0].latency.summary.sent,
            runs[0].latency.summary.received
        ),
        (20, 20)
    );
}
