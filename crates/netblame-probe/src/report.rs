//! From recorded probes to netblame-core's [`TargetLatency`]: the HDR histogram, the ping-style
//! summary with percentiles, per-window loss and latency, spikes, and schedule accuracy.

use crate::config::ProbeConfig;
use crate::schedule::ScheduleStats;
use crate::state::{Ended, HttpTimes, Slot};
use crate::target::{ProbeKind, Target};
use hdrhistogram::Histogram;
use netblame_core::observe::latency::{
    largest_spikes, HttpPhases, LatencySummary, Measures, ProbeOutcome, ProbeSample, Spike,
    TargetLatency, WindowStats,
};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Highest latency a histogram holds: one hour, in nanoseconds.
pub const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// A new latency histogram: nanoseconds, 1 ns to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

/// What one target saw over a run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TargetRun {
    #[serde(flatten)]
    pub latency: TargetLatency,
    /// When probe 0 was scheduled, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub spikes: Vec<Spike>,
    pub schedule: ScheduleStats,
    /// Latency from each probe's actual departure rather than its scheduled one (what a
    /// closed-loop tool such as sockperf reports); differs from the summary by how late probes
    /// left.
    pub from_send: FromSend,
    /// Every reply within the timeout: (scheduled offset, latency), nanoseconds.
    #[serde(skip)]
    pub replies_ns: Vec<(u64, u64)>,
    /// All replies within the timeout, nanoseconds.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
    /// Length of a window row.
    #[serde(skip)]
    pub window: Duration,
    /// http probes: each phase timed on its own (name lookup, connect, TLS, first byte,
    /// transfer), statuses and the TLS session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpReport>,
}

/// What the http probes of one target measured, phase by phase.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct HttpReport {
    /// One row per phase that was timed at least once, in the order they happen: `dns`,
    /// `connect`, `tls`, `first_byte` (request written to first response byte: the server's
    /// time), `transfer` (first to last byte), then `total` (the probe's latency, from its
    /// scheduled departure).
    pub phases: Vec<PhaseStats>,
    /// Responses by status code, e.g. `{"200": 10}`.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// TLS version of the last handshake (`TLSv1.3`), for https targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// Cipher suite of the last handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// Every http probe that got at least as far as a connect attempt, in schedule order.
    pub probes: Vec<HttpProbe>,
}

/// The distribution of one phase over a run, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PhaseStats {
    /// `dns`, `connect`, `tls`, `first_byte`, `transfer` or `total`.
    pub phase: &'static str,
    /// Probes that completed this phase.
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// One http probe's phases (each its own duration), microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct HttpProbe {
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Each phase's own duration.
    #[serde(flatten)]
    pub phases: HttpPhases,
    /// From the scheduled departure to the end of the response (the probe's latency), when
    /// it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_us: Option<u64>,
    /// Body bytes received (after de-chunking).
    pub body_bytes: u64,
    /// The body came `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

impl HttpReport {
    fn build(probes: Vec<(u64, Option<u64>, &HttpTimes)>) -> HttpReport {
        let mut r = HttpReport::default();
        for (seq, total_ns, t) in probes {
            if let Some(s) = t.status {
                *r.statuses.entry(s).or_default() += 1;
            }
            if let Some(v) = t.tls_version {
                r.tls_version = Some(v.to_string());
            }
            if t.cipher.is_some() {
                r.cipher.clone_from(&t.cipher);
            }
            r.probes.push(HttpProbe {
                seq,
                status: t.status,
                phases: phases_of(t),
                total_us: total_ns.map(us),
                body_bytes: t.body_bytes,
                chunked: t.chunked,
            });
        }
        type Get = fn(&HttpProbe) -> Option<u64>;
        let phases: [(&'static str, Get); 6] = [
            ("dns", |p| p.phases.dns_us),
            ("connect", |p| p.phases.connect_us),
            ("tls", |p| p.phases.tls_us),
            ("first_byte", |p| p.phases.first_byte_us),
            ("transfer", |p| p.phases.transfer_us),
            ("total", |p| p.total_us),
        ];
        for (phase, get) in phases {
            let mut v: Vec<u64> = r.probes.iter().filter_map(get).collect();
            if v.is_empty() {
                continue;
            }
            v.sort_unstable();
            let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64;
            r.phases.push(PhaseStats {
                phase,
                count: v.len() as u64,
                p50_us: q(0.5),
                p90_us: q(0.9),
                p99_us: q(0.99),
                max_us: *v.last().unwrap_or(&0) as f64,
            });
        }
        r
    }
}

/// Percentiles of latency measured from the actual departure, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FromSend {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl FromSend {
    fn from_ns(mut v: Vec<u64>) -> Self {
        if v.is_empty() {
            return FromSend::default();
        }
        v.sort_unstable();
        let q = |p: f64| {
            v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0
        };
        FromSend {
            p50_us: q(0.5),
            p99_us: q(0.99),
            max_us: *v.last().unwrap_or(&0) as f64 / 1000.0,
        }
    }
}

