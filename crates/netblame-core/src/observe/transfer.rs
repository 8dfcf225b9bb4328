//! One direction of data between two TCP endpoints, as any source saw it: the sender's
//! stopwatches or the capture's view of its window, the receiver's queue, buffer and zero
//! windows, and the path. Every source (live sockets, throughput tests, captures, lab runs)
//! fills the part it can see and leaves the rest `None`; the rules in `rules::sender`,
//! `rules::receiver` and `rules::loss` judge all of them the same way.

use super::LimitShares;
use crate::kernel::KernelVersion;
use crate::window::RcvSettings;
use std::time::Duration;

/// One direction of a transfer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transfer {
    /// What the findings are about ("client -> server", "#3 10.0.0.1:5201 -> ...", a socket).
    pub subject: String,
    pub sender: SenderFacts,
    pub receiver: ReceiverFacts,
    pub path: PathFacts,
    /// Socket buffers someone asked for, and what the kernel granted.
    pub buffers: Vec<BufferRequest>,
    /// The receiving application's timeout, when the user named one (`bench --app-timeout`).
    pub deadline: Option<AppDeadline>,
}

/// An application timeout to judge a transfer against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppDeadline {
    /// The application's read timeout.
    pub timeout: Duration,
    /// Bytes the application needs (`-n`), if any.
    pub bytes_needed: Option<u64>,
    /// Cumulative bytes received at each interval end: (seconds, bytes); empty when only the
    /// size and timeout are known (then only the window model judges them).
    pub timeline: Vec<(f64, u64)>,
}

/// What bounded the sender, as far as the source could see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderFacts {
    /// Which end sends, as findings name it ("client", "server"), when the source knows.
    pub who: Option<String>,
    /// The kernel's stopwatches over the transfer, summed over streams (`None`: the sender was
    /// not observed, or its kernel predates 4.10).
    pub shares: Option<LimitShares>,
    /// A capture's view instead of the stopwatches: share of the sending time with data in
    /// flight within one segment of the receiver's advertised window.
    pub at_window_share: Option<f64>,
    /// True when `at_window_share` is the measured rate over the window's ceiling (a capture
    /// near the receiver, where in-flight bytes cannot be seen).
    pub window_share_from_rate: bool,
    /// Whether the sending end was observed at all (a plain `iperf3 -s` sending in reverse is not).
    pub observed: bool,
    /// True when the sender was asked to send as fast as it could (a throughput test, a lab
    /// transfer): then idle time and the congestion window are worth a note. A live
    /// connection's idle time is its application's business.
    pub expected_busy: bool,
    /// Data bytes the sender sent (unique) over the transfer.
    pub bytes: u64,
    /// Measured rate per stream, bits per second.
    pub rate_bps: f64,
    /// Parallel streams (1 for a connection).
    pub streams: usize,
    /// The receiver's window as the sender saw it (the smallest stream's mean), bytes.
    pub peer_window_bytes: Option<u64>,
    /// Whether window scaling was negotiated, when known.
    pub window_scaling: Option<bool>,
    /// The sender's send buffer, when full at the samples with fewer packets in flight than
    /// the congestion window allows (the send buffer bounded it although its stopwatch ran less).
    pub sndbuf_full_below_cwnd: bool,
    /// The send buffer's size, bytes, when known.
    pub sndbuf_bytes: Option<u64>,
    pub retrans: Retransmissions,
    /// Reorderings the sender detected (tcpi_reord_seen over the transfer), when known.
    pub reordering: Option<u64>,
}

/// Retransmissions of one sender, and what says whether they were needed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retransmissions {
    /// Segments retransmitted.
    pub segments: u64,
    /// Data segments sent (0 when unknown).
    pub data_segments: u64,
    /// Bytes retransmitted, and unique bytes sent, when known (captures).
    pub bytes: Option<u64>,
    pub unique_bytes: Option<u64>,
    /// Retransmissions shown to be spurious: a D-SACK (RFC 2883) or an ACK of the original
    /// before the retransmission could have arrived.
    pub spurious: u64,
    /// Retransmissions after a timeout (RTO), and fast ones.
    pub timeouts: u64,
    pub fast: u64,
    /// Tail-loss probes sent (TcpExt TCPLossProbes), when known.
    pub loss_probes: Option<u64>,
    /// Segments a capture never saw (the capture dropped them or they were lost before it).
    pub not_captured: Option<u64>,
    /// Duplicate ACKs the sender received.
    pub dup_acks: Option<u64>,
    /// Retransmissions after which the capture saw nothing more from the peer: it stopped
    /// acknowledging while the sender's timeouts reached the capture point.
    pub unanswered: u64,
    /// How long the peer stayed silent at the end, microseconds.
    pub peer_silent_us: u64,
    /// In loss recovery or RTO backoff at the last sample.
    pub in_recovery: bool,
    /// Current RTO backoff exponent (live sockets), when known.
    pub backoff: Option<u8>,
}

impl Retransmissions {
    /// Retransmissions not shown to be spurious.
    pub fn needed(&self) -> u64 {
        self.segments.saturating_sub(self.spurious)
    }
}

