//! Is the receiver keeping up? Zero windows, a Recv-Q that grows or stays full, a reader that
//! paces itself far below what its window allows, a reader at 100% of a core. And, when the
//! receiver's window bound the sender, which of the receiver's causes it was
//! ([`why_window_small`]): the one decision every source shares.

use crate::finding::{Finding, FindingSpec, Layer, Severity, Unit};
use crate::observe::transfer::Transfer;
use crate::rules::bound::{window_arithmetic, window_bound};
use crate::rules::buffers;
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::{self, ceiling_bps, SocketRequest};
use std::time::Duration;

/// The receiver advertised a zero window.
pub const RECEIVER_ZERO_WINDOW: FindingSpec = FindingSpec {
    id: "receiver-zero-window",
    layer: Layer::Application,
    title: "the receiver advertised a zero window: its application does not read fast enough",
};
/// The receiving application reads more slowly than data could arrive.
pub const RECEIVER_APP_SLOW: FindingSpec = FindingSpec {
    id: "receiver-app-slow",
    layer: Layer::Application,
    title: "the receiving application reads more slowly than the path and its buffers allow",
};
/// The receiving process used a whole core while its window held the sender.
pub const RECEIVER_CPU_BOUND: FindingSpec = FindingSpec {
    id: "receiver-cpu-bound",
    layer: Layer::Host,
    title: "the receiving process was CPU-bound (a whole core) while its window held the sender",
};

/// Findings this module builds.
pub const FINDINGS: &[&FindingSpec] = &[
    &RECEIVER_ZERO_WINDOW,
    &RECEIVER_APP_SLOW,
    &RECEIVER_CPU_BOUND,
];

/// A receive queue at least this share of its buffer is a backlog: the application leaves
/// data unread (half: the kernel advertises at most about half of sk_rcvbuf as window).
pub const BACKLOG_SHARE: f64 = 0.5;
/// A mean Recv-Q over the test of at least this share of the buffer is a reader that does not
/// keep up (a prompt reader empties its queue between wake-ups).
pub const MEAN_BACKLOG_SHARE: f64 = 0.25;
/// Receive memory at or above this share of sk_rcvbuf counts as a full buffer (kernels before
/// 6.2 have no tcpi_rcv_wnd to say "zero window" directly).
pub const FULL_BUFFER_SHARE: f64 = 0.9;
/// A zero window this long stalls an application visibly (one second: a TCP RTO's order).
pub const STALL_US: u64 = 1_000_000;
/// Zero-window time at least this share of a connection (with [`STALL_TOTAL_US`] in all)
/// is more than the short blips of a busy local exchange.
pub const STALL_SHARE: f64 = 0.1;
/// ...and at least this much time in all, microseconds.
pub const STALL_TOTAL_US: u64 = 100_000;
/// Unread data of at least this much at both samples of a live socket is a backlog whatever
/// the buffer's size (64 KiB: a whole unscaled window left unread; a prompt reader empties its
/// queue within microseconds of each arrival).
pub const PERSISTENT_BACKLOG_BYTES: u64 = 64 * 1024;
/// The receiving process at or above this share of one core while its window held the sender
/// is CPU-bound: its CPU per byte, not a pause, kept it behind. A reader that paces itself or
/// waits on I/O uses a few percent (0.7% measured in the lab for 32 KiB every 10 ms), and
/// zero-window recovery idles even a reader that burns the CPU for every byte about half the
/// time (49% measured in the lab at 2 us per byte), so a whole core is not required.
pub const CPU_BOUND_SHARE: f64 = 0.4;
/// The window's possible ceiling (its clamp at tcp_rmem[2] over the RTT) at least this many
/// times the measured rate means the buffer had room to grow: the reader, not the buffer,
/// kept the window small.
pub const CEILING_HEADROOM: f64 = 2.0;

fn who(t: &Transfer) -> String {
    t.receiver
        .who
        .clone()
        .unwrap_or_else(|| "the receiving application".into())
}

