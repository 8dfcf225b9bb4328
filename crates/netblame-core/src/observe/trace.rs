//! What kernel tracepoints saw (`netblame trace`): events with wall-clock times, and the
//! aggregates built from them (per-CPU log2 histograms of NET_RX softirq time, drops by reason,
//! retransmits by connection, receive-buffer growth steps, lost-event counts).
//!
//! Pure bookkeeping: [`TraceAccumulator`] folds events into a [`TraceSummary`]; what any of it
//! means is decided in [`crate::rules::kernel_events`].

use crate::observe::TcpState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Both ends of a connection (or of a dropped packet), local first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub struct Conn {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

impl fmt::Display for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ep = |ip: IpAddr, port: u16| match ip {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        write!(
            f,
            "{} -> {}",
            ep(self.src, self.sport),
            ep(self.dst, self.dport)
        )
    }
}

/// The process that owns a socket, as last seen sending or receiving on it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Owner {
    pub pid: u32,
    pub comm: String,
    /// Container or pod, when the source could name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.comm, self.pid)?;
        if let Some(c) = &self.container {
            write!(f, " in {c}")?;
        }
        Ok(())
    }
}

/// What happened, per tracepoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// `tcp:tcp_retransmit_skb`.
    Retransmit { state: Option<TcpState>, err: i64 },
    /// `tcp:tcp_send_reset`; `reason` is the kernel's `sk_rst_reason` name where it has one.
    ResetSent {
        state: Option<TcpState>,
        reason: Option<String>,
    },
    /// `tcp:tcp_receive_reset`.
    ResetReceived { state: Option<TcpState> },
    /// `skb:kfree_skb`: a packet dropped, with the kernel's reason name and where.
    Drop {
        reason: String,
        reason_code: u32,
        location: Option<String>,
        /// EtherType of the packet (0x0800 IPv4, 0x86dd IPv6).
        protocol: u16,
        /// IP protocol (6 TCP, 17 UDP), 0 when unknown.
        l4proto: u8,
    },
    /// `sock:inet_sock_set_state` for TCP.
    StateChange {
        old: Option<TcpState>,
        new: Option<TcpState>,
    },
    /// `tcp:tcp_rcvbuf_grow`: autotuning asked for a larger receive buffer.
    RcvbufGrow {
        rtt_us: u64,
        copied: u64,
        inq: u64,
        space: u64,
        rcvbuf: u64,
        window_clamp: u64,
        scaling_ratio: u64,
        /// Tracepoint hits folded into this event by per-socket sampling.
        calls: u64,
    },
    /// `tcp:tcp_rcv_space_adjust`, reported when the buffer changed (or once per sample interval).
    RcvSpace {
        rcvbuf: u64,
        /// SO_RCVBUF was set: autotuning is off for this socket.
        locked: bool,
        space: u64,
        window_clamp: u64,
        calls: u64,
    },
    /// `tcp:tcp_probe`, sampled per socket.
    TcpProbe {
        snd_cwnd: u64,
        ssthresh: u64,
        snd_wnd: u64,
        srtt_us: u64,
        rcv_wnd: u64,
        data_len: u64,
    },
    /// One NET_RX softirq run at least the loader's threshold long.
    NetRxLong { duration_ns: u64 },
    /// One `tcp_collapse` call (function tracing only).
    Collapse { duration_ns: u64 },
    /// One `tcp_prune_queue` call (function tracing only).
    Prune { duration_ns: u64 },
}

impl EventKind {
    /// Short name, as in JSON (`retransmit`, `drop`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Retransmit { .. } => "retransmit",
            EventKind::ResetSent { .. } => "reset-sent",
            EventKind::ResetReceived { .. } => "reset-received",
            EventKind::Drop { .. } => "drop",
            EventKind::StateChange { .. } => "state-change",
            EventKind::RcvbufGrow { .. } => "rcvbuf-grow",
            EventKind::RcvSpace { .. } => "rcv-space",
            EventKind::TcpProbe { .. } => "tcp-probe",
            EventKind::NetRxLong { .. } => "net-rx-long",
            EventKind::Collapse { .. } => "collapse",
            EventKind::Prune { .. } => "prune",
        }
    }
}

