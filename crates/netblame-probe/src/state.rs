//! The state a run shares between the scheduler (`run`), the probe kinds (which record
//! how each probe ended) and the report (which reads the slots): one [`TargetState`] per target
//! and the [`Prober`] trait the kinds implement. It imports neither of them.

use crate::schedule::{self, scheduled};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How one probe ended, as the kinds report it.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// A reply, `ns` after the scheduled departure.
    Reply(u64),
    /// A failure `ns` after the scheduled departure.
    Failed(u64, String),
    /// No reply within the timeout (a loss); recorded by kinds whose phases say how far the
    /// probe got (an http probe that connected and sent its request).
    TimedOut,
}

/// What the kinds record for a probe.
#[derive(Debug, Clone)]
pub(crate) struct ProbeResult {
    pub ended: Ended,
    pub connect_ns: Option<u64>,
    pub first_byte_ns: Option<u64>,
    pub total_rto: Option<u16>,
    /// http: how long each phase took.
    pub http: Option<HttpTimes>,
}

/// What an `http` probe measured, each phase on its own (not from the scheduled departure).
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpTimes {
    /// Name lookup (none when the target is an address).
    pub dns: Option<Duration>,
    /// TCP handshake.
    pub connect: Option<Duration>,
    /// TLS handshake (https).
    pub tls: Option<Duration>,
    /// From the request written to the first byte of the response.
    pub first_byte: Option<Duration>,
    /// From the first byte to the end of the response.
    pub transfer: Option<Duration>,
    /// Response status.
    pub status: Option<u16>,
    /// Response body bytes (after de-chunking).
    pub body_bytes: u64,
    /// The body came in `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Negotiated TLS version, e.g. `TLSv1.3`.
    pub tls_version: Option<&'static str>,
    /// Negotiated cipher suite.
    pub cipher: Option<String>,
}

impl ProbeResult {
    pub fn reply(ns: u64) -> Self {
        ProbeResult {
            ended: Ended::Reply(ns),
            connect_ns: None,
            first_byte_ns: None,
            total_rto: None,
            http: None,
        }
    }
    pub fn failed(ns: u64, error: impl Into<String>) -> Self {
        ProbeResult {
            ended: Ended::Failed(ns, error.into()),
            connect_ns: None,
            first_byte_ns: None,
            total_rto: None,
            http: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Slot {
    pub sent: bool,
    pub late_ns: u64,
    pub result: Option<ProbeResult>,
}

/// Shared state of one target's run.
pub(crate) struct TargetState {
    /// When probe 0 is scheduled; set once every target is open.
    pub start: std::sync::OnceLock<Instant>,
    pub interval: Duration,
    pub timeout: Duration,
    pub slots: Mutex<Vec<Slot>>,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub done: AtomicU64,
    pub last_ns: AtomicU64,
    pub stop: Arc<AtomicBool>,
}

impl TargetState {
    /// When probe 0 is scheduled.
    pub fn start(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    /// Scheduled departure of `seq`.
    pub fn scheduled(&self, seq: u64) -> Instant {
        scheduled(self.start(), self.interval, seq)
    }

    /// Nanoseconds from the scheduled departure of `seq` to now.
    pub fn since_scheduled(&self, seq: u64) -> u64 {
        Instant::now()
            .saturating_duration_since(self.scheduled(seq))
            .as_nanos() as u64
    }

    /// Records how a probe ended; the first word on a probe wins (duplicates are ignored).
    pub fn record(&self, seq: u64, r: ProbeResult) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = slots.get_mut(seq as usize) else {
            return;
        };
        if !slot.sent || slot.result.is_some() {
            return;
        }
        if let Ended::Reply(ns) = r.ended {
            if ns <= self.timeout.as_nanos() as u64 {
                self.received.fetch_add(1, Ordering::Relaxed);
                self.last_ns.store(ns, Ordering::Relaxed);
            }
        }
        slot.result = Some(r);
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn mark_sent(&self, seq: u64, late_ns: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(seq as usize) {
            slot.sent = true;
            slot.late_ns = late_ns;
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// A probe kind's sending side, driven by the scheduler.
pub(crate) trait Prober: Send {
    /// Sends probe `seq` now (its scheduled time has come). Must not block for long: a kind
    /// whose probe takes time (a connect) hands it to another thread.
    fn fire(&mut self, seq: u64);
    /// Waits until `until` (returns at or after it). Kinds that receive on the scheduler's
    /// own thread (rr, udp) read replies here, so a reply wakes exactly one thread.
    fn idle(&mut self, until: Instant) {
        schedule::sleep_until(until);
    }
    /// The schedule is over and the timeout has passed: stop receiving.
    fn finish(&mut self);
}
