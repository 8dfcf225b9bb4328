//! What bounded the sender: the receiver's window, the send buffer, the congestion window (the
//! path), loss recovery, or the application having nothing to send. One rule for every source
//! ([`judge`] on a [`Transfer`]): live sockets, throughput tests, captures and lab runs differ
//! only in which facts they could fill in. When the receiver's window bound the sender,
//! [`crate::rules::receiver::why_window_small`] names the cause.

use crate::finding::{Finding, FindingSpec, Layer, Limit, Severity, Unit};
use crate::observe::transfer::Transfer;
use crate::observe::LimitShares;
use crate::rules::bound::{pct, window_arithmetic, window_bound, BLAME_SHARE};
use crate::rules::{buffers, loss, receiver};
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::ceiling_bps;
use std::time::Duration;

/// The sender waited on the receiver's window, and the receiver's side shows no more specific cause.
pub const RECEIVER_WINDOW_LIMITED: FindingSpec = FindingSpec {
    id: "receiver-window-limited",
    layer: Layer::Application,
    title: "the sender was held by the receiver's advertised window (window / RTT caps the rate)",
};
/// The sender waited on its own send buffer.
pub const SEND_BUFFER_LIMITED: FindingSpec = FindingSpec {
    id: "send-buffer-limited",
    layer: Layer::Host,
    title: "the sender waited on its own send buffer",
};
/// The congestion window set the pace: the path, not the endpoints.
pub const CONGESTION_WINDOW_LIMITED: FindingSpec = FindingSpec {
    id: "congestion-window-limited",
    layer: Layer::Network,
    title: "the sender was held by its congestion window: the path, not the endpoints",
};
/// A sender asked to send as fast as it can often had nothing queued.
pub const TRANSFER_SENDER_IDLE: FindingSpec = FindingSpec {
    id: "transfer-sender-idle",
    layer: Layer::Application,
    title:
        "the sender often had nothing queued: the sending application (or its CPU) was the limit",
};
/// The sending end's stopwatches were not available.
pub const TRANSFER_SENDER_UNOBSERVED: FindingSpec = FindingSpec {
    id: "transfer-sender-unobserved",
    layer: Layer::Host,
    title: "the sending end's tcp_info was not available, so the limit cannot be named",
};

/// Findings this module builds.
pub const FINDINGS: &[&FindingSpec] = &[
    &RECEIVER_WINDOW_LIMITED,
    &SEND_BUFFER_LIMITED,
    &CONGESTION_WINDOW_LIMITED,
    &TRANSFER_SENDER_IDLE,
    &TRANSFER_SENDER_UNOBSERVED,
];

/// A limit other than the dominant one is reported (as a note) from this share of the time:
/// a quarter of the test is worth a line.
pub const NOTABLE_SHARE: f64 = 0.25;
/// Below this share of the interval busy, a live sender is idle: its application had nothing
/// to send, and that is no one's fault.
pub const IDLE_BUSY_SHARE: f64 = 0.05;
/// What bounded the sender over the observation, from its stopwatches: `Application` when it
/// had (almost) nothing to send, else the stopwatch with the most busy time. A full send buffer
/// with fewer packets in flight than cwnd allows is the send buffer even when its stopwatch ran
/// less (the kernel's stopwatch only catches waits that empty the write queue).
pub fn limit(t: &Transfer) -> Option<(Limit, f64)> {
    let s = t.sender.shares?;
    if s.busy_share() < IDLE_BUSY_SHARE {
        return Some((Limit::Application, s.share(Limit::Application)));
    }
    let busy = s.busy_us.max(1) as f64;
    if window_bound(t) {
        // Under a binding window cwnd sits at the window: both stopwatches are the window's.
        let us = if s.rwnd_limited_us >= s.cwnd_limited_us {
            s.rwnd_limited_us
        } else {
            s.rwnd_limited_us + s.cwnd_limited_us - s.loss_recovery_us.min(s.cwnd_limited_us)
        };
        return Some((Limit::ReceiverWindow, us as f64 / busy));
    }
    let network = s.cwnd_limited_us - s.loss_recovery_us.min(s.cwnd_limited_us);
    let candidates = [
        (Limit::ReceiverWindow, s.rwnd_limited_us),
        (Limit::SendBuffer, s.sndbuf_limited_us),
        (
            Limit::LossRecovery,
            s.loss_recovery_us.min(s.cwnd_limited_us),
        ),
        (Limit::CongestionWindow, network),
    ];
    let (l, us) = candidates
        .into_iter()
        .fold((Limit::CongestionWindow, 0u64), |b, c| {
            if c.1 > b.1 {
                c
            } else {
                b
            }
        });
    if l == Limit::CongestionWindow && t.sender.sndbuf_full_below_cwnd {
        let us = s.sndbuf_limited_us + network;
        return Some((Limit::SendBuffer, us as f64 / busy));
    }
    Some((l, us as f64 / busy))
}

