//! Verdicts on one live TCP connection from two socket snapshots an interval apart
//! (reference: kernel-tcp.md sections 2-3, the flow-control seed).
//!
//! - sender: shares of the interval limited by the receiver window, the send buffer, the
//!   congestion window, loss recovery, or idle (the application had nothing to send), from the
//!   kernel's stopwatches ([`LimitShares`]);
//! - receiver: a zero window advertised, a Recv-Q growing toward the buffer (the receiving
//!   application is too slow);
//! - configuration: SO_RCVBUF set before connect (a `rcv_wscale` far below what autotuned
//!   sockets on this host negotiate, with a small fixed `rb`), window scaling absent, a kernel
//!   with a known issue for fixed buffers.
//!
//! An idle connection gets no blame.

use crate::finding::{Finding, FindingSpec, Layer, Limit, Severity, Unit};
use crate::kernel::KernelVersion;
use crate::observe::socket::{SocketSnapshot, TcpState};
use crate::observe::tcp_info::TcpInfo;
use crate::observe::LimitShares;
use crate::rules::window as window_rules;
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::{self, RcvSettings, SocketRequest};
use serde::Serialize;
use std::time::Duration;

/// Findings this module produces (`rcvbuf-fixed-small` and the kernel known issues come from
/// `rules::window` and `known_issues`).
pub const FINDINGS: &[FindingSpec] = &[FindingSpec {
    id: "receiver-app-slow",
    layer: Layer::Application,
    title: "Recv-Q grows toward the receive buffer: the receiving application reads too slowly",
}];

use crate::catalogue::spec;

/// Share of busy time above which a limit is worth a finding.
pub const BLAME_SHARE: f64 = 0.5;
/// Below this share of the interval busy, a sender is idle: the application had nothing to send.
pub const IDLE_BUSY_SHARE: f64 = 0.05;
/// A rcv_wscale at least this far below the host's autotuned one means SO_RCVBUF was set.
pub const WSCALE_GAP: u8 = 2;

/// What the rules need to know about the host the sockets live on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostContext {
    /// The running kernel; `None` when unknown (no known-issue findings then).
    pub kernel: Option<KernelVersion>,
    /// This host's receive settings; `None` when unknown (no SO_RCVBUF inference then).
    pub settings: Option<RcvSettings>,
}

impl HostContext {
    /// A context for `kernel` with `settings` (from `netblame_linux::sysctl::rcv_settings`).
    pub fn new(kernel: KernelVersion, settings: RcvSettings) -> HostContext {
        HostContext {
            kernel: Some(kernel),
            settings: Some(settings),
        }
    }

    /// The rcv_wscale autotuned sockets negotiate on this host.
    pub fn autotuned_wscale(&self) -> Option<u8> {
        Some(window::autotuned_wscale(
            self.kernel.as_ref()?,
            self.settings.as_ref()?,
        ))
    }
}

/// The verdict on one connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnectionVerdict {
    /// What bounded the sender over the interval; `None` without two samples, on kernels
    /// without the stopwatches, or for sockets that are not established.
    pub limit: Option<Limit>,
    /// The shares behind `limit`.
    pub shares: Option<LimitShares>,
    /// Ranked most severe first.
    pub findings: Vec<Finding>,
}

impl ConnectionVerdict {
    /// The most severe finding's severity, if any.
    pub fn severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// True when at least one finding is a warning or worse.
    pub fn is_problem(&self) -> bool {
        self.severity().is_some_and(|s| s >= Severity::Warning)
    }

    /// One short line: the worst finding's id, or the limit, or `ok`.
    pub fn headline(&self) -> String {
        match (self.findings.first(), self.limit) {
            (Some(f), _) => {
                if self.findings.len() > 1 {
                    format!("{} (+{})", f.id, self.findings.len() - 1)
                } else {
                    f.id.to_string()
                }
            }
            (None, Some(Limit::Application)) => "idle".into(),
            (None, Some(l)) => format!("{l}-limited"),
            (None, None) => "-".into(),
        }
    }
}

