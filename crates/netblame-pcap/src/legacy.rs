//! The legacy pcap format (micro- or nanosecond, either byte order), read record by record with
//! libpcap's tolerance: a captured length above the wire length is clamped and warned about, a
//! fractional timestamp out of range is carried into the seconds, and a record length no
//! capture could hold is reported as such ("record 14 claims 3,295,104,600 bytes") before the
//! reader looks for the next plausible record header and carries on (as pcapfix does).
//!
//! Hand-rolled instead of pcap-parser's legacy reader: that one stops at the first bad record
//! and cannot say which length was wrong or resynchronise.

use netblame_core::units::group_thousands as group;
use std::io::Read;

/// Largest record a live capture writes (libpcap's MAXIMUM_SNAPLEN).
const MAX_SNAPLEN: u32 = 262_144;
/// Bytes searched for the next record header after a corrupt one.
const RESYNC_WINDOW: usize = 16 << 20;
/// Read size.
const CHUNK: usize = 1 << 20;
/// Warnings kept one by one; the rest are counted.
pub const MAX_WARNINGS: usize = 20;

/// The 24-byte file header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub big_endian: bool,
    pub nanosecond: bool,
    pub snaplen: u32,
    pub linktype: u16,
}

impl Header {
    /// Parses the file header from its first 24 bytes; None when the magic is not pcap's.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let magic: [u8; 4] = b.get(0..4)?.try_into().ok()?;
        let (big_endian, nanosecond) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            _ => return None,
        };
        let h = Header {
            big_endian,
            nanosecond,
            snaplen: 0,
            linktype: 0,
        };
        Some(Header {
            snaplen: h.u32(b, 16)?,
            // The upper 16 bits may carry FCS information (pcap-linktype): link type is the low 16.
            linktype: h.u32(b, 20)? as u16,
            ..h
        })
    }

    fn u32(&self, b: &[u8], at: usize) -> Option<u32> {
        let v: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        })
    }

    fn units(&self) -> u64 {
        if self.nanosecond {
            1_000_000_000
        } else {
            1_000_000
        }
    }

    /// The largest captured length a record may claim.
    fn max_caplen(&self) -> u32 {
        self.snaplen.clamp(MAX_SNAPLEN, 16 << 20)
    }
}

/// One record header.
#[derive(Debug, Clone, Copy)]
struct RecordHeader {
    ts_sec: u32,
    ts_frac: u32,
    caplen: u32,
    origlen: u32,
}

