//! Loss, retransmission and congestion on the path: retransmissions that were needed (not the
//! spurious ones a D-SACK reveals), timeouts, a peer that went silent, ECN marks and queueing
//! delay that grows with the data in flight (bufferbloat). One rule for a transfer of any
//! source ([`judge`]) and one for the host's counters ([`judge_host`]).

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::observe::host::{Counter, HostSnapshot};
use crate::observe::transfer::Transfer;
use crate::rules::bound::BLAME_SHARE;
use crate::units::{format_duration, BitRate, Bytes};
use std::time::Duration;

/// Segments were lost on the path.
pub const NETWORK_LOSS: FindingSpec = FindingSpec {
    id: "network-loss",
    layer: Layer::Network,
    title: "segments were lost on the path: retransmissions and loss recovery",
};
/// Retransmissions the receiver showed to be unnecessary.
pub const SPURIOUS_RETRANSMISSIONS: FindingSpec = FindingSpec {
    id: "spurious-retransmissions",
    layer: Layer::Network,
    title: "retransmissions the receiver had no need for (D-SACK): timers fired early, not loss",
};
/// The peer stopped acknowledging while the sender kept retransmitting.
pub const PEER_SILENT: FindingSpec = FindingSpec {
    id: "peer-silent",
    layer: Layer::Host,
    title: "the peer stopped answering: retransmissions reached it unacknowledged until the end",
};
/// The path marked packets Congestion Experienced.
pub const ECN_CONGESTION: FindingSpec = FindingSpec {
    id: "ecn-congestion",
    layer: Layer::Network,
    title: "the path marked packets ECN Congestion Experienced: a queue on it is filling",
};
/// RTT grows with the data in flight: a large queue on the path.
pub const BUFFERBLOAT: FindingSpec = FindingSpec {
    id: "bufferbloat",
    layer: Layer::Network,
    title: "RTT rose far above its minimum as in-flight data grew: queueing delay on the path",
};
/// Retransmission timeouts fired (host counters).
pub const RTO_TIMEOUTS: FindingSpec = FindingSpec {
    id: "rto-timeouts",
    layer: Layer::Network,
    title: "retransmission timeouts fired: connections stalled for at least one RTO",
};
/// A large share of sent segments were retransmissions (host counters).
pub const RETRANSMIT_RATE: FindingSpec = FindingSpec {
    id: "retransmit-rate",
    layer: Layer::Network,
    title: "a large share of sent segments were retransmissions",
};

/// Findings this module builds.
pub const FINDINGS: &[&FindingSpec] = &[
    &NETWORK_LOSS,
    &SPURIOUS_RETRANSMISSIONS,
    &PEER_SILENT,
    &ECN_CONGESTION,
    &BUFFERBLOAT,
    &RTO_TIMEOUTS,
    &RETRANSMIT_RATE,
];

/// Needed retransmissions at or above this share of the data are worth a note (0.1%: a
/// healthy path loses less; below it, cubic and BBR barely notice).
pub const LOSS_NOTE_SHARE: f64 = 0.001;
/// ...and a warning from this share (0.5%: enough to halve a cubic flow's rate on a long path,
/// by the Mathis formula rate ~ MSS / (RTT sqrt(p))).
pub const LOSS_WARN_SHARE: f64 = 0.005;
/// Fewer needed retransmissions than this are no pattern (a capture's edge, one tail probe).
pub const MIN_LOSS_EVENTS: u64 = 3;
/// Host counters: below this many segments sent, a retransmit share is not judged.
pub const MIN_SEGMENTS_FOR_RATE: u64 = 1000;
/// Host counters: retransmitted share of sent segments for a warning (and x5 critical).
pub const RETRANS_WARN_SHARE: f64 = 0.01;
/// ECN: CE-marked share of ECT packets for a warning (1%: an AQM marking steadily).
pub const ECN_WARN_SHARE: f64 = 0.01;
/// Bufferbloat: the high RTT percentile at least this many times the minimum...
pub const BLOAT_RTT_RATIO: f64 = 2.0;
/// ...and at least this much above it (queueing worth a user's notice).
pub const BLOAT_MIN_DELAY: Duration = Duration::from_millis(20);
/// Unanswered retransmissions (timeouts) that make a silent peer.
pub const SILENT_MIN_RETRANSMISSIONS: u64 = 2;

