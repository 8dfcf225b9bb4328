//! Receive-window math for any kernel version (reference: kernel-tcp.md section 1).
//!
//! From SO_RCVBUF (or autotuning with `tcp_rmem`), `rmem_max`, `tcp_adv_win_scale`, the MSS and
//! an optional measured scaling ratio, [`model`] computes `sk_rcvbuf`, the initial window, the
//! window clamp over the socket's life and the window scale. [`ceiling`], [`bdp`] and
//! [`transfer_time`] turn windows into rates and times.

use crate::kernel::KernelVersion;
use crate::known_issues;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `SOCK_MIN_RCVBUF` on x86-64: `2048 + SKB_DATA_ALIGN(sizeof(struct sk_buff))`.
pub const SOCK_MIN_RCVBUF: u64 = 2304;
/// `SKB_TRUESIZE(4096)` on x86-64: 4096 + 256 (sk_buff) + 320 (skb_shared_info).
pub const SKB_TRUESIZE_4096: u64 = 4672;
/// Initial `scaling_ratio` of 6.6.0–6.6.32 and friends: `(1200 << 8) / SKB_TRUESIZE(4096)` = 65.
pub const SCALING_RATIO_OLD_DEFAULT: u8 = ((1200u64 << 8) / SKB_TRUESIZE_4096) as u8;
/// Initial `scaling_ratio` after commit 697a6c8cec03: 128 (0.5).
pub const SCALING_RATIO_NEW_DEFAULT: u8 = 128;
/// Above this `tcp_rmem[2]` the collapse of a full receive queue is slow: Cloudflare measured
/// 21 ms collapses at 32 MiB and settled on 4 MiB (seed 001).
pub const COLLAPSE_COMPROMISE_BYTES: u64 = 4 << 20;

/// The largest window scale shift (RFC 7323).
pub const MAX_WSCALE: u8 = 14;

/// Host settings that shape a socket's receive window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RcvSettings {
    /// `net.ipv4.tcp_rmem` (min, default, max).
    pub tcp_rmem: [u64; 3],
    /// `net.core.rmem_max`.
    pub rmem_max: u64,
    /// `net.ipv4.tcp_adv_win_scale` (ignored from 6.6 on).
    pub tcp_adv_win_scale: i32,
    /// `net.ipv4.tcp_window_scaling`.
    pub window_scaling: bool,
}

impl RcvSettings {
    /// Upstream defaults for a kernel version (`tcp_rmem[2]` became 32 MiB in 6.16).
    pub fn defaults_for(kernel: &KernelVersion) -> RcvSettings {
        let max = if kernel.at_least(6, 16, 0) {
            32 << 20
        } else {
            6 << 20
        };
        RcvSettings {
            tcp_rmem: [4096, 131072, max],
            rmem_max: 212_992,
            tcp_adv_win_scale: 1,
            window_scaling: true,
        }
    }
}

/// What a socket asked for.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SocketRequest {
    /// SO_RCVBUF set before connect/listen, in bytes; `None` = autotuned.
    pub so_rcvbuf: Option<u64>,
    /// MSS used to quantize the first advertised window.
    pub mss: u64,
    /// A measured live scaling ratio (`skb->len / truesize`, 0..1) to model the clamp after the
    /// fixes; `None` keeps the initial ratio.
    pub measured_ratio: Option<f64>,
}

/// How the kernel turns buffer space into window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum WinFromSpace {
    /// Before 6.6: `a <= 0 ? S >> -a : S - (S >> a)`.
    AdvWinScale { tcp_adv_win_scale: i32 },
    /// 6.6 and later: `(S * ratio) >> 8`.
    ScalingRatio { ratio: u8 },
}

impl WinFromSpace {
    /// The window allowed by `space` bytes of buffer.
    pub fn apply(self, space: u64) -> u64 {
        match self {
            WinFromSpace::AdvWinScale {
                tcp_adv_win_scale: a,
            } if a <= 0 => space >> (-a).min(63),
            WinFromSpace::AdvWinScale {
                tcp_adv_win_scale: a,
            } => space - (space >> a.min(63)),
            WinFromSpace::ScalingRatio { ratio } => (space * ratio as u64) >> 8,
        }
    }

