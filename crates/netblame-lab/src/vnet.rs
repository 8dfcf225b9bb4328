//! TUN offload frames: the `virtio_net_hdr` the kernel puts in front of every packet of a TUN
//! opened with `IFF_VNET_HDR`, what a TCP/IPv4 GSO super-packet is on the wire (how many
//! MSS-sized segments, how many IP bytes), and splitting a super-packet into wire segments or
//! into smaller GSO chunks.
//!
//! With `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)` the sending kernel hands the emulator TCP
//! super-packets of up to 64 KiB (one IP/TCP header, `gso_size` = MSS, checksum left partial)
//! instead of 40-odd 1500-byte packets, and writing such a frame into the other TUN lets the
//! receiving kernel take it whole, like a GRO-merged packet. Per-segment impairments (random
//! loss, jitter) and a rate's per-segment serialization need the segments back: [`split`] does
//! what the kernel's `tcp_gso_segment` does (IP total length, IP id + i, TCP sequence + i*MSS,
//! CWR on the first segment only, FIN/PSH on the last only, checksums).
//!
//! Hand-rolled rather than taken from tun-rs: tun-rs's offload path (`recv_multiple`) always
//! splits every super-packet into MTU-sized packets and re-merges them on send (wireguard-go's
//! design, which needs the packets one by one to encrypt them), while the lab's speed comes from
//! keeping super-packets whole when no per-segment impairment applies and from cutting them into
//! GSO chunks (not single packets) on a rate-limited link. The format is the 10-byte
//! `struct virtio_net_hdr` of `include/uapi/linux/virtio_net.h`, in native byte order (what a
//! TUN without `TUNSETVNETBE`/`TUNSETVNETLE` uses on a little-endian host, and the legacy
//! virtio rule elsewhere).

/// Size of `struct virtio_net_hdr` (no `num_buffers`), set with `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the rest is still to be added.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into `gso_type` when the segments carry ECN (CWR).
pub const GSO_ECN: u8 = 0x80;

const IPPROTO_TCP: u8 = 6;
/// Offset of the checksum inside the TCP header.
const TCP_CSUM_OFFSET: u16 = 16;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// `struct virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers (a hint for the linear part when writing).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS) of a GSO frame.
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of a frame; `None` when the frame is shorter.
    pub fn parse(frame: &[u8]) -> Option<VnetHdr> {
        let b = frame.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// What a frame is on the wire: how many packets of at most the MTU, how many IP bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    pub segments: u32,
    pub bytes: u64,
}

impl Wire {
    /// One packet of `len` IP bytes.
    pub fn single(len: usize) -> Wire {
        Wire {
            segments: 1,
            bytes: len as u64,
        }
    }
}

/// Layout of a TCP/IPv4 GSO super-packet.
#[derive(Debug, Clone, Copy)]
struct Tcp4 {
    /// IP header length.
    ihl: usize,
    /// IP + TCP header length.
    hlen: usize,
    mss: usize,
    payload: usize,
}

impl Tcp4 {
    fn segments(&self) -> usize {
        self.payload.div_ceil(self.mss).max(1)
    }
}

/// The layout of `pkt` when `hdr` says it is a TCP/IPv4 GSO frame that the IP and TCP headers
/// confirm; `None` for anything else (a plain packet).
fn tcp4_gso(hdr: &VnetHdr, pkt: &[u8]) -> Option<Tcp4> {
    if hdr.gso_type & !GSO_ECN != GSO_TCPV4 || hdr.gso_size == 0 {
        return None;
    }
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != IPPROTO_TCP {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl + 20 {
        return None;
    }
    let thl = usize::from(pkt[ihl + 12] >> 4) * 4;
    let hlen = ihl + thl;
    if thl < 20 || pkt.len() < hlen {
        return None;
    }
    Some(Tcp4 {
        ihl,
        hlen,
        mss: usize::from(hdr.gso_size),
        payload: pkt.len() - hlen,
    })
}

/// What a frame (header `hdr`, IP packet `pkt`) is on the wire: a TCP/IPv4 GSO super-packet is
/// `ceil(payload / gso_size)` segments, each with its own copy of the headers; anything else is
/// one packet.
pub fn wire_of(hdr: &VnetHdr, pkt: &[u8]) -> Wire {
    match tcp4_gso(hdr, pkt) {
        Some(t) => {
            let n = t.segments();
            Wire {
                segments: n as u32,
                bytes: (t.payload + n * t.hlen) as u64,
            }
        }
        None => Wire::single(pkt.len()),
    }
}

/// One frame cut from a super-packet by [`split`]: its bytes (virtio header included) and what
/// it is on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub frame: Vec<u8>,
    pub wire: Wire,
}