fn ceiling_text(window: u64, rtt_us: u32) -> (f64, String) {
    let rtt = Duration::from_micros(rtt_us as u64);
    let c = window::ceiling_bps(window, rtt);
    (
        c,
        format!(
            "window {} / RTT {} = {} ceiling",
            Bytes(window),
            format_duration(rtt),
            BitRate(c)
        ),
    )
}

fn owners_text(cur: &SocketSnapshot) -> String {
    if cur.owners.is_empty() {
        "the receiving application (process unknown)".to_string()
    } else {
        let names: Vec<String> = cur
            .owners
            .iter()
            .map(|o| format!("{}[{}]", o.command, o.pid))
            .collect();
        names.join(", ")
    }
}

/// Judges one connection. `prev` is the same socket (same cookie) `interval` earlier; without
/// it only the instant rules run (zero window, configuration).
pub fn judge(
    prev: Option<&SocketSnapshot>,
    cur: &SocketSnapshot,
    interval: Duration,
    host: &HostContext,
) -> ConnectionVerdict {
    let mut v = ConnectionVerdict::default();
    let Some(info) = cur.tcp_info.as_ref() else {
        return v;
    };
    if !matches!(cur.state, TcpState::Established | TcpState::CloseWait) {
        return v;
    }
    let prev = prev.filter(|p| p.cookie == cur.cookie && p.inode == cur.inode);
    let prev_info = prev.and_then(|p| p.tcp_info.as_ref());
    let subject = cur.label();
    let interval_us = interval.as_micros().max(1) as u64;

    if let (Some(p), Some(pi)) = (prev, prev_info) {
        sender_rules(&mut v, p, pi, info, cur, interval_us, &subject);
    }
    receiver_rules(&mut v, prev, cur, info, interval, &subject);
    config_rules(&mut v, cur, info, host, &subject);
    crate::finding::rank(&mut v.findings);
    v
}

