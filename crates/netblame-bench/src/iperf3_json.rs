//! The iperf3 `-J` layout as types: the `start`, `intervals` and `end` objects iperf3 3.x
//! writes (same names, same order, same values), netblame's additions under `netblame`, and the
//! `--json-stream` event lines. [`crate::report`] fills them; the JSON Schemas under
//! `docs/schema/` are generated from them.
//!
//! Times are seconds since the test started, rates bits per second, sizes bytes, RTTs
//! microseconds, as in iperf3. Optional iperf3 fields that do not apply are absent, not null.

use crate::client::{ServerExtension, StreamInfo};
use crate::sample::IntervalSample;
use netblame_core::Finding;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// The `bench client --json` document: iperf3's `-J` layout plus `netblame`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClientDoc {
    pub start: Start,
    /// One element per sampling interval (`-i`), in order.
    pub intervals: Vec<Interval>,
    pub end: End,
    pub netblame: Netblame,
}

/// iperf3's `start` object: the connections and the test's settings.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Start {
    /// Every data stream's connection.
    pub connected: Vec<Connected>,
    /// The program: `netblame X.Y.Z`.
    pub version: String,
    /// The kernel's `/proc/version` line (empty when unreadable).
    pub system_info: String,
    pub timestamp: Timestamp,
    /// The server the client connected to (client side only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connecting_to: Option<HostPort>,
    /// The client's control connection (server side only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_connection: Option<HostPort>,
    /// The test's cookie (36 characters, without its NUL).
    pub cookie: String,
    /// TCP_MAXSEG of the first data stream once connected, bytes (0 when unknown).
    pub tcp_mss_default: u32,
    /// `-b`: target rate of each sending stream, bits per second (0 = unlimited).
    pub target_bitrate: u64,
    /// `--fq-rate`: SO_MAX_PACING_RATE of each sending stream, bits per second (0 = none).
    pub fq_rate: u64,
    /// `-w`: the SO_SNDBUF/SO_RCVBUF asked for every data socket, bytes (0 = not set).
    pub sock_bufsize: u64,
    /// The first data socket's send buffer as the kernel set it, bytes.
    pub sndbuf_actual: u64,
    /// The first data socket's receive buffer as the kernel set it, bytes.
    pub rcvbuf_actual: u64,
    pub test_start: TestStart,
}

/// One data stream's connection in `start.connected`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Connected {
    /// The stream's number as iperf3 prints it (a file-descriptor-like id, stream id + 4).
    pub socket: i64,
    /// This end's address.
    pub local_host: String,
    pub local_port: u16,
    /// The other end's address.
    pub remote_host: String,
    pub remote_port: u16,
}

/// `start.timestamp`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Timestamp {
    /// When the test started, seconds since the Unix epoch.
    pub timesecs: u64,
}

/// A host and port (`connecting_to`, `accepted_connection`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HostPort {
    pub host: String,
    /// 0 when unknown.
    pub port: u16,
}

/// `start.test_start`: the test's parameters.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TestStart {
    /// Always `TCP`.
    pub protocol: String,
    /// Streams per direction (`-P`).
    pub num_streams: usize,
    /// Block size per write/read, bytes (`-l`).
    pub blksize: usize,
    /// Seconds omitted from the start (`-O`).
    pub omit: u64,
    /// Seconds to transmit (`-t`); 0 when `bytes` decides.
    pub duration: u64,
    /// Bytes to transmit (`-n`); 0 when the duration decides.
    pub bytes: u64,
    /// Blocks to transmit (always 0: `-k` is not supported).
    pub blocks: u64,
    /// 1 when the server sends (`-R`), else 0.
    pub reverse: i32,
    /// IP type of service (always 0).
    pub tos: u32,
    /// `-b`: target rate of each sending stream, bits per second (0 = unlimited).
    pub target_bitrate: u64,
    /// 1 when both directions run (`--bidir`), else 0.
    pub bidir: i32,
    /// `--fq-rate`: SO_MAX_PACING_RATE of each sending stream, bits per second (0 = none).
    pub fqrate: u64,
    /// Seconds between samples (`-i`).
    pub interval: f64,
    /// UDP GSO (always 0: TCP only).
    pub gso: u32,
    /// UDP GRO (always 0: TCP only).
    pub gro: u32,
}

