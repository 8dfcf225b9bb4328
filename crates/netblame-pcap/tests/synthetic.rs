//! What the public captures do not cover, made here from real traffic: frames captured twice
//! (as a mirror port does), a SYN-ACK captured before its SYN, a handshake whose SYN was missed,
//! one capture wrapped in each tunnel header netblame unwraps (checked against tshark), a real
//! VXLAN tunnel captured on its underlay, and ECN marks set by an nftables rule. (Bufferbloat
//! from the lab emulator's queue is in crates/netblame/tests/pcap_cli.rs: it needs the binary.)

mod common;

use common::{netblame_counts, tshark_count, tshark_counts, Netns, PcapFile, Tcpdump, TempDir};
use netblame_core::observe::flow::{CapturePoint, FlowObservation};
use netblame_pcap::{analyze_path, Analysis, Config};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// A real loopback transfer (`bytes` from server to client), captured whole by tcpdump.
fn loopback_capture(dir: &TempDir, bytes: usize) -> std::path::PathBuf {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cap = Tcpdump::start(
        None,
        "lo",
        &format!("tcp port {port}"),
        &dir.file("base.pcap"),
    );
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 4];
        s.read_exact(&mut req).unwrap();
        s.write_all(&vec![7u8; bytes]).unwrap();
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET ").unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert_eq!(got.len(), bytes);
    cap.stop()
}

fn one(a: &Analysis) -> &FlowObservation {
    assert_eq!(a.flows.len(), 1, "{:#?}", a.flows);
    &a.flows[0]
}

/// The counts that must not change when only the capture's presentation does.
fn same_counts(a: &FlowObservation, b: &FlowObservation) {
    for (x, y) in [
        (&a.from_client, &b.from_client),
        (&a.from_server, &b.from_server),
    ] {
        assert_eq!(x.unique_bytes, y.unique_bytes);
        assert_eq!(x.retransmissions, y.retransmissions);
        assert_eq!(x.dup_acks, y.dup_acks);
        assert_eq!(x.zero_window_adverts, y.zero_window_adverts);
        assert_eq!(x.data_packets, y.data_packets);
    }
}

#[test]
fn frames_captured_twice_are_counted_once() {
    if !netblame_testkit::require_root("frames_captured_twice_are_counted_once") {
        return;
    }
    let dir = TempDir::new("dup");
    let base = loopback_capture(&dir, 2 << 20);
    let orig = analyze_path(&base, Config::default()).unwrap();
    let f0 = one(&orig);
    let pcap = PcapFile::read(&base);
    // Every frame twice: at the same instant (two interfaces), and 30 us later (a SPAN port).
    for (name, delay_us) in [("same.pcap", 0u32), ("later.pcap", 30)] {
        let mut d = PcapFile {
            header: pcap.header.clone(),
            records: Vec::new(),
        };
        for r in &pcap.records {
            d.records.push(r.clone());
            let (s, us) = (
                r.0 + (r.1 + delay_us) / 1_000_000,
                (r.1 + delay_us) % 1_000_000,
            );
            d.records.push((s, us, r.2.clone(), r.3));
        }
        let path = dir.file(name);
        d.write(&path);
        let a = analyze_path(&path, Config::default()).unwrap();
        let f = one(&a);
        same_counts(f0, f);
        assert_eq!(a.duplicate_frames(), pcap.records.len() as u64, "{name}");
        assert_eq!(
            f.handshake.syn_count, 1,
            "the SYN's copy is not a SYN retransmission"
        );
        assert_eq!(f.from_server.rtt.samples, f0.from_server.rtt.samples);
        assert!(f.from_server.rtt.min_us.is_some());
        // tshark reads the copies as retransmissions and duplicate ACKs...
        let t = tshark_count(
            &path,
            "tcp.analysis.retransmission || tcp.analysis.duplicate_ack",
        )
        .unwrap();
        assert!(t as usize >= pcap.records.len() / 2, "tshark flags {t}");
        // ...and editcap -d, which drops them, leaves what netblame counted.
        let dedup = dir.file(&format!("{name}.dedup.pcap"));
        common::run(&[
            "editcap",
            "-d",
            path.to_str().unwrap(),
            dedup.to_str().unwrap(),
        ]);
        let e = analyze_path(&dedup, Config::default()).unwrap();
        assert_eq!(e.frames, orig.frames);
        assert_eq!(e.duplicate_frames(), 0);
    }
}

