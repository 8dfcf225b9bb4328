//! Splitting TCP/IPv4 GSO super-packets (netblame_lab::vnet), checked byte for byte against
//! etherparse (an independent TCP/IP implementation) on a constructed super-packet, and on real
//! super-packets captured from a kernel whose peer kernel then accepts the segments.

use etherparse::{IpNumber, Ipv4Header, Ipv4Slice, TcpHeader, TcpOptionElement, TcpSlice};
use netblame_lab::netns;
use netblame_lab::tun::{self, Tun, TunConfig, TunMode};
use netblame_lab::vnet::{
    self, fold, sum16, Chunk, VnetHdr, Wire, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, VNET_HDR_LEN,
};
use netblame_lab::workload;
use netblame_testkit::{require_root, Netns};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MSS: usize = 1448;

/// A TCP/IPv4 super-packet of `payload_len` bytes as a sending kernel hands it to a TUN with
/// TSO: one set of headers (NOP NOP timestamps), the whole length in the IP header.
fn super_packet(payload_len: usize, id: u16, seq: u32, fin: bool) -> (VnetHdr, Vec<u8>) {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 31 + 7) as u8).collect();
    let mut tcp = TcpHeader::new(40_000, 5201, seq, 512);
    tcp.acknowledgment_number = 0x0102_0304;
    tcp.ack = true;
    tcp.psh = true;
    tcp.cwr = true;
    tcp.fin = fin;
    tcp.set_options(&[
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(0xdead_beef, 0x0bad_cafe),
    ])
    .unwrap();
    let mut ip = Ipv4Header::new(
        (tcp.header_len() + payload_len) as u16,
        64,
        IpNumber::TCP,
        [198, 18, 0, 1],
        [198, 19, 0, 1],
    )
    .unwrap();
    ip.identification = id;
    ip.dont_fragment = true;
    ip.header_checksum = ip.calc_header_checksum();
    tcp.checksum = tcp.calc_checksum_ipv4(&ip, &payload).unwrap();
    let mut pkt = ip.to_bytes().to_vec();
    pkt.extend_from_slice(&tcp.to_bytes());
    pkt.extend_from_slice(&payload);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: (20 + tcp.header_len()) as u16,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr, pkt)
}

/// Checks the chunks `split` cut from super-packet (`hdr`, `pkt`) with `per` segments each:
/// every field a segmenting kernel sets, and every checksum, recomputed by etherparse.
fn check_chunks(hdr: &VnetHdr, pkt: &[u8], per: usize, chunks: &[Chunk]) {
    let orig = Ipv4Slice::from_slice(pkt).unwrap();
    let oip = orig.header().to_header();
    let otcp = TcpSlice::from_slice(orig.payload().payload).unwrap();
    let mss = usize::from(hdr.gso_size);
    let total = otcp.payload().len().div_ceil(mss);
    assert_eq!(chunks.len(), total.div_ceil(per));
    let mut joined = Vec::new();
    let mut first_seg = 0usize;
    for (i, ch) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let vh = VnetHdr::parse(&ch.frame).unwrap();
        let ipb = &ch.frame[VNET_HDR_LEN..];
        let ip = Ipv4Slice::from_slice(ipb).unwrap();
        let h = ip.header().to_header();
        let tcp = TcpSlice::from_slice(ip.payload().payload).unwrap();
        let segs = tcp.payload().len().div_ceil(mss);
        assert_eq!(ch.wire.segments as usize, segs);
        assert_eq!(
            ch.wire.bytes as usize,
            tcp.payload().len() + segs * (oip.header_len() + otcp.header_len())
        );
        // IPv4: total length, id of the chunk's first segment, valid header checksum, rest
        // copied.
        assert_eq!(usize::from(h.total_len), ipb.len());
        assert_eq!(
            h.identification,
            oip.identification.wrapping_add(first_seg as u16)
        );
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(
            (h.dont_fragment, h.time_to_live, h.source, h.destination),
            (
                oip.dont_fragment,
                oip.time_to_live,
                oip.source,
                oip.destination
            )
        );
        // TCP: sequence of its first byte, flags, options and ack copied.
        assert_eq!(
            tcp.sequence_number(),
            otcp.sequence_number()
                .wrapping_add((first_seg * mss) as u32)
        );
        assert_eq!(tcp.acknowledgment_number(), otcp.acknowledgment_number());
        assert_eq!(tcp.options(), otcp.options());
        assert_eq!(tcp.window_size(), otcp.window_size());
        assert_eq!(tcp.cwr(), otcp.cwr() && i == 0, "CWR on the first only");
        assert_eq!(tcp.fin(), otcp.fin() && last, "FIN on the last only");
        assert_eq!(tcp.psh(), otcp.psh() && last, "PSH on the last only");
        assert!(tcp.ack());
        let full = tcp.calc_checksum_ipv4(h.source, h.destination).unwrap();
        if segs == 1 {
            // A wire segment: no GSO, complete checksum.
            assert_eq!(vh, VnetHdr::default());
            assert_eq!(tcp.checksum(), full, "TCP checksum of segment {i}");
        } else {
            // A GSO chunk: partial checksum that the device (or nobody, for local delivery)
            // completes; completing it gives the full one.
            assert_eq!(vh.gso_type, hdr.gso_type);
            assert_eq!(usize::from(vh.gso_size), mss);
            assert_eq!(vh.flags, F_NEEDS_CSUM);
            assert_eq!(usize::from(vh.csum_start), oip.header_len());
            assert_eq!(vh.csum_offset, 16);
            assert_eq!(usize::from(vh.hdr_len), oip.header_len() + tcp.header_len());
            let completed = !fold(sum16(ip.payload().payload, 0));
            assert_eq!(completed, full, "completed partial checksum of chunk {i}");
        }
        joined.extend_from_slice(tcp.payload());
        first_seg += segs;
    }
    assert_eq!(joined, otcp.payload(), "payload reassembles exactly");
}

