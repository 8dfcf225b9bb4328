//! Application timeouts: did an application with a fixed timeout give up (or would it have)
//! while data was still flowing — the Netflix seed's 30 s FIN — and does a transfer at this
//! window and RTT take longer than the application's timeout?

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::observe::flow::{CloseKind, FlowObservation};
use crate::observe::transfer::AppDeadline;
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::Workload;
use crate::window::{transfer_time, TransferEstimate, TransferInput, WindowModel};
use std::time::Duration;

/// An application with a fixed timeout gave up (or would have) while data was still flowing.
pub const APPLICATION_TIMEOUT: FindingSpec = FindingSpec {
    id: "application-timeout",
    layer: Layer::Application,
    title: "whether an application with a fixed timeout gave up (or would have) while data was still flowing",
};
/// At this window and RTT the transfer takes longer than the application's timeout.
pub const TRANSFER_MISSES_TIMEOUT: FindingSpec = FindingSpec {
    id: "transfer-misses-timeout",
    layer: Layer::Application,
    title: "at this window and RTT the transfer takes longer than the application's timeout",
};

/// Findings this module builds.
pub const FINDINGS: &[&FindingSpec] = &[&APPLICATION_TIMEOUT, &TRANSFER_MISSES_TIMEOUT];

/// Timeouts applications and libraries commonly configure, seconds (HTTP clients, Kafka,
/// JDBC, load balancers' idle timeouts). A close at one of these, measured from the
/// connection's start or from the last data received, is a timer's signature.
pub const COMMON_TIMEOUTS_S: &[u64] = &[
    1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 100, 120, 180, 240, 300, 600, 900, 1800, 3600,
];
/// How far from such a value a close may be: a fixed 30 ms (timer slack and scheduling) plus
/// one RTT (the capture point may sit a path away from the closer). It does not grow with the
/// duration: "any long connection ends round" is what a relative tolerance gives.
pub const TOLERANCE: Duration = Duration::from_millis(30);

/// How sure a capture verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confidence {
    /// Measured from the last data the closer received: a read (idle) timeout.
    ReadTimeout,
    /// Measured from the connection's start: a total deadline, or a test of that length.
    Deadline,
}

/// What a close looked like, in the terms the verdict needs.
#[derive(Debug, Clone)]
pub struct CloseSignature {
    pub subject: String,
    /// "client"/"server".
    pub closer: String,
    pub peer: String,
    pub kind: &'static str,
    /// Time from the reference point to the close, and which reference.
    pub measured: Duration,
    pub from: &'static str,
    pub timeout_s: u64,
    pub confidence: Confidence,
    pub peer_data_after_close: u64,
    pub peer_unacked_at_close: u64,
    pub rsts_after_close: u64,
}

/// `application-timeout`, the one constructor. `gave_up`: `Some(true)` when the data shows an
/// application with that timeout would have given up (critical), `Some(false)` when it would
/// not (a note), `None` when only a close's timing suggests it (a warning: the wire cannot tell
/// a timer from a job of that length).
fn application_timeout(
    subject: &str,
    gave_up: Option<bool>,
    summary: String,
    timeout_s: f64,
) -> Finding {
    let severity = match gave_up {
        Some(true) => Severity::Critical,
        Some(false) => Severity::Info,
        None => Severity::Warning,
    };
    Finding::new(&APPLICATION_TIMEOUT, severity, summary)
        .subject(subject.to_string())
        .evidence("timeout", timeout_s, Unit::Seconds)
}

/// The common timeout `d` sits at, within [`TOLERANCE`] + `rtt`.
pub fn common_timeout(d: Duration, rtt: Duration) -> Option<u64> {
    let tol = (TOLERANCE + rtt).as_secs_f64();
    COMMON_TIMEOUTS_S
        .iter()
        .copied()
        .find(|&s| (d.as_secs_f64() - s as f64).abs() <= tol)
}

