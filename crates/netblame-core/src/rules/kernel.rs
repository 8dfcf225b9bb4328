//! Kernel known issues: what the running kernel version is known to do to windows and buffers
//! (the catalogue in [`crate::known_issues`]), and sysctls this kernel ignores. Issues that
//! affect only sockets with a fixed SO_RCVBUF are reported with such a socket
//! (`rules::buffers::judge_model`), never for a host where no socket sets it.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::kernel::BACKPORT_CAVEAT;
use crate::known_issues::{self, Trigger};
use crate::observe::host::HostSnapshot;

/// `tcp_adv_win_scale` was changed on a kernel that ignores it.
pub const ADV_WIN_SCALE_IGNORED: FindingSpec = FindingSpec {
    id: "adv-win-scale-ignored",
    layer: Layer::Kernel,
    title: "net.ipv4.tcp_adv_win_scale was changed, but this kernel ignores it",
};

/// Findings this module builds (besides the known issues, each by its own id).
pub const FINDINGS: &[&FindingSpec] = &[&ADV_WIN_SCALE_IGNORED];

/// The known issues that affect every connection on this host's kernel, and an ignored
/// `tcp_adv_win_scale`.
pub fn judge_host(snap: &HostSnapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(kernel) = &snap.kernel else {
        return out;
    };
    if kernel.at_least(6, 6, 0) {
        if let Some(a) = snap
            .sysctl_int("net.ipv4.tcp_adv_win_scale")
            .filter(|a| *a != 1)
        {
            out.push(
                Finding::new(
                    &ADV_WIN_SCALE_IGNORED,
                    Severity::Warning,
                    format!("tcp_adv_win_scale={a} has no effect on {kernel}"),
                )
                .evidence("tcp_adv_win_scale", a as f64, Unit::Number)
                .explain(format!(
                    "from 6.6 (dfa2f0483360) the window is sk_rcvbuf x scaling_ratio / 256, measured per \
                     connection; tcp_adv_win_scale is read by nothing. {BACKPORT_CAVEAT}"
                ))
                .fix("size buffers with tcp_rmem instead (netblame tune); drop the tcp_adv_win_scale setting to avoid confusion"),
            );
        }
    }
    for issue in known_issues::affecting(kernel).filter(|i| i.trigger == Trigger::Always) {
        out.push(issue.finding(kernel, Severity::Warning, "every connection"));
    }
    out
}
