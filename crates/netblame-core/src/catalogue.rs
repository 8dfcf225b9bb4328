//! Every finding id netblame can report, gathered from the rule modules' `FINDINGS` (each
//! spec is a `pub const` its rules use directly). `docs/findings.md` documents each one; the
//! tests below fail when the two disagree. Ids are an API (JSON, metrics): never rename one
//! silently.

use crate::finding::FindingSpec;
use crate::known_issues;
use crate::rules::{
    buffers, host, kernel, kernel_events, latency, loss, receiver, sender, setup, timeout,
};

/// Every catalogued finding.
pub fn all() -> impl Iterator<Item = &'static FindingSpec> {
    let groups: [&'static [&'static FindingSpec]; 10] = [
        sender::FINDINGS,
        receiver::FINDINGS,
        loss::FINDINGS,
        setup::FINDINGS,
        buffers::FINDINGS,
        host::FINDINGS,
        kernel::FINDINGS,
        kernel_events::FINDINGS,
        latency::FINDINGS,
        timeout::FINDINGS,
    ];
    known_issues::findings().chain(groups.into_iter().flatten().copied())
}

/// Looks a finding up by id (for tools that read ids back, e.g. a saved report).
pub fn lookup(id: &str) -> Option<&'static FindingSpec> {
    all().find(|s| s.id == id)
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
        let table = crate::rules::thresholds_table();
        assert!(
            DOC.contains(&table),
            "docs/findings.md must carry this thresholds table (generated from the constants):\n{table}"
        );
    }
}
