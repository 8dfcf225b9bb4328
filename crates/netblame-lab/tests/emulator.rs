//! The emulator against real kernels: two namespaces, two TUN devices, TCP and UDP end to end.
//! Bounds are generous (the machine is shared); what is asserted is structure: the delay is
//! never shorter than configured, a rate is never exceeded, every lost packet is counted.

use netblame_lab::emulator::LossModel;
use netblame_lab::lab::{self, LabConfig, Side};
use netblame_lab::workload::{self, TransferSpec};
use netblame_lab::{netns, Lab};
use netblame_testkit::{require_root, unique_name};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn name() -> String {
    unique_name("t")
}

fn assert_gone(lab_name: &str) {
    for side in [Side::Client, Side::Server] {
        let ns = lab::netns_name(lab_name, side);
        assert!(!netns::exists(&ns), "namespace {ns} left behind");
    }
    assert!(
        !lab::state_dir(lab_name).exists(),
        "state dir of {lab_name} left behind"
    );
}

#[test]
fn delay_round_trips_measure_the_configured_rtt() {
    if !require_root("delay_round_trips_measure_the_configured_rtt") {
        return;
    }
    let n = name();
    let lab = Lab::up(LabConfig::symmetric(&n, Duration::from_millis(50), None)).unwrap();
    let mut rtts = workload::ping_pong(&lab, 40).unwrap();
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    let min = rtts[0];
    let c = lab.counters();
    eprintln!(
        "50 ms lab: min {:?} median {:?} max {:?}; emulator lateness p50 {} us p99 {} us",
        min,
        median,
        rtts[rtts.len() - 1],
        c.uplink.lateness_p50_us,
        c.uplink.lateness_p99_us
    );
    // Never faster than the configured path; the median close to it.
    assert!(
        min >= Duration::from_millis(50),
        "{min:?} is shorter than the 50 ms path"
    );
    assert!(
        median < Duration::from_millis(65),
        "median {median:?} is far above 50 ms"
    );
    assert_eq!(c.uplink.dropped_total() + c.downlink.dropped_total(), 0);
    lab.down().unwrap();
    assert_gone(&n);
}

#[test]
fn rate_limit_holds() {
    if !require_root("rate_limit_holds") {
        return;
    }
    let n = name();
    let rate = 20e6;
    let lab = Lab::up(LabConfig::symmetric(
        &n,
        Duration::from_millis(10),
        Some(rate),
    ))
    .unwrap();
    let obs = workload::transfer(
        &lab,
        &TransferSpec::timed(Side::Client, Duration::from_secs(2)),
    )
    .unwrap();
    let goodput = obs.sender.rate_bps;
    let elapsed_s = obs.sender.bytes as f64 * 8.0 / goodput;
    let c = lab.counters();
    // Wire rate of what crossed the link (IP headers included) over the transfer.
    let wire = c.uplink.bytes_out as f64 * 8.0 / elapsed_s;
    eprintln!(
        "20 Mbit/s lab: goodput {:.2} Mbit/s, wire {:.2} Mbit/s, queue drops {}",
        goodput / 1e6,
        wire / 1e6,
        c.uplink.dropped_queue
    );
    assert!(
        wire <= rate * 1.03,
        "wire rate {wire} exceeds the configured {rate}"
    );
    assert!(
        goodput >= rate * 0.5,
        "goodput {goodput} far below the configured {rate}"
    );
    lab.down().unwrap();
    assert_gone(&n);
}

