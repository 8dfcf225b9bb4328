//! The userspace WAN emulator: per direction, packets read from one TUN device go through loss,
//! a rate-limited byte-bounded queue and a delay line, and are written to the other TUN device
//! at their due time (Mahimahi's approach, so TCP runs end to end between two kernels).
//!
//! Per packet, in order: loss (random, Gilbert-Elliott bursts, scripted SYN drops) -> rate as
//! serialization delay with no burst credit (`depart = max(now, last_depart) + len*8/rate`),
//! drop-tail when the bytes still waiting to serialize would exceed the queue -> delay (+ jitter,
//! order kept unless reordering is allowed) -> written at `depart + delay` on CLOCK_MONOTONIC
//! (sleep with 1 ns timer slack, then spin the last stretch). Every drop is counted, the
//! emulator's own included (queue full, delay line full, a failed write).
//!
//! With TUN offload ([`TunMode::Offload`], see [`crate::vnet`]) a read returns a TCP
//! super-packet of up to 64 KiB, and everything above stays per wire segment (MSS-sized packet)
//! as before:
//! - counters count segments and their IP bytes, as the wire would carry them;
//! - random or Gilbert-Elliott loss and jitter decide per segment, so on such a link every
//!   super-packet is split into segments (complete checksums) before the pipeline;
//! - a rate serializes the segments' IP bytes (`len*8/rate` summed over the segments); a
//!   super-packet is cut into GSO chunks of at most [`CHUNK_SERIALIZATION`] of serialization,
//!   each leaving when its last segment would have (never early, so the rate is never
//!   exceeded), and when it does not fit the queue whole, it is split into segments and
//!   drop-tail keeps the ones that fit;
//! - with delay only, super-packets travel whole (that is where the speed comes from).
//!
//! The rate counts IP bytes (the TUN link has no layer 2): at 1500 MTU a TCP flow with
//! timestamps carries 1448 payload bytes in 1500, so its goodput tops out at 96.5% of the rate.

use crate::tun::{Tun, TunMode};
use crate::vnet::{self, VnetHdr, Wire};
use serde::{Deserialize, Serialize};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How packets are lost at random.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(tag = "model", rename_all = "kebab-case")]
pub enum LossModel {
    /// No random loss.
    #[default]
    None,
    /// Each packet is lost with probability `p` (0..1), independently.
    Random { p: f64 },
    /// Gilbert-Elliott: a good and a bad state; `p` = P(good -> bad), `r` = P(bad -> good) per
    /// packet; packets are lost with `loss_bad` in the bad state and `loss_good` in the good one.
    GilbertElliott {
        p: f64,
        r: f64,
        loss_bad: f64,
        loss_good: f64,
    },
}

/// One direction of the emulated link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Uniform jitter added to the delay, `-jitter..=+jitter` (the delay never goes below 0).
    pub jitter: Duration,
    /// Let jitter reorder packets (default: order kept, like a single path).
    pub reorder: bool,
    /// Bottleneck rate, bits per second; `None` = as fast as the emulator runs.
    pub rate_bps: Option<f64>,
    pub loss: LossModel,
    /// Bytes the bottleneck queue holds (drop-tail); only meaningful with a rate.
    pub queue_bytes: u64,
    /// Scripted: drop the first SYN of every Nth new connection (retransmitted SYNs pass).
    pub drop_first_syn_every: Option<u32>,
    /// Seed of the loss generator (reproducible runs).
    pub seed: u64,
}

impl LinkConfig {
    /// A link with only a one-way delay.
    pub fn delay(delay: Duration) -> LinkConfig {
        LinkConfig {
            delay,
            jitter: Duration::ZERO,
            reorder: false,
            rate_bps: None,
            loss: LossModel::None,
            queue_bytes: DEFAULT_MIN_QUEUE,
            drop_first_syn_every: None,
            seed: 1,
        }
    }
}

/// The smallest default queue: 100 full-size packets.
pub const DEFAULT_MIN_QUEUE: u64 = 150_000;

