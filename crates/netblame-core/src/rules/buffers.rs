//! Buffers and window scaling: a fixed SO_RCVBUF, a buffer maximum below the path's
//! bandwidth-delay product (named by the user, or met by a real transfer), window scaling
//! absent or turned off, autotuning off, requested buffers the kernel capped or a peer ignored.
//! The window arithmetic comes from [`crate::window`].

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::kernel::KernelVersion;
use crate::known_issues::{self, Trigger};
use crate::observe::host::HostSnapshot;
use crate::observe::transfer::Transfer;
use crate::rules::bound::window_arithmetic;
use crate::rules::timeout;
use crate::units::{duration_exact_string, format_duration, BitRate, Bytes};
pub use crate::window::Workload;
use crate::window::{
    bdp_bytes, buffers_for_window, ceiling_bps, model, RcvSettings, SocketRequest, WindowModel,
};
use std::time::Duration;

/// The application set SO_RCVBUF: autotuning is off and the window is capped.
pub const RCVBUF_FIXED_SMALL: FindingSpec = FindingSpec {
    id: "rcvbuf-fixed-small",
    layer: Layer::Application,
    title: "the application set SO_RCVBUF: autotuning is off and the window is capped",
};
/// A buffer maximum is below what the path's bandwidth-delay product needs.
pub const BUFFER_MAX_BELOW_BDP: FindingSpec = FindingSpec {
    id: "buffer-max-below-bdp",
    layer: Layer::Host,
    title: "a buffer maximum is below what the bandwidth-delay product of the path needs",
};
/// No window scaling on a connection.
pub const WINDOW_SCALING_ABSENT: FindingSpec = FindingSpec {
    id: "window-scaling-absent",
    layer: Layer::Network,
    title: "window scaling was not in use: the window is capped at 64 KiB",
};
/// The host turned window scaling off.
pub const WINDOW_SCALING_OFF: FindingSpec = FindingSpec {
    id: "window-scaling-off",
    layer: Layer::Host,
    title: "net.ipv4.tcp_window_scaling=0 caps every window at 64 KiB",
};
/// The host turned receive-buffer autotuning off.
pub const AUTOTUNING_OFF: FindingSpec = FindingSpec {
    id: "autotuning-off",
    layer: Layer::Host,
    title: "net.ipv4.tcp_moderate_rcvbuf=0 disables receive-buffer autotuning",
};
/// A requested buffer was capped by rmem_max / wmem_max.
pub const TRANSFER_BUFFER_CAPPED: FindingSpec = FindingSpec {
    id: "transfer-buffer-capped",
    layer: Layer::Host,
    title: "a requested socket buffer was capped by net.core.rmem_max / wmem_max",
};
/// A requested buffer was not applied by the peer that should have applied it.
pub const BUFFER_REQUEST_IGNORED: FindingSpec = FindingSpec {
    id: "buffer-request-ignored",
    layer: Layer::Application,
    title: "a requested socket buffer was not applied: the test ran with autotuned buffers there",
};

/// Findings this module builds.
pub const FINDINGS: &[&FindingSpec] = &[
    &RCVBUF_FIXED_SMALL,
    &BUFFER_MAX_BELOW_BDP,
    &WINDOW_SCALING_ABSENT,
    &WINDOW_SCALING_OFF,
    &AUTOTUNING_OFF,
    &TRANSFER_BUFFER_CAPPED,
    &BUFFER_REQUEST_IGNORED,
];

/// A `rcv_wscale` at least this far below what autotuned sockets negotiate on the host means
/// SO_RCVBUF was set before connect (each step halves the largest representable window).
pub const WSCALE_GAP: u8 = 2;
/// A Linux receiver chooses its window scale from max(tcp_rmem[2], rmem_max) capped by its
/// window clamp, so with rmem_max at its 212992 B default an autotuned socket announces at
/// least 2; a scale at or below this one means the clamp was at most 128 KiB: SO_RCVBUF set
/// before connect (how a capture, which cannot see the socket, recognises a fixed buffer).
pub const FIXED_WSCALE: u8 = 1;
/// Without a known link rate, the autotuning ceiling held the window when its ceiling
/// (clamp / RTT) is below this many times the measured rate (the window was at its clamp).
pub const CLAMP_NEAR_RATE: f64 = 2.0;