#[test]
fn every_lost_packet_is_counted() {
    if !require_root("every_lost_packet_is_counted") {
        return;
    }
    let n = name();
    let mut cfg = LabConfig::symmetric(&n, Duration::from_millis(2), None);
    cfg.uplink.loss = LossModel::Random { p: 0.2 };
    let lab = Lab::up(cfg).unwrap();
    let server = netns::run_in(&lab.netns(Side::Server), || {
        let s = UdpSocket::bind((lab::SERVER_ADDR, 9000))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(s)
    })
    .unwrap();
    let client = netns::run_in(&lab.netns(Side::Client), || {
        UdpSocket::bind((lab::CLIENT_ADDR, 0))
    })
    .unwrap();
    // Read while sending, so the server's socket buffer never overflows.
    let reader = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut buf = [0u8; 64];
        while server.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    let sent = 2000u64;
    for i in 0..sent {
        client
            .send_to(&i.to_be_bytes(), (lab::SERVER_ADDR, 9000))
            .unwrap();
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let got = reader.join().unwrap();
    let c = lab.counters();
    eprintln!(
        "sent {sent}, received {got}, emulator dropped {} (random {}), tun kernel drops {}",
        c.uplink.dropped_total(),
        c.uplink.dropped_random,
        c.client_tun_tx_dropped
    );
    assert!(
        c.uplink.dropped_random > 200,
        "20% of 2000 should be lost, counted {}",
        c.uplink.dropped_random
    );
    assert_eq!(
        sent,
        got + c.uplink.dropped_total() + c.client_tun_tx_dropped,
        "every datagram is either received or counted as dropped"
    );
    lab.down().unwrap();
    assert_gone(&n);
}

#[test]
fn scripted_first_syn_drop_costs_one_rto() {
    if !require_root("scripted_first_syn_drop_costs_one_rto") {
        return;
    }
    let n = name();
    let mut cfg = LabConfig::symmetric(&n, Duration::from_millis(10), None);
    cfg.uplink.drop_first_syn_every = Some(2);
    let lab = Lab::up(cfg).unwrap();
    let obs = workload::connects(&lab, 4).unwrap();
    eprintln!(
        "connect times: {:?}, SYN retransmits {}",
        obs.times, obs.syn_retransmits
    );
    let slow = obs
        .times
        .iter()
        .filter(|t| **t >= Duration::from_millis(900))
        .count();
    let fast = obs
        .times
        .iter()
        .filter(|t| **t < Duration::from_millis(500))
        .count();
    assert_eq!((fast, slow), (2, 2), "{:?}", obs.times);
    assert!(obs.times.iter().all(|t| *t < Duration::from_secs(5)));
    assert_eq!(obs.syn_retransmits, 2);
    assert_eq!(lab.counters().uplink.dropped_scripted, 2);
    lab.down().unwrap();
    assert_gone(&n);
}

#[test]
fn per_namespace_sysctls_leave_the_host_alone() {
    if !require_root("per_namespace_sysctls_leave_the_host_alone") {
        return;
    }
    let host = netblame_linux::sysctl::read("net.ipv4.tcp_rmem").unwrap();
    let n = name();
    let mut cfg = LabConfig::symmetric(&n, Duration::ZERO, None);
    cfg.server_sysctls = vec![("net.ipv4.tcp_rmem".into(), "4096 131072 1048576".into())];
    let lab = Lab::up(cfg).unwrap();
    let inside = netns::get_sysctl(&lab.netns(Side::Server), "net.ipv4.tcp_rmem").unwrap();
    assert_eq!(
        inside.split_whitespace().collect::<Vec<_>>(),
        ["4096", "131072", "1048576"]
    );
    assert_eq!(
        netblame_linux::sysctl::read("net.ipv4.tcp_rmem").unwrap(),
        host
    );
    drop(lab);
    assert_gone(&n);
}

#[test]
fn a_panic_still_tears_the_lab_down() {
    if !require_root("a_panic_still_tears_the_lab_down") {
        return;
    }
    let n = name();
    let n2 = n.clone();
    let r = std::thread::spawn(move || {
        let _lab = Lab::up(LabConfig::symmetric(&n2, Duration::ZERO, None)).unwrap();
        assert!(netns::exists(&lab::netns_name(&n2, Side::Client)));
        panic!("test panic inside a lab");
    })
    .join();
    assert!(r.is_err());
    assert_gone(&n);
}

#[test]
fn bad_names_and_duplicate_labs_are_refused() {
    if !require_root("bad_names_and_duplicate_labs_are_refused") {
        return;
    }
    assert!(Lab::up(LabConfig::symmetric("bad name!", Duration::ZERO, None)).is_err());
    let n = name();
    let lab = Lab::up(LabConfig::symmetric(&n, Duration::ZERO, None)).unwrap();
    let again = Lab::up(LabConfig::symmetric(&n, Duration::ZERO, None));
    assert!(
        matches!(again, Err(lab::LabError::Running(..))),
        "{:?}",
        again.err()
    );
    let start = Instant::now();
    lab.down().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_gone(&n);
}

#[test]
fn jitter_spreads_round_trips_and_keeps_order() {
    if !require_root("jitter_spreads_round_trips_and_keeps_order") {
        return;
    }
    let n = name();
    let mut cfg = LabConfig::symmetric(&n, Duration::from_millis(20), None);
    for l in [&mut cfg.uplink, &mut cfg.downlink] {
        l.jitter = Duration::from_millis(4);
    }
    let lab = Lab::up(cfg).unwrap();
    let mut rtts = workload::ping_pong(&lab, 30).unwrap();
    rtts.sort();
    let (min, max) = (rtts[0], rtts[rtts.len() - 1]);
    eprintln!("20 ms +/- 4 ms each way: min {min:?} max {max:?}");
    // Each way 10 ms +/- 4 ms: never below 12 ms in total, and the spread is visible.
    assert!(min >= Duration::from_millis(12), "{min:?}");
    assert!(
        max - min >= Duration::from_millis(1),
        "no spread: {min:?}..{max:?}"
    );
    // Order kept: a bulk transfer through the jittery path sees no reordering.
    let obs = workload::transfer(
        &lab,
        &TransferSpec::timed(Side::Client, Duration::from_millis(500)),
    )
    .unwrap();
    assert_eq!(
        obs.sender.reordering.unwrap_or(0),
        0,
        "the emulator reordered packets"
    );
    lab.down().unwrap();
    assert_gone(&n);
}
