//! Per-interval samples of every stream: bytes moved, `tcp_info` (throughput, retransmits,
//! cwnd, windows, RTT, delivery rate, the busy / rwnd-limited / sndbuf-limited stopwatch
//! deltas) and Recv-Q.

use crate::stream::DataStream;
use netblame_core::observe::{LimitShares, TcpInfo};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One stream over one interval, from the end that took the sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StreamSample {
    /// The stream's number (1, 2... in the client's connect order).
    pub id: i64,
    /// True when the sampling end sends on this stream.
    pub sender: bool,
    /// Interval start, seconds since the test started.
    pub start: f64,
    /// Interval end, seconds since the test started.
    pub end: f64,
    /// Interval length, seconds.
    pub seconds: f64,
    /// Bytes sent or received in the interval.
    pub bytes: u64,
    /// Rate over the interval, bits per second.
    pub bits_per_second: f64,
    /// True inside the omitted start (`-O`).
    pub omitted: bool,
    /// Segments retransmitted in the interval.
    pub retransmits: u64,
    /// Data segments sent in the interval (tcpi_data_segs_out delta).
    #[serde(default)]
    pub data_segments: u64,
    /// Retransmissions the peer reported as spurious with a D-SACK (tcpi_dsack_dups delta).
    #[serde(default)]
    pub dsack_dups: u64,
    /// Congestion window at the end of the interval, bytes.
    pub snd_cwnd_bytes: u64,
    /// The peer's advertised window as this end sees it, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snd_wnd_bytes: Option<u64>,
    /// The window this end advertises, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcv_wnd_bytes: Option<u64>,
    /// Whether the connection negotiated window scaling (tcp_info options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_scaling: Option<bool>,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u64,
    /// RTT variance, microseconds.
    pub rttvar_us: u64,
    /// Path MTU, bytes.
    pub pmtu: u64,
    /// The kernel's delivery rate estimate, bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_rate_bits_per_second: Option<f64>,
    /// Bytes waiting to be read by the application (SIOCINQ), at the end of the interval.
    pub recv_q_bytes: u64,
    /// Time the connection was busy sending in the interval, microseconds (tcpi_busy_time
    /// delta; absent before Linux 4.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_us: Option<u64>,
    /// Time limited by the receiver's window in the interval, microseconds
    /// (tcpi_rwnd_limited delta; absent before Linux 4.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rwnd_limited_us: Option<u64>,
    /// Time limited by the send buffer in the interval, microseconds (tcpi_sndbuf_limited
    /// delta; absent before Linux 4.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sndbuf_limited_us: Option<u64>,
    /// The interval's duration in microseconds (for shares).
    pub interval_us: u64,
    /// True when the connection was in loss recovery at the end of the interval.
    #[serde(default)]
    pub in_loss_recovery: bool,
    /// Reordering events seen so far on the connection (`tcpi_reord_seen`, Linux 4.19+;
    /// cumulative, as iperf3 3.21+ reports `reorder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<u64>,
}

impl StreamSample {
    /// The kernel's limit shares over this interval, when the stopwatches exist.
    pub fn shares(&self) -> Option<LimitShares> {
        Some(LimitShares::from_deltas(
            self.busy_us?,
            self.rwnd_limited_us?,
            self.sndbuf_limited_us?,
            self.interval_us,
            self.retransmits,
            self.in_loss_recovery,
        ))
    }
}

/// All streams over one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IntervalSample {
    /// Interval start, seconds since the test started.
    pub start: f64,
    /// Interval end, seconds since the test started.
    pub end: f64,
    /// True inside the omitted start (`-O`).
    pub omitted: bool,
    /// Every stream over the interval.
    pub streams: Vec<StreamSample>,
}

struct Prev {
    bytes: u64,
    info: Option<TcpInfo>,
}

/// Takes successive samples of a set of streams.
pub struct Sampler {
    origin: Instant,
    last: Instant,
    omit_until_s: f64,
    prev: Vec<Prev>,
}

