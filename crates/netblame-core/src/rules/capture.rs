//! Verdicts on one TCP connection reconstructed from a packet capture: receiver-window limited,
//! a receiving application that stopped reading (zero windows), network loss, an application
//! timeout (the Netflix 30 s signature), and handshake trouble.

use crate::finding::{Finding, Severity, Unit};
use crate::observe::flow::{CloseKind, FlowObservation, Side};
use crate::units::{format_duration, BitRate, Bytes};
use std::time::Duration;

use crate::catalogue::spec;

/// Thresholds, documented in docs/findings.md.
pub mod thresholds {
    /// Share of the sending time at the receiver's window for `receiver-window-limited`.
    pub const WINDOW_LIMITED_SHARE: f64 = 0.3;
    /// A sender must have sent at least this much to be judged window limited.
    pub const MIN_BULK_BYTES: u64 = 256 * 1024;
    /// Retransmitted share of unique bytes for `network-loss` (with the count below).
    pub const LOSS_RATIO: f64 = 0.001;
    /// Fewest retransmissions or missing segments for `network-loss`.
    pub const MIN_LOSS_EVENTS: u64 = 3;
    /// Shortest time counted as an application timeout, seconds.
    pub const MIN_TIMEOUT_S: f64 = 1.0;
    /// How close to a whole second a close must be: 20 ms plus 0.5% of the value.
    pub const ROUND_ABS_S: f64 = 0.020;
    pub const ROUND_REL: f64 = 0.005;
}

/// When `seconds` is within tolerance of a whole number of seconds (at least one), that number.
pub fn round_seconds(seconds: f64) -> Option<u64> {
    if seconds < thresholds::MIN_TIMEOUT_S - thresholds::ROUND_ABS_S {
        return None;
    }
    let r = seconds.round();
    let tol = thresholds::ROUND_ABS_S + thresholds::ROUND_REL * r;
    ((seconds - r).abs() <= tol && r >= 1.0).then_some(r as u64)
}

fn us(v: u64) -> String {
    format_duration(Duration::from_micros(v))
}

/// Judges one connection; findings carry the connection as subject.
pub fn judge(flow: &FlowObservation) -> Vec<Finding> {
    let subject = format!("#{} {}", flow.id, flow.label());
    let mut out = Vec::new();
    for side in [Side::Client, Side::Server] {
        if let Some(f) = window_limited(flow, side) {
            out.push(f);
        }
    }
    if let Some(f) = zero_window(flow) {
        out.push(f);
    }
    for side in [Side::Client, Side::Server] {
        if let Some(f) = loss(flow, side) {
            out.push(f);
        }
    }
    if let Some(f) = app_timeout(flow) {
        out.push(f);
    }
    if let Some(f) = handshake(flow) {
        out.push(f);
    }
    for f in &mut out {
        f.subject = Some(subject.clone());
    }
    crate::finding::rank(&mut out);
    out
}

/// The RTT for window arithmetic: the larger of the handshake RTT and the mean RTT of the
/// sender's data. Samples taken near the receiver only see its ACK delay; the handshake RTT
/// covers the whole path from any capture point, and samples near the sender add queueing.
pub fn path_rtt_us(flow: &FlowObservation, sender: Side) -> Option<u64> {
    let a = flow.handshake.rtt_us;
    let b = flow.sent_by(sender).rtt.mean_us;
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
    .filter(|r| *r > 0)
}

fn window_limited(flow: &FlowObservation, sender: Side) -> Option<Finding> {
    let s = flow.sent_by(sender);
    let r = flow.sent_by(sender.other());
    if s.unique_bytes < thresholds::MIN_BULK_BYTES {
        return None;
    }
    let share = s.window_limited_share();
    if share < thresholds::WINDOW_LIMITED_SHARE {
        return None;
    }
    let window = r.window_mean_bytes.unwrap_or(0);
    let mut f = Finding::new(
        spec("receiver-window-limited"),
        if share >= 0.6 {
            Severity::Warning
        } else {
            Severity::Info
        },
        format!(
            "{sender} was at the {}'s receive window {:.0}% of its sending time (mean window {})",
            sender.other(),
            share * 100.0,
            Bytes(window)
        ),
    )
    .evidence("window_limited_share", share * 100.0, Unit::Percent)
    .evidence("window_mean", window as f64, Unit::Bytes)
    .evidence(
        "window_max",
        r.window_max_bytes.unwrap_or(0) as f64,
        Unit::Bytes,
    )
    .evidence(
        "sending_rate",
        s.sending_rate_bits_per_second,
        Unit::BitsPerSecond,
    );
    let mut why = format!(
        "{} of {} sending time had in flight within one segment of the advertised window",
        us(s.window_limited_us),
        us(s.sending_us())
    );
    if let Some(rtt) = path_rtt_us(flow, sender) {
        let ceiling = window as f64 * 8.0 / (rtt as f64 / 1e6);
        f = f.evidence("rtt", rtt as f64, Unit::Microseconds).evidence(
            "ceiling",
            ceiling,
            Unit::BitsPerSecond,
        );
        why += &format!(
            "; {} window / {} RTT = {} ceiling, achieved {}",
            Bytes(window),
            us(rtt),
            BitRate(ceiling),
            BitRate(s.sending_rate_bits_per_second)
        );
    }
    Some(f.explain(why).fix(
        "let the receiver's window grow: do not set SO_RCVBUF on the receiver (autotuning), raise \
         tcp_rmem[2]/rmem_max to at least rate x RTT, check the kernel for window-clamp issues \
         (netblame calc window)",
    ))
}