/// Retransmitted share of the data, counting only needed retransmissions.
fn needed_share(t: &Transfer) -> Option<f64> {
    let r = &t.sender.retrans;
    let needed = r.needed().saturating_sub(r.unanswered);
    match (r.bytes, r.unique_bytes) {
        (Some(b), Some(u)) if u > 0 && r.segments > 0 => {
            Some(b as f64 * needed as f64 / r.segments as f64 / u as f64)
        }
        _ if r.data_segments > 0 => Some(needed as f64 / r.data_segments as f64),
        _ => None,
    }
}

/// Loss findings for one direction of a transfer.
pub fn judge(t: &Transfer) -> Vec<Finding> {
    let mut out = Vec::new();
    let r = &t.sender.retrans;
    if r.unanswered >= SILENT_MIN_RETRANSMISSIONS {
        out.push(peer_silent(t));
    }
    let recovery = t
        .sender
        .shares
        .map(|s| s.loss_recovery_us.min(s.cwnd_limited_us) as f64 / s.busy_us.max(1) as f64)
        .unwrap_or(0.0);
    let share = needed_share(t).unwrap_or(0.0);
    let needed = r.needed().saturating_sub(r.unanswered);
    if (needed >= MIN_LOSS_EVENTS && share >= LOSS_NOTE_SHARE) || recovery >= BLAME_SHARE {
        out.push(network_loss(t, share, recovery));
    } else if r.spurious > 0 {
        out.push(spurious(t));
    }
    out.extend(ecn(t));
    out.extend(bufferbloat(t));
    out
}

/// `network-loss`: a warning from [`LOSS_WARN_SHARE`], after a timeout, or when loss recovery
/// held the sender [`BLAME_SHARE`] of its busy time; a note below. On loopback there is no
/// network: the host dropped them.
pub fn network_loss(t: &Transfer, share: f64, recovery: f64) -> Finding {
    let r = &t.sender.retrans;
    let needed = r.needed().saturating_sub(r.unanswered);
    let severity = if share >= LOSS_WARN_SHARE
        || recovery >= BLAME_SHARE
        || (r.timeouts > 0 && share >= LOSS_NOTE_SHARE)
    {
        Severity::Warning
    } else {
        Severity::Info
    };
    let mut f = Finding::new(
        &NETWORK_LOSS,
        severity,
        format!(
            "{}{needed} segments retransmitted ({:.2}% of the data){}{}",
            t.sender
                .who
                .as_ref()
                .map(|w| format!("the {w}: "))
                .unwrap_or_default(),
            share * 100.0,
            if r.spurious > 0 {
                format!(", besides {} spurious ones", r.spurious)
            } else {
                String::new()
            },
            if recovery > 0.0 {
                format!(
                    "; in loss recovery {:.0}% of the busy time",
                    recovery * 100.0
                )
            } else {
                String::new()
            }
        ),
    )
    .subject(t.subject.clone())
    .evidence("retransmitted_segments", needed as f64, Unit::Count)
    .evidence("retransmit_share", share * 100.0, Unit::Percent)
    .evidence("spurious_retransmissions", r.spurious as f64, Unit::Count)
    .evidence("timeout_retransmissions", r.timeouts as f64, Unit::Count)
    .evidence("fast_retransmissions", r.fast as f64, Unit::Count);
    let mut why = match (r.bytes, r.unique_bytes) {
        (Some(b), Some(u)) => format!(
            "{} retransmitted of {} unique bytes; {} of {} retransmissions needed = {:.2}%",
            b,
            u,
            needed,
            r.segments,
            share * 100.0
        ),
        _ => format!(
            "{needed} of {} data segments retransmitted = {:.2}%",
            r.data_segments,
            share * 100.0
        ),
    };
    why += &format!(
        " ({} fast, {} after a timeout, {} shown spurious by D-SACK and left out)",
        r.fast, r.timeouts, r.spurious
    );
    if recovery > 0.0 {
        f = f.evidence("loss_recovery", recovery * 100.0, Unit::Percent);
        why += &format!(
            "; the sender was in loss recovery {:.0}% of its busy time",
            recovery * 100.0
        );
    }
    if let Some(d) = r.dup_acks {
        f = f.evidence("dup_acks_received", d as f64, Unit::Count);
    }
    if let Some(n) = r.not_captured {
        f = f.evidence("segments_not_captured", n as f64, Unit::Count);
    }
    if let Some(d) = t.path.drops {
        f = f.evidence("path_drops", d as f64, Unit::Count);
        why += &format!("; the path dropped {d} packets");
    }
    if t.sender.rate_bps > 0.0 {
        f = f.evidence("goodput", t.sender.rate_bps, Unit::BitsPerSecond);
        why += &format!("; goodput {}", BitRate(t.sender.rate_bps));
    }
    let f = f.explain(why);
    if t.path.loopback {
        f.blame(Layer::Host).fix(
            "both ends are on this host, so no network lost them: look for receive-queue and backlog drops \
             (netblame host: TCPRcvQDrop, TCPBacklogDrop, socket-backlog-drops) and a reader that falls behind",
        )
    } else {
        f.fix(
            "find the lossy hop: capture at both ends (netblame pcap A B shows segments seen on one side only), \
             check interface, qdisc and softnet drop counters (netblame host) and `netblame probe` along the path",
        )
    }
}

