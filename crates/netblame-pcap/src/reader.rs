//! Streaming capture reader: pcap (micro- and nanosecond, either byte order) and pcapng, plain
//! or gzip-compressed. Packets are handed to a callback one at a time; memory stays at the read
//! buffer (grown only when one block is larger than it).
//!
//! Damage stops the read with a [`ReadOutcome::damage`] message: everything before it has been
//! delivered. A file that is not a capture at all is an error.

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Initial read buffer.
const INITIAL_BUFFER: usize = 1 << 20;
/// Largest block accepted: anything bigger is taken as damage.
const MAX_BUFFER: usize = 64 << 20;
/// Largest record length accepted in a legacy pcap record header.
const MAX_RECORD: u32 = 16 << 20;

/// Why a capture could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open {path}: {error}")]
    Open { path: String, error: std::io::Error },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path} is not a pcap or pcapng capture (unknown file header{hint})")]
    NotACapture { path: String, hint: &'static str },
    #[error("{path}: cannot read the capture header: {detail}")]
    BadHeader { path: String, detail: String },
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Link type (LINKTYPE_* number).
    pub linktype: u16,
    /// Captured bytes (may be cut short by the snap length).
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
}

/// What a read delivered.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    /// Frames delivered to the callback.
    pub packets: u64,
    /// Set when the read stopped early: what was wrong and where.
    pub damage: Option<String>,
    /// Bytes of capture data consumed (uncompressed).
    pub bytes: u64,
    /// pcap or pcapng.
    pub format: &'static str,
}

/// Counts bytes read from the underlying file (for progress on compressed input too).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[derive(Clone, Copy)]
struct Interface {
    linktype: u16,
    /// Units per second.
    resolution: u64,
    offset_s: i64,
}

/// An opened capture.
pub struct Capture {
    path: String,
    inner: Box<dyn PcapReaderIterator + Send>,
    file_bytes_read: Arc<AtomicU64>,
    /// Size of the file on disk, if known.
    pub file_size: Option<u64>,
    /// True when the file was gzip-compressed.
    pub gzip: bool,
}

