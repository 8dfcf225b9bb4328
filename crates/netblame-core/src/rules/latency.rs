//! Findings from latency probes: connect times clustered at the SYN retransmission schedule,
//! failures or replies at one fixed delay (timeout and retry), a tail or loss present on one
//! target but not on another (which localizes the problem), and plain loss.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::kernel::{KernelVersion, BACKPORT_CAVEAT};
use crate::observe::latency::{median, percentile, Measures, ProbeOutcome, TargetLatency};
use crate::rules::phases;
use crate::rules::setup::{self, Lost, SynEvidence};
use crate::units::format_duration;
use std::time::Duration;

/// Probes fail or answer at one fixed delay, then succeed.
pub const TIMEOUT_AND_RETRY: FindingSpec = FindingSpec {
    id: "timeout-and-retry",
    layer: Layer::Application,
    title:
        "probes fail or answer at one fixed delay, then succeed: something times out and retries",
};
/// One target has a tail the others lack.
pub const LATENCY_TAIL_ONE_TARGET: FindingSpec = FindingSpec {
    id: "latency-tail-one-target",
    layer: Layer::Network,
    title: "one target has a latency tail (or loss) the others lack: the problem sits on its part of the path",
};
/// Probes were lost.
pub const PROBE_LOSS: FindingSpec = FindingSpec {
    id: "probe-loss",
    layer: Layer::Network,
    title: "probes were lost: no reply within the timeout, or the probe failed",
};
/// The target does not speak the probe's protocol.
pub const PROBE_PROTOCOL_MISMATCH: FindingSpec = FindingSpec {
    id: "probe-protocol-mismatch",
    layer: Layer::Application,
    title: "the target answered, but not in the probe's protocol: its replies cannot be timed",
};

/// Findings this module builds (`syn-retransmit` comes from `rules::setup`).
pub const FINDINGS: &[&FindingSpec] = &[
    &TIMEOUT_AND_RETRY,
    &LATENCY_TAIL_ONE_TARGET,
    &PROBE_LOSS,
    &PROBE_PROTOCOL_MISMATCH,
];

/// `TCP_TIMEOUT_INIT`: the initial SYN retransmission timeout.
const SYN_RTO_INIT: Duration = Duration::from_secs(1);
/// `TCP_RTO_MAX`.
const RTO_MAX: Duration = Duration::from_secs(120);

/// The client kernel's SYN retransmission schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynSchedule {
    /// `tcp_syn_linear_timeouts` (6.5+): how many retransmissions keep the 1 s RTO before
    /// exponential backoff starts. 0 on older kernels: the classic 1, 3, 7, 15 s schedule.
    pub linear_timeouts: u32,
    /// `tcp_syn_retries` (default 6): how many SYN retransmissions before connect fails.
    pub syn_retries: u32,
}

impl SynSchedule {
    /// The classic exponential schedule (before 6.5).
    pub const CLASSIC: SynSchedule = SynSchedule {
        linear_timeouts: 0,
        syn_retries: 6,
    };

    /// The schedule of a kernel given its sysctls (`None`: the sysctl could not be read, so the
    /// kernel's default applies: 4 linear timeouts since 6.5, none before).
    pub fn for_kernel(
        kernel: &KernelVersion,
        linear_timeouts: Option<u32>,
        syn_retries: Option<u32>,
    ) -> Self {
        let linear = if kernel.at_least(6, 5, 0) {
            linear_timeouts.unwrap_or(4)
        } else {
            0
        };
        SynSchedule {
            linear_timeouts: linear,
            syn_retries: syn_retries.unwrap_or(6).clamp(1, 127),
        }
    }