/// Upper bound on bytes held in one direction's delay line; beyond it packets are dropped and
/// counted as `dropped_overflow` (protects memory when no rate bounds the queue).
pub const MAX_HELD_BYTES: u64 = 512 << 20;

/// Default queue for a rate and round-trip time: one bandwidth-delay product, at least
/// [`DEFAULT_MIN_QUEUE`].
pub fn default_queue_bytes(rate_bps: Option<f64>, rtt: Duration) -> u64 {
    match rate_bps {
        Some(r) => netblame_core::window::bdp_bytes(r, rtt).max(DEFAULT_MIN_QUEUE),
        None => DEFAULT_MIN_QUEUE,
    }
}

/// Width of one bucket of the lateness histogram, microseconds.
pub const LATENESS_BUCKET_US: u64 = 10;
const LATENESS_BUCKETS: usize = 1001;

/// Live counters of one direction (updated by the forwarder threads).
#[derive(Debug)]
pub struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped_random: AtomicU64,
    dropped_burst: AtomicU64,
    dropped_scripted: AtomicU64,
    dropped_queue: AtomicU64,
    dropped_overflow: AtomicU64,
    dropped_write: AtomicU64,
    read_errors: AtomicU64,
    superpackets_in: AtomicU64,
    superpackets_split: AtomicU64,
    held_bytes: AtomicU64,
    max_queue_bytes: AtomicU64,
    /// How late packets left versus their due time, 10 us buckets; the last is "10 ms or more".
    lateness: Vec<AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dropped_random: AtomicU64::new(0),
            dropped_burst: AtomicU64::new(0),
            dropped_scripted: AtomicU64::new(0),
            dropped_queue: AtomicU64::new(0),
            dropped_overflow: AtomicU64::new(0),
            dropped_write: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            superpackets_in: AtomicU64::new(0),
            superpackets_split: AtomicU64::new(0),
            held_bytes: AtomicU64::new(0),
            max_queue_bytes: AtomicU64::new(0),
            lateness: (0..LATENESS_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn inc(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Ordering::Relaxed);
}

/// A snapshot of one direction's counters. Packets and bytes are wire segments (packets of at
/// most the MTU) and their IP bytes, also when TUN offload moved them as super-packets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Lost by the random (Bernoulli) model.
    pub dropped_random: u64,
    /// Lost by the Gilbert-Elliott model.
    pub dropped_burst: u64,
    /// Dropped by a script (first SYN of every Nth connection).
    pub dropped_scripted: u64,
    /// Drop-tail: the bottleneck queue was full.
    pub dropped_queue: u64,
    /// The emulator's own limit on held bytes was reached.
    pub dropped_overflow: u64,
    /// Writing into the other namespace failed.
    pub dropped_write: u64,
    pub read_errors: u64,
    /// GSO super-packets read (frames of more than one segment; offload mode only).
    #[serde(default)]
    pub superpackets_in: u64,
    /// Super-packets the emulator cut into segments or smaller chunks itself.
    #[serde(default)]
    pub superpackets_split: u64,
    /// Largest bottleneck queue seen, bytes.
    pub max_queue_bytes: u64,
    /// IP bytes still in the delay line when the snapshot was taken.
    pub held_bytes: u64,
    /// Departure lateness versus due time, microseconds, median.
    pub lateness_p50_us: u64,
    /// Departure lateness, 99th percentile, microseconds (10 us resolution).
    pub lateness_p99_us: u64,
    /// Departure lateness, maximum bucket, microseconds.
    pub lateness_max_us: u64,
}

impl LinkStats {
    /// Every packet the emulator dropped, for whatever reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_random
            + self.dropped_burst
            + self.dropped_scripted
            + self.dropped_queue
            + self.dropped_overflow
            + self.dropped_write
    }
}

