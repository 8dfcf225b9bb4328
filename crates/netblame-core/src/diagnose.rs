//! The `diagnose` step every command ends with: all observations of a run in, the rules
//! applied, duplicates merged, findings ranked by severity and layer, and the one verdict the
//! top line shows. Commands render a [`Diagnosis`]; none re-sorts or re-filters it.

use crate::finding::{Finding, Layer, Limit, Severity};
use crate::kernel::KernelVersion;
use crate::observe::flow::{FlowObservation, Side};
use crate::observe::host::HostSnapshot;
use crate::observe::latency::TargetLatency;
use crate::observe::socket::{SocketSnapshot, TcpState};
use crate::observe::trace::TraceSummary;
use crate::observe::transfer::{ConnectObservation, ReceiverHost, Transfer};
use crate::observe::LimitShares;
use crate::rules::latency::ProbeContext;
use crate::rules::{
    buffers, host, kernel, kernel_events, latency, loss, receiver, sender, setup, timeout,
};
use crate::window::RcvSettings;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A path the user names: its rate and round-trip time (buffers are checked against its BDP).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathSpec {
    pub rate_bps: f64,
    pub rtt: Duration,
}

/// What the rules need to know about the host live sockets are on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct HostContext {
    /// The running kernel; `None` when unknown (no known-issue findings then).
    pub kernel: Option<KernelVersion>,
    /// This host's receive settings; `None` when unknown (no SO_RCVBUF inference then).
    pub settings: Option<RcvSettings>,
}

impl HostContext {
    /// A context for `kernel` with `settings` (from `netblame_linux::sysctl::rcv_settings`).
    pub fn new(kernel: KernelVersion, settings: RcvSettings) -> HostContext {
        HostContext {
            kernel: Some(kernel),
            settings: Some(settings),
        }
    }

    /// The rcv_wscale autotuned sockets negotiate on this host.
    pub fn autotuned_wscale(&self) -> Option<u8> {
        Some(crate::window::autotuned_wscale(
            self.kernel.as_ref()?,
            self.settings.as_ref()?,
        ))
    }

    fn receiver_host(&self) -> Option<ReceiverHost> {
        Some(ReceiverHost {
            kernel: self.kernel.clone()?,
            settings: self.settings.clone()?,
        })
    }
}

/// A live socket sampled twice: `prev` (the same cookie, `interval` earlier) may be missing.
#[derive(Debug, Clone, Copy)]
pub struct SocketPair<'a> {
    pub prev: Option<&'a SocketSnapshot>,
    pub cur: &'a SocketSnapshot,
}

/// Everything one run observed. Fill what the command saw; leave the rest empty.
#[derive(Debug, Default)]
pub struct Observations<'a> {
    /// The host's sysctls and counters over the window.
    pub host: Option<&'a HostSnapshot>,
    /// A path the user named (`--rate`/`--rtt`).
    pub path: Option<PathSpec>,
    /// Other network namespaces' own counters and sysctls over the same window, by label:
    /// judged each, without repeating what the host's own snapshot already says.
    pub namespaces: Vec<(String, &'a HostSnapshot)>,
    /// Live sockets, with the host they live on and the time between the two samples.
    pub sockets: Vec<SocketPair<'a>>,
    pub socket_host: HostContext,
    pub socket_interval: Duration,
    /// Transfers (throughput tests, lab runs): one per direction.
    pub transfers: Vec<Transfer>,
    /// Connect loops (lab).
    pub connects: Vec<ConnectObservation>,
    /// Connections reconstructed from a capture.
    pub flows: &'a [FlowObservation],
    /// Latency probes and the prober's context.
    pub latency: Option<(&'a [TargetLatency], &'a ProbeContext)>,
    /// Kernel events from tracepoints.
    pub trace: Option<&'a TraceSummary>,
}

/// The verdict on one live connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ConnectionVerdict {
    /// What bounded the sender over the interval; `None` without two samples, on kernels
    /// without the stopwatches, or for sockets that are not established.
    pub limit: Option<Limit>,
    /// The shares behind `limit`.
    pub shares: Option<LimitShares>,
    /// Ranked most severe first.
    pub findings: Vec<Finding>,
}

impl ConnectionVerdict {
    /// The most severe finding's severity, if any.
    pub fn severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// True when at least one finding is a warning or worse.
    pub fn is_problem(&self) -> bool {
        self.severity().is_some_and(|s| s >= Severity::Warning)
    }