    /// When each SYN retransmission leaves, counted from the first SYN. The RTO stays at 1 s for
    /// the first `linear_timeouts + 1` timeouts, then doubles (commit ccce324dabfe): 1, 2, 3, 4,
    /// 5, 7, 11, 19, 35, 67 s with the default 4; 1, 3, 7, 15, 31, 63 s classic.
    pub fn retry_times(&self) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut rto = SYN_RTO_INIT;
        let mut at = Duration::ZERO;
        for k in 1..=self.syn_retries {
            at += rto;
            out.push(at);
            if k > self.linear_timeouts {
                rto = (rto * 2).min(RTO_MAX);
            }
        }
        out
    }

    /// The schedule as people write it: `1, 2, 3, 4, 5, 7 s`.
    pub fn describe(&self, n: usize) -> String {
        let v: Vec<String> = self
            .retry_times()
            .iter()
            .take(n)
            .map(|d| format!("{}", d.as_secs()))
            .collect();
        let kind = if self.linear_timeouts > 0 {
            format!(
                "linear for {} retries (tcp_syn_linear_timeouts)",
                self.linear_timeouts
            )
        } else {
            "classic exponential".to_string()
        };
        format!("{} s, {kind}", v.join(", "))
    }
}

/// What the rules need to know about the client host.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    pub kernel: Option<KernelVersion>,
    pub syn: SynSchedule,
}

/// Judges every target of a run, then the targets against each other.
pub fn judge(targets: &[TargetLatency], ctx: &ProbeContext) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in targets {
        let syn = syn_retransmit(t, ctx);
        let retry = timeout_and_retry(t, ctx);
        // Lost SYNs explain a tail outright. A fixed delay in the name lookup or the TLS
        // handshake is the resolver's or the TLS server's timer: the phase says where to look.
        // A fixed delay in the server's answer stays a timeout and retry (a proxy's, the
        // client's); a smeared one is the server's time.
        let phase = syn.is_none().then(|| phases::slow_phase(t)).flatten();
        let (retry, phase) = match (retry, phase) {
            (Some(r), Some(p)) if p.id == phases::SERVER_SLOW.id => (Some(r), None),
            (Some(_), Some(p)) => (None, Some(p)),
            other => other,
        };
        out.extend(syn);
        out.extend(retry);
        out.extend(phase);
        match protocol_mismatch(t) {
            Some(f) => out.push(f),
            None => out.extend(loss(t)),
        }
    }
    out.extend(tail_one_target(targets));
    out
}

/// The window (microseconds) in which a connect that needed `retry` lands, given the normal
/// connect time `base_us`: from just before the retry time to well after it.
fn syn_window(retry: Duration, base_us: u64) -> (u64, u64) {
    let r = retry.as_micros() as u64;
    let slack = (3 * base_us).max(100_000);
    (r.saturating_sub(20_000), r + base_us + slack)
}

fn syn_retry_of(connect_us: u64, windows: &[(u64, u64)]) -> Option<usize> {
    windows
        .iter()
        .position(|&(lo, hi)| connect_us >= lo && connect_us <= hi)
}