/// One kernel event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TraceEvent {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub wall_ns: u64,
    pub cpu: u32,
    /// An opaque socket id (the kernel address), 0 when there is none.
    pub sock: u64,
    /// Network namespace inode (as `/proc/PID/ns/net` shows it), 0 when unknown.
    #[serde(default)]
    pub netns: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<Conn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A log2 histogram in microseconds, the SystemTap layout of seed 001: bucket 0 counts runs under
/// 1 µs, bucket `i` runs in `[2^(i-1), 2^i)` µs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Log2Histogram {
    pub buckets: Vec<u64>,
}

impl Log2Histogram {
    /// Lower bound in µs of bucket `i`.
    pub fn lower_us(i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            1u64 << (i - 1).min(63)
        }
    }

    /// The bucket a duration falls in.
    pub fn bucket_of(us: u64) -> usize {
        if us == 0 {
            0
        } else {
            64 - us.leading_zeros() as usize
        }
    }

    /// Adds `n` to bucket `i`.
    pub fn add(&mut self, i: usize, n: u64) {
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, 0);
        }
        self.buckets[i] += n;
    }

    /// Adds every bucket of `other`.
    pub fn merge(&mut self, other: &Log2Histogram) {
        for (i, n) in other.buckets.iter().enumerate() {
            self.add(i, *n);
        }
    }

    /// Total count.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Rows `(lower_us, count)` from bucket 0 up to one past the last non-empty bucket.
    pub fn rows(&self) -> Vec<(u64, u64)> {
        let last = self.buckets.iter().rposition(|n| *n > 0);
        let end = last.map_or(0, |l| l + 2).min(self.buckets.len().max(1));
        (0..end.max(1))
            .map(|i| (Self::lower_us(i), self.buckets.get(i).copied().unwrap_or(0)))
            .collect()
    }
}

/// NET_RX softirq time on one CPU: `irq:softirq_entry`/`softirq_exit` with vec NET_RX, i.e. one
/// `net_rx_action` run each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetRxCpu {
    pub cpu: u32,
    pub runs: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Wall-clock start of the longest run (ns since the epoch), 0 when there was none.
    pub max_at_wall_ns: u64,
    pub histogram: Log2Histogram,
}

/// `napi:napi_poll` totals: work done against the budget.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct NapiTotals {
    pub polls: u64,
    pub packets: u64,
    /// Polls that used their whole budget (more work was waiting).
    pub budget_exhausted: u64,
    pub max_work: u64,
}

/// Drops of one reason (counted in the kernel, so exact even when events were lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DropCount {
    /// The kernel's `skb_drop_reason` name without its `SKB_DROP_REASON_` prefix.
    pub reason: String,
    pub code: u32,
    pub count: u64,
    /// Where, most frequent first (from the events that reached user space).
    pub locations: Vec<(String, u64)>,
}

/// Retransmissions of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConnRetransmits {
    pub conn: Conn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    pub count: u64,
    /// TCP states at the retransmissions (e.g. syn-sent for SYN retransmits).
    pub states: Vec<TcpState>,
}

/// One receive-buffer size a socket reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BufferStep {
    pub wall_ns: u64,
    pub rcvbuf: u64,
    pub window_clamp: u64,
}

/// Receive-buffer autotuning of one socket over the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BufferGrowth {
    pub conn: Conn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Distinct sizes, in order.
    pub steps: Vec<BufferStep>,
    /// SO_RCVBUF fixed the size (autotuning off).
    pub locked: bool,
    /// `tcp_rcvbuf_grow` hits while the buffer already had its final size: the kernel wanted more.
    pub grow_calls_at_final: u64,
}

impl BufferGrowth {
    /// The last size seen.
    pub fn final_rcvbuf(&self) -> u64 {
        self.steps.last().map_or(0, |s| s.rcvbuf)
    }
}

/// Connect (SYN_SENT to ESTABLISHED) time of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConnectTime {
    pub conn: Conn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    pub duration_us: u64,
}

/// Timing of one kernel function (function tracing only).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct FunctionTiming {
    pub calls: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub max_at_wall_ns: u64,
}

/// Events of one kind: how many the kernel saw, and how many could not reach user space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LostEvents {
    pub kind: String,
    pub seen: u64,
    pub lost: u64,
}