/// `window-scaling-absent` for a connection or transfer without the window-scale option. The
/// host is blamed when the receiving host's sysctl is known to be 0 or nothing on the path can
/// strip TCP options; otherwise the network (a middlebox may strip the option).
pub fn window_scaling_absent(t: &Transfer) -> Finding {
    let cap = u64::from(u16::MAX);
    let host_off = t
        .receiver
        .host
        .as_ref()
        .is_some_and(|h| !h.settings.window_scaling);
    let mut f = Finding::new(
        &WINDOW_SCALING_ABSENT,
        Severity::Warning,
        "no window scaling: the window cannot exceed 64 KiB",
    )
    .subject(t.subject.clone())
    .evidence("window_cap", cap as f64, Unit::Bytes);
    let mut why =
        "the SYNs carried no window-scale option, so the 16-bit window field caps the window at \
                   65535 B"
            .to_string();
    if let Some(rtt) = t.path.rtt.filter(|r| !r.is_zero()) {
        let c = ceiling_bps(cap, rtt);
        f.summary = format!(
            "no window scaling: the window cannot exceed 64 KiB, {} at {} RTT",
            BitRate(c),
            format_duration(rtt)
        );
        f = f
            .evidence("rtt", rtt.as_secs_f64() * 1e6, Unit::Microseconds)
            .evidence("ceiling", c, Unit::BitsPerSecond);
        why += &format!(
            "; 65535 B / {} RTT = {} ceiling",
            format_duration(rtt),
            BitRate(c)
        );
    }
    if t.sender.rate_bps > 0.0 {
        f = f.evidence("goodput", t.sender.rate_bps, Unit::BitsPerSecond);
        why += &format!("; goodput {}", BitRate(t.sender.rate_bps));
    }
    if let Some(share) = t.window_share().filter(|_| t.sender.observed) {
        f = f.evidence("rwnd_limited", share * 100.0, Unit::Percent);
    }
    f = f.explain(why);
    if host_off || t.path.options_preserved {
        f.blame(Layer::Host).fix(
            "sysctl -w net.ipv4.tcp_window_scaling=1 on both ends (an endpoint has it at 0); new connections \
             pick it up",
        )
    } else {
        f.fix(
            "the peer or a middlebox strips the wscale option: check the SYNs with tcpdump and the peer's \
             net.ipv4.tcp_window_scaling",
        )
    }
}

/// True when only the receiver's announced window scale is known (a capture) and it is at most
/// [`FIXED_WSCALE`].
pub fn fixed_by_wscale(t: &Transfer) -> bool {
    t.receiver.so_rcvbuf.is_none()
        && t.receiver.host.is_none()
        && t.sender.window_scaling == Some(true)
        && t.receiver.rcv_wscale.is_some_and(|w| w <= FIXED_WSCALE)
}

