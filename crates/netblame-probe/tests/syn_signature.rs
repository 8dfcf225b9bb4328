//! Inside a network namespace, nftables drops the first SYN of every connection to one port:
//! connect times land on the kernel's SYN retransmission schedule, `tcpi_total_rto` confirms it,
//! and the rules report it with the right count — while a second port on the same host stays
//! clean, which localizes the tail.

mod common;

use common::{config, probe, Netns};
use netblame_core::rules::latency::{judge, ProbeContext, SynSchedule};
use netblame_probe::responder::Responder;
use netblame_probe::ProbeKind;
use std::time::Duration;

/// Drops the first SYN of each connection to `port` (keyed by source port), lets the retransmit in.
fn drop_first_syn(port: u16) -> String {
    format!(
        "table inet nbprobe {{
  set seen {{ type inet_service; flags timeout; timeout 60s; }}
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport {port} tcp flags & (syn | ack) == syn tcp sport @seen accept
    tcp dport {port} tcp flags & (syn | ack) == syn add @seen {{ tcp sport }} counter drop
  }}
}}
"
    )
}

fn context() -> ProbeContext {
    let kernel = netblame_linux::sysctl::kernel_version().ok();
    let linear = netblame_linux::sysctl::read_ints("net.ipv4.tcp_syn_linear_timeouts")
        .ok()
        .and_then(|v| v.first().map(|&x| x as u32));
    let syn = match &kernel {
        Some(k) => SynSchedule::for_kernel(k, linear, None),
        None => SynSchedule::CLASSIC,
    };
    ProbeContext { kernel, syn }
}

#[test]
fn first_syn_dropped_gives_the_syn_signature_with_the_right_count() {
    if !netblame_testkit::require_root(
        "first_syn_dropped_gives_the_syn_signature_with_the_right_count",
    ) {
        return;
    }
    let ns = Netns::new("nbpsyn");
    let responders = ns.run(|| {
        let a = Responder::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = Responder::start("127.0.0.1:0".parse().unwrap()).unwrap();
        (a, b)
    });
    let (lossy, clean) = (
        responders.0.local_addr().port(),
        responders.1.local_addr().port(),
    );
    ns.nft(&drop_first_syn(lossy));
    let targets = vec![format!("127.0.0.1:{lossy}"), format!("127.0.0.1:{clean}")];
    // 25 probes every 40 ms: connects overlap (a lost SYN takes 1 s), as on a busy client.
    let runs = ns.run(move || {
        probe(config(
            ProbeKind::Tcp,
            &targets,
            40,
            25,
            Duration::from_secs(4),
        ))
    });
    let (l, c) = (&runs[0].latency, &runs[1].latency);
    assert_eq!(
        (l.summary.sent, l.summary.received),
        (25, 25),
        "{:?}",
        l.summary
    );
    assert_eq!((c.summary.sent, c.summary.received), (25, 25));
    // Every connect to the lossy port waited for the first retransmission (1 s on every schedule).
    assert!(
        l.samples.iter().all(|s| s.connect_us.unwrap() >= 900_000),
        "{:?}",
        l.samples
    );
    assert!(c.samples.iter().all(|s| s.connect_us.unwrap() < 900_000));

    let ctx = context();
    let findings = judge(&[l.clone(), c.clone()], &ctx);
    let syn: Vec<_> = findings
        .iter()
        .filter(|f| f.id == "syn-retransmit")
        .collect();
    assert_eq!(syn.len(), 1, "{findings:#?}");
    let f = syn[0];
    assert_eq!(f.subject.as_deref(), Some(l.target.as_str()));
    assert_eq!(f.value("syn_retransmit_connects"), Some(25.0));
    assert_eq!(f.value("after_retry_1"), Some(25.0));
    assert_eq!(f.value("retransmitted_syns"), Some(25.0));
    if ctx.kernel.as_ref().is_some_and(|k| k.at_least(6, 7, 0)) {
        assert_eq!(
            f.value("confirmed_by_total_rto"),
            Some(25.0),
            "tcpi_total_rto confirms each lost SYN"
        );
    }
    // The tail is on one target only — unless this (shared, noisy) host stalled a clean
    // connect for a fifth of the SYN delay, which the rule rightly refuses to call localized.
    if c.summary.p99_us < 150_000.0 {
        let tail = findings
            .iter()
            .find(|f| f.id == "latency-tail-one-target")
            .unwrap_or_else(|| {
                panic!(
                    "the tail is on one target only: {findings:#?}\nclean: {:?}",
                    c.summary
                )
            });
        assert_eq!(tail.subject.as_deref(), Some(l.target.as_str()));
    } else {
        eprintln!(
            "clean target stalled (p99 {} us): tail localization not checked",
            c.summary.p99_us
        );
    }
    // The SYN delays are not mistaken for an application timeout.
    assert!(
        findings.iter().all(|f| f.id != "timeout-and-retry"),
        "{findings:#?}"
    );
    drop(responders);
    drop(ns);
}