/// One element of iperf3's `intervals` (the data of a `--json-stream` `interval` event).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Interval {
    /// Every stream over the interval, as the writing end sampled it.
    pub streams: Vec<StreamInterval>,
    /// The forward direction's streams summed (with `--bidir`, the client's sending ones).
    pub sum: IntervalSum,
    /// With `--bidir`, the reverse direction's streams summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum_bidir_reverse: Option<IntervalSum>,
}

/// One stream over one interval. The sender-only fields are absent on a receiving stream.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StreamInterval {
    /// The stream's number as iperf3 prints it (stream id + 4).
    pub socket: i64,
    /// Interval start, seconds since the test started.
    pub start: f64,
    /// Interval end, seconds since the test started.
    pub end: f64,
    /// Interval length, seconds.
    pub seconds: f64,
    /// Bytes moved in the interval.
    pub bytes: u64,
    /// Rate over the interval, bits per second.
    pub bits_per_second: f64,
    /// Segments retransmitted in the interval (sender only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<u64>,
    /// Congestion window at the end of the interval, bytes (sender only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snd_cwnd: Option<u64>,
    /// The peer's advertised window, bytes (sender only; 0 when the kernel does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snd_wnd: Option<u64>,
    /// Smoothed RTT, microseconds (sender only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<u64>,
    /// RTT variance, microseconds (sender only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rttvar: Option<u64>,
    /// Path MTU, bytes (sender only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pmtu: Option<u64>,
    /// Reordering events seen so far on the connection (sender only, Linux 4.19+; cumulative,
    /// as iperf3 3.21+ reports it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reorder: Option<u64>,
    /// True inside the omitted start (`-O`).
    pub omitted: bool,
    /// True when the writing end sends on this stream.
    pub sender: bool,
}

/// Streams summed over one interval (`sum`, `sum_bidir_reverse`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IntervalSum {
    /// Interval start, seconds since the test started.
    pub start: f64,
    /// Interval end, seconds since the test started.
    pub end: f64,
    /// Interval length, seconds.
    pub seconds: f64,
    /// Bytes moved in the interval by the summed streams.
    pub bytes: u64,
    /// Their rate over the interval, bits per second.
    pub bits_per_second: f64,
    /// Segments they retransmitted in the interval (present when the writing end sends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<u64>,
    /// True inside the omitted start (`-O`).
    pub omitted: bool,
    /// True when the writing end sends on the summed streams.
    pub sender: bool,
}

/// iperf3's `end` object (the data of a `--json-stream` `end` event): totals over the test,
/// the omitted start excluded.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct End {
    /// Per stream, the sending and the receiving end's totals.
    pub streams: Vec<EndStream>,
    /// The forward direction's sending end, summed over streams.
    pub sum_sent: EndSum,
    /// The forward direction's receiving end, summed over streams.
    pub sum_received: EndSum,
    /// With `--bidir`, the reverse direction's sending end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum_sent_bidir_reverse: Option<EndSum>,
    /// With `--bidir`, the reverse direction's receiving end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum_received_bidir_reverse: Option<EndSum>,
    pub cpu_utilization_percent: CpuUtilization,
    /// Congestion control of the sending end (absent in a server's `end` when it receives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_tcp_congestion: Option<String>,
    /// Congestion control of the receiving end (absent in a server's `end` when it sends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_tcp_congestion: Option<String>,
}

/// One stream's totals in `end.streams`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EndStream {
    pub sender: EndSide,
    pub receiver: EndSide,
}

