//! What a run is asked to do ([`ProbeConfig`]) and why it could not start ([`ProbeError`]).
//!
//! Shared by the scheduler (`run`), the probe kinds and the report; it imports none of
//! them, so no module imports a module that imports it back.

use crate::target::{ProbeKind, Target};
use std::path::PathBuf;
use std::time::Duration;

/// Most probes one target may schedule in a run: every probe is kept until the run ends (about
/// 200 bytes each with its report), e.g. 10,000/s for 200 s or 1/s for 23 days.
pub const MAX_PROBES: u64 = 2_000_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    pub targets: Vec<Target>,
    pub interval: Duration,
    /// Probes per target.
    pub count: u64,
    pub timeout: Duration,
    /// Request (and echo) size in bytes for rr, udp, icmp and tcp with a request.
    pub size: usize,
    /// tcp: send one request and wait for its echo on each connection (TCP_CRR).
    pub request: bool,
    /// Length of the per-window loss and latency rows.
    pub window: Duration,
    /// How `https://` targets verify the server's certificate.
    pub tls: TlsOptions,
}

/// Certificate verification for `https://` targets (`--insecure`, `--cacert`).
///
/// By default the server's certificate must chain to a root of this host's trust store (read
/// with `rustls-native-certs`), or of the Mozilla roots bundled in `webpki-roots` when the host
/// has none, and name the target's host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Skip certificate verification (handshake signatures are still checked): for self-signed
    /// test servers. The handshake is timed the same way.
    pub insecure: bool,
    /// Trust only the CA certificates in this PEM file (like curl's `--cacert`).
    pub cacert: Option<PathBuf>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Config(String),
    #[error("{target}: {message}")]
    Open { target: String, message: String },
}