fn shares_text(s: &LimitShares) -> String {
    format!(
        "rwnd {}, sndbuf {}, cwnd {}, loss {}, idle {} of {}",
        pct(s.share(Limit::ReceiverWindow)),
        pct(s.share(Limit::SendBuffer)),
        pct(s.share(Limit::CongestionWindow)),
        pct(s.share(Limit::LossRecovery)),
        pct(s.share(Limit::Application)),
        format_duration(Duration::from_micros(s.interval_us))
    )
}

/// Judges what bounded one direction's sender. Returns nothing for an idle live connection.
pub fn judge(t: &Transfer) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(buffers::capped_requests(t));
    if !t.sender.observed && t.sender.at_window_share.is_none() {
        if t.sender.expected_busy {
            out.push(unobserved(t));
        }
        out.extend(receiver::judge(t));
        return out;
    }
    if window_bound(t) {
        let why = receiver::why_window_small(t);
        if why.is_empty() {
            out.push(receiver_window_limited(t));
        }
        out.extend(why);
    } else if let Some(f) = receiver::judge_backlog(t) {
        // The receiver fell behind although the window was not what the sender waited on.
        out.push(f);
    }
    out.extend(loss::judge(t));
    if let Some(s) = t.sender.shares {
        let (dominant, _) = limit(t).unwrap_or((Limit::Application, 0.0));
        if dominant == Limit::ReceiverWindow {
            // The window's time is the window's (cwnd sits at it), already judged above.
            return out;
        }
        for l in [
            Limit::SendBuffer,
            Limit::CongestionWindow,
            Limit::Application,
        ] {
            let share = match l {
                Limit::SendBuffer if dominant == l => limit(t).map_or(0.0, |x| x.1),
                Limit::SendBuffer => s.sndbuf_limited_us as f64 / s.busy_us.max(1) as f64,
                _ => s.share(l),
            };
            let f = match l {
                Limit::SendBuffer if share >= NOTABLE_SHARE => Some(send_buffer_limited(t, share)),
                Limit::CongestionWindow if t.sender.expected_busy && share >= NOTABLE_SHARE => {
                    Some(congestion_window_limited(t, share))
                }
                Limit::Application if t.sender.expected_busy && share >= NOTABLE_SHARE => {
                    Some(sender_idle(t, share))
                }
                _ => None,
            };
            out.extend(f);
        }
    }
    out
}

/// Evidence every sender finding carries.
fn base(spec: &'static FindingSpec, t: &Transfer, severity: Severity, summary: String) -> Finding {
    let mut f = Finding::new(spec, severity, summary).subject(t.subject.clone());
    if let Some(s) = t.sender.shares {
        f = f
            .evidence("busy", s.busy_us as f64, Unit::Microseconds)
            .evidence("interval", s.interval_us as f64, Unit::Microseconds);
    }
    if t.sender.rate_bps > 0.0 {
        f = f.evidence("throughput", t.sender.rate_bps, Unit::BitsPerSecond);
    }
    if t.sender.streams > 1 {
        f = f.evidence("streams", t.sender.streams as f64, Unit::Count);
    }
    f
}

/// `receiver-window-limited`: the window bound the sender, and nothing seen at the receiver
/// names a more specific cause. A warning; a note when the receiver was seen keeping its queue
/// empty on a host whose autotuning had room (the window was still growing).
pub fn receiver_window_limited(t: &Transfer) -> Finding {
    let share = t.window_share().unwrap_or(0.0);
    // Seen at the receiver, keeping its queue empty, on a host whose autotuning had room: the
    // window was still growing (a note), not a receiver holding the sender back.
    let ramp = t.receiver.host.is_some() && receiver::fell_behind(t) == Some(false);
    let f = base(
        &RECEIVER_WINDOW_LIMITED,
        t,
        if ramp {
            Severity::Info
        } else {
            Severity::Warning
        },
        format!(
            "the receiver's window held the sender {} of the time{}",
            pct(share),
            t.sender
                .peer_window_bytes
                .map(|w| format!(" (window {})", Bytes(w)))
                .unwrap_or_default()
        ),
    );
    let (f, mut why) = window_arithmetic(t, f);
    if ramp {
        why += "; the receiver kept its queue empty and its tcp_rmem[2] allowed more: autotuning was still \
                growing the window (it starts at tcp_rmem[1] and grows with what the application reads)";
    }
    f.explain(why).fix(
        "look at the receiving end (`netblame sockets --explain` there): an application that reads slowly \
         leaves its Recv-Q full (receiver-zero-window, receiver-app-slow); an SO_RCVBUF caps the window \
         (rcvbuf-fixed-small); a tcp_rmem[2] below rate x RTT caps autotuning (buffer-max-below-bdp)",
    )
}

