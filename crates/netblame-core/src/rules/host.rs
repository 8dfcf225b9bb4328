//! Host findings: sysctls that bound the window, known kernel issues, and counters that rose over
//! the window (collapse/prune, softnet squeeze and drops, zero-window and backlog drops, listen
//! overflows, RTO timeouts and retransmits, TCP memory pressure, NIC allowance and qdisc drops,
//! TX queue skew, cgroup CPU throttling). Reference: kernel-tcp.md sections 4 and 5.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::observe::host::{Counter, HostSnapshot, QueueDir};
use crate::observe::transfer::{ReceiverFacts, Transfer};
use crate::rules::receiver;
use crate::units::{format_duration, Bytes};
use crate::window::COLLAPSE_COMPROMISE_BYTES;
use std::collections::BTreeMap;
use std::time::Duration;

const fn spec(id: &'static str, layer: Layer, title: &'static str) -> FindingSpec {
    FindingSpec { id, layer, title }
}

/// Receive queues hit their limit: collapse and prune ran.
pub const RMEM_COLLAPSE_SPIKES: FindingSpec = spec(
    "rmem-collapse-spikes",
    Layer::Host,
    "receive queues hit their limit: tcp_collapse/prune ran (latency spikes with large tcp_rmem)",
);
/// NET_RX softirq ran out of budget.
pub const SOFTNET_SQUEEZE: FindingSpec = spec(
    "softnet-squeeze",
    Layer::Host,
    "softirq packet processing ran out of budget with work left (time_squeeze rising)",
);
/// The per-CPU backlog was full.
pub const SOFTNET_DROPS: FindingSpec = spec(
    "softnet-drops",
    Layer::Host,
    "packets dropped because the per-CPU backlog (netdev_max_backlog) was full",
);
/// Socket backlogs overflowed while applications held their sockets.
pub const SOCKET_BACKLOG_DROPS: FindingSpec = spec(
    "socket-backlog-drops",
    Layer::Application,
    "segments dropped because a socket's backlog was full while the application held it",
);
/// TCP memory pressure.
pub const TCP_MEMORY_PRESSURE: FindingSpec = spec(
    "tcp-memory-pressure",
    Layer::Host,
    "TCP memory is under pressure (tcp_mem): buffers shrink and data is dropped",
);
/// The NIC dropped packets over the instance's allowance.
pub const NIC_ALLOWANCE_EXCEEDED: FindingSpec = spec(
    "nic-allowance-exceeded",
    Layer::Network,
    "the NIC reports packets dropped for exceeding the instance's bandwidth/PPS allowance",
);
/// A qdisc dropped packets.
pub const QDISC_DROPS: FindingSpec = spec(
    "qdisc-drops",
    Layer::Host,
    "a queueing discipline dropped packets",
);
/// One TX queue carries nearly everything.
pub const TX_QUEUE_SKEW: FindingSpec = spec(
    "tx-queue-skew",
    Layer::Host,
    "one TX queue carries nearly all packets of a multi-queue device",
);
/// A cgroup owning TCP sockets was CPU-throttled.
pub const CPU_THROTTLED: FindingSpec = spec(
    "cpu-throttled",
    Layer::Host,
    "a cgroup that owns TCP sockets was CPU-throttled",
);

/// Findings this module builds.
pub const FINDINGS: &[&FindingSpec] = &[
    &RMEM_COLLAPSE_SPIKES,
    &SOFTNET_SQUEEZE,
    &SOFTNET_DROPS,
    &SOCKET_BACKLOG_DROPS,
    &TCP_MEMORY_PRESSURE,
    &NIC_ALLOWANCE_EXCEEDED,
    &QDISC_DROPS,
    &TX_QUEUE_SKEW,
    &CPU_THROTTLED,
];

/// Share of a multi-queue device's TX packets on one queue that counts as skew.
pub const TX_SKEW_SHARE: f64 = 0.9;
/// Below this many TX packets over the window, queue skew is not judged.
pub const MIN_PACKETS_FOR_SKEW: u64 = 1000;

/// Host resources: collapse and prune, softnet, socket backlogs, TCP memory, NIC allowance,
/// qdisc drops, TX queue skew, CPU throttling, and zero windows counted host-wide.
pub fn judge(snap: &HostSnapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    collapse_rule(snap, &mut out);
    softnet_rules(snap, &mut out);
    receiver_rules(snap, &mut out);
    memory_rule(snap, &mut out);
    nic_rules(snap, &mut out);
    throttle_rule(snap, &mut out);
    out
}