/// Whether the kernel let the tracer time functions (fentry), and why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FunctionTracing {
    pub available: bool,
    /// What was attached, or the kernel's refusal in plain words.
    pub detail: String,
}

/// What the tracer could attach on this kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TraceCapabilities {
    /// `category:name` of every tracepoint attached.
    pub attached: Vec<String>,
    /// Tracepoints this kernel does not have.
    pub missing: Vec<String>,
    pub function_tracing: FunctionTracing,
}

/// The receive-buffer limits in force (for "stopped growing at tcp_rmem[2]").
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct RmemLimits {
    /// `net.ipv4.tcp_rmem` min, default, max.
    pub tcp_rmem: [u64; 3],
    /// `net.core.rmem_max` (the SO_RCVBUF ceiling before doubling).
    pub rmem_max: u64,
}

/// Everything one trace saw, aggregated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TraceSummary {
    pub duration_us: u64,
    pub capabilities: TraceCapabilities,
    pub limits: RmemLimits,
    pub net_rx: Vec<NetRxCpu>,
    /// The longest NET_RX runs above the loader's threshold, longest first.
    pub longest_runs: Vec<TraceEvent>,
    pub napi: NapiTotals,
    pub drops: Vec<DropCount>,
    pub retransmits: Vec<ConnRetransmits>,
    pub resets_sent: u64,
    pub resets_received: u64,
    pub buffers: Vec<BufferGrowth>,
    pub connects: Vec<ConnectTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse: Option<FunctionTiming>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<FunctionTiming>,
    pub lost: Vec<LostEvents>,
}

impl TraceSummary {
    /// All CPUs' NET_RX histograms added up.
    pub fn net_rx_total(&self) -> NetRxCpu {
        let mut t = NetRxCpu::default();
        for c in &self.net_rx {
            t.runs += c.runs;
            t.total_ns += c.total_ns;
            if c.max_ns > t.max_ns {
                t.max_ns = c.max_ns;
                t.max_at_wall_ns = c.max_at_wall_ns;
                t.cpu = c.cpu;
            }
            t.histogram.merge(&c.histogram);
        }
        t
    }

    /// The kernel events kept with wall-clock times (the longest NET_RX runs, collapse and prune
    /// calls) that overlap `[from_ns, to_ns]` (Unix nanoseconds): what the kernel was doing
    /// around one probe's spike.
    pub fn events_between(&self, from_ns: u64, to_ns: u64) -> Vec<&TraceEvent> {
        self.longest_runs
            .iter()
            .filter(|e| {
                let d = match e.kind {
                    EventKind::NetRxLong { duration_ns }
                    | EventKind::Collapse { duration_ns }
                    | EventKind::Prune { duration_ns } => duration_ns,
                    _ => 0,
                };
                e.wall_ns >= from_ns && e.wall_ns.saturating_sub(d) <= to_ns
            })
            .collect()
    }

    /// Events lost over all kinds.
    pub fn lost_total(&self) -> u64 {
        self.lost.iter().map(|l| l.lost).sum()
    }
}

/// How many of the longest NET_RX runs a summary keeps.
pub const LONGEST_RUNS_KEPT: usize = 10;

/// Folds events into the per-connection parts of a [`TraceSummary`]; the source adds what the
/// kernel counted itself (histograms, drop counts, NAPI, lost events).
#[derive(Debug, Default)]
pub struct TraceAccumulator {
    retransmits: BTreeMap<Conn, ConnRetransmits>,
    buffers: BTreeMap<(u64, Conn), BufferGrowth>,
    syn_sent: BTreeMap<u64, u64>,
    connects: Vec<ConnectTime>,
    locations: BTreeMap<u32, BTreeMap<String, u64>>,
    drops: BTreeMap<u32, (String, u64)>,
    longest: Vec<TraceEvent>,
    collapse: Option<FunctionTiming>,
    prune: Option<FunctionTiming>,
    resets_sent: u64,
    resets_received: u64,
}