#[test]
fn handshake_as_it_really_appears() {
    if !netblame_testkit::require_root("handshake_as_it_really_appears") {
        return;
    }
    let dir = TempDir::new("hs");
    let base = loopback_capture(&dir, 1 << 20);
    let orig = analyze_path(&base, Config::default()).unwrap();
    let f0 = one(&orig).clone();
    assert!(f0.handshake.window_scaling);
    let pcap = PcapFile::read(&base);
    // The SYN-ACK before its SYN (capture-point reordering): one connection, scaling kept.
    let mut swapped = PcapFile {
        header: pcap.header.clone(),
        records: pcap.records.clone(),
    };
    swapped.records.swap(0, 1);
    let path = dir.file("swapped.pcap");
    swapped.write(&path);
    let a = analyze_path(&path, Config::default()).unwrap();
    let f = one(&a);
    same_counts(&f0, f);
    assert!(f.handshake.synack_before_syn);
    assert!(f.handshake.window_scaling);
    assert_eq!(f.client, f0.client);
    assert_eq!(
        f.from_server.window_limited_us,
        f0.from_server.window_limited_us
    );
    assert_eq!(f.capture_point, CapturePoint::Unknown);
    // The SYN not captured: the SYN-ACK's option proves scaling; the server's windows are
    // scaled (its shift is known), the client's are not judged.
    let mut nosyn = PcapFile {
        header: pcap.header.clone(),
        records: pcap.records[1..].to_vec(),
    };
    let path = dir.file("nosyn.pcap");
    nosyn.records.truncate(nosyn.records.len());
    nosyn.write(&path);
    let a = analyze_path(&path, Config::default()).unwrap();
    let f = one(&a);
    assert!(f.midstream);
    assert!(f.handshake.window_scaling);
    assert_eq!(f.client, f0.client, "the SYN-ACK names the client");
    assert_eq!(
        f.from_server.window_max_bytes, f0.from_server.window_max_bytes,
        "the server's windows scaled by its own shift"
    );
    assert_eq!(f.from_server.unique_bytes, f0.from_server.unique_bytes);
}

/// Prepends `outer` to the frame's IP packet (the 14-byte Ethernet header of lo dropped).
fn rewrap(p: &PcapFile, f: impl Fn(&[u8]) -> Vec<u8>) -> PcapFile {
    PcapFile {
        header: p.header.clone(),
        records: p
            .records
            .iter()
            .map(|(s, us, d, orig)| {
                let v = f(&d[14..]);
                let grow = v.len() as u32 - (d.len() as u32 - 14);
                (*s, *us, v, orig - 14 + grow)
            })
            .collect(),
    }
}

fn eth(et: u16) -> Vec<u8> {
    let mut e = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    e.extend_from_slice(&et.to_be_bytes());
    e
}

/// An outer IPv4 header with a correct checksum.
fn ipv4(proto: u8, inner_len: usize) -> Vec<u8> {
    let mut h = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ];
    h[2..4].copy_from_slice(&((20 + inner_len) as u16).to_be_bytes());
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h
}

fn udp(dport: u16, inner_len: usize) -> Vec<u8> {
    let mut u = vec![0xc0, 0x00];
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + inner_len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u
}