fn window_text(snap: &HostSnapshot) -> String {
    format_duration(Duration::from_micros(snap.window_us))
}

fn collapse_rule(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let prune = snap.delta(Counter::PruneCalled);
    let collapsed = snap.delta(Counter::TCPRcvCollapsed);
    let rcv_pruned = snap.delta(Counter::RcvPruned);
    let ofo_pruned = snap.delta(Counter::OfoPruned);
    if prune + collapsed + rcv_pruned + ofo_pruned == 0 {
        return;
    }
    let rmem_max = snap
        .sysctl_ints("net.ipv4.tcp_rmem")
        .and_then(|v| v.get(2).copied())
        .unwrap_or(0)
        .max(0) as u64;
    let large = rmem_max > COLLAPSE_COMPROMISE_BYTES;
    let severity = if rcv_pruned > 0 || large {
        Severity::Warning
    } else {
        Severity::Info
    };
    let secs = snap.window_secs();
    let mut why = format!(
        "over {}: PruneCalled +{prune}, TCPRcvCollapsed +{collapsed} skbs, OfoPruned +{ofo_pruned}, RcvPruned +{rcv_pruned}. \
         A receive queue over its limit runs tcp_prune_queue: tcp_collapse copies the queue into dense skbs in softirq, \
         then drops (RcvPruned). Evidence from counters: how long each collapse took needs function \
         tracing (`netblame trace` times tcp_collapse as tcp-collapse-stall where the kernel allows it).",
        window_text(snap)
    );
    if large {
        why += &format!(
            " With tcp_rmem[2] = {} a full queue is large and each collapse can stall packet processing for milliseconds \
             (Cloudflare measured 21 ms collapses at 32 MiB, 3 ms at 2 MiB).",
            Bytes(rmem_max)
        );
    }
    out.push(
        Finding::new(
            &RMEM_COLLAPSE_SPIKES,
            severity,
            format!(
                "receive queues overflowed {:.1} times/s: collapse and prune ran{}",
                prune as f64 / secs,
                if large { " on large buffers" } else { "" }
            ),
        )
        .evidence("prune_called", prune as f64, Unit::Count)
        .evidence("rcv_collapsed", collapsed as f64, Unit::Count)
        .evidence("rcv_pruned", rcv_pruned as f64, Unit::Count)
        .evidence("ofo_pruned", ofo_pruned as f64, Unit::Count)
        .evidence("tcp_rmem_max", rmem_max as f64, Unit::Bytes)
        .explain(why)
        .fix(if large {
            "size tcp_rmem[2] to the BDP your paths need, no larger (Cloudflare settled on 4 MiB): \
             netblame tune --rate R --rtt T --profile latency; and find the receivers that read slowly"
        } else {
            "receivers fill their buffers faster than they read: make the applications read promptly"
        }),
    );
}

fn softnet_rules(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let rows = snap.softnet_deltas();
    let squeeze: u64 = rows.iter().map(|r| r.time_squeeze).sum();
    let dropped: u64 = rows.iter().map(|r| r.dropped).sum();
    let processed: u64 = rows.iter().map(|r| r.processed).sum();
    let secs = snap.window_secs();
    let budget = snap.sysctl_int("net.core.netdev_budget");
    let usecs = snap.sysctl_int("net.core.netdev_budget_usecs");
    if squeeze > 0 {
        let worst = rows.iter().max_by_key(|r| r.time_squeeze).map(|r| r.cpu);
        let mut f = Finding::new(
            &SOFTNET_SQUEEZE,
            Severity::Warning,
            format!(
                "net_rx_action ran out of budget {:.1} times/s with packets left",
                squeeze as f64 / secs
            ),
        )
        .evidence("time_squeeze", squeeze as f64, Unit::Count)
        .evidence("time_squeeze_rate", squeeze as f64 / secs, Unit::PerSecond)
        .evidence("processed", processed as f64, Unit::Count);
        if let Some(b) = budget {
            f = f.evidence("netdev_budget", b as f64, Unit::Count);
        }
        if let Some(u) = usecs {
            f = f.evidence("netdev_budget_usecs", u as f64, Unit::Microseconds);
        }
        out.push(
            f.explain(format!(
                "/proc/net/softnet_stat column 3 rose by {squeeze} over {} (most on CPU {}): each softirq run stopped at \
                 netdev_budget={} packets or netdev_budget_usecs={} with work queued, so packets wait for the next run",
                window_text(snap),
                worst.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                budget.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
                usecs.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
            ))
            .fix("raise net.core.netdev_budget (e.g. 600) and net.core.netdev_budget_usecs (e.g. 4000), spread IRQs/RPS over more CPUs, \
                  and look for what makes each run slow (tcp_collapse on huge buffers)"),
        );
    }
    if dropped > 0 {
        let backlog = snap.sysctl_int("net.core.netdev_max_backlog");
        let mut f = Finding::new(
            &SOFTNET_DROPS,
            Severity::Critical,
            format!("{dropped} packets dropped at the per-CPU input backlog"),
        )
        .evidence("dropped", dropped as f64, Unit::Count)
        .evidence("dropped_rate", dropped as f64 / secs, Unit::PerSecond);
        if let Some(b) = backlog {
            f = f.evidence("netdev_max_backlog", b as f64, Unit::Count);
        }
        out.push(
            f.explain(format!(
                "/proc/net/softnet_stat column 2 rose by {dropped} over {}: the backlog queue (netdev_max_backlog={}) was full, \
                 the kernel dropped the packets and TCP will retransmit them",
                window_text(snap),
                backlog.map(|b| b.to_string()).unwrap_or_else(|| "?".into())
            ))
            .fix("raise net.core.netdev_max_backlog (e.g. 5000) and the softirq budget; spread receive processing (RSS/RPS)"),
        );
    }
}