    /// One short line: the worst finding's id, or the limit, or `-`.
    pub fn headline(&self) -> String {
        match (self.findings.first(), self.limit) {
            (Some(f), _) => one_line(&self.findings, f),
            (None, Some(Limit::Application)) => "idle".into(),
            (None, Some(l)) => format!("{l}-limited"),
            (None, None) => "-".into(),
        }
    }
}

fn one_line(findings: &[Finding], first: &Finding) -> String {
    if findings.len() > 1 {
        format!("{} (+{})", first.id, findings.len() - 1)
    } else {
        first.id.to_string()
    }
}

/// The headline of a report.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    /// The layer to blame; `None` when no finding reaches a warning.
    pub blame: Option<Layer>,
    /// The most severe finding's severity, if any.
    pub worst: Option<Severity>,
    /// "Blame the application: ..." or "No TCP problem found".
    pub headline: String,
}

impl Default for Verdict {
    /// The verdict on nothing found.
    fn default() -> Verdict {
        verdict(&[])
    }
}

/// A finding id as reported once: its most severe instance, and how many instances merged
/// into it (connections, flows, directions showing it).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Ranked {
    #[serde(flatten)]
    pub finding: Finding,
    /// Instances merged into this one (1 when it was seen once).
    pub seen: usize,
}

/// What [`diagnose`] returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Diagnosis {
    pub verdict: Verdict,
    /// One entry per finding id, ranked: severity, then layer, then how often, then id.
    pub findings: Vec<Ranked>,
    /// Every live connection's verdict, in the order of `Observations::sockets`.
    #[serde(skip)]
    pub connections: Vec<ConnectionVerdict>,
    /// Every captured connection's findings (ranked), in the order of `Observations::flows`.
    #[serde(skip)]
    pub flows: Vec<Vec<Finding>>,
    /// The host's own findings (ranked): its snapshot's, without other namespaces' or connections'.
    #[serde(skip)]
    pub host: Vec<Finding>,
    /// Every other namespace's findings (ranked), in the order of `Observations::namespaces`.
    #[serde(skip)]
    pub namespaces: Vec<Vec<Finding>>,
    /// Every finding before merging, ranked.
    #[serde(skip)]
    pub all: Vec<Finding>,
}

impl Diagnosis {
    /// The verdict the top line shows.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The merged findings without their counts.
    pub fn plain(&self) -> Vec<Finding> {
        self.findings.iter().map(|r| r.finding.clone()).collect()
    }

    /// The most severe finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|r| r.finding.severity).max()
    }
}

/// Applies every rule to every observation, merges, ranks and picks the verdict.
pub fn diagnose(obs: &Observations) -> Diagnosis {
    let mut all = Vec::new();
    if let Some(snap) = obs.host {
        all.extend(judge_host(snap, obs.path));
    }
    rank(&mut all);
    let own = all.clone();
    let namespaces: Vec<Vec<Finding>> = obs
        .namespaces
        .iter()
        .map(|(label, snap)| {
            let mut f: Vec<Finding> = judge_host(snap, obs.path)
                .into_iter()
                .filter(|f| !own.iter().any(|h| h.id == f.id && h.summary == f.summary))
                .map(|mut f| {
                    f.subject = Some(match f.subject.take() {
                        Some(s) => format!("netns {label}: {s}"),
                        None => format!("netns {label}"),
                    });
                    f
                })
                .collect();
            rank(&mut f);
            f
        })
        .collect();
    for f in &namespaces {
        all.extend(f.iter().cloned());
    }
    let connections: Vec<ConnectionVerdict> = obs
        .sockets
        .iter()
        .map(|p| connection(p.prev, p.cur, obs.socket_interval, &obs.socket_host))
        .collect();
    for c in &connections {
        all.extend(c.findings.iter().cloned());
    }
    if let Some(snap) = obs.host {
        join_throttled_owners(&mut all, snap, &obs.sockets, &connections);
    }
    for t in &obs.transfers {
        all.extend(transfer(t));
    }
    for c in &obs.connects {
        all.extend(setup::judge_connects(c));
    }
    let flows: Vec<Vec<Finding>> = obs.flows.iter().map(capture).collect();
    for f in &flows {
        all.extend(f.iter().cloned());
    }
    if let Some((targets, ctx)) = obs.latency {
        all.extend(latency::judge(targets, ctx));
    }
    if let Some(t) = obs.trace {
        all.extend(kernel_events::findings(t));
    }
    rank(&mut all);
    let findings = merge(&all);
    let plain: Vec<Finding> = findings.iter().map(|r| r.finding.clone()).collect();
    Diagnosis {
        verdict: verdict(&plain),
        findings,
        connections,
        flows,
        host: own,
        namespaces,
        all,
    }
}

