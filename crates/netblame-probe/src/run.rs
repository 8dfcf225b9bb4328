//! Running probes: one scheduler thread per target fires probes on the fixed schedule; replies
//! are matched to their probe by sequence number and recorded against the scheduled time.

pub use crate::config::{ProbeConfig, ProbeError, MAX_PROBES};
use crate::kinds;
use crate::report::{self, TargetRun};
use crate::schedule;
use crate::state::{Slot, TargetState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Live counters of one target, for a progress line.
#[derive(Debug, Clone)]
pub struct Progress {
    pub target: String,
    pub sent: u64,
    pub received: u64,
    /// Probes that ended without a reply so far, or whose timeout passed.
    pub lost: u64,
    pub last_latency: Option<Duration>,
}

/// A run in progress.
pub struct RunningProbe {
    config: ProbeConfig,
    states: Vec<Arc<TargetState>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    started: SystemTime,
}

/// Validates the configuration, opens every target (an `rr` connection, a socket), and starts the
/// schedule. Errors name the target that could not be opened.
pub fn start(config: ProbeConfig) -> Result<RunningProbe, ProbeError> {
    if config.targets.is_empty() {
        return Err(ProbeError::Config("no target to probe".into()));
    }
    if config.interval.is_zero() {
        return Err(ProbeError::Config("--interval must be above zero".into()));
    }
    if config.timeout.is_zero() {
        return Err(ProbeError::Config("--timeout must be above zero".into()));
    }
    if config.count == 0 {
        return Err(ProbeError::Config(
            "nothing to send: --count (or --duration / --interval) gives 0 probes".into(),
        ));
    }
    if config.count > MAX_PROBES {
        return Err(ProbeError::Config(format!(
            "{} probes per target is more than this prober keeps in memory ({MAX_PROBES}); lengthen --interval or shorten --duration",
            config.count
        )));
    }
    if (config.tls.insecure || config.tls.cacert.is_some()) && !config.targets.iter().any(|t| t.tls)
    {
        return Err(ProbeError::Config(
            "--insecure and --cacert apply to https:// targets only (with --kind http)".into(),
        ));
    }
    let min = kinds::min_size(config.kind, config.request);
    if config.size < min || config.size > 65_000 {
        return Err(ProbeError::Config(format!(
            "--size must be between {min} and 65000 bytes for --kind {} (got {})",
            config.kind, config.size
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Open everything first, so a bad target fails before any probe leaves.
    let mut states = Vec::new();
    let mut probers = Vec::new();
    for t in &config.targets {
        let state = Arc::new(TargetState {
            start: std::sync::OnceLock::new(),
            interval: config.interval,
            timeout: config.timeout,
            slots: Mutex::new(vec![Slot::default(); config.count as usize]),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            stop: stop.clone(),
        });
        let prober = kinds::open(&config, t, state.clone()).map_err(|e| ProbeError::Open {
            target: t.label.clone(),
            message: e.to_string(),
        })?;
        states.push(state);
        probers.push(prober);
    }
    // The schedule starts once everything is open (opening an rr connection takes time).
    let start_at = Instant::now() + Duration::from_millis(20);
    for s in &states {
        let _ = s.start.set(start_at);
    }
    let started = SystemTime::now() + start_at.saturating_duration_since(Instant::now());
    let mut handles = Vec::new();
    for (state, mut prober) in states.iter().cloned().zip(probers) {
        let count = config.count;
        let h = std::thread::Builder::new()
            .name("netblame-sched".into())
            .spawn(move || {
                schedule::precise_timers();
                let mut fired = 0;
                for seq in 0..count {
                    if state.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let at = state.scheduled(seq);
                    // Wait in slices so an interrupt is seen within 100 ms even for long intervals.
                    let mut woke = Instant::now();
                    while woke < at && !state.stop.load(Ordering::Relaxed) {
                        prober.idle(at.min(woke + Duration::from_millis(100)));
                        woke = Instant::now();
                    }
                    if woke < at {
                        break;
                    }
                    state.mark_sent(seq, woke.saturating_duration_since(at).as_nanos() as u64);
                    prober.fire(seq);
                    fired = seq + 1;
                }
                // Wait for the last replies: until every sent probe ended or its timeout passed.
                if fired > 0 {
                    let mut deadline = state.scheduled(fired - 1) + state.timeout;
                    let mut shortened = false;
                    loop {
                        let now = Instant::now();
                        if !shortened && state.stop.load(Ordering::Relaxed) {
                            // Interrupted: give the probes in flight a moment, not a whole timeout.
                            deadline =
                                deadline.min(now + state.timeout.min(Duration::from_millis(500)));
                            shortened = true;
                        }
                        if now >= deadline
                            || state.done.load(Ordering::Relaxed)
                                >= state.sent.load(Ordering::Relaxed)
                        {
                            break;
                        }
                        prober.idle((now + Duration::from_millis(2)).min(deadline));
                    }
                }
                prober.finish();
            })
            .map_err(|e| ProbeError::Config(format!("cannot start the scheduler thread: {e}")))?;
        handles.push(h);
    }
    Ok(RunningProbe {
        config,
        states,
        handles,
        stop,
        started,
    })
}

impl RunningProbe {
    /// Live counters per target.
    pub fn progress(&self) -> Vec<Progress> {
        let now = Instant::now();
        self.config
            .targets
            .iter()
            .zip(&self.states)
            .map(|(t, s)| {
                let sent = s.sent.load(Ordering::Relaxed);
                let received = s.received.load(Ordering::Relaxed);
                // Probes whose timeout has passed without a reply.
                let expired = if now > s.start() + s.timeout {
                    let since =
                        (now - s.start() - s.timeout).as_nanos() / s.interval.as_nanos().max(1);
                    (since as u64 + 1).min(sent)
                } else {
                    0
                };
                let last = s.last_ns.load(Ordering::Relaxed);
                Progress {
                    target: t.label.clone(),
                    sent,
                    received,
                    lost: expired.saturating_sub(received.min(expired)),
                    last_latency: (last > 0).then(|| Duration::from_nanos(last)),
                }
            })
            .collect()
    }

    /// True when every scheduler has finished.
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Asks the run to stop early (Ctrl-C): no further probes leave; probes in flight get up to
    /// 500 ms (or their timeout, if shorter) to answer, then count as lost.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the end of the run and returns what every target saw.
    pub fn wait(self) -> Vec<TargetRun> {
        for h in self.handles {
            let _ = h.join();
        }
        let started = self.started;
        self.config
            .targets
            .iter()
            .zip(self.states)
            .map(|(t, s)| {
                let slots = std::mem::take(&mut *s.slots.lock().unwrap_or_else(|e| e.into_inner()));
                report::build(&self.config, t, started, &slots)
            })
            .collect()
    }
}