fn receiver_rules(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let zwd = snap.delta(Counter::TCPZeroWindowDrop);
    let to_zero = snap.delta(Counter::TCPToZeroWindowAdv);
    let beyond = snap.delta(Counter::BeyondWindow);
    if zwd + to_zero > 0 {
        let host = Transfer {
            subject: "this host".into(),
            receiver: ReceiverFacts {
                who: Some("receivers on this host".into()),
                zero_windows: to_zero,
                ..Default::default()
            },
            ..Default::default()
        };
        out.push(
            receiver::receiver_zero_window(&host)
                .evidence("zero_window_drops", zwd as f64, Unit::Count)
                .evidence("beyond_window_drops", beyond as f64, Unit::Count)
                .evidence("to_zero_window_rate", to_zero as f64 / snap.window_secs(), Unit::PerSecond)
                .explain(format!(
                    "TcpExt.TCPToZeroWindowAdv +{to_zero}, TCPZeroWindowDrop +{zwd}, BeyondWindow +{beyond} over {}: a \
                     receive buffer filled because its application did not read, the receiver advertised a zero window \
                     and the sender had to stop and probe{}",
                    window_text(snap),
                    if zwd + beyond > 0 {
                        format!("; {} segments arrived for a closed window and were dropped (retransmitted later)", zwd + beyond)
                    } else {
                        String::new()
                    }
                ))
                .fix(
                    "find the connections with a growing Recv-Q (netblame sockets --problems) and make that application \
                     read faster; larger buffers only delay the stall",
                ),
        );
    }
    let backlog = snap.delta(Counter::TCPBacklogDrop);
    if backlog > 0 {
        out.push(
            Finding::new(
                &SOCKET_BACKLOG_DROPS,
                Severity::Warning,
                format!("{backlog} segments dropped at full socket backlogs"),
            )
            .evidence("backlog_drops", backlog as f64, Unit::Count)
            .explain(format!(
                "TcpExt.TCPBacklogDrop +{backlog} over {}: segments arrived while the application held the socket lock and \
                 the backlog (bounded by sk_rcvbuf + sk_sndbuf) was full",
                window_text(snap)
            ))
            .fix("the owning application holds its sockets too long (large sends/receives under lock, a starved thread); \
                  give it CPU, or raise tcp_rmem so the backlog limit is larger"),
        );
    }
}

