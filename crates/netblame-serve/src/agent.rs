//! The agent: binds the endpoints, runs the scan loop on its own thread, and handles signals
//! (`SIGHUP` reloads the configuration, `SIGTERM`/`SIGINT` stop cleanly).

use crate::config::{Config, ConfigError};
use crate::events::{EventLog, Tracker};
use crate::http::{Endpoints, Http};
use crate::judge::judge;
use crate::judge::JudgedFinding;
use crate::metrics::{self, ProbeMetrics, Published};
use crate::probes::Probers;
use crate::scan::Scanner;
use crate::trace::Tracing;
use netblame_core::diagnose::Verdict;
use netblame_core::json::{JsonDoc, Versioned};
use netblame_core::observe::host::Skipped;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of the HTTP endpoints (port 0: any free port, announced in the `started` event).
    pub listen: SocketAddr,
    /// The TOML configuration; `None` runs with the defaults (and `SIGHUP` has nothing to read).
    pub config: Option<PathBuf>,
    /// The event log file; `None` writes events to standard output.
    pub events: Option<PathBuf>,
    /// Serve the bench and probe responders on this address (`netblame bench server`'s server,
    /// which also answers `netblame probe` and UDP echo).
    pub responder: Option<SocketAddr>,
    /// Scan, probe and respond inside this network namespace (`NAME`, a path, or a PID); the
    /// HTTP endpoints stay in the agent's own namespace.
    pub netns: Option<String>,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the event log {path}: {source}")]
    Events {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network namespace {spec}: {source}")]
    Netns {
        spec: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the responder on {addr}: {source}")]
    Responder {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// `/run/netns/NAME`, `/proc/PID/ns/net`, or the path as given.
pub fn netns_path(spec: &str) -> PathBuf {
    if spec.contains('/') {
        PathBuf::from(spec)
    } else if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        PathBuf::from(format!("/proc/{spec}/ns/net"))
    } else {
        PathBuf::from(format!("/run/netns/{spec}"))
    }
}

fn enter(ns: Option<&File>) -> std::io::Result<()> {
    if let Some(f) = ns {
        // SAFETY: setns with an open namespace fd moves only the calling thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

enum Control {
    Reload(Box<Config>),
    Stop,
}

/// The bench/probe responder, stopped on drop.
struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    fn start(addr: SocketAddr, ns: Option<File>) -> Result<Responder, AgentError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("serve-responder".into())
            .spawn(move || {
                let bound = enter(ns.as_ref()).and_then(|_| {
                    netblame_bench::Server::bind(
                        netblame_bench::ServerConfig {
                            bind: addr,
                            ..Default::default()
                        },
                        |_| {},
                    )
                });
                match bound {
                    Ok(srv) => {
                        let _ = tx.send(Ok(srv.shutdown_handle()));
                        if let Err(e) = srv.serve() {
                            eprintln!("netblame serve: responder stopped: {e}");
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| AgentError::Other(format!("cannot start a thread: {e}")))?;
        match rx.recv() {
            Ok(Ok(stop)) => Ok(Responder {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(source)) => {
                let _ = thread.join();
                Err(AgentError::Responder { addr, source })
            }
            Err(_) => Err(AgentError::Other("the responder thread died".into())),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `/findings` document: the latest scan's verdict and findings.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FindingsDoc<'a> {
    /// Scans since the agent started.
    scan: u64,
    /// When the scan was taken: RFC 3339, UTC, milliseconds.
    at: String,
    /// Seconds between scans.
    interval_s: f64,
    /// The window the host counters were read over, µs (absent before the second scan).
    window_us: Option<u64>,
    /// How long the scan took, µs, and each of its phases.
    scan_duration_us: u64,
    scan_phases_us: BTreeMap<String, u64>,
    /// Process owners were looked up again this scan.
    processes_refreshed: bool,
    kernel: Option<String>,
    verdict: &'a Verdict,
    connections: ConnectionTotals,
    /// Most severe first; one entry per id, with how many connections showed it.
    findings: &'a [JudgedFinding],
    skipped: &'a [Skipped],
    /// With `sources.trace`: whether kernel tracing runs, and why not.
    trace: Option<TraceStatus>,
}

/// Connection counts of a scan.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct ConnectionTotals {
    /// Sockets dumped.
    sockets: usize,
    /// Established and close-wait connections judged.
    judged: usize,
    /// Judged connections with a warning or worse.
    with_problems: usize,
}

/// Whether the agent's kernel tracing runs.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TraceStatus {
    available: bool,
    /// Why tracing is not available here.
    reason: Option<String>,
    /// Trace rounds folded into the metrics.
    rounds: u64,
}

/// The JSON documents the agent serves and writes.
pub const JSON_DOCS: &[JsonDoc] = &[
    JsonDoc::of::<FindingsDoc<'static>>("serve-findings", "GET /findings of netblame serve"),
    JsonDoc::of::<crate::events::EventLine>(
        "serve-events",
        "netblame serve --events FILE (one line per event)",
    ),
];

/// The `/findings` document, as served.
fn findings_doc(
    scans: u64,
    cfg: &Config,
    obs: &crate::scan::ScanObservations,
    j: &crate::judge::Judgement,
    trace: Option<TraceStatus>,
) -> String {
    let at = obs.at.unwrap_or_else(std::time::SystemTime::now);
    let doc = FindingsDoc {
        scan: scans,
        at: crate::events::rfc3339(at),
        interval_s: cfg.interval.as_secs_f64(),
        window_us: obs.host.as_ref().map(|h| h.window_us),
        scan_duration_us: obs.duration.as_micros() as u64,
        scan_phases_us: obs
            .phases
            .iter()
            .map(|(k, d)| (k.to_string(), d.as_micros() as u64))
            .collect(),
        processes_refreshed: obs.processes_refreshed,
        kernel: obs.kernel.as_ref().map(|k| k.to_string()),
        verdict: &j.verdict,
        connections: ConnectionTotals {
            sockets: obs.sockets.len(),
            judged: j.connections.len(),
            with_problems: j.connections.iter().filter(|c| c.problem).count(),
        },
        findings: &j.findings,
        skipped: &obs.skipped,
        trace,
    };
    serde_json::to_string_pretty(&Versioned::new(doc)).unwrap_or_else(|_| "{}".into()) + "\n"
}

/// Runs the agent until `SIGTERM` or `SIGINT`. Refuses to start (with the reason) on a bad
/// configuration, an address in use, an unwritable event log or a missing namespace.
pub fn run(opts: Options) -> Result<(), AgentError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let cfg = match &opts.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let log = Arc::new(match &opts.events {
        Some(p) => EventLog::file(p).map_err(|source| AgentError::Events {
            path: p.display().to_string(),
            source,
        })?,
        None => EventLog::stdout(),
    });
    let ns = match &opts.netns {
        Some(spec) => Some(
            File::open(netns_path(spec)).map_err(|source| AgentError::Netns {
                spec: spec.clone(),
                source,
            })?,
        ),
        None => None,
    };
    // Before any thread starts, so every signal reaches the iterator.
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .map_err(|e| AgentError::Other(format!("cannot install signal handlers: {e}")))?;

    let published = Arc::new(Published::default());
    let probe_metrics = ProbeMetrics::default();
    let trace_totals = crate::trace::Shared::default();
    let ep = Arc::new(Endpoints {
        registry: metrics::registry(published.clone(), &probe_metrics, trace_totals.clone()),
        findings: RwLock::new(Arc::new("{}\n".to_string())),
    });
    let http = Http::start(opts.listen, ep.clone()).map_err(|source| AgentError::Listen {
        addr: opts.listen,
        source,
    })?;
    let responder = match opts.responder {
        Some(addr) => {
            let ns = match &ns {
                Some(f) => Some(
                    f.try_clone()
                        .map_err(|e| AgentError::Other(e.to_string()))?,
                ),
                None => None,
            };
            Some(Responder::start(addr, ns)?)
        }
        None => None,
    };

    let (tx, rx) = mpsc::channel::<Control>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), std::io::Error>>();
    let scan_log = log.clone();
    let scan_cfg = cfg.clone();
    let scan_thread = std::thread::Builder::new()
        .name("serve-scan".into())
        .spawn(move || {
            if let Err(e) = enter(ns.as_ref()) {
                let _ = ready_tx.send(Err(e));
                return;
            }
            scan_loop(
                scan_cfg,
                rx,
                ready_tx,
                &scan_log,
                &published,
                &ep,
                &probe_metrics,
                &trace_totals,
            );
        })
        .map_err(|e| AgentError::Other(format!("cannot start the scan thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(source)) => {
            http.stop();
            let _ = scan_thread.join();
            return Err(AgentError::Netns {
                spec: opts.netns.clone().unwrap_or_default(),
                source,
            });
        }
        Err(_) => {
            http.stop();
            return Err(AgentError::Other(
                "the scan thread died before its first scan".into(),
            ));
        }
    }
    let addr = http.addr();
    log.write(
        "started",
        json!({
            "listen": addr.to_string(),
            "interval_s": cfg.interval.as_secs_f64(),
            "config": opts.config.as_ref().map(|p| p.display().to_string()),
            "responder": opts.responder.map(|a| a.to_string()),
            "netns": opts.netns,
            "series_ceiling": cfg.series_ceiling(),
            "pid": std::process::id(),
        }),
    );
    eprintln!("netblame serve: listening on http://{addr}/metrics");

    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                let Some(path) = &opts.config else {
                    log.write(
                        "config-rejected",
                        json!({"reason": "SIGHUP without --config: nothing to reload"}),
                    );
                    continue;
                };
                match Config::load(path) {
                    Ok(c) => {
                        let _ = tx.send(Control::Reload(Box::new(c)));
                    }
                    Err(e) => {
                        eprintln!("netblame serve: reload refused, keeping the running configuration: {e}");
                        log.write(
                            "config-rejected",
                            json!({"config": path.display().to_string(), "reason": e.to_string()}),
                        );
                    }
                }
            }
            _ => break,
        }
    }
    let _ = tx.send(Control::Stop);
    let _ = scan_thread.join();
    http.stop();
    drop(responder);
    log.write("stopped", json!({"pid": std::process::id()}));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn scan_loop(
    mut cfg: Config,
    rx: mpsc::Receiver<Control>,
    ready: mpsc::Sender<Result<(), std::io::Error>>,
    log: &EventLog,
    published: &Published,
    ep: &Endpoints,
    probe_metrics: &ProbeMetrics,
    trace_totals: &crate::trace::Shared,
) {
    let mut probers = Probers::start(&cfg.probes, probe_metrics, cfg.interval);
    let mut tracing = cfg
        .sources
        .trace
        .then(|| Tracing::start(trace_totals.clone(), cfg.interval));
    let mut scanner = Scanner::new();
    let mut tracker = Tracker::new();
    let mut scans = 0u64;
    let mut ready = Some(ready);
    loop {
        let t0 = Instant::now();
        // A bug met on some host's data must not end the agent: report it and scan again.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut obs = scanner.scan(&cfg);
            let t = Instant::now();
            let j = judge(&obs);
            obs.phases.push(("judge", t.elapsed()));
            obs.duration += t.elapsed();
            tracker.update(&j.findings, log);
            scans += 1;
            let v = metrics::view(&cfg, &obs, &j, tracker.series(), scans);
            published.publish(v);
            let trace = cfg.sources.trace.then(|| {
                let t = trace_totals.lock().unwrap_or_else(|e| e.into_inner());
                TraceStatus {
                    available: t.unavailable.is_none(),
                    reason: t.unavailable.clone(),
                    rounds: t.rounds,
                }
            });
            let doc = findings_doc(scans, &cfg, &obs, &j, trace);
            *ep.findings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(doc);
            scanner.keep(obs);
        }));
        // A scan of many sockets frees tens of megabytes at once: give them back to the system
        // rather than keep the peak resident between scans.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free heap memory; no pointer is involved.
        unsafe {
            libc::malloc_trim(0);
        }
        if let Err(p) = outcome {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            log.write("scan-failed", json!({"reason": what}));
            scanner = Scanner::new();
        }
        if let Some(r) = ready.take() {
            let _ = r.send(Ok(()));
        }
        let next = t0 + cfg.interval;
        loop {
            match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Control::Reload(c)) => {
                    let changed = *c != cfg;
                    if c.probes != cfg.probes || c.interval != cfg.interval {
                        probers.stop();
                        probers = Probers::start(&c.probes, probe_metrics, c.interval);
                    }
                    if c.sources.trace != cfg.sources.trace || c.interval != cfg.interval {
                        if let Some(t) = tracing.take() {
                            t.stop(trace_totals);
                        }
                        tracing = c
                            .sources
                            .trace
                            .then(|| Tracing::start(trace_totals.clone(), c.interval));
                    }
                    cfg = *c;
                    log.write(
                        "reloaded",
                        json!({
                            "changed": changed,
                            "interval_s": cfg.interval.as_secs_f64(),
                            "probes": cfg.probes.len(),
                            "series_ceiling": cfg.series_ceiling(),
                        }),
                    );
                    // Scan now with the new configuration.
                    break;
                }
                Ok(Control::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    probers.stop();
                    drop(tracing);
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= next {
                        break;
                    }
                }
            }
        }
    }
}
