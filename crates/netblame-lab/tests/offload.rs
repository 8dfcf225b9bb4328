//! The emulator with TUN offload (GSO super-packets) against real kernels: bulk data arrives
//! intact, loss and counters stay per wire segment, a rate holds, and the plain fallback works.
//! Rates are measured over a window of a running transfer; bounds are the ones issue 6 sets
//! (5% for a rate) or binomial ones (loss), wide enough for a shared machine.

use netblame_lab::emulator::LossModel;
use netblame_lab::lab::{self, LabConfig, Side};
use netblame_lab::tun::TunMode;
use netblame_lab::workload::{self, TransferSpec};
use netblame_lab::{netns, Lab};
use netblame_testkit::{require_root, unique_name};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

fn assert_gone(lab_name: &str) {
    for side in [Side::Client, Side::Server] {
        let ns = lab::netns_name(lab_name, side);
        assert!(!netns::exists(&ns), "namespace {ns} left behind");
    }
}

/// A reproducible byte stream (xorshift64*), so both ends can hash the same bytes.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a over a byte stream (independent of how the stream was cut into reads).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What a checked transfer saw.
struct Checked {
    sent_hash: u64,
    received_hash: u64,
    received: u64,
    /// `Tcp.InCsumErrors` the receiving kernel counted during the transfer.
    csum_errors: u64,
}

/// Sends `total` bytes of a pseudo-random stream from the client to the server, hashing both
/// ends.
fn checked_transfer(lab: &Lab, total: u64) -> Checked {
    let server_ns = lab.netns(Side::Server);
    let before = workload::counters(&server_ns).unwrap();
    let listener = workload::listen(lab, None).unwrap();
    let (mut client, _) = workload::connect(lab, None, Duration::from_secs(10)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let sender = std::thread::spawn(move || {
        let mut stream = Stream(0x9e37_79b9_7f4a_7c15);
        let mut hash = Fnv::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            stream.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            client.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
        client.shutdown(Shutdown::Write).unwrap();
        // Keep the socket open until the receiver has everything.
        let mut rest = [0u8; 1];
        let _ = client.read(&mut rest);
        hash.0
    });
    let mut hash = Fnv::new();
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = server.read(&mut buf).expect("receiving the transfer");
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        received += n as u64;
    }
    drop(server);
    let sent_hash = sender.join().unwrap();
    let after = workload::counters(&server_ns).unwrap();
    Checked {
        sent_hash,
        received_hash: hash.0,
        received,
        csum_errors: workload::delta(&before, &after, "Tcp.InCsumErrors"),
    }
}

