//! The end-of-test verdict of a throughput test (`netblame bench`): which limit held the
//! senders and for what share of the time, from the kernel's stopwatches
//! (`busy_time`, `rwnd_limited`, `sndbuf_limited`), with the window / RTT arithmetic and the fix.
//! Also: requested buffers the kernel capped, and whether an application with a read timeout
//! would have given up.

use crate::finding::{Finding, FindingSpec, Layer, Limit, Severity, Unit};
use crate::observe::LimitShares;
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::ceiling_bps;
use std::time::Duration;

/// Findings this module produces.
pub const FINDINGS: &[FindingSpec] = &[
    FindingSpec {
        id: "transfer-sender-idle",
        layer: Layer::Application,
        title: "the sender often had nothing queued: the sending application (or its CPU) was the limit",
    },
    FindingSpec {
        id: "transfer-buffer-capped",
        layer: Layer::Host,
        title: "a requested socket buffer was capped by net.core.rmem_max / wmem_max",
    },
    FindingSpec {
        id: "transfer-sender-unobserved",
        layer: Layer::Host,
        title: "the sending end's tcp_info was not available, so the limit cannot be named",
    },
];

use crate::catalogue::spec;
use crate::kernel::KernelVersion;
use crate::rules::shared::receiver_window_binds;
use crate::rules::window::{autotuning_ceiling, window_scaling_absent, AutotunedReceiver};
use crate::window::RcvSettings;

/// One sending stream over the counted part of a test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderStream {
    pub id: i64,
    /// Stopwatch totals over the test (`None` before Linux 4.10).
    pub shares: Option<LimitShares>,
    pub bytes: u64,
    pub seconds: f64,
    /// Mean smoothed RTT, microseconds.
    pub mean_rtt_us: f64,
    /// The receiver's window as the sender saw it (mean, weighted to rwnd-limited time when any).
    pub mean_snd_wnd_bytes: Option<f64>,
    pub retransmits: u64,
    /// Whether the connection negotiated window scaling, when known.
    pub window_scaling: Option<bool>,
}

/// A buffer size someone asked for, and what the kernel granted.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferRequest {
    /// `SO_RCVBUF` or `SO_SNDBUF`.
    pub option: &'static str,
    /// Which end: "client" / "server".
    pub side: String,
    pub requested_bytes: u64,
    /// `getsockopt` after setting: twice the request unless capped.
    pub actual_bytes: u64,
}

/// What a throughput test observed in one direction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferObservation {
    /// e.g. "client -> server".
    pub direction: String,
    pub senders: Vec<SenderStream>,
    /// SO_RCVBUF the receiving end set (None = autotuned).
    pub receiver_rcvbuf_bytes: Option<u64>,
    /// Mean bytes waiting in the receiver's Recv-Q (the receiving application's backlog).
    pub receiver_mean_recv_q_bytes: Option<f64>,
    /// The receiver's actual sk_rcvbuf.
    pub receiver_actual_rcvbuf_bytes: Option<u64>,
    pub buffers: Vec<BufferRequest>,
    /// The modelled application's read timeout.
    pub app_timeout: Option<Duration>,
    /// Bytes the application needed (`-n`), if any.
    pub bytes_needed: Option<u64>,
    /// Cumulative bytes received at each interval end: (seconds, bytes).
    pub timeline: Vec<(f64, u64)>,
    /// The receiving host's kernel and receive-window sysctls, when known (netblame runs there).
    pub receiver_host: Option<ReceiverHost>,
}

/// The receiving host's settings that shape an autotuned window.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverHost {
    pub kernel: KernelVersion,
    pub settings: RcvSettings,
}

/// Share at or above which a limit is reported beside the dominant one.
pub const NOTABLE_SHARE: f64 = 0.25;
/// Share at or above which the receiver window is a warning.
pub const RWND_WARNING_SHARE: f64 = 0.5;