#[test]
fn every_tunnel_header_gives_the_same_connection_as_tshark() {
    if !netblame_testkit::require_root("every_tunnel_header_gives_the_same_connection_as_tshark") {
        return;
    }
    let dir = TempDir::new("tun");
    let base = loopback_capture(&dir, 512 << 10);
    let orig = analyze_path(&base, Config::default()).unwrap();
    let f0 = one(&orig).clone();
    let p = PcapFile::read(&base);
    let inner_eth = |ip: &[u8]| [eth(0x0800), ip.to_vec()].concat();
    type Wrap = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let wraps: Vec<(&str, Wrap)> = vec![
        (
            "vlan",
            Box::new(|ip| [eth(0x8100), vec![0, 100, 0x08, 0], ip.to_vec()].concat()),
        ),
        (
            "qinq",
            Box::new(|ip| {
                [
                    eth(0x88a8),
                    vec![0, 10, 0x81, 0, 0, 20, 0x08, 0],
                    ip.to_vec(),
                ]
                .concat()
            }),
        ),
        (
            "mpls",
            Box::new(|ip| {
                [
                    eth(0x8847),
                    vec![0, 0x10, 0, 0x40, 0, 0x20, 1, 0x40],
                    ip.to_vec(),
                ]
                .concat()
            }),
        ),
        (
            "pppoe",
            Box::new(|ip| {
                let mut h = vec![0x11, 0, 0, 7];
                h.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
                [eth(0x8864), h, vec![0, 0x21], ip.to_vec()].concat()
            }),
        ),
        (
            "gre",
            Box::new(|ip| {
                let g = [vec![0, 0, 0x08, 0], ip.to_vec()].concat();
                [eth(0x0800), ipv4(47, g.len()), g].concat()
            }),
        ),
        (
            "erspan2",
            Box::new(move |ip| {
                let inner = inner_eth(ip);
                let g = [
                    vec![0x10, 0, 0x88, 0xbe, 0, 0, 0, 1],
                    vec![0x10, 0x64, 0, 1, 0, 0, 0, 0],
                    inner,
                ]
                .concat();
                [eth(0x0800), ipv4(47, g.len()), g].concat()
            }),
        ),
        (
            "vxlan",
            Box::new(move |ip| {
                let v = [vec![0x08, 0, 0, 0, 0, 0, 42, 0], inner_eth(ip)].concat();
                [eth(0x0800), ipv4(17, v.len() + 8), udp(4789, v.len()), v].concat()
            }),
        ),
        (
            "geneve",
            Box::new(move |ip| {
                let v = [vec![0, 0, 0x65, 0x58, 0, 0, 7, 0], inner_eth(ip)].concat();
                [eth(0x0800), ipv4(17, v.len() + 8), udp(6081, v.len()), v].concat()
            }),
        ),
    ];
    let reference = tshark_counts(&base).unwrap();
    for (name, w) in &wraps {
        let path = dir.file(&format!("{name}.pcap"));
        rewrap(&p, w).write(&path);
        let a = analyze_path(&path, Config::default()).unwrap();
        assert_eq!(a.skipped_frames(), 0, "{name}: {:?}", a.skipped);
        let f = one(&a);
        same_counts(&f0, f);
        assert_eq!(f.client, f0.client, "{name}");
        // tshark decodes the tunnel too and counts the same per connection.
        let theirs = tshark_counts(&path).unwrap();
        assert_eq!(theirs, reference, "{name}: tshark");
        let ours = netblame_counts(&a);
        for (k, t) in &theirs {
            let o = ours
                .get(k)
                .unwrap_or_else(|| panic!("{name}: {k:?} missing"));
            assert_eq!(o.retransmissions, t.retransmissions, "{name}");
            assert_eq!(o.dup_acks, t.dup_acks, "{name}");
        }
    }
    // A link type not decoded says so.
    let mut other = PcapFile {
        header: p.header.clone(),
        records: p.records.clone(),
    };
    other.set_linktype(147);
    let path = dir.file("user0.pcap");
    other.write(&path);
    let a = analyze_path(&path, Config::default()).unwrap();
    assert!(a.flows.is_empty());
    assert_eq!(a.skipped_frames(), a.frames);
    assert_eq!(a.skipped[0].0, "link type 147 not decoded");
}

/// Two namespaces joined by a veth pair (`10.77.0.1` in the first, `.2` in the second).
fn veth_pair(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("nbpcap{tag}a"));
    let b = Netns::new(&format!("nbpcap{tag}b"));
    a.exec(&[
        "ip", "link", "add", "u0", "type", "veth", "peer", "name", "u1", "netns", &b.0,
    ]);
    a.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", "u0"]);
    b.exec(&["ip", "addr", "add", "10.77.0.2/24", "dev", "u1"]);
    a.exec(&["ip", "link", "set", "u0", "up"]);
    b.exec(&["ip", "link", "set", "u1", "up"]);
    (a, b)
}