fn sender_rules(
    v: &mut ConnectionVerdict,
    prev_snap: &SocketSnapshot,
    pi: &TcpInfo,
    info: &TcpInfo,
    cur: &SocketSnapshot,
    interval_us: u64,
    subject: &str,
) {
    let Some(shares) = LimitShares::between(pi, info, interval_us) else {
        return;
    };
    v.shares = Some(shares);
    let busy_share = shares.busy_us as f64 / shares.interval_us as f64;
    let unsent = info.notsent_bytes.unwrap_or(0) as u64 + cur.send_q_bytes as u64;
    if busy_share < IDLE_BUSY_SHARE || (shares.busy_us == 0 && unsent == 0) {
        // Nothing (or almost nothing) queued to send: the application is the limit, and that is
        // no one's fault.
        v.limit = Some(Limit::Application);
        return;
    }
    let busy = shares.busy_us.max(1) as f64;
    let candidates = [
        (Limit::ReceiverWindow, shares.rwnd_limited_us),
        (Limit::SendBuffer, shares.sndbuf_limited_us),
        (
            if shares.in_loss_recovery {
                Limit::LossRecovery
            } else {
                Limit::CongestionWindow
            },
            shares.cwnd_limited_us,
        ),
    ];
    let (limit, us) = candidates
        .into_iter()
        .fold((Limit::CongestionWindow, 0u64), |b, c| {
            if c.1 > b.1 {
                c
            } else {
                b
            }
        });
    // The kernel's send-buffer stopwatch only runs when a transmit empties the write queue while
    // the application waits for room; with one large segment per write (GSO) it catches only
    // part of the waits. Buffer occupancy says the same thing directly: a full send buffer with
    // fewer packets in flight than the congestion window allows means the buffer, not the
    // network, bounded the sender. Required: in flight below cwnd at both samples, and the
    // buffer full at both, or full at one with the stopwatch confirming some send-buffer time.
    let full = |s: &SocketSnapshot| {
        s.skmem
            .is_some_and(|m| m.sndbuf_bytes > 0 && m.wmem_queued_bytes >= m.sndbuf_bytes)
    };
    let below_cwnd = |t: &TcpInfo| t.unacked < t.snd_cwnd;
    let occupancy = match (full(prev_snap), full(cur)) {
        (true, true) => true,
        (true, false) | (false, true) => shares.sndbuf_limited_us > 0,
        (false, false) => false,
    };
    let (limit, us, by_occupancy) =
        if limit == Limit::CongestionWindow && occupancy && below_cwnd(pi) && below_cwnd(info) {
            (
                Limit::SendBuffer,
                shares.sndbuf_limited_us + shares.cwnd_limited_us,
                true,
            )
        } else {
            (limit, us, false)
        };
    v.limit = Some(limit);
    let share_of_busy = us as f64 / busy;
    if share_of_busy < BLAME_SHARE {
        return;
    }
    let rtt_us = cur.rtt_us().unwrap_or(0);
    let stopwatch = format!(
        "{} {} ms of {} ms busy ({:.0}%) in a {} ms interval",
        match limit {
            Limit::ReceiverWindow => "rwnd_limited",
            Limit::SendBuffer if by_occupancy => {
                "send buffer seen full with packets in flight below cwnd: sndbuf_limited + busy-not-rwnd"
            }
            Limit::SendBuffer => "sndbuf_limited",
            _ => "busy without rwnd/sndbuf limit",
        },
        us / 1000,
        shares.busy_us / 1000,
        share_of_busy * 100.0,
        shares.interval_us / 1000
    );
    let base = |id: &str, summary: String| {
        Finding::new(spec(id), Severity::Warning, summary)
            .subject(subject)
            .evidence("limited_share", share_of_busy * 100.0, Unit::Percent)
            .evidence("busy", shares.busy_us as f64, Unit::Microseconds)
            .evidence("interval", shares.interval_us as f64, Unit::Microseconds)
    };
    match limit {
        Limit::ReceiverWindow => {
            let wnd = info.snd_wnd;
            let mut f = base(
                "receiver-window-limited",
                match wnd {
                    Some(0) => format!(
                        "{:.0}% of the busy time waiting on the peer's zero window",
                        share_of_busy * 100.0
                    ),
                    _ => format!(
                        "{:.0}% of the busy time waiting on the peer's receive window",
                        share_of_busy * 100.0
                    ),
                },
            );
            let mut explanation = stopwatch;
            if let Some(w) = wnd {
                f = f.evidence("peer_window", w as f64, Unit::Bytes);
                if rtt_us > 0 && w > 0 {
                    let (c, text) = ceiling_text(w as u64, rtt_us);
                    f = f
                        .evidence("rtt", rtt_us as f64, Unit::Microseconds)
                        .evidence("ceiling", c, Unit::BitsPerSecond);
                    explanation += &format!("; peer {text}");
                }
            }
            v.findings.push(f.explain(explanation).fix(
                "look at the receiving end: an application that reads slowly (or not at all) closes \
                 the window — find it with `netblame sockets` there (receiver-zero-window, \
                 receiver-app-slow); a receiver that set SO_RCVBUF caps the window (rcvbuf-fixed-small)",
            ));
        }
        Limit::SendBuffer => {
            let mut f = base(
                "send-buffer-limited",
                format!(
                    "{:.0}% of the busy time waiting for room in the send buffer",
                    share_of_busy * 100.0
                ),
            );
            let mut explanation = stopwatch;
            if let Some(m) = cur.skmem {
                f = f
                    .evidence("sndbuf", m.sndbuf_bytes as f64, Unit::Bytes)
                    .evidence("wmem_queued", m.wmem_queued_bytes as f64, Unit::Bytes)
                    .evidence("unacked", info.unacked as f64, Unit::Count)
                    .evidence("cwnd", info.snd_cwnd as f64, Unit::Count);
                if rtt_us > 0 {
                    let (c, text) = ceiling_text(m.sndbuf_bytes as u64, rtt_us);
                    f = f
                        .evidence("rtt", rtt_us as f64, Unit::Microseconds)
                        .evidence("ceiling", c, Unit::BitsPerSecond);
                    explanation += &format!("; send buffer as {text} (at most)");
                }
            }
            v.findings.push(f.explain(explanation).fix(
                "do not set SO_SNDBUF in the application (autotuning grows it up to tcp_wmem[2]); \
                 if it is not set, raise net.ipv4.tcp_wmem[2] to at least the bandwidth-delay product",
            ));
        }
        Limit::LossRecovery => {
            let retrans = shares.retransmitted_segments;
            let bytes_retrans = match (info.bytes_retrans, pi.bytes_retrans) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                _ => None,
            };
            let mut f = base(
                "network-loss",
                format!(
                    "{retrans} segments retransmitted in the interval; in loss recovery (ca_state {}, backoff {})",
                    info.ca_state, info.backoff
                ),
            )
            .evidence("retransmitted_segments", retrans as f64, Unit::Count)
            .evidence("total_retrans", info.total_retrans as f64, Unit::Count)
            .evidence("backoff", info.backoff as f64, Unit::Number);
            if let Some(b) = bytes_retrans {
                f = f.evidence("bytes_retransmitted", b as f64, Unit::Bytes);
            }
            v.findings.push(f.explain(stopwatch).fix(
                "losses on the path: check interface drops, qdisc drops and the path (netblame host, netblame probe)",
            ));
        }
        _ => {}
    }
}