/// The lab's counters once nothing is left in its delay lines (bounded wait).
fn settled_counters(lab: &Lab) -> lab::LabCounters {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = lab.counters();
        if c.uplink.held_bytes + c.downlink.held_bytes == 0 || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn offloaded_bulk_transfer_delivers_every_byte_intact() {
    if !require_root("offloaded_bulk_transfer_delivers_every_byte_intact") {
        return;
    }
    let n = unique_name("o");
    let lab = Lab::up(LabConfig::symmetric(&n, Duration::from_millis(2), None)).unwrap();
    let total = 48 << 20;
    let r = checked_transfer(&lab, total);
    let c = lab.counters();
    eprintln!(
        "offload: {} bytes, up {} segments in {} super-packets ({} split), {} wire bytes",
        r.received,
        c.uplink.packets_out,
        c.uplink.superpackets_in,
        c.uplink.superpackets_split,
        c.uplink.bytes_out
    );
    assert_eq!(
        c.tun_mode,
        TunMode::Offload,
        "this kernel refused TUN offload"
    );
    assert_eq!(r.received, total);
    assert_eq!(r.received_hash, r.sent_hash, "payload corrupted on the way");
    assert_eq!(r.csum_errors, 0);
    assert!(c.uplink.superpackets_in > 0, "no super-packet came through");
    // Counted as the wire would see it: segments of at most the MTU, each with its headers.
    assert!(c.uplink.packets_out >= total / 1460, "{c:?}");
    assert!(c.uplink.bytes_out > total + c.uplink.packets_out * 40);
    assert!(c.uplink.bytes_out <= c.uplink.packets_out * 1500);
    assert_eq!(c.uplink.dropped_total() + c.downlink.dropped_total(), 0);
    lab.down().unwrap();
    assert_gone(&n);
}

#[test]
fn random_loss_drops_about_p_of_the_segments() {
    if !require_root("random_loss_drops_about_p_of_the_segments") {
        return;
    }
    let n = unique_name("o");
    let mut cfg = LabConfig::symmetric(&n, Duration::from_millis(2), None);
    let p = 0.02;
    cfg.uplink.loss = LossModel::Random { p };
    let lab = Lab::up(cfg).unwrap();
    let total = 16 << 20;
    let r = checked_transfer(&lab, total);
    let c = settled_counters(&lab);
    let ratio = c.uplink.dropped_random as f64 / c.uplink.packets_in as f64;
    eprintln!(
        "2% loss: {} of {} segments dropped ({ratio:.4}); {} super-packets, {} split; receiver checksum errors {}",
        c.uplink.dropped_random,
        c.uplink.packets_in,
        c.uplink.superpackets_in,
        c.uplink.superpackets_split,
        r.csum_errors
    );
    assert_eq!(c.tun_mode, TunMode::Offload);
    assert_eq!(r.received, total);
    assert_eq!(r.received_hash, r.sent_hash, "payload corrupted on the way");
    // The segments the emulator cut and checksummed were all accepted by the kernel.
    assert_eq!(r.csum_errors, 0);
    // Every super-packet was split, and loss was decided per segment: over 11,000 segments
    // a 2% Bernoulli loss stays within 0.013..0.027 (more than 4 standard deviations).
    assert!(c.uplink.superpackets_in > 0, "no super-packet came through");
    assert_eq!(c.uplink.superpackets_split, c.uplink.superpackets_in);
    assert!(c.uplink.packets_in >= total / 1460);
    assert!(c.uplink.bytes_in <= c.uplink.packets_in * 1500);
    assert!((0.013..0.027).contains(&ratio), "loss ratio {ratio}");
    assert_eq!(
        c.uplink.packets_in,
        c.uplink.packets_out + c.uplink.dropped_total(),
        "every segment is either forwarded or counted as dropped"
    );
    lab.down().unwrap();
    assert_gone(&n);
}

#[test]
fn rate_limited_offloaded_link_stays_within_5_percent_of_the_rate() {
    if !require_root("rate_limited_offloaded_link_stays_within_5_percent_of_the_rate") {
        return;
    }
    let n = unique_name("o");
    // 300 Mbit/s: a 1500-byte segment serializes in 40 us, so super-packets travel as GSO
    // chunks of 2 segments (100 us).
    let rate = 300e6;
    let lab = Lab::up(LabConfig::symmetric(
        &n,
        Duration::from_millis(10),
        Some(rate),
    ))
    .unwrap();
    let (wire, window) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(1000));
            let t0 = Instant::now();
            let b0 = lab.counters().uplink.bytes_out;
            std::thread::sleep(Duration::from_millis(1500));
            let t1 = Instant::now();
            let b1 = lab.counters().uplink.bytes_out;
            let dt = (t1 - t0).as_secs_f64();
            ((b1 - b0) as f64 * 8.0 / dt, dt)
        });
        let obs = workload::transfer(
            &lab,
            &TransferSpec::timed(Side::Client, Duration::from_secs(3)),
        )
        .unwrap();
        eprintln!(
            "300 Mbit/s: goodput {:.1} Mbit/s over the whole transfer",
            obs.sender.rate_bps / 1e6
        );
        sampler.join().unwrap()
    });
    let c = lab.counters();
    eprintln!(
        "300 Mbit/s: wire rate {:.1} Mbit/s over {window:.2} s; {} super-packets, {} cut; queue drops {}",
        wire / 1e6,
        c.uplink.superpackets_in,
        c.uplink.superpackets_split,
        c.uplink.dropped_queue
    );
    assert_eq!(c.tun_mode, TunMode::Offload);
    assert!(c.uplink.superpackets_split > 0, "no super-packet was cut");
    assert!(
        (rate * 0.95..=rate * 1.05).contains(&wire),
        "wire rate {wire} is not within 5% of {rate}"
    );
    lab.down().unwrap();
    assert_gone(&n);
}

#[test]
fn without_offload_the_plain_path_still_forwards() {
    if !require_root("without_offload_the_plain_path_still_forwards") {
        return;
    }
    let n = unique_name("o");
    let mut cfg = LabConfig::symmetric(&n, Duration::from_millis(2), None);
    cfg.offload = false;
    let lab = Lab::up(cfg).unwrap();
    let total = 8 << 20;
    let r = checked_transfer(&lab, total);
    let c = lab.counters();
    assert_eq!(c.tun_mode, TunMode::Plain);
    assert_eq!(r.received, total);
    assert_eq!(r.received_hash, r.sent_hash);
    assert_eq!(c.uplink.superpackets_in, 0);
    assert!(c.uplink.bytes_out <= c.uplink.packets_out * 1500);
    lab.down().unwrap();
    assert_gone(&n);
}
