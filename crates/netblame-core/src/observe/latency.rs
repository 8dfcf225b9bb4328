//! Latency observations: what a prober saw for one target — a ping-style summary, percentiles,
//! a log2 histogram, per-window loss and latency, and (when the run is live rather than loaded)
//! every probe in schedule order. Pure data plus the arithmetic that summarizes it.

use serde::{Deserialize, Serialize};

/// How one probe ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ProbeOutcome {
    /// A reply came back within the timeout; latency measured from the probe's scheduled time.
    Reply { latency_us: u64 },
    /// No reply within the timeout (a reply that came later is still a loss).
    Timeout,
    /// The probe failed (refused, reset, closed, send error) after `after_us`.
    Failed { after_us: u64, error: String },
}

/// One probe, as scheduled and as it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProbeSample {
    /// Sequence number, 0-based, in schedule order.
    pub seq: u64,
    /// Scheduled departure, microseconds after the run started.
    pub at_us: u64,
    #[serde(flatten)]
    pub outcome: ProbeOutcome,
    /// TCP connect time (kinds that connect per probe), microseconds from the scheduled time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_us: Option<u64>,
    /// Time to the first byte of the response (http), microseconds from the scheduled time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_us: Option<u64>,
    /// `tcpi_total_rto` read right after connect (Linux 6.7+): retransmission timeouts during
    /// the handshake, i.e. lost SYNs or SYN-ACKs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_rto: Option<u16>,
    /// http probes: how long each phase took on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<HttpPhases>,
}

/// One http probe's phases, each its own duration in microseconds (absent when the probe did
/// not go through it: an address needs no lookup, plain http no TLS).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct HttpPhases {
    /// Name lookup (getaddrinfo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_us: Option<u64>,
    /// TCP handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_us: Option<u64>,
    /// TLS handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_us: Option<u64>,
    /// Request written to the first byte of the response: the server's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_us: Option<u64>,
    /// First to last byte of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_us: Option<u64>,
}

impl ProbeSample {
    /// The latency when a reply came back.
    pub fn latency_us(&self) -> Option<u64> {
        match self.outcome {
            ProbeOutcome::Reply { latency_us } => Some(latency_us),
            _ => None,
        }
    }
}

/// Ping-style summary plus percentiles. Latencies in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LatencySummary {
    pub sent: u64,
    pub received: u64,
    /// `sent - received`: timeouts (late replies included) and failures.
    pub lost: u64,
    /// Replies that came back after the timeout (counted in `lost`).
    pub late: u64,
    /// Probes that failed outright (refused, reset, send error); counted in `lost`.
    pub failed: u64,
    pub loss_percent: f64,
    pub min_us: f64,
    pub avg_us: f64,
    pub max_us: f64,
    /// Mean deviation as ping prints it: sqrt(mean(x^2) - mean(x)^2).
    pub mdev_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl LatencySummary {
    /// Loss as a percentage of `sent` (0 when nothing was sent).
    pub fn loss_percent_of(sent: u64, lost: u64) -> f64 {
        if sent == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / sent as f64
        }
    }
}

/// Percentile of `(value, count)` pairs (nearest rank).
pub fn percentile(values: &[(u64, u64)], q: f64) -> Option<u64> {
    let mut v: Vec<(u64, u64)> = values.iter().copied().filter(|&(_, c)| c > 0).collect();
    v.sort_unstable();
    let total: u64 = v.iter().map(|&(_, c)| c).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (val, c) in v {
        seen += c;
        if seen >= rank {
            return Some(val);
        }
    }
    None
}

/// The median (nearest rank, the lower middle of an even count) of `values`; 0 when empty.
pub fn median(values: impl IntoIterator<Item = u64>) -> u64 {
    let pairs: Vec<(u64, u64)> = values.into_iter().map(|v| (v, 1)).collect();
    percentile(&pairs, 0.5).unwrap_or(0)
}

/// One row of a log2 histogram (SystemTap's `@hist_log`): values in `[lower_us, 2 * lower_us)`
/// (the first row starts at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Log2Bucket {
    pub lower_us: u64,
    pub count: u64,
}

