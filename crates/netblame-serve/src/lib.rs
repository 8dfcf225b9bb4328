//! netblame-serve: the always-on agent behind `netblame serve`.
//!
//! Every interval the agent makes the same observations as `netblame doctor` ([`scan`]), asks
//! netblame-core what they mean ([`judge`] — the one place that calls core's `diagnose` step), and keeps the
//! result current for three outputs:
//!
//! - `GET /metrics`: OpenMetrics text from the official `prometheus-client` crate ([`metrics`]):
//!   findings as series (`netblame_finding_active{id,layer,severity}`), the verdict,
//!   connections by state, limit and owner (top N), the host counters the rules read, probe
//!   latency histograms, trace histograms when asked for and available ([`trace`]). Cardinality is bounded and documented (docs/metrics.md).
//! - `GET /findings`: the last scan's findings with their evidence, as JSON.
//! - the event log ([`events`]): JSON lines when a finding is raised, updated or cleared.
//!
//! Scrapes read the last published scan and never wait for one; scans run on their own thread.
//! `SIGHUP` reloads the TOML configuration ([`config`]; a bad file is refused and the running
//! one kept), `SIGTERM` stops cleanly ([`agent`]).
//!
//! **Why `tiny_http`**: the endpoints are three GETs answered from memory. `tiny_http` is a
//! small, synchronous, long-maintained HTTP/1.1 server (no async runtime, a handful of
//! dependencies), which fits a workspace that has no tokio and an agent whose CPU budget is 2%
//! of a core; a few worker threads give concurrent scrapes. `hyper` would bring tokio for no
//! gain here. Signals use `signal-hook` (the handler only wakes an iterator on the main
//! thread), the configuration `toml` + `serde`.

pub mod agent;
pub mod config;
pub mod events;
pub mod http;
pub mod judge;
pub mod metrics;
pub mod probes;
pub mod scan;
pub mod trace;

pub use agent::{run, AgentError, Options};
pub use config::{Config, ConfigError};