impl TraceAccumulator {
    /// Takes one event into account.
    pub fn add(&mut self, e: &TraceEvent) {
        match &e.kind {
            EventKind::Retransmit { state, .. } => {
                if let Some(conn) = e.conn {
                    let r = self
                        .retransmits
                        .entry(conn)
                        .or_insert_with(|| ConnRetransmits {
                            conn,
                            owner: None,
                            count: 0,
                            states: Vec::new(),
                        });
                    r.count += 1;
                    if r.owner.is_none() {
                        r.owner = e.owner.clone();
                    }
                    if let Some(s) = state {
                        if !r.states.contains(s) {
                            r.states.push(*s);
                        }
                    }
                }
            }
            EventKind::ResetSent { .. } => self.resets_sent += 1,
            EventKind::ResetReceived { .. } => self.resets_received += 1,
            EventKind::Drop {
                reason,
                reason_code,
                location,
                ..
            } => {
                self.drops
                    .entry(*reason_code)
                    .or_insert_with(|| (reason.clone(), 0))
                    .1 += 1;
                if let Some(loc) = location {
                    *self
                        .locations
                        .entry(*reason_code)
                        .or_default()
                        .entry(loc.clone())
                        .or_default() += 1;
                }
            }
            EventKind::StateChange { new, .. } => match new {
                Some(TcpState::SynSent) => {
                    self.syn_sent.insert(e.sock, e.wall_ns);
                }
                Some(TcpState::Established) => {
                    if let (Some(start), Some(conn)) = (self.syn_sent.remove(&e.sock), e.conn) {
                        self.connects.push(ConnectTime {
                            conn,
                            owner: e.owner.clone(),
                            duration_us: e.wall_ns.saturating_sub(start) / 1000,
                        });
                    }
                }
                _ => {}
            },
            EventKind::RcvbufGrow {
                rcvbuf,
                window_clamp,
                calls,
                ..
            } => self.buffer_step(e, *rcvbuf, *window_clamp, false, *calls, true),
            EventKind::RcvSpace {
                rcvbuf,
                window_clamp,
                locked,
                ..
            } => self.buffer_step(e, *rcvbuf, *window_clamp, *locked, 0, false),
            EventKind::TcpProbe { .. } => {}
            EventKind::NetRxLong { .. } => {
                self.longest.push(e.clone());
                self.longest.sort_by_key(|x| std::cmp::Reverse(run_ns(x)));
                self.longest.truncate(LONGEST_RUNS_KEPT);
            }
            EventKind::Collapse { duration_ns } => {
                timing(&mut self.collapse, *duration_ns, e.wall_ns)
            }
            EventKind::Prune { duration_ns } => timing(&mut self.prune, *duration_ns, e.wall_ns),
        }
    }

    fn buffer_step(
        &mut self,
        e: &TraceEvent,
        rcvbuf: u64,
        window_clamp: u64,
        locked: bool,
        grow_calls: u64,
        from_grow: bool,
    ) {
        let Some(conn) = e.conn else { return };
        let b = self
            .buffers
            .entry((e.sock, conn))
            .or_insert_with(|| BufferGrowth {
                conn,
                owner: None,
                steps: Vec::new(),
                locked,
                grow_calls_at_final: 0,
            });
        if b.owner.is_none() {
            b.owner = e.owner.clone();
        }
        b.locked |= locked;
        if b.steps.last().map(|s| s.rcvbuf) == Some(rcvbuf) {
            if from_grow {
                b.grow_calls_at_final += grow_calls;
            }
        } else {
            b.grow_calls_at_final = 0;
            b.steps.push(BufferStep {
                wall_ns: e.wall_ns,
                rcvbuf,
                window_clamp,
            });
        }
    }

    /// Fills the event-derived parts of `summary`; drop locations go to the matching reasons.
    /// When `summary.drops` is empty (no in-kernel counts, e.g. events were filtered), the drops
    /// by reason are counted from the events.
    pub fn finish(self, summary: &mut TraceSummary) {
        if summary.drops.is_empty() {
            summary.drops = self
                .drops
                .into_iter()
                .map(|(code, (reason, count))| DropCount {
                    reason,
                    code,
                    count,
                    locations: Vec::new(),
                })
                .collect();
            summary.drops.sort_by_key(|d| std::cmp::Reverse(d.count));
        }
        let mut retransmits: Vec<_> = self.retransmits.into_values().collect();
        retransmits.sort_by_key(|r| std::cmp::Reverse(r.count));
        summary.retransmits = retransmits;
        summary.buffers = self.buffers.into_values().collect();
        summary.connects = self.connects;
        summary.longest_runs = self.longest;
        summary.collapse = self.collapse;
        summary.prune = self.prune;
        summary.resets_sent = self.resets_sent;
        summary.resets_received = self.resets_received;
        for d in &mut summary.drops {
            if let Some(locs) = self.locations.get(&d.code) {
                let mut v: Vec<_> = locs.iter().map(|(k, n)| (k.clone(), *n)).collect();
                v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
                d.locations = v;
            }
        }
    }
}