/// Sums stopwatch totals over streams (shares become the average over streams).
pub fn sum_shares<'a>(it: impl IntoIterator<Item = &'a LimitShares>) -> Option<LimitShares> {
    let mut acc: Option<LimitShares> = None;
    for s in it {
        let a = acc.get_or_insert_with(LimitShares::default);
        a.interval_us += s.interval_us;
        a.busy_us += s.busy_us;
        a.rwnd_limited_us += s.rwnd_limited_us;
        a.sndbuf_limited_us += s.sndbuf_limited_us;
        a.cwnd_limited_us += s.cwnd_limited_us;
        a.loss_recovery_us += s.loss_recovery_us;
        a.idle_us += s.idle_us;
        a.retransmitted_segments += s.retransmitted_segments;
        a.in_loss_recovery |= s.in_loss_recovery;
    }
    acc
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// The verdict on one direction of a test.
pub fn judge(obs: &TransferObservation) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(capped_buffers(obs));
    let totals = sum_shares(obs.senders.iter().filter_map(|s| s.shares.as_ref()));
    let bytes: u64 = obs.senders.iter().map(|s| s.bytes).sum();
    let seconds = obs.senders.iter().map(|s| s.seconds).fold(0.0, f64::max);
    let measured = if seconds > 0.0 {
        bytes as f64 * 8.0 / seconds
    } else {
        0.0
    };
    match totals {
        None => out.push(
            Finding::new(
                spec("transfer-sender-unobserved"),
                Severity::Info,
                format!("{}: no tcp_info from the sending end; measured {}", obs.direction, BitRate(measured)),
            )
            .subject(obs.direction.clone())
            .evidence("throughput", measured, Unit::BitsPerSecond)
            .explain("the sender is not netblame (e.g. iperf3 -s in reverse mode) or its kernel predates 4.10")
            .fix("run `netblame bench server` on the sending side to see why the transfer was limited"),
        ),
        Some(t) => {
            let (mut dominant, mut share) = t.dominant();
            let pinned = window_pins_cwnd(obs, &t, measured);
            if pinned {
                // Linux grows cwnd only while cwnd-limited, so under a binding receiver window the
                // cwnd sits at the window and busy time splits between the two stopwatches.
                dominant = Limit::ReceiverWindow;
                share = t.share(Limit::ReceiverWindow) + t.share(Limit::CongestionWindow);
            }
            out.push(limit_finding(obs, &t, dominant, share, measured, true));
            for l in [
                Limit::ReceiverWindow,
                Limit::SendBuffer,
                Limit::CongestionWindow,
                Limit::LossRecovery,
                Limit::Application,
            ] {
                let s = t.share(l);
                if l != dominant && !(pinned && l == Limit::CongestionWindow) && s >= NOTABLE_SHARE {
                    out.push(limit_finding(obs, &t, l, s, measured, false));
                }
            }
        }
    }
    out.extend(app_timeout(obs));
    out
}

/// Sum over streams of window x 8 / RTT, when every stream has both.
fn window_ceiling(obs: &TransferObservation) -> Option<f64> {
    obs.senders
        .iter()
        .map(|s| {
            let w = s.mean_snd_wnd_bytes?;
            (s.mean_rtt_us > 0.0)
                .then(|| ceiling_bps(w as u64, Duration::from_secs_f64(s.mean_rtt_us / 1e6)))
        })
        .sum()
}

/// True when the receiver window binds although the stopwatches split the busy time and the
/// congestion window's took the larger part ([`receiver_window_binds`] decides).
fn window_pins_cwnd(obs: &TransferObservation, t: &LimitShares, measured: f64) -> bool {
    t.dominant().0 == Limit::CongestionWindow
        && receiver_window_binds(t.rwnd_share_of_busy(), measured, window_ceiling(obs))
}

fn shares_text(t: &LimitShares) -> String {
    format!(
        "rwnd {}, sndbuf {}, cwnd {}, loss {}, idle {}",
        pct(t.share(Limit::ReceiverWindow)),
        pct(t.share(Limit::SendBuffer)),
        pct(t.share(Limit::CongestionWindow)),
        pct(t.share(Limit::LossRecovery)),
        pct(t.share(Limit::Application))
    )
}

