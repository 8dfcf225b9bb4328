//! The configured probe targets, probed continuously by netblame-probe's engine on its fixed
//! schedule (probes leave on time whether or not replies came back). The engine keeps every
//! probe of a run in memory, so the agent runs it in rounds of at most [`ROUND`] and feeds each
//! round's latencies into the `netblame_probe_*` series. A round lasts one scan interval (between
//! [`MIN_ROUND`] and [`ROUND`]), so the series move at least once per scan.

use crate::config::Probe;
use crate::metrics::{ProbeLabels, ProbeMetrics};
use netblame_probe::{ProbeConfig, Target};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest probe round.
pub const ROUND: Duration = Duration::from_secs(60);
/// Shortest probe round.
pub const MIN_ROUND: Duration = Duration::from_secs(1);

/// Running probe threads; stopped (and joined) by [`Probers::stop`] or on drop.
pub struct Probers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Probers {
    /// Starts one thread per probe, in rounds of `round` (clamped to [`MIN_ROUND`]..[`ROUND`]).
    /// Threads inherit the caller's network namespace.
    pub fn start(probes: &[Probe], metrics: &ProbeMetrics, round: Duration) -> Probers {
        let round = round.clamp(MIN_ROUND, ROUND);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for p in probes.iter().cloned() {
            let stop = stop.clone();
            let m = metrics.clone();
            let spawned = std::thread::Builder::new()
                .name("serve-probe".into())
                .spawn(move || run(p, m, stop, round));
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => eprintln!("netblame serve: cannot start a probe thread: {e}"),
            }
        }
        Probers { stop, threads }
    }

    /// Stops every probe thread (probes in flight get up to 500 ms) and waits for them.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Probers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(p: Probe, m: ProbeMetrics, stop: Arc<AtomicBool>, round: Duration) {
    let labels = ProbeLabels {
        target: p.target.clone(),
        kind: p.kind.as_str().to_string(),
    };
    // Create the series at zero so they exist before the first round ends.
    let _ = m.latency.get_or_create(&labels);
    let _ = m.sent.get_or_create(&labels);
    let _ = m.lost.get_or_create(&labels);
    let count = (round.as_nanos() / p.interval.as_nanos().max(1)).clamp(1, 100_000) as u64;
    let mut complained = false;
    while !stop.load(Ordering::Relaxed) {
        // Resolve each round: a name may move.
        let target = match Target::parse(&p.target, p.kind) {
            Ok(t) => t,
            Err(e) => {
                if !complained {
                    eprintln!("netblame serve: probe {}: {e}", p.target);
                    complained = true;
                }
                sleep_unless(&stop, p.interval.max(Duration::from_secs(1)));
                continue;
            }
        };
        let cfg = ProbeConfig {
            kind: p.kind,
            targets: vec![target],
            interval: p.interval,
            count,
            timeout: p.timeout,
            size: 64,
            request: false,
            window: Duration::from_secs(1),
            tls: Default::default(),
        };
        let running = match netblame_probe::start(cfg) {
            Ok(r) => r,
            Err(e) => {
                // An rr target that refuses its connection: count a loss and retry later.
                if !complained {
                    eprintln!("netblame serve: probe {}: {e}", p.target);
                    complained = true;
                }
                m.sent.get_or_create(&labels).inc();
                m.lost.get_or_create(&labels).inc();
                sleep_unless(&stop, p.interval.max(Duration::from_secs(1)));
                continue;
            }
        };
        while !running.is_finished() {
            if stop.load(Ordering::Relaxed) {
                running.stop();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for run in running.wait() {
            let h = m.latency.get_or_create(&labels);
            for (_, ns) in &run.replies_ns {
                h.observe(*ns as f64 / 1e9);
            }
            let s = &run.latency.summary;
            m.sent.get_or_create(&labels).inc_by(s.sent);
            m.lost
                .get_or_create(&labels)
                .inc_by(s.sent.saturating_sub(s.received));
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = std::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
}