impl Counters {
    /// A consistent-enough snapshot (each counter read once).
    pub fn snapshot(&self) -> LinkStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let hist: Vec<u64> = self.lateness.iter().map(g).collect();
        let total: u64 = hist.iter().sum();
        let pct = |q: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let target = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut acc = 0;
            for (i, n) in hist.iter().enumerate() {
                acc += n;
                if acc >= target {
                    return i as u64 * LATENESS_BUCKET_US;
                }
            }
            (LATENESS_BUCKETS as u64 - 1) * LATENESS_BUCKET_US
        };
        let max = hist
            .iter()
            .rposition(|n| *n > 0)
            .map(|i| i as u64 * LATENESS_BUCKET_US)
            .unwrap_or(0);
        LinkStats {
            packets_in: g(&self.packets_in),
            bytes_in: g(&self.bytes_in),
            packets_out: g(&self.packets_out),
            bytes_out: g(&self.bytes_out),
            dropped_random: g(&self.dropped_random),
            dropped_burst: g(&self.dropped_burst),
            dropped_scripted: g(&self.dropped_scripted),
            dropped_queue: g(&self.dropped_queue),
            dropped_overflow: g(&self.dropped_overflow),
            dropped_write: g(&self.dropped_write),
            read_errors: g(&self.read_errors),
            superpackets_in: g(&self.superpackets_in),
            superpackets_split: g(&self.superpackets_split),
            max_queue_bytes: g(&self.max_queue_bytes),
            held_bytes: g(&self.held_bytes),
            lateness_p50_us: pct(0.5),
            lateness_p99_us: pct(0.99),
            lateness_max_us: max,
        }
    }
}

/// Why a packet was dropped before queueing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Random,
    Burst,
    Scripted,
}

/// Loss decisions for one direction.
struct Dropper {
    loss: LossModel,
    rng: fastrand::Rng,
    bad_state: bool,
    syn_every: Option<u32>,
    /// First SYN seen per 4-tuple, with its ISN (a new ISN on the same tuple is a new connection).
    syns: HashMap<(Ipv4Addr, u16, Ipv4Addr, u16), u32>,
    connections: u64,
}

/// A SYN without ACK: (src, sport, dst, dport, isn).
pub(crate) fn parse_syn(pkt: &[u8]) -> Option<((Ipv4Addr, u16, Ipv4Addr, u16), u32)> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != 6 {
        return None;
    }
    let ihl = (pkt[0] & 0x0f) as usize * 4;
    let tcp = pkt.get(ihl..ihl + 20)?;
    let flags = tcp[13];
    if flags & 0x02 == 0 || flags & 0x10 != 0 {
        return None;
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let isn = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    Some(((src, sport, dst, dport), isn))
}

impl Dropper {
    fn new(cfg: &LinkConfig) -> Dropper {
        Dropper {
            loss: cfg.loss,
            rng: fastrand::Rng::with_seed(cfg.seed),
            bad_state: false,
            syn_every: cfg.drop_first_syn_every.filter(|n| *n > 0),
            syns: HashMap::new(),
            connections: 0,
        }
    }

    fn judge(&mut self, pkt: &[u8]) -> Verdict {
        if let Some(every) = self.syn_every {
            if let Some((tuple, isn)) = parse_syn(pkt) {
                if self.syns.get(&tuple) != Some(&isn) {
                    if self.syns.len() > 65_536 {
                        self.syns.clear();
                    }
                    self.syns.insert(tuple, isn);
                    self.connections += 1;
                    if self.connections.is_multiple_of(every as u64) {
                        return Verdict::Scripted;
                    }
                }
            }
        }
        match self.loss {
            LossModel::None => Verdict::Pass,
            LossModel::Random { p } => {
                if self.rng.f64() < p {
                    Verdict::Random
                } else {
                    Verdict::Pass
                }
            }
            LossModel::GilbertElliott {
                p,
                r,
                loss_bad,
                loss_good,
            } => {
                let flip = self.rng.f64();
                self.bad_state = if self.bad_state { flip >= r } else { flip < p };
                let loss = if self.bad_state { loss_bad } else { loss_good };
                if self.rng.f64() < loss {
                    Verdict::Burst
                } else {
                    Verdict::Pass
                }
            }
        }
    }
}

