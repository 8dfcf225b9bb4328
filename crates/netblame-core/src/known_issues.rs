//! Known TCP receive-window issues by kernel version (reference: kernel-tcp.md section 1), as
//! data. Each entry is also a catalogued finding id.
//!
//! Ranges are upstream version numbers; distro kernels may carry backports, so every statement
//! built from this table carries [`crate::BACKPORT_CAVEAT`].

use crate::finding::{Finding, FindingSpec, Layer, Severity};
use crate::kernel::{KernelVersion, BACKPORT_CAVEAT};
use serde::Serialize;

/// A half-open range of upstream versions `[from, until)`; `until = None` means "not fixed yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct VersionRange {
    pub from: (u32, u32, u32),
    pub until: Option<(u32, u32, u32)>,
}

impl VersionRange {
    /// True when `v` lies in the range.
    pub fn contains(&self, v: &KernelVersion) -> bool {
        v.triple() >= self.from && self.until.is_none_or(|u| v.triple() < u)
    }
}

const fn range(from: (u32, u32, u32), until: (u32, u32, u32)) -> VersionRange {
    VersionRange {
        from,
        until: Some(until),
    }
}

/// When an issue matters for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Only for sockets whose application set SO_RCVBUF (autotuning off).
    FixedRcvbuf,
    /// For every socket.
    Always,
}

/// One known issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KnownIssue {
    /// The finding this issue reports as (id, kernel layer, title).
    pub spec: FindingSpec,
    pub affected: &'static [VersionRange],
    /// Upstream versions that carry the fix, for the advice.
    pub fixed_in: &'static [&'static str],
    /// The commits involved.
    pub commits: &'static [&'static str],
    pub trigger: Trigger,
    /// What it does to a connection, in one or two sentences.
    pub effect: &'static str,
}

/// The table.
pub const KNOWN_ISSUES: &[KnownIssue] = &[
    KnownIssue {
        spec: kernel_spec("kernel-scaling-ratio-6.6", "initial scaling_ratio about 0.25 halves the window of sockets that set SO_RCVBUF"),
        affected: &[
            range((6, 6, 0), (6, 6, 33)),
            range((6, 7, 0), (6, 8, 0)),
            range((6, 8, 0), (6, 8, 12)),
            range((6, 9, 0), (6, 9, 3)),
        ],
        fixed_in: &["6.10", "6.9.3", "6.8.12", "6.6.33"],
        commits: &[
            "dfa2f0483360 tcp: get rid of sysctl_tcp_adv_win_scale (v6.6)",
            "697a6c8cec03 tcp: increase the default TCP scaling ratio",
        ],
        trigger: Trigger::FixedRcvbuf,
        effect: "window = sk_rcvbuf * 65/256 instead of sk_rcvbuf/2: SO_RCVBUF=64 KiB advertises about 33 KB, \
                 halving throughput on long paths (the Netflix incident)",
    },
    KnownIssue {
        spec: kernel_spec("kernel-clamp-initial-ratio", "with SO_RCVBUF the window clamp stays at the initial scaling ratio for the socket's life"),
        affected: &[
            range((6, 6, 0), (6, 6, 45)),
            range((6, 7, 0), (6, 10, 0)),
            range((6, 10, 0), (6, 10, 4)),
        ],
        fixed_in: &["6.11", "6.10.4", "6.6.45 (completed in 6.6.48)"],
        commits: &[
            "05f76b2d634e tcp: Adjust clamping window for applications specifying SO_RCVBUF",
            "a2cbb1603943 tcp: Update window clamping condition",
        ],
        trigger: Trigger::FixedRcvbuf,
        effect: "the largest window ever advertised is fixed at win_from_space(sk_rcvbuf) with the initial ratio, \
                 even when the measured ratio would allow more",
    },
    KnownIssue {
        spec: kernel_spec("kernel-rcvbuf-checks-6.17", "stronger sk_rcvbuf checks reported to cause zero-window stalls"),
        affected: &[VersionRange {
            from: (6, 17, 0),
            until: None,
        }],
        fixed_in: &[],
        commits: &["1d2fbaad7cd8 tcp: stronger sk_rcvbuf checks (v6.17)"],
        trigger: Trigger::FixedRcvbuf,
        effect: "receivers with small fixed buffers may advertise a zero window and stall; watch for \
                 receiver-zero-window findings on connections that set SO_RCVBUF",
    },
    KnownIssue {
        spec: kernel_spec("kernel-rcvq-space-stale", "rcvq_space not adjusted after the scaling ratio is updated (autotuning grows slowly)"),
        affected: &[
            range((6, 6, 0), (6, 6, 80)),
            range((6, 7, 0), (6, 14, 0)),
        ],
        fixed_in: &["6.14", "6.6.80"],
        commits: &["f5da7c45188e tcp: adjust rcvq_space after updating scaling ratio"],
        trigger: Trigger::Always,
        effect: "receive-buffer autotuning can lag behind the real need for the first round trips",
    },
];

