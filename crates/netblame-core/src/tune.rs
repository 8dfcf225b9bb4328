//! The sysctl plan of `netblame tune`: from a path (rate, RTT), a profile and the current
//! values, the changes to make, each with its reason (the BDP arithmetic, the collapse-latency
//! compromise, never disabling autotuning). Pure: the source crate reads and writes the values.

use crate::kernel::KernelVersion;
pub use crate::units::rate_arg;
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::COLLAPSE_COMPROMISE_BYTES;
use crate::window::{bdp_bytes, buffers_for_window};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the plan optimizes for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Buffers for the BDP and never lower; no restart of slow start after idle.
    Throughput,
    /// Buffers raised to the BDP where below (never lowered), no restart of slow start after
    /// idle, `tcp_notsent_lowat` to keep send queues short.
    Latency,
    /// Buffers raised to the BDP where below; nothing lowered.
    #[default]
    Balanced,
}

impl Profile {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Throughput => "throughput",
            Profile::Latency => "latency",
            Profile::Balanced => "balanced",
        }
    }
}

/// What the plan is computed from.
#[derive(Debug, Clone)]
pub struct TuneInput {
    pub kernel: KernelVersion,
    /// Current raw values by dotted name (missing = this kernel has no such sysctl).
    pub current: BTreeMap<String, String>,
    pub rate_bps: f64,
    pub rtt: Duration,
    pub profile: Profile,
}