impl Sampler {
    /// Starts sampling `streams` now; intervals ending before `omit_s` seconds are marked omitted.
    pub fn new(streams: &[DataStream], omit_s: u64) -> Sampler {
        let now = Instant::now();
        Sampler {
            origin: now,
            last: now,
            omit_until_s: omit_s as f64,
            prev: streams
                .iter()
                .map(|s| Prev {
                    bytes: s.bytes(),
                    info: netblame_linux::sockopt::tcp_info(&*s.sock).ok(),
                })
                .collect(),
        }
    }

    /// Seconds since sampling started.
    pub fn elapsed(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// Samples every stream now; `bytes_override` replaces the byte counters (final snapshot).
    pub fn sample(
        &mut self,
        streams: &[DataStream],
        bytes_override: Option<&[u64]>,
    ) -> IntervalSample {
        let now = Instant::now();
        let start = (self.last - self.origin).as_secs_f64();
        let end = (now - self.origin).as_secs_f64();
        let interval_us = (now - self.last).as_micros() as u64;
        self.last = now;
        let omitted = end <= self.omit_until_s + 1e-3;
        let mut out = Vec::with_capacity(streams.len());
        for (i, s) in streams.iter().enumerate() {
            let bytes_now = bytes_override
                .and_then(|b| b.get(i).copied())
                .unwrap_or_else(|| s.bytes());
            let info = netblame_linux::sockopt::tcp_info(&*s.sock).ok();
            let prev = &mut self.prev[i];
            let bytes = bytes_now.saturating_sub(prev.bytes);
            let seconds = (interval_us as f64 / 1e6).max(1e-9);
            let mut sample = StreamSample {
                id: s.id,
                sender: s.sending,
                start,
                end,
                seconds,
                bytes,
                bits_per_second: bytes as f64 * 8.0 / seconds,
                omitted,
                interval_us,
                recv_q_bytes: netblame_linux::sockopt::recv_queue(&*s.sock).unwrap_or(0),
                ..StreamSample::default()
            };
            if let Some(cur) = &info {
                sample.snd_cwnd_bytes = cur.cwnd_bytes();
                sample.snd_wnd_bytes = cur.snd_wnd.map(u64::from);
                sample.rcv_wnd_bytes = cur.rcv_wnd.map(u64::from);
                sample.window_scaling = Some(cur.has_wscale());
                sample.rtt_us = cur.rtt_us as u64;
                sample.rttvar_us = cur.rttvar_us as u64;
                sample.pmtu = cur.pmtu as u64;
                sample.delivery_rate_bits_per_second = cur.delivery_rate.map(|r| r as f64 * 8.0);
                sample.reorder = cur.reord_seen.map(u64::from);
                if let Some(p) = &prev.info {
                    sample.retransmits = cur.total_retrans.saturating_sub(p.total_retrans) as u64;
                    let d32 = |a: Option<u32>, b: Option<u32>| {
                        b.zip(a).map_or(0, |(b, a)| b.saturating_sub(a) as u64)
                    };
                    sample.data_segments = d32(p.data_segs_out, cur.data_segs_out);
                    sample.dsack_dups = d32(p.dsack_dups, cur.dsack_dups);
                    let d = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
                    sample.busy_us = d(p.busy_time_us, cur.busy_time_us);
                    sample.rwnd_limited_us = d(p.rwnd_limited_us, cur.rwnd_limited_us);
                    sample.sndbuf_limited_us = d(p.sndbuf_limited_us, cur.sndbuf_limited_us);
                    sample.in_loss_recovery = LimitShares::between(p, cur, interval_us)
                        .is_some_and(|l| l.in_loss_recovery);
                }
            }
            prev.bytes = bytes_now;
            if info.is_some() {
                prev.info = info;
            }
            out.push(sample);
        }
        IntervalSample {
            start,
            end,
            omitted,
            streams: out,
        }
    }
}
