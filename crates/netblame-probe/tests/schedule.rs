//! The fixed schedule: a stalled target does not reduce the number of probes sent, and loss is
//! counted right when the timeout is longer than the interval (no coordinated omission).

mod common;

use common::{config, probe};
use netblame_core::observe::latency::ProbeOutcome;
use netblame_probe::responder::MAGIC;
use netblame_probe::ProbeKind;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

/// An rr peer that accepts, reads the hello, then does not answer for `stall`, then echoes.
fn stalling_rr_peer(stall: Duration) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut hello = [0u8; 8];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, MAGIC);
        std::thread::sleep(stall);
        let mut buf = [0u8; 4096];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    (addr, h)
}

#[test]
fn a_stalled_rr_target_still_gets_every_probe() {
    let (addr, peer) = stalling_rr_peer(Duration::from_millis(800));
    let t0 = Instant::now();
    // 40 probes every 25 ms: the schedule (1 s) spans the stall.
    let runs = probe(config(
        ProbeKind::Rr,
        &[addr],
        25,
        40,
        Duration::from_secs(5),
    ));
    let l = &runs[0].latency;
    assert_eq!(
        l.summary.sent, 40,
        "every probe left on schedule during the stall"
    );
    assert_eq!(runs[0].schedule.probes, 40);
    assert_eq!(
        l.summary.received, 40,
        "pipelined requests are answered after the stall"
    );
    // Probes sent during the stall carry it, measured from their scheduled departure: the
    // first one waited at least most of the stall.
    let first = l.samples[0].latency_us().unwrap();
    let last = l.samples[39].latency_us().unwrap();
    assert!(
        first > 400_000,
        "first probe latency {first} us should include the stall"
    );
    assert!(
        first > last,
        "probes after the stall are faster ({first} vs {last} us)"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    peer.join().unwrap();
}

#[test]
fn a_stalled_tcp_request_target_still_gets_every_probe() {
    // Accepts every connection but answers each request only after 600 ms.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 24];
                if s.read_exact(&mut buf).is_ok() {
                    std::thread::sleep(Duration::from_millis(600));
                    let _ = s.write_all(&buf[8..]);
                }
            });
        }
    });
    let mut cfg = config(ProbeKind::Tcp, &[addr], 20, 30, Duration::from_secs(3));
    cfg.request = true;
    let runs = probe(cfg);
    let l = &runs[0].latency;
    assert_eq!(l.summary.sent, 30);
    assert_eq!(l.summary.received, 30);
    assert!(l.samples.iter().all(|s| s.latency_us().unwrap() >= 500_000));
    // Connects are fast (the kernel completes them); the stall is in the reply.
    assert!(l
        .samples
        .iter()
        .all(|s| s.connect_us.unwrap() < s.latency_us().unwrap()));
}

/// A UDP echo that delays replies to even sequence numbers by `slow` and answers odd ones at once.
fn udp_peer(slow: Duration) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let seq = u64::from_le_bytes(buf[8..16].try_into().unwrap());
            let d = buf[..n].to_vec();
            if seq % 2 == 0 {
                let s2 = s.try_clone().unwrap();
                std::thread::spawn(move || {
                    std::thread::sleep(slow);
                    let _ = s2.send_to(&d, from);
                });
            } else {
                let _ = s.send_to(&d, from);
            }
        }
    });
    addr
}

#[test]
fn loss_is_counted_right_when_the_timeout_exceeds_the_interval() {
    // Timeout 400 ms > interval 40 ms: eight probes are in flight at any time.
    // Replies 1.2 s late (even probes) are lost even though they come back.
    let addr = udp_peer(Duration::from_millis(1200));
    let runs = probe(config(
        ProbeKind::Udp,
        &[addr],
        40,
        40,
        Duration::from_millis(400),
    ));
    let l = &runs[0].latency;
    assert_eq!(l.summary.sent, 40);
    assert_eq!(l.summary.received, 20);
    assert_eq!(l.summary.lost, 20);
    assert!((l.summary.loss_percent - 50.0).abs() < 1e-9);
    for s in &l.samples {
        if s.seq % 2 == 0 {
            assert_eq!(s.outcome, ProbeOutcome::Timeout, "{s:?}");
        } else {
            assert!(s.latency_us().is_some(), "{s:?}");
        }
    }
    // Replies slower than the interval but within the timeout are not lost.
    let addr = udp_peer(Duration::from_millis(150));
    let runs = probe(config(
        ProbeKind::Udp,
        &[addr],
        40,
        40,
        Duration::from_millis(1000),
    ));
    let l = &runs[0].latency;
    assert_eq!(
        (l.summary.sent, l.summary.received, l.summary.lost),
        (40, 40, 0)
    );
    for s in l.samples.iter().filter(|s| s.seq % 2 == 0) {
        assert!(
            s.latency_us().unwrap() >= 140_000,
            "even probes carry the 150 ms delay: {s:?}"
        );
    }
}

#[test]
fn windows_count_loss_per_window() {
    let addr = udp_peer(Duration::from_millis(900));
    let mut cfg = config(ProbeKind::Udp, &[addr], 50, 40, Duration::from_millis(300));
    cfg.window = Duration::from_millis(500);
    let runs = probe(cfg);
    let l = &runs[0].latency;
    assert_eq!(l.windows.len(), 4);
    assert!(l.windows.iter().all(|w| w.sent == 10 && w.lost == 5));
    assert_eq!(
        l.windows.iter().map(|w| w.lost).sum::<u64>(),
        l.summary.lost
    );
}

#[test]
fn stopping_early_ends_the_run_and_keeps_what_was_sent() {
    let r = netblame_probe::responder::Responder::start("127.0.0.1:0".parse().unwrap()).unwrap();
    // A run of 50 s at one probe per 50 ms, and one with a long interval: both stop promptly.
    for (interval_ms, count) in [(50, 1000), (30_000, 10)] {
        let run = netblame_probe::start(config(
            ProbeKind::Udp,
            &[r.local_addr().to_string()],
            interval_ms,
            count,
            Duration::from_secs(5),
        ))
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        run.stop();
        let runs = run.wait();
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "stop took {:?}",
            t0.elapsed()
        );
        let l = &runs[0].latency;
        assert!(
            l.summary.sent >= 1 && l.summary.sent < count,
            "{:?}",
            l.summary
        );
        assert_eq!(l.samples.len() as u64, l.summary.sent);
        assert_eq!(l.summary.received + l.summary.lost, l.summary.sent);
    }
}
