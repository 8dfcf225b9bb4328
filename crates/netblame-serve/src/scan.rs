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
use netblame_core::diagnose::PathSpec;
use netblame_core::observe::host::{HostCounters, HostSnapshot, Skipped};
use netblame_core::observe::{SocketSnapshot, TcpState};
use netblame_core::KernelVersion;
use netblame_linux::diag::{dump_each, DumpRequest};
use netblame_linux::host as linux_host;
use netblame_linux::procmap::ProcMap;
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
    /// The previous scan's established and close-wait sockets: the first sample of each
    /// connection's window.
    pub previous: Previous,
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
    /// How long each part took (`dump`, `processes`, `host`), for `/findings`.
    pub phases: Vec<(&'static str, Duration)>,
    /// True when this scan read `/proc` for socket owners (otherwise they came from the last
    /// read, see [`PROC_REFRESH_EVERY`]).
    pub processes_refreshed: bool,
}

/// The previous scan's judged sockets, sorted by cookie (a compact sorted vector: at 36,000
/// connections a hash map would hold twice the memory).
#[derive(Debug, Default)]
pub struct Previous(Vec<SocketSnapshot>);

impl Previous {
    /// The previous sample of the socket with this cookie.
    pub fn get(&self, cookie: &u64) -> Option<&SocketSnapshot> {
        self.0
            .binary_search_by_key(cookie, |s| s.cookie)
            .ok()
            .map(|i| &self.0[i])
    }

    /// How many sockets it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `/proc` scan that maps sockets to processes (one `readlink` per file descriptor of every
/// process: the most expensive part of a scan of many sockets) runs at least every this many
/// scans, and at every scan where more than a tenth of the sockets (and more than 16) have an
/// owner not seen yet; in between, owners come from the last read.
pub const PROC_REFRESH_EVERY: u64 = 4;

/// Keeps what the next scan compares with: the last counters and the last sockets.
#[derive(Debug, Default)]
pub struct Scanner {
    counters: Option<(HostCounters, Instant)>,
    previous: Previous,
    previous_at: Option<Instant>,
    /// The last `/proc` read and how many scans ago it was.
    owners: Option<(ProcMap, u64)>,
    /// Sockets in the last dump (to size the next one's vector).
    last_count: usize,
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
                processes: false,
                ..Default::default()
            };
            // Sized from the last dump: growing a vector of 36,000 snapshots by doubling would
            // hold three times their memory for a moment.
            let mut sockets = Vec::with_capacity(self.last_count + self.last_count / 8 + 64);
            let t = Instant::now();
            match dump_each(&req, |s| sockets.push(s)) {
                Ok(_) => {
                    sockets.shrink_to_fit();
                    self.last_count = sockets.len();
                    obs.sockets = sockets;
                }
                Err(e) => skip(
                    &mut skipped,
                    "sockets",
                    format!("sock_diag dump failed: {e}"),
                ),
            }
            obs.phases.push(("dump", t.elapsed()));
            if cfg.sources.processes {
                let t = Instant::now();
                self.map_owners(&mut obs, &mut skipped);
                obs.phases.push(("processes", t.elapsed()));
            } else {
                self.owners = None;
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
        let host_started = Instant::now();
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
        if cfg.sources.host {
            obs.phases.push(("host", host_started.elapsed()));
        }
        if let Some(h) = obs.host.as_mut() {
            h.skipped = skipped.clone();
        }
        obs.skipped = skipped;
        obs.duration = started.elapsed();
        obs
    }

    /// Gives each dumped socket its owners, from a fresh `/proc` read or the last one.
    fn map_owners(&mut self, obs: &mut ScanObservations, skipped: &mut Vec<Skipped>) {
        let with_inode = obs.sockets.iter().filter(|s| s.inode != 0);
        let refresh = match &self.owners {
            None => true,
            Some((_, age)) if *age + 1 >= PROC_REFRESH_EVERY => true,
            Some((map, _)) => {
                let (mut total, mut unknown) = (0usize, 0usize);
                for s in with_inode {
                    total += 1;
                    unknown += map.owners(s.inode).is_none() as usize;
                }
                unknown > 16 && unknown * 10 > total
            }
        };
        if refresh {
            self.owners = Some((ProcMap::scan(None), 0));
            obs.processes_refreshed = true;
        } else if let Some((_, age)) = self.owners.as_mut() {
            *age += 1;
        }
        let Some((map, _)) = &self.owners else { return };
        if map.unreadable_processes > 0 {
            skip(
                skipped,
                "processes",
                format!(
                    "{} processes of other users could not be read (run as root to see them): their sockets have no owner",
                    map.unreadable_processes
                ),
            );
        }
        for s in obs.sockets.iter_mut() {
            if s.inode != 0 {
                if let Some(o) = map.owners(s.inode) {
                    s.owners = o.to_vec();
                }
            }
        }
    }

    /// Keeps this scan's established and close-wait sockets as the next scan's first samples
    /// (without their owners, which the judging does not read from a previous sample).
    pub fn keep(&mut self, obs: ScanObservations) {
        let mut prev: Vec<SocketSnapshot> = obs
            .sockets
            .into_iter()
            .filter(|s| judged_state(s.state) && s.tcp_info.is_some())
            .map(|mut s| {
                s.owners = Vec::new();
                s
            })
            .collect();
        prev.sort_unstable_by_key(|s| s.cookie);
        prev.shrink_to_fit();
        self.previous = Previous(prev);
    }
}
