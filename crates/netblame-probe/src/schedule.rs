//! The fixed schedule: probe `seq` leaves at `start + seq * interval`, whatever happened to the
//! probes before it. Sleeping is precise to a few microseconds: the scheduler thread's timer
//! slack is set to 1 ns (`PR_SET_TIMERSLACK`, default 50 us) and the last stretch is spun.

use serde::Serialize;
use std::time::{Duration, Instant};

/// Below this, wait by spinning instead of sleeping.
pub const SPIN: Duration = Duration::from_micros(100);

/// Makes the calling thread's sleeps precise (timer slack 1 ns). Best effort.
pub fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and affects only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Sleeps until `t` (returns at once if it has passed); returns the instant it woke.
pub fn sleep_until(t: Instant) -> Instant {
    loop {
        let now = Instant::now();
        if now >= t {
            return now;
        }
        let left = t - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The scheduled departure of probe `seq`.
pub fn scheduled(start: Instant, interval: Duration, seq: u64) -> Instant {
    start + Duration::from_nanos((interval.as_nanos() as u64).saturating_mul(seq))
}

/// How well the schedule was held: how late probes left, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ScheduleStats {
    pub probes: u64,
    pub interval_ns: u64,
    pub late_p50_ns: u64,
    pub late_p99_ns: u64,
    pub late_max_ns: u64,
    pub late_mean_ns: f64,
    /// Mean lateness as a share of the interval, percent.
    pub slip_percent: f64,
    /// Probes that left more than one interval late.
    pub late_by_more_than_interval: u64,
    /// Achieved rate over the run, probes per second (scheduled rate: 1 / interval).
    pub achieved_per_second: f64,
    /// How far the achieved rate fell short of the scheduled one, percent (late probes leave at
    /// once, so the schedule catches up: this stays near 0 unless the sender cannot keep up).
    pub rate_slip_percent: f64,
}

impl ScheduleStats {
    /// Summarizes per-probe lateness (`late_ns[i]` for probe i) and the span from the first
    /// scheduled departure to the last actual one.
    pub fn from_lateness(mut late_ns: Vec<u64>, interval: Duration, span: Duration) -> Self {
        let n = late_ns.len() as u64;
        if n == 0 {
            return ScheduleStats {
                interval_ns: interval.as_nanos() as u64,
                ..Default::default()
            };
        }
        let iv = interval.as_nanos() as u64;
        let over = late_ns.iter().filter(|&&l| l > iv).count() as u64;
        let mean = late_ns.iter().map(|&l| l as f64).sum::<f64>() / n as f64;
        late_ns.sort_unstable();
        let q = |p: f64| late_ns[((p * n as f64).ceil() as usize).clamp(1, n as usize) - 1];
        let achieved = if span.is_zero() || n < 2 {
            0.0
        } else {
            (n - 1) as f64 / span.as_secs_f64()
        };
        let target = if iv == 0 { 0.0 } else { 1e9 / iv as f64 };
        ScheduleStats {
            probes: n,
            interval_ns: iv,
            late_p50_ns: q(0.5),
            late_p99_ns: q(0.99),
            late_max_ns: *late_ns.last().unwrap_or(&0),
            late_mean_ns: mean,
            slip_percent: if iv == 0 {
                0.0
            } else {
                mean * 100.0 / iv as f64
            },
            late_by_more_than_interval: over,
            achieved_per_second: achieved,
            rate_slip_percent: if target > 0.0 && achieved > 0.0 {
                ((target - achieved) / target * 100.0).max(0.0)
            } else {
                0.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_instant() {
        precise_timers();
        let t = Instant::now() + Duration::from_millis(3);
        let woke = sleep_until(t);
        assert!(woke >= t);
        // Passed instants return at once.
        let past = Instant::now() - Duration::from_millis(1);
        assert!(sleep_until(past) >= past);
    }

    #[test]
    fn stats_from_lateness() {
        let s = ScheduleStats::from_lateness(
            vec![100, 200, 300, 2_000_000],
            Duration::from_millis(1),
            Duration::from_millis(3),
        );
        assert_eq!(s.probes, 4);
        assert_eq!(s.late_max_ns, 2_000_000);
        assert_eq!(s.late_by_more_than_interval, 1);
        assert!((s.achieved_per_second - 1000.0).abs() < 1e-6);
    }
}
