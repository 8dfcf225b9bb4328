//! netblame-probe: latency probes on a fixed schedule.
//!
//! Probes leave at `start + seq * interval` whether or not earlier ones came back (no
//! coordinated omission: a stall shows up as latency and loss instead of as fewer probes), and
//! every latency is measured from the probe's *scheduled* departure. A reply later than the
//! timeout is a loss even when the timeout is longer than the interval. Latencies go into an HDR
//! histogram per target (`hdrhistogram`, nanoseconds, 3 significant digits).
//!
//! Probe kinds ([`ProbeKind`]): `tcp` (connect time, or with a request a connect plus one
//! request/response per connection, like netperf TCP_CRR), `rr` (request/response on one kept
//! connection, like TCP_RR), `http` (GET over HTTP/1.1, TLS with rustls for `https://`: name
//! lookup, connect, TLS handshake, first byte and total timed apart), `udp` (echo) and `icmp`
//! (echo). `rr`, `udp` and `tcp --request` need a peer that answers: [`responder`] (run by
//! `netblame probe serve` and by `netblame bench server`).
//!
//! The library observes and returns netblame-core's [`netblame_core::observe::latency`] types;
//! it never prints.

pub mod config;
pub mod histlog;
mod kinds;
pub mod report;
pub mod responder;
pub mod run;
pub mod schedule;
mod state;
pub mod target;

pub use config::TlsOptions;
pub use config::{ProbeConfig, ProbeError};
pub use run::{start, RunningProbe};
pub use target::{ProbeKind, Target};
