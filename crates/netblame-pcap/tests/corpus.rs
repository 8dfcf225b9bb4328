//! The corpus of real public captures (scripts/fetch-captures.sh: the tcpdump project's test
//! captures, Wireshark's test/captures, pcapfix's and dpkt's examples), none made by this
//! project:
//! - every file reads without a panic, and a damaged one gives a partial result plus a message;
//! - for every capture with TCP and every connection (by address pair), netblame's counts of
//!   connections, retransmissions, duplicate ACKs and zero windows against tshark's, run here,
//!   within the tolerances of [`Tolerance`];
//! - a table of captures with the verdicts expected on them.
//!
//! The corpus is fetched, not committed (its files keep their projects' licences). Without it
//! the tests skip, and fail under NETBLAME_REQUIRE_ROOT=1 (CI fetches it).

mod common;

use common::{netblame_counts, tshark_counts, Pair};
use netblame_core::diagnose::capture as judge;
use netblame_core::observe::flow::FlowObservation;
use netblame_pcap::{analyze_path, Config};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data/captures");
    if dir.join("tcpdump").is_dir() && dir.join("wireshark").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("NETBLAME_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!(
            "no capture corpus at {}: run scripts/fetch-captures.sh",
            dir.display()
        );
    }
    eprintln!("SKIPPED: no capture corpus (run scripts/fetch-captures.sh)");
    None
}

/// Every regular file of the corpus that may be a capture.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                let text = [".txt", ".log", ".cbordiag", ".out", ".sh", ".py"];
                if !matches!(name.as_str(), "copyright" | "LICENSE" | "COPYING")
                    && !text.iter().any(|t| name.ends_with(t))
                {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// `editcap -d` (drop frames equal to one of the previous five) into a temporary file.
fn deduplicated(path: &Path) -> PathBuf {
    let out = std::env::temp_dir().join(format!(
        "nbpcap-corpus-{}-{}.pcapng",
        std::process::id(),
        path.file_name().unwrap().to_string_lossy()
    ));
    let st = Command::new("editcap")
        .arg("-d")
        .arg(path)
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("editcap runs (wireshark-common)");
    assert!(st.success(), "editcap -d {}", path.display());
    out
}

#[test]
fn every_corpus_file_reads_and_damage_is_reported() {
    let Some(dir) = corpus() else { return };
    let mut read = 0;
    let mut damaged = 0;
    for p in files(&dir) {
        match analyze_path(&p, Config::default()) {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(a) => {
                read += 1;
                if let Some(d) = &a.damage {
                    damaged += 1;
                    assert!(
                        d.contains("results cover") && d.contains(&*p.to_string_lossy()),
                        "{}: {d}",
                        p.display()
                    );
                }
                // Every frame is accounted for: TCP, not TCP, or skipped with a reason.
                assert!(
                    a.tcp_segments + a.not_tcp_frames + a.skipped_frames() == a.frames,
                    "{}: {} frames, {} tcp, {} not tcp, {:?}",
                    p.display(),
                    a.frames,
                    a.tcp_segments,
                    a.not_tcp_frames,
                    a.skipped
                );
            }
        }
    }
    eprintln!("{read} captures read, {damaged} with damage reported");
    assert!(read > 500, "only {read} captures read");
}

/// The pcapfix examples: the damaged copy gives what precedes the damage, and says where.
#[test]
fn damaged_corpus_files_give_partial_results() {
    let Some(dir) = corpus() else { return };
    let good = analyze_path(&dir.join("pcapfix/test.pcap"), Config::default()).unwrap();
    let bad = analyze_path(&dir.join("pcapfix/test_damaged.pcap"), Config::default()).unwrap();
    assert!(good.damage.is_none() && good.warnings.is_empty());
    assert!(bad.frames > 0 && bad.frames <= good.frames);
    assert!(
        bad.damage.is_some() || !bad.warnings.is_empty(),
        "damage or a repair warning"
    );
}

#[test]
fn counts_agree_with_tshark_on_every_capture_with_tcp() {
    let Some(dir) = corpus() else { return };
    let mut pairs = 0u64;
    let mut outliers: Vec<String> = Vec::new();
    let mut captures = 0;
    for p in files(&dir) {
        let Ok(a) = analyze_path(&p, Config::default()) else {
            continue;
        };
        if a.flows.is_empty() || a.damage.is_some() {
            continue;
        }
        // tshark counts a duplicated frame twice; compare with the file deduplicated.
        let reference = if a.duplicate_frames() > 0 {
            deduplicated(&p)
        } else {
            p.clone()
        };
        let Some(theirs) = tshark_counts(&reference) else {
            continue;
        };
        if reference != p {
            let _ = std::fs::remove_file(&reference);
        }
        captures += 1;
        let ours = netblame_counts(&a);
        let keys: BTreeSet<&Pair> = ours.keys().chain(theirs.keys()).collect();
        for k in keys {
            pairs += 1;
            let o = ours.get(k).copied().unwrap_or_default();
            let t = theirs.get(k).copied().unwrap_or_default();
            let ok = o.connections.abs_diff(t.connections) <= 1
                && common::TOL_RETRANS.ok_with_dups(
                    o.retransmissions,
                    t.retransmissions,
                    o.duplicates,
                )
                && common::TOL_DUPACK.ok_with_dups(o.dup_acks, t.dup_acks, o.duplicates)
                && common::TOL_ZERO_WINDOW.ok(o.zero_windows, t.zero_windows);
            if !ok {
                outliers.push(format!(
                    "{} {} <-> {}: netblame {o:?}, tshark {t:?}",
                    p.strip_prefix(&dir).unwrap_or(&p).display(),
                    k.0,
                    k.1
                ));
            }
        }
    }
    eprintln!(
        "{captures} captures, {pairs} address pairs, {} outside the tolerances",
        outliers.len()
    );
    for o in &outliers {
        eprintln!("  {o}");
    }
    assert!(
        captures >= 100,
        "only {captures} captures with TCP compared"
    );
    assert!(
        (outliers.len() as f64) <= (pairs as f64 * common::MAX_OUTLIER_SHARE).max(1.0),
        "{} of {pairs} address pairs outside the tolerances",
        outliers.len()
    );
}

/// Captures with what is expected of them: connections, the verdict ids raised on any
/// connection, and ids that must not appear.
struct Expect {
    file: &'static str,
    connections: usize,
    verdicts: &'static [&'static str],
    never: &'static [&'static str],
}

