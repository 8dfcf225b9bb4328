//! Finding ids shared by every source: the same verdict from a live socket, a benchmark, a
//! capture, a probe or a lab run carries the same id (DESIGN.md: one vocabulary, one rule book).
//! The rule modules build them with their own evidence (tcp_info stopwatches, reconstructed
//! flows, counters); the id, layer and title live here once.

use crate::finding::{FindingSpec, Layer};

/// Findings any source may report.
pub const FINDINGS: &[FindingSpec] = &[
    FindingSpec {
        id: "receiver-window-limited",
        layer: Layer::Application,
        title:
            "the sender was held by the receiver's advertised window (window / RTT caps the rate)",
    },
    FindingSpec {
        id: "receiver-zero-window",
        layer: Layer::Application,
        title: "the receiver advertised a zero window: its application does not read fast enough",
    },
    FindingSpec {
        id: "send-buffer-limited",
        layer: Layer::Host,
        title: "the sender waited on its own send buffer",
    },
    FindingSpec {
        id: "congestion-window-limited",
        layer: Layer::Network,
        title: "the sender was held by its congestion window: the path, not the endpoints",
    },
    FindingSpec {
        id: "network-loss",
        layer: Layer::Network,
        title: "segments were lost on the path: retransmissions and loss recovery",
    },
    FindingSpec {
        id: "syn-retransmit",
        layer: Layer::Network,
        title: "SYNs were retransmitted: connects took one or more retransmission timeouts",
    },
    FindingSpec {
        id: "window-scaling-absent",
        layer: Layer::Network,
        title: "window scaling was not in use: the window is capped at 64 KiB",
    },
    FindingSpec {
        id: "application-timeout",
        layer: Layer::Application,
        title: "whether an application with a fixed timeout gave up (or would have) while data was still flowing",
    },
];

/// Share of the sender's busy time on the receive-window stopwatch at or above which the kernel
/// alone says the receiver's window held the sender.
pub const RWND_HOLDS_SHARE: f64 = 0.5;
/// Linux grows cwnd only while it is the limit, so under a binding window (and with pacing) the
/// busy time splits between the rwnd and cwnd stopwatches. The window still binds when its
/// stopwatch ran at least this share of the busy time...
pub const RWND_SPLIT_SHARE: f64 = 0.2;
/// ...and the measured rate reached at least this share of the window's ceiling
/// (window x 8 / RTT).
pub const CEILING_REACHED_SHARE: f64 = 0.6;

/// Whether the receiver's advertised window bound the sender, the one rule every source that
/// has the sender's stopwatches uses (throughput tests, lab transfers): the rwnd stopwatch holds
/// most of the busy time, or a real share of it while the measured rate reaches the window's
/// ceiling. `rwnd_share` is rwnd-limited time over busy time; `ceiling_bps` is window x 8 / RTT.
pub fn receiver_window_binds(rwnd_share: f64, measured_bps: f64, ceiling_bps: Option<f64>) -> bool {
    rwnd_share >= RWND_HOLDS_SHARE
        || (rwnd_share >= RWND_SPLIT_SHARE
            && ceiling_bps.is_some_and(|c| c > 0.0 && measured_bps >= CEILING_REACHED_SHARE * c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_binds_on_the_stopwatch_or_on_split_time_at_the_ceiling() {
        // The kernel's word alone.
        assert!(receiver_window_binds(0.6, 1.0, None));
        // Netflix lab run: 38% rwnd, 6.11 Mbit/s against a 5.24 Mbit/s ceiling.
        assert!(receiver_window_binds(0.383, 6.11e6, Some(5.24e6)));
        // A third of the time on the window but far below its ceiling: not the window.
        assert!(!receiver_window_binds(0.35, 1e6, Some(100e6)));
        // At the ceiling without the stopwatch: the window was not waited on.
        assert!(!receiver_window_binds(0.05, 90e6, Some(100e6)));
        assert!(!receiver_window_binds(0.3, 90e6, None));
    }
}
