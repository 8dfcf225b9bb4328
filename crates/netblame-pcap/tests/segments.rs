//! The per-segment trace behind the time-sequence graph (`Config::segments`), checked segment by
//! segment against tshark on a real tcpdump capture: relative sequence and ACK numbers, payload
//! length, the scaled window, zero windows and retransmissions.

mod common;

use common::{Tcpdump, TempDir};
use netblame_core::observe::flow::Side;
use netblame_pcap::{analyze_path, Config};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One frame as tshark decodes it.
#[derive(Debug)]
struct Frame {
    from_server: bool,
    seq: i64,
    len: u32,
    ack: Option<i64>,
    window: u64,
    zero_window: bool,
    retransmission: bool,
}

fn tshark_frames(path: &std::path::Path, server_port: u16) -> Option<Vec<Frame>> {
    let out = Command::new("tshark")
        .args(["-n", "-o", "tcp.relative_sequence_numbers:TRUE", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "tcp.srcport", "-e", "tcp.seq", "-e", "tcp.len"])
        .args([
            "-e",
            "tcp.flags.ack",
            "-e",
            "tcp.ack",
            "-e",
            "tcp.window_size",
        ])
        .args([
            "-e",
            "tcp.analysis.zero_window",
            "-e",
            "tcp.analysis.retransmission",
        ])
        .args(["-e", "tcp.analysis.fast_retransmission"])
        .args(["-e", "tcp.analysis.spurious_retransmission"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                let flag = |s: &str| !s.trim().is_empty() && s.trim() != "0";
                Frame {
                    from_server: f[0].parse::<u16>().unwrap() == server_port,
                    seq: f[1].parse().unwrap(),
                    len: f[2].parse().unwrap(),
                    ack: (f[3] == "1" || f[3] == "True").then(|| f[4].parse().unwrap()),
                    window: f[5].parse().unwrap(),
                    zero_window: flag(f[6]),
                    retransmission: flag(f[7]) || flag(f[8]) || flag(f[9]),
                }
            })
            .collect(),
    )
}

#[test]
fn segment_trace_matches_tshark_frame_by_frame() {
    if !netblame_testkit::require_root("segment_trace_matches_tshark_frame_by_frame") {
        return;
    }
    let dir = TempDir::new("segments");
    // A receiver with a fixed 64 KiB buffer that reads nothing until the sender's writes would
    // block, then everything: zero windows, then the window reopening.
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.set_recv_buffer_size(64 * 1024).unwrap();
    l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(1).unwrap();
    let l: TcpListener = l.into();
    let port = l.local_addr().unwrap().port();
    let cap = Tcpdump::start(None, "lo", &format!("tcp port {port}"), &dir.file("s.pcap"));
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        wait.recv().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got.len()
    });
    let total = 2 << 20;
    {
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        c.set_send_buffer_size(64 * 1024).unwrap();
        c.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
            .unwrap();
        let mut c: TcpStream = c.into();
        c.set_nonblocking(true).unwrap();
        let data = vec![3u8; total];
        let mut sent = 0;
        while sent < total {
            match c.write(&data[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        go.send(()).unwrap();
        c.set_nonblocking(false).unwrap();
        c.write_all(&data[sent..]).unwrap();
    }
    assert_eq!(reader.join().unwrap(), total);
    let path = cap.stop();

    let cfg = Config {
        series_interval: Some(Duration::from_secs(1)),
        segments: true,
        ..Config::default()
    };
    let a = analyze_path(&path, cfg).unwrap();
    assert_eq!(a.flows.len(), 1, "{:#?}", a.flows);
    assert_eq!(a.segments.len(), 1);
    let trace = &a.segments[0];
    assert_eq!(trace.id, a.flows[0].id);
    assert_eq!(trace.dropped, 0);
    assert!(
        trace.points.iter().any(|p| p.zero_window),
        "the receiver never closed its window"
    );
    // Without segments asked for, none are kept.
    let plain = analyze_path(&path, Config::default()).unwrap();
    assert!(plain.segments.is_empty());

    let Some(frames) = tshark_frames(&path, port) else {
        eprintln!("tshark unavailable: comparison skipped");
        return;
    };
    assert_eq!(
        trace.points.len(),
        frames.len(),
        "one point per captured frame"
    );
    for (i, (p, f)) in trace.points.iter().zip(&frames).enumerate() {
        let ctx = format!("frame {}: ours {p:?}, tshark {f:?}", i + 1);
        assert_eq!(p.from == Side::Server, f.from_server, "{ctx}");
        assert_eq!(p.seq, f.seq, "{ctx}");
        assert_eq!(p.len, f.len, "{ctx}");
        assert_eq!(p.ack, f.ack, "{ctx}");
        assert_eq!(p.window_bytes, f.window, "{ctx}");
        assert_eq!(p.zero_window, f.zero_window, "{ctx}");
        assert_eq!(p.retransmission, f.retransmission, "{ctx}");
    }
    // The client's FIN comes right after the whole transfer, relative to its ISN (+1 for the SYN).
    let fin = trace
        .points
        .iter()
        .find(|p| p.from == Side::Client && p.fin)
        .expect("the client's FIN");
    // (A FIN may ride on the last data segment.)
    assert_eq!(fin.seq + fin.len as i64, total as i64 + 1, "{fin:?}");
}
