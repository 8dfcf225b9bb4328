//! Link, IP and TCP header decoding. Lax on purpose: a snap length that cuts the payload is
//! normal, so the payload length comes from the IP header, and only the headers must be present.
//!
//! Link types: Ethernet, Linux SLL (113) and SLL2 (276, its 20-byte header decoded here), raw
//! IPv4/IPv6 (12, 14, 101, 228, 229), BSD loopback (0, null, host byte order) and OpenBSD loop
//! (108), PPP (9, 50, 51 over Ethernet), Cisco HDLC (104) and IP over InfiniBand (242).
//! Encapsulations unwrapped to the inner TCP: 802.1Q/802.1ad VLAN (QinQ), MPLS, PPPoE, GRE
//! (with ERSPAN types I-III and transparent Ethernet bridging), VXLAN (UDP 4789), Geneve
//! (UDP 6081), IP-in-IP and IPv6-in-IP; IPv6 extension headers (hop-by-hop, routing,
//! destination options, fragment, AH). Anything else ends in a [`Frame::Skipped`] with the
//! reason, so a capture of undecoded tunnels says so instead of "0 connections".
//!
//! Hand-rolled rather than etherparse: etherparse has no SLL2, ERSPAN, Geneve or MPLS unwrap,
//! and this walks only the few header fields the reconstruction reads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flag bits.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

/// The IP header's ECN field (RFC 3168): Congestion Experienced.
pub const ECN_CE: u8 = 3;

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
    /// The first SACK block (left, right edge): a D-SACK when it lies below the ACK or inside
    /// the second block (RFC 2883).
    pub first_sack: Option<(u32, u32)>,
    /// The second SACK block.
    pub second_sack: Option<(u32, u32)>,
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
    /// TCP flags (including ECE and CWR).
    pub flags: u8,
    /// Raw (unscaled) window field.
    pub window: u16,
    /// Payload length from the IP header (not the captured length).
    pub payload_len: u32,
    pub options: Options,
    /// The IPv4 identification field (None for IPv6): tells a duplicated frame from a resend.
    pub ip_id: Option<u16>,
    /// The IP header's two ECN bits (0 not-ECT, 1/2 ECT, 3 CE).
    pub ecn: u8,
    /// The TCP checksum as captured (part of a frame's fingerprint).
    pub checksum: u16,
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

/// What one frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A TCP segment (possibly found inside a tunnel).
    Tcp(Segment),
    /// Decoded, and not TCP (ARP, UDP, ICMP, ...).
    NotTcp,
    /// Not decoded: why (an encapsulation or link type this reader does not unwrap, headers
    /// cut short, a later IP fragment).
    Skipped(Skip),
}

/// Why a frame was not decoded down to TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    LinkType(u16),
    Ethertype(u16),
    /// An encapsulation recognised but not unwrapped (IPsec ESP, MPLS pseudowire, ...).
    Encapsulation(&'static str),
    /// A non-first IP fragment (its TCP header is in the first fragment).
    Fragment,
    /// The headers were cut short by the snap length or damage.
    Truncated,
    /// Tunnels nested deeper than this reader follows.
    TooDeep,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::LinkType(l) => write!(f, "link type {l} not decoded"),
            Skip::Ethertype(e) => write!(f, "ethertype 0x{e:04x} not decoded"),
            Skip::Encapsulation(e) => write!(f, "{e} not decoded"),
            Skip::Fragment => f.write_str("later IP fragments"),
            Skip::Truncated => f.write_str("headers cut short"),
            Skip::TooDeep => f.write_str("tunnels nested too deep"),
        }
    }
}

/// Ethertypes.
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_TEB: u16 = 0x6558;
const ETH_ERSPAN2: u16 = 0x88be;
const ETH_ERSPAN3: u16 = 0x22eb;
/// Ethertypes that are plainly not TCP carriers (ARP, RARP, LLDP, EAPOL, PPPoE discovery,
/// slow protocols, loopback test, IPX, AppleTalk...).
const ETH_NOT_TCP: &[u16] = &[
    0x0806, 0x8035, 0x88cc, 0x888e, 0x8863, 0x8809, 0x9000, 0x8137, 0x809b, 0x80f3, 0x88f7, 0x8906,
    0x8914,
];
const UDP_VXLAN: u16 = 4789;
const UDP_GENEVE: u16 = 6081;
/// Tunnels followed inside each other at most this deep.
const MAX_DEPTH: u8 = 8;

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes a frame of `linktype` down to its TCP segment.
pub fn decode(linktype: u16, data: &[u8]) -> Frame {
    link(linktype, data, 0).unwrap_or(Frame::Skipped(Skip::Truncated))
}