/// A frame in the delay line, ordered by due time then arrival.
struct Held {
    due: Instant,
    seq: u64,
    /// What is written to the TUN device (virtio header included in offload mode).
    data: Vec<u8>,
    /// What it is on the wire.
    wire: Wire,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest due packet must come out first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// The delay line: a FIFO when order is kept (due times only grow), a heap when jitter may
/// reorder.
enum DelayLine {
    Fifo(VecDeque<Held>),
    Heap(BinaryHeap<Held>),
}

impl DelayLine {
    fn new(reorder: bool) -> DelayLine {
        if reorder {
            DelayLine::Heap(BinaryHeap::new())
        } else {
            DelayLine::Fifo(VecDeque::new())
        }
    }
    fn extend(&mut self, batch: Vec<Held>) {
        match self {
            DelayLine::Fifo(q) => q.extend(batch),
            DelayLine::Heap(h) => h.extend(batch),
        }
    }
    fn next_due(&self) -> Option<Instant> {
        match self {
            DelayLine::Fifo(q) => q.front().map(|h| h.due),
            DelayLine::Heap(h) => h.peek().map(|h| h.due),
        }
    }
    fn pop(&mut self) -> Option<Held> {
        match self {
            DelayLine::Fifo(q) => q.pop_front(),
            DelayLine::Heap(h) => h.pop(),
        }
    }
}

/// The running emulator: four threads (a reader and a writer per direction).
pub struct Forwarder {
    /// How both TUN devices exchange packets with the emulator.
    pub mode: TunMode,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Client -> server.
    pub uplink: Arc<Counters>,
    /// Server -> client.
    pub downlink: Arc<Counters>,
}

impl Forwarder {
    /// Starts forwarding between the client's and the server's TUN devices (both must be in
    /// the same [`TunMode`]).
    pub fn start(
        client: Tun,
        server: Tun,
        uplink: &LinkConfig,
        downlink: &LinkConfig,
    ) -> io::Result<Forwarder> {
        if client.mode != server.mode {
            return Err(io::Error::other(format!(
                "the two TUN devices differ in mode ({:?} vs {:?})",
                client.mode, server.mode
            )));
        }
        let mode = client.mode;
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(client);
        let server = Arc::new(server);
        let up = Arc::new(Counters::default());
        let down = Arc::new(Counters::default());
        let mut threads = Vec::new();
        for (from, to, cfg, counters, label) in [
            (
                client.clone(),
                server.clone(),
                uplink.clone(),
                up.clone(),
                "up",
            ),
            (
                server.clone(),
                client.clone(),
                downlink.clone(),
                down.clone(),
                "down",
            ),
        ] {
            let (tx, rx) = mpsc::channel::<Vec<Held>>();
            let reorder = cfg.reorder;
            let (s1, c1) = (stop.clone(), counters.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("lab-read-{label}"))
                    .spawn(move || reader(&from, &cfg, &c1, &s1, tx))?,
            );
            let (s2, c2) = (stop.clone(), counters.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("lab-write-{label}"))
                    .spawn(move || writer(&to, &c2, &s2, rx, reorder))?,
            );
        }
        Ok(Forwarder {
            mode,
            stop,
            threads,
            uplink: up,
            downlink: down,
        })
    }

    /// Stops the threads and closes the devices (they vanish with their last fd).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Frames handed to the writer at once (fewer channel operations at high packet rates) ...
const BATCH: usize = 64;
/// ... or bytes, whichever comes first (super-packets are up to 64 KiB each).
const BATCH_BYTES: usize = 128 << 10;

/// Room for one frame: a 64 KiB IP packet plus its virtio header.
const FRAME_CAPACITY: usize = 65_536 + vnet::VNET_HDR_LEN;
/// Frames at least this long go to the delay line in the buffer they were read into (no copy
/// of a super-packet; at most half the allocation unused); shorter ones are copied out.
const TAKE_FRAME_BYTES: usize = FRAME_CAPACITY / 2;