/// `send-buffer-limited` at `share` of the busy time: a warning from [`BLAME_SHARE`] when the
/// buffer is the application's choice (SO_SNDBUF), the path is known to be faster than the
/// buffer allows, or on a live connection; a note when a test on an unknown path ran into its
/// autotuned send buffer's maximum (any sender stops somewhere).
pub fn send_buffer_limited(t: &Transfer, share: f64) -> Finding {
    let set_by_app = t
        .buffers
        .iter()
        .any(|b| b.option == "SO_SNDBUF" && b.applied);
    let path_faster = match (t.sender.sndbuf_bytes, t.path.rtt, t.path.link_bps) {
        (Some(b), Some(rtt), Some(link)) if !rtt.is_zero() => ceiling_bps(b, rtt) < link,
        _ => false,
    };
    let severity = if share >= BLAME_SHARE && (set_by_app || path_faster || !t.sender.expected_busy)
    {
        Severity::Warning
    } else {
        Severity::Info
    };
    let mut f = base(
        &SEND_BUFFER_LIMITED,
        t,
        severity,
        format!(
            "the sender waited for room in its send buffer {} of its busy time",
            pct(share)
        ),
    )
    .evidence("limited_share", share * 100.0, Unit::Percent);
    let mut why = match t.sender.shares {
        Some(s) => format!("Sender time: {}", shares_text(&s)),
        None => String::new(),
    };
    if t.sender.sndbuf_full_below_cwnd {
        why += "; the send buffer was seen full with fewer packets in flight than cwnd allows";
    }
    if let (Some(b), Some(rtt)) = (t.sender.sndbuf_bytes, t.path.rtt.filter(|r| !r.is_zero())) {
        let c = ceiling_bps(b, rtt);
        f = f
            .evidence("sndbuf", b as f64, Unit::Bytes)
            .evidence("rtt", rtt.as_secs_f64() * 1e6, Unit::Microseconds)
            .evidence("ceiling", c, Unit::BitsPerSecond);
        why += &format!(
            "; send buffer {} / RTT {} = {} at most",
            Bytes(b),
            format_duration(rtt),
            BitRate(c)
        );
    }
    f.explain(why).fix(
        "do not set SO_SNDBUF in the application (autotuning grows it up to tcp_wmem[2]); if it is not \
         set, raise net.ipv4.tcp_wmem[2] and net.core.wmem_max to at least the bandwidth-delay product",
    )
}

/// `congestion-window-limited` (a note): the sender went as fast as the path allowed.
pub fn congestion_window_limited(t: &Transfer, share: f64) -> Finding {
    let mut f = base(
        &CONGESTION_WINDOW_LIMITED,
        t,
        Severity::Info,
        format!(
            "no host-side limit: the congestion window held the sender {} of the time{}",
            pct(share),
            t.path
                .rtt
                .map(|r| format!(" at {} RTT", format_duration(r)))
                .unwrap_or_default()
        ),
    );
    let mut why =
        "busy and bounded by neither the receiver window nor the send buffer: the sender went \
                   as fast as the path (or, on loopback, the CPU) allowed"
            .to_string();
    if let Some(s) = t.sender.shares {
        why += &format!(". Sender time: {}", shares_text(&s));
    }
    if let Some(rate) = t.path.link_bps {
        f = f.evidence("link_rate", rate, Unit::BitsPerSecond);
        why += &format!(
            "; {} of a {} link ({:.0}%)",
            BitRate(t.total_rate_bps()),
            BitRate(rate),
            t.total_rate_bps() / rate * 100.0
        );
    }
    f.explain(why)
        .fix("nothing on the hosts: the path capacity or its congestion sets this rate")
}

/// `transfer-sender-idle` (a note): a sender that should have been busy had nothing queued.
pub fn sender_idle(t: &Transfer, share: f64) -> Finding {
    let mut why = "wall time without data queued is the sending application's (or its CPU's) doing"
        .to_string();
    if let Some(s) = t.sender.shares {
        why += &format!(". Sender time: {}", shares_text(&s));
    }
    base(
        &TRANSFER_SENDER_IDLE,
        t,
        Severity::Info,
        format!("the sender had nothing queued {} of the time", pct(share)),
    )
    .evidence("share", share * 100.0, Unit::Percent)
    .explain(why)
    .fix("make the sender write sooner and in larger chunks; check its CPU (it may be the bottleneck)")
}

