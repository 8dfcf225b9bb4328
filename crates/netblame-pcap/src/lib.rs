//! netblame-pcap: reads pcap/pcapng captures (plain or gzip) as a stream and reconstructs every
//! TCP connection into a [`netblame_core::observe::flow::FlowObservation`]; matches the same
//! streams across two captures ([`correlate`]). Never prints; never panics on bad input.
#![forbid(unsafe_code)]

pub mod correlate;
pub mod decode;
mod legacy;
#[cfg(feature = "live")]
pub mod live;
pub mod reader;
pub mod reconstruct;
pub mod segments;

pub use reader::{Capture, RawPacket, ReadError, ReadOutcome};
pub use reconstruct::{Analyzer, Config};

use netblame_core::observe::flow::FlowObservation;
use std::collections::BTreeMap;
use std::path::Path;

/// Every connection in a capture, and what the read met on the way.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// In order of first packet.
    pub flows: Vec<FlowObservation>,
    /// Frames in the file.
    pub frames: u64,
    /// Frames that carried a TCP segment.
    pub tcp_segments: u64,
    /// Set when the read stopped early at damage: the flows cover what came before it.
    pub damage: Option<String>,
    /// `pcap` or `pcapng`.
    pub format: &'static str,
    pub gzip: bool,
    /// Most connections held open at once (the memory high-water mark of the reconstruction).
    pub max_open_connections: usize,
    /// Frames decoded and found not to be TCP (ARP, UDP, ICMP, ...).
    pub not_tcp_frames: u64,
    /// Frames not decoded, by reason (an encapsulation or link type not unwrapped, ...),
    /// most frequent first.
    pub skipped: Vec<(String, u64)>,
    /// What the reader repaired on the way (clamped lengths, timestamps out of range, skipped
    /// bytes), each with where.
    pub warnings: Vec<String>,
    /// Every segment of the connections that recorded them ([`Config::segments`]), by id.
    pub segments: Vec<segments::SegmentTrace>,
}

impl Analysis {
    /// Frames not decoded down to TCP, all reasons together.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped.iter().map(|(_, n)| n).sum()
    }

    /// Frames captured twice and counted once, over all connections.
    pub fn duplicate_frames(&self) -> u64 {
        self.flows
            .iter()
            .map(|f| f.from_client.duplicate_frames + f.from_server.duplicate_frames)
            .sum()
    }
}

/// Feeds frames to the reconstruction and keeps the capture-wide counts (for files and live
/// captures alike).
pub struct Accumulator {
    analyzer: Analyzer,
    tcp: u64,
    not_tcp: u64,
    skipped: BTreeMap<decode::Skip, u64>,
    max_open: usize,
}

impl Accumulator {
    /// A new accumulator.
    pub fn new(cfg: Config) -> Accumulator {
        Accumulator {
            analyzer: Analyzer::new(cfg),
            tcp: 0,
            not_tcp: 0,
            skipped: BTreeMap::new(),
            max_open: 0,
        }
    }

    /// One captured frame.
    pub fn frame(&mut self, ts_ns: u64, linktype: u16, data: &[u8]) {
        match decode::decode(linktype, data) {
            decode::Frame::Tcp(seg) => {
                self.tcp += 1;
                self.analyzer.push(ts_ns, &seg);
                if self.tcp.is_multiple_of(4096) {
                    self.max_open = self.max_open.max(self.analyzer.open_connections());
                }
            }
            decode::Frame::NotTcp => self.not_tcp += 1,
            decode::Frame::Skipped(why) => *self.skipped.entry(why).or_default() += 1,
        }
    }

    /// The analysis, given what the reader reports.
    pub fn finish(self, read: ReadOutcome, gzip: bool) -> Analysis {
        let max_open = self.max_open.max(self.analyzer.open_connections());
        let mut skipped: Vec<(String, u64)> = self
            .skipped
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect();
        skipped.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (flows, segments) = self.analyzer.finish_with_segments();
        Analysis {
            flows,
            segments,
            frames: read.packets,
            tcp_segments: self.tcp,
            damage: read.damage,
            format: read.format,
            gzip,
            max_open_connections: max_open,
            not_tcp_frames: self.not_tcp,
            skipped,
            warnings: read.warnings,
        }
    }
}

/// Reconstructs every TCP connection of an opened capture.
pub fn analyze(capture: Capture, cfg: Config) -> Analysis {
    let gzip = capture.gzip;
    let mut acc = Accumulator::new(cfg);
    let outcome = capture.for_each_packet(|p| acc.frame(p.ts_ns, p.linktype, p.data));
    acc.finish(outcome, gzip)
}

/// Opens and analyses a capture file.
pub fn analyze_path(path: &Path, cfg: Config) -> Result<Analysis, ReadError> {
    Ok(analyze(Capture::open(path)?, cfg))
}