/// One sysctl change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanItem {
    pub name: String,
    /// The value now (whitespace-normalized); `None` when it could not be read.
    pub current: Option<String>,
    pub proposed: String,
    pub reason: String,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TunePlan {
    pub profile: Profile,
    pub kernel: String,
    pub rate_bits_per_second: f64,
    pub rtt_us: u64,
    pub bdp_bytes: u64,
    /// Share of buffer that becomes window on this kernel.
    pub window_fraction: f64,
    /// Buffer that allows a BDP-sized window, rounded up to a MiB.
    pub buffer_bytes: u64,
    /// The changes (values already right are not listed).
    pub changes: Vec<PlanItem>,
    /// Advice that no sysctl can carry (applications that set SO_RCVBUF, both ends, ...).
    pub notes: Vec<String>,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TuneError {
    #[error("--rtt must be more than zero")]
    ZeroRtt,
    #[error("--rate must be more than zero")]
    ZeroRate,
    #[error("the plan needs {name} = {value}, which the kernel would reject: {why}")]
    Rejected {
        name: String,
        value: String,
        why: String,
    },
}

/// The kernel's own default buffer maxima: floors for every proposal.
struct KernelBufferDefaults {
    tcp_rmem_max: u64,
    /// `tcp_wmem[2]`: 4 MiB upstream.
    tcp_wmem_max: u64,
    /// `rmem_max` and `wmem_max`: 212992 upstream.
    core_max: u64,
}

impl KernelBufferDefaults {
    fn of(kernel: &KernelVersion) -> KernelBufferDefaults {
        let r = crate::window::RcvSettings::defaults_for(kernel);
        KernelBufferDefaults {
            tcp_rmem_max: r.tcp_rmem[2],
            tcp_wmem_max: 4 << 20,
            core_max: r.rmem_max,
        }
    }
}

/// The largest window TCP can advertise: 65535 << 14.
pub const MAX_WINDOW_BYTES: u64 = 65_535 << 14;

fn normalize(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ints(v: Option<&String>) -> Option<Vec<i64>> {
    v?.split_whitespace().map(|t| t.parse().ok()).collect()
}

/// Checks a value as the kernel's sysctl handler would (ranges of `proc_dointvec_minmax` and
/// friends, ordered triples). `Err` says why the kernel would reject it.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let nums: Option<Vec<i64>> = parts.iter().map(|p| p.parse().ok()).collect();
    let int_max = i32::MAX as i64;
    let short = name.rsplit('.').next().unwrap_or(name);
    match short {
        "tcp_rmem" | "tcp_wmem" => {
            let Some(v) = nums.filter(|v| v.len() == 3) else {
                return Err("expects three integers: min default max".into());
            };
            if v.iter().any(|x| *x < 1 || *x > int_max) {
                return Err(format!("each value must be 1..={int_max}"));
            }
            if !(v[0] <= v[1] && v[1] <= v[2]) {
                return Err("min <= default <= max is required".into());
            }
            Ok(())
        }
        "tcp_mem" => match nums {
            Some(v) if v.len() == 3 && v.iter().all(|x| *x >= 0) => Ok(()),
            _ => Err("expects three page counts".into()),
        },
        "rmem_max" | "wmem_max" | "rmem_default" | "wmem_default" => match nums.as_deref() {
            Some([v]) if (2304..=int_max).contains(v) => Ok(()),
            _ => Err(format!("must be an integer 2304..={int_max}")),
        },
        "tcp_window_scaling"
        | "tcp_moderate_rcvbuf"
        | "tcp_sack"
        | "tcp_timestamps"
        | "tcp_slow_start_after_idle" => match nums.as_deref() {
            Some([0 | 1]) => Ok(()),
            Some([2]) if short == "tcp_timestamps" => Ok(()),
            _ => Err("must be 0 or 1".into()),
        },
        "tcp_notsent_lowat" => match nums.as_deref() {
            Some([v]) if (1..=u32::MAX as i64).contains(v) => Ok(()),
            _ => Err("must be an integer 1..=4294967295".into()),
        },
        _ => match nums {
            Some(v) if !v.is_empty() && v.iter().all(|x| (-int_max - 1..=int_max).contains(x)) => {
                Ok(())
            }
            Some(_) => Err(format!("out of the integer range ±{int_max}")),
            None => Ok(()),
        },
    }
}

/// Computes the plan.
pub fn plan(input: &TuneInput) -> Result<TunePlan, TuneError> {
    if input.rtt.is_zero() {
        return Err(TuneError::ZeroRtt);
    }
    if input.rate_bps.is_nan() || input.rate_bps <= 0.0 {
        return Err(TuneError::ZeroRate);
    }
    let bdp = bdp_bytes(input.rate_bps, input.rtt);
    let window = bdp.min(MAX_WINDOW_BYTES);
    let bp = buffers_for_window(&input.kernel, window);
    let need = bp.buffer_bytes;
    let arith = format!(
        "BDP = {} x {} / 8 = {} B; on {} a buffer becomes window x {:.2}, so {} B / {:.2} = {} B, rounded up to {}",
        BitRate(input.rate_bps),
        format_duration(input.rtt),
        bdp,
        input.kernel,
        bp.window_fraction,
        window,
        bp.window_fraction,
        (window as f64 / bp.window_fraction).ceil() as u64,
        Bytes(need)
    );
    let cur = |n: &str| input.current.get(n).map(|v| normalize(v));
    let mut changes: Vec<PlanItem> = Vec::new();
    let mut push = |name: &str, proposed: String, reason: String| {
        let current = cur(name);
        if current.as_deref() == Some(proposed.as_str()) {
            return;
        }
        changes.push(PlanItem {
            name: name.to_string(),
            current,
            proposed,
            reason,
        });
    };
    let one = |name: &str| ints(input.current.get(name)).and_then(|v| v.first().copied());

    if one("net.ipv4.tcp_window_scaling").is_some_and(|v| v != 1) {
        push(
            "net.ipv4.tcp_window_scaling",
            "1".into(),
            "without window scaling no window exceeds 65,535 B (RFC 7323)".into(),
        );
    }
    if one("net.ipv4.tcp_moderate_rcvbuf").is_some_and(|v| v != 1) {
        push(
            "net.ipv4.tcp_moderate_rcvbuf",
            "1".into(),
            "never disable receive-buffer autotuning: it grows buffers only for connections that need them".into(),
        );
    }
    for name in ["net.ipv4.tcp_sack", "net.ipv4.tcp_timestamps"] {
        if one(name) == Some(0) {
            push(
                name,
                "1".into(),
                "SACK and timestamps let TCP recover from loss and measure RTT on long, fast paths"
                    .into(),
            );
        }
    }
    // Buffer maxima: raised to what the path needs, never below what is set now nor below the
    // kernel's own default (a plan from a small path must not shrink a host's buffers).
    let floors = KernelBufferDefaults::of(&input.kernel);
    let mut rmem_above_compromise = None;
    for (name, dir, floor) in [
        ("net.ipv4.tcp_rmem", "receive", floors.tcp_rmem_max),
        ("net.ipv4.tcp_wmem", "send", floors.tcp_wmem_max),
    ] {
        let Some(v) = ints(input.current.get(name)).filter(|v| v.len() == 3) else {
            continue;
        };
        let have = v[2].max(0) as u64;
        if dir == "receive" && have > need.max(COLLAPSE_COMPROMISE_BYTES) {
            rmem_above_compromise = Some(have);
        }
        if need <= have {
            continue;
        }
        let target = need.max(floor);
        let default = (v[1].max(1) as u64).min(target);
        let min = (v[0].max(1) as u64).min(default);
        let reason = format!(
            "{arith}; autotuning may then grow {dir} buffers to {} (only connections that need it do)",
            Bytes(target)
        );
        push(name, format!("{min} {default} {target}"), reason);
    }
    for (name, opt) in [
        ("net.core.rmem_max", "SO_RCVBUF"),
        ("net.core.wmem_max", "SO_SNDBUF"),
    ] {
        let Some(have) = one(name) else { continue };
        if (have.max(0) as u64) < need {
            push(
                name,
                need.max(floors.core_max).to_string(),
                format!(
                    "{arith}; {name} caps what applications may ask with {opt} (autotuned sockets ignore it), so \
                     one that sets {opt} for this path can get a buffer this large"
                ),
            );
        }
    }
    if matches!(input.profile, Profile::Throughput | Profile::Latency)
        && one("net.ipv4.tcp_slow_start_after_idle") == Some(1)
    {
        push(
            "net.ipv4.tcp_slow_start_after_idle",
            "0".into(),
            "a persistent connection idle for one RTO restarts from a 10-segment window; at this BDP it takes round \
             trips to reach full rate again"
                .into(),
        );
    }
    if input.profile == Profile::Latency
        && one("net.ipv4.tcp_notsent_lowat").is_some_and(|v| v > 131_072)
    {
        push(
            "net.ipv4.tcp_notsent_lowat",
            "131072".into(),
            "keeps at most 128 KiB of unsent data in each socket so new writes (and priorities) are not stuck \
             behind a deep send queue"
                .into(),
        );
    }
    for item in &changes {
        validate(&item.name, &item.proposed).map_err(|why| TuneError::Rejected {
            name: item.name.clone(),
            value: item.proposed.clone(),
            why,
        })?;
    }
    let mut notes = vec![
        "apply the plan on both ends of the path: the receiver's tcp_rmem bounds the window, the sender's tcp_wmem \
         what it can keep in flight"
            .to_string(),
        "applications that set SO_RCVBUF/SO_SNDBUF turn autotuning off for their sockets and are capped by \
         rmem_max/wmem_max: prefer not setting them (Kafka: receive.buffer.bytes=-1 and send.buffer.bytes=-1)"
            .to_string(),
    ];
    if bdp > MAX_WINDOW_BYTES {
        notes.push(format!(
            "the BDP ({} B) exceeds the largest TCP window ({} B, scale 14): one connection cannot fill this path; \
             use parallel connections",
            bdp, MAX_WINDOW_BYTES
        ));
    }
    if input.kernel.at_least(6, 6, 0) {
        notes.push(
            "tcp_adv_win_scale is ignored from 6.6 on (the window follows the measured scaling ratio); the plan does not touch it"
                .to_string(),
        );
    }
    let compromise = need.max(COLLAPSE_COMPROMISE_BYTES);
    if let Some(have) = rmem_above_compromise.filter(|_| input.profile == Profile::Latency) {
        notes.push(format!(
            "tcp_rmem[2] is {}: a full queue that large makes tcp_collapse stall softirq for milliseconds (Cloudflare: \
             21 ms at 32 MiB, 3 ms at 2 MiB, settled on 4 MiB); this path needs {}, so max(need, 4 MiB) = {} would do; \
             tune never lowers a buffer: lower it by hand if latency spikes matter more than single-flow throughput",
            Bytes(have),
            Bytes(need),
            Bytes(compromise)
        ));
    } else if need > COLLAPSE_COMPROMISE_BYTES {
        notes.push(format!(
            "buffers above 4 MiB make tcp_collapse slower when a reader falls behind (Cloudflare); if latency spikes matter \
             more than single-flow throughput, keep tcp_rmem[2] near max(need, 4 MiB) = {}",
            Bytes(compromise)
        ));
    }
    Ok(TunePlan {
        profile: input.profile,
        kernel: input.kernel.to_string(),
        rate_bits_per_second: input.rate_bps,
        rtt_us: input.rtt.as_micros() as u64,
        bdp_bytes: bdp,
        window_fraction: bp.window_fraction,
        buffer_bytes: need,
        changes,
        notes,
    })
}

/// The plan as a `sysctl.d` file.
pub fn sysctl_d_file(plan: &TunePlan, command_line: &str) -> String {
    let mut out = format!(
        "# Written by netblame: {command_line}\n# Profile {}, BDP {} B ({} at {}), buffer {} B.\n",
        plan.profile.as_str(),
        plan.bdp_bytes,
        BitRate(plan.rate_bits_per_second),
        format_duration(Duration::from_micros(plan.rtt_us)),
        plan.buffer_bytes
    );
    for item in &plan.changes {
        out += &format!(
            "# was: {}\n{} = {}\n",
            item.current.as_deref().unwrap_or("(unknown)"),
            item.name,
            item.proposed
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(profile: Profile, rate: f64, rtt_ms: u64) -> TuneInput {
        let mut current = BTreeMap::new();
        for (k, v) in [
            ("net.ipv4.tcp_rmem", "4096\t131072\t33554432"),
            ("net.ipv4.tcp_wmem", "4096\t16384\t4194304"),
            ("net.core.rmem_max", "212992"),
            ("net.core.wmem_max", "212992"),
            ("net.ipv4.tcp_window_scaling", "1"),
            ("net.ipv4.tcp_moderate_rcvbuf", "1"),
            ("net.ipv4.tcp_slow_start_after_idle", "1"),
            ("net.ipv4.tcp_notsent_lowat", "4294967295"),
        ] {
            current.insert(k.to_string(), v.to_string());
        }
        TuneInput {
            kernel: "6.18.44".parse().unwrap(),
            current,
            rate_bps: rate,
            rtt: Duration::from_millis(rtt_ms),
            profile,
        }
    }

    fn get<'a>(p: &'a TunePlan, name: &str) -> Option<&'a PlanItem> {
        p.changes.iter().find(|c| c.name == name)
    }

    #[test]
    fn google_cloud_10g_30ms() {
        let p = plan(&input(Profile::Balanced, 10e9, 30)).unwrap();
        assert_eq!(p.bdp_bytes, 37_500_000);
        assert_eq!(p.buffer_bytes, 72 << 20);
        let r = get(&p, "net.ipv4.tcp_rmem").unwrap();
        assert_eq!(r.proposed, format!("4096 131072 {}", 72u64 << 20));
        assert_eq!(r.current.as_deref(), Some("4096 131072 33554432"));
        assert!(r.reason.contains("37500000"), "{}", r.reason);
        assert_eq!(
            get(&p, "net.core.rmem_max").unwrap().proposed,
            (72u64 << 20).to_string()
        );
        assert!(get(&p, "net.ipv4.tcp_slow_start_after_idle").is_none());
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("receive.buffer.bytes=-1")));
        let file = sysctl_d_file(&p, "netblame tune --rate 10g --rtt 30ms");
        assert_eq!(rate_arg(10e9), "10g");
        assert_eq!(rate_arg(1.5e9), "1500m");
        assert_eq!(rate_arg(12.5), "12.5bit");
        assert!(file.contains("net.ipv4.tcp_rmem = 4096 131072 75497472"));
    }

    #[test]
    fn latency_profile_never_lowers_rmem_and_says_why() {
        let p = plan(&input(Profile::Latency, 100e6, 20)).unwrap();
        assert!(get(&p, "net.ipv4.tcp_rmem").is_none(), "{:?}", p.changes);
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("Cloudflare") && n.contains("never lowers")));
        assert_eq!(
            get(&p, "net.ipv4.tcp_notsent_lowat").unwrap().proposed,
            "131072"
        );
        // Throughput never lowers.
        let p = plan(&input(Profile::Throughput, 100e6, 20)).unwrap();
        assert!(get(&p, "net.ipv4.tcp_rmem").is_none());
        assert_eq!(
            get(&p, "net.ipv4.tcp_slow_start_after_idle")
                .unwrap()
                .proposed,
            "0"
        );
    }

    #[test]
    fn never_proposes_maxima_below_defaults_or_current() {
        for profile in [Profile::Latency, Profile::Balanced, Profile::Throughput] {
            // A host whose maxima were lowered far below the kernel's defaults, and a path that
            // needs a little more than that: the proposal is the kernel's default, not the need.
            let mut i = input(profile, 100e6, 20);
            i.current
                .insert("net.ipv4.tcp_rmem".into(), "4096 65536 262144".into());
            i.current
                .insert("net.ipv4.tcp_wmem".into(), "4096 16384 262144".into());
            i.current
                .insert("net.core.rmem_max".into(), "100000".into());
            let p = plan(&i).unwrap();
            let max_of = |n: &str| -> u64 {
                get(&p, n)
                    .map(|c| c.proposed.split(' ').next_back().unwrap().parse().unwrap())
                    .unwrap()
            };
            assert_eq!(max_of("net.ipv4.tcp_rmem"), 32 << 20, "{profile:?}");
            assert_eq!(max_of("net.ipv4.tcp_wmem"), 4 << 20, "{profile:?}");
            assert!(max_of("net.core.rmem_max") >= 212_992);
            // Whatever the inputs, no maximum is proposed below its current value.
            for rate in [1e6, 100e6, 10e9] {
                for rtt in [1, 30, 300] {
                    let p = plan(&input(profile, rate, rtt)).unwrap();
                    for c in &p.changes {
                        let now: Option<u64> = c
                            .current
                            .as_deref()
                            .and_then(|v| v.split(' ').next_back()?.parse().ok());
                        let new: u64 = c.proposed.split(' ').next_back().unwrap().parse().unwrap();
                        if c.name.contains("mem") {
                            assert!(now.is_none_or(|n| new >= n), "{c:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn restores_autotuning_and_scaling() {
        let mut i = input(Profile::Balanced, 1e9, 10);
        i.current
            .insert("net.ipv4.tcp_moderate_rcvbuf".into(), "0".into());
        i.current
            .insert("net.ipv4.tcp_window_scaling".into(), "0".into());
        let p = plan(&i).unwrap();
        assert_eq!(
            get(&p, "net.ipv4.tcp_moderate_rcvbuf").unwrap().proposed,
            "1"
        );
        assert_eq!(
            get(&p, "net.ipv4.tcp_window_scaling").unwrap().proposed,
            "1"
        );
    }

    #[test]
    fn refuses_what_the_kernel_rejects() {
        // 100 Gbit/s x 10 s needs more than INT_MAX bytes... but the window caps at 1 GiB, whose
        // buffer (2 GiB) is beyond INT_MAX.
        let e = plan(&input(Profile::Throughput, 100e9, 10_000)).unwrap_err();
        assert!(matches!(e, TuneError::Rejected { .. }), "{e}");
        assert!(e.to_string().contains("reject"));
        assert!(validate("net.ipv4.tcp_rmem", "4096 8192 4096").is_err());
        assert!(validate("net.ipv4.tcp_rmem", "4096 131072").is_err());
        assert!(validate("net.core.rmem_max", "100").is_err());
        assert!(validate("net.ipv4.tcp_sack", "7").is_err());
        assert!(validate("net.ipv4.tcp_rmem", "4096 131072 6291456").is_ok());
        assert!(plan(&input(Profile::Balanced, 1e9, 0)).is_err());
    }
}