/// `transfer-sender-unobserved` (a note).
pub fn unobserved(t: &Transfer) -> Finding {
    base(
        &TRANSFER_SENDER_UNOBSERVED,
        t,
        Severity::Info,
        format!(
            "{}: no tcp_info from the sending end; measured {}",
            t.subject,
            BitRate(t.total_rate_bps())
        ),
    )
    .explain(
        "the sender is not netblame (e.g. iperf3 -s in reverse mode) or its kernel predates 4.10",
    )
    .fix("run `netblame bench server` on the sending side to see why the transfer was limited")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::transfer::{ReceiverFacts, SenderFacts};
    use crate::rules::bound::receiver_window_binds;

    #[test]
    fn window_binds_on_the_stopwatch_or_on_split_time_at_the_ceiling() {
        assert!(receiver_window_binds(0.6, 1.0, None));
        // Netflix lab run: 38% rwnd, 6.11 Mbit/s against a 5.24 Mbit/s ceiling.
        assert!(receiver_window_binds(0.383, 6.11e6, Some(5.24e6)));
        assert!(!receiver_window_binds(0.35, 1e6, Some(100e6)));
        assert!(!receiver_window_binds(0.05, 90e6, Some(100e6)));
        assert!(!receiver_window_binds(0.3, 90e6, None));
    }

    fn sender(busy: u64, rwnd: u64, sndbuf: u64) -> Transfer {
        Transfer {
            subject: "s".into(),
            sender: SenderFacts {
                shares: Some(LimitShares::from_deltas(
                    busy, rwnd, sndbuf, 1_000_000, 0, false,
                )),
                observed: true,
                rate_bps: 3e6,
                streams: 1,
                peer_window_bytes: Some(65536),
                window_scaling: Some(true),
                ..Default::default()
            },
            path: crate::observe::transfer::PathFacts {
                rtt: Some(Duration::from_millis(137)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_unknown_receiver_gets_the_window_arithmetic() {
        let t = sender(950_000, 900_000, 0);
        assert_eq!(limit(&t).unwrap().0, Limit::ReceiverWindow);
        let f = judge(&t);
        assert_eq!(f[0].id, "receiver-window-limited");
        assert!(
            f[0].explanation
                .contains("64 KiB / RTT 137 ms = 3.83 Mbit/s ceiling"),
            "{}",
            f[0].explanation
        );
    }

    #[test]
    fn a_full_send_buffer_below_cwnd_is_the_send_buffer() {
        let mut t = sender(1_000_000, 0, 0);
        t.sender.sndbuf_full_below_cwnd = true;
        assert_eq!(limit(&t).unwrap().0, Limit::SendBuffer);
        assert_eq!(judge(&t)[0].id, "send-buffer-limited");
        t.sender.sndbuf_full_below_cwnd = false;
        assert_eq!(limit(&t).unwrap().0, Limit::CongestionWindow);
        assert!(
            judge(&t).is_empty(),
            "a live connection at cwnd is no one's fault"
        );
    }

    #[test]
    fn an_idle_live_connection_gets_no_blame() {
        let t = sender(5000, 0, 0);
        assert_eq!(limit(&t).unwrap().0, Limit::Application);
        assert!(judge(&t).is_empty());
        let mut test = t.clone();
        test.sender.expected_busy = true;
        assert!(judge(&test).iter().any(|f| f.id == "transfer-sender-idle"));
    }

    /// The lab's slow reader: 46% on the rwnd stopwatch, 3.45 Mbit/s against a final window
    /// worth 1 Gbit/s at 20 ms (the reader drained at the end), and zero windows advertised.
    #[test]
    fn zero_windows_with_a_split_stopwatch_bind() {
        let mut t = sender(1_000_000, 460_000, 0);
        t.sender.rate_bps = 3.45e6;
        t.sender.peer_window_bytes = Some(2_600_000);
        t.path.rtt = Some(Duration::from_millis(20));
        assert!(
            !window_bound(&t),
            "no zero window: the final window says no"
        );
        t.receiver.zero_windows = 8;
        assert!(window_bound(&t));
        // A share under the split threshold is not the window, zero windows or not.
        let mut brief = sender(1_000_000, 150_000, 0);
        brief.receiver.zero_windows = 1;
        brief.sender.peer_window_bytes = Some(2_600_000);
        assert!(!window_bound(&brief));
    }

    #[test]
    fn a_small_transfer_is_not_window_limited() {
        let mut t = sender(950_000, 900_000, 0);
        t.sender.bytes = 10_000;
        t.receiver = ReceiverFacts::default();
        assert!(!window_bound(&t));
    }
}
