//! Every segment of a connection, for a time-sequence graph (tcptrace's, Wireshark's
//! Stevens/tcptrace graph): when each segment was captured, its sequence range relative to the
//! sender's first sequence number, the ACK and window it carried, and what the reconstruction
//! made of it (retransmission, zero window). Opt in with [`crate::Config::segments`]; kept only
//! for the connections that keep a time series.

use netblame_core::observe::flow::Side;
use serde::Serialize;

/// At most this many segments are kept per connection; later ones are counted in
/// [`SegmentTrace::dropped`].
pub const MAX_SEGMENTS: usize = 500_000;

/// One captured segment. Sequence numbers are relative to the first one seen in the sender's
/// sequence space (its ISN when the SYN was captured), unwrapped past 4 GiB; they can be
/// negative for a segment older than the first one captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SegmentPoint {
    /// Microseconds after the connection's first packet.
    pub at_us: u64,
    /// Who sent it.
    pub from: Side,
    /// First sequence number of the payload (relative, in `from`'s sequence space).
    pub seq: i64,
    /// Payload bytes.
    pub len: u32,
    /// The ACK it carried (relative, in the other side's sequence space), when the ACK flag
    /// was set.
    pub ack: Option<i64>,
    /// The receive window it advertised, in bytes (scaled when the shift is known).
    pub window_bytes: u64,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    /// The reconstruction counted it a retransmission (fast, timeout or spurious).
    pub retransmission: bool,
    /// It advertised a zero window.
    pub zero_window: bool,
}

impl SegmentPoint {
    /// The right edge of the window it advertised: `ack + window` (what the peer may send up
    /// to), when it carried an ACK.
    pub fn window_edge(&self) -> Option<i64> {
        self.ack.map(|a| a + self.window_bytes as i64)
    }
}

/// The segments of one connection.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct SegmentTrace {
    /// The connection's id (as in [`netblame_core::observe::flow::FlowObservation::id`]).
    pub id: u32,
    /// In capture order.
    pub points: Vec<SegmentPoint>,
    /// Segments not kept past [`MAX_SEGMENTS`].
    pub dropped: u64,
}

/// Turns 32-bit sequence numbers of one sequence space into 64-bit offsets from the first one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Unwrap {
    last_raw: u32,
    last_abs: i64,
    set: bool,
}

impl Unwrap {
    /// The offset of `raw` from the first number this space saw.
    pub(crate) fn rel(&mut self, raw: u32) -> i64 {
        if !self.set {
            self.set = true;
            self.last_raw = raw;
            self.last_abs = 0;
            return 0;
        }
        let abs = self.last_abs + raw.wrapping_sub(self.last_raw) as i32 as i64;
        // Follow forward progress only, so an old retransmission does not move the reference.
        if abs > self.last_abs {
            self.last_raw = raw;
            self.last_abs = abs;
        }
        abs
    }
}

/// The per-connection recorder.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// One unwrapper per sequence space: the client's and the server's.
    spaces: [Unwrap; 2],
    trace: SegmentTrace,
}

/// What the reconstruction knows of one segment.
pub(crate) struct Seen {
    pub at_us: u64,
    pub side: usize,
    pub seq: u32,
    pub len: u32,
    pub ack: Option<u32>,
    pub window_bytes: u64,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub retransmission: bool,
    pub zero_window: bool,
}

impl Recorder {
    pub(crate) fn new(id: u32) -> Recorder {
        Recorder {
            spaces: Default::default(),
            trace: SegmentTrace {
                id,
                ..Default::default()
            },
        }
    }

    /// Records one segment.
    pub(crate) fn push(&mut self, s: Seen) {
        // Unwrap even when not kept, so the reference keeps up.
        let seq = self.spaces[s.side].rel(s.seq);
        let ack = s.ack.map(|a| self.spaces[1 - s.side].rel(a));
        if self.trace.points.len() >= MAX_SEGMENTS {
            self.trace.dropped += 1;
            return;
        }
        self.trace.points.push(SegmentPoint {
            at_us: s.at_us,
            from: if s.side == 0 {
                Side::Client
            } else {
                Side::Server
            },
            seq,
            len: s.len,
            ack,
            window_bytes: s.window_bytes,
            syn: s.syn,
            fin: s.fin,
            rst: s.rst,
            retransmission: s.retransmission,
            zero_window: s.zero_window,
        });
    }

    pub(crate) fn finish(self) -> SegmentTrace {
        self.trace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_follows_a_wrap_and_keeps_old_segments_behind() {
        let mut u = Unwrap::default();
        assert_eq!(u.rel(u32::MAX - 9), 0);
        assert_eq!(u.rel(5), 15);
        assert_eq!(u.rel(u32::MAX - 4), 5);
        assert_eq!(u.rel(1005), 1015);
    }
}