/// The TCP segment in a frame, or None for anything else.
pub fn tcp_segment(linktype: u16, data: &[u8]) -> Option<Segment> {
    match decode(linktype, data) {
        Frame::Tcp(s) => Some(s),
        _ => None,
    }
}

/// None: headers cut short.
fn link(linktype: u16, data: &[u8], depth: u8) -> Option<Frame> {
    match linktype {
        1 => ethernet(data, depth),
        // Linux cooked v1: protocol at 14..16, 16-byte header
        113 => by_ethertype(be16(data, 14)?, data.get(16..)?, depth),
        // Linux cooked v2: protocol at 0..2, 20-byte header
        276 => by_ethertype(be16(data, 0)?, data.get(20..)?, depth),
        // Raw IP
        12 | 14 | 101 | 228 | 229 => ip(data, depth),
        // BSD loopback: 4-byte family in host byte order of the capturing machine
        0 | 108 => {
            let b: [u8; 4] = data.get(0..4)?.try_into().ok()?;
            let le = u32::from_le_bytes(b);
            let fam = if le < 256 { le } else { u32::from_be_bytes(b) };
            match fam {
                2 | 24 | 28 | 30 => ip(data.get(4..)?, depth),
                _ => Some(Frame::NotTcp),
            }
        }
        // PPP (optional ff 03 address/control), PPP in HDLC framing
        9 | 50 => {
            let d = if data.starts_with(&[0xff, 0x03]) {
                &data[2..]
            } else {
                data
            };
            ppp(d, depth)
        }
        // PPPoE without Ethernet: the 6-byte PPPoE header, then PPP
        51 => ppp(data.get(6..)?, depth),
        // Cisco HDLC: address, control, ethertype
        104 => by_ethertype(be16(data, 2)?, data.get(4..)?, depth),
        // IP over InfiniBand (RFC 4391): ethertype, 2 reserved bytes
        242 => by_ethertype(be16(data, 0)?, data.get(4..)?, depth),
        other => Some(Frame::Skipped(Skip::LinkType(other))),
    }
}

fn ethernet(data: &[u8], depth: u8) -> Option<Frame> {
    let mut et = be16(data, 12)?;
    let mut off = 14;
    while matches!(et, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
        et = be16(data, off + 2)?;
        off += 4;
    }
    if et < 0x0600 {
        // An 802.3 length field (LLC: STP, CDP, ...): not IP.
        return Some(Frame::NotTcp);
    }
    by_ethertype(et, data.get(off..)?, depth)
}

fn by_ethertype(et: u16, rest: &[u8], depth: u8) -> Option<Frame> {
    if depth >= MAX_DEPTH {
        return Some(Frame::Skipped(Skip::TooDeep));
    }
    match et {
        ETH_IPV4 | ETH_IPV6 => ip(rest, depth),
        ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => by_ethertype(be16(rest, 2)?, rest.get(4..)?, depth),
        ETH_MPLS | ETH_MPLS_MC => mpls(rest, depth),
        ETH_PPPOE_SESSION => ppp(rest.get(6..)?, depth),
        ETH_TEB => ethernet(rest, depth + 1),
        e if ETH_NOT_TCP.contains(&e) => Some(Frame::NotTcp),
        e => Some(Frame::Skipped(Skip::Ethertype(e))),
    }
}

fn ppp(d: &[u8], depth: u8) -> Option<Frame> {
    // Protocol field: one byte when its low bit is set (compressed), else two.
    let (proto, rest) = if *d.first()? & 1 == 1 {
        (*d.first()? as u16, d.get(1..)?)
    } else {
        (be16(d, 0)?, d.get(2..)?)
    };
    match proto {
        0x21 | 0x57 => ip(rest, depth),
        0x0281 => mpls(rest, depth),
        p if p >= 0x8000 || (0xc000..=0xcfff).contains(&p) => Some(Frame::NotTcp),
        _ => Some(Frame::NotTcp),
    }
}

