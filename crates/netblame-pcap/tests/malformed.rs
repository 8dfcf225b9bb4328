//! Damaged input: pcapfix's damaged samples, captures cut at every length, corrupted records,
//! random bytes. Always a clear error or the results up to the damage; never a panic.

mod common;

use common::{Tcpdump, TempDir};
use netblame_pcap::{analyze, analyze_path, Capture, Config, ReadError};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;

/// A small deterministic generator (xorshift) so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn analyze_bytes(bytes: Vec<u8>) -> Result<netblame_pcap::Analysis, ReadError> {
    Ok(analyze(
        Capture::from_reader("mem", std::io::Cursor::new(bytes))?,
        Config::default(),
    ))
}

#[test]
fn random_bytes_are_not_a_capture() {
    let mut r = Rng(0x9e3779b97f4a7c15);
    for len in [0usize, 1, 3, 23, 24, 100, 5000] {
        let bytes: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
        match analyze_bytes(bytes) {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(a) => assert!(a.flows.is_empty() || a.damage.is_some()),
        }
    }
}

#[test]
fn pcapfix_damaged_samples() {
    let dir = Path::new("/usr/share/doc/pcapfix/examples");
    if !dir.exists() {
        eprintln!("SKIPPED: pcapfix examples not installed (apt-get install pcapfix)");
        return;
    }
    let good = analyze_path(&dir.join("test.pcap"), Config::default()).unwrap();
    assert!(good.damage.is_none());
    assert_eq!(good.flows.len(), 2);
    let damaged = analyze_path(&dir.join("test_damaged.pcap"), Config::default()).unwrap();
    let msg = damaged.damage.expect("damage reported");
    assert!(msg.contains("results cover"), "{msg}");
    assert!(damaged.frames < good.frames);
    let e = analyze_path(
        &dir.join("test_without_pcap_header.pcap"),
        Config::default(),
    )
    .expect_err("no header: an error");
    assert!(e.to_string().contains("not a pcap"), "{e}");
}

/// A real capture, then every prefix of it and many corrupted copies.
#[test]
fn cut_and_corrupted_real_capture() {
    if !netblame_testkit::require_root("cut_and_corrupted_real_capture") {
        return;
    }
    let dir = TempDir::new("bad");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cap = Tcpdump::start(None, "lo", &format!("tcp port {port}"), &dir.file("x.pcap"));
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        for _ in 0..20 {
            s.write_all(&[5u8; 3000]).unwrap();
        }
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    t.join().unwrap();
    let mut sink = Vec::new();
    std::io::Read::read_to_end(&mut c, &mut sink).unwrap();
    drop(c);
    let path = cap.stop();
    let bytes = std::fs::read(&path).unwrap();
    let full = analyze_bytes(bytes.clone()).unwrap();
    assert!(full.damage.is_none());
    assert_eq!(full.flows.len(), 1);
    // Every cut point: results up to the cut, damage named when mid-record.
    let cuts = (0..bytes.len().min(300)).chain((300..bytes.len()).step_by(13));
    for cut in cuts {
        match analyze_bytes(bytes[..cut].to_vec()) {
            Err(_) => assert!(cut < 24, "only a cut header is an error (cut {cut})"),
            Ok(a) => {
                assert!(a.frames <= full.frames);
                if a.damage.is_none() {
                    // A clean cut falls on a record boundary.
                    assert!(a.frames < full.frames || cut == bytes.len());
                }
            }
        }
    }
    // Corrupted bytes anywhere after the file header.
    let mut r = Rng(42);
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..(1 + r.next() % 8) {
            let i = 24 + (r.next() as usize % (b.len() - 24));
            b[i] = r.next() as u8;
        }
        let _ = analyze_bytes(b);
    }
    // gzip of the same capture reads the same.
    let gz = dir.file("x.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&bytes).unwrap();
    enc.finish().unwrap();
    let z = analyze_path(&gz, Config::default()).unwrap();
    assert!(z.gzip);
    assert_eq!(z.flows, full.flows);
    // pcapng of the same capture (tshark converts) reads the same flows.
    let ng = dir.file("x.pcapng");
    if std::process::Command::new("editcap")
        .args(["-F", "pcapng"])
        .arg(&path)
        .arg(&ng)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        let n = analyze_path(&ng, Config::default()).unwrap();
        assert_eq!(n.format, "pcapng");
        assert_eq!(n.flows, full.flows);
    }
    // Nanosecond timestamps: same flows.
    let nano = dir.file("x.ns.pcap");
    if std::process::Command::new("editcap")
        .args(["--set-tsprec", "9", "-F", "pcap"])
        .arg(&path)
        .arg(&nano)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        let n = analyze_path(&nano, Config::default()).unwrap();
        assert_eq!(n.flows, full.flows);
    }
}

mod fuzz {
    use super::analyze_bytes;
    use proptest::prelude::*;

    /// A legacy pcap header (microseconds, Ethernet) followed by arbitrary bytes.
    fn with_header(body: &[u8], linktype: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + body.len());
        v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&262144u32.to_le_bytes());
        v.extend_from_slice(&linktype.to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    /// One well-formed record header around arbitrary packet bytes.
    fn record(ts: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ts.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32 + 100).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..4000),
                                        lt in prop_oneof![Just(0u32), Just(1), Just(101), Just(113), Just(276)]) {
            let _ = analyze_bytes(with_header(&body, lt));
        }

        #[test]
        fn arbitrary_packets_in_valid_records_never_panic(
            pkts in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..120)), 0..40),
            lt in prop_oneof![Just(1u32), Just(101), Just(276)]) {
            let mut body = Vec::new();
            for (ts, p) in &pkts {
                // Half the packets look like IPv4/TCP so the reconstruction sees them.
                let mut p = p.clone();
                if lt == 101 && p.len() > 40 { p[0] = 0x45; p[9] = 6; }
                body.extend(record(*ts, &p));
            }
            let a = analyze_bytes(with_header(&body, lt)).unwrap();
            prop_assert_eq!(a.frames, pkts.len() as u64);
        }
    }
}
