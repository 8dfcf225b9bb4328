//! The one place the agent asks netblame-core what a scan means: core's `diagnose` step, the
//! same one `netblame doctor` runs, on a scan's observations.

use crate::scan::ScanObservations;
use netblame_core::diagnose::{diagnose, HostContext, Observations, SocketPair, Verdict};
use netblame_core::{Finding, Limit};
use serde::Serialize;

/// A finding with how many instances (connections, or the host) showed it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Most severe first; one entry per id.
    pub findings: Vec<JudgedFinding>,
    /// Established and close-wait connections, judged.
    #[serde(skip)]
    pub connections: Vec<ConnectionJudgement>,
}

/// Judges one scan with core's diagnose step: one entry per finding id (its most severe
/// instance, with how many instances merged into it), the verdict, and each connection's limit.
pub fn judge(obs: &ScanObservations) -> Judgement {
    let ctx = match &obs.kernel {
        Some(k) => HostContext::new(k.clone(), netblame_linux::sysctl::rcv_settings(k)),
        None => HostContext::default(),
    };
    let judged: Vec<usize> = obs
        .sockets
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            matches!(
                s.state,
                netblame_core::observe::TcpState::Established
                    | netblame_core::observe::TcpState::CloseWait
            ) && s.tcp_info.is_some()
        })
        .map(|(i, _)| i)
        .collect();
    let d = diagnose(&Observations {
        host: obs.host.as_ref(),
        path: obs.path,
        sockets: judged
            .iter()
            .map(|&i| {
                let s = &obs.sockets[i];
                SocketPair {
                    prev: obs.previous.get(&s.cookie),
                    cur: s,
                }
            })
            .collect(),
        socket_host: ctx,
        socket_interval: obs.interval.max(std::time::Duration::from_millis(1)),
        ..Default::default()
    });
    let connections = judged
        .iter()
        .zip(&d.connections)
        .map(|(&socket, v)| ConnectionJudgement {
            socket,
            limit: v.limit,
            problem: v.is_problem(),
        })
        .collect();
    Judgement {
        verdict: d.verdict().clone(),
        findings: d
            .findings
            .iter()
            .map(|r| JudgedFinding {
                finding: r.finding.clone(),
                connections: r.seen,
            })
            .collect(),
        connections,
    }
}