/// When the receiver's window bound the sender: the receiver-side cause, most specific first
/// (window scaling absent, SO_RCVBUF, the autotuning ceiling, a CPU-bound reader, a reader with
/// a backlog or zero windows, a reader pacing itself below what its window allows). Empty when the
/// receiver was not observed well enough to say.
pub fn why_window_small(t: &Transfer) -> Vec<Finding> {
    if t.sender.window_scaling == Some(false) {
        return vec![buffers::window_scaling_absent(t)];
    }
    if t.receiver.so_rcvbuf.is_some() || buffers::fixed_by_wscale(t) {
        // A reader that also stopped reading closed the window outright: both are true.
        let mut out = buffers::rcvbuf_fixed_small(t);
        out.extend(judge_backlog(t).filter(|f| f.id == RECEIVER_ZERO_WINDOW.id));
        return out;
    }
    // The ceiling before the backlog: under a tiny tcp_rmem[2] even a prompt reader leaves most
    // of the window queued between wake-ups, while a slow reader on a host with a large ceiling
    // fails the ceiling test anyway.
    if let Some(f) = buffers::autotuning_ceiling(t) {
        return vec![f];
    }
    // A reader at a whole core falls behind because of its CPU: its backlog and zero windows
    // follow from that, so the CPU comes first.
    if let Some(f) = cpu_bound(t) {
        return vec![f];
    }
    if let Some(f) = judge_backlog(t) {
        return vec![f];
    }
    slow_reader(t).into_iter().collect()
}

/// What the receiving end alone shows: a zero window with unread data, zero windows
/// advertised while its queue was full, or a Recv-Q that grows toward the buffer.
pub fn judge(t: &Transfer) -> Vec<Finding> {
    judge_backlog(t).into_iter().collect()
}

/// Whether the reader fell behind: zero windows, or a backlog against its buffer. A few hundred
/// KiB unread at a sampling instant is normal at tens of Gbit/s, so only the buffer's share
/// counts. `None` when the source could not see the receiver's queue.
pub fn fell_behind(t: &Transfer) -> Option<bool> {
    let r = &t.receiver;
    let zero = r.zero_windows > 0 || r.zero_window_us.is_some_and(|z| z > 0);
    let seen = r.recv_q_max_bytes.is_some() || r.recv_q_mean_bytes.is_some();
    if zero || backlogged(t) {
        Some(true)
    } else if seen {
        Some(false)
    } else {
        None
    }
}

/// True when the receive queue held a backlog: the largest at half the buffer, or a mean at a
/// quarter of it.
fn backlogged(t: &Transfer) -> bool {
    let r = &t.receiver;
    let Some(rb) = r.rcvbuf_bytes.filter(|b| *b > 0) else {
        return false;
    };
    r.recv_q_max_bytes
        .is_some_and(|q| q as f64 >= BACKLOG_SHARE * rb as f64)
        || r.recv_q_mean_bytes
            .is_some_and(|q| q > 0.0 && q >= MEAN_BACKLOG_SHARE * rb as f64)
}

/// True when the receiver advertises a zero window right now with data unread (live sockets).
fn at_zero_window_now(t: &Transfer) -> bool {
    let r = &t.receiver;
    let unread = r.recv_q_bytes.is_some_and(|q| q > 0);
    match r.rcv_wnd_bytes {
        Some(w) => w == 0 && unread,
        None => {
            unread
                && matches!((r.rmem_alloc_bytes, r.rcvbuf_bytes),
                    (Some(m), Some(b)) if b > 0 && m as f64 >= FULL_BUFFER_SHARE * b as f64)
        }
    }
}

/// A reader that fell behind: zero windows with a backlog (or where the source cannot see the
/// queue: captures, host counters), or a growing Recv-Q.
pub fn judge_backlog(t: &Transfer) -> Option<Finding> {
    let r = &t.receiver;
    let zero = r.zero_windows > 0 || r.zero_window_us.is_some_and(|z| z > 0);
    if at_zero_window_now(t)
        || (zero && (r.recv_q_max_bytes.is_none() || backlogged(t) || window_bound(t)))
    {
        return Some(receiver_zero_window(t));
    }
    if backlogged(t) && window_bound(t) {
        return Some(app_slow_backlog(t));
    }
    recv_q_growing(t)
}