/// `spurious-retransmissions`, the one constructor (a note): `spurious` of `retransmissions`
/// were shown unnecessary. With zero windows at the receiver (`Some(true)`) the lagging ACKs are
/// its application's; otherwise delay or reordering on the path. Callers add the arithmetic.
fn spurious_finding(spurious: u64, retransmissions: u64, zero_windows: Option<bool>) -> Finding {
    let f = Finding::new(
        &SPURIOUS_RETRANSMISSIONS,
        Severity::Info,
        format!("{spurious} of {retransmissions} retransmissions were spurious (D-SACK): not loss"),
    )
    .evidence("retransmissions", retransmissions as f64, Unit::Count)
    .evidence("spurious_retransmissions", spurious as f64, Unit::Count);
    match zero_windows {
        Some(true) => f
            .blame(Layer::Application)
            .fix("nothing on the path: make the receiving application read promptly (see receiver-zero-window)"),
        Some(false) => f.fix(
            "nothing to fix unless it is frequent: check for reordering (multipath, ECMP) or ACK delay at the receiver",
        ),
        None => f.fix("nothing on the path; if receivers show zero windows, make them read promptly"),
    }
}

/// `spurious-retransmissions` for one sender whose every retransmission a D-SACK answered.
fn spurious(t: &Transfer) -> Finding {
    let r = &t.sender.retrans;
    let zero = t.receiver.zero_windows > 0 || t.receiver.zero_window_us.is_some_and(|z| z > 0);
    let cause = if zero {
        "the receiver's ACKs lagged while its window was closed (zero windows): tail-loss probes and timers \
         fired although the data had arrived"
    } else {
        "ACKs were delayed or segments reordered on the path, so timers fired before the ACKs arrived"
    };
    let mut f = spurious_finding(r.spurious, r.segments, Some(zero)).subject(t.subject.clone());
    if let Some(p) = r.loss_probes {
        f = f.evidence("loss_probes", p as f64, Unit::Count);
    }
    f.explain(format!(
        "the receiver reported each of {} retransmitted segments as already received (RFC 2883 D-SACK): {cause}",
        r.spurious
    ))
}

/// `peer-silent`: the sender's timeout retransmissions reached the capture point and nothing
/// came back until the end.
fn peer_silent(t: &Transfer) -> Finding {
    let r = &t.sender.retrans;
    Finding::new(
        &PEER_SILENT,
        Severity::Warning,
        format!(
            "the peer stopped answering: {} retransmissions went unacknowledged for {}",
            r.unanswered,
            format_duration(Duration::from_micros(r.peer_silent_us))
        ),
    )
    .subject(t.subject.clone())
    .evidence("unanswered_retransmissions", r.unanswered as f64, Unit::Count)
    .evidence("peer_silent", r.peer_silent_us as f64, Unit::Microseconds)
    .explain(format!(
        "the sender's retransmissions (backing off after timeouts) were captured leaving, and no ACK came back \
         for {}: the peer host or its application went away (crashed, paused, a terminating pod, a firewall \
         that started dropping), not a lossy path that drops some packets",
        format_duration(Duration::from_micros(r.peer_silent_us))
    ))
    .fix("look at the peer: is its process alive, its host reachable (netblame probe), a firewall or conntrack entry gone?")
}

/// `ecn-congestion`: packets marked CE.
fn ecn(t: &Transfer) -> Option<Finding> {
    let ce = t.path.ecn_ce.filter(|c| *c > 0)?;
    let ect = t.path.ecn_ect.unwrap_or(0).max(ce);
    let share = ce as f64 / ect as f64;
    let severity = if share >= ECN_WARN_SHARE {
        Severity::Warning
    } else {
        Severity::Info
    };
    Some(
        Finding::new(
            &ECN_CONGESTION,
            severity,
            format!(
                "{ce} of {ect} ECN-capable packets were marked Congestion Experienced ({:.2}%)",
                share * 100.0
            ),
        )
        .subject(t.subject.clone())
        .evidence("ce_packets", ce as f64, Unit::Count)
        .evidence("ect_packets", ect as f64, Unit::Count)
        .evidence("ce_share", share * 100.0, Unit::Percent)
        .explain(format!(
            "a router's queue marked {ce} packets CE instead of dropping them (RFC 3168): the path signals \
             congestion, and the sender slows down as if they were lost; {:.2}% marked",
            share * 100.0
        ))
        .fix("the path is congested: more capacity, less competing traffic, or a different path; the hosts are fine"),
    )
}

