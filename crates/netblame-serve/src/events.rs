//! The findings event log: one JSON object per line when a finding is raised, updated (its
//! severity or summary changed) or cleared, with the finding and its evidence, so a rare spike
//! leaves a record; plus the agent's own events (`started`, `reloaded`, `config-rejected`,
//! `stopped`). Written to a file (`--events FILE`, appended) or to standard output.
//!
//! ```json
//! {"schema_version":1,"ts":"2026-12-06T15:04:05.123Z","unix_ms":1796569445123,"event":"raised","id":"listen-overflows","layer":"application","severity":"critical","connections":0,"finding":{...}}
//! ```

use crate::judge::JudgedFinding;
use crate::metrics::FindingSeries;
use netblame_core::json::Versioned;
use netblame_core::{Layer, Severity};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-12-06T15:04:05.123Z` for a time since the Unix epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// One line of the event log (with `schema_version`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct EventLine {
    /// When it was written: RFC 3339, UTC, milliseconds.
    pub ts: String,
    /// The same instant in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// `raised`, `updated`, `cleared` (a finding), or the agent's own `started`, `reloaded`,
    /// `config-rejected`, `scan-failed`, `stopped`.
    pub event: String,
    /// The event's own fields: for a finding `id`, `layer`, `severity`, `connections`,
    /// `finding` (and `previous_severity` when updated).
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

/// Where events go.
pub struct EventLog(Mutex<Box<dyn Write + Send>>);

impl EventLog {
    /// Events to standard output.
    pub fn stdout() -> EventLog {
        EventLog(Mutex::new(Box::new(std::io::stdout())))
    }

    /// Events appended to `path` (created if missing).
    pub fn file(path: &std::path::Path) -> std::io::Result<EventLog> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(EventLog(Mutex::new(Box::new(f))))
    }

    /// Writes one event: `event` plus `fields` (an object), stamped now. A write error (disk
    /// full, closed pipe) is reported on stderr once per event and never stops the agent.
    pub fn write(&self, event: &str, fields: Value) {
        let now = SystemTime::now();
        let line = EventLine {
            ts: rfc3339(now),
            unix_ms: now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            event: event.to_string(),
            fields: match fields {
                Value::Object(f) => f,
                _ => serde_json::Map::new(),
            },
        };
        let line = serde_json::to_string(&Versioned::new(line)).unwrap_or_default();
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(w, "{line}").and_then(|_| w.flush()) {
            eprintln!("netblame serve: cannot write the event log: {e}");
        }
    }
}

/// Remembers which findings are active and every series ever raised, turns each scan's findings
/// into raised/updated/cleared events and into the `netblame_finding_*` series.
#[derive(Debug, Default)]
pub struct Tracker {
    active: BTreeMap<&'static str, JudgedFinding>,
    /// (id, layer, severity) -> (active, times raised).
    series: BTreeMap<(&'static str, Layer, Severity), (bool, u64)>,
}

fn fields(f: &JudgedFinding) -> Value {
    json!({
        "id": f.finding.id,
        "layer": f.finding.layer,
        "severity": f.finding.severity,
        "connections": f.connections,
        "finding": f.finding,
    })
}

impl Tracker {
    /// A tracker with nothing active.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Takes the findings of a scan; writes their events to `log`.
    pub fn update(&mut self, findings: &[JudgedFinding], log: &EventLog) {
        let mut now: BTreeMap<&'static str, JudgedFinding> = BTreeMap::new();
        for f in findings {
            now.entry(f.finding.id).or_insert_with(|| f.clone());
        }
        for (id, old) in &self.active {
            if !now.contains_key(id) {
                log.write("cleared", fields(old));
            }
        }
        for (id, f) in &now {
            match self.active.get(id) {
                None => log.write("raised", fields(f)),
                Some(old)
                    if old.finding.severity != f.finding.severity
                        || old.finding.summary != f.finding.summary =>
                {
                    let mut v = fields(f);
                    v["previous_severity"] = json!(old.finding.severity);
                    log.write("updated", v);
                }
                Some(_) => {}
            }
        }
        for s in self.series.values_mut() {
            s.0 = false;
        }
        for f in now.values() {
            let key = (f.finding.id, f.finding.layer, f.finding.severity);
            let was_active_same = self
                .active
                .get(f.finding.id)
                .is_some_and(|o| o.finding.severity == f.finding.severity);
            let e = self.series.entry(key).or_insert((false, 0));
            e.0 = true;
            if !was_active_same {
                e.1 += 1;
            }
        }
        self.active = now;
    }

    /// Every series raised since the start, with its state.
    pub fn series(&self) -> Vec<FindingSeries> {
        self.series
            .iter()
            .map(|((id, layer, severity), (active, raised))| FindingSeries {
                id,
                layer: *layer,
                severity: *severity,
                active: *active,
                raised: *raised,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_709_251_199_999);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.999Z");
    }
}