/// Joins a throttled cgroup (`cpu-throttled`) with what its processes' connections suffered:
/// how many there are, and which findings they show, so the verdict names the container and
/// the harm together (the Datadog chain: a throttled sidecar, then its peers' zero windows and
/// retransmissions).
fn join_throttled_owners(
    all: &mut [Finding],
    snap: &HostSnapshot,
    sockets: &[SocketPair],
    verdicts: &[ConnectionVerdict],
) {
    for cg in snap.cgroup_deltas() {
        let subject = format!("cgroup {}", cg.path);
        let Some(f) = all.iter_mut().find(|f| {
            f.id == host::CPU_THROTTLED.id && f.subject.as_deref() == Some(subject.as_str())
        }) else {
            continue;
        };
        let pids: Vec<u32> = cg.owners.iter().map(|o| o.pid).collect();
        let mut owned = 0usize;
        let mut with_problems = 0usize;
        let mut ids: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (p, v) in sockets.iter().zip(verdicts) {
            if !p.cur.owners.iter().any(|o| pids.contains(&o.pid)) {
                continue;
            }
            owned += 1;
            if v.is_problem() {
                with_problems += 1;
            }
            for x in &v.findings {
                *ids.entry(x.id).or_default() += 1;
            }
        }
        if owned == 0 {
            continue;
        }
        let shown: Vec<String> = ids.iter().map(|(id, n)| format!("{id} on {n}")).collect();
        f.summary += &format!(
            "; its {owned} connection{} show{} {}",
            if owned == 1 { "" } else { "s" },
            if owned == 1 { "s" } else { "" },
            if shown.is_empty() {
                "nothing wrong over the window".to_string()
            } else {
                shown.join(", ")
            }
        );
        f.evidence.push(crate::finding::Evidence {
            name: "owner_connections".into(),
            value: owned as f64,
            unit: crate::finding::Unit::Count,
        });
        f.evidence.push(crate::finding::Evidence {
            name: "owner_connections_with_problems".into(),
            value: with_problems as f64,
            unit: crate::finding::Unit::Count,
        });
    }
}

/// Every host-level rule on one snapshot: resources, buffers and scaling (against `path`),
/// loss counters, setup counters, kernel known issues.
pub fn judge_host(snap: &HostSnapshot, path: Option<PathSpec>) -> Vec<Finding> {
    let mut out = buffers::judge_host(snap, path.map(|p| (p.rate_bps, p.rtt)));
    out.extend(kernel::judge_host(snap));
    out.extend(host::judge(snap));
    out.extend(setup::judge_host(snap));
    out.extend(loss::judge_host(snap));
    out
}

/// The verdict on one live connection. `prev` is the same socket (same cookie) `interval`
/// earlier; without it only the instant rules run (zero window, configuration).
pub fn connection(
    prev: Option<&SocketSnapshot>,
    cur: &SocketSnapshot,
    interval: Duration,
    ctx: &HostContext,
) -> ConnectionVerdict {
    let mut v = ConnectionVerdict::default();
    let Some(info) = cur.tcp_info.as_ref() else {
        return v;
    };
    if !matches!(cur.state, TcpState::Established | TcpState::CloseWait) {
        return v;
    }
    let prev = prev.filter(|p| p.cookie == cur.cookie && p.inode == cur.inode);
    let out = cur.outbound(prev, interval);
    let mut inb = cur.inbound(prev, interval);
    inb.receiver.host = ctx.receiver_host();
    if let (Some(h), Some(m)) = (&inb.receiver.host, cur.skmem) {
        let rb = m.rcvbuf_bytes as u64;
        if info.has_wscale()
            && buffers::rcvbuf_inferred(&h.kernel, &h.settings, info.rcv_wscale, rb)
        {
            inb.receiver.so_rcvbuf = Some(rb / 2);
            inb.receiver.so_rcvbuf_inferred = true;
        }
    }
    v.shares = out.sender.shares;
    v.limit = sender::limit(&out).map(|l| l.0);
    if out.sender.observed {
        v.findings.extend(sender::judge(&out));
    }
    v.findings.extend(receiver::judge(&inb));
    if !info.has_wscale() {
        v.findings.push(buffers::window_scaling_absent(&inb));
    } else if inb.receiver.so_rcvbuf_inferred {
        v.findings.extend(buffers::rcvbuf_fixed_small(&inb));
    }
    rank(&mut v.findings);
    v.findings = dedup_same_subject(std::mem::take(&mut v.findings));
    v
}

