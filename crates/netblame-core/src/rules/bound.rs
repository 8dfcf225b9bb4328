//! Did the receiver's window bind the sender? The one test every source's transfer goes
//! through, its thresholds, and the window / RTT arithmetic every window verdict shows. A leaf:
//! the question modules import it, it imports none of them.

use crate::finding::{Finding, Unit};
use crate::observe::transfer::Transfer;
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::ceiling_bps;

/// Share of the sender's busy time on the receive-window stopwatch at or above which the
/// kernel alone says the receiver's window held the sender (half: the window was the larger
/// part of what the sender waited on).
pub const RWND_HOLDS_SHARE: f64 = 0.5;
/// Linux grows cwnd only while it is the limit, so under a binding window (and with pacing)
/// the busy time splits between the rwnd and cwnd stopwatches. The window still binds when its
/// stopwatch ran at least this share of the busy time... (the lab's 80 ms / 256 KiB runs split
/// 20-40% on the rwnd stopwatch)
pub const RWND_SPLIT_SHARE: f64 = 0.2;
/// ...and the measured rate reached at least this share of the window's ceiling
/// (window x 8 / RTT); the Netflix lab run reached 117% of it.
pub const CEILING_REACHED_SHARE: f64 = 0.6;
/// Another limit (send buffer, loss recovery) is blamed from this share of the busy time.
pub const BLAME_SHARE: f64 = 0.5;
/// A sender must have sent at least this much before its window is judged: a short exchange
/// never fills a window worth tuning (256 KiB, 4x the 64 KiB an unscaled window holds).
pub const MIN_BULK_BYTES: u64 = 256 * 1024;

/// Whether the receiver's advertised window bound the sender, the one rule every source uses:
/// the sender was at the window most of the time, or a real share of it while the measured
/// rate reaches the window's ceiling. `share` is rwnd-limited time over busy time (or a
/// capture's share of sending time at the window); `ceiling_bps` is window x 8 / RTT.
pub fn receiver_window_binds(share: f64, measured_bps: f64, ceiling_bps: Option<f64>) -> bool {
    share >= RWND_HOLDS_SHARE
        || (share >= RWND_SPLIT_SHARE
            && ceiling_bps.is_some_and(|c| c > 0.0 && measured_bps >= CEILING_REACHED_SHARE * c))
}

/// The window's ceiling per stream: window x 8 / RTT, when both are known.
pub fn window_ceiling(t: &Transfer) -> Option<f64> {
    let w = t.sender.peer_window_bytes.filter(|w| *w > 0)?;
    let rtt = t.path.rtt.filter(|r| !r.is_zero())?;
    Some(ceiling_bps(w, rtt))
}

/// True when the receiver's window bound this transfer's sender: [`receiver_window_binds`], or
/// the window's stopwatch ran at least [`RWND_SPLIT_SHARE`] of the busy time while the receiver
/// advertised zero windows. A closed window binds by definition, and the window read at the end
/// (after a slow reader caught up) says nothing of the ceiling it had while closed: the lab's
/// reader of 32 KiB per 100 ms advertised 8 zero windows with the sender 43-50% on the rwnd
/// stopwatch and a final window far above its rate.
pub fn window_bound(t: &Transfer) -> bool {
    if t.sender.bytes > 0 && t.sender.bytes < MIN_BULK_BYTES {
        return false;
    }
    t.window_share().is_some_and(|s| {
        receiver_window_binds(s, t.sender.rate_bps, window_ceiling(t))
            || (s >= RWND_SPLIT_SHARE && t.receiver.zero_windows > 0)
    })
}

/// The window / RTT arithmetic behind a window verdict, with its evidence added to `f`.
pub fn window_arithmetic(t: &Transfer, mut f: Finding) -> (Finding, String) {
    let share = t.window_share().unwrap_or(0.0);
    f = f.evidence("rwnd_limited", share * 100.0, Unit::Percent);
    let basis = if t.sender.shares.is_some() {
        "of its busy time (tcpi_rwnd_limited)"
    } else if t.sender.window_share_from_rate {
        "by its rate: measured rate / the window's ceiling (captured near the receiver, where in-flight bytes cannot be seen)"
    } else {
        "of its sending time (in flight within one segment of the advertised window)"
    };
    let mut why = format!(
        "the sender was at the receiver's window {} {basis}",
        pct(share)
    );
    if let Some(w) = t.sender.peer_window_bytes {
        f = f.evidence("window", w as f64, Unit::Bytes);
        if let (Some(rtt), Some(c)) = (t.path.rtt, window_ceiling(t)) {
            f = f
                .evidence("rtt", rtt.as_secs_f64() * 1e6, Unit::Microseconds)
                .evidence("ceiling", c, Unit::BitsPerSecond);
            why += &format!(
                "; receiver window {} / RTT {} = {} ceiling per stream, measured {}",
                Bytes(w),
                format_duration(rtt),
                BitRate(c),
                BitRate(t.sender.rate_bps)
            );
            if t.sender
                .shares
                .is_some_and(|s| s.rwnd_limited_us < s.cwnd_limited_us)
            {
                why += " (cwnd grows only while it is the limit, so it sits at the receiver window and the \
                        busy time splits between the two stopwatches)";
            }
        }
    }
    (f, why)
}

/// A share as a whole percent ("38%").
pub fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}