fn mean_rtt(obs: &TransferObservation) -> Option<Duration> {
    let v: Vec<f64> = obs
        .senders
        .iter()
        .map(|s| s.mean_rtt_us)
        .filter(|r| *r > 0.0)
        .collect();
    (!v.is_empty()).then(|| Duration::from_secs_f64(v.iter().sum::<f64>() / v.len() as f64 / 1e6))
}

fn limit_finding(
    obs: &TransferObservation,
    t: &LimitShares,
    limit: Limit,
    share: f64,
    measured: f64,
    dominant: bool,
) -> Finding {
    let lead = if dominant { "held" } else { "also held" };
    let per_stream = measured / obs.senders.len().max(1) as f64;
    let rtt = mean_rtt(obs);
    let base = |id: &str, sev: Severity, summary: String| {
        Finding::new(spec(id), sev, summary)
            .subject(obs.direction.clone())
            .evidence("share", share * 100.0, Unit::Percent)
            .evidence("throughput", measured, Unit::BitsPerSecond)
            .evidence("streams", obs.senders.len() as f64, Unit::Count)
    };
    match limit {
        Limit::ReceiverWindow => {
            let sev = if share >= RWND_WARNING_SHARE { Severity::Warning } else { Severity::Info };
            if dominant {
                let unscaled = obs.senders.iter().any(|s| s.window_scaling == Some(false));
                if let Some(rtt) = rtt.filter(|_| unscaled) {
                    let host_off = obs
                        .receiver_host
                        .as_ref()
                        .is_some_and(|h| !h.settings.window_scaling);
                    return window_scaling_absent(rtt, per_stream, t.rwnd_share_of_busy(), sev, host_off)
                        .subject(obs.direction.clone());
                }
                if let Some(f) = autotuning_ceiling_held(obs, t, per_stream, rtt, sev) {
                    return f;
                }
            }
            let window = obs
                .senders
                .iter()
                .filter_map(|s| s.mean_snd_wnd_bytes)
                .fold(None, |a: Option<f64>, w| Some(a.map_or(w, |a| a.min(w))));
            let mut f = base(
                "receiver-window-limited",
                sev,
                format!("the receiver window {lead} the sender {} of the time", pct(share)),
            );
            let mut why = String::new();
            if let (Some(w), Some(rtt)) = (window, rtt) {
                let c = ceiling_bps(w as u64, rtt);
                f = f
                    .evidence("window", w.round(), Unit::Bytes)
                    .evidence("rtt", rtt.as_secs_f64() * 1e6, Unit::Microseconds)
                    .evidence("ceiling", c, Unit::BitsPerSecond);
                why = format!(
                    "receiver window {} at RTT {} caps a stream at {}; measured {} per stream. ",
                    Bytes(w as u64),
                    format_duration(rtt),
                    BitRate(c),
                    BitRate(per_stream)
                );
            }
            why += &format!("Sender time: {}.", shares_text(t));
            if dominant && t.dominant().0 == Limit::CongestionWindow {
                why += " The measured rate reaches the window's ceiling: cwnd grows only while it is the \
                        limit, so it sits at the receiver window and the busy time splits between the two.";
            }
            let backlog = obs.receiver_mean_recv_q_bytes.unwrap_or(0.0);
            let fix = match obs.receiver_rcvbuf_bytes {
                Some(rcv) => {
                    f = f.evidence("receiver_so_rcvbuf", rcv as f64, Unit::Bytes);
                    format!(
                        "the receiver set SO_RCVBUF={} (autotuning off): stop setting it, or size it for the \
                         bandwidth-delay product (SO_RCVBUF >= rate x RTT / window fraction)",
                        Bytes(rcv)
                    )
                }
                None if reader_backlogged(obs) => {
                    f = f.evidence("receiver_recv_q", backlog.round(), Unit::Bytes);
                    "the receiving application does not read fast enough (its Recv-Q stays full): read in \
                     larger chunks, on more threads, or with less work per byte"
                        .to_string()
                }
                None => {
                    // Autotuned and read promptly: the window stopped growing at the receiver
                    // host's ceiling (tcp_rmem[2]), a host setting rather than the application.
                    f = f.blame(Layer::Host);
                    "raise the receiver's autotuning ceiling: net.ipv4.tcp_rmem[2] and net.core.rmem_max \
                     at least the bandwidth-delay product divided by the window fraction"
                        .to_string()
                }
            };
            f.explain(why).fix(fix)
        }
        Limit::SendBuffer => base(
            "send-buffer-limited",
            if share >= RWND_WARNING_SHARE { Severity::Warning } else { Severity::Info },
            format!("the send buffer {lead} the sender {} of the time", pct(share)),
        )
        .explain(format!("Sender time: {}.", shares_text(t)))
        .fix("do not set SO_SNDBUF small (or at all); raise net.ipv4.tcp_wmem[2] and net.core.wmem_max to the BDP"),
        Limit::CongestionWindow => {
            let mut f = base(
                "congestion-window-limited",
                Severity::Info,
                format!("the congestion window {lead} the sender {} of the time", pct(share)),
            );
            if let Some(rtt) = rtt {
                f = f.evidence("rtt", rtt.as_secs_f64() * 1e6, Unit::Microseconds);
            }
            f.explain(format!(
                "Busy and bounded by neither the receiver window nor the send buffer: the sender went as \
                 fast as the path (or, on loopback, the CPU) allowed. Sender time: {}.",
                shares_text(t)
            ))
            .fix("nothing on the hosts: the path capacity or its congestion sets this rate")
        }
        Limit::LossRecovery => base(
            "network-loss",
            Severity::Warning,
            format!("loss recovery {lead} the sender {} of the time", pct(share)),
        )
        .evidence("retransmitted_segments", t.retransmitted_segments as f64, Unit::Count)
        .explain(format!("{} segments retransmitted. Sender time: {}.", t.retransmitted_segments, shares_text(t)))
        .fix("find the lossy hop (`netblame probe` along the path, interface counters); a queue that drops may need a larger buffer or AQM"),
        Limit::Application => base(
            "transfer-sender-idle",
            Severity::Info,
            format!("the sender had nothing queued {} of the time", pct(share)),
        )
        .explain(format!(
            "Wall time without data queued is the sending application's (or its CPU's) doing. Sender time: {}.",
            shares_text(t)
        ))
        .fix("make the sender write sooner and in larger chunks; check its CPU (it may be the bottleneck)"),
    }
}

