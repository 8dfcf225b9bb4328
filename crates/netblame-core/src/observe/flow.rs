//! One TCP connection as reconstructed from a packet capture: both directions' counters, the
//! handshake, zero-window episodes, RTT samples, how it closed, and a per-interval time series.
//!
//! `netblame-pcap` produces these; `diagnose::capture` judges them. Times are microseconds;
//! offsets (`*_us` fields named `at_us`, `start_us`, ...) count from the connection's first
//! packet. "Client" is the side that sent the first SYN (or, for a connection caught
//! midstream, the side with the higher port).

use super::transfer::{PathFacts, ReceiverFacts, Retransmissions, SenderFacts, Transfer};
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// An address and port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// One side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The originator (sent the SYN).
    Client,
    /// The responder.
    Server,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    /// 0 for the client, 1 for the server.
    pub fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }

    /// `client` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TCP options a SYN carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
pub struct TcpOptions {
    pub mss_bytes: Option<u16>,
    /// The window scale shift announced (clamped to 14 as RFC 7323 says).
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: bool,
}

/// The three-way handshake.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Handshake {
    /// SYNs the client sent with the same initial sequence number (1 = no retransmission).
    pub syn_count: u32,
    /// SYN-ACKs the server sent.
    pub synack_count: u32,
    /// First SYN to first SYN-ACK.
    pub syn_to_synack_us: Option<u64>,
    /// SYN-ACK to the client's first ACK.
    pub synack_to_ack_us: Option<u64>,
    /// Initial RTT as Wireshark computes it: first non-SYN ACK minus the most recent SYN.
    pub rtt_us: Option<u64>,
    pub client_options: Option<TcpOptions>,
    pub server_options: Option<TcpOptions>,
    /// True when window scaling was negotiated: both SYNs carried the option, or a SYN-ACK
    /// carried it (a server only sends it in answer to a SYN that did, RFC 7323).
    pub window_scaling: bool,
    /// First SYN to the client's ACK of the SYN-ACK (the handshake's completion, retransmitted
    /// SYNs included).
    pub first_syn_to_ack_us: Option<u64>,
    /// The SYN-ACK was captured before its SYN (capture-point reordering).
    pub synack_before_syn: bool,
    /// SYNs the client sent after a SYN-ACK had already passed the capture point (that SYN-ACK
    /// did not reach the client).
    pub syns_after_synack: u32,
    /// ECN negotiated (RFC 3168: SYN with ECE and CWR, SYN-ACK with ECE).
    pub ecn_negotiated: bool,
}

/// Summary of RTT samples (Karn-safe: no sample from a retransmitted segment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RttStats {
    pub samples: u64,
    pub min_us: Option<u64>,
    pub mean_us: Option<u64>,
    pub max_us: Option<u64>,
    /// Median and 95th percentile (from a histogram with buckets about 6% wide).
    pub p50_us: Option<u64>,
    pub p95_us: Option<u64>,
    /// This side's data in flight when the segment behind the smallest / largest sample was sent.
    pub in_flight_at_min_bytes: u64,
    pub in_flight_at_max_bytes: u64,
}

impl RttStats {
    /// Adds one sample.
    pub fn add(&mut self, rtt_us: u64, sum: &mut u128) {
        self.add_in_flight(rtt_us, 0, sum);
    }

    /// Adds one sample taken with `in_flight` bytes outstanding when its segment was sent.
    pub fn add_in_flight(&mut self, rtt_us: u64, in_flight: u64, sum: &mut u128) {
        self.samples += 1;
        *sum += rtt_us as u128;
        if self.min_us.is_none_or(|m| rtt_us < m) {
            self.min_us = Some(rtt_us);
            self.in_flight_at_min_bytes = in_flight;
        }
        if self.max_us.is_none_or(|m| rtt_us > m) {
            self.max_us = Some(rtt_us);
            self.in_flight_at_max_bytes = in_flight;
        }
        self.mean_us = Some((*sum / self.samples as u128) as u64);
    }
}