/// `receiver-zero-window`. Critical when the receiver sits at a zero window with data unread,
/// stalled its sender for [`STALL_US`] or more, or advertised zero windows with its queue
/// backlogged; a note for short blips; a warning otherwise.
pub fn receiver_zero_window(t: &Transfer) -> Finding {
    let r = &t.receiver;
    let now = at_zero_window_now(t);
    let longest = r.zero_window_longest_us.unwrap_or(0);
    let stalled = r
        .zero_window_us
        .is_some_and(|z| z >= STALL_TOTAL_US && r.zero_window_share.unwrap_or(0.0) >= STALL_SHARE);
    let severity = if now || longest >= STALL_US || (r.zero_windows > 0 && backlogged(t)) {
        Severity::Critical
    } else if r.zero_window_us.is_none() || stalled || window_bound(t) {
        Severity::Warning
    } else {
        Severity::Info
    };
    let reader = who(t);
    let summary = if now {
        format!(
            "advertises a zero window with {} unread: {reader} is not reading",
            Bytes(r.recv_q_bytes.unwrap_or(0))
        )
    } else {
        let mut s = format!(
            "{reader} let its receive window close: {} zero windows advertised",
            r.zero_windows
        );
        if let Some(z) = r.zero_window_us {
            s += &format!(
                " ({} in all, longest {})",
                format_duration(Duration::from_micros(z)),
                format_duration(Duration::from_micros(longest))
            );
        }
        s
    };
    let mut f = Finding::new(&RECEIVER_ZERO_WINDOW, severity, summary)
        .subject(t.subject.clone())
        .evidence("zero_windows", r.zero_windows as f64, Unit::Count)
        .evidence("window_probes", r.window_probes as f64, Unit::Count);
    let mut why = Vec::new();
    if let Some(q) = r.recv_q_bytes.or(r.recv_q_max_bytes) {
        f = f.evidence("recv_q", q as f64, Unit::Bytes);
        if let Some(b) = r.rcvbuf_bytes.filter(|b| *b > 0) {
            f = f.evidence("rcvbuf", b as f64, Unit::Bytes);
            why.push(format!(
                "Recv-Q {} unread of a {} buffer ({:.0}%)",
                Bytes(q),
                Bytes(b),
                q as f64 * 100.0 / b as f64
            ));
            if q * 2 < b {
                why.push(
                    "the window closes long before the buffer fills: Linux offers a reader only the \
                     window it has shown it consumes (rcv_ssthresh grows as it keeps up), so a slow \
                     reader sits at zero with most of its buffer free"
                        .into(),
                );
            }
        }
    }
    if let Some(w) = r.rcv_wnd_bytes {
        f = f.evidence("rcv_wnd", w as f64, Unit::Bytes);
        why.push(format!("advertised window {w} B"));
    }
    if let Some(ms) = r.last_data_recv_ms {
        f = f.evidence("last_data_recv", ms as f64, Unit::Milliseconds);
    }
    if let Some(z) = r.zero_window_us {
        f = f
            .evidence("zero_window_time", z as f64, Unit::Microseconds)
            .evidence("longest", longest as f64, Unit::Microseconds);
        if let Some(e) = r.zero_window_episodes {
            f = f.evidence("episodes", e as f64, Unit::Count);
        }
        if let Some(s) = r.zero_window_share {
            f = f.evidence("share_of_connection", s * 100.0, Unit::Percent);
            why.push(format!(
                "the sender could send nothing for {} ({:.1}% of the connection)",
                format_duration(Duration::from_micros(z)),
                s * 100.0
            ));
        }
    }
    if r.window_probes > 0 {
        why.push(format!(
            "the sender probed the closed window {} times",
            r.window_probes
        ));
    }
    if let Some(share) = t.window_share().filter(|_| t.sender.observed) {
        f = f.evidence("rwnd_limited", share * 100.0, Unit::Percent);
        why.push(format!(
            "the sender waited on the window {:.0}% of its busy time",
            share * 100.0
        ));
    }
    if t.sender.rate_bps > 0.0 {
        f = f.evidence("goodput", t.sender.rate_bps, Unit::BitsPerSecond);
        why.push(format!(
            "goodput {} is the application's read rate, not the path's",
            BitRate(t.sender.rate_bps)
        ));
    }
    f.explain(format!(
        "a zero window means the receiver had no room to offer because {reader} did not read: {}",
        why.join("; ")
    ))
    .fix(
        "make the receiving application read: look for blocking I/O, GC pauses or a saturated thread pool in \
         its read loop; read into a queue and process asynchronously. A bigger buffer only delays the stall.",
    )
}