/// True when the receiving application's Recv-Q stayed at a quarter of its buffer or more.
fn reader_backlogged(obs: &TransferObservation) -> bool {
    let backlog = obs.receiver_mean_recv_q_bytes.unwrap_or(0.0);
    backlog > 0.0
        && obs
            .receiver_actual_rcvbuf_bytes
            .is_some_and(|b| backlog >= b as f64 / 4.0)
}

/// An autotuned receiver, on a host whose settings are known: did its
/// `tcp_rmem[2]` hold the window? The lab's rule ([`autotuning_ceiling`]), on the smallest
/// window the senders saw and the per-stream rate.
fn autotuning_ceiling_held(
    obs: &TransferObservation,
    t: &LimitShares,
    per_stream: f64,
    rtt: Option<Duration>,
    severity: Severity,
) -> Option<Finding> {
    let host = obs.receiver_host.as_ref()?;
    // Checked before the reader's backlog: under a tiny ceiling even a prompt reader leaves
    // most of the window queued between wake-ups, and a slow reader on a host with a large
    // ceiling fails the ceiling test anyway.
    if obs.receiver_rcvbuf_bytes.is_some() {
        return None;
    }
    let window = obs
        .senders
        .iter()
        .filter_map(|s| s.mean_snd_wnd_bytes)
        .fold(None, |a: Option<f64>, w| Some(a.map_or(w, |a| a.min(w))))?;
    let receiver = AutotunedReceiver {
        kernel: &host.kernel,
        settings: &host.settings,
        mss: 0,
        peer_window: window as u64,
        rtt: rtt?,
        goodput_bps: per_stream,
        rwnd_share: t.rwnd_share_of_busy(),
        link_bps: None,
    };
    autotuning_ceiling(&receiver, severity).map(|f| f.subject(obs.direction.clone()))
}