/// `rcvbuf-fixed-small` (with the kernel known issues for fixed buffers and, given a size and
/// a timeout, `transfer-misses-timeout`) for the receiving end of `t`, which set SO_RCVBUF.
pub fn rcvbuf_fixed_small(t: &Transfer) -> Vec<Finding> {
    if fixed_by_wscale(t) {
        return vec![fixed_by_handshake(t)];
    }
    let Some(so) = t.receiver.so_rcvbuf else {
        return Vec::new();
    };
    let Some(host) = &t.receiver.host else {
        return vec![fixed_without_model(t, so)];
    };
    let mut settings = host.settings.clone();
    settings.rmem_max = settings.rmem_max.max(so);
    let m = model(
        &host.kernel,
        &settings,
        &SocketRequest {
            so_rcvbuf: Some(so),
            mss: 536,
            measured_ratio: None,
        },
    );
    let w = Workload {
        rtt: t.path.rtt,
        link_bps: t.path.link_bps,
        size: t.deadline.as_ref().and_then(|d| d.bytes_needed),
        timeout: t.deadline.as_ref().map(|d| d.timeout),
        mss: 1448,
    };
    let mut out = judge_model(&host.kernel, &m, &w);
    for f in &mut out {
        f.subject = Some(t.subject.clone());
        if f.id == RCVBUF_FIXED_SMALL.id {
            let owner = t
                .receiver
                .who
                .as_ref()
                .map(|w| format!(" by {w}"))
                .unwrap_or_default();
            if t.sender.rate_bps > 0.0 {
                f.evidence.push(crate::finding::Evidence {
                    name: "goodput".into(),
                    value: t.sender.rate_bps,
                    unit: Unit::BitsPerSecond,
                });
            }
            if t.receiver.so_rcvbuf_inferred {
                let actual = t.receiver.rcv_wscale.unwrap_or(m.rcv_wscale);
                for e in f.evidence.iter_mut().filter(|e| e.name == "rcv_wscale") {
                    e.value = actual as f64;
                }
                let auto = crate::window::autotuned_wscale(&host.kernel, &host.settings);
                for (name, value, unit) in [
                    ("autotuned_wscale", auto as f64, Unit::Number),
                    (
                        "tcp_rmem_max",
                        host.settings.tcp_rmem[2] as f64,
                        Unit::Bytes,
                    ),
                    (
                        "max_representable_window",
                        ((u64::from(u16::MAX)) << actual) as f64,
                        Unit::Bytes,
                    ),
                ] {
                    f.evidence.push(crate::finding::Evidence {
                        name: name.into(),
                        value,
                        unit,
                    });
                }
                f.summary = format!(
                    "SO_RCVBUF set before connect{owner}: rcv_wscale {} where autotuned sockets here get {}; rb fixed at {}",
                    t.receiver.rcv_wscale.unwrap_or(m.rcv_wscale),
                    crate::window::autotuned_wscale(&host.kernel, &host.settings),
                    Bytes(m.sk_rcvbuf_bytes)
                );
            } else {
                f.summary = format!("{}{owner}", f.summary);
            }
        }
    }
    out
}

/// `rcvbuf-fixed-small` when the receiver's kernel is unknown: the window it got, as seen.
fn fixed_without_model(t: &Transfer, so: u64) -> Finding {
    let f = fixed_small(format!(
        "the receiver set SO_RCVBUF={}: autotuning is off and the window is capped",
        Bytes(so)
    ))
    .subject(t.subject.clone())
    .evidence("so_rcvbuf", so as f64, Unit::Bytes);
    let (f, why) = window_arithmetic(t, f);
    f.explain(format!(
        "sk_rcvbuf = 2 x SO_RCVBUF = {} B, fixed: {why}",
        2 * so
    ))
}

/// `rcvbuf-fixed-small` inferred from the window scale the receiver announced in its SYN.
fn fixed_by_handshake(t: &Transfer) -> Finding {
    let w = t.receiver.rcv_wscale.unwrap_or(0);
    let cap = (u64::from(u16::MAX)) << w;
    let f = fixed_small(format!(
            "{} announced window scale {w}: its buffer was fixed small (SO_RCVBUF), the window cannot exceed {}",
            t.receiver.who.clone().unwrap_or_else(|| "the receiver".into()),
            Bytes(cap)
        ))
    .subject(t.subject.clone())
    .evidence("rcv_wscale", w as f64, Unit::Number)
    .evidence("max_representable_window", cap as f64, Unit::Bytes);
    let (f, why) = window_arithmetic(t, f);
    f.explain(format!(
        "inferred from the handshake: Linux picks the window scale from max(tcp_rmem[2], rmem_max) capped by \
         the socket's window clamp, so an autotuned socket announces at least 2 with default sysctls; {w} means a \
         clamp of at most 128 KiB, which SO_RCVBUF set before connect gives (or a host with rmem_max and \
         tcp_rmem[2] below 128 KiB); {why}"
    ))
}

