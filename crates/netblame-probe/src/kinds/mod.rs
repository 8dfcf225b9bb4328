//! The probe kinds: each opens what it needs for a target and sends probes when the scheduler
//! says so; replies are recorded against the probe's scheduled departure.

mod connect;
mod http;
mod icmp;
mod stream;
mod udp;

use crate::config::ProbeConfig;
use crate::state::{ProbeResult, Prober, TargetState};
use crate::target::{ProbeKind, Target};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Smallest `--size` a kind accepts (its header).
pub(crate) fn min_size(kind: ProbeKind, request: bool) -> usize {
    match kind {
        ProbeKind::Rr => 8,
        ProbeKind::Tcp if request => 8,
        ProbeKind::Tcp | ProbeKind::Http => 0,
        ProbeKind::Udp | ProbeKind::Icmp => 16,
    }
}

/// Opens the prober of `cfg.kind` for one target.
pub(crate) fn open(
    cfg: &ProbeConfig,
    t: &Target,
    state: Arc<TargetState>,
) -> io::Result<Box<dyn Prober>> {
    Ok(match cfg.kind {
        ProbeKind::Tcp => Box::new(connect::ConnectProber::new(cfg, t, state)),
        ProbeKind::Http => Box::new(http::HttpProber::open(cfg, t, state)?),
        ProbeKind::Rr => Box::new(stream::StreamProber::open(cfg, t, state)?),
        ProbeKind::Udp => Box::new(udp::UdpProber::open(cfg, t, state)?),
        ProbeKind::Icmp => Box::new(icmp::IcmpProber::open(cfg, t, state)?),
    })
}

/// Waits until `until` for `events` on `fd`, calling `ready` with the returned events each time
/// the descriptor is ready (`ready` returns false when nothing more can come: the rest is slept). Sleeps in `ppoll` (precise with the scheduler's 1 ns timer slack)
/// and polls without sleeping for the last [`crate::schedule::SPIN`], so a probe leaves on time.
/// Until `busy_until` (set to [`BUSY_POLL`] after each probe leaves) it polls without sleeping
/// too, so a fast reply is read when it lands instead of after a thread wake-up (about 10 us
/// on a loaded host: as much as a loopback round trip).
pub(crate) fn poll_until(
    fd: RawFd,
    events: impl Fn() -> i16,
    until: Instant,
    busy_until: Instant,
    mut ready: impl FnMut(i16) -> bool,
) {
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        let left = until - now;
        let wait = if now < busy_until {
            std::time::Duration::ZERO
        } else {
            left.saturating_sub(crate::schedule::SPIN)
        };
        let ts = libc::timespec {
            // `as _`: time_t is a deprecated alias on musl (its width changes there).
            tv_sec: wait.as_secs() as _,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        let mut p = libc::pollfd {
            fd,
            events: events(),
            revents: 0,
        };
        // SAFETY: one valid pollfd and a valid timespec; no signal mask change.
        let n = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
        if n > 0 {
            let more = ready(p.revents);
            let dead = p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
                && p.revents & libc::POLLIN == 0;
            if !more || dead {
                crate::schedule::sleep_until(until);
                return;
            }
        }
    }
}

/// How long after sending a probe its reply is busy-polled for (see [`poll_until`]): at most
/// this much CPU per probe.
pub(crate) const BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(200);

/// A short description of an I/O error for a failed probe.
pub(crate) fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::UnexpectedEof => "closed by the target".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        _ => e.to_string(),
    }
}

/// Most probes of one target in flight at once for the kinds that run each probe on its own
/// thread (each holds a thread).
const MAX_IN_FLIGHT: u64 = 4096;

/// Runs each probe of a connection-per-probe kind (tcp, http) on its own short-lived thread, so
/// a slow probe (a lost SYN waits a whole second) never delays the next one.
pub(crate) struct PerProbeThreads {
    state: Arc<TargetState>,
    in_flight: Arc<AtomicU64>,
    stack: usize,
}

impl PerProbeThreads {
    /// Threads with `stack` bytes of stack.
    pub fn new(state: Arc<TargetState>, stack: usize) -> Self {
        PerProbeThreads {
            state,
            in_flight: Arc::new(AtomicU64::new(0)),
            stack,
        }
    }

    /// Runs `job` (probe `seq`) on a new thread; records a local failure when it cannot start.
    pub fn spawn(&self, seq: u64, job: impl FnOnce() + Send + 'static) {
        if self.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            self.state.record(
                seq,
                ProbeResult::failed(
                    0,
                    format!("not sent: {MAX_IN_FLIGHT} probes already in flight (local limit)"),
                ),
            );
            return;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = self.in_flight.clone();
        let spawned = std::thread::Builder::new()
            .name("probe-connect".into())
            .stack_size(self.stack)
            .spawn(move || {
                job();
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.state.record(
                seq,
                ProbeResult::failed(0, format!("not sent: cannot start a thread: {e}")),
            );
        }
    }
}