fn memory_rule(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let pressures = snap.delta(Counter::TCPMemoryPressures);
    let chrono_ms = snap.delta(Counter::TCPMemoryPressuresChrono);
    let rcvq_drop = snap.delta(Counter::TCPRcvQDrop);
    let ofo_drop = snap.delta(Counter::TCPOFODrop);
    let tcp_mem = snap
        .sysctl_ints("net.ipv4.tcp_mem")
        .filter(|v| v.len() == 3);
    let pages = snap.after.tcp_mem_pages;
    let over_pressure = match (&tcp_mem, pages) {
        (Some(m), Some(p)) => p as i64 >= m[1],
        _ => false,
    };
    if pressures == 0 && chrono_ms == 0 && rcvq_drop == 0 && !over_pressure {
        return;
    }
    let severity = if pressures > 0 || over_pressure {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut f = Finding::new(
        &TCP_MEMORY_PRESSURE,
        severity,
        if pressures > 0 || over_pressure {
            "TCP memory is under pressure: the kernel shrinks buffers and drops data".to_string()
        } else {
            format!("{rcvq_drop} segments dropped because receive memory could not be charged")
        },
    )
    .evidence("memory_pressures", pressures as f64, Unit::Count)
    .evidence("pressure_time", chrono_ms as f64, Unit::Milliseconds)
    .evidence("rcvq_drops", rcvq_drop as f64, Unit::Count)
    .evidence("ofo_drops", ofo_drop as f64, Unit::Count);
    let mut why = format!(
        "TcpExt.TCPMemoryPressures +{pressures}, TCPMemoryPressuresChrono +{chrono_ms} ms, TCPRcvQDrop +{rcvq_drop}, \
         TCPOFODrop +{ofo_drop} over {}",
        window_text(snap)
    );
    if let (Some(m), Some(p)) = (&tcp_mem, pages) {
        f = f.evidence("tcp_mem_pages", p as f64, Unit::Count).evidence(
            "tcp_mem_pressure_pages",
            m[1] as f64,
            Unit::Count,
        );
        why += &format!(
            "; TCP uses {p} pages (sockstat) against tcp_mem = {} {} {} (pressure at {}, pages of 4 KiB)",
            m[0], m[1], m[2], m[1]
        );
    }
    out.push(f.explain(why).fix(
        "raise net.ipv4.tcp_mem (pages) if the host has memory to spare, and find what holds TCP memory: \
         receivers that do not read (Recv-Q) and oversized tcp_rmem/tcp_wmem maxima times many connections",
    ));
}

fn nic_rules(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    for nic in snap.nic_deltas() {
        let exceeded: BTreeMap<&str, u64> = nic
            .stats
            .iter()
            .filter(|(k, v)| k.contains("allowance_exceeded") && **v > 0)
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        if exceeded.is_empty() {
            continue;
        }
        let total: u64 = exceeded.values().sum();
        let mut f = Finding::new(
            &NIC_ALLOWANCE_EXCEEDED,
            Severity::Critical,
            format!(
                "{}: {total} packets over the instance's network allowance",
                nic.device
            ),
        )
        .subject(format!("dev {}", nic.device));
        let mut parts = Vec::new();
        for (k, v) in &exceeded {
            f = f.evidence(k, *v as f64, Unit::Count);
            parts.push(format!("{k} +{v}"));
        }
        out.push(
            f.explain(format!(
                "ethtool -S {} over {}: {}. The hypervisor dropped (or queued) these packets because the instance exceeded \
                 its bandwidth, PPS or connection-tracking allowance; TCP sees loss and retransmits",
                nic.device,
                window_text(snap),
                parts.join(", ")
            ))
            .fix("move to an instance type with a higher network allowance, spread traffic over more instances, or \
                  smooth bursts (pacing: default_qdisc=fq)"),
        );
    }
    let roots_mq: Vec<(String, String)> = snap
        .after
        .qdiscs
        .iter()
        .filter(|q| q.kind == "mq" || q.kind == "mqprio")
        .map(|q| (q.device.clone(), q.handle.clone()))
        .collect();
    for q in snap.qdisc_deltas() {
        if q.drops == 0
            || roots_mq
                .iter()
                .any(|(d, h)| *d == q.device && *h == q.handle)
        {
            continue;
        }
        out.push(
            Finding::new(
                &QDISC_DROPS,
                Severity::Warning,
                format!("qdisc {} on {} dropped {} packets", q.kind, q.device, q.drops),
            )
            .subject(format!("dev {} qdisc {} {}", q.device, q.kind, q.handle))
            .evidence("drops", q.drops as f64, Unit::Count)
            .evidence("packets", q.packets as f64, Unit::Count)
            .evidence("requeues", q.requeues as f64, Unit::Count)
            .evidence("overlimits", q.overlimits as f64, Unit::Count)
            .evidence("backlog", q.backlog_bytes as f64, Unit::Bytes)
            .explain(format!(
                "tc -s qdisc: {} drops, {} requeues, {} overlimits for {} packets over {}: the queue (or its shaper) was \
                 full, so the host itself dropped outgoing packets",
                q.drops,
                q.requeues,
                q.overlimits,
                q.packets,
                window_text(snap)
            ))
            .fix("raise the qdisc limit or the shaper rate, use fq (pacing) or fq_codel, and check the TX queues are all used"),
        );
    }
    let mut by_dev: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let deltas = snap.queue_deltas();
    for q in deltas.iter().filter(|q| q.dir == QueueDir::Tx) {
        by_dev.entry(&q.device).or_default().push(q.packets);
    }
    for (dev, counts) in by_dev {
        if counts.len() < 2 {
            continue;
        }
        let total: u64 = counts.iter().sum();
        let (top_idx, top) = counts
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .map(|(i, c)| (i, *c))
            .unwrap_or((0, 0));
        if total < MIN_PACKETS_FOR_SKEW {
            continue;
        }
        let share = top as f64 / total as f64;
        if share < TX_SKEW_SHARE {
            continue;
        }
        let idx = deltas
            .iter()
            .filter(|q| q.dir == QueueDir::Tx && q.device == dev)
            .nth(top_idx)
            .map(|q| q.index)
            .unwrap_or(top_idx as u32);
        out.push(
            Finding::new(
                &TX_QUEUE_SKEW,
                Severity::Warning,
                format!(
                    "{dev}: TX queue {idx} carried {:.0}% of {total} packets across {} queues",
                    share * 100.0,
                    counts.len()
                ),
            )
            .subject(format!("dev {dev}"))
            .evidence("queues", counts.len() as f64, Unit::Count)
            .evidence("top_queue_packets", top as f64, Unit::Count)
            .evidence("total_packets", total as f64, Unit::Count)
            .evidence("top_queue_share", share * 100.0, Unit::Percent)
            .explain(format!(
                "tx-{idx}: {top} of {total} packets over {} = {:.1}%; the other {} queues (and the CPUs and NIC rings behind \
                 them) idle while one saturates (the Datadog ENA case: a kernel bug mapped all traffic to queue 0)",
                window_text(snap),
                share * 100.0,
                counts.len() - 1
            ))
            .fix("check XPS (/sys/class/net/DEV/queues/tx-N/xps_cpus), the qdisc (mq with children per queue), and known \
                  queue-selection bugs in the driver/kernel; few flows hash to few queues by design"),
        );
    }
}

fn throttle_rule(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let window = snap.window_us.max(1);
    for cg in snap.cgroup_deltas() {
        if cg.nr_throttled == 0 && cg.throttled_usec == 0 {
            continue;
        }
        let period_share = if cg.nr_periods > 0 {
            cg.nr_throttled as f64 / cg.nr_periods as f64
        } else {
            0.0
        };
        let severity = if period_share >= 0.25 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let owners: Vec<String> = cg
            .owners
            .iter()
            .map(|o| format!("{} (pid {}, {} sockets)", o.command, o.pid, o.sockets))
            .collect();
        let mut f = Finding::new(
            &CPU_THROTTLED,
            severity,
            format!(
                "{} was CPU-throttled in {} of {} periods",
                cg.container
                    .as_ref()
                    .map(|c| c.label())
                    .unwrap_or_else(|| format!("cgroup {}", cg.path)),
                cg.nr_throttled,
                cg.nr_periods
            ),
        )
        .subject(format!("cgroup {}", cg.path))
        .evidence("nr_throttled", cg.nr_throttled as f64, Unit::Count)
        .evidence("nr_periods", cg.nr_periods as f64, Unit::Count)
        .evidence(
            "throttled_time",
            cg.throttled_usec as f64,
            Unit::Microseconds,
        )
        .evidence(
            "throttled_share",
            cg.throttled_usec as f64 / window as f64 * 100.0,
            Unit::Percent,
        );
        let mut quota = String::new();
        if let (Some(q), Some(p)) = (cg.quota_usec, cg.period_usec) {
            f = f.evidence("cpu_limit", q as f64 / p.max(1) as f64, Unit::Number);
            quota = format!(
                " (quota {q} us per {p} us = {:.2} CPUs)",
                q as f64 / p.max(1) as f64
            );
        }
        out.push(
            f.explain(format!(
                "cpu.stat over {}: nr_throttled +{} of nr_periods +{} ({:.0}%), throttled {} in total{quota}. While throttled, \
                 {} cannot read or write its sockets: peers see zero windows, retransmits and latency spikes (the Datadog \
                 Envoy case)",
                window_text(snap),
                cg.nr_throttled,
                cg.nr_periods,
                period_share * 100.0,
                format_duration(Duration::from_micros(cg.throttled_usec)),
                if owners.is_empty() { "the owning process".to_string() } else { owners.join(", ") }
            ))
            .fix("raise the CPU limit (cpu.max / Kubernetes limits) of this cgroup or reduce its work; throttling at \
                  moderate average CPU means bursts exceed the quota"),
        );
    }
}