/// `rcvbuf-fixed-small`, the one constructor: a warning (made critical by [`judge_model`] when
/// the transfer misses its deadline) with the fix every form shares; callers add the evidence
/// of how they know the buffer was fixed.
fn fixed_small(summary: String) -> Finding {
    Finding::new(&RCVBUF_FIXED_SMALL, Severity::Warning, summary).fix(rcvbuf_fix())
}

fn rcvbuf_fix() -> &'static str {
    "do not set SO_RCVBUF (let autotuning size the buffer up to tcp_rmem[2]); e.g. Kafka \
     receive.buffer.bytes=-1. If it must stay, size it for the BDP: SO_RCVBUF >= BDP / window fraction."
}

/// Judges one modelled socket on `kernel` (what `netblame calc window` shows): the fixed
/// buffer, the kernel known issues that apply to fixed buffers, and the timeout if a workload
/// was given.
pub fn judge_model(kernel: &KernelVersion, m: &WindowModel, w: &Workload) -> Vec<Finding> {
    let mut out = Vec::new();
    let window = m.window_clamp_bytes;
    if m.rcvbuf_locked {
        let mut f = fixed_small(format!(
            "SO_RCVBUF fixes sk_rcvbuf at {} and the window at {}",
            Bytes(m.sk_rcvbuf_bytes),
            Bytes(window)
        ))
        .evidence("sk_rcvbuf", m.sk_rcvbuf_bytes as f64, Unit::Bytes)
        .evidence("window_clamp", window as f64, Unit::Bytes)
        .evidence("rcv_wscale", m.rcv_wscale as f64, Unit::Number);
        let mut explanation = format!(
            "sk_rcvbuf = 2 x SO_RCVBUF = {} B; window = {} = {} B",
            m.sk_rcvbuf_bytes,
            rule_text(m),
            window
        );
        if let Some(rtt) = w.rtt.filter(|r| !r.is_zero()) {
            let c = ceiling_bps(window, rtt);
            f = f
                .evidence("rtt", rtt.as_secs_f64() * 1e6, Unit::Microseconds)
                .evidence("ceiling", c, Unit::BitsPerSecond);
            explanation += &format!(
                "; {} window / {} RTT = {} ceiling",
                Bytes(window),
                format_duration(rtt),
                BitRate(c)
            );
        }
        out.push(f.explain(explanation));
        for issue in known_issues::affecting(kernel).filter(|i| i.trigger == Trigger::FixedRcvbuf) {
            // A note beside rcvbuf-fixed-small: the fix is the same (stop setting SO_RCVBUF),
            // and the verdict belongs to the application that set it.
            out.push(issue.finding(
                kernel,
                Severity::Info,
                "sockets that set SO_RCVBUF, like this one",
            ));
        }
    }
    let missed = timeout::misses_timeout(m, w);
    if missed.is_some() {
        // The fixed buffer is why the transfer misses its deadline: as bad as the miss.
        for f in out.iter_mut().filter(|f| f.id == RCVBUF_FIXED_SMALL.id) {
            f.severity = Severity::Critical;
        }
    }
    out.extend(missed);
    out
}