/// `receiver-app-slow`, the one constructor: a warning about `t`'s reader with the fix every
/// form shares; the callers bring the summary and the evidence of what they saw.
fn app_slow(t: &Transfer, summary: String) -> Finding {
    Finding::new(&RECEIVER_APP_SLOW, Severity::Warning, summary)
        .subject(t.subject.clone())
        .fix(
            "make the receiving application read sooner and faster: look at its read loop (a rate limit such as \
             curl --limit-rate, a consumer that processes before reading again, a blocked thread), read in larger \
             chunks, or move processing out of the read loop; larger buffers will not help",
        )
}

/// `receiver-app-slow` for a reader whose queue stayed backlogged while its window held the sender.
fn app_slow_backlog(t: &Transfer) -> Finding {
    let r = &t.receiver;
    let rb = r.rcvbuf_bytes.unwrap_or(0);
    let q = r
        .recv_q_mean_bytes
        .map(|m| m.round() as u64)
        .or(r.recv_q_max_bytes)
        .unwrap_or(0);
    let f = app_slow(
        t,
        format!(
            "{} leaves its Recv-Q full ({} of a {} buffer): it reads more slowly than data arrives",
            who(t),
            Bytes(q),
            Bytes(rb)
        ),
    )
    .evidence("recv_q", q as f64, Unit::Bytes)
    .evidence("rcvbuf", rb as f64, Unit::Bytes);
    let (f, why) = window_arithmetic(t, f);
    f.explain(format!(
        "{why}; the receive queue held {} of its {} buffer: unread data takes the room the window would \
         advertise",
        Bytes(q),
        Bytes(rb)
    ))
}

/// `receiver-app-slow` for a live socket whose Recv-Q grew toward its buffer over the interval.
fn recv_q_growing(t: &Transfer) -> Option<Finding> {
    let r = &t.receiver;
    let g = r.recv_q_growth?;
    let rb = r.rcvbuf_bytes.filter(|b| *b > 0)?;
    let rmem = r.rmem_alloc_bytes.unwrap_or(0);
    let growing = g.after_bytes > g.before_bytes && rmem as f64 >= BACKLOG_SHARE * rb as f64;
    // A large autotuned buffer never looks half full: unread data that stayed over the whole
    // interval (and did not drain) says the same.
    let persistent =
        g.before_bytes >= PERSISTENT_BACKLOG_BYTES && g.after_bytes >= PERSISTENT_BACKLOG_BYTES;
    if !growing && !persistent {
        return None;
    }
    let secs = g.interval.as_secs_f64().max(1e-6);
    let growth = g.after_bytes.saturating_sub(g.before_bytes) as f64 * 8.0 / secs;
    Some(
        app_slow(t, format!(
                "Recv-Q went from {} to {} unread in {}: {} reads more slowly than data arrives",
                Bytes(g.before_bytes),
                Bytes(g.after_bytes),
                format_duration(g.interval),
                who(t)
            ))
        .evidence("recv_q_before", g.before_bytes as f64, Unit::Bytes)
        .evidence("recv_q", g.after_bytes as f64, Unit::Bytes)
        .evidence("recv_q_growth", growth, Unit::BitsPerSecond)
        .evidence("rmem_alloc", rmem as f64, Unit::Bytes)
        .evidence("rcvbuf", rb as f64, Unit::Bytes)
        .explain(format!(
            "Recv-Q {:+} B in {} = {} unread growth, and never below {} B; buffer memory {} of rb {} B ({:.0}%): \
             data waits for the application instead of the application for data, and at this pace the window closes",
            g.after_bytes as i64 - g.before_bytes as i64,
            format_duration(g.interval),
            BitRate(growth),
            g.before_bytes.min(g.after_bytes),
            rmem,
            rb,
            rmem as f64 * 100.0 / rb as f64
        ))

    )
}

