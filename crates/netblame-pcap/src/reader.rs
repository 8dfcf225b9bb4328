//! Streaming capture reader: pcap (micro- and nanosecond, either byte order; [`crate::legacy`])
//! and pcapng (pcap-parser), plain or gzip-compressed, from a file or any stream (standard
//! input). Packets are handed to a callback one at a time; memory stays at the read buffer
//! (grown only when one block is larger than it).
//!
//! What can be repaired is repaired and listed in [`ReadOutcome::warnings`]; damage that stops
//! the read sets [`ReadOutcome::damage`]: everything before it has been delivered. A file that
//! is not a capture at all is an error.

use crate::legacy;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::fs::File;
use std::io::{BufReader, Cursor, Read};
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
    /// What was repaired on the way (at most [`legacy::MAX_WARNINGS`] and a count).
    pub warnings: Vec<String>,
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

enum Inner {
    Legacy(legacy::Header, Box<dyn Read + Send>),
    Ng(Box<dyn PcapReaderIterator + Send>),
}

/// An opened capture.
pub struct Capture {
    path: String,
    inner: Inner,
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
        let file = File::open(path).map_err(|error| ReadError::Open {
            path: name.clone(),
            error,
        })?;
        let file_size = file.metadata().ok().map(|m| m.len());
        let mut c = Capture::from_stream(&name, file)?;
        c.file_size = file_size;
        Ok(c)
    }

    /// Reads a capture from any stream (standard input, a pipe), gzip-compressed or not.
    pub fn from_stream(
        name: &str,
        reader: impl Read + Send + 'static,
    ) -> Result<Capture, ReadError> {
        let count = Arc::new(AtomicU64::new(0));
        let mut counted = Counting {
            inner: reader,
            count: count.clone(),
        };
        let (head, n) = peek(name, &mut counted, 2)?;
        let gzip = n == 2 && head[..2] == [0x1f, 0x8b];
        let rejoined = Prefixed::new(head, counted);
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 16,
                rejoined,
            )))
        } else {
            Box::new(rejoined)
        };
        let inner = open_inner(name, reader)?;
        Ok(Capture {
            path: name.to_string(),
            inner,
            file_bytes_read: count,
            file_size: None,
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
        let inner = open_inner(name, Box::new(counted))?;
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
    pub fn for_each_packet(self, mut on_packet: impl FnMut(&RawPacket<'_>)) -> ReadOutcome {
        match self.inner {
            Inner::Legacy(h, r) => {
                let o = legacy::read_records(&self.path, h, r, |ts_ns, data, orig_len| {
                    on_packet(&RawPacket {
                        ts_ns,
                        linktype: h.linktype,
                        data,
                        orig_len,
                    })
                });
                ReadOutcome {
                    packets: o.packets,
                    damage: o.damage,
                    bytes: o.bytes,
                    format: "pcap",
                    warnings: o.warnings,
                }
            }
            Inner::Ng(ng) => read_ng(&self.path, ng, on_packet),
        }
    }
}

/// Reads pcapng blocks (and, should pcap-parser hand one over, legacy records) with pcap-parser.
fn read_ng(
    path: &str,
    mut inner: Box<dyn PcapReaderIterator + Send>,
    mut on_packet: impl FnMut(&RawPacket<'_>),
) -> ReadOutcome {
    let path = path.to_string();
    {
        let mut out = ReadOutcome::default();
        let mut interfaces: Vec<Interface> = Vec::new();
        let mut legacy: Option<(u16, u64, u32)> = None; // linktype, units per second, snaplen
        let mut buffer_size = INITIAL_BUFFER;
        let mut consumed: u64 = 0;
        loop {
            match inner.next() {
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
                            path, consumed, out.packets
                        ));
                        break;
                    }
                    consumed += offset as u64;
                    inner.consume(offset);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => {
                    if inner.refill().is_err() {
                        out.damage = Some(format!(
                            "{}: read error at byte {consumed}; results cover the {} packets before it",
                            path, out.packets
                        ));
                        break;
                    }
                }
                Err(PcapError::BufferTooSmall) => {
                    if buffer_size >= MAX_BUFFER {
                        out.damage = Some(format!(
                            "{}: damaged at byte {consumed}: a block larger than {} MiB; results cover the {} packets before it",
                            path,
                            MAX_BUFFER >> 20,
                            out.packets
                        ));
                        break;
                    }
                    buffer_size *= 2;
                    inner.grow(buffer_size);
                    if inner.refill().is_err() {
                        out.damage = Some(format!(
                            "{}: read error at byte {consumed}; results cover the {} packets before it",
                            path, out.packets
                        ));
                        break;
                    }
                }
                Err(PcapError::UnexpectedEof) => {
                    out.damage = Some(format!(
                        "{}: the file ends in the middle of a record at byte {consumed} (cut short?); results cover the {} packets before it",
                        path, out.packets
                    ));
                    break;
                }
                Err(e) => {
                    out.damage = Some(format!(
                        "{}: damaged at byte {consumed}: {}; results cover the {} packets before it",
                        path,
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

/// Bytes already read from a stream, then the rest of it. Unlike `Read::chain`, one `read`
/// continues into the stream after the prefix (pcap-parser parses the first read whole).
struct Prefixed<R> {
    head: Cursor<Vec<u8>>,
    inner: R,
}

impl<R: Read> Prefixed<R> {
    fn new(head: Vec<u8>, inner: R) -> Prefixed<R> {
        Prefixed {
            head: Cursor::new(head),
            inner,
        }
    }
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.head.read(buf)?;
        if n == buf.len() {
            return Ok(n);
        }
        match self.inner.read(&mut buf[n..]) {
            Ok(k) => Ok(n + k),
            Err(_) if n > 0 => Ok(n),
            Err(e) => Err(e),
        }
    }
}

/// Reads up to `n` bytes from the start of a stream.
fn peek(name: &str, r: &mut impl Read, n: usize) -> Result<(Vec<u8>, usize), ReadError> {
    let mut head = vec![0u8; n];
    let got = read_fully(r, &mut head).map_err(|error| ReadError::Open {
        path: name.to_string(),
        error,
    })?;
    if got == 0 {
        return Err(ReadError::Empty {
            path: name.to_string(),
        });
    }
    head.truncate(got);
    Ok((head, got))
}

/// Picks the reader by the file's magic: legacy pcap here, pcapng through pcap-parser.
fn open_inner(name: &str, mut reader: Box<dyn Read + Send>) -> Result<Inner, ReadError> {
    let (head, n) = peek(name, &mut reader, 24)?;
    if let Some(h) = legacy::Header::parse(&head) {
        if n < 24 {
            return Err(ReadError::BadHeader {
                path: name.to_string(),
                detail: "the file is shorter than a capture header".into(),
            });
        }
        return Ok(Inner::Legacy(h, reader));
    }
    let ng_detail = pcapng_header_problem(&head);
    let rejoined: Box<dyn Read + Send> = Box::new(Prefixed::new(head, reader));
    match open_reader(name, rejoined) {
        Ok(r) => Ok(Inner::Ng(r)),
        Err(ReadError::NotACapture { .. }) | Err(ReadError::BadHeader { .. })
            if ng_detail.is_some() =>
        {
            Err(ReadError::BadHeader {
                path: name.to_string(),
                detail: ng_detail.unwrap_or_default(),
            })
        }
        Err(e) => Err(e),
    }
}

/// What is wrong with a pcapng section header block, when the file starts like one.
fn pcapng_header_problem(b: &[u8]) -> Option<String> {
    if b.get(0..4)? != [0x0a, 0x0d, 0x0d, 0x0a] {
        return None;
    }
    let Some(bom) = b.get(8..12) else {
        return Some("pcapng section header block cut short (fewer than 12 bytes)".into());
    };
    let le = match bom {
        [0x4d, 0x3c, 0x2b, 0x1a] => true,
        [0x1a, 0x2b, 0x3c, 0x4d] => false,
        _ => {
            return Some(format!(
                "pcapng section header block: byte-order magic {:02x}{:02x}{:02x}{:02x}, expected 1a2b3c4d in either byte order",
                bom[0], bom[1], bom[2], bom[3]
            ))
        }
    };
    let len_b: [u8; 4] = b.get(4..8)?.try_into().ok()?;
    let len = if le {
        u32::from_le_bytes(len_b)
    } else {
        u32::from_be_bytes(len_b)
    };
    if len < 28 || len % 4 != 0 {
        return Some(format!(
            "pcapng section header block claims {len} bytes (at least 28, a multiple of 4)"
        ));
    }
    let v: [u8; 2] = b.get(12..14)?.try_into().ok()?;
    let major = if le {
        u16::from_le_bytes(v)
    } else {
        u16::from_be_bytes(v)
    };
    if major != 1 {
        return Some(format!(
            "pcapng section header block: version {major}, only version 1 is defined"
        ));
    }
    Some(
        "pcapng section header block unreadable (its options or trailing length are damaged)"
            .into(),
    )
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