/// Connect times clustered at the SYN schedule.
fn syn_retransmit(t: &TargetLatency, ctx: &ProbeContext) -> Option<Finding> {
    let base = percentile(&t.connect_values, 0.5)?;
    let times = ctx.syn.retry_times();
    let windows: Vec<(u64, u64)> = times.iter().map(|&r| syn_window(r, base)).collect();
    let mut per_retry = vec![0u64; windows.len()];
    let mut tail_total = 0u64;
    let mut connects = 0u64;
    for &(v, c) in &t.connect_values {
        connects += c;
        if v > base + 100_000 {
            tail_total += c;
        }
        if let Some(k) = syn_retry_of(v, &windows) {
            per_retry[k] += c;
        }
    }
    let clustered: u64 = per_retry.iter().sum();
    // A cluster, not a smear: most of the slow connects sit at the schedule's instants.
    if clustered == 0 || clustered * 2 < tail_total {
        return None;
    }
    let retransmitted_syns: u64 = per_retry
        .iter()
        .enumerate()
        .map(|(k, &c)| c * (k as u64 + 1))
        .sum();
    let mut parts = Vec::new();
    for (k, &c) in per_retry.iter().enumerate() {
        if c > 0 {
            parts.push(format!(
                "{c} at ~{} (retry {})",
                format_duration(times[k]),
                k + 1
            ));
        }
    }
    let (checked, confirmed) = rto_confirmation(t, &windows);
    let mut extra: Vec<(String, f64, Unit)> = per_retry
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(k, &c)| (format!("after_retry_{}", k + 1), c as f64, Unit::Count))
        .collect();
    let confirmation = if checked > 0 {
        extra.push((
            "confirmed_by_total_rto".into(),
            confirmed as f64,
            Unit::Count,
        ));
        format!("; tcpi_total_rto read after connect was >= 1 for {confirmed} of them: the handshake itself timed out")
    } else {
        "; tcpi_total_rto was not available to confirm it (needs Linux 6.7+)".to_string()
    };
    let kernel = match &ctx.kernel {
        Some(k) => format!("client kernel {k}: "),
        None => String::new(),
    };
    Some(setup::syn_retransmit(&SynEvidence {
        subject: Some(t.target.clone()),
        slow_connects: clustered,
        connects,
        retransmitted_syns,
        connect_p50: Some(Duration::from_micros(base)),
        slowest: None,
        lost: Lost::Unknown,
        loopback: false,
        timing: format!(
            "normal connect {}; {kernel}SYN retransmissions leave at {} after the first SYN, and the slow connects \
             to {} sit at those instants ({}){confirmation}. {}",
            format_duration(Duration::from_micros(base)),
            ctx.syn.describe(6),
            t.target,
            parts.join(", "),
            BACKPORT_CAVEAT
        ),
        extra,
    }))
}

fn rto_confirmation(t: &TargetLatency, windows: &[(u64, u64)]) -> (u64, u64) {
    let mut checked = 0;
    let mut confirmed = 0;
    for s in &t.samples {
        let (Some(c), Some(rto)) = (s.connect_us, s.total_rto) else {
            continue;
        };
        if syn_retry_of(c, windows).is_some() {
            checked += 1;
            if rto > 0 {
                confirmed += 1;
            }
        }
    }
    (checked, confirmed)
}

/// Densest cluster in sorted values: (center, count), values within max(20%, 20 ms) of each other
/// (a timer observed through a busy scheduler still wobbles by that much).
fn densest_cluster(sorted: &[u64]) -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64)> = None;
    let mut j = 0;
    for i in 0..sorted.len() {
        let tol = (sorted[i] / 5).max(20_000);
        while sorted[j] + tol < sorted[i] {
            j += 1;
        }
        let n = (i - j + 1) as u64;
        if best.is_none_or(|(_, c)| n > c) {
            best = Some((sorted[(i + j) / 2], n));
        }
    }
    best
}

