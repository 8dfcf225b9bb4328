//! Findings from kernel tracepoints ([`TraceSummary`]): when, how long and to whom, where
//! counters only say that something happened. Seed 001 (Cloudflare) timed `net_rx_action` and
//! `tcp_collapse` by hand; seed 003 (Datadog) needed retransmissions and drops per connection.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::observe::trace::{BufferGrowth, FunctionTiming, TraceSummary};
use crate::units::Bytes;

/// A NET_RX softirq run long enough to delay the packets queued behind it.
pub const NET_RX_SOFTIRQ_STALL: FindingSpec = FindingSpec {
    id: "net-rx-softirq-stall",
    layer: Layer::Kernel,
    title:
        "a NET_RX softirq run (net_rx_action) lasted long enough to delay every packet behind it",
};
/// Packets dropped by a netfilter rule (nftables/iptables) on this host.
pub const DROPS_NETFILTER: FindingSpec = FindingSpec {
    id: "drops-netfilter",
    layer: Layer::Host,
    title: "the kernel dropped packets in a netfilter (nftables/iptables) rule on this host",
};
/// Packets dropped because a socket's receive buffer or TCP memory was full.
pub const DROPS_SOCKET_BUFFER: FindingSpec = FindingSpec {
    id: "drops-socket-buffer",
    layer: Layer::Application,
    title: "the kernel dropped packets because a socket's receive buffer (or TCP memory) was full",
};
/// Packets dropped because a queue (backlog, qdisc, ring) was full.
pub const DROPS_QUEUE_FULL: FindingSpec = FindingSpec {
    id: "drops-queue-full",
    layer: Layer::Host,
    title: "the kernel dropped packets because a queue was full (CPU backlog, qdisc, NIC ring, socket backlog)",
};
/// Packets dropped for a bad checksum.
pub const DROPS_CHECKSUM: FindingSpec = FindingSpec {
    id: "drops-checksum",
    layer: Layer::Network,
    title:
        "the kernel dropped packets with bad checksums: corruption on the path or an offload bug",
};
/// Most retransmissions went to one peer (or came from one process).
pub const RETRANSMITS_CONCENTRATED: FindingSpec = FindingSpec {
    id: "retransmits-concentrated",
    layer: Layer::Network,
    title:
        "retransmissions were concentrated on one peer or process: that path, not the whole host",
};
/// A receive buffer stopped growing at `tcp_rmem[2]` or at its SO_RCVBUF size.
pub const RCVBUF_GROWTH_CAPPED: FindingSpec = FindingSpec {
    id: "rcvbuf-growth-capped",
    layer: Layer::Host,
    title: "a receive buffer stopped growing at its cap: tcp_rmem[2] (autotuned) or SO_RCVBUF (fixed by the application)",
};
/// `tcp_collapse`/`tcp_prune_queue` took long (function tracing only).
pub const TCP_COLLAPSE_STALL: FindingSpec = FindingSpec {
    id: "tcp-collapse-stall",
    layer: Layer::Host,
    title: "tcp_collapse/tcp_prune_queue ran long in softirq (timed by function tracing): full receive queues on large buffers",
};

/// Every finding of this module, for the catalogue.
pub const FINDINGS: &[&FindingSpec] = &[
    &NET_RX_SOFTIRQ_STALL,
    &DROPS_NETFILTER,
    &DROPS_SOCKET_BUFFER,
    &DROPS_QUEUE_FULL,
    &DROPS_CHECKSUM,
    &RETRANSMITS_CONCENTRATED,
    &RCVBUF_GROWTH_CAPPED,
    &TCP_COLLAPSE_STALL,
];