#[test]
fn a_super_packet_splits_into_wire_segments() {
    // 3.5 segments; IP id and TCP sequence both wrap inside the packet.
    let (hdr, pkt) = super_packet(3 * MSS + 500, 0xfffe, 0xffff_f000, true);
    assert_eq!(
        vnet::wire_of(&hdr, &pkt),
        Wire {
            segments: 4,
            bytes: (3 * MSS + 500 + 4 * 52) as u64
        }
    );
    let chunks = vnet::split(&hdr, &pkt, 1).unwrap();
    assert_eq!(chunks.len(), 4);
    check_chunks(&hdr, &pkt, 1, &chunks);
}

#[test]
fn a_super_packet_cuts_into_gso_chunks_and_those_into_the_same_segments() {
    let (mut hdr, pkt) = super_packet(7 * MSS + 1, 0x1234, 1_000_000, false);
    hdr.gso_type |= GSO_ECN;
    for per in [2, 3, 7] {
        let chunks = vnet::split(&hdr, &pkt, per).unwrap();
        check_chunks(&hdr, &pkt, per, &chunks);
        // Each chunk is itself a valid super-packet: cutting it further gives exactly the
        // segments a direct split gives.
        let direct = vnet::split(&hdr, &pkt, 1).unwrap();
        let mut again = Vec::new();
        for ch in &chunks {
            let h = VnetHdr::parse(&ch.frame).unwrap();
            match vnet::split(&h, &ch.frame[VNET_HDR_LEN..], 1) {
                Some(segs) => again.extend(segs),
                None => again.push(ch.clone()),
            }
        }
        assert_eq!(again, direct, "per {per}");
    }
}

#[test]
fn only_tcp_ipv4_super_packets_are_split() {
    let (hdr, pkt) = super_packet(3 * MSS, 1, 1, false);
    // Exactly one segment's worth: nothing to split.
    let (h1, p1) = super_packet(MSS, 1, 1, false);
    assert!(vnet::split(&h1, &p1, 1).is_none());
    assert_eq!(vnet::wire_of(&h1, &p1).segments, 1);
    // No GSO in the header: a plain packet, whatever its length.
    assert!(vnet::split(&VnetHdr::default(), &pkt, 1).is_none());
    // Not TCP: the header lies, the packet decides.
    let mut udp = pkt.clone();
    udp[9] = 17;
    assert!(vnet::split(&hdr, &udp, 1).is_none());
    assert_eq!(vnet::wire_of(&hdr, &udp), Wire::single(udp.len()));
    // Truncated headers.
    assert!(vnet::split(&hdr, &pkt[..30], 1).is_none());
}