/// Builds log2 rows from `(value_us, count)` pairs, from the lowest to the highest non-empty
/// bucket, keeping empty rows in between (and one empty row after, as SystemTap does).
pub fn log2_buckets(values: impl IntoIterator<Item = (u64, u64)>) -> Vec<Log2Bucket> {
    let mut counts = [0u64; 65];
    let mut any = false;
    for (v, c) in values {
        if c == 0 {
            continue;
        }
        any = true;
        let idx = if v == 0 {
            0
        } else {
            64 - v.leading_zeros() as usize
        };
        counts[idx] += c;
    }
    if !any {
        return Vec::new();
    }
    let first = counts.iter().position(|&c| c > 0).unwrap_or(0);
    let last = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
    let end = (last + 1).min(64);
    (first..=end)
        .map(|i| Log2Bucket {
            lower_us: if i == 0 { 0 } else { 1u64 << (i - 1) },
            count: counts[i],
        })
        .collect()
}

/// Loss and latency over one time window of a long run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WindowStats {
    /// Window start, microseconds after the run started (by scheduled time).
    pub start_us: u64,
    pub duration_us: u64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// One of the largest latencies of a run, with when it was scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Spike {
    pub seq: u64,
    pub at_us: u64,
    pub latency_us: u64,
}

/// The `n` largest replies, largest first (ties: earliest first).
pub fn largest_spikes(samples: &[ProbeSample], n: usize) -> Vec<Spike> {
    let mut v: Vec<Spike> = samples
        .iter()
        .filter_map(|s| {
            s.latency_us().map(|l| Spike {
                seq: s.seq,
                at_us: s.at_us,
                latency_us: l,
            })
        })
        .collect();
    v.sort_by(|a, b| b.latency_us.cmp(&a.latency_us).then(a.seq.cmp(&b.seq)));
    v.truncate(n);
    v
}

/// What the probes measured: the round trip of a request, or the TCP handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Measures {
    /// Request/response or echo round trip (rr, udp, icmp, tcp with a request, http).
    RoundTrip,
    /// TCP connect time only (tcp without a request).
    Connect,
}

/// Everything observed for one target over one run (or loaded from a saved log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TargetLatency {
    /// `host:port` (or address) as the user named it.
    pub target: String,
    /// Probe kind (`tcp`, `rr`, `http`, `udp`, `icmp`).
    pub kind: String,
    pub measures: Measures,
    pub interval_us: u64,
    pub timeout_us: u64,
    pub summary: LatencySummary,
    /// Distinct recorded latencies with their counts (histogram-derived, microseconds).
    pub values: Vec<(u64, u64)>,
    /// Connect times with counts (microseconds), for kinds that connect per probe.
    pub connect_values: Vec<(u64, u64)>,
    pub windows: Vec<WindowStats>,
    /// Every probe in schedule order; empty when the data was loaded from a histogram log.
    pub samples: Vec<ProbeSample>,
}

impl TargetLatency {
    /// Connects whose `tcpi_total_rto` was read, and how many of those saw a handshake timeout.
    pub fn handshake_rto(&self) -> (u64, u64) {
        let mut checked = 0;
        let mut with_rto = 0;
        for s in &self.samples {
            if let Some(r) = s.total_rto {
                checked += 1;
                if r > 0 {
                    with_rto += 1;
                }
            }
        }
        (checked, with_rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_rows_cover_the_range_like_systemtap() {
        let rows = log2_buckets([(0, 3), (1, 1), (5, 2), (700, 1)]);
        assert_eq!(rows.first().unwrap().lower_us, 0);
        assert_eq!(rows[0].count, 3);
        assert_eq!(
            rows[1],
            Log2Bucket {
                lower_us: 1,
                count: 1
            }
        );
        assert_eq!(rows.iter().find(|r| r.lower_us == 4).unwrap().count, 2);
        assert_eq!(rows.iter().find(|r| r.lower_us == 512).unwrap().count, 1);
        assert_eq!(
            rows.last().unwrap(),
            &Log2Bucket {
                lower_us: 1024,
                count: 0
            }
        );
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 7);
        assert!(log2_buckets([]).is_empty());
    }

    #[test]
    fn spikes_are_the_largest_replies() {
        let s = |seq, l: Option<u64>| ProbeSample {
            seq,
            at_us: seq * 1000,
            outcome: match l {
                Some(latency_us) => ProbeOutcome::Reply { latency_us },
                None => ProbeOutcome::Timeout,
            },
            connect_us: None,
            first_byte_us: None,
            total_rto: None,
            phases: None,
        };
        let v = vec![s(0, Some(10)), s(1, None), s(2, Some(900)), s(3, Some(50))];
        let top = largest_spikes(&v, 2);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].seq, top[0].latency_us), (2, 900));
        assert_eq!(top[1].seq, 3);
    }
}