/// Counters for what one side sent (data, ACKs, windows it advertised).
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DirectionStats {
    pub packets: u64,
    /// Segments carrying payload.
    pub data_packets: u64,
    /// All payload bytes (payload length from the IP header, not the captured length).
    pub payload_bytes: u64,
    /// Payload bytes that advanced the sequence space (sent for the first time).
    pub unique_bytes: u64,
    /// Payload bytes at or below what was already sent.
    pub retransmitted_bytes: u64,
    /// Retransmitted segments of any kind (fast, timeout, spurious, other), as Wireshark flags them.
    pub retransmissions: u64,
    /// Retransmissions after two or more duplicate ACKs, within 20 ms of the last one.
    pub fast_retransmissions: u64,
    /// Retransmissions after 200 ms or more of silence from the sender (an RTO).
    pub timeout_retransmissions: u64,
    /// Retransmissions of data the receiver had already acknowledged.
    pub spurious_retransmissions: u64,
    /// Segments below the highest sequence sent, arriving sooner than an RTT after it.
    pub out_of_order: u64,
    /// Gaps in the sequence space: segments the capture did not see ("previous segment not captured").
    pub lost_segments: u64,
    pub lost_bytes: u64,
    pub dup_acks: u64,
    pub keep_alives: u64,
    /// Segments advertising a zero window (not SYN/FIN/RST).
    pub zero_window_adverts: u64,
    /// Zero-window probes, counting Linux's (seq = SND.UNA - 1, no payload) too.
    pub zero_window_probes: u64,
    /// Segments that filled the peer's advertised window exactly.
    pub window_full: u64,
    /// Advertised receive window (scaled), over the non-SYN segments this side sent.
    pub window_min_bytes: Option<u64>,
    pub window_mean_bytes: Option<u64>,
    pub window_max_bytes: Option<u64>,
    /// RTT of the data this side sent (until the peer acknowledged it).
    pub rtt: RttStats,
    /// Largest unacknowledged amount of this side's data seen.
    pub max_in_flight_bytes: u64,
    /// Largest payload in one segment.
    pub max_segment_bytes: u64,
    /// First and last data segment, offsets from the connection start.
    pub first_data_us: Option<u64>,
    pub last_data_us: Option<u64>,
    /// Time with this side's data in flight within one segment of the peer's advertised window
    /// (or the peer at zero window): the sender was pinned at the receiver's window.
    pub window_limited_us: u64,
    /// Unique bytes over the connection's duration, bits per second (as tcptrace).
    pub throughput_bits_per_second: f64,
    /// Unique bytes over this side's sending time (first to last data segment).
    pub sending_rate_bits_per_second: f64,
    /// Offsets of this side's first FIN and first RST.
    pub fin_at_us: Option<u64>,
    pub rst_at_us: Option<u64>,
    pub rst_count: u64,
    /// Frames of this side captured more than once (same IP ID, TCP checksum, sequence, ACK and
    /// timestamp within 10 ms: a mirror port or two capture interfaces), counted once.
    pub duplicate_frames: u64,
    /// Retransmissions the peer reported as received twice (D-SACK, RFC 2883) that the
    /// capture had not already flagged spurious: resends of data that was not lost.
    pub dsack_spurious_retransmissions: u64,
    /// Segments sent with ECT(0) or ECT(1), and those arriving at the capture point marked
    /// Congestion Experienced (a queue on the path toward the peer signalled congestion).
    pub ecn_ect_packets: u64,
    pub ecn_ce_packets: u64,
    /// Segments with ECN-Echo (this side echoing CE marks it received) and with CWR (this side
    /// reducing its window in answer to an echo).
    pub ece_segments: u64,
    pub cwr_segments: u64,
    /// Retransmissions this side sent after the peer's last packet (nothing came back).
    pub unanswered_retransmissions: u64,
    /// Time from the peer's last packet to this side's last packet.
    pub peer_silent_us: u64,
}