/// One finding per distinct capped request (every stream of a `-P N` test asks the same).
fn capped_buffers(obs: &TransferObservation) -> Vec<Finding> {
    obs.buffers
        .iter()
        .enumerate()
        .filter(|(i, b)| !obs.buffers[..*i].contains(b))
        .map(|(_, b)| b)
        .filter(|b| b.actual_bytes < b.requested_bytes.saturating_mul(2))
        .map(|b| {
            let sysctl = if b.option == "SO_RCVBUF" { "net.core.rmem_max" } else { "net.core.wmem_max" };
            Finding::new(
                spec("transfer-buffer-capped"),
                Severity::Warning,
                format!(
                    "{} {} asked {} and got {} (capped)",
                    b.side,
                    b.option,
                    Bytes(b.requested_bytes),
                    Bytes(b.actual_bytes)
                ),
            )
            .subject(format!("{} {}", b.side, b.option))
            .evidence("requested", b.requested_bytes as f64, Unit::Bytes)
            .evidence("actual", b.actual_bytes as f64, Unit::Bytes)
            .explain(format!(
                "the kernel doubles the request for bookkeeping and caps it at {sysctl} x 2: expected {}, got {}",
                b.requested_bytes.saturating_mul(2),
                b.actual_bytes
            ))
            .fix(format!("raise {sysctl} to at least {} (or request less)", b.requested_bytes))
        })
        .collect()
}