/// A buffered reader that can look ahead (for resynchronisation).
struct Buf<R> {
    inner: R,
    data: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: Read> Buf<R> {
    fn available(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Makes at least `n` bytes available unless the input ends first.
    fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.available() < n && !self.eof {
            if self.pos > 0 && self.pos >= self.data.len() / 2 {
                self.data.drain(..self.pos);
                self.pos = 0;
            }
            let old = self.data.len();
            let want = (n - self.available()).max(CHUNK);
            self.data.resize(old + want, 0);
            match self.inner.read(&mut self.data[old..]) {
                Ok(0) => {
                    self.data.truncate(old);
                    self.eof = true;
                }
                Ok(k) => self.data.truncate(old + k),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => self.data.truncate(old),
                Err(e) => {
                    self.data.truncate(old);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn rest(&self) -> &[u8] {
        &self.data[self.pos..]
    }
}

/// What the legacy read met.
#[derive(Debug, Default)]
pub struct Outcome {
    pub packets: u64,
    pub bytes: u64,
    pub damage: Option<String>,
    pub warnings: Vec<String>,
}

impl Outcome {
    fn warn(&mut self, count: &mut u64, msg: String) {
        *count += 1;
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg);
        }
    }
}

/// Reads every record after the file header (already consumed) and hands it over as
/// (timestamp ns, data, wire length).
pub fn read_records<R: Read>(
    name: &str,
    header: Header,
    inner: R,
    mut on_packet: impl FnMut(u64, &[u8], u32),
) -> Outcome {
    let mut buf = Buf {
        inner,
        data: Vec::with_capacity(CHUNK),
        pos: 0,
        eof: false,
    };
    let mut out = Outcome::default();
    let mut warned = 0u64;
    let mut offset: u64 = 24;
    let mut last_ts: Option<u32> = None;
    let units = header.units();
    loop {
        if let Err(e) = buf.fill(16) {
            out.damage = Some(format!(
                "{name}: read error at byte {offset}: {e}; results cover the {} packets before it",
                out.packets
            ));
            break;
        }
        if buf.available() == 0 {
            break;
        }
        if buf.available() < 16 {
            out.damage = Some(format!(
                "{name}: the file ends inside the header of record {} at byte {offset} (cut short); results cover the {} packets before it",
                out.packets + 1,
                out.packets
            ));
            break;
        }
        let rh = record_header(&header, buf.rest());
        let n = out.packets + 1;
        if rh.caplen > header.max_caplen() {
            let claim = format!(
                "record {n} at byte {offset} claims {} bytes (snap length {})",
                group(rh.caplen as u64),
                header.snaplen
            );
            match resync(&header, &mut buf, last_ts) {
                Some(skipped) => {
                    out.warn(
                        &mut warned,
                        format!(
                            "{name}: {claim}: skipped {} bytes to the next record header",
                            group(skipped as u64)
                        ),
                    );
                    offset += skipped as u64;
                    continue;
                }
                None => {
                    out.damage = Some(format!(
                        "{name}: damaged: {claim}, and no record header follows; results cover the {} packets before it",
                        out.packets
                    ));
                    break;
                }
            }
        }
        let len = 16 + rh.caplen as usize;
        if let Err(e) = buf.fill(len) {
            out.damage = Some(format!(
                "{name}: read error at byte {offset}: {e}; results cover the {} packets before it",
                out.packets
            ));
            break;
        }
        if buf.available() < len {
            out.damage = Some(format!(
                "{name}: the file ends inside record {n} at byte {offset} (it claims {} bytes, {} remain: cut short); results cover the {} packets before it",
                group(rh.caplen as u64),
                group(buf.available().saturating_sub(16) as u64),
                out.packets
            ));
            break;
        }
        let mut wire = rh.origlen;
        if rh.caplen > rh.origlen {
            out.warn(
                &mut warned,
                format!(
                    "{name}: record {n} captured {} bytes of a {}-byte packet: taken as {} on the wire",
                    rh.caplen, rh.origlen, rh.caplen
                ),
            );
            wire = rh.caplen;
        }
        let (mut sec, mut frac) = (rh.ts_sec as u64, rh.ts_frac as u64);
        if frac >= units {
            out.warn(
                &mut warned,
                format!(
                    "{name}: record {n} has a fractional timestamp {frac} out of range: carried into the seconds"
                ),
            );
            sec += frac / units;
            frac %= units;
        }
        last_ts = Some(rh.ts_sec);
        let ts_ns = sec * 1_000_000_000 + frac * (1_000_000_000 / units);
        out.packets += 1;
        on_packet(ts_ns, &buf.rest()[16..len], wire);
        buf.pos += len;
        offset += len as u64;
    }
    if warned > out.warnings.len() as u64 {
        out.warnings.push(format!(
            "{name}: {} more warnings like these",
            warned - out.warnings.len() as u64
        ));
    }
    out.bytes = offset;
    out
}

fn record_header(h: &Header, b: &[u8]) -> RecordHeader {
    let f = |at| h.u32(b, at).unwrap_or(0);
    RecordHeader {
        ts_sec: f(0),
        ts_frac: f(4),
        caplen: f(8),
        origlen: f(12),
    }
}

/// A record header that could be real: lengths a capture writes, a timestamp within a day of
/// the last good one.
fn plausible(h: &Header, r: &RecordHeader, last_ts: Option<u32>) -> bool {
    r.caplen > 0
        && r.caplen <= h.snaplen.max(64).min(h.max_caplen())
        && r.caplen <= r.origlen
        && r.origlen <= MAX_SNAPLEN.max(h.snaplen)
        && (r.ts_frac as u64) < h.units()
        && last_ts.is_none_or(|t| r.ts_sec.abs_diff(t) <= 86_400)
}

/// Moves past a corrupt record header to the next offset where a plausible header is followed
/// by another one (or the end of the file). Returns the bytes skipped.
fn resync<R: Read>(h: &Header, buf: &mut Buf<R>, last_ts: Option<u32>) -> Option<usize> {
    let _ = buf.fill(RESYNC_WINDOW);
    let data = buf.rest();
    for skip in 1..data.len().saturating_sub(15) {
        let r = record_header(h, &data[skip..]);
        if !plausible(h, &r, last_ts) {
            continue;
        }
        let next = skip + 16 + r.caplen as usize;
        let follows = if next == data.len() {
            buf.eof
        } else if next + 16 <= data.len() {
            plausible(h, &record_header(h, &data[next..]), Some(r.ts_sec))
        } else {
            false
        };
        if follows {
            buf.pos += skip;
            return Some(skip);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&101u32.to_le_bytes());
        for (sec, frac, data, orig) in records {
            v.extend_from_slice(&sec.to_le_bytes());
            v.extend_from_slice(&frac.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&orig.to_le_bytes());
            v.extend_from_slice(data);
        }
        v
    }

    fn read(bytes: &[u8]) -> (Outcome, Vec<(u64, usize, u32)>) {
        let h = Header::parse(bytes).unwrap();
        let mut got = Vec::new();
        let o = read_records("t", h, &bytes[24..], |ts, d, w| got.push((ts, d.len(), w)));
        (o, got)
    }

    #[test]
    fn lengths_and_timestamps_are_repaired_with_warnings() {
        let bytes = file(&[
            (100, 5, &[1; 40], 40),
            (100, 7, &[2; 60], 50),
            (100, 1_500_000, &[3; 40], 40),
        ]);
        let (o, got) = read(&bytes);
        assert!(o.damage.is_none());
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].2, 60);
        assert_eq!(got[2].0, 101_500_000_000);
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
        assert!(o.warnings[0].contains("record 2 captured 60 bytes of a 50-byte packet"));
    }

    #[test]
    fn a_corrupt_record_length_is_named_and_skipped() {
        let mut bytes = file(&[(100, 1, &[1; 40], 40), (100, 2, &[2; 40], 40)]);
        let good = bytes.clone();
        // Corrupt the second record's captured length.
        let at = 24 + 16 + 40 + 8;
        bytes[at..at + 4].copy_from_slice(&3_295_104_600u32.to_le_bytes());
        bytes.extend_from_slice(&good[24..24 + 16 + 40]);
        bytes.extend_from_slice(&good[24..24 + 16 + 40]);
        let (o, got) = read(&bytes);
        assert!(o.damage.is_none(), "{:?}", o.damage);
        assert_eq!(got.len(), 3);
        assert!(
            o.warnings[0].contains("record 2 at byte 80 claims 3,295,104,600 bytes"),
            "{:?}",
            o.warnings
        );
        // Nothing plausible after it: damage, with the claim.
        let mut cut = good.clone();
        cut[at..at + 4].copy_from_slice(&3_295_104_600u32.to_le_bytes());
        let (o, got) = read(&cut);
        assert_eq!(got.len(), 1);
        assert!(o.damage.unwrap().contains("claims 3,295,104,600 bytes"));
    }

    #[test]
    fn a_cut_record_is_cut_short() {
        let bytes = file(&[(100, 1, &[1; 40], 40), (100, 2, &[2; 40], 40)]);
        let (o, got) = read(&bytes[..bytes.len() - 10]);
        assert_eq!(got.len(), 1);
        assert!(o.damage.unwrap().contains("cut short"));
    }
}