/// Failures at one fixed delay followed by success, or replies clustered at one fixed extra delay.
fn timeout_and_retry(t: &TargetLatency, ctx: &ProbeContext) -> Option<Finding> {
    let syn_windows: Vec<(u64, u64)> = match percentile(&t.connect_values, 0.5) {
        Some(base) => ctx
            .syn
            .retry_times()
            .iter()
            .map(|&r| syn_window(r, base))
            .collect(),
        None => Vec::new(),
    };
    // (a) failures at one fixed delay (not instant refusals), then later successes.
    let mut fail_after: Vec<(u64, u64)> = t
        .samples
        .iter()
        .filter_map(|s| match &s.outcome {
            ProbeOutcome::Failed { after_us, .. } if *after_us >= 50_000 => {
                Some((*after_us, s.seq))
            }
            _ => None,
        })
        .collect();
    if fail_after.len() >= 2 {
        fail_after.sort_unstable();
        let sorted: Vec<u64> = fail_after.iter().map(|&(a, _)| a).collect();
        if let Some((center, n)) = densest_cluster(&sorted) {
            let first_fail = fail_after.iter().map(|&(_, seq)| seq).min().unwrap_or(0);
            let later_ok = t
                .samples
                .iter()
                .filter(|s| s.seq > first_fail && s.latency_us().is_some())
                .count() as u64;
            if n >= 2 && n * 2 >= sorted.len() as u64 && later_ok > 0 {
                return Some(retry_finding(
                    t,
                    format!(
                        "{n} probes to {} failed after ~{}, and {later_ok} later probes succeeded",
                        t.target,
                        format_duration(Duration::from_micros(center))
                    ),
                    ("failures_at_delay", n),
                    center,
                    format!(
                        "{n} of {} slow failures ended within 20% of {}: a fixed delay is a timer (a proxy or \
                         client timeout), not congestion, which smears; success afterwards means the retry \
                         worked ({later_ok} later probes succeeded)",
                        sorted.len(),
                        format_duration(Duration::from_micros(center))
                    ),
                )
                .evidence("later_successes", later_ok as f64, Unit::Count));
            }
        }
    }
    // (b) replies at one fixed extra delay (outside the SYN schedule).
    let p50 = t.summary.p50_us as u64;
    let threshold = (p50 * 5).max(p50 + 20_000);
    let mut tail: Vec<u64> = if t.samples.is_empty() {
        t.values
            .iter()
            .filter(|&&(v, _)| v > threshold)
            .flat_map(|&(v, c)| std::iter::repeat_n(v, c.min(10_000) as usize))
            .collect()
    } else {
        t.samples
            .iter()
            .filter(|s| {
                s.connect_us
                    .is_none_or(|c| syn_retry_of(c, &syn_windows).is_none())
            })
            .filter_map(|s| s.latency_us())
            .filter(|&l| l > threshold)
            .collect()
    };
    if t.measures == Measures::Connect {
        tail.retain(|&v| syn_retry_of(v, &syn_windows).is_none());
    }
    if tail.len() < 3 {
        return None;
    }
    tail.sort_unstable();
    let (center, n) = densest_cluster(&tail)?;
    if n < 3 || n * 2 < tail.len() as u64 {
        return None;
    }
    let extra = center.saturating_sub(p50);
    Some(
        retry_finding(
            t,
            format!(
                "{n} replies from {} came ~{} late, all at the same delay",
                t.target,
                format_duration(Duration::from_micros(extra))
            ),
            ("replies_at_delay", n),
            extra,
            format!(
                "{n} of {} slow replies sit within 20% of {} (normal {} + {} extra): a fixed extra delay is a \
                 timer firing and a retry (a client or proxy timeout; on one kept TCP connection, a retransmission \
                 timeout, at least 200 ms), not queueing, which smears",
                tail.len(),
                format_duration(Duration::from_micros(center)),
                format_duration(Duration::from_micros(p50)),
                format_duration(Duration::from_micros(extra))
            ),
        )
        .evidence("latency_p50", p50 as f64, Unit::Microseconds),
    )
}

/// `timeout-and-retry`: `count` probes failed or answered at one fixed `delay_us`.
fn retry_finding(
    t: &TargetLatency,
    summary: String,
    count: (&str, u64),
    delay_us: u64,
    why: String,
) -> Finding {
    Finding::new(&TIMEOUT_AND_RETRY, Severity::Warning, summary)
        .subject(t.target.clone())
        .evidence(count.0, count.1 as f64, Unit::Count)
        .evidence("delay", delay_us as f64, Unit::Microseconds)
        .explain(why)
        .fix(
            "find the component whose timeout equals that delay (proxy, load balancer, client library, retry \
             policy) and why the first attempt fails: requests sent to terminating instances (drain them before \
             shutdown, e.g. a preStop hook), a backend that does not answer, or drops (TCP retransmits in netblame host)",
        )
}