/// The findings on one transfer (a throughput test's direction, a lab run).
pub fn transfer(t: &Transfer) -> Vec<Finding> {
    let mut out = sender::judge(t);
    // Without a timeline of arrivals there is nothing observed to judge the deadline against
    // (a lab run only gives the model its size and timeout: `transfer-misses-timeout`).
    if let Some(d) = t.deadline.as_ref().filter(|d| !d.timeline.is_empty()) {
        out.push(timeout::from_deadline(&t.subject, d));
    }
    out
}

/// The findings on one captured connection, ranked: each direction as a transfer, the close
/// (application timeout), the handshake (SYN retransmissions, refusal).
pub fn capture(flow: &FlowObservation) -> Vec<Finding> {
    let mut out = Vec::new();
    for side in [Side::Client, Side::Server] {
        let s = flow.sent_by(side);
        let zero = flow.zero_windows.iter().any(|e| e.side == side.other());
        if s.unique_bytes == 0 && s.retransmissions == 0 && !zero {
            continue;
        }
        out.extend(sender::judge(&flow.transfer(side)));
    }
    let rtt = flow
        .handshake
        .rtt_us
        .map(Duration::from_micros)
        .unwrap_or_default();
    if let Some(sig) = timeout::close_signature(flow, rtt) {
        out.push(timeout::from_close(&sig));
    }
    out.extend(setup::judge_flow(flow, flow.is_loopback()));
    let subject = format!("#{} {}", flow.id, flow.label());
    for f in &mut out {
        f.subject = Some(subject.clone());
    }
    rank(&mut out);
    dedup_same_subject(out)
}

/// The one-line verdict of a connection for a table: the most severe finding's id, or `ok`.
pub fn headline(findings: &[Finding]) -> String {
    match findings.first() {
        None => "ok".to_string(),
        Some(f) => one_line(findings, f),
    }
}

/// Sorts findings most severe first, then by layer and id: the order every report uses.
pub fn rank(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.layer.cmp(&b.layer))
            .then(a.id.cmp(b.id))
    });
}

/// Keeps the most severe of findings with the same id and subject (input ranked).
fn dedup_same_subject(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        if !out.iter().any(|g| g.id == f.id && g.subject == f.subject) {
            out.push(f);
        }
    }
    out
}

/// One entry per id: the most severe instance (the first, as `all` is ranked), counted.
fn merge(all: &[Finding]) -> Vec<Ranked> {
    let mut by_id: BTreeMap<&'static str, Ranked> = BTreeMap::new();
    let mut order = Vec::new();
    for f in all {
        by_id
            .entry(f.id)
            .and_modify(|r| r.seen += 1)
            .or_insert_with(|| {
                order.push(f.id);
                Ranked {
                    finding: f.clone(),
                    seen: 1,
                }
            });
    }
    let mut out: Vec<Ranked> = order
        .into_iter()
        .filter_map(|id| by_id.remove(id))
        .collect();
    out.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then(a.finding.layer.cmp(&b.finding.layer))
            .then(b.seen.cmp(&a.seen))
            .then(a.finding.id.cmp(b.finding.id))
    });
    out
}

/// Picks the layer to blame: the layer of the most severe findings; among layers with
/// findings at that severity, the one with the most of them (then the order network, kernel,
/// host, application). Notes never blame.
pub fn verdict(findings: &[Finding]) -> Verdict {
    let worst = findings.iter().map(|f| f.severity).max();
    let Some(top) = worst.filter(|s| *s >= Severity::Warning) else {
        let notes = findings.len();
        return Verdict {
            blame: None,
            worst,
            headline: match notes {
                0 => "No TCP problem found".to_string(),
                1 => "No TCP problem found (1 note below)".to_string(),
                n => format!("No TCP problem found ({n} notes below)"),
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
    let more = match findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .count()
        - 1
    {
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

/// The culprit a lab scenario expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Expected {
    /// The finding id that must appear at warning or above; `None` = nothing above a note.
    pub finding: Option<&'static str>,
    pub layer: Option<Layer>,
}

impl Expected {
    /// True when the findings name the expected culprit (the id, at warning or above, on the
    /// expected layer), or, when nothing is expected, when no finding is above a note.
    pub fn matches(&self, findings: &[Finding]) -> bool {
        match self.finding {
            None => findings.iter().all(|f| f.severity <= Severity::Info),
            Some(id) => findings.iter().any(|f| {
                f.id == id
                    && f.severity >= Severity::Warning
                    && self.layer.is_none_or(|l| l == f.layer)
            }),
        }
    }
}

#[cfg(test)]
#[path = "diagnose_tests.rs"]
mod tests;