/// An http probe's phase durations, microseconds.
fn phases_of(t: &HttpTimes) -> HttpPhases {
    let us_of = |d: Option<Duration>| d.map(|d| us(d.as_nanos() as u64));
    HttpPhases {
        dns_us: us_of(t.dns),
        connect_us: us_of(t.connect),
        tls_us: us_of(t.tls),
        first_byte_us: us_of(t.first_byte),
        transfer_us: us_of(t.transfer),
    }
}

fn us(ns: u64) -> u64 {
    (ns + 500) / 1000
}

/// Summary from a histogram (nanoseconds) and the counts.
pub fn summarize(h: &Histogram<u64>, sent: u64, late: u64, failed: u64) -> LatencySummary {
    let received = h.len();
    let lost = sent.saturating_sub(received);
    let q = |p: f64| {
        if received == 0 {
            0.0
        } else {
            h.value_at_quantile(p) as f64 / 1000.0
        }
    };
    LatencySummary {
        sent,
        received,
        lost,
        late,
        failed,
        loss_percent: LatencySummary::loss_percent_of(sent, lost),
        min_us: if received == 0 {
            0.0
        } else {
            h.min() as f64 / 1000.0
        },
        avg_us: if received == 0 {
            0.0
        } else {
            h.mean() / 1000.0
        },
        max_us: if received == 0 {
            0.0
        } else {
            h.max() as f64 / 1000.0
        },
        mdev_us: if received == 0 {
            0.0
        } else {
            h.stdev() / 1000.0
        },
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
    }
}

/// Distinct values of a histogram in microseconds, with counts.
pub fn histogram_values_us(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for v in h.iter_recorded() {
        let u = us(h.median_equivalent(v.value_iterated_to()));
        match out.last_mut() {
            Some((last, c)) if *last == u => *c += v.count_at_value(),
            _ => out.push((u, v.count_at_value())),
        }
    }
    out
}

fn measures(cfg: &ProbeConfig) -> Measures {
    if cfg.kind == ProbeKind::Tcp && !cfg.request {
        Measures::Connect
    } else {
        Measures::RoundTrip
    }
}

