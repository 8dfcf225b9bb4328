//! Saving and loading runs as HdrHistogram interval logs (the format of HdrHistogram's
//! `HistogramLogWriter`, readable by its `HistogramLogProcessor`): one tagged histogram per
//! target and window, latencies in nanoseconds. netblame adds one comment line per target with
//! what a histogram cannot hold (probes sent, late, failed; kind, interval, timeout), so a
//! loaded run shows loss too.

use crate::report::{histogram_values_us, new_histogram, summarize, TargetRun, HIST_MAX_NS};
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use netblame_core::observe::latency::{LatencySummary, Measures, TargetLatency, WindowStats};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

const META: &str = "netblame-target ";

fn tag_of(label: &str) -> String {
    label.replace([',', ' ', '\r', '\n'], "_")
}

/// Writes every target's run as an interval log.
pub fn save(path: &Path, runs: &[TargetRun]) -> io::Result<()> {
    let mut out = Vec::new();
    let start = runs.first().map(|r| r.started_unix_ms).unwrap_or(0);
    let mut ser = V2DeflateSerializer::new();
    {
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment("netblame probe: latencies in nanoseconds, one tagged histogram per target and window")
            .with_start_time(UNIX_EPOCH + Duration::from_millis(start))
            .with_base_time(UNIX_EPOCH + Duration::from_millis(start))
            .with_max_value_divisor(1e6);
        for r in runs {
            let l = &r.latency;
            builder.add_comment(&format!(
                "{META}tag={} kind={} measures={} sent={} late={} failed={} interval_us={} timeout_us={} window_us={}",
                tag_of(&l.target),
                l.kind,
                match l.measures {
                    Measures::Connect => "connect",
                    Measures::RoundTrip => "round-trip",
                },
                l.summary.sent,
                l.summary.late,
                l.summary.failed,
                l.interval_us,
                l.timeout_us,
                r.window.as_micros()
            ));
        }
        let mut w = builder.begin_log_with(&mut out, &mut ser)?;
        for r in runs {
            let tag = tag_of(&r.latency.target);
            let win_ns = (r.window.as_nanos() as u64).max(1);
            let mut per: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
            for &(at, ns) in &r.replies_ns {
                let _ = per
                    .entry(at / win_ns)
                    .or_insert_with(new_histogram)
                    .record(ns.clamp(1, HIST_MAX_NS));
            }
            for (i, h) in per {
                w.write_histogram(
                    &h,
                    Duration::from_nanos(i * win_ns),
                    Duration::from_nanos(win_ns),
                    Tag::new(&tag),
                )
                .map_err(|e| io::Error::other(format!("writing the histogram log: {e}")))?;
            }
        }
    }
    let mut f = std::fs::File::create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
    f.write_all(&out)
}

#[derive(Default)]
struct Meta {
    kind: String,
    measures: Option<Measures>,
    sent: Option<u64>,
    late: u64,
    failed: u64,
    interval_us: u64,
    timeout_us: u64,
}

fn parse_meta(text: &str) -> BTreeMap<String, Meta> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('#').and_then(|l| l.strip_prefix(META)) else {
            continue;
        };
        let mut m = Meta::default();
        let mut tag = String::new();
        for kv in rest.split_whitespace() {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let n = v.parse::<u64>().ok();
            match k {
                "tag" => tag = v.to_string(),
                "kind" => m.kind = v.to_string(),
                "measures" => {
                    m.measures = Some(if v == "connect" {
                        Measures::Connect
                    } else {
                        Measures::RoundTrip
                    })
                }
                "sent" => m.sent = n,
                "late" => m.late = n.unwrap_or(0),
                "failed" => m.failed = n.unwrap_or(0),
                "interval_us" => m.interval_us = n.unwrap_or(0),
                "timeout_us" => m.timeout_us = n.unwrap_or(0),
                _ => {}
            }
        }
        out.insert(tag, m);
    }
    out
}

/// Loads an interval log (netblame's, or any HdrHistogram interval log: untagged histograms
/// become one target named after the file). Targets are labelled `label:tag`.
pub fn load(path: &Path, label: &str) -> io::Result<Vec<TargetLatency>> {
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let meta = parse_meta(&text);
    let mut de = Deserializer::new();
    let mut per: BTreeMap<String, (Histogram<u64>, Vec<WindowStats>)> = BTreeMap::new();
    let mut intervals = 0;
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry.map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not an HdrHistogram interval log ({e:?})",
                    path.display()
                ),
            )
        })?;
        let LogEntry::Interval(iv) = entry else {
            continue;
        };
        let raw = base64_decode(iv.encoded_histogram()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: bad base64 in a histogram", path.display()),
            )
        })?;
        let h: Histogram<u64> = de.deserialize(&mut &raw[..]).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: bad histogram: {e:?}", path.display()),
            )
        })?;
        intervals += 1;
        let tag = iv.tag().map(|t| t.as_str().to_string()).unwrap_or_default();
        let (total, windows) = per
            .entry(tag)
            .or_insert_with(|| (new_histogram(), Vec::new()));
        let _ = total.add(&h);
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        windows.push(WindowStats {
            start_us: iv.start_timestamp().as_micros() as u64,
            duration_us: iv.duration().as_micros() as u64,
            sent: h.len(),
            received: h.len(),
            lost: 0,
            loss_percent: 0.0,
            p50_us: q(0.5),
            p99_us: q(0.99),
            max_us: h.max() as f64 / 1000.0,
        });
    }
    if intervals == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: no histograms in this file (is it an HdrHistogram interval log?)",
                path.display()
            ),
        ));
    }
    Ok(per
        .into_iter()
        .map(|(tag, (h, windows))| {
            let m = meta.get(&tag);
            let sent = m.and_then(|m| m.sent).unwrap_or(h.len()).max(h.len());
            let summary: LatencySummary =
                summarize(&h, sent, m.map_or(0, |m| m.late), m.map_or(0, |m| m.failed));
            let name = if tag.is_empty() {
                label.to_string()
            } else {
                format!("{label}:{tag}")
            };
            TargetLatency {
                target: name,
                kind: m.map(|m| m.kind.clone()).unwrap_or_else(|| "loaded".into()),
                measures: m.and_then(|m| m.measures).unwrap_or(Measures::RoundTrip),
                interval_us: m.map_or(0, |m| m.interval_us),
                timeout_us: m.map_or(0, |m| m.timeout_us),
                summary,
                values: histogram_values_us(&h),
                connect_values: Vec::new(),
                windows,
                samples: Vec::new(),
            }
        })
        .collect())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}