impl DirectionStats {
    /// First to last data segment.
    pub fn sending_us(&self) -> u64 {
        match (self.first_data_us, self.last_data_us) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        }
    }

    /// Retransmissions that were not proven unnecessary (spurious ones, by ACK or D-SACK,
    /// left out): the ones that may stand for lost packets.
    pub fn needed_retransmissions(&self) -> u64 {
        self.retransmissions
            .saturating_sub(self.spurious_retransmissions)
            .saturating_sub(self.dsack_spurious_retransmissions)
    }

    /// Share of the sending time pinned at the receiver's window, `0.0..=1.0`.
    pub fn window_limited_share(&self) -> f64 {
        let s = self.sending_us();
        if s == 0 {
            0.0
        } else {
            (self.window_limited_us as f64 / s as f64).min(1.0)
        }
    }
}

/// Where the capture was taken, from the two halves of the RTT (the handshake's, or the data's
/// when the handshake was not captured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CapturePoint {
    /// Not enough to tell.
    #[default]
    Unknown,
    /// Within a fifth of the RTT of the client: the client's sending is seen as it leaves.
    NearClient,
    /// Within a fifth of the RTT of the server.
    NearServer,
    /// Somewhere along the path.
    Middle,
}

impl CapturePoint {
    /// From the capture point's RTT to the client and to the server.
    pub fn from_halves(to_client_us: u64, to_server_us: u64) -> CapturePoint {
        let total = to_client_us + to_server_us;
        if total == 0 {
            return CapturePoint::Unknown;
        }
        let c = to_client_us as f64 / total as f64;
        if c < 0.2 {
            CapturePoint::NearClient
        } else if c > 0.8 {
            CapturePoint::NearServer
        } else {
            CapturePoint::Middle
        }
    }

    /// The side the capture point is near, if any.
    pub fn near(self) -> Option<Side> {
        match self {
            CapturePoint::NearClient => Some(Side::Client),
            CapturePoint::NearServer => Some(Side::Server),
            _ => None,
        }
    }
}

/// A side advertising a zero window until it opened again.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ZeroWindowEpisode {
    /// Who advertised the zero window (the receiver that did not read).
    pub side: Side,
    pub start_us: u64,
    pub duration_us: u64,
    /// False when the connection closed or the capture ended with the window still zero.
    pub reopened: bool,
    /// Zero-window probes the peer sent during the episode.
    pub probes: u64,
}

/// A stretch with no packet in either direction.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct IdleGap {
    pub start_us: u64,
    pub duration_us: u64,
}

/// FIN or RST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CloseKind {
    Fin,
    Rst,
}

/// Who closed first, when, and what happened after.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CloseInfo {
    /// The side that sent the first FIN or RST.
    pub closer: Option<Side>,
    pub kind: Option<CloseKind>,
    /// Offset of that FIN or RST from the connection start.
    pub at_us: Option<u64>,
    /// Time from the last payload the closer received to its close.
    pub since_last_data_received_us: Option<u64>,
    /// Payload the peer had sent that the closer had not acknowledged when it closed.
    pub peer_unacked_at_close_bytes: u64,
    /// Payload the peer sent after the close (it still had data to send).
    pub peer_data_after_close_bytes: u64,
    pub peer_segments_after_close: u64,
    /// RSTs the closer sent after its close (answering what kept arriving).
    pub closer_rsts_after_close: u64,
}

/// One side's activity in one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SideSample {
    /// Payload bytes sent.
    pub bytes: u64,
    pub retransmissions: u64,
    /// Smallest receive window this side advertised in the interval (scaled).
    pub window_min_bytes: Option<u64>,
    /// Largest amount of this side's data in flight.
    pub in_flight_max_bytes: u64,
    /// Mean RTT of this side's data acknowledged in the interval.
    pub rtt_mean_us: Option<u64>,
    pub zero_window_adverts: u64,
    #[serde(skip)]
    pub rtt_sum_us: u64,
    #[serde(skip)]
    pub rtt_samples: u64,
}

