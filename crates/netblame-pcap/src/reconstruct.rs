//! Per-connection TCP reconstruction, following Wireshark's `tcp.analysis` rules (see
//! `shared/reference/capture-analysis.md`) with Linux zero-window probes recognised.
//!
//! Streaming: state is kept per open connection; a connection closed (FIN both ways or RST) and
//! quiet for a minute is summarised into a [`FlowObservation`] and its state dropped.
//!
//! Counts agree with `tshark` (tested on real captures) for retransmissions (`retransmissions`
//! = frames tshark flags retransmission, fast retransmission or spurious retransmission),
//! duplicate ACKs, zero windows, out-of-order and "previous segment not captured". Documented
//! differences:
//! - Linux zero-window probes (no payload, seq = SND.UNA - 1, sent while the peer advertises a
//!   zero window) are `zero_window_probes` here; tshark calls them keep-alives, tcptrace counts
//!   none. `keep_alives` here excludes them.
//! - `timeout_retransmissions` (after 200 ms or more of silence from the sender) is netblame's
//!   own split of what tshark calls plain retransmissions.
//! - Window scaling applies when both SYNs were seen with the option; a SYN-ACK with the option
//!   alone proves it was negotiated and gives the server's shift. A direction whose receiver's
//!   shift is unknown keeps raw windows and is not judged for window limitation.
//! - A keep-alive is a 0/1-byte segment at SND.NXT - 1 with everything acknowledged; a 1-byte
//!   resend of unacknowledged data is a retransmission. The ACK answering a keep-alive is not a
//!   duplicate ACK (Wireshark's "keep-alive ACK").
//! - Frames captured twice (same IP ID, checksum, sequence, ACK, window, flags and TCP
//!   timestamp within 10 ms; 200 us without an IP ID) are counted once, in `duplicate_frames`.
//!   Run tshark on `editcap -d` output to compare.
//! - A SYN-ACK captured before its SYN stays one connection.
//! - RTT samples: never from retransmitted data (Karn) nor from a 0 ns difference.

use crate::decode::{flags as tcpflags, Segment, ECN_CE};
use crate::segments::{Recorder, Seen, SegmentTrace};
use netblame_core::observe::flow::{
    CapturePoint, CloseKind, DirectionStats, Endpoint, FlowObservation, Handshake, IdleGap,
    IntervalSample, Side, TcpOptions, ZeroWindowEpisode,
};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Chooses the connections (client, server) that keep a time series.
pub type SeriesFilter = std::sync::Arc<dyn Fn(&Endpoint, &Endpoint) -> bool + Send + Sync>;

/// What to keep beyond the summaries.
#[derive(Clone)]
pub struct Config {
    /// Keep a per-interval time series for each connection at this interval.
    pub series_interval: Option<Duration>,
    /// Shortest pause counted as an idle gap.
    pub idle_gap: Duration,
    /// Only keep series for connections this predicate accepts (all when None).
    pub series_filter: Option<SeriesFilter>,
    /// Also keep every segment of the connections that keep a series (for a time-sequence
    /// graph; see [`crate::segments`]). Off by default: it costs memory per segment.
    pub segments: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            series_interval: None,
            idle_gap: Duration::from_secs(1),
            series_filter: None,
            segments: false,
        }
    }
}

const FAST_RETRANS_WINDOW_NS: u64 = 20_000_000;
const DEFAULT_OOO_NS: u64 = 3_000_000;
const RTO_SILENCE_NS: u64 = 200_000_000;
const MAX_UNACKED: usize = 8192;
const EVICT_AFTER_NS: u64 = 60_000_000_000;
const EVICT_EVERY: u64 = 1 << 16;
const MAX_IDLE_GAPS: usize = 5;
/// A frame equal to one of the direction's last few within this time is a duplicate.
const DUP_WINDOW_NS: u64 = 10_000_000;
/// Without an IP ID to tell copies from resends, only frames this close count as duplicates.
const DUP_WINDOW_NO_ID_NS: u64 = 200_000;
const DUP_RECENT: usize = 4;
/// Recent retransmissions remembered for D-SACK matching.
const RETRANS_RING: usize = 64;
/// A time series keeps at most this many intervals (empty ones included); later packets of a
/// longer connection go into the last interval.
const MAX_SERIES: usize = 200_000;
/// RTT histogram buckets per doubling (each about 9% wide).
const RTT_BUCKETS_PER_OCTAVE: f64 = 8.0;

/// What makes two captured frames the same frame.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct FrameKey {
    seq: u32,
    ack: u32,
    len: u32,
    tsval: u32,
    window: u16,
    ip_id: u16,
    checksum: u16,
    flags: u8,
}

impl FrameKey {
    fn of(seg: &Segment) -> FrameKey {
        FrameKey {
            seq: seg.seq,
            ack: seg.ack,
            len: seg.payload_len,
            tsval: seg.options.timestamp.map_or(0, |t| t.0),
            window: seg.window,
            ip_id: seg.ip_id.unwrap_or(0),
            checksum: seg.checksum,
            flags: seg.flags,
        }
    }
}

/// Log-scale histogram of RTT samples, grown as needed (for percentiles).
#[derive(Default)]
struct RttHistogram(Vec<u32>);