/// A NET_RX run at least this long is a stall: `net.core.netdev_budget_usecs` defaults to
/// 2000 µs, the kernel's own time budget for one `net_rx_action`; a longer run overran it
/// (the budget is only checked between NAPI polls, so one slow poll does it).
pub const NET_RX_STALL_US: u64 = 2_000;
/// Critical from here: seed 001 found a 23 ms run behind 1 s latency spikes, and after the fix
/// runs stayed under 3 ms; 10 ms sits between the two.
pub const NET_RX_STALL_CRITICAL_US: u64 = 10_000;
/// Drops of one class in one trace at or above which the finding is a warning, not info: a TCP
/// flow retransmits every dropped segment, and ten in a few seconds is more than a stray packet.
pub const DROPS_WARNING_COUNT: u64 = 10;
/// Retransmissions needed before their concentration means anything (a handful is noise).
pub const RETRANSMITS_MIN: u64 = 10;
/// Share of all retransmissions on one peer (or process) that makes it "concentrated": more
/// than half means one path or one application, not the host's links as a whole.
pub const RETRANSMITS_CONCENTRATED_SHARE: f64 = 0.5;
/// `tcp_collapse`/`tcp_prune_queue` at least this long is a stall: seed 001 measured a 3 ms
/// maximum with `tcp_rmem[2]` = 2 MiB (acceptable) and 21 ms with 32 MiB; 1 ms is the order at
/// which a collapse shows up as NET_RX latency.
pub const COLLAPSE_STALL_US: u64 = 1_000;

/// Where each drop reason puts the blame, by the kernel's `skb_drop_reason` name (without the
/// `SKB_DROP_REASON_` prefix). Names are read from the running kernel's BTF by the source;
/// reasons not listed (NOT_SPECIFIED, NO_SOCKET, TCP sequence checks, ...) make no finding.
pub fn drop_class(reason: &str) -> Option<&'static FindingSpec> {
    match reason {
        "NETFILTER_DROP" | "BPF_CGROUP_EGRESS" | "SECURITY_HOOK" | "IP_RPFILTER" => {
            Some(&DROPS_NETFILTER)
        }
        "SOCKET_RCVBUFF"
        | "PROTO_MEM"
        | "TCP_OFO_QUEUE_PRUNE"
        | "TCP_OFO_DROP"
        | "TCP_ZEROWINDOW" => Some(&DROPS_SOCKET_BUFFER),
        "CPU_BACKLOG"
        | "QDISC_DROP"
        | "QDISC_OVERLIMIT"
        | "QDISC_CONGESTED"
        | "FULL_RING"
        | "SOCKET_BACKLOG"
        | "TCP_LISTEN_OVERFLOW"
        | "NEIGH_QUEUEFULL"
        | "FQ_FLOW_LIMIT"
        | "FQ_BAND_LIMIT"
        | "CAKE_FLOOD" => Some(&DROPS_QUEUE_FULL),
        r if r.ends_with("_CSUM") => Some(&DROPS_CHECKSUM),
        _ => None,
    }
}

/// Every finding a trace supports.
pub fn findings(s: &TraceSummary) -> Vec<Finding> {
    let mut out = Vec::new();
    net_rx_stall(s, &mut out);
    drops(s, &mut out);
    retransmits(s, &mut out);
    for b in &s.buffers {
        if let Some(f) = buffer_capped(s, b) {
            out.push(f);
        }
    }
    for (name, t) in [("tcp_collapse", s.collapse), ("tcp_prune_queue", s.prune)] {
        if let Some(f) = t.and_then(|t| collapse_stall(name, &t)) {
            out.push(f);
        }
    }
    out
}

fn secs(s: &TraceSummary) -> f64 {
    (s.duration_us as f64 / 1e6).max(1e-6)
}

