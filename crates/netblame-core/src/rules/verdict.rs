//! The one-line verdict a report opens with: which layer to blame, or "No TCP problem found".

use crate::finding::{Finding, Layer, Severity};
use serde::Serialize;

/// The headline of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The layer to blame; `None` when no finding reaches a warning.
    pub blame: Option<Layer>,
    /// The most severe finding's severity, if any.
    pub worst: Option<Severity>,
    /// "Blame the application: ..." or "No TCP problem found".
    pub headline: String,
}

/// Picks the layer to blame: the layer of the most severe findings; among layers with findings
/// at that severity, the one with the most of them (then the order network, kernel, host,
/// application). Info findings never blame.
pub fn verdict(findings: &[Finding]) -> Verdict {
    let worst = findings.iter().map(|f| f.severity).max();
    let Some(top) = worst.filter(|s| *s >= Severity::Warning) else {
        let notes = findings.len();
        return Verdict {
            blame: None,
            worst,
            headline: if notes == 0 {
                "No TCP problem found".to_string()
            } else {
                format!(
                    "No TCP problem found ({notes} note{} below)",
                    if notes == 1 { "" } else { "s" }
                )
            },
        };
    };
    let layers = [
        Layer::Network,
        Layer::Kernel,
        Layer::Host,
        Layer::Application,
    ];
    let count = |l: Layer| {
        findings
            .iter()
            .filter(|f| f.severity == top && f.layer == l)
            .count()
    };
    let layer = layers
        .into_iter()
        .max_by_key(|l| (count(*l), std::cmp::Reverse(*l as u8)))
        .unwrap_or(Layer::Host);
    let first = findings
        .iter()
        .find(|f| f.severity == top && f.layer == layer)
        .map(|f| f.summary.clone())
        .unwrap_or_default();
    let others = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .count()
        - 1;
    let more = match others {
        0 => String::new(),
        1 => " (and 1 more problem)".to_string(),
        n => format!(" (and {n} more problems)"),
    };
    Verdict {
        blame: Some(layer),
        worst,
        headline: format!("Blame the {layer}: {first}{more}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::FindingSpec;

    const APP: FindingSpec = FindingSpec {
        id: "a",
        layer: Layer::Application,
        title: "",
    };
    const NET: FindingSpec = FindingSpec {
        id: "n",
        layer: Layer::Network,
        title: "",
    };

    #[test]
    fn nothing_or_notes_is_no_problem() {
        assert_eq!(verdict(&[]).headline, "No TCP problem found");
        let v = verdict(&[Finding::new(&NET, Severity::Info, "x")]);
        assert_eq!(v.blame, None);
        assert!(v.headline.starts_with("No TCP problem found (1 note"));
    }

    #[test]
    fn most_severe_layer_is_blamed() {
        let v = verdict(&[
            Finding::new(&NET, Severity::Warning, "retransmits"),
            Finding::new(&APP, Severity::Critical, "receiver does not read"),
        ]);
        assert_eq!(v.blame, Some(Layer::Application));
        assert_eq!(
            v.headline,
            "Blame the application: receiver does not read (and 1 more problem)"
        );
    }
}
