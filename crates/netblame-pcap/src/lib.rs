//! netblame-pcap: reads pcap/pcapng captures (plain or gzip) as a stream and reconstructs every
//! TCP connection into a [`netblame_core::observe::flow::FlowObservation`]; matches the same
//! streams across two captures ([`correlate`]). Never prints; never panics on bad input.
#![forbid(unsafe_code)]

pub mod correlate;
pub mod decode;
pub mod reader;
pub mod reconstruct;

pub use reader::{Capture, RawPacket, ReadError, ReadOutcome};
pub use reconstruct::{Analyzer, Config};

use netblame_core::observe::flow::FlowObservation;
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
}

/// Reconstructs every TCP connection of an opened capture.
pub fn analyze(capture: Capture, cfg: Config) -> Analysis {
    let gzip = capture.gzip;
    let mut analyzer = Analyzer::new(cfg);
    let mut tcp = 0u64;
    let mut max_open = 0usize;
    let outcome = capture.for_each_packet(|p| {
        if let Some(seg) = decode::tcp_segment(p.linktype, p.data) {
            tcp += 1;
            analyzer.push(p.ts_ns, &seg);
            if tcp.is_multiple_of(4096) {
                max_open = max_open.max(analyzer.open_connections());
            }
        }
    });
    max_open = max_open.max(analyzer.open_connections());
    Analysis {
        flows: analyzer.finish(),
        frames: outcome.packets,
        tcp_segments: tcp,
        damage: outcome.damage,
        format: outcome.format,
        gzip,
        max_open_connections: max_open,
    }
}

/// Opens and analyses a capture file.
pub fn analyze_path(path: &Path, cfg: Config) -> Result<Analysis, ReadError> {
    Ok(analyze(Capture::open(path)?, cfg))
}