/// Longest serialization one frame may carry on a rate-limited link: a super-packet is cut
/// into GSO chunks of at most this much (at least one segment each), and a chunk leaves when
/// its last segment would have, so its first segment is held at most this long past its own
/// departure (at 1 Gbit/s, 8 segments of 1500 bytes).
pub const CHUNK_SERIALIZATION: Duration = Duration::from_micros(100);

/// The reading side of one direction: loss, rate, queue and delay decisions, per wire segment.
struct Shaper<'a> {
    cfg: &'a LinkConfig,
    c: &'a Counters,
    dropper: Dropper,
    jitter_rng: fastrand::Rng,
    last_depart: Option<Instant>,
    last_due: Option<Instant>,
    seq: u64,
    ns_per_byte: Option<f64>,
    /// Bytes of virtio header in front of every frame (0 in plain mode).
    hdr_len: usize,
    /// Loss or jitter decide per segment: split every super-packet into segments.
    per_segment: bool,
}

impl<'a> Shaper<'a> {
    fn new(cfg: &'a LinkConfig, c: &'a Counters, mode: TunMode) -> Shaper<'a> {
        Shaper {
            cfg,
            c,
            dropper: Dropper::new(cfg),
            jitter_rng: fastrand::Rng::with_seed(cfg.seed ^ 0x9e37_79b9_7f4a_7c15),
            last_depart: None,
            last_due: None,
            seq: 0,
            ns_per_byte: cfg.rate_bps.filter(|r| *r > 0.0).map(|r| 8e9 / r),
            hdr_len: match mode {
                TunMode::Plain => 0,
                TunMode::Offload => vnet::VNET_HDR_LEN,
            },
            per_segment: cfg.loss != LossModel::None || !cfg.jitter.is_zero(),
        }
    }

    /// Header and IP packet of a frame.
    fn parts<'f>(&self, frame: &'f [u8]) -> (VnetHdr, &'f [u8]) {
        if self.hdr_len == 0 {
            return (VnetHdr::default(), frame);
        }
        let hdr = VnetHdr::parse(frame).unwrap_or_default();
        (hdr, frame.get(self.hdr_len..).unwrap_or_default())
    }

    /// Most segments of this super-packet's size one frame may carry.
    fn chunk_segments(&self, wire: Wire) -> usize {
        match self.ns_per_byte {
            None => usize::MAX,
            Some(npb) => {
                let per_segment = wire.bytes as f64 / f64::from(wire.segments.max(1)) * npb;
                ((CHUNK_SERIALIZATION.as_nanos() as f64 / per_segment) as usize).max(1)
            }
        }
    }

    /// Takes one frame read from the TUN device; what survives goes to `out`.
    /// A large frame that travels whole is handed on in `frame`'s own allocation (which is
    /// then left empty); anything else is copied out of it.
    fn on_frame(&mut self, frame: &mut Vec<u8>, now: Instant, out: &mut Vec<Held>) {
        let (hdr, pkt) = self.parts(frame);
        let wire = if self.hdr_len == 0 {
            Wire::single(pkt.len())
        } else {
            vnet::wire_of(&hdr, pkt)
        };
        inc(&self.c.packets_in, u64::from(wire.segments));
        inc(&self.c.bytes_in, wire.bytes);
        if wire.segments > 1 {
            inc(&self.c.superpackets_in, 1);
            let per = if self.per_segment {
                1
            } else {
                self.chunk_segments(wire)
            };
            if per < wire.segments as usize {
                if let Some(chunks) = vnet::split(&hdr, pkt, per) {
                    inc(&self.c.superpackets_split, 1);
                    for ch in chunks {
                        self.admit(ch.frame, ch.wire, now, out);
                    }
                    return;
                }
            }
        }
        let data = if frame.len() >= TAKE_FRAME_BYTES {
            std::mem::take(frame)
        } else {
            frame.to_vec()
        };
        self.admit(data, wire, now, out);
    }

    /// Loss, rate and queue, delay: one frame (a segment, or a chunk of segments that no
    /// per-segment decision applies to).
    fn admit(&mut self, frame: Vec<u8>, wire: Wire, now: Instant, out: &mut Vec<Held>) {
        let c = self.c;
        let segs = u64::from(wire.segments);
        let (hdr, pkt) = self.parts(&frame);
        match self.dropper.judge(pkt) {
            Verdict::Pass => {}
            Verdict::Random => return inc(&c.dropped_random, segs),
            Verdict::Burst => return inc(&c.dropped_burst, segs),
            Verdict::Scripted => return inc(&c.dropped_scripted, segs),
        }
        // Rate: serialization delay with no burst credit; the backlog is what still waits to
        // serialize, and it is what the byte-bounded queue holds.
        let depart = match self.ns_per_byte {
            Some(npb) => {
                let start = self.last_depart.map_or(now, |d| d.max(now));
                let backlog = ((start - now).as_nanos() as f64 / npb) as u64;
                if backlog + wire.bytes > self.cfg.queue_bytes {
                    // Drop-tail per segment: the leading segments that fit still get in.
                    if segs > 1 {
                        if let Some(chunks) = vnet::split(&hdr, pkt, 1) {
                            inc(&c.superpackets_split, 1);
                            for ch in chunks {
                                self.admit(ch.frame, ch.wire, now, out);
                            }
                            return;
                        }
                    }
                    return inc(&c.dropped_queue, segs);
                }
                c.max_queue_bytes
                    .fetch_max(backlog + wire.bytes, Ordering::Relaxed);
                let d = start + Duration::from_nanos((wire.bytes as f64 * npb) as u64);
                self.last_depart = Some(d);
                d
            }
            None => now,
        };
        let cfg = self.cfg;
        let mut due = depart + cfg.delay;
        if !cfg.jitter.is_zero() {
            let j = cfg.jitter.as_nanos() as i64;
            let off = self.jitter_rng.i64(-j..=j);
            due = if off >= 0 {
                due + Duration::from_nanos(off as u64)
            } else {
                due.checked_sub(Duration::from_nanos((-off) as u64))
                    .unwrap_or(depart)
                    .max(depart)
            };
        }
        if !cfg.reorder {
            if let Some(prev) = self.last_due {
                due = due.max(prev);
            }
            self.last_due = Some(due);
        }
        if c.held_bytes.load(Ordering::Relaxed) + wire.bytes > MAX_HELD_BYTES {
            return inc(&c.dropped_overflow, segs);
        }
        inc(&c.held_bytes, wire.bytes);
        self.seq += 1;
        out.push(Held {
            due,
            seq: self.seq,
            data: frame,
            wire,
        });
    }
}