/// Builds the report of one target from its slots.
pub(crate) fn build(
    cfg: &ProbeConfig,
    t: &Target,
    started: SystemTime,
    slots: &[Slot],
) -> TargetRun {
    let timeout_ns = cfg.timeout.as_nanos() as u64;
    let interval_ns = cfg.interval.as_nanos() as u64;
    let mut hist = new_histogram();
    let mut connect_hist = new_histogram();
    let mut samples = Vec::new();
    let mut replies_ns = Vec::new();
    let mut late_ns = Vec::new();
    let mut from_send = Vec::new();
    let (mut sent, mut late, mut failed) = (0u64, 0u64, 0u64);
    let mut http = Vec::new();
    for (seq, slot) in slots.iter().enumerate() {
        if !slot.sent {
            continue;
        }
        sent += 1;
        late_ns.push(slot.late_ns);
        let at_ns = interval_ns.saturating_mul(seq as u64);
        let phases = slot
            .result
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .map(phases_of);
        let (outcome, connect, first_byte, rto) = match &slot.result {
            None => (ProbeOutcome::Timeout, None, None, None),
            Some(r) => {
                if let Some(h) = &r.http {
                    let total = match r.ended {
                        Ended::Reply(ns) if ns <= timeout_ns => Some(ns),
                        _ => None,
                    };
                    http.push((seq as u64, total, h));
                }
                let o = match &r.ended {
                    Ended::Reply(ns) if *ns <= timeout_ns => {
                        let _ = hist.record((*ns).clamp(1, HIST_MAX_NS));
                        replies_ns.push((at_ns, *ns));
                        from_send.push(ns.saturating_sub(slot.late_ns));
                        ProbeOutcome::Reply {
                            latency_us: us(*ns),
                        }
                    }
                    Ended::Reply(_) => {
                        late += 1;
                        ProbeOutcome::Timeout
                    }
                    Ended::TimedOut => ProbeOutcome::Timeout,
                    Ended::Failed(ns, e) => {
                        failed += 1;
                        ProbeOutcome::Failed {
                            after_us: us(*ns),
                            error: e.clone(),
                        }
                    }
                };
                if let Some(c) = r.connect_ns {
                    if c <= timeout_ns {
                        let _ = connect_hist.record(c.clamp(1, HIST_MAX_NS));
                    }
                }
                (
                    o,
                    r.connect_ns.map(us),
                    r.first_byte_ns.map(us),
                    r.total_rto,
                )
            }
        };
        samples.push(ProbeSample {
            seq: seq as u64,
            at_us: us(at_ns),
            outcome,
            connect_us: connect,
            first_byte_us: first_byte,
            total_rto: rto,
            phases,
        });
    }
    let summary = summarize(&hist, sent, late, failed);
    let windows = windows(&samples, cfg.window, cfg.interval);
    let last_actual = slots
        .iter()
        .enumerate()
        .rfind(|(_, s)| s.sent)
        .map(|(i, s)| Duration::from_nanos(interval_ns * i as u64 + s.late_ns))
        .unwrap_or_default();
    let first_late = Duration::from_nanos(slots.first().map(|s| s.late_ns).unwrap_or(0));
    let schedule = ScheduleStats::from_lateness(
        late_ns,
        cfg.interval,
        last_actual.saturating_sub(first_late),
    );
    let spikes = largest_spikes(&samples, 5);
    let values = histogram_values_us(&hist);
    let connect_values = histogram_values_us(&connect_hist);
    TargetRun {
        latency: TargetLatency {
            target: t.label.clone(),
            kind: cfg.kind.as_str().to_string(),
            measures: measures(cfg),
            interval_us: us(interval_ns),
            timeout_us: us(timeout_ns),
            summary,
            values,
            connect_values,
            windows,
            samples,
        },
        started_unix_ms: started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        spikes,
        schedule,
        from_send: FromSend::from_ns(from_send),
        replies_ns,
        histogram: hist,
        window: cfg.window,
        http: (cfg.kind == ProbeKind::Http).then(|| HttpReport::build(http)),
    }
}

/// Loss and latency per window of `len` (by scheduled time).
pub fn windows(samples: &[ProbeSample], len: Duration, interval: Duration) -> Vec<WindowStats> {
    let len_us = (len.as_micros() as u64)
        .max(interval.as_micros() as u64)
        .max(1);
    let mut out: Vec<(WindowStats, Vec<u64>)> = Vec::new();
    for s in samples {
        let idx = (s.at_us / len_us) as usize;
        while out.len() <= idx {
            let start_us = out.len() as u64 * len_us;
            out.push((
                WindowStats {
                    start_us,
                    duration_us: len_us,
                    sent: 0,
                    received: 0,
                    lost: 0,
                    loss_percent: 0.0,
                    p50_us: 0.0,
                    p99_us: 0.0,
                    max_us: 0.0,
                },
                Vec::new(),
            ));
        }
        let (w, lat) = &mut out[idx];
        w.sent += 1;
        if let Some(l) = s.latency_us() {
            w.received += 1;
            lat.push(l);
        }
    }
    out.into_iter()
        .map(|(mut w, mut lat)| {
            w.lost = w.sent - w.received;
            w.loss_percent = LatencySummary::loss_percent_of(w.sent, w.lost);
            lat.sort_unstable();
            if !lat.is_empty() {
                let q = |p: f64| {
                    lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1] as f64
                };
                w.p50_us = q(0.5);
                w.p99_us = q(0.99);
                w.max_us = *lat.last().unwrap_or(&0) as f64;
            }
            w
        })
        .collect()
}