fn net_rx_stall(s: &TraceSummary, out: &mut Vec<Finding>) {
    let total = s.net_rx_total();
    let stall_ns = NET_RX_STALL_US * 1000;
    if total.max_ns < stall_ns {
        return;
    }
    let long: u64 = total
        .histogram
        .buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| crate::observe::trace::Log2Histogram::lower_us(*i) >= NET_RX_STALL_US)
        .map(|(_, n)| n)
        .sum();
    let severity = if total.max_ns >= NET_RX_STALL_CRITICAL_US * 1000 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let max_ms = total.max_ns as f64 / 1e6;
    out.push(
        Finding::new(
            &NET_RX_SOFTIRQ_STALL,
            severity,
            format!(
                "NET_RX softirq ran up to {max_ms:.1} ms on CPU {} ({long} runs of at least {} ms in {:.0} s)",
                total.cpu,
                NET_RX_STALL_US / 1000,
                secs(s)
            ),
        )
        .subject(format!("cpu {}", total.cpu))
        .evidence("max_run", total.max_ns as f64 / 1e3, Unit::Microseconds)
        .evidence("long_runs", long as f64, Unit::Count)
        .evidence("runs", total.runs as f64, Unit::Count)
        .evidence("long_runs_rate", long as f64 / secs(s), Unit::PerSecond)
        .explain(format!(
            "{} NET_RX runs over {:.1} s; the longest took {max_ms:.1} ms, over the kernel's own {} µs budget \
             (netdev_budget_usecs). Every packet arriving on that CPU meanwhile waits: a {max_ms:.1} ms run adds \
             up to {max_ms:.1} ms to each of their RTTs, and a few in a row overflow the backlog.",
            total.runs,
            secs(s),
            NET_RX_STALL_US
        ))
        .fix(
            "Find what makes one poll slow: tcp_collapse on large receive buffers (size tcp_rmem[2] to the BDP, \
             `netblame tune --profile latency`), XDP/tc programs, or a driver; spread interrupts (RPS/RFS, \
             irqbalance) so one CPU does not carry all NET_RX work.",
        ),
    );
}