fn reader(
    from: &Tun,
    cfg: &LinkConfig,
    c: &Counters,
    stop: &AtomicBool,
    tx: mpsc::Sender<Vec<Held>>,
) {
    let mut batch: Vec<Held> = Vec::with_capacity(BATCH);
    let mut batch_bytes = 0usize;
    let mut buf: Vec<u8> = Vec::with_capacity(FRAME_CAPACITY);
    let mut shaper = Shaper::new(cfg, c, from.mode);
    raise_thread_priority();
    while !stop.load(Ordering::Relaxed) {
        if buf.capacity() < FRAME_CAPACITY {
            // The last frame went on in this buffer.
            buf = Vec::with_capacity(FRAME_CAPACITY);
        }
        let n = match from.recv_vec(&mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => {
                if !batch.is_empty()
                    && tx
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                        .is_err()
                {
                    return;
                }
                batch_bytes = 0;
                from.wait_readable(50);
                continue;
            }
            Err(_) => {
                inc(&c.read_errors, 1);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shaper.on_frame(&mut buf, Instant::now(), &mut batch);
        batch_bytes += n;
        if batch.len() >= BATCH || batch_bytes >= BATCH_BYTES {
            if tx
                .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .is_err()
            {
                return;
            }
            batch_bytes = 0;
        }
    }
}

/// The last stretch before a due time is spun rather than slept: sleep wake-ups are late by
/// tens of microseconds, more on a busy machine. How long a stretch is learnt from the
/// writer's own wake-ups ([`SpinMargin`]), between these bounds; a fixed 100 us kept a writer
/// whose packets are due every 100 us (1 Gbit/s in chunks, or its ACKs) spinning all the time.
const SPIN_MIN: Duration = Duration::from_micros(15);
const SPIN_MAX: Duration = Duration::from_micros(200);

/// How long before a due time the writer stops sleeping and spins: the running mean of its
/// observed sleep overshoot (measured: at 1 Gbit/s and 100 ms this halves the writers' CPU
/// against a fixed 100 us, for p99 lateness of about 0.2 ms instead of 0.15 ms; the lateness
/// histogram in the counters shows what each lab got).
struct SpinMargin {
    overshoot_ns: f64,
}

impl SpinMargin {
    fn new() -> SpinMargin {
        SpinMargin {
            overshoot_ns: 50_000.0,
        }
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.overshoot_ns as u64).clamp(SPIN_MIN, SPIN_MAX)
    }

    /// A timed sleep asked for `asked` and returned after `took`.
    fn observe(&mut self, asked: Duration, took: Duration) {
        let over = took.saturating_sub(asked).as_nanos() as f64;
        self.overshoot_ns += (over - self.overshoot_ns) / 16.0;
        self.overshoot_ns = self.overshoot_ns.min(SPIN_MAX.as_nanos() as f64);
    }
}

fn set_timer_slack_1ns() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and only affects this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Nice value of the forwarder threads: on a busy machine a woken reader or writer gets the
/// CPU sooner, so packets are read and leave on time (delay error). Needs root, which the lab
/// has; ignored when refused. A normal (not real-time) priority: a forwarder that spins never
/// locks other work out.
const FORWARDER_NICE: libc::c_int = -10;

fn raise_thread_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes its
    // nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, FORWARDER_NICE);
    }
}