/// `bufferbloat`: RTT far above its minimum when more data was in flight.
fn bufferbloat(t: &Transfer) -> Option<Finding> {
    let (min, high) = (t.path.rtt_min?, t.path.rtt_high?);
    let (at_min, at_max) = (
        t.path.in_flight_at_min_bytes?,
        t.path.in_flight_at_max_bytes?,
    );
    if min.is_zero()
        || high.as_secs_f64() < BLOAT_RTT_RATIO * min.as_secs_f64()
        || high < min + BLOAT_MIN_DELAY
        || at_max <= at_min.saturating_mul(2)
    {
        return None;
    }
    let queueing = high - min;
    let rate = t.sender.rate_bps;
    let mut f = Finding::new(
        &BUFFERBLOAT,
        Severity::Warning,
        format!(
            "RTT rose from {} to {} (p95) as in-flight data grew from {} to {}: {} of queueing on the path",
            format_duration(min),
            format_duration(high),
            Bytes(at_min),
            Bytes(at_max),
            format_duration(queueing)
        ),
    )
    .subject(t.subject.clone())
    .evidence("rtt_min", min.as_secs_f64() * 1e6, Unit::Microseconds)
    .evidence("rtt_p95", high.as_secs_f64() * 1e6, Unit::Microseconds)
    .evidence("queueing_delay", queueing.as_secs_f64() * 1e6, Unit::Microseconds)
    .evidence("in_flight_at_min_rtt", at_min as f64, Unit::Bytes)
    .evidence("in_flight_at_max_rtt", at_max as f64, Unit::Bytes);
    let mut why = format!(
        "p95 RTT {} = {:.1}x the minimum {}, and the samples with the most data in flight ({}) saw the largest \
         RTT: the extra {} is a queue filling on the path, not distance",
        format_duration(high),
        high.as_secs_f64() / min.as_secs_f64(),
        format_duration(min),
        Bytes(at_max),
        format_duration(queueing)
    );
    if rate > 0.0 {
        let queued = (rate / 8.0 * queueing.as_secs_f64()) as u64;
        f = f.evidence("queued", queued as f64, Unit::Bytes);
        why += &format!(
            "; at {} that is about {} waiting in the queue",
            BitRate(rate),
            Bytes(queued)
        );
    }
    Some(f.explain(why).fix(
        "shrink the bottleneck's queue or use an AQM (fq_codel, cake) there; a sender-side fix is BBR or pacing \
         (tc qdisc fq with a maxrate); latency-sensitive traffic should not share that queue",
    ))
}

