//! Findings about a modelled receive window: a fixed SO_RCVBUF, a known kernel issue, a
//! transfer that misses its application timeout.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::kernel::KernelVersion;
use crate::known_issues::{self, Trigger};
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::{ceiling_bps, transfer_time, TransferEstimate, TransferInput, WindowModel};
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
