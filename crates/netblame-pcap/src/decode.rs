//! Link, IP and TCP header decoding. Lax on purpose: a snap length that cuts the payload is
//! normal, so the payload length comes from the IP header, and only the headers must be present.
//!
//! Link types: Ethernet (with 802.1Q/802.1ad VLAN tags), Linux SLL (113) and SLL2 (276, its
//! 20-byte header decoded here), raw IPv4/IPv6 (12, 14, 101, 228, 229), BSD loopback (0, null,
//! host byte order) and OpenBSD loop (108, network byte order).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flag bits.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Options of interest in a TCP header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr)
    pub timestamp: Option<(u32, u32)>,
    /// Number of SACK blocks carried.
    pub sack_blocks: u8,
}

/// One TCP segment's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Raw (unscaled) window field.
    pub window: u16,
    /// Payload length from the IP header (not the captured length).
    pub payload_len: u32,
    pub options: Options,
}

impl Segment {
    pub fn syn(&self) -> bool {
        self.flags & flags::SYN != 0
    }
    pub fn ack_flag(&self) -> bool {
        self.flags & flags::ACK != 0
    }
    pub fn fin(&self) -> bool {
        self.flags & flags::FIN != 0
    }
    pub fn rst(&self) -> bool {
        self.flags & flags::RST != 0
    }
}

/// Ethertypes.
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// The IP packet inside a frame of `linktype`, or None (not IP, or a link type we do not know).
pub fn ip_payload(linktype: u16, data: &[u8]) -> Option<&[u8]> {
    match linktype {
        // Ethernet
        1 => {
            let mut et = be16(data, 12)?;
            let mut off = 14;
            while matches!(et, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
                et = be16(data, off + 2)?;
                off += 4;
            }
            by_ethertype(et, data.get(off..)?)
        }
        // Linux cooked v1: protocol at 14..16, 16-byte header
        113 => by_ethertype(be16(data, 14)?, data.get(16..)?),
        // Linux cooked v2: protocol at 0..2, 20-byte header
        276 => by_ethertype(be16(data, 0)?, data.get(20..)?),
        // Raw IP
        12 | 14 | 101 => Some(data),
        228 => Some(data),
        229 => Some(data),
        // BSD loopback: 4-byte family in host byte order of the capturing machine
        0 | 108 => {
            let b = data.get(0..4)?;
            let le = u32::from_le_bytes(b.try_into().ok()?);
            let be = u32::from_be_bytes(b.try_into().ok()?);
            let fam = if le < 256 { le } else { be };
            match fam {
                2 | 24 | 28 | 30 => Some(data.get(4..)?),
                _ => None,
            }
        }
        _ => None,
    }
}

fn by_ethertype(et: u16, rest: &[u8]) -> Option<&[u8]> {
    match et {
        ETH_IPV4 | ETH_IPV6 => Some(rest),
        _ => None,
    }
}