fn drops(s: &TraceSummary, out: &mut Vec<Finding>) {
    for spec in [
        &DROPS_NETFILTER,
        &DROPS_SOCKET_BUFFER,
        &DROPS_QUEUE_FULL,
        &DROPS_CHECKSUM,
    ] {
        let of_class: Vec<_> = s
            .drops
            .iter()
            .filter(|d| drop_class(&d.reason).map(|c| c.id) == Some(spec.id))
            .collect();
        let count: u64 = of_class.iter().map(|d| d.count).sum();
        if count == 0 {
            continue;
        }
        let reasons: Vec<String> = of_class
            .iter()
            .map(|d| {
                let at = d
                    .locations
                    .first()
                    .map(|(l, _)| format!(" at {l}"))
                    .unwrap_or_default();
                format!("{} x{}{at}", d.reason, d.count)
            })
            .collect();
        let severity = if count >= DROPS_WARNING_COUNT {
            Severity::Warning
        } else {
            Severity::Info
        };
        let fix = match spec.id {
            "drops-netfilter" => "Check the firewall: `nft list ruleset` (or `iptables -L -v -n`) for the rule \
                                  whose counter rises; allow the traffic or fix the rule.",
            "drops-socket-buffer" => "Make the receiving application read faster, or give it a larger receive \
                                      buffer (do not fix SO_RCVBUF small; let tcp_rmem autotune); check tcp_mem.",
            "drops-queue-full" => "Raise the full queue (net.core.netdev_max_backlog, the qdisc limit, NIC ring \
                                   `ethtool -G`, somaxconn/listen backlog) or spread the load over more CPUs/queues.",
            _ => "Look for corruption on the path (NIC/cable/switch error counters) or disable a suspect \
                  checksum offload (`ethtool -K DEV rx off`) to confirm.",
        };
        out.push(
            Finding::new(
                spec,
                severity,
                format!(
                    "{count} packets dropped ({:.1}/s): {}",
                    count as f64 / secs(s),
                    reasons.join(", ")
                ),
            )
            .evidence("drops", count as f64, Unit::Count)
            .evidence("drop_rate", count as f64 / secs(s), Unit::PerSecond)
            .explain(format!(
                "skb:kfree_skb reported {count} drops with reason {} over {:.1} s (counted in the kernel, exact).",
                of_class
                    .iter()
                    .map(|d| d.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("/"),
                secs(s)
            ))
            .fix(fix),
        );
    }
}

fn retransmits(s: &TraceSummary, out: &mut Vec<Finding>) {
    let total: u64 = s.retransmits.iter().map(|r| r.count).sum();
    if total < RETRANSMITS_MIN {
        return;
    }
    let mut by_peer = std::collections::BTreeMap::<String, u64>::new();
    let mut by_proc = std::collections::BTreeMap::<String, u64>::new();
    for r in &s.retransmits {
        *by_peer.entry(r.conn.dst.to_string()).or_default() += r.count;
        if let Some(o) = &r.owner {
            *by_proc.entry(o.to_string()).or_default() += r.count;
        }
    }
    let top = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .max_by_key(|(_, n)| **n)
            .map(|(k, n)| (k.clone(), *n))
    };
    let Some((peer, n)) = top(&by_peer) else {
        return;
    };
    let share = n as f64 / total as f64;
    if share < RETRANSMITS_CONCENTRATED_SHARE {
        return;
    }
    let proc_part = top(&by_proc)
        .filter(|(_, pn)| *pn as f64 / total as f64 >= RETRANSMITS_CONCENTRATED_SHARE)
        .map(|(p, pn)| format!(", {pn} from {p}"))
        .unwrap_or_default();
    let conns = s
        .retransmits
        .iter()
        .filter(|r| r.conn.dst.to_string() == peer)
        .count();
    out.push(
        Finding::new(
            &RETRANSMITS_CONCENTRATED,
            Severity::Warning,
            format!(
                "{n} of {total} retransmissions ({:.0}%) went to {peer} over {conns} connection(s){proc_part}",
                share * 100.0
            ),
        )
        .subject(peer.clone())
        .evidence("retransmits", total as f64, Unit::Count)
        .evidence("to_peer", n as f64, Unit::Count)
        .evidence("peer_share", share * 100.0, Unit::Percent)
        .explain(format!(
            "tcp:tcp_retransmit_skb fired {total} times in {:.1} s; {n} ({:.0}% >= {:.0}%) were on connections to {peer}: \
             loss on that path (or that peer's receive side), not on every link of this host.",
            secs(s),
            share * 100.0,
            RETRANSMITS_CONCENTRATED_SHARE * 100.0
        ))
        .fix(format!(
            "Investigate the path to {peer}: `netblame probe {peer}:PORT`, `mtr`, the peer's drop counters; \
             compare with other peers before touching this host's settings."
        )),
    );
}

fn buffer_capped(s: &TraceSummary, b: &BufferGrowth) -> Option<Finding> {
    let last = b.final_rcvbuf();
    let rmem_max = s.limits.tcp_rmem[2];
    let at_rmem = !b.locked && rmem_max > 0 && last >= rmem_max;
    if !(b.locked || at_rmem) {
        return None;
    }
    // A locked buffer seen only once tells nothing about growth: require traffic while at the cap
    // (the kernel asked to grow, or the size was reached during the trace).
    if b.grow_calls_at_final == 0 && b.steps.len() < 2 && !b.locked {
        return None;
    }
    let who = b
        .owner
        .as_ref()
        .map(|o| format!(" ({o})"))
        .unwrap_or_default();
    let (layer, cap, fix) = if b.locked {
        (
            Layer::Application,
            format!("its SO_RCVBUF size {}", Bytes(last)),
            "Do not set SO_RCVBUF in the application (it turns autotuning off); let tcp_rmem size the buffer."
                .to_string(),
        )
    } else {
        (
            Layer::Host,
            format!("tcp_rmem[2] = {}", Bytes(rmem_max)),
            format!(
                "Raise net.ipv4.tcp_rmem[2] to at least BDP / scaling ratio for this path (`netblame tune --rate R --rtt T`); \
                 now {}.",
                Bytes(rmem_max)
            ),
        )
    };
    let severity = if b.grow_calls_at_final > 0 {
        Severity::Warning
    } else {
        Severity::Info
    };
    Some(
        Finding::new(
            &RCVBUF_GROWTH_CAPPED,
            severity,
            format!(
                "receive buffer of {}{who} stopped at {cap}{}",
                b.conn,
                if b.grow_calls_at_final > 0 {
                    format!(
                        "; the kernel asked to grow it {} more times",
                        b.grow_calls_at_final
                    )
                } else {
                    String::new()
                }
            ),
        )
        .blame(layer)
        .subject(b.conn.to_string())
        .evidence("rcvbuf", last as f64, Unit::Bytes)
        .evidence("tcp_rmem_max", rmem_max as f64, Unit::Bytes)
        .evidence("steps", b.steps.len() as f64, Unit::Count)
        .evidence(
            "grow_calls_at_cap",
            b.grow_calls_at_final as f64,
            Unit::Count,
        )
        .explain(format!(
            "{} size(s) traced ({}); the last, {}, is the cap{}. The window can never exceed \
             about rcvbuf x scaling ratio, so throughput <= that / RTT.",
            b.steps.len(),
            b.steps
                .iter()
                .map(|st| Bytes(st.rcvbuf).to_string())
                .collect::<Vec<_>>()
                .join(" -> "),
            Bytes(last),
            if b.locked {
                " (SO_RCVBUF locks it)"
            } else {
                ""
            }
        ))
        .fix(fix),
    )
}