const fn kernel_spec(id: &'static str, title: &'static str) -> FindingSpec {
    FindingSpec {
        id,
        layer: Layer::Kernel,
        title,
    }
}

/// The catalogue entries for the table (all blame the kernel).
pub fn findings() -> impl Iterator<Item = &'static FindingSpec> {
    KNOWN_ISSUES.iter().map(|i| &i.spec)
}

impl KnownIssue {
    /// The finding for `kernel`: the effect, the commits and the backport caveat as the
    /// explanation; `scope` says which sockets it affects.
    pub fn finding(
        &'static self,
        kernel: &KernelVersion,
        severity: Severity,
        scope: &str,
    ) -> Finding {
        let fix = if self.fixed_in.is_empty() {
            "stop setting SO_RCVBUF (no upstream kernel fix yet)".to_string()
        } else {
            format!(
                "stop setting SO_RCVBUF, or run a kernel with the fix (fixed in {})",
                self.fixed_in.join(", ")
            )
        };
        Finding::new(
            &self.spec,
            severity,
            format!("kernel {kernel}: {}", self.spec.title),
        )
        .subject(format!("kernel {kernel}"))
        .explain(format!(
            "{}; affects {scope} ({}). {BACKPORT_CAVEAT}",
            self.effect,
            self.commits.join("; ")
        ))
        .fix(fix)
    }
}

/// The known issues that affect `kernel` (by upstream number).
pub fn affecting(kernel: &KernelVersion) -> impl Iterator<Item = &'static KnownIssue> + '_ {
    KNOWN_ISSUES
        .iter()
        .filter(move |i| i.affected.iter().any(|r| r.contains(kernel)))
}

/// The issue with this id.
pub fn by_id(id: &str) -> Option<&'static KnownIssue> {
    KNOWN_ISSUES.iter().find(|i| i.spec.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &str) -> Vec<&'static str> {
        affecting(&v.parse().unwrap()).map(|i| i.spec.id).collect()
    }

    #[test]
    fn netflix_kernel_is_affected_and_fixed_ones_are_not() {
        assert_eq!(
            ids("6.6.10-amd64"),
            [
                "kernel-scaling-ratio-6.6",
                "kernel-clamp-initial-ratio",
                "kernel-rcvq-space-stale"
            ]
        );
        assert_eq!(ids("6.5.13"), Vec::<&str>::new());
        assert!(!ids("6.6.33").contains(&"kernel-scaling-ratio-6.6"));
        assert!(ids("6.6.33").contains(&"kernel-clamp-initial-ratio"));
        assert!(!ids("6.6.48").contains(&"kernel-clamp-initial-ratio"));
        assert!(ids("6.7.5").contains(&"kernel-scaling-ratio-6.6"));
        assert!(ids("6.8.11").contains(&"kernel-scaling-ratio-6.6"));
        assert!(!ids("6.8.12").contains(&"kernel-scaling-ratio-6.6"));
        assert!(ids("6.9.2").contains(&"kernel-scaling-ratio-6.6"));
        assert!(!ids("6.9.3").contains(&"kernel-scaling-ratio-6.6"));
        assert!(ids("6.10.3").contains(&"kernel-clamp-initial-ratio"));
        assert!(!ids("6.10.4").contains(&"kernel-clamp-initial-ratio"));
        assert!(ids("6.18.44-fc-v669").contains(&"kernel-rcvbuf-checks-6.17"));
        assert_eq!(ids("4.19.0"), Vec::<&str>::new());
    }

    #[test]
    fn every_issue_has_a_range_and_a_kernel_layer() {
        for issue in KNOWN_ISSUES {
            assert!(!issue.affected.is_empty(), "{}", issue.spec.id);
            assert_eq!(issue.spec.layer, Layer::Kernel);
        }
    }
}