impl RttHistogram {
    fn bucket(us: u64) -> usize {
        ((us.max(1) as f64).log2() * RTT_BUCKETS_PER_OCTAVE) as usize
    }
    fn add(&mut self, us: u64) {
        let b = Self::bucket(us);
        if self.0.len() <= b {
            self.0.resize(b + 1, 0);
        }
        self.0[b] = self.0[b].saturating_add(1);
    }
    /// The upper edge of the bucket holding quantile `q`, clamped to the observed range.
    fn quantile(&self, q: f64, samples: u64, min: u64, max: u64) -> Option<u64> {
        if samples == 0 {
            return None;
        }
        let want = ((samples as f64 * q).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, n) in self.0.iter().enumerate() {
            seen += *n as u64;
            if seen >= want {
                let edge = 2f64.powf((i + 1) as f64 / RTT_BUCKETS_PER_OCTAVE) as u64;
                return Some(edge.clamp(min, max));
            }
        }
        Some(max)
    }
}

#[inline]
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
#[inline]
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
#[inline]
fn seq_le(a: u32, b: u32) -> bool {
    !seq_gt(a, b)
}

#[derive(Default)]
struct Dir {
    nextseq: u32,
    nextseq_set: bool,
    nextseq_time: u64,
    lastack: u32,
    lastack_set: bool,
    lastack_time: u64,
    /// Highest ACK sent (monotonic), for in-flight and RTT.
    highest_ack: u32,
    win_raw: u16,
    win_set: bool,
    win_bytes: u64,
    dupacks: u32,
    isn: Option<u32>,
    opts: Option<TcpOptions>,
    last_pkt_time: u64,
    /// Unacknowledged data: end sequence, time sent, sent more than once, in flight when sent.
    unacked: VecDeque<(u32, u64, bool, u64)>,
    rtt_hist: RttHistogram,
    /// The last frames of this side, to recognise a frame captured twice.
    recent: [(FrameKey, u64); DUP_RECENT],
    recent_next: usize,
    /// Recent retransmissions (start, end, already known spurious), for D-SACK.
    retrans_ring: VecDeque<(u32, u32, bool)>,
    /// This side just sent a keep-alive: the peer's answering ACK is not a duplicate ACK.
    keepalive_sent: bool,
    /// Retransmissions since the peer last sent anything.
    retrans_since_peer: u64,
    packets_seen: bool,
    rtt_sum: u128,
    win_sum: u128,
    win_n: u64,
    /// Offset (us) of the last payload this side received.
    last_data_rx_us: Option<u64>,
    zw_open: Option<usize>,
    pinned_since: Option<u64>,
    fin_seen: bool,
    rst_seen: bool,
    stats: DirectionStats,
    /// Counts behind the logarithmic history letters t, w, g.
    hist_counts: [u64; 3],
    hist_seen: u16,
}

impl Dir {
    fn in_flight(&self, peer: &Dir) -> u64 {
        if self.nextseq_set && peer.lastack_set {
            let d = self.nextseq.wrapping_sub(peer.highest_ack) as i32;
            d.max(0) as u64
        } else {
            0
        }
    }
}

struct Conn {
    id: u32,
    client: Endpoint,
    server: Endpoint,
    start_ns: u64,
    last_ns: u64,
    packets: u64,
    dirs: [Dir; 2],
    handshake: Handshake,
    first_syn_ns: Option<u64>,
    last_syn_ns: Option<u64>,
    synack_ns: Option<u64>,
    /// The ACK number of the first SYN-ACK (a SYN captured after it must match it).
    synack_ack: Option<u32>,
    /// Capture point to server and back (SYN to SYN-ACK), for the capture point.
    syn_rtt_ns: Option<u64>,
    irtt_done: bool,
    shift: [u8; 2],
    /// Whether the window scale of each side's advertisements is known.
    scale_known: [bool; 2],
    midstream: bool,
    history: String,
    zero_windows: Vec<ZeroWindowEpisode>,
    idle_gaps: Vec<IdleGap>,
    idle_total: u64,
    close: netblame_core::observe::flow::CloseInfo,
    close_ns: Option<u64>,
    series_interval_us: u64,
    series: Vec<IntervalSample>,
    segments: Option<Recorder>,
}

fn opts_of(seg: &Segment) -> TcpOptions {
    TcpOptions {
        mss_bytes: seg.options.mss,
        wscale: seg.options.wscale,
        sack_permitted: seg.options.sack_permitted,
        timestamps: seg.options.timestamp.is_some(),
    }
}

fn pair(dirs: &mut [Dir; 2], s: usize) -> (&mut Dir, &mut Dir) {
    let (a, b) = dirs.split_at_mut(1);
    if s == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    }
}

const LETTERS: &[u8] = b"shadfrtwg";

impl Conn {
    fn new(id: u32, client: Endpoint, server: Endpoint, ts: u64, series_us: u64) -> Conn {
        Conn {
            id,
            client,
            server,
            start_ns: ts,
            last_ns: ts,
            packets: 0,
            dirs: [Dir::default(), Dir::default()],
            handshake: Handshake::default(),
            first_syn_ns: None,
            last_syn_ns: None,
            synack_ns: None,
            synack_ack: None,
            syn_rtt_ns: None,
            irtt_done: false,
            shift: [0, 0],
            scale_known: [false, false],
            midstream: true,
            history: String::new(),
            zero_windows: Vec::new(),
            idle_gaps: Vec::new(),
            idle_total: 0,
            close: Default::default(),
            close_ns: None,
            series_interval_us: series_us,
            series: Vec::new(),
            segments: None,
        }
    }