fn receiver_rules(
    v: &mut ConnectionVerdict,
    prev: Option<&SocketSnapshot>,
    cur: &SocketSnapshot,
    info: &TcpInfo,
    interval: Duration,
    subject: &str,
) {
    let recv_q = cur.recv_q_bytes as u64;
    let (rmem, rb) = cur
        .skmem
        .map(|m| (m.rmem_alloc_bytes as u64, m.rcvbuf_bytes as u64))
        .unwrap_or((0, 0));
    let near_full = rb > 0 && rmem * 10 >= rb * 9;
    let zero = match info.rcv_wnd {
        Some(w) => w == 0 && recv_q > 0,
        None => recv_q > 0 && near_full,
    };
    let who = owners_text(cur);
    if zero {
        let mut f = Finding::new(
            spec("receiver-zero-window"),
            Severity::Critical,
            format!(
                "advertises a zero window with {} unread: {who} is not reading",
                Bytes(recv_q)
            ),
        )
        .subject(subject)
        .evidence("recv_q", recv_q as f64, Unit::Bytes);
        if let Some(w) = info.rcv_wnd {
            f = f.evidence("rcv_wnd", w as f64, Unit::Bytes);
        }
        if rb > 0 {
            f = f.evidence("rmem_alloc", rmem as f64, Unit::Bytes).evidence(
                "rcvbuf",
                rb as f64,
                Unit::Bytes,
            );
        }
        f = f.evidence(
            "last_data_recv",
            info.last_data_recv_ms as f64,
            Unit::Milliseconds,
        );
        let explanation = format!(
            "Recv-Q {} B unread; buffer memory {} of rb {} B ({:.0}%); advertised window {}: the \
             sender must stop until {who} reads",
            recv_q,
            rmem,
            rb,
            if rb > 0 {
                rmem as f64 * 100.0 / rb as f64
            } else {
                0.0
            },
            info.rcv_wnd
                .map(|w| format!("{w} B"))
                .unwrap_or_else(|| "0 (inferred from a full buffer)".into())
        );
        v.findings.push(f.explain(explanation).fix(
            "make the application read: look for blocking I/O, GC pauses or a saturated thread \
             pool in its read loop; read into a queue and process asynchronously",
        ));
        return;
    }
    let Some(p) = prev.filter(|p| p.cookie == cur.cookie) else {
        return;
    };
    let before = p.recv_q_bytes as u64;
    if recv_q > before && rb > 0 && rmem * 2 >= rb {
        let secs = interval.as_secs_f64().max(1e-6);
        let growth = (recv_q - before) as f64 / secs;
        let f = Finding::new(
            spec("receiver-app-slow"),
            Severity::Warning,
            format!(
                "Recv-Q grew from {} to {} in {}: {who} reads more slowly than data arrives",
                Bytes(before),
                Bytes(recv_q),
                format_duration(interval)
            ),
        )
        .subject(subject)
        .evidence("recv_q_before", before as f64, Unit::Bytes)
        .evidence("recv_q", recv_q as f64, Unit::Bytes)
        .evidence("recv_q_growth", growth * 8.0, Unit::BitsPerSecond)
        .evidence("rmem_alloc", rmem as f64, Unit::Bytes)
        .evidence("rcvbuf", rb as f64, Unit::Bytes)
        .explain(format!(
            "Recv-Q +{} B in {} = {} unread growth; buffer memory {} of rb {} B ({:.0}%): at this \
             pace the window closes",
            recv_q - before,
            format_duration(interval),
            BitRate(growth * 8.0),
            rmem,
            rb,
            rmem as f64 * 100.0 / rb as f64
        ))
        .fix("make the application read faster: move processing out of the read loop");
        v.findings.push(f);
    }
}