fn run_ns(e: &TraceEvent) -> u64 {
    match e.kind {
        EventKind::NetRxLong { duration_ns } => duration_ns,
        _ => 0,
    }
}

fn timing(t: &mut Option<FunctionTiming>, ns: u64, at: u64) {
    let t = t.get_or_insert_with(FunctionTiming::default);
    t.calls += 1;
    t.total_ns += ns;
    if ns > t.max_ns {
        t.max_ns = ns;
        t.max_at_wall_ns = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(port: u16) -> Conn {
        Conn {
            src: "10.0.0.1".parse().unwrap(),
            sport: port,
            dst: "10.0.0.2".parse().unwrap(),
            dport: 80,
        }
    }

    fn ev(sock: u64, wall_ns: u64, kind: EventKind) -> TraceEvent {
        TraceEvent {
            wall_ns,
            cpu: 0,
            sock,
            netns: 0,
            conn: Some(conn(1000 + sock as u16)),
            owner: None,
            kind,
        }
    }

    #[test]
    fn histogram_buckets_follow_the_systemtap_layout() {
        assert_eq!(Log2Histogram::bucket_of(0), 0);
        assert_eq!(Log2Histogram::bucket_of(1), 1);
        assert_eq!(Log2Histogram::bucket_of(3), 2);
        assert_eq!(Log2Histogram::bucket_of(1000), 10);
        assert_eq!(Log2Histogram::lower_us(10), 512);
        let mut h = Log2Histogram::default();
        h.add(0, 5);
        h.add(3, 1);
        assert_eq!(h.count(), 6);
        assert_eq!(h.rows(), vec![(0, 5), (1, 0), (2, 0), (4, 1)]);
        assert_eq!(Log2Histogram::default().rows(), vec![(0, 0)]);
    }

    #[test]
    fn accumulates_connects_buffers_and_retransmits() {
        let mut acc = TraceAccumulator::default();
        let state = |new| EventKind::StateChange {
            old: None,
            new: Some(new),
        };
        acc.add(&ev(1, 1_000_000, state(TcpState::SynSent)));
        acc.add(&ev(1, 3_000_000, state(TcpState::Established)));
        for _ in 0..3 {
            acc.add(&ev(
                1,
                4_000_000,
                EventKind::Retransmit {
                    state: Some(TcpState::Established),
                    err: 0,
                },
            ));
        }
        let grow = |rcvbuf, calls| EventKind::RcvbufGrow {
            rtt_us: 1,
            copied: 1,
            inq: 0,
            space: 1,
            rcvbuf,
            window_clamp: rcvbuf / 2,
            scaling_ratio: 128,
            calls,
        };
        acc.add(&ev(2, 5, grow(100, 1)));
        acc.add(&ev(2, 6, grow(200, 1)));
        acc.add(&ev(2, 7, grow(200, 9)));
        let mut s = TraceSummary::default();
        acc.finish(&mut s);
        assert_eq!(s.connects.len(), 1);
        assert_eq!(s.connects[0].duration_us, 2000);
        assert_eq!(s.retransmits[0].count, 3);
        assert_eq!(s.retransmits[0].states, vec![TcpState::Established]);
        assert_eq!(s.buffers[0].steps.len(), 2);
        assert_eq!(s.buffers[0].final_rcvbuf(), 200);
        assert_eq!(s.buffers[0].grow_calls_at_final, 9);
    }

    #[test]
    fn events_serialize_with_their_kind() {
        let e = ev(1, 5, EventKind::NetRxLong { duration_ns: 7 });
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "net-rx-long");
        assert_eq!(v["duration_ns"], 7);
        let back: TraceEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