const TABLE: &[Expect] = &[
    Expect {
        file: "pcapfix/test.pcap",
        connections: 2,
        verdicts: &[],
        never: &["network-loss", "application-timeout"],
    },
    Expect {
        file: "dpkt/http.pcap",
        connections: 2,
        verdicts: &[],
        never: &["network-loss", "syn-retransmit"],
    },
    // Every server frame captured twice, 100 us apart (same IP ID), with different trailers.
    Expect {
        file: "tcpdump/tests/pptp.pcap",
        connections: 1,
        verdicts: &[],
        never: &["network-loss", "syn-retransmit"],
    },
    // A frame captured twice at the same instant among out-of-order segments.
    Expect {
        file: "wireshark/test/captures/http-ooo.pcap",
        connections: 1,
        verdicts: &[],
        never: &["network-loss"],
    },
    // Segments arriving ahead of a 111 KB gap that is filled later, plus real resends.
    Expect {
        file: "wireshark/test/captures/http2_follow_multistream.pcapng",
        connections: 1,
        verdicts: &["network-loss"],
        never: &["syn-retransmit"],
    },
    Expect {
        file: "dpkt/nb6-http.pcap",
        connections: 2,
        verdicts: &[],
        never: &["network-loss"],
    },
];

fn ids(flows: &[FlowObservation]) -> BTreeSet<String> {
    flows
        .iter()
        .flat_map(judge)
        .map(|f| f.id.to_string())
        .collect()
}

/// Duplicates found where the corpus has them, and their counts.
#[test]
fn duplicated_frames_in_the_corpus_are_counted_once() {
    let Some(dir) = corpus() else { return };
    let a = analyze_path(&dir.join("tcpdump/tests/pptp.pcap"), Config::default()).unwrap();
    assert_eq!(a.duplicate_frames(), 8);
    let f = &a.flows[0];
    assert_eq!(
        f.from_server.retransmissions + f.from_client.retransmissions,
        0
    );
    assert_eq!(
        f.handshake.synack_count, 1,
        "the SYN-ACK copy is not a second SYN-ACK"
    );
    assert!(
        f.from_client.rtt.samples > 0,
        "RTT samples survive the copies"
    );
    assert!(f.from_client.rtt.min_us.unwrap() > 0);
}

#[test]
fn verdict_table() {
    let Some(dir) = corpus() else { return };
    for e in TABLE {
        let a = analyze_path(&dir.join(e.file), Config::default()).unwrap();
        assert_eq!(a.flows.len(), e.connections, "{}", e.file);
        let got = ids(&a.flows);
        for v in e.verdicts {
            assert!(got.contains(*v), "{}: {v} expected, got {got:?}", e.file);
        }
        for v in e.never {
            assert!(
                !got.contains(*v),
                "{}: {v} not expected, got {got:?}",
                e.file
            );
        }
    }
}
