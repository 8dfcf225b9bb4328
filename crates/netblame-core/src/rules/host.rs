//! Host findings: sysctls that bound the window, known kernel issues, and counters that rose over
//! the window (collapse/prune, softnet squeeze and drops, zero-window and backlog drops, listen
//! overflows, RTO timeouts and retransmits, TCP memory pressure, NIC allowance and qdisc drops,
//! TX queue skew, cgroup CPU throttling). Reference: kernel-tcp.md sections 4 and 5.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::kernel::{KernelVersion, BACKPORT_CAVEAT};
use crate::known_issues::{self, Trigger};
use crate::observe::host::{HostSnapshot, QueueDir};
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::{bdp_bytes, buffers_for_window, ceiling_bps};
use std::collections::BTreeMap;
use std::time::Duration;

const fn spec(id: &'static str, layer: Layer, title: &'static str) -> FindingSpec {
    FindingSpec { id, layer, title }
}

/// Findings this module produces (besides the kernel known issues it reports by their own ids).
pub const FINDINGS: &[FindingSpec] = &[
    spec("window-scaling-off", Layer::Host, "net.ipv4.tcp_window_scaling=0 caps every window at 64 KiB"),
    spec("autotuning-off", Layer::Host, "net.ipv4.tcp_moderate_rcvbuf=0 disables receive-buffer autotuning"),
    spec("buffer-max-below-bdp", Layer::Host, "a buffer maximum is below what the bandwidth-delay product of the named path needs"),
    spec("rmem-collapse-spikes", Layer::Host, "receive queues hit their limit: tcp_collapse/prune ran (latency spikes with large tcp_rmem)"),
    spec("adv-win-scale-ignored", Layer::Kernel, "net.ipv4.tcp_adv_win_scale was changed, but this kernel ignores it"),
    spec("softnet-squeeze", Layer::Host, "softirq packet processing ran out of budget with work left (time_squeeze rising)"),
    spec("softnet-drops", Layer::Host, "packets dropped because the per-CPU backlog (netdev_max_backlog) was full"),
    spec("socket-backlog-drops", Layer::Application, "segments dropped because a socket's backlog was full while the application held it"),
    spec("listen-overflows", Layer::Application, "accept queues overflowed: clients see SYN retransmits (1 s or more of connect delay)"),
    spec("rto-timeouts", Layer::Network, "retransmission timeouts fired: connections stalled for at least one RTO"),
    spec("retransmit-rate", Layer::Network, "a large share of sent segments were retransmissions"),
    spec("tcp-memory-pressure", Layer::Host, "TCP memory is under pressure (tcp_mem): buffers shrink and data is dropped"),
    spec("nic-allowance-exceeded", Layer::Network, "the NIC reports packets dropped for exceeding the instance's bandwidth/PPS allowance"),
    spec("qdisc-drops", Layer::Host, "a queueing discipline dropped packets"),
    spec("tx-queue-skew", Layer::Host, "one TX queue carries nearly all packets of a multi-queue device"),
    spec("cpu-throttled", Layer::Host, "a cgroup that owns TCP sockets was CPU-throttled"),
];

use crate::catalogue::spec as find;

/// Above this `tcp_rmem[2]` the collapse of a full queue is slow (Cloudflare settled on 4 MiB).
pub const COLLAPSE_COMPROMISE_BYTES: u64 = 4 << 20;
/// Below this many segments sent, a retransmit share is not judged.
pub const MIN_SEGMENTS_FOR_RATE: u64 = 1000;
/// Share of retransmitted segments that warrants a warning (and ×5 a critical).
pub const RETRANS_WARN_SHARE: f64 = 0.01;
/// Share of a multi-queue device's TX packets on one queue that counts as skew.
pub const TX_SKEW_SHARE: f64 = 0.9;
/// Below this many TX packets over the window, queue skew is not judged.
pub const MIN_PACKETS_FOR_SKEW: u64 = 1000;

/// A path the user names: its rate and round-trip time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathSpec {
    pub rate_bps: f64,
    pub rtt: Duration,
}