impl Capture {
    /// Opens a capture file; gzip is detected by its magic bytes.
    pub fn open(path: &Path) -> Result<Capture, ReadError> {
        let name = path.display().to_string();
        let open_err = |error| ReadError::Open {
            path: name.clone(),
            error,
        };
        let mut file = File::open(path).map_err(open_err)?;
        let file_size = file.metadata().ok().map(|m| m.len());
        let mut magic = [0u8; 2];
        let n = read_fully(&mut file, &mut magic).map_err(open_err)?;
        drop(file);
        if n == 0 {
            return Err(ReadError::Empty { path: name });
        }
        let gzip = n == 2 && magic == [0x1f, 0x8b];
        let file = File::open(path).map_err(open_err)?;
        let count = Arc::new(AtomicU64::new(0));
        let counted = Counting {
            inner: file,
            count: count.clone(),
        };
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 16,
                counted,
            )))
        } else {
            Box::new(counted)
        };
        let inner = open_reader(&name, reader)?;
        Ok(Capture {
            path: name,
            inner,
            file_bytes_read: count,
            file_size,
            gzip,
        })
    }

    /// Reads a capture from any reader (not compressed).
    pub fn from_reader(
        name: &str,
        reader: impl Read + Send + 'static,
    ) -> Result<Capture, ReadError> {
        let count = Arc::new(AtomicU64::new(0));
        let counted = Counting {
            inner: reader,
            count: count.clone(),
        };
        let inner = open_reader(name, Box::new(counted))?;
        Ok(Capture {
            path: name.to_string(),
            inner,
            file_bytes_read: count,
            file_size: None,
            gzip: false,
        })
    }

    /// Bytes read from the file so far (compressed bytes for gzip input).
    pub fn file_bytes_read(&self) -> u64 {
        self.file_bytes_read.load(Ordering::Relaxed)
    }

    /// A shared counter of bytes read from the file, for a progress display on another thread.
    pub fn progress_counter(&self) -> Arc<AtomicU64> {
        self.file_bytes_read.clone()
    }

    /// Delivers every frame to `on_packet`, in file order.
    pub fn for_each_packet(mut self, mut on_packet: impl FnMut(&RawPacket<'_>)) -> ReadOutcome {
        let mut out = ReadOutcome::default();
        let mut interfaces: Vec<Interface> = Vec::new();
        let mut legacy: Option<(u16, u64, u32)> = None; // linktype, units per second, snaplen
        let mut buffer_size = INITIAL_BUFFER;
        let mut consumed: u64 = 0;
        loop {
            match self.inner.next() {
                Ok((offset, block)) => {
                    let stop = match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            out.format = "pcap";
                            let res = if h.is_nanosecond_precision() {
                                1_000_000_000
                            } else {
                                1_000_000
                            };
                            legacy = Some((h.network.0 as u16, res, h.snaplen));
                            None
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let (linktype, res, snaplen) =
                                legacy.unwrap_or((1, 1_000_000, u32::MAX));
                            if b.caplen > MAX_RECORD || b.caplen > b.origlen.max(snaplen) {
                                Some(format!(
                                    "record {} claims {} captured bytes (snap length {snaplen}, wire length {})",
                                    out.packets + 1,
                                    b.caplen,
                                    b.origlen
                                ))
                            } else if b.ts_usec as u64 >= res {
                                Some(format!(
                                    "record {} has a fractional timestamp {} out of range",
                                    out.packets + 1,
                                    b.ts_usec
                                ))
                            } else {
                                let ts_ns = b.ts_sec as u64 * 1_000_000_000
                                    + b.ts_usec as u64 * (1_000_000_000 / res);
                                out.packets += 1;
                                on_packet(&RawPacket {
                                    ts_ns,
                                    linktype,
                                    data: b.data,
                                    orig_len: b.origlen,
                                });
                                None
                            }
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            out.format = "pcapng";
                            interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            interfaces.push(Interface {
                                linktype: idb.linktype.0 as u16,
                                resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                                offset_s: idb.ts_offset(),
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            match interfaces.get(epb.if_id as usize) {
                                None => Some(format!(
                                    "packet {} names interface {} which was never described",
                                    out.packets + 1,
                                    epb.if_id
                                )),
                                Some(ifc) => {
                                    let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                                    let secs = raw / ifc.resolution;
                                    let frac = raw % ifc.resolution;
                                    let ns = secs
                                        .saturating_add_signed(ifc.offset_s)
                                        .saturating_mul(1_000_000_000)
                                        .saturating_add(
                                            (frac as u128 * 1_000_000_000 / ifc.resolution as u128)
                                                as u64,
                                        );
                                    let len = (epb.caplen as usize).min(epb.data.len());
                                    out.packets += 1;
                                    on_packet(&RawPacket {
                                        ts_ns: ns,
                                        linktype: ifc.linktype,
                                        data: &epb.data[..len],
                                        orig_len: epb.origlen,
                                    });
                                    None
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            // No timestamp in a simple packet block: use 0 (still usable for counts).
                            if let Some(ifc) = interfaces.first() {
                                out.packets += 1;
                                on_packet(&RawPacket {
                                    ts_ns: 0,
                                    linktype: ifc.linktype,
                                    data: spb.data,
                                    orig_len: spb.origlen,
                                });
                            }
                            None
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    if let Some(msg) = stop {
                        out.damage = Some(format!(
                            "{}: damaged at byte {}: {msg}; results cover the {} packets before it",
                            self.path, consumed, out.packets
                        ));
                        break;
                    }
                    consumed += offset as u64;
                    self.inner.consume(offset);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => {
                    if self.inner.refill().is_err() {
                        out.damage = Some(format!(
                            "{}: read error at byte {consumed}; results cover the {} packets before it",
                            self.path, out.packets
                        ));
                        break;
                    }
                }
                Err(PcapError::BufferTooSmall) => {
                    if buffer_size >= MAX_BUFFER {
                        out.damage = Some(format!(
                            "{}: damaged at byte {consumed}: a block larger than {} MiB; results cover the {} packets before it",
                            self.path,
                            MAX_BUFFER >> 20,
                            out.packets
                        ));
                        break;
                    }
                    buffer_size *= 2;
                    self.inner.grow(buffer_size);
                    if self.inner.refill().is_err() {
                        out.damage = Some(format!(
                            "{}: read error at byte {consumed}; results cover the {} packets before it",
                            self.path, out.packets
                        ));
                        break;
                    }
                }
                Err(PcapError::UnexpectedEof) => {
                    out.damage = Some(format!(
                        "{}: the file ends in the middle of a record at byte {consumed} (cut short?); results cover the {} packets before it",
                        self.path, out.packets
                    ));
                    break;
                }
                Err(e) => {
                    out.damage = Some(format!(
                        "{}: damaged at byte {consumed}: {}; results cover the {} packets before it",
                        self.path,
                        describe(&e),
                        out.packets
                    ));
                    break;
                }
            }
        }
        out.bytes = consumed;
        if out.format.is_empty() {
            out.format = "pcap";
        }
        out
    }
}

fn describe(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("unparseable block ({kind:?})")
        }
        PcapError::ReadError => "read error".into(),
        other => format!("{other}"),
    }
}

fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn open_reader(
    name: &str,
    reader: Box<dyn Read + Send>,
) -> Result<Box<dyn PcapReaderIterator + Send>, ReadError> {
    match pcap_parser::create_reader(INITIAL_BUFFER, reader) {
        Ok(r) => Ok(r),
        Err(PcapError::Eof) => Err(ReadError::Empty {
            path: name.to_string(),
        }),
        Err(PcapError::HeaderNotRecognized) | Err(PcapError::NomError(..)) => {
            Err(ReadError::NotACapture {
                path: name.to_string(),
                hint: "",
            })
        }
        Err(PcapError::Incomplete(_)) | Err(PcapError::UnexpectedEof) => {
            Err(ReadError::BadHeader {
                path: name.to_string(),
                detail: "the file is shorter than a capture header".into(),
            })
        }
        Err(e) => Err(ReadError::BadHeader {
            path: name.to_string(),
            detail: e.to_string(),
        }),
    }
}