fn zero_window(flow: &FlowObservation) -> Option<Finding> {
    let eps = &flow.zero_windows;
    if eps.is_empty() {
        return None;
    }
    // Blame the side with most zero-window time.
    let time = |side: Side| -> u64 {
        eps.iter()
            .filter(|e| e.side == side)
            .map(|e| e.duration_us)
            .sum()
    };
    let side = if time(Side::Client) >= time(Side::Server) {
        Side::Client
    } else {
        Side::Server
    };
    let mine: Vec<_> = eps.iter().filter(|e| e.side == side).collect();
    let total = time(side);
    let longest = mine.iter().map(|e| e.duration_us).max().unwrap_or(0);
    let probes: u64 = mine.iter().map(|e| e.probes).sum();
    let adverts = flow.sent_by(side).zero_window_adverts;
    let share = if flow.duration_us > 0 {
        total as f64 / flow.duration_us as f64
    } else {
        0.0
    };
    // Sub-millisecond zero windows on a short local exchange are normal; stalls are not.
    let sev = if longest >= 1_000_000 || (share >= 0.1 && total >= 100_000) {
        Severity::Warning
    } else {
        Severity::Info
    };
    Some(
        Finding::new(
            spec("receiver-zero-window"),
            sev,
            format!(
                "the {side} advertised a zero window {} times ({} episodes, {} in all, longest {})",
                adverts,
                mine.len(),
                us(total),
                us(longest)
            ),
        )
        .evidence("zero_window_adverts", adverts as f64, Unit::Count)
        .evidence("episodes", mine.len() as f64, Unit::Count)
        .evidence("zero_window_time", total as f64, Unit::Microseconds)
        .evidence("longest", longest as f64, Unit::Microseconds)
        .evidence("zero_window_probes", probes as f64, Unit::Count)
        .evidence("share_of_connection", share * 100.0, Unit::Percent)
        .explain(format!(
            "a zero window means the {side}'s receive buffer was full: its application did not \
             read; the {} could send nothing for {} ({:.1}% of the connection)",
            side.other(),
            us(total),
            share * 100.0
        ))
        .fix(
            "make the receiving application read faster (a slow consumer, a blocked thread, GC \
             pauses) or give it a larger receive buffer; the network is not the bottleneck here",
        ),
    )
}

fn loss(flow: &FlowObservation, sender: Side) -> Option<Finding> {
    let s = flow.sent_by(sender);
    // Gaps without retransmissions are packets the capture dropped, not the network: the
    // receiver acknowledged them. Loss is judged by retransmissions.
    let real_retrans = s.retransmissions.saturating_sub(s.spurious_retransmissions);
    if real_retrans < thresholds::MIN_LOSS_EVENTS || s.unique_bytes == 0 {
        return None;
    }
    let ratio = s.retransmitted_bytes as f64 / s.unique_bytes as f64;
    if ratio < thresholds::LOSS_RATIO {
        return None;
    }
    let sev = if ratio >= 0.01 || s.timeout_retransmissions > 0 {
        Severity::Warning
    } else {
        Severity::Info
    };
    Some(
        Finding::new(
            spec("network-loss"),
            sev,
            format!(
                "the {sender} retransmitted {} segments ({:.2}% of its bytes); {} gaps never reached the capture",
                s.retransmissions,
                ratio * 100.0,
                s.lost_segments
            ),
        )
        .evidence("retransmissions", s.retransmissions as f64, Unit::Count)
        .evidence("fast_retransmissions", s.fast_retransmissions as f64, Unit::Count)
        .evidence("timeout_retransmissions", s.timeout_retransmissions as f64, Unit::Count)
        .evidence("spurious_retransmissions", s.spurious_retransmissions as f64, Unit::Count)
        .evidence("retransmitted", s.retransmitted_bytes as f64, Unit::Bytes)
        .evidence("retransmitted_share", ratio * 100.0, Unit::Percent)
        .evidence("segments_not_captured", s.lost_segments as f64, Unit::Count)
        .evidence("dup_acks_received", flow.sent_by(sender.other()).dup_acks as f64, Unit::Count)
        .explain(format!(
            "{} retransmitted of {} unique bytes = {:.2}%; {} fast, {} after a timeout (RTO), {} spurious",
            s.retransmitted_bytes,
            s.unique_bytes,
            ratio * 100.0,
            s.fast_retransmissions,
            s.timeout_retransmissions,
            s.spurious_retransmissions
        ))
        .fix(
            "find where packets drop: capture at both ends (netblame pcap A B shows segments seen \
             on one side only), check interface and qdisc drop counters (netblame host)",
        ),
    )
}

