//! The running phase shared by client and server: sample every interval while watching the
//! control connection, until the caller's end condition holds.

use crate::proto::{self, ProtoError};
use crate::sample::{IntervalSample, Sampler};
use crate::stream::DataStream;
use serde::{Deserialize, Serialize};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Process CPU use over a test, percent of one core's wall time (iperf3's convention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuUsage {
    /// User plus system, percent.
    pub total: f64,
    /// User time, percent.
    pub user: f64,
    /// System time, percent.
    pub system: f64,
}

/// A CPU stopwatch started at construction.
pub struct CpuClock {
    wall: Instant,
    user_us: u64,
    system_us: u64,
}

fn rusage() -> (u64, u64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

impl CpuClock {
    /// Starts measuring.
    pub fn start() -> CpuClock {
        let (u, s) = rusage();
        CpuClock {
            wall: Instant::now(),
            user_us: u,
            system_us: s,
        }
    }

    /// CPU percentages since start.
    pub fn read(&self) -> CpuUsage {
        let (u, s) = rusage();
        let wall = self.wall.elapsed().as_micros().max(1) as f64;
        let user = (u.saturating_sub(self.user_us)) as f64 / wall * 100.0;
        let system = (s.saturating_sub(self.system_us)) as f64 / wall * 100.0;
        CpuUsage {
            total: user + system,
            user,
            system,
        }
    }
}

/// What ended the running phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// The caller's condition (time or bytes reached).
    Done,
    /// A state byte arrived on the control connection.
    State(i8),
    /// Every stream thread ended (the peer closed them).
    StreamsClosed,
}

/// Waits up to `timeout` for the control socket to become readable.
pub fn wait_readable(ctrl: &TcpStream, timeout: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: ctrl.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(rc > 0)
}

/// How the running phase waits between checks.
#[derive(Debug, Clone, Copy)]
pub struct Wakeups {
    /// Seconds (since sampling started) at which the test ends by time, if it does.
    pub end_at: Option<f64>,
    /// Longest sleep between checks of `done` (short for byte-count tests, long otherwise: few
    /// wake-ups keep the measuring threads out of the data threads' way).
    pub max_sleep: Duration,
}

/// Samples `streams` every `interval`, calling `on_interval`, until `done(elapsed)` holds, a
/// state byte arrives on `ctrl`, or all streams close. Returns the cause; the partial last
/// interval is left for the caller to sample with its final byte snapshot.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ctrl: &TcpStream,
    streams: &[DataStream],
    sampler: &mut Sampler,
    interval: Duration,
    wake: Wakeups,
    intervals: &mut Vec<IntervalSample>,
    mut done: impl FnMut(f64, &[DataStream]) -> bool,
    on_interval: &mut dyn FnMut(&IntervalSample),
) -> Result<EndCause, ProtoError> {
    let interval = interval.max(Duration::from_millis(10));
    let start = Instant::now();
    let mut next = start + interval;
    loop {
        let now = Instant::now();
        if done(sampler.elapsed(), streams) {
            return Ok(EndCause::Done);
        }
        if now >= next {
            let s = sampler.sample(streams, None);
            on_interval(&s);
            intervals.push(s);
            next += interval;
            continue;
        }
        let mut wait = (next - now).min(wake.max_sleep);
        if let Some(end) = wake.end_at {
            let left = (end - sampler.elapsed()).max(0.0);
            wait = wait.min(Duration::from_secs_f64(left) + Duration::from_millis(1));
        }
        if wait_readable(ctrl, wait)? {
            let s = proto::read_state(&mut &*ctrl)?;
            return Ok(EndCause::State(s));
        }
        if !streams.is_empty() && streams.iter().all(|s| s.is_finished()) {
            return Ok(EndCause::StreamsClosed);
        }
    }
}

/// Waits up to `timeout` for a listener to have a connection pending.
pub fn wait_readable_listener(
    l: &std::net::TcpListener,
    timeout: Duration,
) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    Ok(rc > 0)
}

/// The results JSON each end sends in EXCHANGE_RESULTS (iperf3's `cpu_util_*`,
/// `sender_has_retransmits`, `congestion_used`, `streams[]`). `bytes(i)` is stream i's byte
/// count; `intervals` are the ones that count (the client leaves out omitted ones).
pub(crate) fn results_json(
    cpu: &CpuUsage,
    streams: &[crate::stream::DataStream],
    intervals: &[crate::sample::IntervalSample],
    bytes: impl Fn(usize) -> u64,
    seconds: f64,
) -> serde_json::Value {
    let congestion = streams
        .first()
        .and_then(|s| netblame_linux::sockopt::congestion(&*s.sock).ok())
        .unwrap_or_default();
    serde_json::json!({
        "cpu_util_total": cpu.total,
        "cpu_util_user": cpu.user,
        "cpu_util_system": cpu.system,
        "sender_has_retransmits": if streams.iter().any(|s| s.sending) { 1 } else { -1 },
        "congestion_used": congestion,
        "streams": streams.iter().enumerate().map(|(i, s)| serde_json::json!({
            "id": s.id,
            "bytes": bytes(i),
            "retransmits": if s.sending {
                intervals.iter()
                    .flat_map(|iv| iv.streams.iter().filter(|x| x.id == s.id))
                    .map(|x| x.retransmits).sum::<u64>() as i64
            } else { -1 },
            "jitter": 0,
            "errors": 0,
            "packets": 0,
            "start_time": 0,
            "end_time": seconds,
        })).collect::<Vec<_>>(),
    })
}