/// Loss of one target, with the worst window.
fn loss(t: &TargetLatency) -> Option<Finding> {
    let s = &t.summary;
    if s.lost == 0 || s.sent == 0 {
        return None;
    }
    let severity = if s.loss_percent >= 1.0 {
        Severity::Warning
    } else {
        Severity::Info
    };
    let mut f = Finding::new(
        &PROBE_LOSS,
        severity,
        format!(
            "{} of {} probes to {} lost ({:.2}%)",
            s.lost, s.sent, t.target, s.loss_percent
        ),
    )
    .subject(t.target.clone())
    .evidence("sent", s.sent as f64, Unit::Count)
    .evidence("lost", s.lost as f64, Unit::Count)
    .evidence("late", s.late as f64, Unit::Count)
    .evidence("failed", s.failed as f64, Unit::Count)
    .evidence("loss", s.loss_percent, Unit::Percent)
    .evidence("timeout", t.timeout_us as f64, Unit::Microseconds);
    let mut explanation = format!(
        "lost = sent - received = {} - {} = {}; {} replies came after the {} timeout and {} probes failed outright (both counted as lost)",
        s.sent,
        s.received,
        s.lost,
        s.late,
        format_duration(Duration::from_micros(t.timeout_us)),
        s.failed
    );
    if let Some(w) = t
        .windows
        .iter()
        .filter(|w| w.lost > 0)
        .max_by(|a, b| a.loss_percent.total_cmp(&b.loss_percent))
    {
        f = f.evidence("worst_window_loss", w.loss_percent, Unit::Percent);
        explanation += &format!(
            "; worst window: {:.1}% lost at +{}",
            w.loss_percent,
            format_duration(Duration::from_micros(w.start_us))
        );
    }
    let all_failed_fast = s.failed == s.lost;
    let stall = stalled_after_connect(t);
    let server_silent = !all_failed_fast && stall.stalled >= 2 && stall.stalled * 2 > s.lost;
    if all_failed_fast || server_silent {
        f = f.blame(Layer::Application);
    }
    if stall.stalled > 0 {
        f = f
            .evidence("lost_after_connect", stall.stalled as f64, Unit::Count)
            .evidence(
                "connect_p50",
                stall.connect_p50_us as f64,
                Unit::Microseconds,
            );
        explanation += &format!(
            "; {} of the lost probes had connected within {} (median connect {}) and sent their request",
            stall.stalled,
            format_duration(Duration::from_micros(stall.prompt_us)),
            format_duration(Duration::from_micros(stall.connect_p50_us))
        );
    }
    if server_silent {
        f.summary += ": connected, then no answer";
        explanation += &format!(
            ": on an open TCP connection the network's losses are retransmitted, so no answer within {} \
             is the server not answering (or a path that dropped everything for that long)",
            format_duration(Duration::from_micros(t.timeout_us))
        );
    }
    Some(f.explain(explanation).fix(if all_failed_fast {
        "the target refused or reset the probes: check that the service (or `netblame probe serve`) listens there"
    } else if server_silent {
        "the server's kernel accepted the connections but the server did not answer in time: look at the server \
         process (CPU throttling: `netblame host` there shows cpu-throttled; a blocked event loop, a full worker \
         pool, a backend it waits on); raise --timeout to see how late the answers come"
    } else {
        "compare targets along the path (the first one that loses localizes the drop); check drop counters with \
         netblame host on both ends; raise --timeout if replies come back late"
    }))
}

/// Lost probes that had connected promptly: the handshake went through, the answer never came.
struct Stall {
    stalled: u64,
    connect_p50_us: u64,
    /// The connect time at or under which a connect counts as prompt.
    prompt_us: u64,
}

/// A connect within this factor of the median connect (or [`PROMPT_CONNECT_SLACK_US`] above
/// it) saw no trouble on the path: no SYN retransmission (1 s), no queueing worth the name.
pub const PROMPT_CONNECT_FACTOR: u64 = 3;
/// See [`PROMPT_CONNECT_FACTOR`]; well under the 1 s initial SYN timeout.
pub const PROMPT_CONNECT_SLACK_US: u64 = 50_000;

fn stalled_after_connect(t: &TargetLatency) -> Stall {
    let p50 = median(t.samples.iter().filter_map(|s| s.phases?.connect_us));
    let prompt = (p50 * PROMPT_CONNECT_FACTOR).max(p50 + PROMPT_CONNECT_SLACK_US);
    let stalled = t
        .samples
        .iter()
        .filter(|s| s.outcome == ProbeOutcome::Timeout)
        .filter(|s| {
            s.phases
                .and_then(|p| p.connect_us)
                .is_some_and(|c| c <= prompt)
        })
        .count() as u64;
    Stall {
        stalled,
        connect_p50_us: p50,
        prompt_us: prompt,
    }
}