fn app_timeout(flow: &FlowObservation) -> Option<Finding> {
    let c = &flow.close;
    let closer = c.closer?;
    let at = c.at_us?;
    if flow.midstream {
        return None;
    }
    let peer_had_data = c.peer_data_after_close_bytes > 0 || c.peer_unacked_at_close_bytes > 0;
    let rst_answer = c.kind == Some(CloseKind::Rst) || c.closer_rsts_after_close > 0;
    if !peer_had_data || !rst_answer {
        return None;
    }
    // Measured from the start, or from the last data the closer received (a read timeout).
    let (round, measured, from) = if let Some(r) = round_seconds(at as f64 / 1e6) {
        (r, at, "the connection start (first SYN)")
    } else {
        let idle = c.since_last_data_received_us?;
        let r = round_seconds(idle as f64 / 1e6)?;
        (r, idle, "the last data it received")
    };
    let kind = match c.kind {
        Some(CloseKind::Rst) => "RST",
        _ => "FIN",
    };
    Some(
        Finding::new(
            spec("application-timeout"),
            Severity::Critical,
            format!(
                "the {closer} closed ({kind}) {} after {from}, a round {round} s, while the {} still had data to send",
                us(measured),
                closer.other()
            ),
        )
        .evidence("close_after", measured as f64 / 1e6, Unit::Seconds)
        .evidence("timeout", round as f64, Unit::Seconds)
        .evidence("peer_data_after_close", c.peer_data_after_close_bytes as f64, Unit::Bytes)
        .evidence("peer_unacked_at_close", c.peer_unacked_at_close_bytes as f64, Unit::Bytes)
        .evidence("rsts_after_close", c.closer_rsts_after_close as f64, Unit::Count)
        .explain(format!(
            "close {} after {from} is within {:.0} ms of {round} s: an application timer, not the \
             network; the {} kept sending ({} bytes after the close, {} unacknowledged at it) and \
             the {closer} answered with {} RSTs",
            us(measured),
            (measured as f64 / 1e3 - round as f64 * 1e3).abs(),
            closer.other(),
            c.peer_data_after_close_bytes,
            c.peer_unacked_at_close_bytes,
            c.closer_rsts_after_close
        ))
        .fix(format!(
            "the {closer}'s application gave up after {round} s: find that timeout (e.g. a 30 s read \
             timeout) and either raise it or find why the transfer is slow (window limited? zero \
             windows? loss?) in the other findings for this connection"
        )),
    )
}

fn handshake(flow: &FlowObservation) -> Option<Finding> {
    let h = &flow.handshake;
    // One unanswered SYN at the end of a capture is no evidence; a retransmitted one is.
    let unanswered = h.syn_count > 1 && h.synack_count == 0;
    if h.syn_count <= 1 {
        return None;
    }
    let retrans = h.syn_count.saturating_sub(1);
    let summary = if unanswered {
        format!(
            "the SYN was never answered ({} sent, conn_state {})",
            h.syn_count, flow.conn_state
        )
    } else {
        format!(
            "the SYN was retransmitted {retrans} times; the handshake took {}",
            h.syn_to_synack_us.map(us).unwrap_or_else(|| "?".into())
        )
    };
    let mut f = Finding::new(spec("syn-retransmit"), Severity::Warning, summary)
        .evidence("syn_count", h.syn_count as f64, Unit::Count)
        .evidence("syn_retransmissions", retrans as f64, Unit::Count);
    if let Some(d) = h.syn_to_synack_us {
        f = f.evidence("syn_to_synack", d as f64, Unit::Microseconds);
    }
    Some(
        f.explain(
            "each retransmitted SYN costs the initial RTO (1 s on Linux, then doubling): a lost \
             SYN or SYN-ACK, a full accept/SYN queue on the server, or a firewall dropping it",
        )
        .fix(
            "check the server's listen backlog (ListenOverflows, ListenDrops in nstat), SYN \
             cookies, and any firewall or NAT on the path",
        ),
    )
}