/// Judges a host snapshot; `path` adds the buffer-versus-BDP checks.
pub fn judge(snap: &HostSnapshot, path: Option<PathSpec>) -> Vec<Finding> {
    let mut out = Vec::new();
    sysctl_rules(snap, path, &mut out);
    kernel_rules(snap, &mut out);
    collapse_rule(snap, &mut out);
    softnet_rules(snap, &mut out);
    receiver_rules(snap, &mut out);
    loss_rules(snap, &mut out);
    memory_rule(snap, &mut out);
    nic_rules(snap, &mut out);
    throttle_rule(snap, &mut out);
    out
}

/// Every protocol counter the host rules read (`/proc/net/snmp` and `netstat` names), so
/// reports can show the ones behind the findings; a test keeps the list in step with the rules.
pub const COUNTERS_READ: &[&str] = &[
    "Tcp.OutSegs",
    "Tcp.RetransSegs",
    "TcpExt.BeyondWindow",
    "TcpExt.ListenDrops",
    "TcpExt.ListenOverflows",
    "TcpExt.OfoPruned",
    "TcpExt.PruneCalled",
    "TcpExt.RcvPruned",
    "TcpExt.TCPAbortOnTimeout",
    "TcpExt.TCPBacklogDrop",
    "TcpExt.TCPLostRetransmit",
    "TcpExt.TCPMemoryPressures",
    "TcpExt.TCPMemoryPressuresChrono",
    "TcpExt.TCPOFODrop",
    "TcpExt.TCPRcvCollapsed",
    "TcpExt.TCPRcvQDrop",
    "TcpExt.TCPSynRetrans",
    "TcpExt.TCPTimeouts",
    "TcpExt.TCPToZeroWindowAdv",
    "TcpExt.TCPZeroWindowDrop",
];

fn d(snap: &HostSnapshot, key: &str) -> u64 {
    snap.proto_delta(key).unwrap_or(0)
}

fn window_text(snap: &HostSnapshot) -> String {
    format_duration(Duration::from_micros(snap.window_us))
}

fn sysctl_rules(snap: &HostSnapshot, path: Option<PathSpec>, out: &mut Vec<Finding>) {
    if snap.sysctl_int("net.ipv4.tcp_window_scaling") == Some(0) {
        let mut f = Finding::new(
            find("window-scaling-off"),
            Severity::Critical,
            "window scaling is off: no connection can have more than 64 KiB in flight",
        )
        .evidence("tcp_window_scaling", 0.0, Unit::Number)
        .evidence("max_window", 65535.0, Unit::Bytes)
        .fix("sysctl -w net.ipv4.tcp_window_scaling=1 (and persist it in /etc/sysctl.d); new connections pick it up");
        let mut why = "without the window scale option (RFC 7323) the 16-bit window field caps the window at 65,535 B".to_string();
        if let Some(p) = path {
            let c = ceiling_bps(65535, p.rtt);
            f = f.evidence("ceiling", c, Unit::BitsPerSecond);
            why += &format!(
                "; 65,535 B x 8 / {} = {} ceiling on the {} path",
                format_duration(p.rtt),
                BitRate(c),
                BitRate(p.rate_bps)
            );
        }
        out.push(f.explain(why));
    }
    if snap.sysctl_int("net.ipv4.tcp_moderate_rcvbuf") == Some(0) {
        out.push(
            Finding::new(
                find("autotuning-off"),
                Severity::Warning,
                "receive-buffer autotuning is off: every socket stays at tcp_rmem[1]",
            )
            .evidence("tcp_moderate_rcvbuf", 0.0, Unit::Number)
            .explain("with tcp_moderate_rcvbuf=0 the kernel never grows a socket's receive buffer past tcp_rmem[1], so the window stays at about half of it")
            .fix("sysctl -w net.ipv4.tcp_moderate_rcvbuf=1: never disable autotuning; bound it with tcp_rmem[2] instead"),
        );
    }
    let Some(p) = path else { return };
    let kernel = snap
        .kernel
        .clone()
        .unwrap_or_else(|| KernelVersion::new(6, 12, 0));
    let bdp = bdp_bytes(p.rate_bps, p.rtt);
    let plan = buffers_for_window(&kernel, bdp);
    let need = (bdp as f64 / plan.window_fraction).ceil() as u64;
    let checks: [(&str, usize, &str, bool); 4] = [
        ("net.ipv4.tcp_rmem", 2, "autotuned receivers", true),
        ("net.ipv4.tcp_wmem", 2, "autotuned senders", true),
        (
            "net.core.rmem_max",
            0,
            "applications that set SO_RCVBUF",
            false,
        ),
        (
            "net.core.wmem_max",
            0,
            "applications that set SO_SNDBUF",
            false,
        ),
    ];
    for (name, idx, who, main) in checks {
        let Some(v) = snap.sysctl_ints(name).and_then(|v| v.get(idx).copied()) else {
            continue;
        };
        let have = v.max(0) as u64;
        if have >= need {
            continue;
        }
        let window = (have as f64 * plan.window_fraction) as u64;
        let ceiling = ceiling_bps(window, p.rtt);
        let severity = match (main, window < bdp / 2) {
            (true, true) => Severity::Critical,
            (true, false) => Severity::Warning,
            (false, _) => Severity::Info,
        };
        let label = if idx > 0 {
            format!("{name}[{idx}]")
        } else {
            name.to_string()
        };
        out.push(
            Finding::new(
                find("buffer-max-below-bdp"),
                severity,
                format!(
                    "{label} = {} allows about {} of window: {} is needed for {} at {} RTT",
                    Bytes(have),
                    Bytes(window),
                    Bytes(bdp),
                    BitRate(p.rate_bps),
                    format_duration(p.rtt)
                ),
            )
            .subject(label.clone())
            .evidence("buffer_max", have as f64, Unit::Bytes)
            .evidence("bdp", bdp as f64, Unit::Bytes)
            .evidence("buffer_needed", need as f64, Unit::Bytes)
            .evidence("ceiling", ceiling, Unit::BitsPerSecond)
            .explain(format!(
                "BDP = {} x {} / 8 = {} B; window = buffer x {:.2} on {kernel}, so the buffer must be {} B; \
                 {} B x {:.2} = {} B of window / {} = {} ceiling for {who}",
                BitRate(p.rate_bps),
                format_duration(p.rtt),
                bdp,
                plan.window_fraction,
                need,
                have,
                plan.window_fraction,
                window,
                format_duration(p.rtt),
                BitRate(ceiling)
            ))
            .fix(format!(
                "netblame tune --rate {} --rtt {} (sets {label} to {} and keeps autotuning on)",
                crate::tune::rate_arg(p.rate_bps),
                crate::units::duration_exact_string(p.rtt),
                plan.buffer_bytes
            )),
        );
    }
}

