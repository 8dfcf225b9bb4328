//! netblame-bench: an iperf3-compatible TCP throughput test that samples `tcp_info` of every
//! stream on both ends, so netblame-core can say what limited the transfer.
//!
//! - [`proto`]: the iperf3 control protocol (cookie, state bytes, length-framed JSON).
//! - [`config`]: test settings (the iperf3 parameter set plus netblame's extension keys).
//! - [`stream`]: data sockets, their options and the sender/receiver loops.
//! - [`sample`]: per-interval samples of each stream (bytes, tcp_info, Recv-Q).
//! - [`client`] and [`server`]: the two roles, over IPv4 or IPv6 (the server dual-stack by
//!   default); `-b` paces senders with iperf3's throttle and `SO_MAX_PACING_RATE`.
//! - [`report`]: the iperf3 `-J` layout with netblame's additions, in pieces for
//!   `--json-stream` (start, interval, end), as the types of [`iperf3_json`].
//!
//! Library code never prints: progress goes through callbacks.

pub mod client;
pub mod config;
pub mod iperf3_json;
pub mod proto;
pub mod report;
pub mod running;
pub mod sample;
pub mod server;
pub mod stream;

pub use client::{run_client, run_client_with_events, ClientEvent, ClientOutcome};
pub use config::{ClientConfig, TestParams};
pub use server::{Server, ServerConfig};