    /// The fraction of buffer space that becomes window.
    pub fn fraction(self) -> f64 {
        self.apply(1 << 20) as f64 / (1u64 << 20) as f64
    }
}

/// The initial window-from-space rule of a kernel version.
pub fn initial_rule(kernel: &KernelVersion, tcp_adv_win_scale: i32) -> WinFromSpace {
    if !kernel.at_least(6, 6, 0) {
        WinFromSpace::AdvWinScale { tcp_adv_win_scale }
    } else if known_issues::by_id("kernel-scaling-ratio-6.6")
        .is_some_and(|i| i.affected.iter().any(|r| r.contains(kernel)))
    {
        WinFromSpace::ScalingRatio {
            ratio: SCALING_RATIO_OLD_DEFAULT,
        }
    } else {
        WinFromSpace::ScalingRatio {
            ratio: SCALING_RATIO_NEW_DEFAULT,
        }
    }
}

/// True when, with SO_RCVBUF, the clamp stays at the initial ratio for the socket's life.
pub fn clamp_stuck_at_initial_ratio(kernel: &KernelVersion) -> bool {
    known_issues::by_id("kernel-clamp-initial-ratio")
        .is_some_and(|i| i.affected.iter().any(|r| r.contains(kernel)))
}

/// The modelled receive side of one socket on one kernel.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WindowModel {
    pub kernel: String,
    /// `sk_rcvbuf` at connect: `max(2 * min(SO_RCVBUF, rmem_max), SOCK_MIN_RCVBUF)` or `tcp_rmem[1]`.
    pub sk_rcvbuf_bytes: u64,
    /// True when SO_RCVBUF locked the buffer (autotuning off).
    pub rcvbuf_locked: bool,
    pub rule: WinFromSpace,
    /// `win_from_space(sk_rcvbuf)` with the initial rule: what the socket may advertise at first.
    pub initial_window_bytes: u64,
    /// The first window actually advertised: quantized to the MSS (the SYN itself carries at
    /// most 65535, unscaled).
    pub first_advertised_bytes: u64,
    /// The largest window the socket will ever advertise (the clamp), over its life.
    pub window_clamp_bytes: u64,
    /// True when the clamp cannot grow past its initial value (SO_RCVBUF on an affected kernel).
    pub clamp_fixed_at_initial: bool,
    /// The window scale this socket asks for in its SYN.
    pub rcv_wscale: u8,
}

fn ilog2(v: u64) -> u32 {
    63 - v.max(1).leading_zeros()
}

