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