/// Kinds whose requests and replies travel over an established TCP connection: the network
/// cannot lose a reply there (TCP retransmits it), so a target that never answers does not
/// speak the probe's protocol.
const TCP_STREAM_KINDS: &[&str] = &["rr", "http", "https", "tcp"];

/// `probe-protocol-mismatch`: a TCP request/response target that never answered, although
/// nothing failed outright: it accepted the connection but does not speak the probe's protocol.
fn protocol_mismatch(t: &TargetLatency) -> Option<Finding> {
    let s = &t.summary;
    let stream = TCP_STREAM_KINDS.contains(&t.kind.as_str()) && t.measures == Measures::RoundTrip;
    if !stream || s.sent == 0 || s.received > 0 || s.late > 0 || s.failed == s.sent {
        return None;
    }
    Some(
        Finding::new(
            &PROBE_PROTOCOL_MISMATCH,
            Severity::Warning,
            format!(
                "{} accepted the connection but answered none of {} {} probes: it does not speak the probe's protocol",
                t.target, s.sent, t.kind
            ),
        )
        .subject(t.target.clone())
        .evidence("sent", s.sent as f64, Unit::Count)
        .evidence("received", 0.0, Unit::Count)
        .evidence("timeout", t.timeout_us as f64, Unit::Microseconds)
        .explain(format!(
            "{} probes travel over an established TCP connection, where the network cannot lose a reply (TCP \
             retransmits it): 0 of {} answered within {}, so the service there is not a {} responder (or never \
             answers), not a lossy path",
            t.kind,
            s.sent,
            format_duration(Duration::from_micros(t.timeout_us)),
            t.kind
        ))
        .fix(
            "probe a port where `netblame probe serve` (or `netblame bench server`) runs, or use the kind the \
             service speaks: --kind tcp for any listener (connect time), --kind http for a web server",
        ),
    )
}

