//! Connection setup: SYNs retransmitted (which packet was lost, and from the first SYN to the
//! handshake's completion), connections refused, and accept queues that overflow.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::observe::flow::FlowObservation;
use crate::observe::host::{Counter, HostSnapshot};
use crate::observe::transfer::ConnectObservation;
use crate::units::format_duration;
use std::time::Duration;

/// SYNs were retransmitted.
pub const SYN_RETRANSMIT: FindingSpec = FindingSpec {
    id: "syn-retransmit",
    layer: Layer::Network,
    title: "SYNs were retransmitted: connects took one or more retransmission timeouts",
};
/// A SYN answered by a RST.
pub const CONNECTION_REFUSED: FindingSpec = FindingSpec {
    id: "connection-refused",
    layer: Layer::Application,
    title: "connection attempts were refused (SYN answered by RST): nothing listens on that port",
};
/// Accept queues overflowed.
pub const LISTEN_OVERFLOWS: FindingSpec = FindingSpec {
    id: "listen-overflows",
    layer: Layer::Application,
    title: "accept queues overflowed: clients see SYN retransmits (1 s or more of connect delay)",
};

/// Findings this module builds.
pub const FINDINGS: &[&FindingSpec] = &[&SYN_RETRANSMIT, &CONNECTION_REFUSED, &LISTEN_OVERFLOWS];

/// The initial retransmission timeout for a SYN (`TCP_TIMEOUT_INIT`, RFC 6298).
pub const SYN_RTO: Duration = Duration::from_secs(1);
/// Share of connects waiting on a SYN retransmission that is critical (1%: every hundredth
/// request a second late is a visible tail).
pub const SYN_CRITICAL_SHARE: f64 = 0.01;
/// Fewest connects before the share is judged critical.
pub const SYN_CRITICAL_MIN_CONNECTS: u64 = 100;

/// Which handshake packet went missing, as far as the evidence says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The SYN (or the server dropped it: a full accept queue looks the same from outside).
    Syn,
    /// The SYN-ACK, on its way to the client: the server answered but the client resent its SYN.
    SynAck,
    /// No SYN-ACK ever came.
    Unanswered,
    /// Not known (only timing says a SYN was resent).
    Unknown,
}

/// What a source saw of SYN retransmissions: the evidence `syn-retransmit` is built from.
#[derive(Debug, Clone)]
pub struct SynEvidence {
    pub subject: Option<String>,
    /// Connects that waited for a SYN retransmission, of all connects seen.
    pub slow_connects: u64,
    pub connects: u64,
    /// SYNs retransmitted (from counters or the capture).
    pub retransmitted_syns: u64,
    /// Median connect time, and the longest (first SYN to established).
    pub connect_p50: Option<Duration>,
    pub slowest: Option<Duration>,
    pub lost: Lost,
    /// Both ends on this host: a SYN lost on loopback is the listener's queue, not the network.
    pub loopback: bool,
    /// The timing argument (retry schedule, RTO confirmation) in words.
    pub timing: String,
    /// More named numbers the source has (per-retry counts, RTT).
    pub extra: Vec<(String, f64, Unit)>,
}