fn kernel_rules(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let Some(kernel) = &snap.kernel else { return };
    if kernel.at_least(6, 6, 0) {
        if let Some(a) = snap.sysctl_int("net.ipv4.tcp_adv_win_scale") {
            if a != 1 {
                out.push(
                    Finding::new(
                        find("adv-win-scale-ignored"),
                        Severity::Warning,
                        format!("tcp_adv_win_scale={a} has no effect on {kernel}"),
                    )
                    .evidence("tcp_adv_win_scale", a as f64, Unit::Number)
                    .explain(format!(
                        "from 6.6 (dfa2f0483360) the window is sk_rcvbuf x scaling_ratio / 256, measured per \
                         connection; tcp_adv_win_scale is read by nothing. {BACKPORT_CAVEAT}"
                    ))
                    .fix("size buffers with tcp_rmem instead (netblame tune); drop the tcp_adv_win_scale setting to avoid confusion"),
                );
            }
        }
    }
    for issue in known_issues::affecting(kernel) {
        let (severity, scope) = match issue.trigger {
            Trigger::Always => (Severity::Warning, "every connection"),
            Trigger::FixedRcvbuf => (
                Severity::Info,
                "only sockets whose application sets SO_RCVBUF",
            ),
        };
        out.push(issue.finding(kernel, severity, scope));
    }
}