/// A tail or loss on one target but not on another probed in the same run.
fn tail_one_target(targets: &[TargetLatency]) -> Option<Finding> {
    // Only targets probed together in this run (loaded logs may come from other times).
    let ok: Vec<&TargetLatency> = targets
        .iter()
        .filter(|t| t.summary.received >= 20 && !t.samples.is_empty())
        .collect();
    if ok.len() < 2 {
        return None;
    }
    let best = ok
        .iter()
        .min_by(|a, b| a.summary.p99_us.total_cmp(&b.summary.p99_us))?;
    let worst = ok
        .iter()
        .max_by(|a, b| a.summary.p99_us.total_cmp(&b.summary.p99_us))?;
    let tail = worst.summary.p99_us >= 5.0 * best.summary.p99_us.max(1.0)
        && worst.summary.p99_us - best.summary.p99_us >= 1000.0;
    let lossy = ok
        .iter()
        .max_by(|a, b| a.summary.loss_percent.total_cmp(&b.summary.loss_percent))?;
    let clean = ok
        .iter()
        .min_by(|a, b| a.summary.loss_percent.total_cmp(&b.summary.loss_percent))?;
    let loss_only =
        lossy.summary.loss_percent >= 1.0 && clean.summary.lost == 0 && clean.summary.sent >= 100;
    let (bad, good, what) = if tail {
        (worst, best, "latency tail")
    } else if loss_only {
        (lossy, clean, "loss")
    } else {
        return None;
    };
    let us = |v: f64| format_duration(Duration::from_micros(v.max(0.0) as u64));
    Some(
        Finding::new(
            &LATENCY_TAIL_ONE_TARGET,
            Severity::Warning,
            format!(
                "the {what} is on {} only: p99 {} / max {} / loss {:.2}%, against p99 {} / loss {:.2}% on {}",
                bad.target,
                us(bad.summary.p99_us),
                us(bad.summary.max_us),
                bad.summary.loss_percent,
                us(good.summary.p99_us),
                good.summary.loss_percent,
                good.target
            ),
        )
        .subject(bad.target.clone())
        .evidence("p99", bad.summary.p99_us, Unit::Microseconds)
        .evidence("max", bad.summary.max_us, Unit::Microseconds)
        .evidence("loss", bad.summary.loss_percent, Unit::Percent)
        .evidence("other_p99", good.summary.p99_us, Unit::Microseconds)
        .evidence("other_max", good.summary.max_us, Unit::Microseconds)
        .evidence("other_loss", good.summary.loss_percent, Unit::Percent)
        .explain(format!(
            "p99 {} vs {} ({:.1}x), probed side by side over the same run: what the paths share is clean, so the \
             problem is where they differ (Cloudflare: the router answered flat, the server behind it spiked)",
            us(bad.summary.p99_us),
            us(good.summary.p99_us),
            bad.summary.p99_us / good.summary.p99_us.max(1.0)
        ))
        .fix(format!(
            "look between {} and {}: that host's kernel (netblame host: softirq squeeze, tcp_collapse/prune \
             counters, CPU throttling) or the link to it",
            good.target, bad.target
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::latency::{LatencySummary, ProbeSample};

    fn target(name: &str, connects: &[u64], rto: Option<u16>) -> TargetLatency {
        let samples: Vec<ProbeSample> = connects
            .iter()
            .enumerate()
            .map(|(i, &c)| ProbeSample {
                seq: i as u64,
                at_us: i as u64 * 100_000,
                outcome: ProbeOutcome::Reply { latency_us: c },
                connect_us: Some(c),
                first_byte_us: None,
                total_rto: rto.map(|r| if c > 500_000 { r } else { 0 }),
                phases: None,
            })
            .collect();
        let mut sorted = connects.to_vec();
        sorted.sort_unstable();
        TargetLatency {
            target: name.into(),
            kind: "tcp".into(),
            measures: Measures::Connect,
            interval_us: 100_000,
            timeout_us: 5_000_000,
            summary: LatencySummary {
                sent: connects.len() as u64,
                received: connects.len() as u64,
                p50_us: sorted[sorted.len() / 2] as f64,
                p99_us: sorted[sorted.len() * 99 / 100] as f64,
                max_us: *sorted.last().unwrap() as f64,
                ..Default::default()
            },
            values: connects.iter().map(|&c| (c, 1)).collect(),
            connect_values: connects.iter().map(|&c| (c, 1)).collect(),
            windows: vec![],
            samples,
        }
    }

    fn ctx(linear: u32) -> ProbeContext {
        ProbeContext {
            kernel: Some(KernelVersion::new(6, 18, 0)),
            syn: SynSchedule {
                linear_timeouts: linear,
                syn_retries: 6,
            },
        }
    }

    /// 20 http probes answered in 5 ms, then 10 that connected in `lost_connect_us` and got
    /// no answer within the 2 s timeout.
    fn silent_server(lost_connect_us: u64) -> TargetLatency {
        use crate::observe::latency::HttpPhases;
        let samples: Vec<ProbeSample> = (0..30u64)
            .map(|seq| {
                let lost = seq >= 20;
                ProbeSample {
                    seq,
                    at_us: seq * 50_000,
                    outcome: if lost {
                        ProbeOutcome::Timeout
                    } else {
                        ProbeOutcome::Reply { latency_us: 5_000 }
                    },
                    connect_us: None,
                    first_byte_us: None,
                    total_rto: None,
                    phases: Some(HttpPhases {
                        connect_us: Some(if lost { lost_connect_us } else { 1_000 }),
                        first_byte_us: (!lost).then_some(4_000),
                        ..Default::default()
                    }),
                }
            })
            .collect();
        TargetLatency {
            target: "http://10.0.0.2/".into(),
            kind: "http".into(),
            measures: Measures::RoundTrip,
            interval_us: 50_000,
            timeout_us: 2_000_000,
            summary: LatencySummary {
                sent: 30,
                received: 20,
                lost: 10,
                loss_percent: 33.3,
                ..Default::default()
            },
            values: vec![(5_000, 20)],
            connect_values: vec![],
            windows: vec![],
            samples,
        }
    }

    #[test]
    fn connected_then_silent_is_the_server_not_the_network() {
        let f = loss(&silent_server(1_200)).unwrap();
        assert_eq!(f.layer, Layer::Application, "{f:?}");
        assert_eq!(f.value("lost_after_connect"), Some(10.0));
        assert!(
            f.summary.ends_with("connected, then no answer"),
            "{}",
            f.summary
        );
        // Connects that took a SYN retransmission (1 s) saw the path's trouble: the network.
        let f = loss(&silent_server(1_050_000)).unwrap();
        assert_eq!(f.layer, Layer::Network, "{f:?}");
        assert_eq!(f.value("lost_after_connect"), None);
    }

    #[test]
    fn schedules_match_the_kernel() {
        let secs =
            |s: SynSchedule| -> Vec<u64> { s.retry_times().iter().map(|d| d.as_secs()).collect() };
        assert_eq!(secs(SynSchedule::CLASSIC), [1, 3, 7, 15, 31, 63]);
        let linear = SynSchedule::for_kernel(&KernelVersion::new(6, 6, 0), None, Some(10));
        assert_eq!(secs(linear), [1, 2, 3, 4, 5, 7, 11, 19, 35, 67]);
        let old = SynSchedule::for_kernel(&KernelVersion::new(6, 1, 0), Some(4), None);
        assert_eq!(old, SynSchedule::CLASSIC);
    }

    #[test]
    fn syn_cluster_is_found_and_counted() {
        let mut c = vec![60u64; 95];
        c.extend([1_000_080, 1_000_100, 1_000_090, 2_000_100, 1_000_070]);
        let f = judge(&[target("a:1", &c, Some(1))], &ctx(4));
        let syn = f
            .iter()
            .find(|f| f.id == "syn-retransmit")
            .expect("syn finding");
        assert_eq!(syn.value("syn_retransmit_connects"), Some(5.0));
        assert_eq!(syn.value("after_retry_1"), Some(4.0));
        assert_eq!(syn.value("after_retry_2"), Some(1.0));
        assert_eq!(syn.value("retransmitted_syns"), Some(6.0));
        assert_eq!(syn.value("confirmed_by_total_rto"), Some(5.0));
        // Classic schedule: a 2 s connect is not on it (3 s is).
        let f = judge(&[target("a:1", &c, None)], &ctx(0));
        let syn = f.iter().find(|f| f.id == "syn-retransmit").unwrap();
        assert_eq!(syn.value("syn_retransmit_connects"), Some(4.0));
        assert!(syn.explanation.contains("not available"));
    }

    #[test]
    fn smeared_tail_is_not_a_syn_signature() {
        let mut c = vec![60u64; 80];
        c.extend((0..20).map(|i| 150_000 + i * 90_000));
        let f = judge(&[target("a:1", &c, None)], &ctx(4));
        assert!(f.iter().all(|f| f.id != "syn-retransmit"), "{f:?}");
    }

    #[test]
    fn fixed_delay_failures_then_success_is_timeout_and_retry() {
        let mut t = target("a:1", &[100; 20], None);
        for s in t.samples.iter_mut().take(4) {
            s.outcome = ProbeOutcome::Failed {
                after_us: 1_000_000 + s.seq * 1000,
                error: "HTTP 504".into(),
            };
        }
        let f = judge(&[t], &ctx(4));
        let tr = f
            .iter()
            .find(|f| f.id == "timeout-and-retry")
            .expect("finding");
        assert_eq!(tr.value("failures_at_delay"), Some(4.0));
        assert!(tr.value("later_successes").unwrap() >= 16.0);
    }

    #[test]
    fn tail_on_one_target_is_localized() {
        let mut spiky = vec![10_000u64; 95];
        spiky.extend([1_800_000; 5]);
        let a = target("router:80", &[10_000; 100], None);
        let b = target("server:80", &spiky, None);
        let f = judge(&[a, b], &ctx(4));
        let loc = f
            .iter()
            .find(|f| f.id == "latency-tail-one-target")
            .expect("finding");
        assert_eq!(loc.subject.as_deref(), Some("server:80"));
    }
}