/// Super-packets a forwarder kept: their virtio header and IP packet.
type Captured = Arc<Mutex<Vec<(VnetHdr, Vec<u8>)>>>;

/// Forwards frames between two offloaded TUN devices, cutting every super-packet from `a` into
/// wire segments (and keeping the first few as captured) until `stop`.
fn forward(
    from: Arc<Tun>,
    to: Arc<Tun>,
    split: bool,
    captured: Captured,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536 + VNET_HDR_LEN];
        while !stop.load(Ordering::Relaxed) {
            let Some(n) = from.recv(&mut buf).unwrap() else {
                from.wait_readable(20);
                continue;
            };
            let hdr = VnetHdr::parse(&buf[..n]).unwrap();
            let pkt = &buf[VNET_HDR_LEN..n];
            match vnet::split(&hdr, pkt, 1).filter(|_| split) {
                Some(segs) => {
                    let mut cap = captured.lock().unwrap();
                    if cap.len() < 32 {
                        cap.push((hdr, pkt.to_vec()));
                    }
                    drop(cap);
                    for s in segs {
                        to.send(&s.frame).unwrap();
                    }
                }
                None => to.send(&buf[..n]).unwrap(),
            }
        }
    })
}

#[test]
fn real_super_packets_split_into_segments_the_peer_kernel_accepts() {
    if !require_root("real_super_packets_split_into_segments_the_peer_kernel_accepts") {
        return;
    }
    let (na, nb) = (Netns::new("nbva"), Netns::new("nbvb"));
    let (addr_a, addr_b) = (Ipv4Addr::new(198, 18, 77, 1), Ipv4Addr::new(198, 18, 77, 2));
    let cfg = |local, peer| TunConfig {
        name: "nbsplit0".to_string(),
        local,
        peer,
        mtu: 1500,
        txqueuelen: 1000,
        offload: true,
    };
    let ta = Arc::new(tun::open_in(na.name(), &cfg(addr_a, addr_b)).unwrap());
    let tb = Arc::new(tun::open_in(nb.name(), &cfg(addr_b, addr_a)).unwrap());
    assert_eq!((ta.mode, tb.mode), (TunMode::Offload, TunMode::Offload));
    let captured: Captured = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let fwd = [
        forward(ta.clone(), tb.clone(), true, captured.clone(), stop.clone()),
        forward(
            tb.clone(),
            ta.clone(),
            false,
            captured.clone(),
            stop.clone(),
        ),
    ];
    let before = workload::counters(nb.name()).unwrap();
    let listener = netns::run_in(nb.name(), move || {
        TcpListener::bind(SocketAddr::from((addr_b, 5300)))
    })
    .unwrap();
    let mut client = netns::run_in(na.name(), move || {
        TcpStream::connect_timeout(&SocketAddr::from((addr_b, 5300)), Duration::from_secs(10))
    })
    .unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let total = 4usize << 20;
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let expected = data.clone();
    let sender = std::thread::spawn(move || {
        client.write_all(&data).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let _ = client.read(&mut [0u8; 1]);
    });
    let mut got = Vec::with_capacity(total);
    server.read_to_end(&mut got).unwrap();
    drop(server);
    sender.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in fwd {
        t.join().unwrap();
    }
    let after = workload::counters(nb.name()).unwrap();
    assert_eq!(got.len(), total);
    assert!(got == expected, "payload differs after the split path");
    assert_eq!(
        workload::delta(&before, &after, "Tcp.InCsumErrors"),
        0,
        "the peer kernel rejected segment checksums"
    );
    let captured = captured.lock().unwrap();
    assert!(!captured.is_empty(), "the kernel sent no super-packet");
    for (hdr, pkt) in captured.iter() {
        assert_eq!(hdr.gso_type & !GSO_ECN, GSO_TCPV4);
        let chunks = vnet::split(hdr, pkt, 1).unwrap();
        check_chunks(hdr, pkt, 1, &chunks);
        for per in [2, 5] {
            check_chunks(hdr, pkt, per, &vnet::split(hdr, pkt, per).unwrap());
        }
    }
    eprintln!(
        "captured {} super-packets, e.g. {} bytes with gso_size {}",
        captured.len(),
        captured[0].1.len(),
        captured[0].0.gso_size
    );
    drop((ta, tb));
}
