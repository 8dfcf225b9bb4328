//! Where did an http probe's latency tail go: the name lookup, the TLS handshake or the
//! server's time to the first byte. Each probe times its phases apart (`HttpPhases`); the
//! tail's excess over the median is split between them, and a phase that holds most of it is
//! the culprit (the connect phase has its own rules: SYN retransmissions, loss).

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::observe::latency::{median, HttpPhases, TargetLatency};
use crate::units::format_duration;
use std::time::Duration;

/// The tail is in the name lookup.
pub const DNS_SLOW: FindingSpec = FindingSpec {
    id: "dns-slow",
    layer: Layer::Host,
    title: "the latency tail is in the name lookup: the host's resolver or its DNS servers",
};
/// The tail is in the TLS handshake.
pub const TLS_SLOW: FindingSpec = FindingSpec {
    id: "tls-slow",
    layer: Layer::Application,
    title: "the latency tail is in the TLS handshake: the server's handshake, not the network",
};
/// The tail is in the server's time to the first byte.
pub const SERVER_SLOW: FindingSpec = FindingSpec {
    id: "server-slow",
    layer: Layer::Application,
    title:
        "the latency tail is the server's time to the first byte: the application, not the network",
};

/// Findings this module builds.
pub const FINDINGS: &[&FindingSpec] = &[&DNS_SLOW, &TLS_SLOW, &SERVER_SLOW];

/// Replies with timed phases needed before a tail means anything.
pub const MIN_PHASED_REPLIES: usize = 20;
/// Tail probes needed: one slow probe is an accident (the first lookup before a resolver's
/// cache is warm, a first TLS handshake without a session to resume), not a tail.
pub const MIN_TAIL_PROBES: usize = 2;
/// A tail probe takes at least this many times the median total (a spike, not jitter).
pub const TAIL_FACTOR: f64 = 2.0;
/// And at least this much more than the median, µs: below 20 ms a person does not notice,
/// and scheduling noise on a busy host reaches a few ms.
pub const TAIL_MIN_EXCESS_US: u64 = 20_000;
/// The phase named holds at least this share of the tail's excess over the median.
pub const PHASE_SHARE: f64 = 0.6;
/// A tail excess of this much (µs) or more is a warning; below, a note.
pub const WARN_EXCESS_US: u64 = 100_000;

/// One timed phase.
#[derive(Clone, Copy)]
struct Phase {
    name: &'static str,
    get: fn(&HttpPhases) -> Option<u64>,
    spec: Option<&'static FindingSpec>,
}

const PHASES: [Phase; 5] = [
    Phase {
        name: "dns",
        get: |p| p.dns_us,
        spec: Some(&DNS_SLOW),
    },
    // The connect phase's tail is judged by the SYN and loss rules.
    Phase {
        name: "connect",
        get: |p| p.connect_us,
        spec: None,
    },
    Phase {
        name: "tls",
        get: |p| p.tls_us,
        spec: Some(&TLS_SLOW),
    },
    Phase {
        name: "first_byte",
        get: |p| p.first_byte_us,
        spec: Some(&SERVER_SLOW),
    },
    // A long body is the transfer's (throughput) question.
    Phase {
        name: "transfer",
        get: |p| p.transfer_us,
        spec: None,
    },
];

fn ms(us: f64) -> String {
    format_duration(Duration::from_micros(us.max(0.0) as u64))
}

