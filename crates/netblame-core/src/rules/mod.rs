//! Diagnosis rules, one module per question a user asks. Each finding id has one constructor
//! and one set of thresholds (named constants saying where the number comes from), in the
//! module of its question; every module lists its specs in `FINDINGS` for the catalogue.
//!
//! | module | question |
//! |---|---|
//! | [`sender`] | what bounded the sender: the receiver's window, the send buffer, cwnd, nothing to send |
//! | [`receiver`] | is the receiver keeping up: zero windows, a slow or CPU-bound reader |
//! | [`loss`] | were segments lost, and where: retransmissions, timeouts, ECN, queueing |
//! | [`setup`] | did connections get set up: SYN retransmissions, refusals, accept queues |
//! | [`buffers`] | are buffers and window scaling right for the path |
//! | [`host`] | does the host have the resources: softnet, memory, NIC, qdiscs, CPU |
//! | [`kernel`] | does this kernel version have a known issue |
//! | [`kernel_events`] | what did the kernel do, from its tracepoints |
//! | [`latency`] | what do latency probes say |
//! | [`timeout`] | did (or would) an application's timeout fire |

pub mod buffers;
pub mod host;
pub mod kernel;
pub mod kernel_events;
pub mod latency;
pub mod loss;
pub mod receiver;
pub mod sender;
pub mod setup;
pub mod timeout;

use crate::finding::Unit;

/// A threshold a rule uses, for the table in `docs/findings.md` (a test keeps them equal).
#[derive(Debug, Clone, Copy)]
pub struct Threshold {
    /// `module::CONSTANT`.
    pub name: &'static str,
    pub value: f64,
    pub unit: Unit,
}

macro_rules! thresholds {
    ($($module:ident :: $name:ident $(as $conv:expr)?, $unit:ident;)*) => {
        /// Every threshold of every rule.
        pub fn thresholds() -> Vec<Threshold> {
            vec![$(Threshold {
                name: concat!(stringify!($module), "::", stringify!($name)),
                value: thresholds!(@v $module::$name $(, $conv)?),
                unit: Unit::$unit,
            }),*]
        }
    };
    (@v $c:path) => { $c as f64 };
    (@v $c:path, $conv:expr) => { $conv($c) };
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

thresholds! {
    sender::RWND_HOLDS_SHARE, Ratio;
    sender::RWND_SPLIT_SHARE, Ratio;
    sender::CEILING_REACHED_SHARE, Ratio;
    sender::NOTABLE_SHARE, Ratio;
    sender::BLAME_SHARE, Ratio;
    sender::IDLE_BUSY_SHARE, Ratio;
    sender::MIN_BULK_BYTES, Bytes;
    receiver::BACKLOG_SHARE, Ratio;
    receiver::MEAN_BACKLOG_SHARE, Ratio;
    receiver::FULL_BUFFER_SHARE, Ratio;
    receiver::STALL_US, Microseconds;
    receiver::STALL_SHARE, Ratio;
    receiver::STALL_TOTAL_US, Microseconds;
    receiver::CPU_BOUND_SHARE, Ratio;
    receiver::CEILING_HEADROOM, Ratio;
    loss::LOSS_NOTE_SHARE, Ratio;
    loss::LOSS_WARN_SHARE, Ratio;
    loss::MIN_LOSS_EVENTS, Count;
    loss::MIN_SEGMENTS_FOR_RATE, Count;
    loss::RETRANS_WARN_SHARE, Ratio;
    loss::ECN_WARN_SHARE, Ratio;
    loss::BLOAT_RTT_RATIO, Ratio;
    loss::BLOAT_MIN_DELAY as secs, Seconds;
    loss::SILENT_MIN_RETRANSMISSIONS, Count;
    setup::SYN_RTO as secs, Seconds;
    setup::SYN_CRITICAL_SHARE, Ratio;
    setup::SYN_CRITICAL_MIN_CONNECTS, Count;
    buffers::WSCALE_GAP, Number;
    buffers::FIXED_WSCALE, Number;
    buffers::CLAMP_NEAR_RATE, Ratio;
    timeout::TOLERANCE as secs, Seconds;
    host::TX_SKEW_SHARE, Ratio;
    host::MIN_PACKETS_FOR_SKEW, Count;
    kernel_events::NET_RX_STALL_US, Microseconds;
    kernel_events::NET_RX_STALL_CRITICAL_US, Microseconds;
    kernel_events::DROPS_WARNING_COUNT, Count;
    kernel_events::RETRANSMITS_MIN, Count;
    kernel_events::RETRANSMITS_CONCENTRATED_SHARE, Ratio;
    kernel_events::COLLAPSE_STALL_US, Microseconds;
}

/// The thresholds as the markdown table `docs/findings.md` carries.
pub fn thresholds_table() -> String {
    let mut s = String::from("| constant | value | unit |\n|---|---|---|\n");
    for t in thresholds() {
        s += &format!("| `{}` | {} | {} |\n", t.name, t.value, t.unit.suffix());
    }
    s
}