/// `receiver-cpu-bound`: the reader used [`CPU_BOUND_SHARE`] of a core or more and fell behind.
fn cpu_bound(t: &Transfer) -> Option<Finding> {
    let cpu = t.receiver.cpu_share.filter(|c| *c >= CPU_BOUND_SHARE)?;
    // Busy but keeping up (its queue empty) is a fast reader, not a bound one.
    if fell_behind(t) != Some(true) {
        return None;
    }
    let capped = t.sender.rate_bps / cpu;
    let f = Finding::new(
        &RECEIVER_CPU_BOUND,
        Severity::Warning,
        format!(
            "{} used {:.0}% of a core to read {}: its CPU per byte caps it near {}",
            who(t),
            cpu * 100.0,
            BitRate(t.sender.rate_bps),
            BitRate(capped)
        ),
    )
    .subject(t.subject.clone())
    .evidence("receiver_cpu", cpu * 100.0, Unit::Percent)
    .evidence("cpu_capped_rate", capped, Unit::BitsPerSecond);
    let (f, why) = window_arithmetic(t, f);
    Some(
        f.explain(format!(
            "{why}; the receiving process ran {:.0}% of one core (from {:.0}% a reader is busy computing, not \
             waiting): {} read / {:.2} of a core = {} at a whole core, so its window stays small whatever the \
             buffer sizes",
            cpu * 100.0,
            CPU_BOUND_SHARE * 100.0,
            BitRate(t.sender.rate_bps),
            cpu,
            BitRate(capped)
        ))
        .fix(
            "give the reader CPU (a core of its own, no CPU limit on its cgroup) or less work per byte \
             (larger reads, less copying, processing off the read thread); larger buffers will not help",
        ),
    )
}

