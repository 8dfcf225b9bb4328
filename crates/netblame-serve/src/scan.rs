//! One scan: everything the agent observes each interval, gathered from netblame-linux's public
//! API — one sock_diag dump of every TCP socket (with owners), the host's counters (TcpExt/Tcp,
//! softnet, devices, qdiscs, NIC statistics, cgroup CPU of socket owners), the audited sysctls
//! and the kernel version. Counters are compared with the previous scan's read, so the window of
//! every delta is the time between two scans (no sleeping inside a scan), and each established
//! connection is judged over the same window from its previous sample (matched by socket cookie).
//!
//! Nothing here fails a scan: a source that cannot be read (no privilege, a namespace deleted,
//! `/proc` files unreadable, processes and sockets that vanish mid-read) becomes a
//! [`Skipped`] note and the rest of the scan goes on.

use crate::config::Config;
use netblame_core::observe::host::{HostCounters, HostSnapshot, Skipped};
use netblame_core::observe::{SocketSnapshot, TcpState};
use netblame_core::rules::host::PathSpec;
use netblame_core::KernelVersion;
use netblame_linux::diag::{dump, DumpRequest};
use netblame_linux::host as linux_host;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// What one scan saw: the input of [`crate::judge::judge`].
#[derive(Debug, Default)]
pub struct ScanObservations {
    /// When the scan started.
    pub at: Option<SystemTime>,
    /// The host over the window since the previous scan (`before` = that scan's counters; on the
    /// first scan `before` = `after` and nothing has moved). `None` when the host source is off.
    pub host: Option<HostSnapshot>,
    /// Every TCP socket this scan dumped (all states); empty when the socket source is off or
    /// the dump failed (then `skipped` says why).
    pub sockets: Vec<SocketSnapshot>,
    /// The previous scan's established and close-wait sockets by cookie: the first sample of
    /// each connection's window.
    pub previous: HashMap<u64, SocketSnapshot>,
    /// Time since the previous scan's socket dump (the connections' window).
    pub interval: Duration,
    /// The running kernel, when known.
    pub kernel: Option<KernelVersion>,
    /// The path this host must fill (config `[path]`).
    pub path: Option<PathSpec>,
    /// What could not be observed, and why.
    pub skipped: Vec<Skipped>,
    /// How long the scan took.
    pub duration: Duration,
}

/// Keeps what the next scan compares with: the last counters and the last sockets.
#[derive(Debug, Default)]
pub struct Scanner {
    counters: Option<(HostCounters, Instant)>,
    previous: HashMap<u64, SocketSnapshot>,
    previous_at: Option<Instant>,
}

fn skip(out: &mut Vec<Skipped>, section: &str, reason: String) {
    if !out
        .iter()
        .any(|s| s.section == section && s.reason == reason)
    {
        out.push(Skipped {
            section: section.to_string(),
            reason,
        });
    }
}

fn judged_state(s: TcpState) -> bool {
    matches!(s, TcpState::Established | TcpState::CloseWait)
}

impl Scanner {
    /// A scanner with no history: the first scan has no deltas and judges no connection over a
    /// window.
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// Observes the host and its sockets now, from the calling thread's network namespace.
    pub fn scan(&mut self, cfg: &Config) -> ScanObservations {
        let started = Instant::now();
        let mut obs = ScanObservations {
            at: Some(SystemTime::now()),
            path: cfg.path.map(|(rate, rtt)| PathSpec {
                rate_bps: rate.bits_per_second(),
                rtt,
            }),
            ..Default::default()
        };
        let mut skipped = Vec::new();
        let dumped_at = Instant::now();
        if cfg.sources.sockets {
            let req = DumpRequest {
                states: Vec::new(),
                processes: cfg.sources.processes,
                ..Default::default()
            };
            match dump(&req) {
                Ok(d) => {
                    if let Some(l) = d.stats.limitation() {
                        skip(&mut skipped, "processes", l);
                    }
                    obs.sockets = d.sockets;
                }
                Err(e) => skip(
                    &mut skipped,
                    "sockets",
                    format!("sock_diag dump failed: {e}"),
                ),
            }
        }
        obs.interval = self
            .previous_at
            .map(|t| dumped_at.duration_since(t))
            .unwrap_or_default();
        obs.previous = std::mem::take(&mut self.previous);
        self.previous_at = cfg.sources.sockets.then_some(dumped_at);

        match netblame_linux::sysctl::kernel_version() {
            Ok(k) => obs.kernel = Some(k),
            Err(e) => skip(&mut skipped, "kernel version", e.to_string()),
        }
        if cfg.sources.host {
            let targets = if cfg.sources.cgroups && cfg.sources.processes {
                linux_host::cgroup_targets(&obs.sockets, &mut skipped)
            } else {
                Vec::new()
            };
            let sysctls = linux_host::read_sysctls(&mut skipped);
            let now = Instant::now();
            let after = linux_host::read_counters(&targets, &mut skipped);
            let (before, window) = match self.counters.take() {
                Some((c, t)) => (c, now.duration_since(t)),
                None => (after.clone(), Duration::ZERO),
            };
            self.counters = Some((after.clone(), now));
            obs.host = Some(HostSnapshot {
                collector: format!("netblame serve {}", env!("CARGO_PKG_VERSION")),
                hostname: netblame_linux::sysctl::read("kernel.hostname").ok(),
                kernel: obs.kernel.clone(),
                sysctls,
                before,
                after,
                // Never zero: rules divide by the window.
                window_us: (window.as_micros() as u64).max(1),
                skipped: Vec::new(),
            });
        }
        if let Some(h) = obs.host.as_mut() {
            h.skipped = skipped.clone();
        }
        obs.skipped = skipped;
        obs.duration = started.elapsed();
        obs
    }

    /// Keeps this scan's established and close-wait sockets as the next scan's first samples.
    pub fn keep(&mut self, obs: ScanObservations) {
        self.previous = obs
            .sockets
            .into_iter()
            .filter(|s| judged_state(s.state) && s.tcp_info.is_some())
            .map(|s| (s.cookie, s))
            .collect();
    }
}