/// The Netflix signature in a capture: the side that closed was still receiving data (its
/// peer had data unacknowledged at the close, or kept sending after it), and it closed at a
/// common timeout after the connection's start or after the last data it received.
pub fn close_signature(flow: &FlowObservation, rtt: Duration) -> Option<CloseSignature> {
    let c = &flow.close;
    let closer = c.closer?;
    let at = c.at_us?;
    if flow.midstream {
        return None;
    }
    let still_receiving = c.peer_data_after_close_bytes > 0 || c.peer_unacked_at_close_bytes > 0;
    if !still_receiving {
        return None;
    }
    let from_last = c
        .since_last_data_received_us
        .map(Duration::from_micros)
        .and_then(|d| Some((d, common_timeout(d, rtt)?)));
    let from_start =
        common_timeout(Duration::from_micros(at), rtt).map(|s| (Duration::from_micros(at), s));
    let (measured, timeout_s, from, confidence) = match (from_last, from_start) {
        (Some((d, s)), _) => (d, s, "the last data it received", Confidence::ReadTimeout),
        (None, Some((d, s))) => (
            d,
            s,
            "the connection start (first SYN)",
            Confidence::Deadline,
        ),
        (None, None) => return None,
    };
    Some(CloseSignature {
        subject: format!("#{} {}", flow.id, flow.label()),
        closer: closer.to_string(),
        peer: closer.other().to_string(),
        kind: match c.kind {
            Some(CloseKind::Rst) => "RST",
            _ => "FIN",
        },
        measured,
        from,
        timeout_s,
        confidence,
        peer_data_after_close: c.peer_data_after_close_bytes,
        peer_unacked_at_close: c.peer_unacked_at_close_bytes,
        rsts_after_close: c.closer_rsts_after_close,
    })
}

/// `application-timeout` from a capture's close signature. A warning: the wire cannot tell a
/// timer from a test of that length, so the confidence is stated.
pub fn from_close(s: &CloseSignature) -> Finding {
    let sure = match s.confidence {
        Confidence::ReadTimeout => "likely a read (idle) timeout: nothing else closes exactly that long after the last data",
        Confidence::Deadline => "possibly a total deadline; a test or job of exactly that length looks the same, so check the application",
    };
    application_timeout(
        &s.subject,
        None,
        format!(
            "the {} closed ({}) {} after {}, at a common {} s timeout, while the {} still had data to send",
            s.closer,
            s.kind,
            format_duration(s.measured),
            s.from,
            s.timeout_s,
            s.peer
        ),
        s.timeout_s as f64,
    )
    .evidence("close_after", s.measured.as_secs_f64(), Unit::Seconds)
    .evidence("peer_data_after_close", s.peer_data_after_close as f64, Unit::Bytes)
    .evidence("peer_unacked_at_close", s.peer_unacked_at_close as f64, Unit::Bytes)
    .evidence("rsts_after_close", s.rsts_after_close as f64, Unit::Count)
    .explain(format!(
        "close {} after {} is within {:.0} ms of {} s; the {} was still receiving ({} bytes arrived after the \
         close, {} were unacknowledged at it, {} RSTs answered them): {sure}",
        format_duration(s.measured),
        s.from,
        (s.measured.as_secs_f64() - s.timeout_s as f64).abs() * 1e3,
        s.timeout_s,
        s.closer,
        s.peer_data_after_close,
        s.peer_unacked_at_close,
        s.rsts_after_close
    ))
    .fix(format!(
        "the {}'s application likely gave up after {} s: find that timeout (e.g. a 30 s read timeout) and either \
         raise it or find why the transfer is slow (window limited? zero windows? loss?) in the other findings \
         for this connection",
        s.closer, s.timeout_s
    ))
}