/// An autotuned receiver whose window bound the sender: did its `tcp_rmem[2]` hold the window?
/// Below the path's BDP when the link rate is known; otherwise when window-clamp / RTT is
/// within [`CLAMP_NEAR_RATE`] times the measured rate.
pub fn autotuning_ceiling(t: &Transfer) -> Option<Finding> {
    let host = t.receiver.host.as_ref()?;
    if t.receiver.so_rcvbuf.is_some() {
        return None;
    }
    let rtt = t.path.rtt.filter(|r| !r.is_zero())?;
    let auto = model(
        &host.kernel,
        &host.settings,
        &SocketRequest {
            so_rcvbuf: None,
            mss: 0,
            measured_ratio: None,
        },
    );
    let clamp = auto.window_clamp_bytes;
    let peer = t.sender.peer_window_bytes.unwrap_or(0);
    let c = ceiling_bps(clamp.max(peer), rtt);
    let bdp = t.path.link_bps.map(|rate| bdp_bytes(rate, rtt));
    let capped = match bdp {
        Some(bdp) => clamp < bdp,
        None => c < CLAMP_NEAR_RATE * t.sender.rate_bps,
    };
    if !capped {
        return None;
    }
    Some(buffer_max_below_bdp(&Shortfall {
        subject: t.subject.clone(),
        sysctl: "net.ipv4.tcp_rmem[2]".into(),
        buffer_max: host.settings.tcp_rmem[2],
        window: clamp,
        window_rule: format!(
            "{} of tcp_rmem[2] {}",
            rule_text(&auto),
            Bytes(host.settings.tcp_rmem[2])
        ),
        rtt,
        path_bps: t.path.link_bps,
        measured: Some((t.sender.rate_bps, t.window_share().unwrap_or(0.0))),
        kernel: host.kernel.clone(),
        autotuned: true,
    }))
}

/// A buffer maximum measured against a path: what `buffer-max-below-bdp` is built from.
#[derive(Debug, Clone)]
pub struct Shortfall {
    pub subject: String,
    /// The sysctl, e.g. `net.ipv4.tcp_rmem[2]`.
    pub sysctl: String,
    pub buffer_max: u64,
    /// The window that maximum allows, and the rule that gives it.
    pub window: u64,
    pub window_rule: String,
    pub rtt: Duration,
    /// The path's rate, when known (named by the user, or the lab's link).
    pub path_bps: Option<f64>,
    /// The measured rate per stream and the sender's share at the window, when a real
    /// transfer met the ceiling.
    pub measured: Option<(f64, f64)>,
    pub kernel: KernelVersion,
    /// True for the maxima autotuned sockets use (tcp_rmem[2], tcp_wmem[2]); false for the
    /// caps of applications that set SO_RCVBUF/SO_SNDBUF (rmem_max, wmem_max).
    pub autotuned: bool,
}