/// Cuts the TCP/IPv4 GSO frame (`hdr`, `pkt`) into frames of at most `per_chunk` segments, in
/// order. Single-segment frames are plain packets with complete IP and TCP checksums (no GSO,
/// no partial checksum): exactly what the wire would carry. Frames of several segments stay GSO
/// frames (same MSS) with the TCP checksum left partial (the pseudo-header sum for their own
/// length, as the kernel leaves it for TSO). `None` when the frame is not a TCP/IPv4 GSO frame
/// of more than one segment (nothing to split).
pub fn split(hdr: &VnetHdr, pkt: &[u8], per_chunk: usize) -> Option<Vec<Chunk>> {
    let t = tcp4_gso(hdr, pkt)?;
    let total = t.segments();
    if total < 2 {
        return None;
    }
    let per_chunk = per_chunk.max(1);
    let headers = &pkt[..t.hlen];
    let payload = &pkt[t.hlen..];
    let ip_id = u16::from_be_bytes([pkt[4], pkt[5]]);
    let seq = u32::from_be_bytes([
        pkt[t.ihl + 4],
        pkt[t.ihl + 5],
        pkt[t.ihl + 6],
        pkt[t.ihl + 7],
    ]);
    let flags = pkt[t.ihl + 13];
    let pseudo_base = sum16(&pkt[12..20], u64::from(IPPROTO_TCP));
    let mut out = Vec::with_capacity(total.div_ceil(per_chunk));
    let mut first = 0usize;
    while first < total {
        let n = per_chunk.min(total - first);
        let start = first * t.mss;
        let end = (start + n * t.mss).min(payload.len());
        let body = &payload[start..end];
        let ip_len = t.hlen + body.len();
        let mut frame = Vec::with_capacity(VNET_HDR_LEN + ip_len);
        let gso = n > 1;
        let vh = if gso {
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: hdr.gso_type,
                hdr_len: t.hlen as u16,
                gso_size: t.mss as u16,
                csum_start: t.ihl as u16,
                csum_offset: TCP_CSUM_OFFSET,
            }
        } else {
            VnetHdr::default()
        };
        frame.extend_from_slice(&vh.to_bytes());
        frame.extend_from_slice(headers);
        frame.extend_from_slice(body);
        let ip = &mut frame[VNET_HDR_LEN..];
        // IPv4: total length, id + index of the first segment, header checksum.
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&ip_id.wrapping_add(first as u16).to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let ip_csum = !fold(sum16(&ip[..t.ihl], 0));
        ip[10..12].copy_from_slice(&ip_csum.to_be_bytes());
        // TCP: sequence, flags, checksum.
        let th = t.ihl;
        let s = seq.wrapping_add(start as u32);
        ip[th + 4..th + 8].copy_from_slice(&s.to_be_bytes());
        let mut f = flags;
        if first > 0 {
            f &= !TCP_CWR;
        }
        if first + n < total {
            f &= !(TCP_FIN | TCP_PSH);
        }
        ip[th + 13] = f;
        let tcp_len = (ip_len - t.ihl) as u64;
        let pseudo = pseudo_base + tcp_len;
        ip[th + 16..th + 18].copy_from_slice(&[0, 0]);
        let csum = if gso {
            fold(pseudo)
        } else {
            !fold(sum16(&ip[th..], pseudo))
        };
        ip[th + 16..th + 18].copy_from_slice(&csum.to_be_bytes());
        let wire_bytes = (body.len() + n * t.hlen) as u64;
        out.push(Chunk {
            frame,
            wire: Wire {
                segments: n as u32,
                bytes: wire_bytes,
            },
        });
        first += n;
    }
    Some(out)
}

/// One's-complement sum of `data` as big-endian 16-bit words (odd tail padded with zero), added
/// to `init`, not yet folded.
pub fn sum16(data: &[u8], init: u64) -> u64 {
    let mut sum = init;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = rest.chunks_exact(2);
    for w in &mut tail {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = tail.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

/// Folds a sum from [`sum16`] to 16 bits (not complemented).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 super-packet as the kernel hands it over: 3.5 segments of MSS 100, with
    /// timestamps, PSH|ACK, CWR, partial checksum.
    fn super_packet(payload: usize) -> (VnetHdr, Vec<u8>) {
        let mut p = vec![0u8; 20 + 32];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((52 + payload) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xfffe_u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 18, 0, 1]);
        p[16..20].copy_from_slice(&[198, 19, 0, 1]);
        let t = 20;
        p[t..t + 2].copy_from_slice(&40000u16.to_be_bytes());
        p[t + 2..t + 4].copy_from_slice(&5201u16.to_be_bytes());
        p[t + 4..t + 8].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        p[t + 8..t + 12].copy_from_slice(&77u32.to_be_bytes());
        p[t + 12] = 8 << 4;
        p[t + 13] = TCP_PSH | 0x10 | TCP_CWR;
        p[t + 14..t + 16].copy_from_slice(&512u16.to_be_bytes());
        // NOP NOP timestamps.
        p[t + 20..t + 24].copy_from_slice(&[1, 1, 8, 10]);
        p.extend((0..payload).map(|i| (i * 7 + 3) as u8));
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 100,
            csum_start: 20,
            csum_offset: 16,
        };
        (hdr, p)
    }

    #[test]
    fn header_round_trips() {
        let (h, _) = super_packet(350);
        assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
        assert_eq!(VnetHdr::parse(&[0u8; 9]), None);
    }

    #[test]
    fn wire_counts_segments_and_their_headers() {
        let (h, p) = super_packet(350);
        assert_eq!(
            wire_of(&h, &p),
            Wire {
                segments: 4,
                bytes: 350 + 4 * 52
            }
        );
        // Not GSO: one packet, whatever its size.
        assert_eq!(wire_of(&VnetHdr::default(), &p), Wire::single(p.len()));
        // Exactly two full segments.
        let (h, p) = super_packet(200);
        assert_eq!(wire_of(&h, &p).segments, 2);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(
            fold(sum16(&[0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0xf7], 0)),
            0xddf2
        );
        // Odd length: the last byte is the high half of a word.
        assert_eq!(fold(sum16(&[0x12], 0)), 0x1200);
    }

    #[test]
    fn nothing_to_split_in_a_plain_or_single_segment_packet() {
        let (h, p) = super_packet(100);
        assert!(split(&h, &p, 1).is_none());
        let (_, p) = super_packet(350);
        assert!(split(&VnetHdr::default(), &p, 1).is_none());
    }
}
