//! Findings about a modelled receive window: a fixed SO_RCVBUF, a known kernel issue, a
//! transfer that misses its application timeout.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::kernel::KernelVersion;
use crate::known_issues::{self, Trigger};
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::{
    bdp_bytes, buffers_for_window, ceiling_bps, model, transfer_time, RcvSettings, SocketRequest,
    TransferEstimate, TransferInput, WindowModel,
};
use std::time::Duration;

/// Findings this module produces.
pub const FINDINGS: &[FindingSpec] = &[
    FindingSpec {
        id: "rcvbuf-fixed-small",
        layer: Layer::Application,
        title: "the application set SO_RCVBUF: autotuning is off and the window is capped",
    },
    FindingSpec {
        id: "transfer-misses-timeout",
        layer: Layer::Application,
        title: "at this window and RTT the transfer takes longer than the application's timeout",
    },
];

use crate::catalogue::spec;

/// An autotuned receiver whose window the sender was waiting on: is its `tcp_rmem[2]` what
/// held the window (`buffer-max-below-bdp`)? Used by lab transfers and throughput tests alike.
#[derive(Debug, Clone)]
pub struct AutotunedReceiver<'a> {
    pub kernel: &'a KernelVersion,
    pub settings: &'a RcvSettings,
    /// The receiver's MSS, 0 when unknown (only the initial window's rounding uses it).
    pub mss: u64,
    /// The window the sender saw, bytes.
    pub peer_window: u64,
    /// Path round-trip time.
    pub rtt: Duration,
    /// Measured rate of one stream, bits per second.
    pub goodput_bps: f64,
    /// Receiver-window-limited share of the sender's busy time (0..1).
    pub rwnd_share: f64,
    /// The path's rate, when known (the lab's emulator knows it).
    pub link_bps: Option<f64>,
}

/// `buffer-max-below-bdp` when the autotuning ceiling held the window below the path: below the
/// path's BDP when the link rate is known, otherwise when window-clamp / RTT is within twice
/// the measured rate. The arithmetic: the window model's clamp for `tcp_rmem[2]`, its ceiling
/// per RTT, the BDP and the sysctls that would fit it.
pub fn autotuning_ceiling(r: &AutotunedReceiver, severity: Severity) -> Option<Finding> {
    let auto = model(
        r.kernel,
        r.settings,
        &SocketRequest {
            so_rcvbuf: None,
            mss: r.mss,
            measured_ratio: None,
        },
    );
    let rmem_max = r.settings.tcp_rmem[2];
    let clamp = auto.window_clamp_bytes;
    let bdp = r.link_bps.map(|rate| bdp_bytes(rate, r.rtt));
    let c = ceiling_bps(clamp.max(r.peer_window), r.rtt);
    let capped = match bdp {
        Some(bdp) => clamp < bdp,
        None => c < 2.0 * r.goodput_bps,
    };
    if !capped {
        return None;
    }
    let mut f = Finding::new(
        spec("buffer-max-below-bdp"),
        severity,
        format!(
            "the receive window stayed near {}: tcp_rmem[2] = {} caps it below the path's BDP",
            Bytes(clamp),
            Bytes(rmem_max)
        ),
    )
    .evidence("tcp_rmem_max", rmem_max as f64, Unit::Bytes)
    .evidence("window_clamp", clamp as f64, Unit::Bytes)
    .evidence("peer_window", r.peer_window as f64, Unit::Bytes)
    .evidence("rtt", r.rtt.as_secs_f64() * 1e6, Unit::Microseconds)
    .evidence("ceiling", c, Unit::BitsPerSecond)
    .evidence("goodput", r.goodput_bps, Unit::BitsPerSecond)
    .evidence("rwnd_limited", r.rwnd_share * 100.0, Unit::Percent);
    let mut why = format!(
        "window <= {} of tcp_rmem[2] {} = {}; {} / {} RTT = {} ceiling; measured {}; sender \
         receiver-window limited {:.0}% of its busy time",
        rule_text(&auto),
        Bytes(rmem_max),
        Bytes(clamp),
        Bytes(clamp.max(r.peer_window)),
        format_duration(r.rtt),
        BitRate(c),
        BitRate(r.goodput_bps),
        r.rwnd_share * 100.0
    );
    let mut fix = "raise net.ipv4.tcp_rmem[2] (and net.core.rmem_max) on the receiver to at least \
                   the path's rate x RTT divided by the window fraction (`netblame calc bdp RATE RTT`)"
        .to_string();
    if let (Some(bdp), Some(rate)) = (bdp, r.link_bps) {
        f = f.evidence("bdp", bdp as f64, Unit::Bytes);
        why += &format!(
            "; BDP = {} x {} = {}",
            BitRate(rate),
            format_duration(r.rtt),
            Bytes(bdp)
        );
        let plan = buffers_for_window(r.kernel, bdp);
        fix = format!(
            "sysctl -w net.ipv4.tcp_rmem=\"{} {} {}\" net.core.rmem_max={} on the receiver (see `netblame calc bdp`)",
            plan.tcp_rmem[0], plan.tcp_rmem[1], plan.tcp_rmem[2], plan.rmem_max
        );
    }
    Some(f.explain(why).fix(fix))
}