/// `buffer-max-below-bdp`. A note for the SO_RCVBUF/SO_SNDBUF caps; for the autotuning
/// maxima a warning, critical when the window is below half the BDP.
pub fn buffer_max_below_bdp(s: &Shortfall) -> Finding {
    let bdp = s.path_bps.map(|r| bdp_bytes(r, s.rtt));
    let severity = match (s.autotuned, bdp) {
        (false, _) => Severity::Info,
        (true, Some(b)) if s.window < b / 2 => Severity::Critical,
        (true, _) => Severity::Warning,
    };
    let c = ceiling_bps(s.window, s.rtt);
    let plan = bdp.map(|b| buffers_for_window(&s.kernel, b));
    let summary = match (bdp, s.path_bps) {
        (Some(b), Some(r)) => format!(
            "{} = {} allows about {} of window: {} is needed for {} at {} RTT",
            s.sysctl,
            Bytes(s.buffer_max),
            Bytes(s.window),
            Bytes(b),
            BitRate(r),
            format_duration(s.rtt)
        ),
        _ => format!(
            "the receive window stayed near {}: {} = {} caps it below the path's BDP",
            Bytes(s.window),
            s.sysctl,
            Bytes(s.buffer_max)
        ),
    };
    let mut f = Finding::new(&BUFFER_MAX_BELOW_BDP, severity, summary)
        .subject(s.subject.clone())
        .evidence("buffer_max", s.buffer_max as f64, Unit::Bytes)
        .evidence("window_clamp", s.window as f64, Unit::Bytes)
        .evidence("rtt", s.rtt.as_secs_f64() * 1e6, Unit::Microseconds)
        .evidence("ceiling", c, Unit::BitsPerSecond);
    let mut why = format!(
        "window <= {} = {}; {} / {} RTT = {} ceiling",
        s.window_rule,
        Bytes(s.window),
        Bytes(s.window),
        format_duration(s.rtt),
        BitRate(c)
    );
    if let Some((rate, share)) = s.measured {
        f = f.evidence("goodput", rate, Unit::BitsPerSecond).evidence(
            "rwnd_limited",
            share * 100.0,
            Unit::Percent,
        );
        why += &format!(
            "; measured {}; the sender was at the receiver's window {:.0}% of its busy time",
            BitRate(rate),
            share * 100.0
        );
    }
    let mut fix = format!(
        "raise {} (and net.core.rmem_max) on the receiver to at least the path's rate x RTT divided by the \
         window fraction (`netblame calc bdp --rate R --rtt {}`)",
        s.sysctl,
        duration_exact_string(s.rtt)
    );
    if let (Some(b), Some(plan), Some(rate)) = (bdp, plan, s.path_bps) {
        let need = (b as f64 / plan.window_fraction).ceil() as u64;
        f = f.evidence("bdp", b as f64, Unit::Bytes).evidence(
            "buffer_needed",
            need as f64,
            Unit::Bytes,
        );
        why += &format!(
            "; BDP = {} x {} / 8 = {} B; the window is the buffer x {:.2} on {}, so the buffer must be {} B",
            BitRate(rate),
            format_duration(s.rtt),
            b,
            plan.window_fraction,
            s.kernel,
            need
        );
        fix = format!(
            "netblame tune --rate {} --rtt {} (sets {} to {} and keeps autotuning on)",
            crate::units::rate_arg(rate),
            duration_exact_string(s.rtt),
            s.sysctl,
            plan.buffer_bytes
        );
    }
    f.explain(why).fix(fix)
}

/// Requested buffers the kernel capped (`transfer-buffer-capped`, one per distinct request) or
/// a peer ignored (`buffer-request-ignored`).
pub fn capped_requests(t: &Transfer) -> Vec<Finding> {
    let b = &t.buffers;
    b.iter()
        .enumerate()
        .filter(|(i, r)| !b[..*i].contains(r))
        .filter_map(|(_, r)| {
            let sysctl = if r.option == "SO_RCVBUF" {
                "net.core.rmem_max"
            } else {
                "net.core.wmem_max"
            };
            if !r.applied {
                return Some(
                    Finding::new(
                        &BUFFER_REQUEST_IGNORED,
                        Severity::Warning,
                        format!(
                            "the {} did not apply {} {}: it ran with autotuned buffers",
                            r.side,
                            r.option,
                            Bytes(r.requested_bytes)
                        ),
                    )
                    .subject(format!("{} {}", r.side, r.option))
                    .evidence("requested", r.requested_bytes as f64, Unit::Bytes)
                    .explain(format!(
                        "the {} is not netblame (a plain iperf3 -s): iperf3 sets -w on both ends, but its server \
                         never applies a client's receive-only or send-only buffer request",
                        r.side
                    ))
                    .fix("run `netblame bench server` on that end, or use -w (iperf3 applies it on both ends)"),
                );
            }
            (r.actual_bytes < r.requested_bytes.saturating_mul(2)).then(|| {
                Finding::new(
                    &TRANSFER_BUFFER_CAPPED,
                    Severity::Warning,
                    format!(
                        "{} {} asked {} and got {} (capped)",
                        r.side,
                        r.option,
                        Bytes(r.requested_bytes),
                        Bytes(r.actual_bytes)
                    ),
                )
                .subject(format!("{} {}", r.side, r.option))
                .evidence("requested", r.requested_bytes as f64, Unit::Bytes)
                .evidence("actual", r.actual_bytes as f64, Unit::Bytes)
                .explain(format!(
                    "the kernel doubles the request for bookkeeping and caps it at {sysctl} x 2: expected {}, got {}",
                    r.requested_bytes.saturating_mul(2),
                    r.actual_bytes
                ))
                .fix(format!("raise {sysctl} to at least {} (or request less)", r.requested_bytes))
            })
        })
        .collect()
}