/// One end of one stream over the test.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EndSide {
    /// The stream's number as iperf3 prints it (stream id + 4).
    pub socket: i64,
    /// Always 0 (seconds since the test started).
    pub start: u64,
    /// Seconds counted (the omitted start excluded).
    pub end: f64,
    /// Seconds counted (the omitted start excluded).
    pub seconds: f64,
    /// Bytes this end sent or received.
    pub bytes: u64,
    /// `bytes` over `seconds`, bits per second.
    pub bits_per_second: f64,
    /// Segments retransmitted (the sending end of a client's stream only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<i64>,
    /// Largest congestion window sampled, bytes (a client's sending end that sampled it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_snd_cwnd: Option<u64>,
    /// Largest peer window sampled, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_snd_wnd: Option<u64>,
    /// Largest sampled RTT, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rtt: Option<u64>,
    /// Smallest sampled RTT, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_rtt: Option<u64>,
    /// Mean sampled RTT, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_rtt: Option<u64>,
    /// Reordering events seen on the connection (Linux 4.19+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reorder: Option<u64>,
    /// True when this end sends (in a server's `end`: when the server sends on the stream).
    pub sender: bool,
}

/// A direction's sending or receiving end summed over streams (`sum_sent`, `sum_received`...).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EndSum {
    /// Always 0 (seconds since the test started).
    pub start: u64,
    /// Seconds counted (the omitted start excluded).
    pub end: f64,
    /// Seconds counted (the omitted start excluded).
    pub seconds: f64,
    /// Bytes sent or received.
    pub bytes: u64,
    /// `bytes` over `seconds`, bits per second.
    pub bits_per_second: f64,
    /// Segments retransmitted (a client's `sum_sent` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<i64>,
    /// True for a sending end (in a server's `end`: true when the server sends).
    pub sender: bool,
}

/// `end.cpu_utilization_percent`: process CPU over the test, percent of one core's wall time.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CpuUtilization {
    /// This end, user plus system, percent.
    pub host_total: f64,
    /// This end, user time, percent.
    pub host_user: f64,
    /// This end, system time, percent.
    pub host_system: f64,
    /// The other end, percent (0 on a server, which is not told).
    pub remote_total: f64,
    /// The other end's user time, percent.
    pub remote_user: f64,
    /// The other end's system time, percent.
    pub remote_system: f64,
}

/// netblame's additions to a client's `-J` document (the data of the `netblame` event of
/// `--json-stream`): both ends' samples and buffers, the server's output and the verdict.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Netblame {
    /// The data streams as the client set them up (addresses, buffer sizes, MSS).
    pub streams: Vec<StreamInfo>,
    /// The client's own samples, with its tcp_info.
    pub client_intervals: Vec<IntervalSample>,
    /// The server's samples, buffers and receive-window settings; null unless the server is
    /// netblame.
    pub server: Option<ServerExtension>,
    /// The server's own output (`--get-server-output`): its text, or its JSON document as the
    /// server wrote it; null when not asked for.
    pub server_output: Option<Value>,
    /// What limited the transfer, with evidence and fixes.
    pub findings: Vec<Finding>,
}

/// One `--json-stream` line of `bench client` or `bench server`, as iperf3 writes them
/// (`{"event":NAME,"data":DATA}`, here with `schema_version` in front).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum StreamEvent {
    /// Every data stream is connected and the test runs (a server's has
    /// `accepted_connection` instead of `connecting_to`).
    Start(Box<Start>),
    /// An interval completed.
    Interval(Box<Interval>),
    /// The server's text output (client, `--get-server-output` against a text server).
    ServerOutputText(String),
    /// The server's JSON output (client, `--get-server-output` against a `-J` server).
    ServerOutputJson(Value),
    /// netblame's samples and verdict (client only, before `end`).
    Netblame(Box<Netblame>),
    /// The test's totals.
    End(Box<End>),
    /// The test failed (client) or a test was dropped (server: `PEER: REASON`).
    Error(String),
}