fn config_rules(
    v: &mut ConnectionVerdict,
    cur: &SocketSnapshot,
    info: &TcpInfo,
    host: &HostContext,
    subject: &str,
) {
    let rtt_us = cur.rtt_us().unwrap_or(0);
    if !info.has_wscale() {
        let window = u16::MAX as u64;
        let host_off = host.settings.as_ref().is_some_and(|s| !s.window_scaling);
        let mut f = Finding::new(
            spec("window-scaling-absent"),
            Severity::Warning,
            "no window scaling on this connection: its window cannot exceed 64 KiB",
        )
        .subject(subject)
        .evidence("window", window as f64, Unit::Bytes);
        let mut explanation = "the window field is 16 bits; without the wscale option in both SYNs it is capped at 65535 B".to_string();
        if rtt_us > 0 {
            let (c, text) = ceiling_text(window, rtt_us);
            f = f
                .evidence("rtt", rtt_us as f64, Unit::Microseconds)
                .evidence("ceiling", c, Unit::BitsPerSecond);
            explanation += &format!("; {text}");
        }
        f = if host_off {
            f.blame(Layer::Host)
                .fix("this host has net.ipv4.tcp_window_scaling = 0: set it to 1")
        } else {
            f.fix("the peer or a middlebox on the path strips the wscale option: check the SYNs with tcpdump and the peer's net.ipv4.tcp_window_scaling")
        };
        v.findings.push(f.explain(explanation));
        return;
    }
    let (Some(kernel), Some(settings), Some(auto)) = (
        host.kernel.as_ref(),
        host.settings.as_ref(),
        host.autotuned_wscale(),
    ) else {
        return;
    };
    let Some(m) = cur.skmem else { return };
    let rb = m.rcvbuf_bytes as u64;
    // SO_RCVBUF is capped at rmem_max and doubled: a locked buffer is at most 2 x rmem_max
    // (unless SO_RCVBUFFORCE), and far below what autotuning may reach.
    let small_fixed_rb = rb <= 2 * settings.rmem_max.max(1) && rb < settings.tcp_rmem[2];
    if info.rcv_wscale.saturating_add(WSCALE_GAP) > auto || !small_fixed_rb {
        return;
    }
    let so_rcvbuf = rb / 2;
    let mut modelled_settings = settings.clone();
    modelled_settings.rmem_max = modelled_settings.rmem_max.max(so_rcvbuf);
    let model = window::model(
        kernel,
        &modelled_settings,
        &SocketRequest {
            so_rcvbuf: Some(so_rcvbuf),
            mss: info.rcv_mss.max(info.advmss).max(536) as u64,
            measured_ratio: None,
        },
    );
    let workload = window_rules::Workload {
        rtt: (rtt_us > 0).then(|| Duration::from_micros(rtt_us as u64)),
        mss: info.advmss.max(536) as u64,
        ..Default::default()
    };
    let representable = (u16::MAX as u64) << info.rcv_wscale;
    for mut f in window_rules::judge(kernel, &model, &workload) {
        f = f.subject(subject);
        if f.id == "rcvbuf-fixed-small" {
            for e in f.evidence.iter_mut() {
                if e.name == "rcv_wscale" {
                    e.value = info.rcv_wscale as f64;
                }
            }
            f = f
                .evidence("autotuned_wscale", auto as f64, Unit::Number)
                .evidence("tcp_rmem_max", settings.tcp_rmem[2] as f64, Unit::Bytes)
                .evidence(
                    "max_representable_window",
                    representable as f64,
                    Unit::Bytes,
                );
            let owner = cur
                .process_label()
                .map(|p| format!(" by {p}"))
                .unwrap_or_default();
            f.summary = format!(
                "SO_RCVBUF set before connect{owner}: rcv_wscale {} where autotuned sockets here get {auto}; rb fixed at {}",
                info.rcv_wscale,
                Bytes(rb)
            );
            f.explanation = format!(
                "rcv_wscale {} vs {auto} for autotuned sockets (tcp_rmem[2] = {} B); rb = {} B = 2 x \
                 SO_RCVBUF {} B, autotuning off; {}",
                info.rcv_wscale, settings.tcp_rmem[2], rb, so_rcvbuf, f.explanation
            );
        }
        v.findings.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::socket::SkMemInfo;
    use crate::observe::tcp_info::options;

    fn snap(info: TcpInfo, recv_q: u32, rb: u32, rmem: u32) -> SocketSnapshot {
        SocketSnapshot {
            local: "127.0.0.1:5001".parse().unwrap(),
            peer: "127.0.0.1:40000".parse().unwrap(),
            state: TcpState::Established,
            inode: 7,
            cookie: 9,
            uid: 0,
            recv_q_bytes: recv_q,
            send_q_bytes: 0,
            tcp_info: Some(info),
            congestion: Some("cubic".into()),
            skmem: Some(SkMemInfo {
                rmem_alloc_bytes: rmem,
                rcvbuf_bytes: rb,
                sndbuf_bytes: 16384,
                ..Default::default()
            }),
            shutdown: Some(0),
            owners: vec![],
        }
    }

    fn info(busy: u64, rwnd: u64, sndbuf: u64) -> TcpInfo {
        TcpInfo {
            len: 280,
            state: 1,
            options: options::WSCALE | options::SACK,
            rcv_wscale: 10,
            snd_wscale: 10,
            rtt_us: 137_000,
            snd_mss: 1448,
            advmss: 1448,
            busy_time_us: Some(busy),
            rwnd_limited_us: Some(rwnd),
            sndbuf_limited_us: Some(sndbuf),
            snd_wnd: Some(65536),
            rcv_wnd: Some(65536),
            notsent_bytes: Some(0),
            delivery_rate_app_limited: Some(false),
            ..Default::default()
        }
    }

    fn host() -> HostContext {
        let k: KernelVersion = "6.18.0".parse().unwrap();
        let s = RcvSettings::defaults_for(&k);
        HostContext::new(k, s)
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn rwnd_limited_sender_gets_the_ceiling_arithmetic() {
        let a = snap(info(0, 0, 0), 0, 131072, 0);
        let b = snap(info(950_000, 900_000, 0), 0, 131072, 0);
        let v = judge(Some(&a), &b, SEC, &host());
        assert_eq!(v.limit, Some(Limit::ReceiverWindow));
        let f = &v.findings[0];
        assert_eq!(f.id, "receiver-window-limited");
        assert!(
            f.explanation
                .contains("window 64 KiB / RTT 137 ms = 3.83 Mbit/s ceiling"),
            "{}",
            f.explanation
        );
    }

    #[test]
    fn full_send_buffer_below_cwnd_is_the_send_buffer() {
        let full = |busy| {
            let mut i = info(busy, 0, 0);
            i.unacked = 1;
            i.snd_cwnd = 10;
            let mut s = snap(i, 0, 131072, 0);
            s.skmem = Some(SkMemInfo {
                sndbuf_bytes: 8192,
                wmem_queued_bytes: 66_315,
                ..Default::default()
            });
            s
        };
        let v = judge(Some(&full(0)), &full(1_000_000), SEC, &host());
        assert_eq!(v.limit, Some(Limit::SendBuffer));
        assert_eq!(v.findings[0].id, "send-buffer-limited");
        // The same busy time with the cwnd full is the network's.
        let mut a = full(0);
        let mut b = full(1_000_000);
        for s in [&mut a, &mut b] {
            s.tcp_info.as_mut().unwrap().unacked = 10;
        }
        let v = judge(Some(&a), &b, SEC, &host());
        assert_eq!(v.limit, Some(Limit::CongestionWindow));
        assert!(v.findings.is_empty());
    }

    #[test]
    fn idle_connection_gets_no_blame() {
        let a = snap(info(5000, 0, 0), 0, 131072, 0);
        let b = snap(info(5000, 0, 0), 0, 131072, 0);
        let v = judge(Some(&a), &b, SEC, &host());
        assert_eq!(v.limit, Some(Limit::Application));
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        assert_eq!(v.headline(), "idle");
    }

    #[test]
    fn zero_window_names_the_reader() {
        let mut i = info(0, 0, 0);
        i.rcv_wnd = Some(0);
        let mut s = snap(i, 60_000, 131072, 130_000);
        s.owners.push(crate::observe::socket::SocketOwner {
            pid: 42,
            command: "slowpoke".into(),
            fd: 3,
            cgroup: None,
        });
        let v = judge(None, &s, SEC, &host());
        assert_eq!(v.findings[0].id, "receiver-zero-window");
        assert!(v.findings[0].summary.contains("slowpoke[42]"));
        assert!(v.is_problem());
    }

    #[test]
    fn fixed_rcvbuf_shows_the_wscale_gap_and_kernel_issues() {
        let mut i = info(0, 0, 0);
        i.rcv_wscale = 1;
        let s = snap(i, 0, 131072, 0);
        let k: KernelVersion = "6.6.10".parse().unwrap();
        let mut settings = RcvSettings::defaults_for(&k);
        settings.tcp_rmem[2] = 6 << 20;
        let v = judge(None, &s, SEC, &HostContext::new(k, settings));
        let ids: Vec<_> = v.findings.iter().map(|f| f.id).collect();
        assert!(ids.contains(&"rcvbuf-fixed-small"), "{ids:?}");
        assert!(ids.contains(&"kernel-scaling-ratio-6.6"), "{ids:?}");
        let f = v
            .findings
            .iter()
            .find(|f| f.id == "rcvbuf-fixed-small")
            .unwrap();
        assert_eq!(f.value("rcv_wscale"), Some(1.0));
        assert_eq!(f.value("autotuned_wscale"), Some(7.0));
        assert!(f.explanation.contains("ceiling"), "{}", f.explanation);
    }

    #[test]
    fn no_wscale_caps_at_64k() {
        let mut i = info(0, 0, 0);
        i.options = options::SACK;
        let v = judge(None, &snap(i, 0, 131072, 0), SEC, &host());
        assert_eq!(v.findings[0].id, "window-scaling-absent");
        assert!(v.findings[0].explanation.contains("3.83 Mbit/s"));
    }

    #[test]
    fn growing_recv_q_is_a_slow_reader() {
        let a = snap(info(0, 0, 0), 10_000, 131072, 20_000);
        let b = snap(info(0, 0, 0), 50_000, 131072, 90_000);
        let v = judge(Some(&a), &b, SEC, &host());
        assert_eq!(v.findings[0].id, "receiver-app-slow");
    }
}