fn app_timeout(obs: &TransferObservation) -> Option<Finding> {
    let timeout = obs.app_timeout?;
    let t = timeout.as_secs_f64();
    let received_by = |secs: f64| -> u64 {
        // Interpolate within the interval that contains `secs`.
        let mut prev = (0.0, 0u64);
        for &(end, bytes) in &obs.timeline {
            if end >= secs {
                let span = (end - prev.0).max(1e-9);
                let frac = ((secs - prev.0) / span).clamp(0.0, 1.0);
                return prev.1 + ((bytes - prev.1) as f64 * frac) as u64;
            }
            prev = (end, bytes);
        }
        prev.1
    };
    let total = obs.timeline.last().map(|x| x.1).unwrap_or(0);
    let elapsed = obs.timeline.last().map(|x| x.0).unwrap_or(0.0);
    // Longest gap with no bytes arriving (whole intervals).
    let mut longest_stall = 0.0f64;
    let mut stall_start: Option<f64> = None;
    let mut prev = (0.0, 0u64);
    for &(end, bytes) in &obs.timeline {
        if bytes == prev.1 {
            let s = *stall_start.get_or_insert(prev.0);
            longest_stall = longest_stall.max(end - s);
        } else {
            stall_start = None;
        }
        prev = (end, bytes);
    }
    let rate = if elapsed > 0.0 {
        total as f64 / elapsed
    } else {
        0.0
    };
    let (hit, summary, why) = if longest_stall >= t {
        (
            true,
            format!(
                "no data arrived for {}: an application with a {} read timeout would have given up",
                format_duration(Duration::from_secs_f64(longest_stall)),
                format_duration(timeout)
            ),
            format!("longest stall {:.1} s >= timeout {:.1} s", longest_stall, t),
        )
    } else if let Some(need) = obs.bytes_needed {
        let have = received_by(t);
        let done_at = if rate > 0.0 {
            need as f64 / rate
        } else {
            f64::INFINITY
        };
        if elapsed > t && have < need {
            (
                true,
                format!(
                    "after {} only {} of {} had arrived: an application with that timeout would have given up",
                    format_duration(timeout),
                    Bytes(have),
                    Bytes(need)
                ),
                format!("{} received by {:.1} s; the whole {} took {:.1} s", Bytes(have), t, Bytes(need), elapsed),
            )
        } else if elapsed <= t && total >= need {
            (
                false,
                format!(
                    "{} arrived in {:.1} s, within the {} timeout",
                    Bytes(need),
                    elapsed,
                    format_duration(timeout)
                ),
                format!(
                    "{} / {} = {:.1} s < {:.1} s",
                    Bytes(need),
                    BitRate(rate * 8.0),
                    done_at,
                    t
                ),
            )
        } else {
            (
                done_at > t,
                format!(
                    "at {} the {} would take {:.1} s against a {} timeout",
                    BitRate(rate * 8.0),
                    Bytes(need),
                    done_at,
                    format_duration(timeout)
                ),
                format!(
                    "{} / {} = {:.1} s",
                    Bytes(need),
                    BitRate(rate * 8.0),
                    done_at
                ),
            )
        }
    } else {
        (
            false,
            format!(
                "data kept arriving (longest stall {:.1} s): a {} read timeout would not have fired; {} arrived in the first {}",
                longest_stall,
                format_duration(timeout),
                Bytes(received_by(t.min(elapsed))),
                format_duration(Duration::from_secs_f64(t.min(elapsed)))
            ),
            format!("longest stall {:.1} s < timeout {:.1} s", longest_stall, t),
        )
    };
    Some(
        Finding::new(
            spec("application-timeout"),
            if hit {
                Severity::Critical
            } else {
                Severity::Info
            },
            summary,
        )
        .subject(obs.direction.clone())
        .evidence("timeout", t, Unit::Seconds)
        .evidence("longest_stall", longest_stall, Unit::Seconds)
        .evidence("received", total as f64, Unit::Bytes)
        .explain(why)
        .fix(if hit {
            "raise the window (see the receiver-window finding) or the application's timeout"
        } else {
            "none needed"
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(busy: u64, rwnd: u64, interval: u64) -> SenderStream {
        SenderStream {
            id: 1,
            shares: Some(LimitShares {
                interval_us: interval,
                busy_us: busy,
                rwnd_limited_us: rwnd,
                cwnd_limited_us: busy - rwnd,
                idle_us: interval - busy,
                ..LimitShares::default()
            }),
            bytes: 3_700_000 / 8 * 10,
            seconds: 10.0,
            mean_rtt_us: 137_000.0,
            mean_snd_wnd_bytes: Some(65_536.0),
            retransmits: 0,
            window_scaling: Some(true),
        }
    }

    #[test]
    fn netflix_receiver_window_arithmetic() {
        let obs = TransferObservation {
            direction: "server -> client".into(),
            senders: vec![stream(10_000_000, 9_500_000, 10_000_000)],
            receiver_rcvbuf_bytes: Some(65_536),
            ..TransferObservation::default()
        };
        let f = judge(&obs);
        let rw = f
            .iter()
            .find(|f| f.id == "receiver-window-limited")
            .expect("rwnd finding");
        assert_eq!(rw.severity, Severity::Warning);
        assert!(
            rw.explanation.contains("caps a stream at 3.83 Mbit/s"),
            "{}",
            rw.explanation
        );
        assert!(
            rw.explanation.contains("measured 3.70 Mbit/s"),
            "{}",
            rw.explanation
        );
        assert!(rw.fix.contains("SO_RCVBUF=64 KiB"), "{}", rw.fix);
        assert_eq!(
            rw.layer,
            Layer::Application,
            "the application set SO_RCVBUF"
        );
        // Autotuned and read promptly: the window stopped at the host's tcp_rmem[2].
        let autotuned = TransferObservation {
            receiver_rcvbuf_bytes: None,
            ..obs
        };
        let rw = judge(&autotuned)
            .into_iter()
            .find(|f| f.id == "receiver-window-limited")
            .expect("rwnd finding");
        assert_eq!(rw.layer, Layer::Host);
        assert!(rw.fix.contains("tcp_rmem[2]"), "{}", rw.fix);
        assert!((rw.value("share").unwrap() - 95.0).abs() < 1e-9);
    }

    #[test]
    fn one_interval_in_recovery_does_not_make_the_whole_test_loss() {
        // Nine intervals of plain congestion-window time and one in recovery, summed.
        let iv = |loss| LimitShares::from_deltas(1_000_000, 0, 0, 1_000_000, loss as u64, loss);
        let mut v: Vec<LimitShares> = (0..9).map(|_| iv(false)).collect();
        v.push(iv(true));
        let t = sum_shares(v.iter()).unwrap();
        assert_eq!(t.dominant().0, Limit::CongestionWindow);
        assert!((t.share(Limit::CongestionWindow) - 0.9).abs() < 1e-9);
        assert!((t.share(Limit::LossRecovery) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn busy_unbounded_is_the_network_not_the_receiver() {
        let obs = TransferObservation {
            direction: "client -> server".into(),
            senders: vec![stream(1_000_000, 10_000, 1_000_000)],
            ..TransferObservation::default()
        };
        let f = judge(&obs);
        assert_eq!(f[0].id, "congestion-window-limited");
        assert!(f.iter().all(|f| f.id != "receiver-window-limited"));
    }

    #[test]
    fn window_that_explains_the_rate_takes_the_cwnd_time() {
        // 37% rwnd, 63% cwnd, but 80 KiB / 40 ms = 16.4 Mbit/s and 15 Mbit/s measured.
        let mut s = stream(3_000_000, 1_110_000, 3_000_000);
        s.mean_rtt_us = 40_000.0;
        s.mean_snd_wnd_bytes = Some(80.0 * 1024.0);
        s.seconds = 3.0;
        s.bytes = 15_000_000 / 8 * 3;
        let obs = TransferObservation {
            direction: "server -> client".into(),
            senders: vec![s.clone()],
            receiver_rcvbuf_bytes: Some(65_536),
            ..TransferObservation::default()
        };
        let f = judge(&obs);
        assert_eq!(f[0].id, "receiver-window-limited");
        assert!((f[0].value("share").unwrap() - 100.0).abs() < 1e-6);
        // A huge window far above the measured rate: the cwnd time stays the network's.
        s.mean_snd_wnd_bytes = Some(8.0 * 1024.0 * 1024.0);
        let obs = TransferObservation {
            senders: vec![s],
            ..obs
        };
        assert_eq!(judge(&obs)[0].id, "congestion-window-limited");
    }

    #[test]
    fn a_capped_request_shared_by_every_stream_is_reported_once() {
        let capped = BufferRequest {
            option: "SO_RCVBUF",
            side: "server".into(),
            requested_bytes: 16 << 20,
            actual_bytes: 425_984,
        };
        let other_side = BufferRequest {
            side: "client".into(),
            ..capped.clone()
        };
        let obs = TransferObservation {
            direction: "client -> server".into(),
            buffers: vec![capped.clone(), other_side, capped],
            ..TransferObservation::default()
        };
        let n = judge(&obs)
            .iter()
            .filter(|f| f.id == "transfer-buffer-capped")
            .count();
        assert_eq!(n, 2, "one per (option, side, request), not one per stream");
    }

    #[test]
    fn capped_buffer_and_unobserved_sender() {
        let obs = TransferObservation {
            direction: "server -> client".into(),
            senders: vec![SenderStream {
                shares: None,
                ..SenderStream::default()
            }],
            buffers: vec![BufferRequest {
                option: "SO_RCVBUF",
                side: "client".into(),
                requested_bytes: 16 << 20,
                actual_bytes: 425_984,
            }],
            ..TransferObservation::default()
        };
        let ids: Vec<_> = judge(&obs).iter().map(|f| f.id).collect();
        assert!(ids.contains(&"transfer-buffer-capped"));
        assert!(ids.contains(&"transfer-sender-unobserved"));
    }

    #[test]
    fn app_timeout_fires_when_the_needed_bytes_arrive_late() {
        // 10 MiB at ~262 KiB/s: 40 s, against a 30 s timeout.
        let timeline: Vec<(f64, u64)> = (1..=40).map(|s| (s as f64, s * (10 << 20) / 40)).collect();
        let obs = TransferObservation {
            direction: "server -> client".into(),
            app_timeout: Some(Duration::from_secs(30)),
            bytes_needed: Some(10 << 20),
            timeline,
            ..TransferObservation::default()
        };
        let f = app_timeout(&obs).unwrap();
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.summary.contains("7.50 MiB of 10 MiB"), "{}", f.summary);
        let ok = TransferObservation {
            timeline: vec![(1.0, 5 << 20), (2.0, 10 << 20)],
            ..obs
        };
        assert_eq!(app_timeout(&ok).unwrap().severity, Severity::Info);
    }
}