    fn rel_us(&self, ts: u64) -> u64 {
        ts.saturating_sub(self.start_ns) / 1000
    }

    fn closed(&self) -> bool {
        let [a, b] = &self.dirs;
        (a.fin_seen && b.fin_seen) || a.rst_seen || b.rst_seen
    }

    /// Records a history letter for side `s`; t, w and g repeat at 1, 10, 100, ... occurrences.
    fn letter(&mut self, s: usize, l: u8) {
        let idx = LETTERS.iter().position(|c| *c == l).unwrap_or(0);
        let d = &mut self.dirs[s];
        let record = if idx >= 6 {
            let c = &mut d.hist_counts[idx - 6];
            *c += 1;
            let mut p = 1;
            while p < *c {
                p *= 10;
            }
            p == *c
        } else if d.hist_seen & (1 << idx) == 0 {
            d.hist_seen |= 1 << idx;
            true
        } else {
            false
        };
        if record {
            let ch = if s == 0 { l.to_ascii_uppercase() } else { l };
            self.history.push(ch as char);
        }
    }

    fn bucket(&mut self, rel_us: u64) -> Option<&mut IntervalSample> {
        if self.series_interval_us == 0 {
            return None;
        }
        let iv = self.series_interval_us;
        let start = rel_us / iv * iv;
        // Quiet intervals are kept, empty, so the series has no gaps.
        let mut next = self.series.last().map_or(0, |b| b.start_us + iv);
        while next <= start && self.series.len() < MAX_SERIES {
            self.series.push(IntervalSample {
                start_us: next,
                ..Default::default()
            });
            next += iv;
        }
        self.series.last_mut()
    }

    /// True when the frame is a copy of one of this side's last few (counted, then ignored).
    fn duplicate(&mut self, ts: u64, s: usize, seg: &Segment) -> bool {
        let key = FrameKey::of(seg);
        let window = if seg.ip_id.is_some_and(|id| id != 0) {
            DUP_WINDOW_NS
        } else {
            DUP_WINDOW_NO_ID_NS
        };
        let d = &mut self.dirs[s];
        if d.packets_seen
            && d.recent
                .iter()
                .any(|(k, t)| *k == key && ts.saturating_sub(*t) <= window && ts >= *t)
        {
            d.stats.duplicate_frames += 1;
            return true;
        }
        d.packets_seen = true;
        d.recent[d.recent_next] = (key, ts);
        d.recent_next = (d.recent_next + 1) % DUP_RECENT;
        false
    }

    /// Settles which windows are scaled by how much, from the SYN and SYN-ACK options seen.
    fn settle_scaling(&mut self) {
        let c = self.handshake.client_options;
        let sv = self.handshake.server_options;
        match (c, sv) {
            (Some(c), Some(sv)) => {
                if let (Some(a), Some(b)) = (c.wscale, sv.wscale) {
                    self.shift = [a, b];
                    self.handshake.window_scaling = true;
                } else {
                    self.shift = [0, 0];
                    self.handshake.window_scaling = false;
                }
                self.scale_known = [true, true];
            }
            // SYN-ACK only: its option proves the SYN carried one too, but not its shift.
            (None, Some(sv)) => match sv.wscale {
                Some(b) => {
                    self.shift = [0, b];
                    self.handshake.window_scaling = true;
                    self.scale_known = [false, true];
                }
                None => {
                    self.shift = [0, 0];
                    self.scale_known = [true, true];
                }
            },
            _ => {}
        }
    }