fn collapse_stall(name: &str, t: &FunctionTiming) -> Option<Finding> {
    if t.max_ns < COLLAPSE_STALL_US * 1000 {
        return None;
    }
    let max_ms = t.max_ns as f64 / 1e6;
    Some(
        Finding::new(
            &TCP_COLLAPSE_STALL,
            Severity::Warning,
            format!(
                "{name} ran {} times, up to {max_ms:.1} ms (timed by function tracing)",
                t.calls
            ),
        )
        .subject(name.to_string())
        .evidence("calls", t.calls as f64, Unit::Count)
        .evidence("max", t.max_ns as f64 / 1e3, Unit::Microseconds)
        .evidence(
            "avg",
            t.total_ns as f64 / 1e3 / t.calls.max(1) as f64,
            Unit::Microseconds,
        )
        .explain(format!(
            "{name} copies a full receive queue into dense skbs in softirq; a {max_ms:.1} ms call delays all NET_RX work \
             on its CPU that long (seed 001: 21 ms with tcp_rmem[2] = 32 MiB, 3 ms with 2 MiB)."
        ))
        .fix("Lower tcp_rmem[2] toward the BDP (`netblame tune --profile latency`) and make receivers read promptly."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::trace::*;
    use crate::observe::TcpState;

    fn conn(dst: &str, sport: u16) -> Conn {
        Conn {
            src: "10.0.0.1".parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport: 443,
        }
    }

    #[test]
    fn cloudflare_histogram_is_a_critical_stall() {
        // Seed 001: 3,685,271 runs in 30 s, max 23 ms.
        let mut h = Log2Histogram::default();
        h.add(0, 3_685_011);
        h.add(Log2Histogram::bucket_of(1_500), 215);
        h.add(Log2Histogram::bucket_of(16_000), 1);
        let s = TraceSummary {
            duration_us: 30_000_000,
            net_rx: vec![NetRxCpu {
                cpu: 3,
                runs: 3_685_227,
                total_ns: 1,
                max_ns: 23_000_000,
                max_at_wall_ns: 1,
                histogram: h,
            }],
            ..Default::default()
        };
        let f = findings(&s);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, "net-rx-softirq-stall");
        assert_eq!(f[0].severity, Severity::Critical);
        assert_eq!(f[0].value("long_runs"), Some(1.0));
        assert!(f[0].summary.contains("23.0 ms"), "{}", f[0].summary);
    }

    #[test]
    fn short_runs_are_not_a_stall() {
        let s = TraceSummary {
            net_rx: vec![NetRxCpu {
                max_ns: 1_999_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(findings(&s).is_empty());
    }

    #[test]
    fn drops_map_to_layers_by_kernel_name() {
        assert_eq!(drop_class("NETFILTER_DROP").unwrap().layer, Layer::Host);
        assert_eq!(drop_class("TCP_CSUM").unwrap().id, "drops-checksum");
        assert_eq!(
            drop_class("SOCKET_RCVBUFF").unwrap().layer,
            Layer::Application
        );
        assert_eq!(drop_class("CPU_BACKLOG").unwrap().id, "drops-queue-full");
        assert!(drop_class("NOT_SPECIFIED").is_none());
        let s = TraceSummary {
            duration_us: 2_000_000,
            drops: vec![DropCount {
                reason: "NETFILTER_DROP".into(),
                code: 12,
                count: 40,
                locations: vec![("nft_do_chain+0x1a".into(), 40)],
            }],
            ..Default::default()
        };
        let f = findings(&s);
        assert_eq!(f[0].id, "drops-netfilter");
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0].summary.contains("NETFILTER_DROP x40 at nft_do_chain"));
    }

    #[test]
    fn retransmits_on_one_peer_are_concentrated() {
        let r = |dst, sport, count| ConnRetransmits {
            conn: conn(dst, sport),
            owner: Some(Owner {
                pid: 7,
                comm: "curl".into(),
                container: None,
            }),
            count,
            states: vec![TcpState::Established],
        };
        let s = TraceSummary {
            duration_us: 1_000_000,
            retransmits: vec![
                r("10.9.9.9", 1, 30),
                r("10.9.9.9", 2, 5),
                r("10.1.1.1", 3, 5),
            ],
            ..Default::default()
        };
        let f = findings(&s);
        assert_eq!(f[0].id, "retransmits-concentrated");
        assert_eq!(f[0].subject.as_deref(), Some("10.9.9.9"));
        assert!(f[0].summary.contains("35 of 40"), "{}", f[0].summary);
        assert!(f[0].summary.contains("curl[7]"));
        // Spread evenly: nothing.
        let even = TraceSummary {
            retransmits: vec![
                r("10.9.9.9", 1, 5),
                r("10.1.1.1", 2, 5),
                r("10.2.2.2", 3, 5),
            ],
            ..Default::default()
        };
        assert!(findings(&even).is_empty());
    }

    #[test]
    fn buffer_stopping_at_tcp_rmem_max_or_so_rcvbuf() {
        let step = |rcvbuf| BufferStep {
            wall_ns: 0,
            rcvbuf,
            window_clamp: rcvbuf / 2,
        };
        let auto = BufferGrowth {
            conn: conn("10.0.0.2", 5),
            owner: None,
            steps: vec![step(131072), step(6291456)],
            locked: false,
            grow_calls_at_final: 12,
        };
        let s = TraceSummary {
            limits: RmemLimits {
                tcp_rmem: [4096, 131072, 6291456],
                rmem_max: 212992,
            },
            buffers: vec![
                auto.clone(),
                BufferGrowth {
                    locked: true,
                    steps: vec![step(131072)],
                    grow_calls_at_final: 0,
                    ..auto.clone()
                },
                BufferGrowth {
                    steps: vec![step(131072), step(262144)],
                    ..auto
                },
            ],
            ..Default::default()
        };
        let f = findings(&s);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].layer, Layer::Host);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0].summary.contains("tcp_rmem[2]"));
        assert_eq!(f[1].layer, Layer::Application);
        assert!(f[1].summary.contains("SO_RCVBUF"));
    }

    #[test]
    fn slow_collapse_is_reported_only_when_timed() {
        let s = TraceSummary {
            collapse: Some(FunctionTiming {
                calls: 1552,
                total_ns: 1552 * 3_000_000,
                max_ns: 21_000_000,
                max_at_wall_ns: 0,
            }),
            ..Default::default()
        };
        let f = findings(&s);
        assert_eq!(f[0].id, "tcp-collapse-stall");
        assert!(findings(&TraceSummary::default()).is_empty());
    }
}