/// Models one socket's receive window on `kernel` with `settings`.
pub fn model(kernel: &KernelVersion, settings: &RcvSettings, req: &SocketRequest) -> WindowModel {
    let rule = initial_rule(kernel, settings.tcp_adv_win_scale);
    let (sk_rcvbuf, locked) = match req.so_rcvbuf {
        Some(v) => ((2 * v.min(settings.rmem_max)).max(SOCK_MIN_RCVBUF), true),
        None => (settings.tcp_rmem[1], false),
    };
    let full_space = rule.apply(sk_rcvbuf);
    // tcp_connect_init / tcp_openreq_init_rwin: a locked buffer limits the clamp; else 0 (no clamp).
    let clamp0 = if locked {
        full_space
    } else {
        u64::from(u16::MAX) << MAX_WSCALE
    };
    let space = full_space.min(clamp0);
    let first = if space > req.mss && req.mss > 0 {
        space - space % req.mss
    } else {
        space
    };
    // tcp_select_initial_window: scale chosen for the largest window this socket could use.
    let rcv_wscale = if settings.window_scaling {
        let s = space
            .max(settings.tcp_rmem[2])
            .max(settings.rmem_max)
            .min(clamp0);
        (ilog2(s) as i64 - 15).clamp(0, MAX_WSCALE as i64) as u8
    } else {
        0
    };
    let representable = u64::from(u16::MAX) << rcv_wscale;
    let life_clamp = if locked {
        let stuck = kernel.at_least(6, 6, 0) && clamp_stuck_at_initial_ratio(kernel);
        let later = match (rule, req.measured_ratio) {
            (WinFromSpace::ScalingRatio { .. }, Some(r)) if !stuck => WinFromSpace::ScalingRatio {
                ratio: (r.clamp(0.0, 255.0 / 256.0) * 256.0) as u8,
            }
            .apply(sk_rcvbuf),
            _ => full_space,
        };
        (later, stuck)
    } else {
        // Autotuning grows sk_rcvbuf up to tcp_rmem[2].
        let live = match (rule, req.measured_ratio) {
            (WinFromSpace::ScalingRatio { .. }, Some(r)) => WinFromSpace::ScalingRatio {
                ratio: (r.clamp(0.0, 255.0 / 256.0) * 256.0) as u8,
            },
            _ => rule,
        };
        (live.apply(settings.tcp_rmem[2].max(sk_rcvbuf)), false)
    };
    WindowModel {
        kernel: kernel.to_string(),
        sk_rcvbuf_bytes: sk_rcvbuf,
        rcvbuf_locked: locked,
        rule,
        initial_window_bytes: full_space.min(representable),
        first_advertised_bytes: first.min(representable),
        window_clamp_bytes: life_clamp.0.min(representable),
        clamp_fixed_at_initial: life_clamp.1,
        rcv_wscale,
    }
}

/// The window scale an autotuned socket on this host asks for (the yardstick for spotting
/// sockets that set SO_RCVBUF).
pub fn autotuned_wscale(kernel: &KernelVersion, settings: &RcvSettings) -> u8 {
    model(
        kernel,
        settings,
        &SocketRequest {
            so_rcvbuf: None,
            mss: 1448,
            measured_ratio: None,
        },
    )
    .rcv_wscale
}

/// Throughput ceiling of a window: `window * 8 / RTT`, bits per second.
pub fn ceiling_bps(window_bytes: u64, rtt: Duration) -> f64 {
    if rtt.is_zero() {
        return f64::INFINITY;
    }
    window_bytes as f64 * 8.0 / rtt.as_secs_f64()
}

/// Bandwidth-delay product in bytes: `rate * RTT / 8`.
pub fn bdp_bytes(rate_bps: f64, rtt: Duration) -> u64 {
    (rate_bps * rtt.as_secs_f64() / 8.0).round() as u64
}

/// Sysctl values that let autotuning reach a window of `window_bytes` on `kernel`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BufferPlan {
    /// The window needed.
    pub window_bytes: u64,
    /// Fraction of buffer that becomes window on this kernel (0.5 by default).
    pub window_fraction: f64,
    /// Buffer needed: window / fraction, rounded up to a whole MiB.
    pub buffer_bytes: u64,
    pub rmem_max: u64,
    pub wmem_max: u64,
    pub tcp_rmem: [u64; 3],
    pub tcp_wmem: [u64; 3],
}

/// The buffer sizes (and sysctls) that allow a window of `window_bytes`.
pub fn buffers_for_window(kernel: &KernelVersion, window_bytes: u64) -> BufferPlan {
    // Size for the post-fix ratio (0.5) or tcp_adv_win_scale=1 (also 0.5): the live ratio is
    // usually higher, so this leaves headroom.
    let fraction = match initial_rule(kernel, 1) {
        WinFromSpace::ScalingRatio { .. } => SCALING_RATIO_NEW_DEFAULT as f64 / 256.0,
        rule => rule.fraction(),
    };
    let raw = (window_bytes as f64 / fraction).ceil() as u64;
    let mib = 1u64 << 20;
    let buffer = raw.div_ceil(mib) * mib;
    BufferPlan {
        window_bytes,
        window_fraction: fraction,
        buffer_bytes: buffer,
        rmem_max: buffer,
        wmem_max: buffer,
        tcp_rmem: [4096, 131072, buffer.max(131072)],
        tcp_wmem: [4096, 16384, buffer.max(16384)],
    }
}