/// The phase that holds most of `t`'s latency tail, as a finding; `None` without enough
/// http replies, without a tail, or when no phase (or connect or transfer) holds it.
pub fn slow_phase(t: &TargetLatency) -> Option<Finding> {
    let replies: Vec<(u64, HttpPhases)> = t
        .samples
        .iter()
        .filter_map(|s| Some((s.latency_us()?, s.phases?)))
        .collect();
    if replies.len() < MIN_PHASED_REPLIES {
        return None;
    }
    let med_total = median(replies.iter().map(|r| r.0));
    let floor = ((med_total as f64 * TAIL_FACTOR) as u64).max(med_total + TAIL_MIN_EXCESS_US);
    let tail: Vec<&(u64, HttpPhases)> = replies.iter().filter(|r| r.0 >= floor).collect();
    if tail.len() < MIN_TAIL_PROBES {
        return None;
    }
    let n = tail.len() as f64;
    let tail_total = tail.iter().map(|r| r.0 as f64).sum::<f64>() / n;
    let excess = tail_total - med_total as f64;
    // Each phase: its median over all replies, its mean over the tail (a phase a probe did
    // not go through counts as zero).
    let split: Vec<(Phase, u64, f64)> = PHASES
        .iter()
        .map(|ph| {
            let med = median(replies.iter().map(|r| (ph.get)(&r.1).unwrap_or(0)));
            let mean = tail
                .iter()
                .map(|r| (ph.get)(&r.1).unwrap_or(0) as f64)
                .sum::<f64>()
                / n;
            (*ph, med, mean)
        })
        .collect();
    let (phase, med, mean) = split
        .iter()
        .copied()
        .max_by(|a, b| (a.2 - a.1 as f64).total_cmp(&(b.2 - b.1 as f64)))?;
    let share = (mean - med as f64) / excess;
    let spec = phase.spec?;
    if share < PHASE_SHARE {
        return None;
    }
    let severity = if excess >= WARN_EXCESS_US as f64 {
        Severity::Warning
    } else {
        Severity::Info
    };
    let others: Vec<String> = split
        .iter()
        .filter(|s| s.0.name != phase.name && (s.2 > 0.0 || s.1 > 0))
        .map(|s| format!("{} {} -> {}", s.0.name, ms(s.1 as f64), ms(s.2)))
        .collect();
    let summary = format!(
        "{} of {} probes to {} took {} or more (median {}): {} of the extra {} is in {}",
        tail.len(),
        replies.len(),
        t.target,
        ms(floor as f64),
        ms(med_total as f64),
        ms(mean - med as f64),
        ms(excess),
        phase.name
    );
    let fix = match spec.id {
        "dns-slow" => "Time the lookup alone (`getent ahosts NAME`) and look at the resolver: /etc/resolv.conf \
            (a dead first nameserver costs `options timeout` (5 s) per query: `options timeout:1 attempts:2 rotate`), \
            search domains with a high ndots (Kubernetes' ndots:5 tries every search domain first: use names \
            with a trailing dot), a local cache (systemd-resolved, nscd, NodeLocal DNSCache); a tail at 5 s is \
            the resolver retrying a lost UDP query (parallel A/AAAA queries racing in conntrack: \
            `options single-request-reopen`).",
        "tls-slow" => "The handshake waits on the server: its CPU for the key exchange (RSA keys cost more than \
            ECDSA), OCSP or certificate-chain fetches, no session resumption. Check the server's CPU \
            (`netblame doctor` there), enable session tickets or a session cache, and compare with \
            `openssl s_time -connect HOST:443`.",
        _ => "The request reached the server and its answer started late while name lookup, connect and TLS \
            kept their usual times: look at the server's own request timings, its CPU and throttling \
            (`netblame doctor` / `netblame host` there), its locks and its backends.",
    };
    Some(
        Finding::new(spec, severity, summary)
            .subject(t.target.clone())
            .evidence("tail_probes", n, Unit::Count)
            .evidence("replies", replies.len() as f64, Unit::Count)
            .evidence("median_total", med_total as f64, Unit::Microseconds)
            .evidence("tail_mean_total", tail_total, Unit::Microseconds)
            .evidence("phase_median", med as f64, Unit::Microseconds)
            .evidence("phase_tail_mean", mean, Unit::Microseconds)
            .evidence("share_of_excess", share, Unit::Ratio)
            .explain(format!(
                "tail (>= max({TAIL_FACTOR} x median, median + {})): mean {} vs median {} = {} extra; \
                 {} {} -> {} = {} ({:.0}% of the extra); the other phases, median -> tail mean: {}",
                ms(TAIL_MIN_EXCESS_US as f64),
                ms(tail_total),
                ms(med_total as f64),
                ms(excess),
                phase.name,
                ms(med as f64),
                ms(mean),
                ms(mean - med as f64),
                share * 100.0,
                if others.is_empty() { "none".to_string() } else { others.join(", ") }
            ))
            .fix(fix),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::latency::{Measures, ProbeOutcome, ProbeSample};

    /// `n` probes of 10 ms (2 ms dns, 1 ms connect, 7 ms first byte); every `every`-th one
    /// gets `extra` µs added to the phase `slow`.
    fn run(n: u64, every: u64, extra: u64, slow: &str) -> TargetLatency {
        let samples = (0..n)
            .map(|seq| {
                let mut p = HttpPhases {
                    dns_us: Some(2_000),
                    connect_us: Some(1_000),
                    tls_us: None,
                    first_byte_us: Some(7_000),
                    transfer_us: Some(0),
                };
                if seq % every == every - 1 {
                    match slow {
                        "dns" => p.dns_us = p.dns_us.map(|v| v + extra),
                        "connect" => p.connect_us = p.connect_us.map(|v| v + extra),
                        _ => p.first_byte_us = p.first_byte_us.map(|v| v + extra),
                    }
                }
                let total = [p.dns_us, p.connect_us, p.first_byte_us]
                    .iter()
                    .flatten()
                    .sum::<u64>();
                ProbeSample {
                    seq,
                    at_us: seq * 50_000,
                    outcome: ProbeOutcome::Reply { latency_us: total },
                    connect_us: None,
                    first_byte_us: None,
                    total_rto: None,
                    phases: Some(p),
                }
            })
            .collect();
        TargetLatency {
            target: "http://example.test/".into(),
            kind: "http".into(),
            measures: Measures::RoundTrip,
            interval_us: 50_000,
            timeout_us: 10_000_000,
            summary: Default::default(),
            values: Vec::new(),
            connect_values: Vec::new(),
            windows: Vec::new(),
            samples,
        }
    }

    #[test]
    fn a_slow_server_is_its_time_to_first_byte() {
        let f = slow_phase(&run(40, 5, 300_000, "first_byte")).expect("a finding");
        assert_eq!(f.id, "server-slow");
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.value("tail_probes"), Some(8.0));
        assert!(f.summary.starts_with("8 of 40 probes"), "{}", f.summary);
        assert!(
            f.explanation.contains("first_byte 7 ms -> 307 ms"),
            "{}",
            f.explanation
        );
    }

    #[test]
    fn a_slow_lookup_is_dns() {
        let f = slow_phase(&run(40, 4, 5_000_000, "dns")).expect("a finding");
        assert_eq!((f.id, f.layer), ("dns-slow", Layer::Host));
        assert!(f.value("share_of_excess").unwrap() > 0.99);
    }

    #[test]
    fn a_connect_tail_is_left_to_the_connect_rules() {
        assert!(slow_phase(&run(40, 5, 1_000_000, "connect")).is_none());
    }

    #[test]
    fn jitter_and_small_runs_are_no_tail() {
        // 5 ms more on one probe in five: under 2 x median and under 20 ms.
        assert!(slow_phase(&run(40, 5, 5_000, "first_byte")).is_none());
        // A real tail, but too few replies to say.
        assert!(slow_phase(&run(10, 5, 300_000, "first_byte")).is_none());
    }

    #[test]
    fn one_cold_lookup_is_no_tail() {
        // The first lookup misses the resolver's cache: 150 ms, then every one is prompt.
        let mut t = run(30, 1_000, 0, "dns");
        if let Some(p) = t.samples[0].phases.as_mut() {
            p.dns_us = Some(150_000);
        }
        t.samples[0].outcome = ProbeOutcome::Reply {
            latency_us: 158_000,
        };
        assert!(slow_phase(&t).is_none());
    }

    #[test]
    fn a_short_tail_is_a_note() {
        let f = slow_phase(&run(40, 5, 30_000, "first_byte")).expect("a finding");
        assert_eq!(f.severity, Severity::Info);
    }
}