fn collapse_rule(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let prune = d(snap, "TcpExt.PruneCalled");
    let collapsed = d(snap, "TcpExt.TCPRcvCollapsed");
    let rcv_pruned = d(snap, "TcpExt.RcvPruned");
    let ofo_pruned = d(snap, "TcpExt.OfoPruned");
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
         then drops (RcvPruned).",
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
            find("rmem-collapse-spikes"),
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
            find("softnet-squeeze"),
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
            find("softnet-drops"),
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
    let secs = snap.window_secs();
    let zwd = d(snap, "TcpExt.TCPZeroWindowDrop");
    let to_zero = d(snap, "TcpExt.TCPToZeroWindowAdv");
    let beyond = d(snap, "TcpExt.BeyondWindow");
    if zwd + to_zero > 0 {
        let dropped = zwd + beyond;
        out.push(
            Finding::new(
                find("receiver-zero-window"),
                Severity::Warning,
                if zwd > 0 {
                    format!("receivers advertised a zero window {to_zero} times; {zwd} segments arrived into it and were dropped")
                } else {
                    format!("receivers advertised a zero window {to_zero} times ({:.1}/s): applications stopped reading", to_zero as f64 / secs)
                },
            )
            .evidence("to_zero_window_adv", to_zero as f64, Unit::Count)
            .evidence("zero_window_drops", zwd as f64, Unit::Count)
            .evidence("beyond_window_drops", beyond as f64, Unit::Count)
            .evidence("to_zero_window_rate", to_zero as f64 / secs, Unit::PerSecond)
            .explain(format!(
                "TcpExt.TCPToZeroWindowAdv +{to_zero}, TCPZeroWindowDrop +{zwd}, BeyondWindow +{beyond} over {}: a receive \
                 buffer filled because its application did not read, the receiver advertised a zero window and the sender \
                 had to stop and probe{}",
                window_text(snap),
                if dropped > 0 {
                    format!("; {dropped} segments arrived for a closed window and were dropped (retransmitted later)")
                } else {
                    String::new()
                }
            ))
            .fix("find the connections with a growing Recv-Q (netblame sockets --problems) and make that application read \
                  faster; larger buffers only delay the stall"),
        );
    }
    let backlog = d(snap, "TcpExt.TCPBacklogDrop");
    if backlog > 0 {
        out.push(
            Finding::new(
                find("socket-backlog-drops"),
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
    let overflows = d(snap, "TcpExt.ListenOverflows");
    let drops = d(snap, "TcpExt.ListenDrops");
    if overflows + drops > 0 {
        let somaxconn = snap.sysctl_int("net.core.somaxconn");
        let linear = snap.sysctl_int("net.ipv4.tcp_syn_linear_timeouts");
        let schedule = match (&snap.kernel, linear) {
            (Some(k), Some(n)) if k.at_least(6, 5, 0) && n > 0 => {
                format!("after 1 s, then every second for the first {n} retries (tcp_syn_linear_timeouts={n})")
            }
            _ => "after 1 s, 3 s, 7 s, 15 s, 31 s".to_string(),
        };
        let mut f = Finding::new(
            find("listen-overflows"),
            Severity::Critical,
            format!("listen queues overflowed {overflows} times ({drops} SYNs dropped): clients wait for SYN retransmits"),
        )
        .evidence("listen_overflows", overflows as f64, Unit::Count)
        .evidence("listen_drops", drops as f64, Unit::Count)
        .evidence("syn_retrans", d(snap, "TcpExt.TCPSynRetrans") as f64, Unit::Count);
        if let Some(s) = somaxconn {
            f = f.evidence("somaxconn", s as f64, Unit::Count);
        }
        out.push(
            f.explain(format!(
                "TcpExt.ListenOverflows +{overflows}, ListenDrops +{drops} over {}: the accept queue (listen backlog, capped by \
                 somaxconn={}) was full, so the server dropped the SYN or final ACK; the client retransmits its SYN {schedule}, \
                 which looks exactly like packet loss from the client side",
                window_text(snap),
                somaxconn.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
            ))
            .fix("make the server accept() faster (more acceptor threads, less work before accept), and raise its listen() \
                  backlog together with net.core.somaxconn and net.ipv4.tcp_max_syn_backlog"),
        );
    }
}

fn loss_rules(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let secs = snap.window_secs();
    // TCPTimeouts also counts SYN/SYN-ACK timeouts (TCPSynRetrans): those are the listen-overflow
    // or SYN-loss signature, not stalls of established connections.
    let syn = d(snap, "TcpExt.TCPSynRetrans");
    let timeouts = d(snap, "TcpExt.TCPTimeouts").saturating_sub(syn);
    if timeouts > 0 {
        let aborts = d(snap, "TcpExt.TCPAbortOnTimeout");
        out.push(
            Finding::new(
                find("rto-timeouts"),
                if aborts > 0 { Severity::Critical } else { Severity::Warning },
                format!("{timeouts} retransmission timeouts ({:.1}/s), {aborts} connections aborted", timeouts as f64 / secs),
            )
            .evidence("timeouts", timeouts as f64, Unit::Count)
            .evidence("timeout_rate", timeouts as f64 / secs, Unit::PerSecond)
            .evidence("lost_retransmits", d(snap, "TcpExt.TCPLostRetransmit") as f64, Unit::Count)
            .evidence("aborted_on_timeout", aborts as f64, Unit::Count)
            .evidence("syn_retrans", syn as f64, Unit::Count)
            .explain(format!(
                "TcpExt.TCPTimeouts - TCPSynRetrans = {timeouts} over {}: each one stalls a connection for at least one RTO \
                 (200 ms minimum), doubling on repeats; fast retransmit could not recover the loss",
                window_text(snap)
            ))
            .fix("find the lossy path (netblame sockets shows which connections retransmit); check NIC, qdisc and \
                  softnet drops on both ends and the links between"),
        );
    }
    let retrans = d(snap, "Tcp.RetransSegs");
    let sent = d(snap, "Tcp.OutSegs");
    if sent >= MIN_SEGMENTS_FOR_RATE && retrans > 0 {
        let share = retrans as f64 / sent as f64;
        if share >= RETRANS_WARN_SHARE {
            let severity = if share >= RETRANS_WARN_SHARE * 5.0 {
                Severity::Critical
            } else {
                Severity::Warning
            };
            out.push(
                Finding::new(
                    find("retransmit-rate"),
                    severity,
                    format!("{:.2}% of sent segments were retransmissions", share * 100.0),
                )
                .evidence("retrans_segs", retrans as f64, Unit::Count)
                .evidence("out_segs", sent as f64, Unit::Count)
                .evidence("retransmit_share", share * 100.0, Unit::Percent)
                .explain(format!(
                    "Tcp.RetransSegs +{retrans} / Tcp.OutSegs +{sent} = {:.2}% over {} (above {:.0}%): loss shrinks the \
                     congestion window and every recovery costs round trips",
                    share * 100.0,
                    window_text(snap),
                    RETRANS_WARN_SHARE * 100.0
                ))
                .fix("find where packets are lost: NIC allowance and qdisc drops here, softnet drops on the receivers, \
                      congestion on the path"),
            );
        }
    }
}

fn memory_rule(snap: &HostSnapshot, out: &mut Vec<Finding>) {
    let pressures = d(snap, "TcpExt.TCPMemoryPressures");
    let chrono_ms = d(snap, "TcpExt.TCPMemoryPressuresChrono");
    let rcvq_drop = d(snap, "TcpExt.TCPRcvQDrop");
    let ofo_drop = d(snap, "TcpExt.TCPOFODrop");
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
        find("tcp-memory-pressure"),
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
            find("nic-allowance-exceeded"),
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
                find("qdisc-drops"),
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
                find("tx-queue-skew"),
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
            find("cpu-throttled"),
            severity,
            format!(
                "cgroup {} was throttled in {} of {} CPU periods",
                cg.path, cg.nr_throttled, cg.nr_periods
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

#[cfg(test)]
mod tests {
    #[test]
    fn counters_read_lists_every_counter_the_rules_read() {
        let src = include_str!("host.rs");
        let mut read: Vec<&str> = src
            .split("d(snap, \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        read.sort_unstable();
        read.dedup();
        let mut listed = super::COUNTERS_READ.to_vec();
        listed.sort_unstable();
        assert_eq!(
            read, listed,
            "COUNTERS_READ and the counters the rules read differ"
        );
    }

    use super::*;
    use crate::observe::host::{CgroupCpu, NicStats, QueueStats, SoftnetRow};

    fn base() -> HostSnapshot {
        let mut s = HostSnapshot {
            kernel: Some("6.18.44".parse().unwrap()),
            window_us: 5_000_000,
            ..Default::default()
        };
        for (k, v) in [
            ("net.ipv4.tcp_rmem", "4096 131072 33554432"),
            ("net.ipv4.tcp_wmem", "4096 16384 4194304"),
            ("net.core.rmem_max", "212992"),
            ("net.core.wmem_max", "212992"),
            ("net.ipv4.tcp_window_scaling", "1"),
            ("net.ipv4.tcp_adv_win_scale", "1"),
            ("net.ipv4.tcp_mem", "100 200 300"),
            ("net.core.somaxconn", "4096"),
        ] {
            s.sysctls.insert(k.into(), v.into());
        }
        s
    }

    fn bump(s: &mut HostSnapshot, key: &str, by: i64) {
        s.before.proto.insert(key.into(), 100);
        s.after.proto.insert(key.into(), 100 + by);
    }

    fn ids(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.id).collect()
    }

    #[test]
    fn quiet_host_has_only_kernel_notes() {
        let f = judge(&base(), None);
        assert!(f.iter().all(|f| f.layer == Layer::Kernel), "{:?}", ids(&f));
    }

    #[test]
    fn google_cloud_path_needs_72_mib() {
        let f = judge(
            &base(),
            Some(PathSpec {
                rate_bps: 10e9,
                rtt: Duration::from_millis(30),
            }),
        );
        let rmem = f
            .iter()
            .find(|f| f.subject.as_deref() == Some("net.ipv4.tcp_rmem[2]"))
            .expect("tcp_rmem finding");
        assert_eq!(rmem.value("bdp"), Some(37_500_000.0));
        assert_eq!(rmem.value("buffer_needed"), Some(75_000_000.0));
        assert_eq!(rmem.severity, Severity::Critical);
        assert!(
            rmem.explanation.contains("37500000"),
            "{}",
            rmem.explanation
        );
        assert!(rmem.fix.contains("netblame tune"));
        // rmem_max only matters for SO_RCVBUF users: info.
        let rmax = f
            .iter()
            .find(|f| f.subject.as_deref() == Some("net.core.rmem_max"))
            .unwrap();
        assert_eq!(rmax.severity, Severity::Info);
    }

    #[test]
    fn small_path_fits() {
        // 100 Mbit/s x 10 ms = 125,000 B: tcp_rmem/tcp_wmem are ample; rmem_max/wmem_max
        // (212,992 < 250,000 needed) only matter for SO_RCVBUF users: info, not a warning.
        let f = judge(
            &base(),
            Some(PathSpec {
                rate_bps: 100e6,
                rtt: Duration::from_millis(10),
            }),
        );
        let buf: Vec<&Finding> = f
            .iter()
            .filter(|f| f.id == "buffer-max-below-bdp")
            .collect();
        assert_eq!(buf.len(), 2, "{buf:?}");
        assert!(buf.iter().all(|f| f.severity == Severity::Info));
        assert!(buf
            .iter()
            .any(|f| f.subject.as_deref() == Some("net.core.rmem_max")));
    }

    #[test]
    fn scaling_off_and_adv_win_scale() {
        let mut s = base();
        s.sysctls
            .insert("net.ipv4.tcp_window_scaling".into(), "0".into());
        s.sysctls
            .insert("net.ipv4.tcp_adv_win_scale".into(), "2".into());
        let f = judge(
            &s,
            Some(PathSpec {
                rate_bps: 10e9,
                rtt: Duration::from_millis(30),
            }),
        );
        let ws = f.iter().find(|f| f.id == "window-scaling-off").unwrap();
        assert!((ws.value("ceiling").unwrap() / 1e6 - 17.476).abs() < 0.01);
        assert!(ids(&f).contains(&"adv-win-scale-ignored"));
        s.kernel = Some("6.1.0".parse().unwrap());
        assert!(!ids(&judge(&s, None)).contains(&"adv-win-scale-ignored"));
    }

    #[test]
    fn cloudflare_collapse_on_large_rmem() {
        let mut s = base();
        bump(&mut s, "TcpExt.PruneCalled", 50);
        bump(&mut s, "TcpExt.TCPRcvCollapsed", 1500);
        let f = judge(&s, None);
        let c = f.iter().find(|f| f.id == "rmem-collapse-spikes").unwrap();
        assert_eq!(c.severity, Severity::Warning);
        assert!(c.explanation.contains("32 MiB"));
        s.sysctls
            .insert("net.ipv4.tcp_rmem".into(), "4096 131072 2097152".into());
        let c = judge(&s, None)
            .into_iter()
            .find(|f| f.id == "rmem-collapse-spikes")
            .unwrap();
        assert_eq!(c.severity, Severity::Info);
    }

    #[test]
    fn counters_rising() {
        let mut s = base();
        bump(&mut s, "TcpExt.TCPZeroWindowDrop", 3);
        bump(&mut s, "TcpExt.TCPBacklogDrop", 2);
        bump(&mut s, "TcpExt.ListenOverflows", 4);
        bump(&mut s, "TcpExt.TCPTimeouts", 9);
        bump(&mut s, "Tcp.OutSegs", 10_000);
        bump(&mut s, "Tcp.RetransSegs", 600);
        bump(&mut s, "TcpExt.TCPMemoryPressures", 1);
        s.before.softnet.push(SoftnetRow {
            cpu: 0,
            ..Default::default()
        });
        s.after.softnet.push(SoftnetRow {
            cpu: 0,
            time_squeeze: 5,
            dropped: 2,
            ..Default::default()
        });
        let f = judge(&s, None);
        for id in [
            "receiver-zero-window",
            "socket-backlog-drops",
            "listen-overflows",
            "rto-timeouts",
            "retransmit-rate",
            "tcp-memory-pressure",
            "softnet-squeeze",
            "softnet-drops",
        ] {
            assert!(ids(&f).contains(&id), "{id} missing from {:?}", ids(&f));
        }
        let r = f.iter().find(|f| f.id == "retransmit-rate").unwrap();
        assert_eq!(r.severity, Severity::Critical);
        assert_eq!(r.value("retransmit_share"), Some(6.0));
        let l = f.iter().find(|f| f.id == "listen-overflows").unwrap();
        assert!(l.explanation.contains("1 s"));
    }

    #[test]
    fn datadog_chain() {
        let mut s = base();
        let mut nic = NicStats {
            device: "eth0".into(),
            driver: Some("ena".into()),
            ..Default::default()
        };
        nic.stats.insert("bw_out_allowance_exceeded".into(), 10);
        nic.stats.insert("tx_timeout".into(), 0);
        s.before.nic.push(nic.clone());
        nic.stats.insert("bw_out_allowance_exceeded".into(), 250);
        s.after.nic.push(nic);
        for (i, (a, b)) in [(0u64, 90_000u64), (0, 100), (0, 50), (0, 0)]
            .iter()
            .enumerate()
        {
            s.before.queues.push(QueueStats {
                device: "eth0".into(),
                dir: QueueDir::Tx,
                index: i as u32,
                packets: *a,
                bytes: None,
            });
            s.after.queues.push(QueueStats {
                device: "eth0".into(),
                dir: QueueDir::Tx,
                index: i as u32,
                packets: *b,
                bytes: None,
            });
        }
        let mut cg = CgroupCpu {
            path: "/envoy".into(),
            version: "v2".into(),
            nr_periods: 100,
            nr_throttled: 10,
            throttled_usec: 1000,
            ..Default::default()
        };
        s.before.cgroups.push(cg.clone());
        cg.nr_periods = 150;
        cg.nr_throttled = 40;
        cg.throttled_usec = 900_000;
        s.after.cgroups.push(cg);
        let f = judge(&s, None);
        let nic = f.iter().find(|f| f.id == "nic-allowance-exceeded").unwrap();
        assert_eq!(nic.value("bw_out_allowance_exceeded"), Some(240.0));
        let skew = f.iter().find(|f| f.id == "tx-queue-skew").unwrap();
        assert!(skew.value("top_queue_share").unwrap() > 99.0);
        let cpu = f.iter().find(|f| f.id == "cpu-throttled").unwrap();
        assert_eq!(cpu.value("nr_throttled"), Some(30.0));
        assert_eq!(cpu.severity, Severity::Critical);
    }

    #[test]
    fn known_issue_kernel_is_named() {
        let mut s = base();
        s.kernel = Some("6.6.10-amd64".parse().unwrap());
        let f = judge(&s, None);
        let k = f
            .iter()
            .find(|f| f.id == "kernel-scaling-ratio-6.6")
            .unwrap();
        assert_eq!(k.severity, Severity::Info);
        assert!(k.explanation.contains("backports"));
        assert!(ids(&f).contains(&"kernel-rcvq-space-stale"));
    }
}