fn mpls(mut d: &[u8], depth: u8) -> Option<Frame> {
    // Pop labels until the bottom of stack.
    for _ in 0..16 {
        let bottom = *d.get(2)? & 1 == 1;
        d = d.get(4..)?;
        if bottom {
            return match *d.first()? >> 4 {
                4 | 6 => ip(d, depth),
                // A pseudowire control word then Ethernet (RFC 4385).
                0 => ethernet(d.get(4..)?, depth + 1),
                _ => Some(Frame::Skipped(Skip::Encapsulation("MPLS payload"))),
            };
        }
    }
    Some(Frame::Skipped(Skip::TooDeep))
}

/// GRE (RFC 2784/2890), with ERSPAN I-III inside.
fn gre(d: &[u8], depth: u8) -> Option<Frame> {
    let fl = be16(d, 0)?;
    let version = fl & 7;
    if version != 0 {
        // Version 1 is PPTP's enhanced GRE: PPP inside.
        if version == 1 {
            let mut off = 8;
            if fl & 0x1000 != 0 {
                off += 4;
            }
            if fl & 0x0080 != 0 {
                off += 4;
            }
            return if d.get(off..)?.is_empty() {
                Some(Frame::NotTcp)
            } else {
                ppp(d.get(off..)?, depth)
            };
        }
        return Some(Frame::Skipped(Skip::Encapsulation("GRE version")));
    }
    let proto = be16(d, 2)?;
    let seq_present = fl & 0x1000 != 0;
    let mut off = 4;
    if fl & 0x8000 != 0 {
        off += 4; // checksum + reserved
    }
    if fl & 0x2000 != 0 {
        off += 4; // key
    }
    if seq_present {
        off += 4;
    }
    let rest = d.get(off..)?;
    match proto {
        // ERSPAN type I has no sequence number and no ERSPAN header.
        ETH_ERSPAN2 if !seq_present => ethernet(rest, depth + 1),
        ETH_ERSPAN2 => ethernet(rest.get(8..)?, depth + 1),
        ETH_ERSPAN3 => {
            // 12-byte header; an 8-byte platform subheader when the O bit is set.
            let o = *rest.get(11)? & 1 == 1;
            ethernet(rest.get(if o { 20 } else { 12 }..)?, depth + 1)
        }
        p => by_ethertype(p, rest, depth + 1),
    }
}

/// An IPv4 or IPv6 packet.
fn ip(pkt: &[u8], depth: u8) -> Option<Frame> {
    let ipb = pkt;
    if depth >= MAX_DEPTH {
        return Some(Frame::Skipped(Skip::TooDeep));
    }
    let version = ipb.first()? >> 4;
    let (src, dst, proto, l4, l4_len, ip_id, ecn) = match version {
        4 => {
            let ihl = ((ipb[0] & 0x0f) as usize) * 4;
            if ihl < 20 {
                return None;
            }
            let total = be16(ipb, 2)? as usize;
            let proto = *ipb.get(9)?;
            // Fragments other than the first carry no transport header.
            if be16(ipb, 6)? & 0x1fff != 0 {
                return Some(Frame::Skipped(Skip::Fragment));
            }
            let src = IpAddr::V4(Ipv4Addr::from(be32(ipb, 12)?));
            let dst = IpAddr::V4(Ipv4Addr::from(be32(ipb, 16)?));
            // TSO captures (total length 0) fall back to what was captured.
            let len = if total == 0 {
                ipb.len().checked_sub(ihl)?
            } else {
                total.checked_sub(ihl)?
            };
            let ecn = ipb.get(1)? & 3;
            (
                src,
                dst,
                proto,
                ipb.get(ihl..)?,
                len,
                Some(be16(ipb, 4)?),
                ecn,
            )
        }
        6 => {
            let plen = be16(ipb, 4)? as usize;
            let ecn = ((be16(ipb, 0)? >> 4) & 3) as u8;
            let src: [u8; 16] = ipb.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ipb.get(24..40)?.try_into().ok()?;
            let mut next = *ipb.get(6)?;
            let mut off = 40;
            let mut ext_len = 0usize;
            let mut jumbo = false;
            for _ in 0..16 {
                let len = match next {
                    // hop-by-hop, routing, destination options, mobility, HIP, shim6
                    0 | 43 | 60 | 135 | 139 | 140 => {
                        if next == 0 {
                            jumbo = plen == 0;
                        }
                        (*ipb.get(off + 1)? as usize + 1) * 8
                    }
                    44 => {
                        if be16(ipb, off + 2)? & 0xfff8 != 0 {
                            return Some(Frame::Skipped(Skip::Fragment));
                        }
                        8
                    }
                    // AH: length in 4-byte units minus 2
                    51 => (*ipb.get(off + 1)? as usize + 2) * 4,
                    _ => break,
                };
                next = *ipb.get(off)?;
                off += len;
                ext_len += len;
            }
            let len = if plen == 0 || jumbo {
                ipb.len().checked_sub(off)?
            } else {
                plen.checked_sub(ext_len)?
            };
            let (s, d) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            (
                IpAddr::V6(s),
                IpAddr::V6(d),
                next,
                ipb.get(off..)?,
                len,
                None,
                ecn,
            )
        }
        _ => return Some(Frame::Skipped(Skip::Encapsulation("non-IP payload"))),
    };
    match proto {
        6 => tcp(l4, l4_len, src, dst, ip_id, ecn),
        // IPv4 AH inside IPv4: skip its header
        51 if version == 4 => {
            let n = *l4.first()?;
            let len = (*l4.get(1)? as usize + 2) * 4;
            if n == 6 {
                tcp(
                    l4.get(len..)?,
                    l4_len.checked_sub(len)?,
                    src,
                    dst,
                    ip_id,
                    ecn,
                )
            } else {
                Some(Frame::Skipped(Skip::Encapsulation("IPsec AH payload")))
            }
        }
        4 | 41 => ip(l4, depth + 1),
        47 => gre(l4, depth),
        50 => Some(Frame::Skipped(Skip::Encapsulation("IPsec ESP (encrypted)"))),
        17 => {
            let dport = be16(l4, 2)?;
            let body = l4.get(8..)?;
            match dport {
                UDP_VXLAN => ethernet(body.get(8..)?, depth + 1),
                UDP_GENEVE => {
                    let opt_len = ((*body.first()? & 0x3f) as usize) * 4;
                    let proto = be16(body, 2)?;
                    by_ethertype(proto, body.get(8 + opt_len..)?, depth + 1)
                }
                _ => Some(Frame::NotTcp),
            }
        }
        _ => Some(Frame::NotTcp),
    }
}

