//! Every finding id netblame can report. `docs/findings.md` documents each one; the test below
//! fails when the two disagree. Ids are an API (JSON, metrics): never rename one silently.

use crate::finding::FindingSpec;
use crate::{known_issues, rules};

/// Every catalogued finding, grouped by the module that produces it.
pub fn all() -> impl Iterator<Item = &'static FindingSpec> {
    let groups: [&'static [FindingSpec]; 7] = [
        rules::shared::FINDINGS,
        rules::host::FINDINGS,
        rules::connection::FINDINGS,
        rules::window::FINDINGS,
        rules::probe::FINDINGS,
        rules::transfer::FINDINGS,
        rules::kernel_events::FINDINGS,
    ];
    known_issues::findings().chain(groups.into_iter().flatten())
}

/// The catalogued spec of `id`, for rules building findings. Ids are literals in the rule
/// modules and every rule is exercised by its tests, so an unknown id is a programming error.
pub fn spec(id: &str) -> &'static FindingSpec {
    lookup(id).unwrap_or_else(|| panic!("finding id {id} is not in the catalogue"))
}

/// Looks a finding up by id.
pub fn lookup(id: &str) -> Option<&'static FindingSpec> {
    all().find(|s| s.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn documented_ids() -> BTreeSet<String> {
        let doc = include_str!("../../../docs/findings.md");
        doc.lines()
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
}