/// `bytes` from a listener in `server` at `addr` to a client in `client`.
fn transfer(server: &Netns, client: &Netns, addr: &'static str, bytes: usize) {
    let l = server.run(move || TcpListener::bind((addr, 5001)).unwrap());
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(&vec![3u8; bytes]).unwrap();
    });
    let got = client.run(move || {
        let mut c = TcpStream::connect((addr, 5001)).unwrap();
        let mut v = Vec::new();
        c.read_to_end(&mut v).unwrap();
        v.len()
    });
    t.join().unwrap();
    assert_eq!(got, bytes);
}

/// A real VXLAN tunnel between two namespaces, captured on its underlay veth.
#[test]
fn vxlan_tunnel_captured_on_the_underlay() {
    if !netblame_testkit::require_root("vxlan_tunnel_captured_on_the_underlay") {
        return;
    }
    let dir = TempDir::new("vxlan");
    let (a, b) = veth_pair("vx");
    for (ns, dev, remote, inner) in [
        (&a, "u0", "10.77.0.2", "10.88.0.1/24"),
        (&b, "u1", "10.77.0.1", "10.88.0.2/24"),
    ] {
        ns.exec(&[
            "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", remote, "dstport",
            "4789", "dev", dev,
        ]);
        ns.exec(&["ip", "addr", "add", inner, "dev", "vx0"]);
        ns.exec(&["ip", "link", "set", "vx0", "up"]);
    }
    let cap = Tcpdump::start(Some(&a.0), "u0", "udp port 4789", &dir.file("under.pcap"));
    transfer(&a, &b, "10.88.0.1", 300 << 10);
    let path = cap.stop();
    let an = analyze_path(&path, Config::default()).unwrap();
    let f = one(&an);
    assert_eq!(f.server.ip.to_string(), "10.88.0.1");
    assert_eq!(f.client.ip.to_string(), "10.88.0.2");
    assert_eq!(f.from_server.unique_bytes, 300 << 10);
    assert_eq!(f.conn_state, "SF");
    let theirs = tshark_counts(&path).unwrap();
    assert_eq!(
        theirs.len(),
        1,
        "tshark sees the inner connection: {theirs:?}"
    );
}

/// ECN negotiated and CE marks set on the way (an nftables rule marking every 20th data
/// segment as a congested queue would): counts of CE, ECE and CWR.
#[test]
fn ecn_marks_are_counted() {
    if !netblame_testkit::require_root("ecn_marks_are_counted") {
        return;
    }
    let dir = TempDir::new("ecn");
    let (a, b) = veth_pair("ecn");
    for ns in [&a, &b] {
        ns.exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_ecn=1"]);
    }
    // Marked as it leaves the sender, before tcpdump's tap on the way out.
    a.nft(
        "table ip nbecn {\n chain post {\n type filter hook postrouting priority 0;\n \
         tcp sport 5001 meta length > 1000 ip ecn ect0 numgen inc mod 20 == 0 ip ecn set ce\n }\n}\n",
    );
    let cap = Tcpdump::start(Some(&a.0), "u0", "tcp port 5001", &dir.file("ecn.pcap"));
    transfer(&a, &b, "10.77.0.1", 4 << 20);
    let path = cap.stop();
    let an = analyze_path(&path, Config::default()).unwrap();
    let f = one(&an);
    assert!(f.handshake.ecn_negotiated);
    let s = &f.from_server;
    assert!(s.ecn_ect_packets > 0);
    assert!(s.ecn_ce_packets > 0, "CE marks counted");
    assert!(f.from_client.ece_segments > 0, "the receiver echoes them");
    assert!(s.cwr_segments > 0, "the sender answers with CWR");
    // tshark agrees on the CE count.
    let t = tshark_count(&path, "ip.dsfield.ecn == 3").unwrap();
    assert_eq!(t, s.ecn_ce_packets + f.from_client.ecn_ce_packets);
    let t = tshark_count(&path, "tcp.flags.cwr == 1 && tcp.flags.syn == 0").unwrap();
    assert_eq!(t, s.cwr_segments + f.from_client.cwr_segments);
}