fn tcp(
    tcp: &[u8],
    l4_len: usize,
    src: IpAddr,
    dst: IpAddr,
    ip_id: Option<u16>,
    ecn: u8,
) -> Option<Frame> {
    let doff = ((*tcp.get(12)? >> 4) as usize) * 4;
    if doff < 20 {
        return None;
    }
    let options = parse_options(tcp.get(20..doff.min(tcp.len())).unwrap_or(&[]));
    Some(Frame::Tcp(Segment {
        src,
        dst,
        sport: be16(tcp, 0)?,
        dport: be16(tcp, 2)?,
        seq: be32(tcp, 4)?,
        ack: be32(tcp, 8)?,
        flags: *tcp.get(13)?,
        window: be16(tcp, 14)?,
        payload_len: l4_len.saturating_sub(doff) as u32,
        options,
        ip_id,
        ecn,
        checksum: be16(tcp, 16)?,
    }))
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
            (5, _) => {
                out.sack_blocks = ((len - 2) / 8) as u8;
                let block = |i: usize| Some((be32(body, i * 8)?, be32(body, i * 8 + 4)?));
                out.first_sack = block(0);
                out.second_sack = block(1);
            }
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

    fn eth(et: u16, payload: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 12];
        e.extend_from_slice(&et.to_be_bytes());
        e.extend_from_slice(payload);
        e
    }

    /// An outer IPv4 header (protocol `proto`) around `inner`.
    fn outer_ipv4(proto: u8, inner: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0, 192, 168, 0, 1, 192, 168, 0, 2,
        ];
        p[2..4].copy_from_slice(&(20 + inner.len() as u16).to_be_bytes());
        p.extend_from_slice(inner);
        p
    }

    fn udp(dport: u16, inner: &[u8]) -> Vec<u8> {
        let mut u = vec![0x30, 0x39];
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&(8 + inner.len() as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(inner);
        u
    }

    #[test]
    fn tunnels_unwrap_to_the_inner_segment() {
        let ip = ipv4_tcp(10, &[]);
        let want = Frame::Tcp(tcp_segment(101, &ip).unwrap());
        let inner_eth = eth(ETH_IPV4, &ip);
        // QinQ
        let mut q = vec![0u8; 12];
        q.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        q.extend_from_slice(&ip);
        assert_eq!(decode(1, &q), want);
        // MPLS, two labels
        let mut m = vec![0, 0x10, 0x00, 0x40, 0, 0x20, 0x01, 0x40];
        m.extend_from_slice(&ip);
        assert_eq!(decode(1, &eth(ETH_MPLS, &m)), want);
        // PPPoE session
        let mut pp = vec![0x11, 0, 0, 1, 0, 0, 0x00, 0x21];
        pp.extend_from_slice(&ip);
        assert_eq!(decode(1, &eth(ETH_PPPOE_SESSION, &pp)), want);
        // GRE with a key, IPv4 inside; GRE transparent Ethernet bridging
        let mut g = vec![0x20, 0, 0x08, 0x00, 0, 0, 0, 7];
        g.extend_from_slice(&ip);
        assert_eq!(decode(101, &outer_ipv4(47, &g)), want);
        let mut g = vec![0, 0, 0x65, 0x58];
        g.extend_from_slice(&inner_eth);
        assert_eq!(decode(101, &outer_ipv4(47, &g)), want);
        // ERSPAN type II (GRE with sequence number, 8-byte ERSPAN header)
        let mut g = vec![0x10, 0, 0x88, 0xbe, 0, 0, 0, 1];
        g.extend_from_slice(&[0x10, 0, 0, 1, 0, 0, 0, 0]);
        g.extend_from_slice(&inner_eth);
        assert_eq!(decode(1, &eth(ETH_IPV4, &outer_ipv4(47, &g))), want);
        // VXLAN and Geneve
        let mut v = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        v.extend_from_slice(&inner_eth);
        assert_eq!(decode(101, &outer_ipv4(17, &udp(4789, &v))), want);
        let mut gv = vec![0, 0, 0x65, 0x58, 0, 0, 42, 0];
        gv.extend_from_slice(&inner_eth);
        assert_eq!(decode(101, &outer_ipv4(17, &udp(6081, &gv))), want);
        // IP in IP
        assert_eq!(decode(101, &outer_ipv4(4, &ip)), want);
        // PPP link type with address/control
        let mut p = vec![0xff, 0x03, 0x00, 0x21];
        p.extend_from_slice(&ip);
        assert_eq!(decode(9, &p), want);
        // IPoIB
        let mut ib = vec![0x08, 0x00, 0, 0];
        ib.extend_from_slice(&ip);
        assert_eq!(decode(242, &ib), want);
    }

    #[test]
    fn what_is_not_decoded_says_why() {
        let ip = ipv4_tcp(10, &[]);
        assert_eq!(decode(1, &eth(0x0806, &[0; 28])), Frame::NotTcp);
        assert_eq!(
            decode(1, &eth(0x88b5, &ip)),
            Frame::Skipped(Skip::Ethertype(0x88b5))
        );
        assert_eq!(decode(147, &ip), Frame::Skipped(Skip::LinkType(147)));
        assert_eq!(
            decode(101, &outer_ipv4(50, &[0; 40])),
            Frame::Skipped(Skip::Encapsulation("IPsec ESP (encrypted)"))
        );
        assert_eq!(
            decode(101, &outer_ipv4(17, &udp(53, &[0; 12]))),
            Frame::NotTcp
        );
        assert_eq!(decode(101, &ip[..30]), Frame::Skipped(Skip::Truncated));
        // Nested GRE beyond the depth limit.
        let mut pkt = ip.clone();
        for _ in 0..10 {
            let mut g = vec![0, 0, 0x08, 0x00];
            g.extend_from_slice(&pkt);
            pkt = outer_ipv4(47, &g);
        }
        assert_eq!(decode(101, &pkt), Frame::Skipped(Skip::TooDeep));
    }

    #[test]
    fn ipv6_extension_headers_and_ecn() {
        let v4 = ipv4_tcp(10, &[]);
        let tcp_part = &v4[20..];
        let mut p = vec![0x60, 0x30, 0, 0]; // traffic class 0x03: CE
        let ext = [6u8, 0, 0, 0, 0, 0, 0, 0]; // destination options, next = TCP
        p.extend_from_slice(&((ext.len() + tcp_part.len() + 10) as u16).to_be_bytes());
        p.extend_from_slice(&[60, 64]);
        p.extend_from_slice(&[0u8; 32]);
        p.extend_from_slice(&ext);
        p.extend_from_slice(tcp_part);
        let s = tcp_segment(101, &p).unwrap();
        assert_eq!(s.payload_len, 10);
        assert_eq!(s.ecn, ECN_CE);
        assert_eq!(s.ip_id, None);
        assert_eq!(s.sport, 1234);
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