/// `receiver-app-slow` for an autotuned receiver whose window could have grown far beyond what
/// the sender got: the reader paced itself (a rate limit, a slow consumer), not the buffers.
fn slow_reader(t: &Transfer) -> Option<Finding> {
    let host = t.receiver.host.as_ref()?;
    // A reader that kept its queue empty was not slow: the window was still growing.
    if fell_behind(t) == Some(false) {
        return None;
    }
    if t.receiver.so_rcvbuf.is_some() {
        return None;
    }
    let rtt = t.path.rtt.filter(|r| !r.is_zero())?;
    let auto = window::model(
        &host.kernel,
        &host.settings,
        &SocketRequest {
            so_rcvbuf: None,
            mss: 0,
            measured_ratio: None,
        },
    );
    let clamp = auto.window_clamp_bytes;
    let possible = ceiling_bps(clamp, rtt);
    let rate = t.sender.rate_bps;
    let below_max = t.receiver.rcvbuf_at_max == Some(false);
    if possible < CEILING_HEADROOM * rate && !below_max {
        return None;
    }
    let f = app_slow(t, format!(
            "{} reads at about {}, far below the {} its window could carry: the reader, not tcp_rmem",
            who(t),
            BitRate(rate),
            BitRate(possible)
        ))
    .evidence("tcp_rmem_max", host.settings.tcp_rmem[2] as f64, Unit::Bytes)
    .evidence("window_clamp", clamp as f64, Unit::Bytes)
    .evidence("possible_ceiling", possible, Unit::BitsPerSecond);
    let (f, why) = window_arithmetic(t, f);
    Some(
        f.explain(format!(
            "{why}; autotuning could grow this window to {} (tcp_rmem[2] {}), a {} ceiling at {} RTT = {:.0}x \
             the measured rate{}: the window stayed small because the application read slowly, so raising \
             tcp_rmem or rmem_max would change nothing",
            Bytes(clamp),
            Bytes(host.settings.tcp_rmem[2]),
            BitRate(possible),
            format_duration(rtt),
            possible / rate.max(1.0),
            if below_max {
                "; its receive buffer never reached tcp_rmem[2]"
            } else {
                ""
            }
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::KernelVersion;
    use crate::observe::transfer::{PathFacts, ReceiverFacts, ReceiverHost, SenderFacts};
    use crate::observe::LimitShares;
    use crate::window::RcvSettings;

    fn bound(rate_bps: f64) -> Transfer {
        let k: KernelVersion = "6.18.0".parse().unwrap();
        Transfer {
            subject: "t".into(),
            sender: SenderFacts {
                shares: Some(LimitShares::from_deltas(
                    1_000_000, 900_000, 0, 1_000_000, 0, false,
                )),
                observed: true,
                rate_bps,
                streams: 1,
                peer_window_bytes: Some(64 << 10),
                window_scaling: Some(true),
                ..Default::default()
            },
            receiver: ReceiverFacts {
                host: Some(ReceiverHost {
                    settings: RcvSettings::defaults_for(&k),
                    kernel: k,
                }),
                ..Default::default()
            },
            path: PathFacts {
                rtt: Some(Duration::from_millis(20)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_self_pacing_reader_with_room_to_grow_is_the_application() {
        // 16 Mbit/s where a 6 MiB tcp_rmem[2] allows over a gigabit at 20 ms.
        let f = why_window_small(&bound(16e6));
        assert_eq!(f[0].id, "receiver-app-slow", "{f:#?}");
        assert_eq!(f[0].layer, Layer::Application);
        assert!(
            f[0].explanation.contains("would change nothing"),
            "{}",
            f[0].explanation
        );
    }

    #[test]
    fn a_cpu_bound_reader_is_the_cpu() {
        let mut t = bound(16e6);
        t.receiver.cpu_share = Some(0.99);
        t.receiver.zero_windows = 3;
        let f = why_window_small(&t);
        assert_eq!(f[0].id, "receiver-cpu-bound");
        assert_eq!(f[0].layer, Layer::Host);
    }

    #[test]
    fn a_busy_reader_that_keeps_up_is_not_cpu_bound() {
        // Loopback at 32 Gbit/s: 67% of a core, queue empty, the window still growing.
        let mut t = bound(32e9);
        t.path.rtt = Some(Duration::from_micros(38));
        t.receiver.cpu_share = Some(0.67);
        t.receiver.recv_q_mean_bytes = Some(0.0);
        assert!(
            why_window_small(&t).is_empty(),
            "{:#?}",
            why_window_small(&t)
        );
        let f = crate::rules::sender::receiver_window_limited(&t);
        assert_eq!(f.severity, Severity::Info, "{f:?}");
    }

    #[test]
    fn a_window_at_its_ceiling_is_the_buffer_maximum() {
        let mut t = bound(16e6);
        let host = t.receiver.host.as_mut().unwrap();
        host.settings.tcp_rmem = [4096, 16384, 65536];
        let f = why_window_small(&t);
        assert_eq!(f[0].id, "buffer-max-below-bdp", "{f:#?}");
    }

    #[test]
    fn zero_windows_with_a_full_queue_are_critical() {
        let mut t = bound(16e6);
        t.receiver.zero_windows = 12;
        t.receiver.recv_q_max_bytes = Some(100_000);
        t.receiver.rcvbuf_bytes = Some(131_072);
        let f = why_window_small(&t);
        assert_eq!(f[0].id, "receiver-zero-window");
        assert_eq!(f[0].severity, Severity::Critical);
    }
}
