//! Live capture (`netblame pcap --live IFACE`): frames from libpcap (the pcap crate) go
//! straight into the reconstruction as they arrive; nothing is written to disk. The capture
//! ends after a duration or when `stop` is set (Ctrl-C).

use crate::{Accumulator, Analysis, Config, ReadOutcome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Pause when no frame is waiting (the kernel buffers 16 MiB meanwhile).
const IDLE_NAP: Duration = Duration::from_millis(5);

/// What to capture.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Interface name (`lo`, `eth0`, `any`).
    pub interface: String,
    /// A capture filter in tcpdump's syntax, or None for everything.
    pub filter: Option<String>,
    pub duration: Duration,
    /// Bytes kept of each frame (headers are enough: lengths come from the IP header).
    pub snaplen: i32,
}

/// Why a live capture could not run.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot capture on {interface}: {error} (needs root or CAP_NET_RAW)")]
    Open { interface: String, error: String },
    #[error("bad capture filter {filter:?}: {error}")]
    Filter { filter: String, error: String },
    #[error("capture on {interface} failed: {error}")]
    Read { interface: String, error: String },
}

/// Captures on an interface for `opts.duration` (or until `stop`), reconstructing as it goes.
pub fn capture(opts: &LiveOptions, cfg: Config, stop: &AtomicBool) -> Result<Analysis, LiveError> {
    let open_err = |e: pcap::Error| LiveError::Open {
        interface: opts.interface.clone(),
        error: e.to_string(),
    };
    let mut cap = pcap::Capture::from_device(opts.interface.as_str())
        .map_err(open_err)?
        .promisc(false)
        .snaplen(opts.snaplen)
        .immediate_mode(true)
        .buffer_size(16 << 20)
        .open()
        .map_err(open_err)?
        // libpcap's read timeout does not fire on a quiet Linux interface (TPACKET_V3 polls
        // without one): poll without blocking and nap when nothing is there.
        .setnonblock()
        .map_err(open_err)?;
    if let Some(f) = &opts.filter {
        cap.filter(f, true).map_err(|e| LiveError::Filter {
            filter: f.clone(),
            error: e.to_string(),
        })?;
    }
    let linktype = cap.get_datalink().0 as u16;
    let mut acc = Accumulator::new(cfg);
    let mut read = ReadOutcome {
        format: "live",
        ..Default::default()
    };
    let deadline = Instant::now() + opts.duration;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        match cap.next_packet() {
            Ok(p) => {
                let ts = p.header.ts;
                let ts_ns =
                    (ts.tv_sec.max(0) as u64) * 1_000_000_000 + (ts.tv_usec.max(0) as u64) * 1_000;
                read.packets += 1;
                read.bytes += p.data.len() as u64;
                acc.frame(ts_ns, linktype, p.data);
            }
            Err(pcap::Error::TimeoutExpired) => std::thread::sleep(IDLE_NAP),
            Err(e) => {
                return Err(LiveError::Read {
                    interface: opts.interface.clone(),
                    error: e.to_string(),
                })
            }
        }
    }
    if let Ok(st) = cap.stats() {
        if st.dropped > 0 || st.if_dropped > 0 {
            read.warnings.push(format!(
                "{}: the kernel dropped {} frames and the interface {} while capturing: counts are low and gaps may read as loss",
                opts.interface, st.dropped, st.if_dropped
            ));
        }
    }
    Ok(acc.finish(read, false))
}