    fn push(&mut self, ts: u64, s: usize, seg: &Segment, idle_gap_ns: u64) {
        let ts = ts.max(self.start_ns);
        if self.duplicate(ts, s, seg) {
            return;
        }
        if self.packets > 0 && ts > self.last_ns.saturating_add(idle_gap_ns) {
            let gap = IdleGap {
                start_us: self.rel_us(self.last_ns),
                duration_us: (ts - self.last_ns) / 1000,
            };
            self.idle_total += 1;
            self.idle_gaps.push(gap);
            if self.idle_gaps.len() > MAX_IDLE_GAPS {
                self.idle_gaps
                    .sort_by_key(|g| std::cmp::Reverse(g.duration_us));
                self.idle_gaps.truncate(MAX_IDLE_GAPS);
            }
        }
        self.last_ns = self.last_ns.max(ts);
        self.packets += 1;
        let rel = self.rel_us(ts);
        let side = if s == 0 { Side::Client } else { Side::Server };
        let seglen = seg.payload_len;
        let (syn, ackf, fin, rst) = (seg.syn(), seg.ack_flag(), seg.fin(), seg.rst());
        let sfr = syn || fin || rst;
        let seq = seg.seq;
        let ack = seg.ack;

        // Handshake.
        let ecn_syn = seg.flags & (tcpflags::ECE | tcpflags::CWR) == tcpflags::ECE | tcpflags::CWR;
        if syn && !ackf && s == 0 {
            let d = &mut self.dirs[0];
            match d.isn {
                None => {
                    d.isn = Some(seq);
                    d.opts = Some(opts_of(seg));
                    self.handshake.syn_count = 1;
                    self.handshake.client_options = d.opts;
                    self.handshake.ecn_negotiated = ecn_syn;
                    self.first_syn_ns = Some(ts);
                    self.midstream = false;
                    if self.synack_ns.is_some() {
                        // Captured after its SYN-ACK: reordered at the capture point.
                        self.handshake.synack_before_syn = true;
                        self.handshake.syn_to_synack_us = Some(0);
                    }
                    self.settle_scaling();
                }
                Some(i) if i == seq => {
                    self.handshake.syn_count += 1;
                    if self.synack_ns.is_some() && !self.handshake.synack_before_syn {
                        self.handshake.syns_after_synack += 1;
                    }
                }
                Some(_) => {}
            }
            self.last_syn_ns = Some(ts);
        }
        if syn && ackf && s == 1 {
            let d = &mut self.dirs[1];
            if d.isn.is_none() {
                d.isn = Some(seq);
                d.opts = Some(opts_of(seg));
                self.handshake.server_options = d.opts;
                self.handshake.ecn_negotiated &= seg.flags & tcpflags::ECE != 0;
                self.synack_ns = Some(ts);
                self.synack_ack = Some(ack);
                if let Some(f) = self.first_syn_ns {
                    self.handshake.syn_to_synack_us = Some(ts.saturating_sub(f) / 1000);
                }
                self.syn_rtt_ns = self.last_syn_ns.map(|l| ts.saturating_sub(l));
                self.settle_scaling();
                self.midstream = self.first_syn_ns.is_none();
            }
            self.handshake.synack_count += 1;
        }
        if !syn && ackf && s == 0 && !self.irtt_done {
            if let (Some(sa), Some(last)) = (self.synack_ns, self.last_syn_ns) {
                self.handshake.rtt_us = Some(ts.saturating_sub(last) / 1000);
                self.handshake.synack_to_ack_us = Some(ts.saturating_sub(sa) / 1000);
                self.irtt_done = true;
            }
            if let (Some(_), Some(first)) = (self.synack_ns, self.first_syn_ns) {
                self.handshake.first_syn_to_ack_us = Some(ts.saturating_sub(first) / 1000);
                self.irtt_done = true;
            }
        }

        // History.
        if syn && !ackf {
            self.letter(s, b's');
        } else if syn {
            self.letter(s, b'h');
        }
        if seglen > 0 {
            self.letter(s, b'd');
        } else if ackf && !sfr {
            self.letter(s, b'a');
        }
        if fin {
            self.letter(s, b'f');
        }
        if rst {
            self.letter(s, b'r');
        }

        let window_bytes = if syn {
            seg.window as u64
        } else {
            (seg.window as u64) << self.shift[s]
        };
        let scale_known = self.scale_known;
        let ooo_thres = self
            .handshake
            .rtt_us
            .map(|r| r * 1000)
            .filter(|r| *r > 0)
            .unwrap_or(DEFAULT_OOO_NS);
        let series_on = self.series_interval_us > 0;

        let (f, r) = pair(&mut self.dirs, s);
        f.stats.packets += 1;
        r.retrans_since_peer = 0;
        // ECN: the IP field as it reached the capture point, the TCP echo flags.
        match seg.ecn {
            0 => {}
            ECN_CE => {
                f.stats.ecn_ect_packets += 1;
                f.stats.ecn_ce_packets += 1;
            }
            _ => f.stats.ecn_ect_packets += 1,
        }
        if !syn {
            f.stats.ece_segments += (seg.flags & tcpflags::ECE != 0) as u64;
            f.stats.cwr_segments += (seg.flags & tcpflags::CWR != 0) as u64;
        }
        let mut retrans = false;
        let mut zwp = false;
        let mut lost = false;
        let mut zero_window = false;
        let mut rtt_sample: Option<u64> = None;
        let end = seq
            .wrapping_add(seglen)
            .wrapping_add(syn as u32)
            .wrapping_add(fin as u32);

        if !syn {
            // 1. zero-window probe (Wireshark's 1-byte form, and Linux's seq = SND.UNA - 1 form)
            if r.win_set && r.win_bytes == 0 && f.nextseq_set && !rst {
                // Wireshark's 1-byte probe, or Linux's: no payload, seq = SND.UNA - 1.
                zwp = (seglen == 1 && seq == f.nextseq)
                    || (seglen == 0 && !sfr && seq == f.nextseq.wrapping_sub(1));
            }
            if zwp {
                f.stats.zero_window_probes += 1;
            }
            // 2. zero window
            if seg.window == 0 && !sfr {
                zero_window = true;
                f.stats.zero_window_adverts += 1;
            }
            // 3. previous segment not captured
            if f.nextseq_set && seq_gt(seq, f.nextseq) && !rst {
                lost = true;
                f.stats.lost_segments += 1;
                f.stats.lost_bytes += seq.wrapping_sub(f.nextseq) as u64;
            }
            // 4. keep-alive: everything acknowledged (else a 1-byte segment there is a resend)
            let all_acked = !r.lastack_set || r.highest_ack == f.nextseq;
            let keepalive = !zwp
                && seglen <= 1
                && !sfr
                && f.nextseq_set
                && seq == f.nextseq.wrapping_sub(1)
                && (all_acked || seglen == 0);
            if keepalive {
                f.stats.keep_alives += 1;
            }
            // 7. the ACK answering the peer's keep-alive
            let keepalive_ack = r.keepalive_sent
                && seglen == 0
                && ackf
                && !sfr
                && f.lastack_set
                && ack == f.lastack;
            r.keepalive_sent = false;
            f.keepalive_sent = keepalive;
            // 6. window full
            if seglen > 0
                && r.lastack_set
                && r.win_set
                && seq.wrapping_add(seglen) as u64 == r.lastack as u64 + r.win_bytes
            {
                f.stats.window_full += 1;
            }
            // 9. duplicate ACK
            let dupack = seglen == 0
                && !keepalive_ack
                && ackf
                && !sfr
                && seg.window != 0
                && f.win_set
                && seg.window == f.win_raw
                && f.nextseq_set
                && seq == f.nextseq
                && f.lastack_set
                && ack == f.lastack;
            if dupack {
                f.dupacks += 1;
                f.stats.dup_acks += 1;
            } else if f.lastack != ack {
                f.dupacks = 0;
            }
            // 11. retransmissions
            if (seglen > 0 || fin) && f.nextseq_set && seq_lt(seq, f.nextseq) && !keepalive && !zwp
            {
                let since_ack = ts.saturating_sub(r.lastack_time);
                let mut spurious = false;
                if seglen > 0 && r.lastack_set && seq_le(seq.wrapping_add(seglen), r.lastack) {
                    f.stats.spurious_retransmissions += 1;
                    f.stats.retransmissions += 1;
                    retrans = true;
                    spurious = true;
                } else if since_ack < FAST_RETRANS_WINDOW_NS
                    && r.dupacks >= 2
                    && r.lastack_set
                    && r.lastack == seq
                {
                    f.stats.fast_retransmissions += 1;
                    f.stats.retransmissions += 1;
                    retrans = true;
                } else if seglen > 0
                    && ts.saturating_sub(f.nextseq_time) < ooo_thres
                    && f.nextseq != seq.wrapping_add(seglen)
                {
                    f.stats.out_of_order += 1;
                } else {
                    f.stats.retransmissions += 1;
                    if ts.saturating_sub(f.last_pkt_time) >= RTO_SILENCE_NS {
                        f.stats.timeout_retransmissions += 1;
                    }
                    retrans = true;
                }
                if retrans {
                    f.retrans_since_peer += 1;
                    if f.retrans_ring.len() >= RETRANS_RING {
                        f.retrans_ring.pop_front();
                    }
                    f.retrans_ring
                        .push_back((seq, seq.wrapping_add(seglen.max(1)), spurious));
                    // Karn: no RTT sample from data sent more than once.
                    let hi = seq.wrapping_add(seglen);
                    for e in f.unacked.iter_mut() {
                        if seq_gt(e.0, hi) {
                            break;
                        }
                        if seq_gt(e.0, seq) {
                            e.2 = true;
                        }
                    }
                }
            }
        }

        // Payload accounting.
        if seglen > 0 {
            f.stats.data_packets += 1;
            f.stats.payload_bytes += seglen as u64;
            f.stats.max_segment_bytes = f.stats.max_segment_bytes.max(seglen as u64);
            if f.stats.first_data_us.is_none() {
                f.stats.first_data_us = Some(rel);
            }
            f.stats.last_data_us = Some(rel);
            r.last_data_rx_us = Some(rel);
            let data_end = seq.wrapping_add(seglen);
            let new_part = if !f.nextseq_set || !seq_lt(seq, f.nextseq) {
                seglen
            } else if seq_gt(data_end, f.nextseq) {
                data_end.wrapping_sub(f.nextseq)
            } else {
                0
            };
            f.stats.unique_bytes += new_part as u64;
            if retrans {
                f.stats.retransmitted_bytes += (seglen - new_part) as u64;
            }
            if new_part > 0 && !zwp {
                if f.unacked.len() >= MAX_UNACKED {
                    f.unacked.pop_front();
                }
                let in_flight = if r.lastack_set {
                    (data_end.wrapping_sub(r.highest_ack) as i32).max(0) as u64
                } else {
                    0
                };
                f.unacked.push_back((data_end, ts, retrans, in_flight));
            }
        }
        if !rst && (!f.nextseq_set || seq_gt(end, f.nextseq)) {
            f.nextseq = end;
            f.nextseq_set = true;
            f.nextseq_time = ts;
        }

        // ACK: RTT samples of the peer's data, in-flight.
        if ackf {
            let advanced = !f.lastack_set || seq_gt(ack, f.highest_ack);
            if advanced {
                f.highest_ack = ack;
                let mut last = None;
                while let Some(e) = r.unacked.front() {
                    if seq_le(e.0, ack) {
                        last = Some(*e);
                        r.unacked.pop_front();
                    } else {
                        break;
                    }
                }
                if let Some((_, sent, was_retrans, in_flight)) = last {
                    // Karn's rule; and a 0 ns difference is a copy, not a round trip.
                    if !was_retrans && ts > sent {
                        let v = (ts - sent) / 1000;
                        r.stats.rtt.add_in_flight(v, in_flight, &mut r.rtt_sum);
                        r.rtt_hist.add(v);
                        rtt_sample = Some(v);
                    }
                }
            }
            // D-SACK (RFC 2883): the first SACK block below the ACK, or inside the second,
            // reports data received twice: the peer's resend of it was spurious.
            if let Some((l, rr)) = seg.options.first_sack {
                let inside_second = seg
                    .options
                    .second_sack
                    .is_some_and(|(l2, r2)| seq_le(l2, l) && seq_le(rr, r2));
                if seq_le(rr, ack) || inside_second {
                    if let Some(e) = r
                        .retrans_ring
                        .iter_mut()
                        .rev()
                        .find(|e| seq_lt(e.0, rr) && seq_lt(l, e.1))
                    {
                        if !e.2 {
                            e.2 = true;
                            r.stats.dsack_spurious_retransmissions += 1;
                        }
                    }
                }
            }
            f.lastack = ack;
            f.lastack_set = true;
            f.lastack_time = ts;
        }
        if !rst {
            if !syn && !fin {
                f.win_sum += window_bytes as u128;
                f.win_n += 1;
                f.stats.window_min_bytes = Some(
                    f.stats
                        .window_min_bytes
                        .map_or(window_bytes, |m| m.min(window_bytes)),
                );
                f.stats.window_max_bytes = Some(
                    f.stats
                        .window_max_bytes
                        .map_or(window_bytes, |m| m.max(window_bytes)),
                );
            }
            f.win_raw = seg.window;
            f.win_bytes = window_bytes;
            f.win_set = true;
        }
        f.last_pkt_time = ts;
        if fin && !f.fin_seen {
            f.fin_seen = true;
            f.stats.fin_at_us = Some(rel);
        }
        if rst {
            if !f.rst_seen {
                f.stats.rst_at_us = Some(rel);
            }
            f.rst_seen = true;
            f.stats.rst_count += 1;
        }
        let in_flight_f = f.in_flight(r);
        f.stats.max_in_flight_bytes = f.stats.max_in_flight_bytes.max(in_flight_f);
        let f_zw_open = f.zw_open;
        let r_zw_open = r.zw_open;

        // Zero-window episodes.
        if zero_window && f_zw_open.is_none() {
            self.zero_windows.push(ZeroWindowEpisode {
                side,
                start_us: rel,
                duration_us: 0,
                reopened: false,
                probes: 0,
            });
            self.dirs[s].zw_open = Some(self.zero_windows.len() - 1);
        } else if !zero_window && !sfr && seg.window != 0 {
            if let Some(i) = f_zw_open {
                let e = &mut self.zero_windows[i];
                e.duration_us = rel.saturating_sub(e.start_us);
                e.reopened = true;
                self.dirs[s].zw_open = None;
            }
        }
        if zwp {
            if let Some(i) = r_zw_open {
                self.zero_windows[i].probes += 1;
            }
        }

        // Close.
        if (fin || rst) && self.close.closer.is_none() {
            let (f, r) = pair(&mut self.dirs, s);
            self.close.closer = Some(side);
            self.close.kind = Some(if rst { CloseKind::Rst } else { CloseKind::Fin });
            self.close.at_us = Some(rel);
            self.close.since_last_data_received_us = f.last_data_rx_us.map(|t| rel - t.min(rel));
            if r.nextseq_set && f.lastack_set {
                let d = r.nextseq.wrapping_sub(f.highest_ack) as i32;
                // A FIN from the peer counts one sequence number, not data.
                let d = d.saturating_sub(r.fin_seen as i32);
                self.close.peer_unacked_at_close_bytes = d.max(0) as u64;
            }
            self.close_ns = Some(ts);
        } else if let (Some(closer), Some(cns)) = (self.close.closer, self.close_ns) {
            if ts >= cns {
                if side != closer && seglen > 0 {
                    self.close.peer_data_after_close_bytes += seglen as u64;
                    self.close.peer_segments_after_close += 1;
                }
                if side == closer && rst {
                    self.close.closer_rsts_after_close += 1;
                }
            }
        }

        // Letters for retransmission, zero window, gap.
        if retrans && seglen > 0 {
            self.letter(s, b't');
        }
        if zero_window {
            self.letter(s, b'w');
        }
        if lost {
            self.letter(s, b'g');
        }

        // Pinned at the receiver's window: accumulate time in the previous state, then update.
        for x in 0..2 {
            // The receiver's windows must be in bytes.
            if scale_known[1 - x] {
                let (snd, rcv) = pair(&mut self.dirs, x);
                if let Some(since) = snd.pinned_since {
                    snd.stats.window_limited_us += ts.saturating_sub(since) / 1000;
                }
                let in_flight = snd.in_flight(rcv);
                let pinned = snd.stats.first_data_us.is_some()
                    && !snd.fin_seen
                    && !snd.rst_seen
                    && !rcv.rst_seen
                    && rcv.win_set
                    && (rcv.win_bytes == 0
                        || (in_flight > 0
                            && in_flight + snd.stats.max_segment_bytes.min(rcv.win_bytes / 4)
                                >= rcv.win_bytes));
                snd.pinned_since = pinned.then_some(ts);
            }
        }

        // Time series.
        if series_on {
            let in_flight = in_flight_f;
            if let Some(b) = self.bucket(rel) {
                let ss = b.side_mut(side);
                ss.bytes += seglen as u64;
                ss.retransmissions += retrans as u64;
                ss.in_flight_max_bytes = ss.in_flight_max_bytes.max(in_flight);
                if zero_window {
                    ss.zero_window_adverts += 1;
                }
                if !sfr {
                    ss.window_min_bytes = Some(
                        ss.window_min_bytes
                            .map_or(window_bytes, |m| m.min(window_bytes)),
                    );
                }
                if let Some(v) = rtt_sample {
                    let os = b.side_mut(side.other());
                    os.rtt_sum_us += v;
                    os.rtt_samples += 1;
                    os.rtt_mean_us = Some(os.rtt_sum_us / os.rtt_samples);
                }
            }
        }
        if let Some(rec) = &mut self.segments {
            rec.push(Seen {
                at_us: rel,
                side: s,
                seq,
                len: seglen,
                ack: ackf.then_some(ack),
                window_bytes,
                syn,
                fin,
                rst,
                retransmission: retrans,
                zero_window,
            });
        }
    }