/// The host's buffer and scaling sysctls: window scaling off, autotuning off, and with a named
/// path, every buffer maximum below its bandwidth-delay product.
pub fn judge_host(snap: &HostSnapshot, path: Option<(f64, Duration)>) -> Vec<Finding> {
    let mut out = Vec::new();
    if snap.sysctl_int("net.ipv4.tcp_window_scaling") == Some(0) {
        let mut f = Finding::new(
            &WINDOW_SCALING_OFF,
            Severity::Critical,
            "window scaling is off: no connection can have more than 64 KiB in flight",
        )
        .evidence("tcp_window_scaling", 0.0, Unit::Number)
        .evidence("max_window", 65535.0, Unit::Bytes)
        .fix("sysctl -w net.ipv4.tcp_window_scaling=1 (and persist it in /etc/sysctl.d); new connections pick it up");
        let mut why = "without the window scale option (RFC 7323) the 16-bit window field caps the window at 65,535 B".to_string();
        if let Some((rate, rtt)) = path {
            let c = ceiling_bps(65535, rtt);
            f = f.evidence("ceiling", c, Unit::BitsPerSecond);
            why += &format!(
                "; 65,535 B x 8 / {} = {} ceiling on the {} path",
                format_duration(rtt),
                BitRate(c),
                BitRate(rate)
            );
        }
        out.push(f.explain(why));
    }
    if snap.sysctl_int("net.ipv4.tcp_moderate_rcvbuf") == Some(0) {
        out.push(
            Finding::new(
                &AUTOTUNING_OFF,
                Severity::Warning,
                "receive-buffer autotuning is off: every socket stays at tcp_rmem[1]",
            )
            .evidence("tcp_moderate_rcvbuf", 0.0, Unit::Number)
            .explain("with tcp_moderate_rcvbuf=0 the kernel never grows a socket's receive buffer past tcp_rmem[1], so the window stays at about half of it")
            .fix("sysctl -w net.ipv4.tcp_moderate_rcvbuf=1: never disable autotuning; bound it with tcp_rmem[2] instead"),
        );
    }
    let Some((rate, rtt)) = path else { return out };
    let kernel = snap
        .kernel
        .clone()
        .unwrap_or_else(|| KernelVersion::new(6, 12, 0));
    let bdp = bdp_bytes(rate, rtt);
    let plan = buffers_for_window(&kernel, bdp);
    let need = (bdp as f64 / plan.window_fraction).ceil() as u64;
    let checks: [(&str, usize, bool); 4] = [
        ("net.ipv4.tcp_rmem", 2, true),
        ("net.ipv4.tcp_wmem", 2, true),
        ("net.core.rmem_max", 0, false),
        ("net.core.wmem_max", 0, false),
    ];
    for (name, idx, autotuned) in checks {
        let Some(v) = snap.sysctl_ints(name).and_then(|v| v.get(idx).copied()) else {
            continue;
        };
        let have = v.max(0) as u64;
        if have >= need {
            continue;
        }
        let label = if idx > 0 {
            format!("{name}[{idx}]")
        } else {
            name.to_string()
        };
        out.push(buffer_max_below_bdp(&Shortfall {
            subject: label.clone(),
            sysctl: label,
            buffer_max: have,
            window: (have as f64 * plan.window_fraction) as u64,
            window_rule: format!("buffer x {:.2} on {kernel}", plan.window_fraction),
            rtt,
            path_bps: Some(rate),
            measured: None,
            kernel: kernel.clone(),
            autotuned,
        }));
    }
    out
}