/// `syn-retransmit`. Critical when at least [`SYN_CRITICAL_SHARE`] of
/// [`SYN_CRITICAL_MIN_CONNECTS`] or more connects waited; a warning otherwise.
pub fn syn_retransmit(e: &SynEvidence) -> Finding {
    let share = e.slow_connects as f64 / e.connects.max(1) as f64;
    let severity = if e.connects >= SYN_CRITICAL_MIN_CONNECTS && share >= SYN_CRITICAL_SHARE {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let which = match e.lost {
        Lost::Syn => "the SYN was lost (or the server's accept queue dropped it)",
        Lost::SynAck => "the server answered, but its SYN-ACK was lost toward the client",
        Lost::Unanswered => "the SYN was never answered",
        Lost::Unknown => "a SYN or SYN-ACK was lost",
    };
    let mut summary = if e.connects > 1 {
        format!(
            "{} of {} connects waited for a SYN retransmission: {which}",
            e.slow_connects, e.connects
        )
    } else {
        format!(
            "the SYN was retransmitted {} time{}: {which}",
            e.retransmitted_syns,
            if e.retransmitted_syns == 1 { "" } else { "s" }
        )
    };
    if let Some(d) = e.slowest {
        summary += &format!("; the handshake took {}", format_duration(d));
    }
    let mut f = Finding::new(&SYN_RETRANSMIT, severity, summary)
        .evidence(
            "syn_retransmit_connects",
            e.slow_connects as f64,
            Unit::Count,
        )
        .evidence("connects", e.connects as f64, Unit::Count)
        .evidence("share", share * 100.0, Unit::Percent)
        .evidence(
            "retransmitted_syns",
            e.retransmitted_syns as f64,
            Unit::Count,
        );
    if let Some(s) = &e.subject {
        f = f.subject(s.clone());
    }
    if let Some(p) = e.connect_p50 {
        f = f.evidence("connect_p50", p.as_secs_f64() * 1e6, Unit::Microseconds);
    }
    if let Some(d) = e.slowest {
        f = f.evidence(
            "first_syn_to_established",
            d.as_secs_f64() * 1e6,
            Unit::Microseconds,
        );
    }
    for (name, value, unit) in &e.extra {
        f = f.evidence(name, *value, *unit);
    }
    let f = f.explain(format!(
        "each retransmitted SYN costs the initial RTO (1 s on Linux, then doubling): {}; {which}",
        e.timing
    ));
    let fix = match e.lost {
        Lost::SynAck => {
            "the server is fine: find where its SYN-ACKs drop on the way back (asymmetric routing, a stateful \
             firewall or NAT on the return path, conntrack limits)"
        }
        _ => {
            "check the server's accept queue (ListenOverflows/ListenDrops: `netblame host` there) and raise the \
             listen backlog and net.core.somaxconn if it overflows; otherwise look for drops on the path (NIC and \
             qdisc drop counters, firewall/conntrack limits); a client connect timeout below 1 s turns each into a failure"
        }
    };
    if e.loopback {
        f.blame(Layer::Host).fix(
            "both ends are on this host: a SYN is lost on loopback only when the listener's queue is full — make the \
             server accept() faster and raise its backlog with net.core.somaxconn",
        )
    } else {
        f.fix(fix)
    }
}

/// `syn-retransmit` for a lab's connect loop: connects that took an RTO above the RTT.
pub fn judge_connects(o: &ConnectObservation) -> Option<Finding> {
    let slow_threshold = o.path_rtt + SYN_RTO / 2;
    let slow = o.times.iter().filter(|t| **t >= slow_threshold).count() as u64;
    if slow == 0 {
        return None;
    }
    let mut sorted = o.times.clone();
    sorted.sort();
    Some(syn_retransmit(&SynEvidence {
        subject: None,
        slow_connects: slow,
        connects: o.times.len() as u64,
        retransmitted_syns: o.syn_retransmits,
        connect_p50: sorted.get(sorted.len() / 2).copied(),
        slowest: sorted.last().copied(),
        lost: Lost::Syn,
        loopback: false,
        timing: format!(
            "a connect normally takes one RTT ({}); a lost SYN is resent after 1 s, so the slow connects took 1 s + RTT \
             (at least {}); the client retransmitted {} SYNs (TcpExt TCPSynRetrans)",
            format_duration(o.path_rtt),
            format_duration(slow_threshold),
            o.syn_retransmits
        ),
        extra: vec![("rtt".into(), o.path_rtt.as_secs_f64() * 1e6, Unit::Microseconds)],
    }))
}

/// Setup findings for one captured connection: `syn-retransmit` with the lost packet named,
/// measured from the first SYN to the handshake's completion; `connection-refused`.
pub fn judge_flow(flow: &FlowObservation, loopback: bool) -> Vec<Finding> {
    let h = &flow.handshake;
    let subject = format!("#{} {}", flow.id, flow.label());
    let mut out = Vec::new();
    if flow.conn_state == "REJ" {
        out.push(
            Finding::new(
                &CONNECTION_REFUSED,
                Severity::Warning,
                format!("{} refused the connection: its SYN was answered by a RST", flow.server),
            )
            .subject(subject.clone())
            .evidence("syn_count", h.syn_count as f64, Unit::Count)
            .explain(format!(
                "the SYN to {} got a RST back (conn_state REJ): no socket listens on that port, or a firewall \
                 rejects it; the network delivered both packets",
                flow.server
            ))
            .fix("check that the service runs and listens on that address and port (ss -ltn there), and any firewall REJECT rule"),
        );
    }
    let retrans = h.syn_count.saturating_sub(1) as u64;
    let server_resent = h.synack_count > 1 && h.syn_count <= 1;
    if retrans == 0 && !server_resent {
        return out;
    }
    let lost = if h.synack_count == 0 {
        Lost::Unanswered
    } else if h.syns_after_synack > 0 || server_resent {
        Lost::SynAck
    } else {
        Lost::Syn
    };
    let done = h
        .first_syn_to_ack_us
        .or(h.syn_to_synack_us)
        .map(Duration::from_micros);
    let timing = match (lost, done) {
        (Lost::SynAck, _) if h.syns_after_synack > 0 => format!(
            "the client sent {} SYN{} after the server's SYN-ACK had passed the capture point, so that SYN-ACK never \
             reached it",
            h.syns_after_synack,
            if h.syns_after_synack == 1 { "" } else { "s" }
        ),
        (Lost::SynAck, _) => format!(
            "the server sent {} SYN-ACKs for one SYN: the client's ACK or the SYN-ACK was lost",
            h.synack_count
        ),
        (_, Some(d)) => format!(
            "{} SYNs sent, {} from the first SYN to the handshake's completion",
            h.syn_count,
            format_duration(d)
        ),
        (_, None) => format!("{} SYNs sent, conn_state {}", h.syn_count, flow.conn_state),
    };
    out.push(syn_retransmit(&SynEvidence {
        subject: Some(subject),
        slow_connects: 1,
        connects: 1,
        retransmitted_syns: retrans.max(u64::from(server_resent)),
        connect_p50: None,
        slowest: done,
        lost,
        loopback,
        timing,
        extra: vec![("syn_count".into(), h.syn_count as f64, Unit::Count)],
    }));
    out
}

/// `listen-overflows` from the host's counters.
pub fn judge_host(snap: &HostSnapshot) -> Option<Finding> {
    let overflows = snap.delta(Counter::ListenOverflows);
    let drops = snap.delta(Counter::ListenDrops);
    if overflows + drops == 0 {
        return None;
    }
    let somaxconn = snap.sysctl_int("net.core.somaxconn");
    let linear = snap.sysctl_int("net.ipv4.tcp_syn_linear_timeouts");
    let schedule = match (&snap.kernel, linear) {
        (Some(k), Some(n)) if k.at_least(6, 5, 0) && n > 0 => {
            format!("after 1 s, then every second for the first {n} retries (tcp_syn_linear_timeouts={n})")
        }
        _ => "after 1 s, 3 s, 7 s, 15 s, 31 s".to_string(),
    };
    let mut f = Finding::new(
        &LISTEN_OVERFLOWS,
        Severity::Critical,
        format!("listen queues overflowed {overflows} times ({drops} SYNs dropped): clients wait for SYN retransmits"),
    )
    .evidence("listen_overflows", overflows as f64, Unit::Count)
    .evidence("listen_drops", drops as f64, Unit::Count)
    .evidence("syn_retrans", snap.delta(Counter::TCPSynRetrans) as f64, Unit::Count);
    if let Some(s) = somaxconn {
        f = f.evidence("somaxconn", s as f64, Unit::Count);
    }
    Some(
        f.explain(format!(
            "TcpExt.ListenOverflows +{overflows}, ListenDrops +{drops} over {}: the accept queue (listen backlog, \
             capped by somaxconn={}) was full, so the server dropped the SYN or final ACK; the client retransmits its \
             SYN {schedule}, which looks exactly like packet loss from the client side",
            format_duration(Duration::from_micros(snap.window_us)),
            somaxconn.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
        ))
        .fix(
            "make the server accept() faster (more acceptor threads, less work before accept), and raise its listen() \
             backlog together with net.core.somaxconn and net.ipv4.tcp_max_syn_backlog",
        ),
    )
}