/// Decodes the TCP segment in a frame. None for anything else (or headers cut short).
pub fn tcp_segment(linktype: u16, data: &[u8]) -> Option<Segment> {
    let ip = ip_payload(linktype, data)?;
    let version = ip.first()? >> 4;
    let (src, dst, tcp, ip_payload_len) = match version {
        4 => {
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            if ihl < 20 {
                return None;
            }
            let total = be16(ip, 2)? as usize;
            if ip.get(9)? != &6 {
                return None;
            }
            // Fragments other than the first carry no TCP header.
            let frag = be16(ip, 6)?;
            if frag & 0x1fff != 0 {
                return None;
            }
            let src = Ipv4Addr::from(be32(ip, 12)?);
            let dst = Ipv4Addr::from(be32(ip, 16)?);
            // TSO captures (total length 0) fall back to what was captured.
            let payload_len = if total == 0 {
                ip.len().checked_sub(ihl)?
            } else {
                total.checked_sub(ihl)?
            };
            (
                IpAddr::V4(src),
                IpAddr::V4(dst),
                ip.get(ihl..)?,
                payload_len,
            )
        }
        6 => {
            let plen = be16(ip, 4)? as usize;
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let mut next = *ip.get(6)?;
            let mut off = 40;
            let mut ext_len = 0usize;
            loop {
                match next {
                    6 => break,
                    // hop-by-hop, routing, destination options
                    0 | 43 | 60 => {
                        let n = *ip.get(off)?;
                        let len = (*ip.get(off + 1)? as usize + 1) * 8;
                        next = n;
                        off += len;
                        ext_len += len;
                    }
                    // fragment
                    44 => {
                        let n = *ip.get(off)?;
                        let fo = be16(ip, off + 2)?;
                        if fo & 0xfff8 != 0 {
                            return None;
                        }
                        next = n;
                        off += 8;
                        ext_len += 8;
                    }
                    _ => return None,
                }
            }
            let payload_len = if plen == 0 {
                ip.len().checked_sub(off)?
            } else {
                plen.checked_sub(ext_len)?
            };
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                ip.get(off..)?,
                payload_len,
            )
        }
        _ => return None,
    };
    let doff = ((*tcp.get(12)? >> 4) as usize) * 4;
    if doff < 20 {
        return None;
    }
    let options = parse_options(tcp.get(20..doff.min(tcp.len())).unwrap_or(&[]));
    Some(Segment {
        src,
        dst,
        sport: be16(tcp, 0)?,
        dport: be16(tcp, 2)?,
        seq: be32(tcp, 4)?,
        ack: be32(tcp, 8)?,
        flags: *tcp.get(13)?,
        window: be16(tcp, 14)?,
        payload_len: ip_payload_len.saturating_sub(doff) as u32,
        options,
    })
}

fn parse_options(mut o: &[u8]) -> Options {
    let mut out = Options::default();
    while let Some(&kind) = o.first() {
        match kind {
            0 => break,
            1 => {
                o = &o[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = o.get(1) else { break };
        let len = len as usize;
        if len < 2 || len > o.len() {
            break;
        }
        let body = &o[2..len];
        match (kind, len) {
            (2, 4) => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            (3, 3) => out.wscale = Some(body[0].min(14)),
            (4, 2) => out.sack_permitted = true,
            (5, _) => out.sack_blocks = ((len - 2) / 8) as u8,
            (8, 10) => {
                out.timestamp = Some((
                    u32::from_be_bytes(body[0..4].try_into().unwrap_or_default()),
                    u32::from_be_bytes(body[4..8].try_into().unwrap_or_default()),
                ))
            }
            _ => {}
        }
        o = &o[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(payload_len: u16, opts: &[u8]) -> Vec<u8> {
        let doff = 20 + opts.len();
        let total = 20 + doff as u16 + payload_len;
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&1234u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = ((doff / 4) as u8) << 4;
        t[13] = flags::SYN;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        t.extend_from_slice(opts);
        p.extend(t);
        p
    }

    #[test]
    fn payload_length_comes_from_the_ip_header_even_when_truncated() {
        let p = ipv4_tcp(1448, &[2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0]);
        let s = tcp_segment(101, &p).unwrap();
        assert_eq!(s.payload_len, 1448);
        assert_eq!(s.options.mss, Some(1460));
        assert_eq!(s.options.wscale, Some(7));
        assert!(s.options.sack_permitted);
        assert_eq!(s.sport, 1234);
    }

    #[test]
    fn link_types_unwrap_to_the_same_segment() {
        let ip = ipv4_tcp(10, &[]);
        let raw = tcp_segment(101, &ip).unwrap();
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_eq!(tcp_segment(1, &eth), Some(raw));
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(tcp_segment(276, &sll2), Some(raw));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert_eq!(tcp_segment(113, &sll), Some(raw));
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(tcp_segment(0, &null), Some(raw));
    }

    #[test]
    fn garbage_does_not_panic() {
        for len in 0..80 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            for lt in [0u16, 1, 12, 101, 108, 113, 228, 229, 276] {
                let _ = tcp_segment(lt, &junk);
            }
        }
    }
}