/// Loss from the host's counters: RTO timeouts, and retransmitted share of sent segments with
/// the spurious ones (TCPDSACKRecv, TCPSpuriousRTOs) left out.
pub fn judge_host(snap: &HostSnapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    let secs = snap.window_secs();
    let window = format_duration(Duration::from_micros(snap.window_us));
    // TCPTimeouts also counts SYN/SYN-ACK timeouts (TCPSynRetrans): those are the listen-overflow
    // or SYN-loss signature, not stalls of established connections.
    let syn = snap.delta(Counter::TCPSynRetrans);
    let timeouts = snap.delta(Counter::TCPTimeouts).saturating_sub(syn);
    let spurious_rtos = snap.delta(Counter::TCPSpuriousRTOs);
    let real_timeouts = timeouts.saturating_sub(spurious_rtos);
    if real_timeouts > 0 {
        let aborts = snap.delta(Counter::TCPAbortOnTimeout);
        out.push(
            Finding::new(
                &RTO_TIMEOUTS,
                if aborts > 0 { Severity::Critical } else { Severity::Warning },
                format!(
                    "{real_timeouts} retransmission timeouts ({:.1}/s), {aborts} connections aborted",
                    real_timeouts as f64 / secs
                ),
            )
            .evidence("timeouts", real_timeouts as f64, Unit::Count)
            .evidence("timeout_rate", real_timeouts as f64 / secs, Unit::PerSecond)
            .evidence("lost_retransmits", snap.delta(Counter::TCPLostRetransmit) as f64, Unit::Count)
            .evidence("aborted_on_timeout", aborts as f64, Unit::Count)
            .evidence("syn_retrans", syn as f64, Unit::Count)
            .evidence("spurious_rtos", spurious_rtos as f64, Unit::Count)
            .explain(format!(
                "TcpExt.TCPTimeouts - TCPSynRetrans - TCPSpuriousRTOs = {real_timeouts} over {window}: each one \
                 stalls a connection for at least one RTO (200 ms minimum), doubling on repeats; fast retransmit \
                 could not recover the loss"
            ))
            .fix(
                "find the lossy path (netblame sockets shows which connections retransmit); check NIC, qdisc and \
                 softnet drops on both ends and the links between",
            ),
        );
    }
    let retrans = snap.delta(Counter::RetransSegs);
    let sent = snap.delta(Counter::OutSegs);
    let dsack = snap.delta(Counter::TCPDSACKRecv);
    let probes = snap.delta(Counter::TCPLossProbes);
    let spurious = (dsack + spurious_rtos).min(retrans);
    let needed = retrans - spurious;
    if sent < MIN_SEGMENTS_FOR_RATE || retrans == 0 {
        return out;
    }
    let share = needed as f64 / sent as f64;
    if share >= RETRANS_WARN_SHARE {
        let severity = if share >= RETRANS_WARN_SHARE * 5.0 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        out.push(
            Finding::new(
                &RETRANSMIT_RATE,
                severity,
                format!("{:.2}% of sent segments were needed retransmissions", share * 100.0),
            )
            .evidence("retrans_segs", retrans as f64, Unit::Count)
            .evidence("out_segs", sent as f64, Unit::Count)
            .evidence("dsack_recv", dsack as f64, Unit::Count)
            .evidence("loss_probes", probes as f64, Unit::Count)
            .evidence("retransmit_share", share * 100.0, Unit::Percent)
            .explain(format!(
                "(Tcp.RetransSegs +{retrans} - TCPDSACKRecv +{dsack} - TCPSpuriousRTOs +{spurious_rtos}) / Tcp.OutSegs \
                 +{sent} = {:.2}% over {window} (above {:.0}%): loss shrinks the congestion window and every \
                 recovery costs round trips",
                share * 100.0,
                RETRANS_WARN_SHARE * 100.0
            ))
            .fix(
                "find where packets are lost: NIC allowance and qdisc drops here, softnet drops on the receivers, \
                 congestion on the path",
            ),
        );
    } else if spurious > 0 && retrans as f64 / sent as f64 >= RETRANS_WARN_SHARE {
        out.push(
            spurious_finding(spurious, retrans, None)
            .evidence("dsack_recv", dsack as f64, Unit::Count)
            .evidence("spurious_rtos", spurious_rtos as f64, Unit::Count)
            .evidence("loss_probes", probes as f64, Unit::Count)
            .explain(format!(
                "Tcp.RetransSegs +{retrans} over {window}, but receivers answered {dsack} with a D-SACK (the data had \
                 arrived) and {spurious_rtos} timeouts were spurious; {probes} tail-loss probes were sent: timers \
                 fired while ACKs lagged (slow readers, zero windows, ACK delay), not loss"
            )),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::transfer::{Retransmissions, SenderFacts};

    fn with(r: Retransmissions) -> Transfer {
        Transfer {
            subject: "t".into(),
            sender: SenderFacts {
                retrans: r,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn d_sacked_retransmissions_are_not_loss() {
        let t = with(Retransmissions {
            segments: 6,
            spurious: 6,
            data_segments: 2000,
            ..Default::default()
        });
        let f = judge(&t);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, "spurious-retransmissions");
        assert_eq!(f[0].severity, Severity::Info);
    }

    #[test]
    fn two_percent_is_a_warning_and_loopback_is_the_host() {
        let mut t = with(Retransmissions {
            segments: 40,
            data_segments: 2000,
            ..Default::default()
        });
        let f = judge(&t);
        assert_eq!(f[0].id, "network-loss");
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].layer, Layer::Network);
        t.path.loopback = true;
        assert_eq!(judge(&t)[0].layer, Layer::Host);
    }

    #[test]
    fn unanswered_timeouts_are_a_silent_peer() {
        let t = with(Retransmissions {
            segments: 5,
            timeouts: 5,
            unanswered: 5,
            peer_silent_us: 12_000_000,
            data_segments: 100,
            ..Default::default()
        });
        let ids: Vec<_> = judge(&t).iter().map(|f| f.id).collect();
        assert_eq!(ids, ["peer-silent"]);
    }
}