fn writer(to: &Tun, c: &Counters, stop: &AtomicBool, rx: mpsc::Receiver<Vec<Held>>, reorder: bool) {
    set_timer_slack_1ns();
    raise_thread_priority();
    let mut line = DelayLine::new(reorder);
    let mut margin = SpinMargin::new();
    let mut disconnected = false;
    while !stop.load(Ordering::Relaxed) {
        // Take everything that has arrived.
        loop {
            match rx.try_recv() {
                Ok(b) => line.extend(b),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        // Send what is due.
        let mut sent_any = false;
        while line.next_due().is_some_and(|d| d <= now) {
            let h = line.pop().expect("peeked");
            let late = now.saturating_duration_since(h.due).as_micros() as u64;
            let bucket = (late / LATENESS_BUCKET_US).min(LATENESS_BUCKETS as u64 - 1) as usize;
            let segs = u64::from(h.wire.segments);
            inc(&c.lateness[bucket], segs);
            c.held_bytes.fetch_sub(h.wire.bytes, Ordering::Relaxed);
            match to.send(&h.data) {
                Ok(()) => {
                    inc(&c.packets_out, segs);
                    inc(&c.bytes_out, h.wire.bytes);
                }
                Err(_) => inc(&c.dropped_write, segs),
            }
            sent_any = true;
        }
        if sent_any {
            continue;
        }
        match line.next_due() {
            None if disconnected => return,
            None => match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(b) => line.extend(b),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
            Some(due) => {
                let now = Instant::now();
                let wait = due.saturating_duration_since(now);
                let spin = margin.get();
                if wait > spin && !disconnected {
                    match rx.recv_timeout(wait - spin) {
                        Ok(b) => line.extend(b),
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            margin.observe(wait - spin, now.elapsed());
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => disconnected = true,
                    }
                } else if wait > spin {
                    std::thread::sleep(wait - spin);
                    margin.observe(wait - spin, now.elapsed());
                } else {
                    while Instant::now() < due {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(sport: u16, isn: u32, ack: bool) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 18, 0, 1]);
        p[16..20].copy_from_slice(&[198, 19, 0, 1]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..28].copy_from_slice(&isn.to_be_bytes());
        p[33] = if ack { 0x12 } else { 0x02 };
        p
    }

    #[test]
    fn scripted_drop_hits_the_first_syn_of_every_nth_connection_only() {
        let mut cfg = LinkConfig::delay(Duration::ZERO);
        cfg.drop_first_syn_every = Some(2);
        let mut d = Dropper::new(&cfg);
        assert_eq!(d.judge(&syn(1000, 7, false)), Verdict::Pass);
        assert_eq!(d.judge(&syn(1001, 8, false)), Verdict::Scripted);
        // Its retransmission (same tuple, same ISN) passes.
        assert_eq!(d.judge(&syn(1001, 8, false)), Verdict::Pass);
        // SYN-ACKs are not SYNs of a new connection.
        assert_eq!(d.judge(&syn(1002, 9, true)), Verdict::Pass);
        assert_eq!(d.judge(&syn(1003, 10, false)), Verdict::Pass);
        // Same tuple, new ISN: a new connection (the 4th).
        assert_eq!(d.judge(&syn(1000, 99, false)), Verdict::Scripted);
    }

    #[test]
    fn random_loss_rate_is_close_to_p() {
        let mut cfg = LinkConfig::delay(Duration::ZERO);
        cfg.loss = LossModel::Random { p: 0.1 };
        let mut d = Dropper::new(&cfg);
        let lost = (0..100_000)
            .filter(|_| d.judge(&[0u8; 40]) != Verdict::Pass)
            .count();
        assert!((8_000..12_000).contains(&lost), "{lost}");
    }

    #[test]
    fn gilbert_elliott_losses_come_in_bursts() {
        let mut cfg = LinkConfig::delay(Duration::ZERO);
        cfg.loss = LossModel::GilbertElliott {
            p: 0.01,
            r: 0.2,
            loss_bad: 1.0,
            loss_good: 0.0,
        };
        let mut d = Dropper::new(&cfg);
        let v: Vec<bool> = (0..100_000)
            .map(|_| d.judge(&[0u8; 40]) != Verdict::Pass)
            .collect();
        let lost = v.iter().filter(|x| **x).count();
        let runs = v.windows(2).filter(|w| !w[0] && w[1]).count();
        // Mean burst length 1/r = 5 packets: far longer than independent loss gives.
        assert!(
            lost as f64 / runs as f64 > 3.0,
            "lost {lost} in {runs} bursts"
        );
    }

    #[test]
    fn spin_margin_follows_the_overshoot_within_bounds() {
        let us = Duration::from_micros;
        let mut m = SpinMargin::new();
        for _ in 0..200 {
            m.observe(us(100), us(130));
        }
        let got = m.get();
        assert!(got > us(28) && got < us(32), "{got:?}");
        // A stalled machine cannot push it past the bound...
        for _ in 0..200 {
            m.observe(us(100), Duration::from_millis(20));
        }
        assert_eq!(m.get(), SPIN_MAX);
        // ... nor can perfect wake-ups take it below the floor.
        for _ in 0..500 {
            m.observe(us(100), us(100));
        }
        assert_eq!(m.get(), SPIN_MIN);
    }

    #[test]
    fn lateness_percentiles() {
        let c = Counters::default();
        for _ in 0..98 {
            inc(&c.lateness[2], 1);
        }
        inc(&c.lateness[50], 2);
        let s = c.snapshot();
        assert_eq!(s.lateness_p50_us, 20);
        assert_eq!(s.lateness_p99_us, 500);
        assert_eq!(s.lateness_max_us, 500);
    }
}