/// The inputs of the transfer-time model.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TransferInput {
    pub bytes: u64,
    /// The receive window that bounds the sender.
    pub window_bytes: u64,
    pub rtt: Duration,
    /// Link rate, bits per second; `None` = unlimited.
    pub link_bps: Option<f64>,
    /// Sender MSS for slow start (initial cwnd 10 segments, RFC 6928).
    pub mss: u64,
}

/// The modelled time to move a transfer.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TransferEstimate {
    /// From the first SYN to the last byte acknowledged.
    pub total: Duration,
    /// Round trips spent, including the handshake.
    pub round_trips: u64,
    /// Steady-state rate, bits per second: `min(window / RTT, link)`.
    pub steady_bps: f64,
}

/// Time to move `input.bytes`: one RTT of handshake, then rounds of one RTT (or the
/// serialization time of the round at the link rate, if longer) in which the sender sends
/// `min(cwnd, window)` bytes; cwnd starts at 10 MSS and doubles per round (slow start) with no
/// loss. Limits: no loss, no delayed-ACK or pacing effects, no receiver-side processing time; a
/// lossy path takes longer.
pub fn transfer_time(input: &TransferInput) -> TransferEstimate {
    let rtt = input.rtt.as_secs_f64();
    let window = input.window_bytes.max(1);
    let round_time = |bytes: u64| -> f64 {
        match input.link_bps {
            Some(bps) if bps > 0.0 => rtt.max(bytes as f64 * 8.0 / bps),
            _ => rtt,
        }
    };
    let mut cwnd = 10 * input.mss.max(1);
    let mut remaining = input.bytes;
    let mut secs = rtt; // handshake
    let mut rounds = 1u64;
    while remaining > 0 && cwnd < window {
        let sent = cwnd.min(remaining);
        secs += round_time(sent);
        rounds += 1;
        remaining -= sent;
        cwnd = cwnd.saturating_mul(2);
    }
    if remaining > 0 {
        let full_rounds = remaining / window;
        let tail = remaining % window;
        secs += full_rounds as f64 * round_time(window);
        rounds += full_rounds;
        if tail > 0 {
            secs += round_time(tail);
            rounds += 1;
        }
    }
    let steady = match input.link_bps {
        Some(bps) if bps > 0.0 => ceiling_bps(window, input.rtt).min(bps),
        _ => ceiling_bps(window, input.rtt),
    };
    TransferEstimate {
        total: Duration::from_secs_f64(secs),
        round_trips: rounds,
        steady_bps: steady,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> KernelVersion {
        s.parse().unwrap()
    }

    fn rcvbuf_64k(kernel: &str) -> WindowModel {
        let kv = k(kernel);
        model(
            &kv,
            &RcvSettings::defaults_for(&kv),
            &SocketRequest {
                so_rcvbuf: Some(65536),
                mss: 1448,
                measured_ratio: None,
            },
        )
    }

    #[test]
    fn seed_windows_by_kernel() {
        let old = rcvbuf_64k("6.5.13");
        assert_eq!(old.sk_rcvbuf_bytes, 131_072);
        assert_eq!(old.window_clamp_bytes, 65_536);
        assert_eq!(old.rcv_wscale, 1);
        let bad = rcvbuf_64k("6.6.10");
        assert_eq!(bad.window_clamp_bytes, 33_280);
        assert!(bad.clamp_fixed_at_initial);
        assert_eq!(bad.rcv_wscale, 0);
        let fixed = rcvbuf_64k("6.6.33");
        assert_eq!(fixed.initial_window_bytes, 65_536);
        assert_eq!(fixed.window_clamp_bytes, 65_536);
        assert_eq!(rcvbuf_64k("6.18.44").rcv_wscale, 1);
    }

    #[test]
    fn measured_ratio_grows_the_clamp_only_after_the_fixes() {
        let req = SocketRequest {
            so_rcvbuf: Some(65536),
            mss: 1448,
            measured_ratio: Some(0.66),
        };
        let after = k("6.6.48");
        let m = model(&after, &RcvSettings::defaults_for(&after), &req);
        assert_eq!(m.window_clamp_bytes, (131_072 * 168) >> 8);
        let before = k("6.6.33");
        let m = model(&before, &RcvSettings::defaults_for(&before), &req);
        assert_eq!(m.window_clamp_bytes, 65_536);
    }

    #[test]
    fn autotuned_scale_follows_tcp_rmem_max() {
        let kv = k("6.1.0");
        assert_eq!(autotuned_wscale(&kv, &RcvSettings::defaults_for(&kv)), 7);
        let kv = k("6.18.0");
        assert_eq!(autotuned_wscale(&kv, &RcvSettings::defaults_for(&kv)), 10);
    }

    #[test]
    fn window_scaling_off_caps_at_64k() {
        let kv = k("6.1.0");
        let mut s = RcvSettings::defaults_for(&kv);
        s.window_scaling = false;
        let m = model(
            &kv,
            &s,
            &SocketRequest {
                so_rcvbuf: None,
                mss: 1448,
                measured_ratio: None,
            },
        );
        assert_eq!(m.rcv_wscale, 0);
        assert_eq!(m.window_clamp_bytes, 65_535);
    }

    #[test]
    fn rmem_max_caps_so_rcvbuf() {
        let kv = k("6.1.0");
        let m = model(
            &kv,
            &RcvSettings::defaults_for(&kv),
            &SocketRequest {
                so_rcvbuf: Some(16 << 20),
                mss: 1448,
                measured_ratio: None,
            },
        );
        assert_eq!(m.sk_rcvbuf_bytes, 2 * 212_992);
        let tiny = model(
            &kv,
            &RcvSettings::defaults_for(&kv),
            &SocketRequest {
                so_rcvbuf: Some(1),
                mss: 1448,
                measured_ratio: None,
            },
        );
        assert_eq!(tiny.sk_rcvbuf_bytes, SOCK_MIN_RCVBUF);
    }

    #[test]
    fn seed_ceiling_and_bdp() {
        let c = ceiling_bps(65_535, Duration::from_millis(30));
        assert!((c / 1e6 - 17.476).abs() < 0.001, "{c}");
        assert_eq!(bdp_bytes(10e9, Duration::from_millis(30)), 37_500_000);
        let plan = buffers_for_window(&k("6.6.33"), 37_500_000);
        assert_eq!(plan.buffer_bytes, 72 << 20);
        assert!(plan.tcp_rmem[2] as f64 * plan.window_fraction >= 37_500_000.0);
    }

    #[test]
    fn netflix_transfer_times() {
        let t = |w| {
            transfer_time(&TransferInput {
                bytes: 10 << 20,
                window_bytes: w,
                rtt: Duration::from_millis(137),
                link_bps: None,
                mss: 1448,
            })
            .total
            .as_secs_f64()
        };
        let old = t(65_536);
        let new = t(33_280);
        assert!((21.0..23.5).contains(&old), "{old}");
        assert!(new > 30.0 && (new / old - 1.97).abs() < 0.1, "{new}");
    }

    #[test]
    fn link_rate_bounds_rounds() {
        let e = transfer_time(&TransferInput {
            bytes: 100 << 20,
            window_bytes: 64 << 20,
            rtt: Duration::from_millis(10),
            link_bps: Some(100e6),
            mss: 1448,
        });
        // 100 MiB at 100 Mbit/s is at least 8.39 s.
        assert!(e.total.as_secs_f64() > 8.38, "{:?}", e.total);
        assert_eq!(e.steady_bps, 100e6);
    }
}