/// "131072 x 65/256" or "131072 - 131072 >> 1", the window rule in words.
pub fn rule_text(model: &WindowModel) -> String {
    use crate::window::WinFromSpace;
    match model.rule {
        WinFromSpace::ScalingRatio { ratio }
            if model.clamp_fixed_at_initial || model.rcvbuf_locked =>
        {
            format!("{} x {}/256 (scaling_ratio)", model.sk_rcvbuf_bytes, ratio)
        }
        WinFromSpace::ScalingRatio { ratio } => format!("buffer x {ratio}/256 (scaling_ratio)"),
        WinFromSpace::AdvWinScale {
            tcp_adv_win_scale: a,
        } if a <= 0 => {
            format!(
                "{} >> {} (tcp_adv_win_scale={a})",
                model.sk_rcvbuf_bytes, -a
            )
        }
        WinFromSpace::AdvWinScale {
            tcp_adv_win_scale: a,
        } => format!(
            "{} - ({} >> {a}) (tcp_adv_win_scale={a})",
            model.sk_rcvbuf_bytes, model.sk_rcvbuf_bytes
        ),
    }
}

/// True when a socket's `rcv_wscale` says SO_RCVBUF was set before connect: at least
/// [`WSCALE_GAP`] below what autotuned sockets negotiate here, with a fixed buffer no larger
/// than the SO_RCVBUF cap (2 x rmem_max) and below tcp_rmem[2].
pub fn rcvbuf_inferred(
    kernel: &KernelVersion,
    settings: &RcvSettings,
    rcv_wscale: u8,
    sk_rcvbuf: u64,
) -> bool {
    let auto = crate::window::autotuned_wscale(kernel, settings);
    rcv_wscale.saturating_add(WSCALE_GAP) <= auto
        && sk_rcvbuf <= 2 * settings.rmem_max.max(1)
        && sk_rcvbuf < settings.tcp_rmem[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge_64k(kernel: &str) -> Vec<Finding> {
        let kv: KernelVersion = kernel.parse().unwrap();
        let m = model(
            &kv,
            &RcvSettings::defaults_for(&kv),
            &SocketRequest {
                so_rcvbuf: Some(65536),
                mss: 1448,
                measured_ratio: None,
            },
        );
        judge_model(
            &kv,
            &m,
            &Workload {
                rtt: Some(Duration::from_millis(137)),
                size: Some(10 << 20),
                timeout: Some(Duration::from_secs(30)),
                link_bps: None,
                mss: 1448,
            },
        )
    }

    #[test]
    fn netflix_kernel_misses_the_timeout_and_names_the_issue() {
        let f = judge_64k("6.6.10");
        let ids: Vec<_> = f.iter().map(|f| f.id).collect();
        assert!(ids.contains(&"rcvbuf-fixed-small"));
        assert!(ids.contains(&"kernel-scaling-ratio-6.6"));
        assert!(ids.contains(&"kernel-clamp-initial-ratio"));
        assert!(ids.contains(&"transfer-misses-timeout"));
        let fixed = f.iter().find(|f| f.id == "rcvbuf-fixed-small").unwrap();
        assert!(
            fixed.explanation.contains("131072 x 65/256"),
            "{}",
            fixed.explanation
        );
        let known = f
            .iter()
            .find(|f| f.id == "kernel-scaling-ratio-6.6")
            .unwrap();
        assert!(known.explanation.contains("backports"));
    }

    #[test]
    fn old_kernel_makes_the_timeout() {
        let ids: Vec<_> = judge_64k("6.5.13").iter().map(|f| f.id).collect();
        assert_eq!(ids, ["rcvbuf-fixed-small"]);
    }

    #[test]
    fn a_wscale_gap_says_so_rcvbuf() {
        let k: KernelVersion = "6.6.10".parse().unwrap();
        let mut s = RcvSettings::defaults_for(&k);
        s.tcp_rmem[2] = 6 << 20;
        assert!(rcvbuf_inferred(&k, &s, 1, 131072));
        assert!(!rcvbuf_inferred(&k, &s, 7, 131072));
    }
}