/// One interval of the time series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct IntervalSample {
    /// Offset of the interval's start.
    pub start_us: u64,
    pub client: SideSample,
    pub server: SideSample,
}

impl IntervalSample {
    /// The sample of one side.
    pub fn side_mut(&mut self, side: Side) -> &mut SideSample {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }
}

/// One reconstructed TCP connection.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FlowObservation {
    /// Number in order of first packet, from 1.
    pub id: u32,
    pub client: Endpoint,
    pub server: Endpoint,
    /// Absolute time of the first packet, microseconds since the Unix epoch.
    pub start_unix_us: u64,
    pub duration_us: u64,
    pub packets: u64,
    /// No SYN seen: the capture started after the connection did.
    pub midstream: bool,
    /// Raw initial sequence numbers (as on the wire), to match a stream across captures.
    pub client_isn: Option<u32>,
    pub server_isn: Option<u32>,
    pub handshake: Handshake,
    /// Where the capture was taken along the path.
    pub capture_point: CapturePoint,
    /// RTT from the capture point to the client and back, and to the server and back.
    pub rtt_to_client_us: Option<u64>,
    pub rtt_to_server_us: Option<u64>,
    /// Zeek conn.log `conn_state` (S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH).
    pub conn_state: String,
    /// Zeek conn.log `history` (upper case: client; lower case: server).
    pub history: String,
    /// What the client sent.
    pub from_client: DirectionStats,
    /// What the server sent.
    pub from_server: DirectionStats,
    pub zero_windows: Vec<ZeroWindowEpisode>,
    /// The longest gaps of a second or more (at most five), longest first.
    pub idle_gaps: Vec<IdleGap>,
    pub idle_gaps_total: u64,
    pub close: CloseInfo,
    /// Interval of `series`, zero when no series was kept.
    pub series_interval_us: u64,
    pub series: Vec<IntervalSample>,
}

impl FlowObservation {
    /// Stats of what `side` sent.
    pub fn sent_by(&self, side: Side) -> &DirectionStats {
        match side {
            Side::Client => &self.from_client,
            Side::Server => &self.from_server,
        }
    }

    /// Payload bytes in both directions.
    pub fn total_bytes(&self) -> u64 {
        self.from_client.payload_bytes + self.from_server.payload_bytes
    }

