//! Helpers for tests that capture real traffic with tcpdump, on loopback or in namespaces.
#![allow(dead_code)]

use netblame_core::observe::flow::Endpoint;
use netblame_pcap::Analysis;
#[allow(unused_imports)]
pub use netblame_testkit::Netns;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running tcpdump; `stop` sends SIGINT and waits so the file is complete.
pub struct Tcpdump {
    child: Option<Child>,
    pub path: PathBuf,
}

impl Tcpdump {
    /// Starts `tcpdump -i IFACE -U -w FILE FILTER` (inside `netns` if given) and waits for its
    /// "listening on" line.
    pub fn start(netns: Option<&str>, iface: &str, filter: &str, path: &Path) -> Tcpdump {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "tcpdump"]);
                c
            }
            None => Command::new("tcpdump"),
        };
        // -Z root: write the file as root (tcpdump drops to user tcpdump otherwise).
        // -s 200: headers only (payload lengths come from the IP header), so tcpdump keeps up.
        cmd.args([
            "-i",
            iface,
            "-U",
            "--immediate-mode",
            "-n",
            "-s",
            "200",
            "-B",
            "16384",
            "-Z",
            "root",
            "-w",
        ])
        .arg(path)
        .arg(filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("tcpdump runs (apt-get install tcpdump)");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(l) if l.contains("listening on") => break,
                Ok(l) => seen.push(l),
                Err(_) => {
                    let _ = child.kill();
                    panic!("tcpdump did not start: {seen:?}");
                }
            }
        }
        Tcpdump {
            child: Some(child),
            path: path.to_path_buf(),
        }
    }

    /// Stops the capture (SIGINT) and waits for tcpdump to flush and exit.
    pub fn stop(mut self) -> PathBuf {
        self.finish();
        self.path.clone()
    }

    fn finish(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Let the last packets reach the capture buffer.
            std::thread::sleep(Duration::from_millis(500));
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(netblame_testkit::unique_name(&format!("nbpcap-{tag}-")));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counts frames tshark flags with `filter` (e.g. `tcp.analysis.retransmission`).
pub fn tshark_count(path: &Path, filter: &str) -> Option<u64> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count() as u64,
    )
}