    fn conn_state(&self) -> &'static str {
        let [c, s] = &self.dirs;
        let syn = self.first_syn_ns.is_some();
        let synack = self.synack_ns.is_some();
        let first_rst = match (c.stats.rst_at_us, s.stats.rst_at_us) {
            (Some(a), Some(b)) => Some(if a <= b { 0 } else { 1 }),
            (Some(_), None) => Some(0),
            (None, Some(_)) => Some(1),
            (None, None) => None,
        };
        if syn && !synack {
            return match first_rst {
                Some(1) => "REJ",
                Some(_) => "RSTOS0",
                None if c.fin_seen => "SH",
                None => "S0",
            };
        }
        if !syn && synack {
            return match first_rst {
                Some(1) => "RSTRH",
                _ if s.fin_seen => "SHR",
                _ => "OTH",
            };
        }
        if !syn && !synack {
            return "OTH";
        }
        match first_rst {
            Some(0) => "RSTO",
            Some(_) => "RSTR",
            None if c.fin_seen && s.fin_seen => "SF",
            None if c.fin_seen => "S2",
            None if s.fin_seen => "S3",
            None => "S1",
        }
    }

    fn finish(mut self) -> FlowObservation {
        let end_rel = self.rel_us(self.last_ns);
        for e in &mut self.zero_windows {
            if !e.reopened {
                e.duration_us = end_rel.saturating_sub(e.start_us);
            }
        }
        let duration_us = end_rel;
        self.idle_gaps
            .sort_by_key(|g| std::cmp::Reverse(g.duration_us));
        let state = self.conn_state().to_string();
        let last_pkt = [self.dirs[0].last_pkt_time, self.dirs[1].last_pkt_time];
        let seen = [
            self.dirs[0].stats.packets > 0,
            self.dirs[1].stats.packets > 0,
        ];
        let mut stats: Vec<DirectionStats> = Vec::with_capacity(2);
        for (i, d) in self.dirs.iter_mut().enumerate() {
            // Never more time at the window than time sending.
            d.stats.window_limited_us = d.stats.window_limited_us.min(d.stats.sending_us());
            d.stats.unanswered_retransmissions = d.retrans_since_peer;
            if seen[i] && seen[1 - i] {
                d.stats.peer_silent_us = last_pkt[i].saturating_sub(last_pkt[1 - i]) / 1000;
            }
            let r = d.stats.rtt;
            if let (Some(min), Some(max)) = (r.min_us, r.max_us) {
                d.stats.rtt.p50_us = d.rtt_hist.quantile(0.5, r.samples, min, max);
                d.stats.rtt.p95_us = d.rtt_hist.quantile(0.95, r.samples, min, max);
            }
            // A sender still pinned when the capture ended: count up to its last packet.
            if d.win_n > 0 {
                d.stats.window_mean_bytes = Some((d.win_sum / d.win_n as u128) as u64);
            }
            let secs = duration_us as f64 / 1e6;
            if secs > 0.0 {
                d.stats.throughput_bits_per_second = d.stats.unique_bytes as f64 * 8.0 / secs;
            }
            let sending = d.stats.sending_us() as f64 / 1e6;
            if sending > 0.0 {
                d.stats.sending_rate_bits_per_second = d.stats.unique_bytes as f64 * 8.0 / sending;
            }
            stats.push(std::mem::take(&mut d.stats));
        }
        let from_server = stats.pop().unwrap_or_default();
        let from_client = stats.pop().unwrap_or_default();
        // The two halves of the RTT: the handshake's when it was captured in order, else the
        // data's (server data is acknowledged by the client: capture point to client and back).
        let (to_client, to_server) = match (self.syn_rtt_ns, self.handshake.synack_to_ack_us) {
            (Some(a), Some(b)) if !self.handshake.synack_before_syn => (Some(b), Some(a / 1000)),
            _ => (from_server.rtt.min_us, from_client.rtt.min_us),
        };
        let capture_point = match (to_client, to_server) {
            (Some(c), Some(s)) if !self.handshake.synack_before_syn => {
                CapturePoint::from_halves(c, s)
            }
            _ => CapturePoint::Unknown,
        };
        FlowObservation {
            capture_point,
            rtt_to_client_us: to_client,
            rtt_to_server_us: to_server,
            id: self.id,
            client: self.client,
            server: self.server,
            start_unix_us: self.start_ns / 1000,
            duration_us,
            packets: self.packets,
            midstream: self.midstream,
            client_isn: self.dirs[0].isn,
            server_isn: self.dirs[1].isn,
            handshake: self.handshake,
            conn_state: state,
            history: self.history,
            from_client,
            from_server,
            zero_windows: self.zero_windows,
            idle_gaps: self.idle_gaps,
            idle_gaps_total: self.idle_total,
            close: self.close,
            series_interval_us: self.series_interval_us,
            series: self.series,
        }
    }
}