/// `application-timeout` for a throughput test run with `--app-timeout`: whether an
/// application with that read timeout (and, with `-n`, that much data to fetch) would have
/// given up. Critical when it would have, a note when not.
pub fn from_deadline(subject: &str, d: &AppDeadline) -> Finding {
    let timeout = d.timeout;
    let t = timeout.as_secs_f64();
    let received_by = |secs: f64| -> u64 {
        let mut prev = (0.0, 0u64);
        for &(end, bytes) in &d.timeline {
            if end >= secs {
                let span = (end - prev.0).max(1e-9);
                let frac = ((secs - prev.0) / span).clamp(0.0, 1.0);
                return prev.1 + ((bytes.saturating_sub(prev.1)) as f64 * frac) as u64;
            }
            prev = (end, bytes);
        }
        prev.1
    };
    let total = d.timeline.last().map(|x| x.1).unwrap_or(0);
    let elapsed = d.timeline.last().map(|x| x.0).unwrap_or(0.0);
    let mut longest_stall = 0.0f64;
    let mut stall_start: Option<f64> = None;
    let mut prev = (0.0, 0u64);
    for &(end, bytes) in &d.timeline {
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
            format!("longest stall {longest_stall:.1} s >= timeout {t:.1} s"),
        )
    } else if let Some(need) = d.bytes_needed {
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
                format!("{} received by {t:.1} s; the whole {} took {elapsed:.1} s", Bytes(have), Bytes(need)),
            )
        } else if elapsed <= t && total >= need {
            (
                false,
                format!(
                    "{} arrived in {elapsed:.1} s, within the {} timeout",
                    Bytes(need),
                    format_duration(timeout)
                ),
                format!(
                    "{} / {} = {done_at:.1} s < {t:.1} s",
                    Bytes(need),
                    BitRate(rate * 8.0)
                ),
            )
        } else {
            (
                done_at > t,
                format!(
                    "at {} the {} would take {done_at:.1} s against a {} timeout",
                    BitRate(rate * 8.0),
                    Bytes(need),
                    format_duration(timeout)
                ),
                format!("{} / {} = {done_at:.1} s", Bytes(need), BitRate(rate * 8.0)),
            )
        }
    } else {
        (
            false,
            format!(
                "data kept arriving (longest stall {longest_stall:.1} s): a {} read timeout would not have fired; {} arrived in the first {}",
                format_duration(timeout),
                Bytes(received_by(t.min(elapsed))),
                format_duration(Duration::from_secs_f64(t.min(elapsed)))
            ),
            format!("longest stall {longest_stall:.1} s < timeout {t:.1} s"),
        )
    };
    application_timeout(subject, Some(hit), summary, t)
        .evidence("longest_stall", longest_stall, Unit::Seconds)
        .evidence("received", total as f64, Unit::Bytes)
        .explain(why)
        .fix(if hit {
            "raise the window (see the receiver-window finding) or the application's timeout"
        } else {
            "none needed"
        })
}

/// The transfer estimate for a window model under a workload, when RTT and size are known.
pub fn estimate(model: &WindowModel, w: &Workload) -> Option<TransferEstimate> {
    Some(transfer_time(&TransferInput {
        bytes: w.size?,
        window_bytes: model.window_clamp_bytes,
        rtt: w.rtt?,
        link_bps: w.link_bps,
        mss: w.mss.max(1),
    }))
}

/// `transfer-misses-timeout`: the modelled transfer takes longer than the timeout.
pub fn misses_timeout(model: &WindowModel, w: &Workload) -> Option<Finding> {
    let (size, rtt, timeout) = (w.size?, w.rtt?, w.timeout?);
    let est = estimate(model, w)?;
    if est.total <= timeout {
        return None;
    }
    Some(
        Finding::new(
            &TRANSFER_MISSES_TIMEOUT,
            Severity::Critical,
            format!(
                "{} takes about {} at {} RTT: more than the {} timeout",
                Bytes(size),
                format_duration(est.total),
                format_duration(rtt),
                format_duration(timeout)
            ),
        )
        .evidence("transfer_time", est.total.as_secs_f64(), Unit::Seconds)
        .evidence("timeout", timeout.as_secs_f64(), Unit::Seconds)
        .evidence("steady_rate", est.steady_bps, Unit::BitsPerSecond)
        .evidence("round_trips", est.round_trips as f64, Unit::Count)
        .explain(format!(
            "{} window / {} RTT = {}; {} in {} round trips (1 handshake + slow start from 10 MSS) = {}",
            Bytes(model.window_clamp_bytes),
            format_duration(rtt),
            BitRate(est.steady_bps),
            Bytes(size),
            est.round_trips,
            format_duration(est.total)
        ))
        .fix("raise the window (do not set SO_RCVBUF, size tcp_rmem[2] for the BDP) or the application timeout"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_common_timeouts_within_a_fixed_tolerance() {
        let rtt = Duration::from_millis(10);
        assert_eq!(common_timeout(Duration::from_millis(30_012), rtt), Some(30));
        // An iperf3 test's end at 7.000 s is no common timeout.
        assert_eq!(common_timeout(Duration::from_millis(7_000), rtt), None);
        // Long connections do not end "round" by a growing tolerance.
        assert_eq!(common_timeout(Duration::from_millis(66_600), rtt), None);
        assert_eq!(common_timeout(Duration::from_millis(29_900), rtt), None);
    }
}