/// What the receiving end showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverFacts {
    /// The receiving process(es), e.g. `slowpoke[42]`, when known.
    pub who: Option<String>,
    /// SO_RCVBUF the receiving application set before connecting (`None`: autotuned or unknown).
    pub so_rcvbuf: Option<u64>,
    /// True when `so_rcvbuf` was inferred (a `rcv_wscale` far below this host's autotuned one)
    /// rather than known from the application.
    pub so_rcvbuf_inferred: bool,
    /// The window scale the receiver announced (live sockets).
    pub rcv_wscale: Option<u8>,
    /// The receiver's `sk_rcvbuf`, bytes.
    pub rcvbuf_bytes: Option<u64>,
    /// Unread bytes (Recv-Q) now (live sockets).
    pub recv_q_bytes: Option<u64>,
    /// Largest and mean unread bytes (Recv-Q) seen over the transfer.
    pub recv_q_max_bytes: Option<u64>,
    pub recv_q_mean_bytes: Option<f64>,
    /// Recv-Q at the start and end of the observation, for growth (live sockets).
    pub recv_q_growth: Option<RecvQGrowth>,
    /// Receive-buffer memory in use now, bytes (`rmem_alloc`).
    pub rmem_alloc_bytes: Option<u64>,
    /// The window the receiver advertises now, bytes (tcpi_rcv_wnd, 6.2+).
    pub rcv_wnd_bytes: Option<u64>,
    /// Zero windows advertised (`TCPToZeroWindowAdv`, or a capture's count).
    pub zero_windows: u64,
    /// Zero-window probes the sender sent (`TCPWinProbe`, or a capture's count).
    pub window_probes: u64,
    /// Time spent at a zero window, the longest episode, and its share of the connection
    /// (captures).
    pub zero_window_us: Option<u64>,
    pub zero_window_longest_us: Option<u64>,
    pub zero_window_episodes: Option<u64>,
    pub zero_window_share: Option<f64>,
    /// Milliseconds since the last data arrived (live sockets).
    pub last_data_recv_ms: Option<u64>,
    /// The receiving host's kernel and receive-window sysctls, when known.
    pub host: Option<ReceiverHost>,
    /// CPU time the receiving process used, as a share of one core (1.0 = a whole core).
    pub cpu_share: Option<f64>,
    /// Whether the receive buffer grew to its autotuning ceiling (`tcp_rmem[2]`) during the
    /// transfer, when known.
    pub rcvbuf_at_max: Option<bool>,
}

/// Recv-Q growth over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecvQGrowth {
    pub before_bytes: u64,
    pub after_bytes: u64,
    pub interval: Duration,
}

/// The path between the two ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathFacts {
    /// Round-trip time without queueing where known (configured, minimum, handshake), or the
    /// sender's smoothed RTT.
    pub rtt: Option<Duration>,
    /// The path's rate, bits per second, when known (the lab's emulator knows it).
    pub link_bps: Option<f64>,
    /// Packets the path dropped, when the path can say.
    pub drops: Option<u64>,
    /// Both ends on one host (loopback): no network between them.
    pub loopback: bool,
    /// ECN: packets marked ECT and CE (congestion experienced) on the way to the receiver.
    pub ecn_ect: Option<u64>,
    pub ecn_ce: Option<u64>,
    /// RTT at its minimum and at a high percentile (p95), with the bytes in flight at the
    /// minimum and maximum RTT samples (captures near the sender).
    pub rtt_min: Option<Duration>,
    pub rtt_high: Option<Duration>,
    pub in_flight_at_min_bytes: Option<u64>,
    pub in_flight_at_max_bytes: Option<u64>,
    /// Nothing on the path can strip TCP options (loopback, the lab's emulator): a missing
    /// option was an endpoint's doing.
    pub options_preserved: bool,
}

/// The receiving host's settings that shape an autotuned window.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverHost {
    pub kernel: KernelVersion,
    pub settings: RcvSettings,
}

/// A buffer size someone asked for, and what the kernel granted.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferRequest {
    /// `SO_RCVBUF` or `SO_SNDBUF`.
    pub option: &'static str,
    /// Which end: "client" / "server".
    pub side: String,
    pub requested_bytes: u64,
    /// `getsockopt` after setting: twice the request unless capped.
    pub actual_bytes: u64,
    /// False when the peer that should apply it ignores the request (a plain `iperf3 -s`
    /// does not apply a client's `--rcvbuf`/`--sndbuf` to its own socket).
    pub applied: bool,
}

impl Transfer {
    /// Measured rate over all streams, bits per second.
    pub fn total_rate_bps(&self) -> f64 {
        self.sender.rate_bps * self.sender.streams.max(1) as f64
    }

    /// Share of the sender's time at the receiver's window: the rwnd stopwatch over busy time,
    /// or a capture's share of sending time.
    pub fn window_share(&self) -> Option<f64> {
        self.sender
            .shares
            .map(|s| s.rwnd_share_of_busy())
            .or(self.sender.at_window_share)
    }
}

/// Connects seen from the client (a lab's connect loop).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectObservation {
    /// Time of each connect (SYN to established).
    pub times: Vec<Duration>,
    /// SYNs the client retransmitted (TcpExt TCPSynRetrans delta).
    pub syn_retransmits: u64,
    /// The path's round-trip time.
    pub path_rtt: Duration,
}
