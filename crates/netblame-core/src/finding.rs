//! The shared vocabulary of verdicts: what gets the blame (`Layer`), how bad (`Severity`), what
//! bounded a sender (`Limit`), and the `Finding` that carries evidence, arithmetic and a fix.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What gets the blame.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    Network,
    Kernel,
    Host,
    Application,
}

impl Layer {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Network => "network",
            Layer::Kernel => "kernel",
            Layer::Host => "host",
            Layer::Application => "application",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a finding matters. Ordered: `Info < Warning < Critical`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What bounded a sender over an interval.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Limit {
    /// The peer's advertised receive window (tcpi_rwnd_limited).
    #[serde(rename = "rwnd")]
    ReceiverWindow,
    /// The local send buffer (tcpi_sndbuf_limited).
    #[serde(rename = "sndbuf")]
    SendBuffer,
    /// The congestion window: the network.
    #[serde(rename = "cwnd")]
    CongestionWindow,
    /// The application had nothing to send (or did not read).
    #[serde(rename = "app")]
    Application,
    /// Loss recovery or retransmission-timeout backoff.
    #[serde(rename = "loss")]
    LossRecovery,
}

impl Limit {
    /// Short name used in tables, JSON and metric labels (`rwnd`, `sndbuf`, `cwnd`, `app`, `loss`:
    /// the names of the kernel's stopwatches); serde uses the same names (a test keeps them so).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ReceiverWindow => "rwnd",
            Limit::SendBuffer => "sndbuf",
            Limit::CongestionWindow => "cwnd",
            Limit::Application => "app",
            Limit::LossRecovery => "loss",
        }
    }

    /// Which layer a limit blames by default.
    pub fn layer(self) -> Layer {
        match self {
            Limit::ReceiverWindow => Layer::Application,
            Limit::SendBuffer => Layer::Host,
            Limit::CongestionWindow | Limit::LossRecovery => Layer::Network,
            Limit::Application => Layer::Application,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit of an evidence value; JSON keys end with it (`rtt_us`, `window_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Bytes,
    BitsPerSecond,
    Microseconds,
    Milliseconds,
    Seconds,
    Percent,
    Count,
    PerSecond,
    Ratio,
    /// A plain number with no unit (a window scale shift, a version component).
    Number,
}

impl Unit {
    /// The suffix used in JSON keys.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::BitsPerSecond => "bits_per_second",
            Unit::Microseconds => "us",
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
            Unit::Percent => "percent",
            Unit::Count => "count",
            Unit::PerSecond => "per_second",
            Unit::Ratio => "ratio",
            Unit::Number => "value",
        }
    }
}

/// One named number behind a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evidence {
    /// snake_case name, e.g. `window`, `rtt`, `rcv_wscale`.
    pub name: String,
    pub value: f64,
    pub unit: Unit,
}

impl Evidence {
    /// `name_unit` as used in JSON, e.g. `rtt_us`.
    pub fn key(&self) -> String {
        format!("{}_{}", self.name, self.unit.suffix())
    }

    /// The value formatted for humans with its unit.
    pub fn human(&self) -> String {
        use crate::units::{format_duration, BitRate, Bytes};
        use std::time::Duration;
        match self.unit {
            Unit::Bytes => format!(
                "{} ({} B)",
                Bytes(self.value as u64),
                crate::units::group_thousands(self.value as u64)
            ),
            Unit::BitsPerSecond => BitRate(self.value).to_string(),
            Unit::Microseconds => {
                format_duration(Duration::from_secs_f64(self.value.max(0.0) / 1e6))
            }
            Unit::Milliseconds => {
                format_duration(Duration::from_secs_f64(self.value.max(0.0) / 1e3))
            }
            Unit::Seconds => format_duration(Duration::from_secs_f64(self.value.max(0.0))),
            Unit::Percent => format!("{:.1}%", self.value),
            Unit::PerSecond => format!("{:.1}/s", self.value),
            Unit::Ratio => format!("{:.3}", self.value),
            Unit::Count | Unit::Number => {
                if self.value.fract() == 0.0 {
                    format!("{}", self.value as i64)
                } else {
                    format!("{:.2}", self.value)
                }
            }
        }
    }
}

/// A catalogued kind of finding. Every id is documented in `docs/findings.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FindingSpec {
    /// Stable kebab-case id: an API (JSON, metrics). Never rename silently.
    pub id: &'static str,
    pub layer: Layer,
    /// One line on what it means.
    pub title: &'static str,
}

/// A verdict with its evidence, its arithmetic and its fix.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    pub id: &'static str,
    pub layer: Layer,
    pub severity: Severity,
    /// What the finding is about (a connection, an interface, a sysctl), if not the whole host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// One line.
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// The arithmetic, e.g. "64 KiB window / 137 ms RTT = 3.8 Mbit/s ceiling".
    pub explanation: String,
    pub fix: String,
}

impl Finding {
    /// Starts a finding of a catalogued kind; the layer comes from the catalogue.
    pub fn new(spec: &'static FindingSpec, severity: Severity, summary: impl Into<String>) -> Self {
        Finding {
            id: spec.id,
            layer: spec.layer,
            severity,
            subject: None,
            summary: summary.into(),
            evidence: Vec::new(),
            explanation: String::new(),
            fix: String::new(),
        }
    }

    /// Adds one named number.
    pub fn evidence(mut self, name: &str, value: f64, unit: Unit) -> Self {
        self.evidence.push(Evidence {
            name: name.to_string(),
            value,
            unit,
        });
        self
    }

    /// Sets the arithmetic that leads to the verdict.
    pub fn explain(mut self, explanation: impl Into<String>) -> Self {
        self.explanation = explanation.into();
        self
    }

    /// Sets the fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }

    /// Sets what the finding is about.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Overrides the layer when the catalogue's default does not fit this case.
    pub fn blame(mut self, layer: Layer) -> Self {
        self.layer = layer;
        self
    }

    /// Looks up one evidence value by name.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.evidence
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_names_are_the_same_in_json_and_tables() {
        for l in [
            Limit::ReceiverWindow,
            Limit::SendBuffer,
            Limit::CongestionWindow,
            Limit::Application,
            Limit::LossRecovery,
        ] {
            let json = serde_json::to_value(l).unwrap();
            assert_eq!(json, l.as_str(), "{l:?}");
            assert_eq!(serde_json::from_value::<Limit>(json).unwrap(), l);
        }
    }

    const SPEC: FindingSpec = FindingSpec {
        id: "example-finding",
        layer: Layer::Kernel,
        title: "an example",
    };

    #[test]
    fn builds_and_serializes_with_units() {
        let f = Finding::new(&SPEC, Severity::Warning, "window too small")
            .evidence("rtt", 137_000.0, Unit::Microseconds)
            .explain("64 KiB / 137 ms = 3.8 Mbit/s")
            .fix("do not set SO_RCVBUF");
        assert_eq!(f.layer, Layer::Kernel);
        assert_eq!(f.evidence[0].key(), "rtt_us");
        assert_eq!(f.evidence[0].human(), "137 ms");
        assert_eq!(f.value("rtt"), Some(137_000.0));
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["id"], "example-finding");
        assert_eq!(json["severity"], "warning");
        assert_eq!(json["evidence"][0]["unit"], "microseconds");
    }

    #[test]
    fn ranking_puts_critical_first() {
        use crate::diagnose::rank;
        let mut v = vec![
            Finding::new(&SPEC, Severity::Info, "a"),
            Finding::new(&SPEC, Severity::Critical, "b"),
            Finding::new(&SPEC, Severity::Warning, "c"),
        ];
        rank(&mut v);
        let order: Vec<_> = v.iter().map(|f| f.severity).collect();
        assert_eq!(
            order,
            [Severity::Critical, Severity::Warning, Severity::Info]
        );
    }
}