/// The one-line verdict of a connection for a table: the most severe finding's id, or `ok`.
pub fn verdict(findings: &[Finding]) -> String {
    match findings.first() {
        None => "ok".to_string(),
        Some(f) => {
            let extra = findings.len() - 1;
            let id = f.id.strip_prefix("capture-").unwrap_or(f.id);
            if extra > 0 {
                format!("{id} (+{extra})")
            } else {
                id.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::observe::flow::{
        CloseInfo, DirectionStats, Endpoint, FlowObservation, Handshake, RttStats,
    };

    fn flow() -> FlowObservation {
        FlowObservation {
            id: 1,
            client: Endpoint {
                ip: "10.0.0.2".parse().unwrap(),
                port: 40000,
            },
            server: Endpoint {
                ip: "192.0.2.9".parse().unwrap(),
                port: 9092,
            },
            start_unix_us: 0,
            duration_us: 31_000_000,
            packets: 1000,
            midstream: false,
            client_isn: Some(1),
            server_isn: Some(2),
            handshake: Handshake {
                syn_count: 1,
                synack_count: 1,
                rtt_us: Some(137_000),
                ..Default::default()
            },
            capture_point: Default::default(),
            rtt_to_client_us: None,
            rtt_to_server_us: None,
            conn_state: "RSTO".into(),
            history: "ShADadFR".into(),
            from_client: DirectionStats::default(),
            from_server: DirectionStats::default(),
            zero_windows: vec![],
            idle_gaps: vec![],
            idle_gaps_total: 0,
            close: CloseInfo::default(),
            series_interval_us: 0,
            series: vec![],
        }
    }

    /// The Netflix capture: the client FINs 30 s after its SYN while the server still sends,
    /// then RSTs what keeps arriving; the server was held at a 32 KiB window over 137 ms.
    #[test]
    fn netflix_shape_gives_timeout_and_window_verdicts() {
        let mut f = flow();
        f.close = CloseInfo {
            closer: Some(Side::Client),
            kind: Some(CloseKind::Fin),
            at_us: Some(30_004_000),
            since_last_data_received_us: Some(2_000),
            peer_unacked_at_close_bytes: 20_000,
            peer_data_after_close_bytes: 60_000,
            peer_segments_after_close: 40,
            closer_rsts_after_close: 40,
        };
        f.from_server = DirectionStats {
            unique_bytes: 7_000_000,
            first_data_us: Some(300_000),
            last_data_us: Some(30_300_000),
            window_limited_us: 27_000_000,
            sending_rate_bits_per_second: 1.85e6,
            rtt: RttStats {
                samples: 100,
                min_us: Some(136_000),
                mean_us: Some(137_500),
                max_us: Some(140_000),
                ..Default::default()
            },
            ..Default::default()
        };
        f.from_client.window_mean_bytes = Some(32_768);
        f.from_client.window_max_bytes = Some(32_768);
        let out = judge(&f);
        let t = out
            .iter()
            .find(|x| x.id == "application-timeout")
            .expect("timeout verdict");
        assert_eq!(t.value("timeout"), Some(30.0));
        assert_eq!(t.severity, Severity::Critical);
        let w = out
            .iter()
            .find(|x| x.id == "receiver-window-limited")
            .expect("window verdict");
        // 32768 B x 8 / 0.1375 s = 1.906 Mbit/s
        let c = w.value("ceiling").unwrap();
        assert!((c - 32_768.0 * 8.0 / 0.1375).abs() < 1.0, "{c}");
        assert!(w.explanation.contains("ceiling"), "{}", w.explanation);
        assert_eq!(out[0].id, "application-timeout", "critical first");
    }

    #[test]
    fn a_close_with_nothing_left_to_send_is_not_a_timeout() {
        let mut f = flow();
        f.close = CloseInfo {
            closer: Some(Side::Client),
            kind: Some(CloseKind::Fin),
            at_us: Some(30_000_000),
            ..Default::default()
        };
        assert!(judge(&f).iter().all(|x| x.id != "application-timeout"));
    }

    #[test]
    fn round_seconds_accepts_timers_and_rejects_others() {
        assert_eq!(round_seconds(30.004), Some(30));
        assert_eq!(round_seconds(2.01), Some(2));
        assert_eq!(round_seconds(29.9), Some(30));
        assert_eq!(round_seconds(2.3), None);
        assert_eq!(round_seconds(0.5), None);
        assert_eq!(round_seconds(1.5), None);
    }
}
