//! The one place the agent asks netblame-core what a scan means.
//!
//! [`judge`] takes a scan's observations and returns the findings (one per id, its most severe
//! instance, with how many connections showed it), the verdict, and each judged connection's
//! limit. Today it calls the current core rules the way `netblame doctor` does
//! (`rules::host::judge`, `rules::connection::judge`, `rank`, `rules::verdict::verdict`); when
//! core's single `diagnose` step lands, only the body of [`judge`] changes.

use crate::scan::ScanObservations;
use netblame_core::rules::connection::{judge as judge_connection, HostContext};
use netblame_core::rules::host::judge as judge_host;
use netblame_core::rules::verdict::{verdict, Verdict};
use netblame_core::{rank, Finding, Limit};
use serde::Serialize;
use std::collections::BTreeMap;

/// A finding with how many connections showed it (0 for host findings).
#[derive(Debug, Clone, Serialize)]
pub struct JudgedFinding {
    #[serde(flatten)]
    pub finding: Finding,
    pub connections: usize,
}

/// One connection's judgement (only what the metrics aggregate).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionJudgement {
    /// Index into [`ScanObservations::sockets`].
    pub socket: usize,
    /// What bounded its sender over the window; `None` when unknown (first sample, no
    /// stopwatches in this kernel's `tcp_info`).
    pub limit: Option<Limit>,
    /// A warning or worse.
    pub problem: bool,
}

/// What a scan means.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Most severe first; one entry per id.
    pub findings: Vec<JudgedFinding>,
    /// Established and close-wait connections, judged.
    #[serde(skip)]
    pub connections: Vec<ConnectionJudgement>,
}

/// Judges one scan. **The single call site of core's rules in the agent**: swap its body for
/// core's `diagnose` when that lands.
pub fn judge(obs: &ScanObservations) -> Judgement {
    let ctx = match &obs.kernel {
        Some(k) => HostContext::new(k.clone(), netblame_linux::sysctl::rcv_settings(k)),
        None => HostContext::default(),
    };
    let interval = obs.interval.max(std::time::Duration::from_millis(1));
    let mut connections = Vec::new();
    let mut conn_findings: Vec<Finding> = Vec::new();
    for (i, s) in obs.sockets.iter().enumerate() {
        if !matches!(
            s.state,
            netblame_core::observe::TcpState::Established
                | netblame_core::observe::TcpState::CloseWait
        ) || s.tcp_info.is_none()
        {
            continue;
        }
        let prev = obs.previous.get(&s.cookie);
        let v = judge_connection(prev, s, interval, &ctx);
        connections.push(ConnectionJudgement {
            socket: i,
            limit: v.limit,
            problem: v.is_problem(),
        });
        conn_findings.extend(v.findings);
    }
    rank(&mut conn_findings);
    let mut by_id: BTreeMap<&'static str, JudgedFinding> = BTreeMap::new();
    for f in conn_findings {
        by_id
            .entry(f.id)
            .and_modify(|r| r.connections += 1)
            .or_insert(JudgedFinding {
                finding: f,
                connections: 1,
            });
    }
    let mut host_findings = obs
        .host
        .as_ref()
        .map(|h| judge_host(h, obs.path))
        .unwrap_or_default();
    host_findings.retain(|h| {
        by_id
            .get(h.id)
            .is_none_or(|c| c.finding.severity < h.severity)
    });
    let mut findings: Vec<JudgedFinding> = host_findings
        .into_iter()
        .map(|f| JudgedFinding {
            finding: f,
            connections: 0,
        })
        .chain(by_id.into_values())
        .collect();
    // A host finding and a connection finding of the same id: keep the more severe one.
    let mut seen = std::collections::HashSet::new();
    findings.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then(a.finding.layer.cmp(&b.finding.layer))
            .then(b.connections.cmp(&a.connections))
            .then(a.finding.id.cmp(b.finding.id))
    });
    findings.retain(|f| seen.insert(f.finding.id));
    let plain: Vec<Finding> = findings.iter().map(|r| r.finding.clone()).collect();
    Judgement {
        verdict: verdict(&plain),
        findings,
        connections,
    }
}
