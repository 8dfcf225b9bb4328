//! Every finding id netblame can report, gathered from the rule modules' `FINDINGS` (each
//! spec is a `pub const` its rules use directly). `docs/findings.md` documents each one; the
//! tests below fail when the two disagree. Ids are an API (JSON, metrics): never rename one
//! silently.

use crate::finding::{FindingSpec, Unit};
use crate::known_issues;
use crate::rules::{
    bound, buffers, host, kernel, kernel_events, latency, loss, phases, receiver, sender, setup,
    timeout,
};

/// Every catalogued finding.
pub fn all() -> impl Iterator<Item = &'static FindingSpec> {
    let groups: [&'static [&'static FindingSpec]; 11] = [
        sender::FINDINGS,
        receiver::FINDINGS,
        loss::FINDINGS,
        setup::FINDINGS,
        buffers::FINDINGS,
        host::FINDINGS,
        kernel::FINDINGS,
        kernel_events::FINDINGS,
        latency::FINDINGS,
        phases::FINDINGS,
        timeout::FINDINGS,
    ];
    known_issues::findings().chain(groups.into_iter().flatten().copied())
}

/// Looks a finding up by id (for tools that read ids back, e.g. a saved report).
pub fn lookup(id: &str) -> Option<&'static FindingSpec> {
    all().find(|s| s.id == id)
}

/// A threshold a rule uses, for the table in `docs/findings.md` (a test keeps them equal).
#[derive(Debug, Clone, Copy)]
pub struct Threshold {
    /// `module::CONSTANT`.
    pub name: &'static str,
    pub value: f64,
    pub unit: Unit,
}

macro_rules! thresholds {
    ($($module:ident :: $name:ident $(as $conv:expr)?, $unit:ident;)*) => {
        /// Every threshold of every rule.
        pub fn thresholds() -> Vec<Threshold> {
            vec![$(Threshold {
                name: concat!(stringify!($module), "::", stringify!($name)),
                value: thresholds!(@v $module::$name $(, $conv)?),
                unit: Unit::$unit,
            }),*]
        }
    };
    (@v $c:path) => { $c as f64 };
    (@v $c:path, $conv:expr) => { $conv($c) };
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

thresholds! {
    bound::RWND_HOLDS_SHARE, Ratio;
    bound::RWND_SPLIT_SHARE, Ratio;
    bound::CEILING_REACHED_SHARE, Ratio;
    sender::NOTABLE_SHARE, Ratio;
    bound::BLAME_SHARE, Ratio;
    sender::IDLE_BUSY_SHARE, Ratio;
    bound::MIN_BULK_BYTES, Bytes;
    receiver::BACKLOG_SHARE, Ratio;
    receiver::MEAN_BACKLOG_SHARE, Ratio;
    receiver::FULL_BUFFER_SHARE, Ratio;
    receiver::STALL_US, Microseconds;
    receiver::STALL_SHARE, Ratio;
    receiver::STALL_TOTAL_US, Microseconds;
    receiver::PERSISTENT_BACKLOG_BYTES, Bytes;
    receiver::CPU_BOUND_SHARE, Ratio;
    receiver::CEILING_HEADROOM, Ratio;
    loss::LOSS_NOTE_SHARE, Ratio;
    loss::LOSS_WARN_SHARE, Ratio;
    loss::MIN_LOSS_EVENTS, Count;
    loss::MIN_SEGMENTS_FOR_RATE, Count;
    loss::RETRANS_WARN_SHARE, Ratio;
    loss::ECN_WARN_SHARE, Ratio;
    loss::BLOAT_RTT_RATIO, Ratio;
    loss::BLOAT_MIN_DELAY as secs, Seconds;
    loss::SILENT_MIN_RETRANSMISSIONS, Count;
    setup::SYN_RTO as secs, Seconds;
    setup::SYN_CRITICAL_SHARE, Ratio;
    setup::SYN_CRITICAL_MIN_CONNECTS, Count;
    buffers::WSCALE_GAP, Number;
    buffers::FIXED_WSCALE, Number;
    buffers::CLAMP_NEAR_RATE, Ratio;
    timeout::TOLERANCE as secs, Seconds;
    host::TX_SKEW_SHARE, Ratio;
    host::MIN_PACKETS_FOR_SKEW, Count;
    kernel_events::NET_RX_STALL_US, Microseconds;
    kernel_events::NET_RX_STALL_CRITICAL_US, Microseconds;
    kernel_events::DROPS_WARNING_COUNT, Count;
    kernel_events::RETRANSMITS_MIN, Count;
    kernel_events::RETRANSMITS_CONCENTRATED_SHARE, Ratio;
    kernel_events::COLLAPSE_STALL_US, Microseconds;
    latency::PROMPT_CONNECT_FACTOR, Ratio;
    latency::PROMPT_CONNECT_SLACK_US, Microseconds;
    phases::MIN_PHASED_REPLIES, Count;
    phases::MIN_TAIL_PROBES, Count;
    phases::TAIL_FACTOR, Ratio;
    phases::TAIL_MIN_EXCESS_US, Microseconds;
    phases::PHASE_SHARE, Ratio;
    phases::WARN_EXCESS_US, Microseconds;
}

/// The thresholds as the markdown table `docs/findings.md` carries.
pub fn thresholds_table() -> String {
    let mut s = String::from("| constant | value | unit |\n|---|---|---|\n");
    for t in thresholds() {
        s += &format!("| `{}` | {} | {} |\n", t.name, t.value, t.unit.suffix());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const DOC: &str = include_str!("../../../docs/findings.md");

    fn documented_ids() -> BTreeSet<String> {
        DOC.lines()
            .filter_map(|l| l.strip_prefix("### `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn ids_are_unique_and_kebab_case() {
        let mut seen = BTreeSet::new();
        for spec in all() {
            assert!(seen.insert(spec.id), "duplicate finding id {}", spec.id);
            assert!(
                spec.id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
                "finding id {} is not kebab-case",
                spec.id
            );
        }
    }

    #[test]
    fn code_and_docs_agree() {
        let code: BTreeSet<String> = all().map(|s| s.id.to_string()).collect();
        let docs = documented_ids();
        let undocumented: Vec<_> = code.difference(&docs).collect();
        let stale: Vec<_> = docs.difference(&code).collect();
        assert!(
            undocumented.is_empty(),
            "ids missing from docs/findings.md: {undocumented:?}"
        );
        assert!(
            stale.is_empty(),
            "docs/findings.md documents ids the code lacks: {stale:?}"
        );
    }

    #[test]
    fn the_thresholds_table_is_the_constants() {
        let table = thresholds_table();
        assert!(
            DOC.contains(&table),
            "docs/findings.md must carry this thresholds table (generated from the constants):\n{table}"
        );
    }
}