type Key = (Endpoint, Endpoint);

/// Reconstructs every TCP connection from segments fed in capture order.
pub struct Analyzer {
    cfg: Config,
    conns: HashMap<Key, Conn>,
    finished: Vec<FlowObservation>,
    next_id: u32,
    segments: u64,
    idle_gap_ns: u64,
    traces: Vec<SegmentTrace>,
}

impl Analyzer {
    /// A new analyzer.
    pub fn new(cfg: Config) -> Analyzer {
        let idle_gap_ns = cfg.idle_gap.as_nanos() as u64;
        Analyzer {
            cfg,
            conns: HashMap::new(),
            finished: Vec::new(),
            next_id: 1,
            segments: 0,
            idle_gap_ns,
            traces: Vec::new(),
        }
    }

    /// Connections currently open (state held in memory).
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one TCP segment seen at `ts_ns`.
    pub fn push(&mut self, ts_ns: u64, seg: &Segment) {
        self.segments += 1;
        let a = Endpoint {
            ip: seg.src,
            port: seg.sport,
        };
        let b = Endpoint {
            ip: seg.dst,
            port: seg.dport,
        };
        let key = if a <= b { (a, b) } else { (b, a) };
        let new_syn = seg.syn() && !seg.ack_flag();
        if let Some(c) = self.conns.get(&key) {
            let from_client = c.client == a;
            let same_syn = from_client && c.dirs[0].isn == Some(seg.seq);
            // A SYN arriving after the SYN-ACK that answers it belongs to that connection.
            let answered = from_client
                && c.dirs[0].isn.is_none()
                && c.synack_ack == Some(seg.seq.wrapping_add(1));
            if new_syn && !same_syn && !answered && (c.packets > 0) {
                if let Some(old) = self.conns.remove(&key) {
                    self.close(old);
                }
            }
        }
        if !self.conns.contains_key(&key) {
            let (client, server) = if seg.syn() && !seg.ack_flag() {
                (a, b)
            } else if seg.syn() {
                (b, a)
            } else if a.port >= b.port {
                (a, b)
            } else {
                (b, a)
            };
            let series_us = match self.cfg.series_interval {
                Some(i)
                    if self
                        .cfg
                        .series_filter
                        .as_ref()
                        .is_none_or(|f| f(&client, &server)) =>
                {
                    (i.as_micros() as u64).max(1)
                }
                _ => 0,
            };
            let id = self.next_id;
            self.next_id += 1;
            let mut conn = Conn::new(id, client, server, ts_ns, series_us);
            if self.cfg.segments && series_us > 0 {
                conn.segments = Some(Recorder::new(id));
            }
            self.conns.insert(key, conn);
        }
        let idle = self.idle_gap_ns;
        if let Some(c) = self.conns.get_mut(&key) {
            let s = if c.client == a { 0 } else { 1 };
            c.push(ts_ns, s, seg, idle);
        }
        if self.segments.is_multiple_of(EVICT_EVERY) {
            self.evict(ts_ns);
        }
    }

    fn evict(&mut self, now: u64) {
        let done: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closed() && c.last_ns.saturating_add(EVICT_AFTER_NS) < now)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            if let Some(c) = self.conns.remove(&k) {
                self.close(c);
            }
        }
    }

    /// Summarises a connection (and keeps its segments, if recorded).
    fn close(&mut self, mut c: Conn) {
        if let Some(r) = c.segments.take() {
            self.traces.push(r.finish());
        }
        self.finished.push(c.finish());
    }

    /// Summarises every connection, in order of first packet.
    pub fn finish(self) -> Vec<FlowObservation> {
        self.finish_with_segments().0
    }

    /// Summarises every connection, in order of first packet, with the segments of those that
    /// recorded them ([`Config::segments`]), in the same order.
    pub fn finish_with_segments(mut self) -> (Vec<FlowObservation>, Vec<SegmentTrace>) {
        let rest: Vec<Conn> = self.conns.drain().map(|(_, c)| c).collect();
        for c in rest {
            self.close(c);
        }
        self.finished.sort_by_key(|f| f.id);
        self.traces.sort_by_key(|t| t.id);
        (self.finished, self.traces)
    }
}