/// `window-scaling-absent` for a sender that waited on the receiver's window: without the
/// option the 16-bit window field caps the window at 65535 bytes, so 65535 B / RTT is the
/// ceiling. `host_turned_it_off` blames the host (an endpoint's `tcp_window_scaling` sysctl is
/// known to be 0, or nothing on the path can strip options); otherwise the layer stays the
/// network (a middlebox may strip the option).
pub fn window_scaling_absent(
    rtt: Duration,
    goodput_bps: f64,
    rwnd_share: f64,
    severity: Severity,
    host_turned_it_off: bool,
) -> Finding {
    let cap = u64::from(u16::MAX);
    let c = ceiling_bps(cap, rtt);
    let f = Finding::new(
        spec("window-scaling-absent"),
        severity,
        format!(
            "no window scaling: the window cannot exceed 64 KiB, {} at {} RTT",
            BitRate(c),
            format_duration(rtt)
        ),
    )
    .evidence("window_cap", cap as f64, Unit::Bytes)
    .evidence("rtt", rtt.as_secs_f64() * 1e6, Unit::Microseconds)
    .evidence("ceiling", c, Unit::BitsPerSecond)
    .evidence("goodput", goodput_bps, Unit::BitsPerSecond)
    .evidence("rwnd_limited", rwnd_share * 100.0, Unit::Percent)
    .explain(format!(
        "the SYNs carried no window-scale option, so the 16-bit window field caps the window: \
         65535 B / {} RTT = {} ceiling; goodput {}",
        format_duration(rtt),
        BitRate(c),
        BitRate(goodput_bps)
    ))
    .fix("sysctl -w net.ipv4.tcp_window_scaling=1 on both ends (and check middleboxes that strip the option)");
    if host_turned_it_off {
        f.blame(Layer::Host)
    } else {
        f
    }
}

/// The path and workload a window is judged against.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub rtt: Option<Duration>,
    pub size: Option<u64>,
    pub timeout: Option<Duration>,
    /// Link rate, bits per second.
    pub link_bps: Option<f64>,
    pub mss: u64,
}

/// Transfer estimate for a model under a workload, when RTT and size are known.
pub fn estimate(model: &WindowModel, w: &Workload) -> Option<TransferEstimate> {
    Some(transfer_time(&TransferInput {
        bytes: w.size?,
        window_bytes: model.window_clamp_bytes,
        rtt: w.rtt?,
        link_bps: w.link_bps,
        mss: w.mss.max(1),
    }))
}

/// Judges one modelled socket on `kernel`: the fixed buffer, known kernel issues that apply to
/// it, and the timeout if a workload was given.
pub fn judge(kernel: &KernelVersion, model: &WindowModel, w: &Workload) -> Vec<Finding> {
    let mut out = Vec::new();
    let window = model.window_clamp_bytes;
    if model.rcvbuf_locked {
        let mut f = Finding::new(
            spec("rcvbuf-fixed-small"),
            Severity::Warning,
            format!("SO_RCVBUF fixes sk_rcvbuf at {} and the window at {}", Bytes(model.sk_rcvbuf_bytes), Bytes(window)),
        )
        .evidence("sk_rcvbuf", model.sk_rcvbuf_bytes as f64, Unit::Bytes)
        .evidence("window_clamp", window as f64, Unit::Bytes)
        .evidence("rcv_wscale", model.rcv_wscale as f64, Unit::Number)
        .fix(
            "do not set SO_RCVBUF (let autotuning size the buffer up to tcp_rmem[2]); e.g. Kafka \
             receive.buffer.bytes=-1. If it must stay, size it for the BDP: SO_RCVBUF >= BDP / window fraction.",
        );
        let mut explanation = format!(
            "sk_rcvbuf = 2 x SO_RCVBUF = {} B; window = {} = {} B",
            model.sk_rcvbuf_bytes,
            rule_text(model),
            window
        );
        if let Some(rtt) = w.rtt {
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
        f = f.explain(explanation);
        out.push(f);
        for issue in known_issues::affecting(kernel).filter(|i| i.trigger == Trigger::FixedRcvbuf) {
            out.push(issue.finding(
                kernel,
                Severity::Warning,
                "sockets that set SO_RCVBUF, like this one",
            ));
        }
    }
    if let (Some(est), Some(timeout)) = (estimate(model, w), w.timeout) {
        if est.total > timeout {
            let rtt = w.rtt.unwrap_or_default();
            out.push(
                Finding::new(
                    spec("transfer-misses-timeout"),
                    Severity::Critical,
                    format!(
                        "{} takes about {} at {} RTT: more than the {} timeout",
                        Bytes(w.size.unwrap_or(0)),
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
                    Bytes(window),
                    format_duration(rtt),
                    BitRate(est.steady_bps),
                    Bytes(w.size.unwrap_or(0)),
                    est.round_trips,
                    format_duration(est.total)
                ))
                .fix("raise the window (do not set SO_RCVBUF, size tcp_rmem[2] for the BDP) or the application timeout"),
            );
        }
    }
    out
}

/// "131072 x 65/256" or "131072 - 131072 >> 1", the rule in words.
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
        } => {
            format!(
                "{} - ({} >> {a}) (tcp_adv_win_scale={a})",
                model.sk_rcvbuf_bytes, model.sk_rcvbuf_bytes
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{model, RcvSettings, SocketRequest};

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
        judge(
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
}