    /// The endpoint of `side`.
    pub fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::Client => self.client,
            Side::Server => self.server,
        }
    }

    /// The side that sent more unique payload (the bulk sender).
    pub fn main_sender(&self) -> Side {
        if self.from_server.unique_bytes >= self.from_client.unique_bytes {
            Side::Server
        } else {
            Side::Client
        }
    }

    /// `client -> server` for humans.
    pub fn label(&self) -> String {
        format!("{} -> {}", self.client, self.server)
    }

    /// The RTT for window arithmetic: the larger of the handshake RTT and the mean RTT of the
    /// sender's data. Samples taken near the receiver only see its ACK delay; the handshake RTT
    /// covers the whole path from any capture point, and samples near the sender add queueing.
    pub fn path_rtt_us(&self, sender: Side) -> Option<u64> {
        let a = self.handshake.rtt_us;
        let b = self.sent_by(sender).rtt.mean_us;
        match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
        .filter(|r| *r > 0)
    }

    /// Both ends on one host: the same address, or loopback addresses.
    pub fn is_loopback(&self) -> bool {
        self.client.ip == self.server.ip
            || (self.client.ip.is_loopback() && self.server.ip.is_loopback())
    }

    /// What `sender` sent to the other side, as the rules judge a transfer of any source.
    pub fn transfer(&self, sender: Side) -> Transfer {
        let s = self.sent_by(sender);
        let r = self.sent_by(sender.other());
        let receiver = sender.other();
        let episodes: Vec<&ZeroWindowEpisode> = self
            .zero_windows
            .iter()
            .filter(|e| e.side == receiver)
            .collect();
        let zero_us: u64 = episodes.iter().map(|e| e.duration_us).sum();
        let near_sender = self.capture_point.near() == Some(sender);
        let near_receiver = self.capture_point.near() == Some(receiver);
        let us = Duration::from_micros;
        Transfer {
            subject: format!("#{} {}", self.id, self.label()),
            sender: SenderFacts {
                who: Some(sender.to_string()),
                shares: None,
                at_window_share: (s.unique_bytes > 0).then(|| {
                    if near_receiver {
                        // Near the receiver ACKs leave at once, so in-flight bytes (and the time
                        // at the window) cannot be seen: the rate over the window's ceiling
                        // stands in for the share.
                        match (r.window_mean_bytes, self.path_rtt_us(sender)) {
                            (Some(w), Some(rtt)) if w > 0 && rtt > 0 => {
                                let ceiling = w as f64 * 8.0 / (rtt as f64 / 1e6);
                                (s.sending_rate_bits_per_second / ceiling).min(1.0)
                            }
                            _ => 0.0,
                        }
                    } else {
                        s.window_limited_share()
                    }
                }),
                window_share_from_rate: near_receiver,
                observed: true,
                expected_busy: false,
                bytes: s.unique_bytes,
                rate_bps: s.sending_rate_bits_per_second,
                streams: 1,
                peer_window_bytes: r.window_mean_bytes,
                window_scaling: (!self.midstream
                    && (self.handshake.syn_count > 0 || self.handshake.synack_count > 0))
                    .then_some(self.handshake.window_scaling),
                sndbuf_full_below_cwnd: false,
                sndbuf_bytes: None,
                reordering: Some(s.out_of_order),
                retrans: Retransmissions {
                    segments: s.retransmissions,
                    data_segments: s.data_packets,
                    bytes: Some(s.retransmitted_bytes),
                    unique_bytes: Some(s.unique_bytes),
                    spurious: s.spurious_retransmissions + s.dsack_spurious_retransmissions,
                    timeouts: s.timeout_retransmissions,
                    fast: s.fast_retransmissions,
                    loss_probes: None,
                    not_captured: Some(s.lost_segments),
                    dup_acks: Some(r.dup_acks),
                    unanswered: s.unanswered_retransmissions,
                    peer_silent_us: s.peer_silent_us,
                    in_recovery: false,
                    backoff: None,
                },
            },
            receiver: ReceiverFacts {
                who: Some(format!("the {receiver}'s application")),
                rcv_wscale: match receiver {
                    Side::Client => self.handshake.client_options.as_ref(),
                    Side::Server => self.handshake.server_options.as_ref(),
                }
                .and_then(|o| o.wscale)
                .filter(|_| self.handshake.window_scaling),
                zero_windows: r.zero_window_adverts,
                window_probes: episodes.iter().map(|e| e.probes).sum(),
                zero_window_us: (!episodes.is_empty()).then_some(zero_us),
                zero_window_longest_us: episodes.iter().map(|e| e.duration_us).max(),
                zero_window_episodes: (!episodes.is_empty()).then_some(episodes.len() as u64),
                zero_window_share: (!episodes.is_empty() && self.duration_us > 0)
                    .then(|| zero_us as f64 / self.duration_us as f64),
                ..Default::default()
            },
            path: PathFacts {
                rtt: self.path_rtt_us(sender).map(us),
                loopback: self.is_loopback(),
                options_preserved: self.is_loopback(),
                ecn_ect: (s.ecn_ect_packets > 0).then_some(s.ecn_ect_packets),
                ecn_ce: (s.ecn_ce_packets > 0).then_some(s.ecn_ce_packets),
                rtt_min: s.rtt.min_us.filter(|_| near_sender).map(us),
                rtt_high: s.rtt.p95_us.filter(|_| near_sender).map(us),
                in_flight_at_min_bytes: near_sender.then_some(s.rtt.in_flight_at_min_bytes),
                in_flight_at_max_bytes: near_sender.then_some(s.rtt.in_flight_at_max_bytes),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}