/// Waits for a child with a generous bound; kills it if it overruns.
pub fn wait_child(mut c: Child, bound: Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = c.try_wait() {
            return c.wait_with_output().unwrap();
        }
        if start.elapsed() > bound {
            let _ = c.kill();
            return c.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An address pair, the same either way round.
pub type Pair = (Endpoint, Endpoint);

pub fn pair(a: Endpoint, b: Endpoint) -> Pair {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// The counts compared, summed over the connections of one address pair.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub retransmissions: u64,
    pub dup_acks: u64,
    pub zero_windows: u64,
    pub connections: u64,
    /// Frames netblame found captured twice (tshark flags each copy as a retransmission or a
    /// duplicate ACK, unless `editcap -d` could drop it: it cannot when the copies' link-layer
    /// trailers differ, as in tcpdump's pptp.pcap).
    pub duplicates: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.retransmissions += o.retransmissions;
        self.dup_acks += o.dup_acks;
        self.zero_windows += o.zero_windows;
        self.connections += o.connections;
        self.duplicates += o.duplicates;
    }
}

/// How far netblame may be from tshark, per address pair: the larger of an absolute slack and
/// a share of tshark's count. Why they may differ at all: tshark's stream split on port reuse
/// and its "previous segment not captured" heuristics differ at the edges, and netblame counts
/// Linux zero-window probes as probes where tshark calls them keep-alives.
pub struct Tolerance {
    pub abs: u64,
    pub rel: f64,
}

pub const TOL_RETRANS: Tolerance = Tolerance { abs: 2, rel: 0.1 };
pub const TOL_DUPACK: Tolerance = Tolerance { abs: 2, rel: 0.1 };
pub const TOL_ZERO_WINDOW: Tolerance = Tolerance { abs: 1, rel: 0.05 };
/// Share of address pairs allowed outside the tolerances over the whole corpus.
pub const MAX_OUTLIER_SHARE: f64 = 0.02;

impl Tolerance {
    pub fn ok(&self, ours: u64, theirs: u64) -> bool {
        ours.abs_diff(theirs) <= self.abs.max((theirs as f64 * self.rel).ceil() as u64)
    }

    /// As `ok`, where tshark may also have counted up to `dups` duplicated frames.
    pub fn ok_with_dups(&self, ours: u64, theirs: u64, dups: u64) -> bool {
        self.ok(ours, theirs)
            || (ours <= theirs && self.ok(ours + dups, theirs))
            || (ours <= theirs && theirs - ours <= dups)
    }
}

pub fn netblame_counts(a: &Analysis) -> BTreeMap<Pair, Counts> {
    let mut m: BTreeMap<Pair, Counts> = BTreeMap::new();
    for f in &a.flows {
        let c = Counts {
            retransmissions: f.from_client.retransmissions + f.from_server.retransmissions,
            dup_acks: f.from_client.dup_acks + f.from_server.dup_acks,
            zero_windows: f.from_client.zero_window_adverts + f.from_server.zero_window_adverts,
            connections: 1,
            duplicates: f.from_client.duplicate_frames + f.from_server.duplicate_frames,
        };
        m.entry(pair(f.client, f.server)).or_default().add(&c);
    }
    m
}

/// Runs tshark on `path` and sums its per-frame analysis flags by address pair (the innermost
/// IP header when tunnelled).
pub fn tshark_counts(path: &Path) -> Option<BTreeMap<Pair, Counts>> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=l",
        ])
        .args([
            "-e",
            "tcp.stream",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.srcport",
        ])
        .args(["-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport"])
        .args(["-e", "tcp.analysis.retransmission"])
        .args(["-e", "tcp.analysis.fast_retransmission"])
        .args(["-e", "tcp.analysis.spurious_retransmission"])
        .args(["-e", "tcp.analysis.duplicate_ack"])
        .args(["-e", "tcp.analysis.zero_window"])
        .stderr(Stdio::null())
        .output()
        .expect("tshark runs (apt-get install tshark)");
    if !out.status.success() {
        return None;
    }
    let mut m: BTreeMap<Pair, Counts> = BTreeMap::new();
    let mut streams: BTreeSet<(Pair, String)> = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Vec<&str> = line.split('|').collect();
        if v.len() < 12 {
            continue;
        }
        let ip = |a: &str, b: &str| -> Option<IpAddr> {
            if !a.is_empty() && !b.is_empty() {
                // Both families in one frame (a tunnel): occurrence=l gives each family's
                // last; the inner one is unknowable here, skip the frame.
                return None;
            }
            a.parse().ok().or_else(|| b.parse().ok())
        };
        let (Some(src), Some(dst)) = (ip(v[1], v[2]), ip(v[4], v[5])) else {
            continue;
        };
        let (Ok(sp), Ok(dp)) = (v[3].parse::<u16>(), v[6].parse::<u16>()) else {
            continue;
        };
        let p = pair(
            Endpoint { ip: src, port: sp },
            Endpoint { ip: dst, port: dp },
        );
        let e = m.entry(p).or_default();
        let set = |s: &str| !s.is_empty();
        e.retransmissions += (set(v[7]) || set(v[8]) || set(v[9])) as u64;
        e.dup_acks += set(v[10]) as u64;
        e.zero_windows += set(v[11]) as u64;
        if streams.insert((p, v[0].to_string())) {
            e.connections += 1;
        }
    }
    Some(m)
}

/// A legacy pcap file as its header and records (for tests that rewrite real captures).
pub struct PcapFile {
    pub header: Vec<u8>,
    /// (seconds, microseconds, frame bytes, wire length)
    pub records: Vec<(u32, u32, Vec<u8>, u32)>,
}

impl PcapFile {
    /// Reads a little-endian microsecond pcap (what tcpdump writes here).
    pub fn read(path: &Path) -> PcapFile {
        let b = std::fs::read(path).unwrap();
        assert_eq!(b[0..4], [0xd4, 0xc3, 0xb2, 0xa1], "a little-endian pcap");
        let u = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let mut records = Vec::new();
        let mut at = 24;
        while at + 16 <= b.len() {
            let cap = u(at + 8) as usize;
            records.push((
                u(at),
                u(at + 4),
                b[at + 16..at + 16 + cap].to_vec(),
                u(at + 12),
            ));
            at += 16 + cap;
        }
        PcapFile {
            header: b[..24].to_vec(),
            records,
        }
    }

    /// Writes the records (the wire length grows with the frame when a rewrite added bytes).
    pub fn write(&self, path: &Path) {
        let mut out = self.header.clone();
        for (s, us, d, orig) in &self.records {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&us.to_le_bytes());
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
            let wire = (*orig).max(d.len() as u32);
            out.extend_from_slice(&wire.to_le_bytes());
            out.extend_from_slice(d);
        }
        std::fs::write(path, out).unwrap();
    }

    /// The link type in the header.
    pub fn set_linktype(&mut self, lt: u32) {
        self.header[20..24].copy_from_slice(&lt.to_le_bytes());
    }
}
