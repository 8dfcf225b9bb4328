//! Workloads inside a lab with plain sockets: connects, bulk transfers with a sender and a
//! receiver on opposite sides, and what both ends saw (their `tcp_info`, Recv-Q, buffers, and
//! each namespace's TcpExt counters). Observations go to netblame-core's rules unjudged.

use crate::lab::{Lab, Side};
use crate::netns;
use netblame_core::observe::transfer::{
    AppDeadline, ConnectObservation, PathFacts, ReceiverFacts, ReceiverHost, Retransmissions,
    SenderFacts, Transfer,
};
use netblame_core::observe::LimitShares;
use netblame_core::observe::TcpInfo;
use netblame_linux::host::procfs::{parse_proto_counters, read_proc_net};
use netblame_linux::sockopt;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The port workloads listen on inside the server namespace.
pub const PORT: u16 = 5201;

/// TcpExt, Tcp and other SNMP counters of namespace `ns` (`netstat` and `snmp` of
/// `/proc/thread-self/net`, read by a thread inside it), keyed `TcpExt.TCPToZeroWindowAdv`,
/// `Tcp.RetransSegs`, ...
pub fn counters(ns: &str) -> io::Result<BTreeMap<String, i64>> {
    netns::run_in(ns, || {
        let mut out = parse_proto_counters(&read_proc_net("netstat")?);
        out.extend(parse_proto_counters(&read_proc_net("snmp")?));
        Ok(out)
    })
}

/// `after[key] - before[key]`, 0 when absent.
pub fn delta(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>, key: &str) -> u64 {
    let v = |m: &BTreeMap<String, i64>| m.get(key).copied().unwrap_or(0);
    v(after).saturating_sub(v(before)).max(0) as u64
}

fn tcp_socket(rcvbuf: Option<u64>) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(b) = rcvbuf {
        sockopt::set_rcvbuf(&s, b)?;
    }
    Ok(s)
}

/// A listener on the server side (`SO_RCVBUF` set before listen is inherited by accepted sockets).
pub fn listen(lab: &Lab, rcvbuf: Option<u64>) -> io::Result<TcpListener> {
    netns::run_in(&lab.netns(Side::Server), move || {
        let s = tcp_socket(rcvbuf)?;
        s.set_reuse_address(true)?;
        s.bind(&SockAddr::from(SocketAddr::from((
            Side::Server.addr(),
            PORT,
        ))))?;
        s.listen(128)?;
        Ok(s.into())
    })
}

/// Connects from the client side to the server; returns the stream and how long connect took.
pub fn connect(
    lab: &Lab,
    rcvbuf: Option<u64>,
    timeout: Duration,
) -> io::Result<(TcpStream, Duration)> {
    netns::run_in(&lab.netns(Side::Client), move || {
        let s = tcp_socket(rcvbuf)?;
        let start = Instant::now();
        s.connect_timeout(
            &SockAddr::from(SocketAddr::from((Side::Server.addr(), PORT))),
            timeout,
        )?;
        Ok((s.into(), start.elapsed()))
    })
}

/// `count` sequential connects (each accepted and closed); their times and the client's SYN
/// retransmissions.
pub fn connects(lab: &Lab, count: usize) -> io::Result<ConnectObservation> {
    let listener = listen(lab, None)?;
    let before = counters(&lab.netns(Side::Client))?;
    let acceptor = std::thread::spawn(move || {
        for _ in 0..count {
            match listener.accept() {
                Ok((s, _)) => drop(s),
                Err(_) => return,
            }
        }
    });
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let (s, t) = connect(lab, None, Duration::from_secs(10))?;
        times.push(t);
        drop(s);
    }
    let _ = acceptor.join();
    let after = counters(&lab.netns(Side::Client))?;
    Ok(ConnectObservation {
        times,
        syn_retransmits: delta(&before, &after, "TcpExt.TCPSynRetrans"),
        path_rtt: lab.config.rtt(),
    })
}

/// A bulk transfer: who sends, how much or for how long, and how the receiver behaves.
#[derive(Debug, Clone)]
pub struct TransferSpec {
    /// The side that sends (the other side receives).
    pub sender: Side,
    /// Fixed size; with `None` the sender sends for `duration`.
    pub size: Option<u64>,
    pub duration: Duration,
    /// The receiving application gives up after this long.
    pub timeout: Option<Duration>,
    /// SO_RCVBUF the receiving application sets before connect/listen.
    pub receiver_rcvbuf: Option<u64>,
    /// Bytes per read call at the receiver.
    pub read_chunk: usize,
    /// Sleep between reads (a slow reader); with a timed sender only while it sends.
    pub read_pause: Option<Duration>,
    /// CPU work per byte read (a busy loop), nanoseconds: a reader bound by its CPU.
    pub read_work_ns_per_byte: u64,
    /// Congestion control of the sending socket (`TCP_CONGESTION`); default: the namespace's.
    pub congestion: Option<String>,
    /// Bytes per write call at the sender (tiny writes with `nodelay` make tiny segments).
    pub write_chunk: usize,
    /// TCP_NODELAY on the sender.
    pub nodelay: bool,
}

impl TransferSpec {
    /// A sender on `sender` sending for `duration` to an eager reader.
    pub fn timed(sender: Side, duration: Duration) -> TransferSpec {
        TransferSpec {
            sender,
            size: None,
            duration,
            timeout: None,
            receiver_rcvbuf: None,
            read_chunk: 128 << 10,
            read_pause: None,
            read_work_ns_per_byte: 0,
            congestion: None,
            write_chunk: 128 << 10,
            nodelay: false,
        }
    }
}

struct ReceiverResult {
    bytes: u64,
    recvq_max: u64,
    rcvbuf: u64,
    elapsed: Duration,
    /// CPU time the reading thread used.
    cpu: Duration,
}

/// Spins on the CPU for `d` of this thread's CPU time (a reader with work to do per byte).
fn burn(d: Duration) {
    if d.is_zero() {
        return;
    }
    let end = thread_cpu() + d;
    while thread_cpu() < end {
        std::hint::spin_loop();
    }
}

/// CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs one transfer and returns what both ends saw (the rules judge it).
pub fn transfer(lab: &Lab, spec: &TransferSpec) -> io::Result<Transfer> {
    let receiver_side = spec.sender.peer();
    let (client_rcvbuf, server_rcvbuf) = match receiver_side {
        Side::Client => (spec.receiver_rcvbuf, None),
        Side::Server => (None, spec.receiver_rcvbuf),
    };
    let listener = listen(lab, server_rcvbuf)?;
    let (sns, rns) = (lab.netns(spec.sender), lab.netns(receiver_side));
    let (sender_before, receiver_before) = (counters(&sns)?, counters(&rns)?);
    let (client, _) = connect(lab, client_rcvbuf, Duration::from_secs(10))?;
    let (server, _) = listener.accept()?;
    drop(listener);
    let (snd, rcv) = match spec.sender {
        Side::Server => (server, client),
        Side::Client => (client, server),
    };
    if let Some(cc) = &spec.congestion {
        socket2::SockRef::from(&snd)
            .set_tcp_congestion(cc.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("TCP_CONGESTION {cc}: {e}")))?;
    }
    let sender_first = sockopt::tcp_info(&snd)?;
    let start = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let snd_writer = snd.try_clone()?;
    let (size, duration, sent2) = (spec.size, spec.duration, sent.clone());
    let write_chunk = spec.write_chunk.max(1);
    snd.set_nodelay(spec.nodelay)?;
    let sender = std::thread::spawn(move || {
        let mut s = snd_writer;
        let buf = vec![0x5au8; write_chunk];
        loop {
            let want = match size {
                Some(total) => {
                    (total - sent2.load(Ordering::Relaxed)).min(buf.len() as u64) as usize
                }
                None if start.elapsed() >= duration => 0,
                None => buf.len(),
            };
            if want == 0 {
                break;
            }
            match s.write(&buf[..want]) {
                Ok(n) => {
                    sent2.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    });
    let (chunk, pause, timeout) = (spec.read_chunk.max(1), spec.read_pause, spec.timeout);
    let work_ns = spec.read_work_ns_per_byte;
    let receiver = std::thread::spawn(move || -> io::Result<ReceiverResult> {
        let mut r = rcv;
        let mut buf = vec![0u8; chunk];
        let mut bytes = 0u64;
        let mut recvq_max = 0u64;
        let cpu0 = thread_cpu();
        if let Some(t) = timeout {
            r.set_read_timeout(Some(t))?;
        }
        loop {
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                break;
            }
            recvq_max = recvq_max.max(sockopt::recv_queue(&r).unwrap_or(0));
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    bytes += n as u64;
                    burn(Duration::from_nanos(work_ns * n as u64));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
            // A timed sender stops after `duration`; the reader then drains at full speed
            // (keeps scenarios short).
            if let Some(p) = pause.filter(|_| size.is_some() || start.elapsed() < duration) {
                std::thread::sleep(p);
            }
        }
        let elapsed = start.elapsed();
        let cpu = thread_cpu().saturating_sub(cpu0);
        let rcvbuf = sockopt::rcvbuf(&r)?;
        // The application gives up: close (the sender's writes then fail).
        let _ = r.shutdown(Shutdown::Both);
        Ok(ReceiverResult {
            bytes,
            recvq_max,
            rcvbuf,
            elapsed,
            cpu,
        })
    });
    let rr = receiver
        .join()
        .map_err(|_| io::Error::other("receiver thread panicked"))?;
    let sender_last = sockopt::tcp_info(&snd)?;
    let _ = snd.shutdown(Shutdown::Both);
    let _ = sender.join();
    let rr = rr?;
    let (sender_after, receiver_after) = (counters(&sns)?, counters(&rns)?);
    let kernel = netblame_linux::sysctl::kernel_version()?;
    let k2 = kernel.clone();
    let settings = netns::run_in(&rns, move || Ok(netblame_linux::sysctl::rcv_settings(&k2)))?;
    let stats = lab.counters();
    let path_drops = stats.uplink.dropped_total() + stats.downlink.dropped_total();
    let elapsed_us = rr.elapsed.as_micros() as u64;
    let shares = LimitShares::between(&sender_first, &sender_last, elapsed_us);
    let d32 = |f: fn(&TcpInfo) -> Option<u32>| {
        f(&sender_last)
            .zip(f(&sender_first))
            .map_or(0, |(b, a)| b.saturating_sub(a) as u64)
    };
    let goodput = rr.bytes as f64 * 8.0 / rr.elapsed.as_secs_f64().max(1e-6);
    Ok(Transfer {
        subject: format!(
            "{} in {}",
            netblame_core::Bytes(rr.bytes),
            netblame_core::units::format_duration(rr.elapsed)
        ),
        sender: SenderFacts {
            shares,
            observed: shares.is_some(),
            expected_busy: true,
            bytes: rr.bytes,
            rate_bps: goodput,
            streams: 1,
            peer_window_bytes: sender_last.snd_wnd.map(u64::from),
            reordering: Some(d32(|t| t.reord_seen)),
            window_scaling: Some(sender_last.has_wscale()),
            retrans: Retransmissions {
                segments: sender_last
                    .total_retrans
                    .saturating_sub(sender_first.total_retrans) as u64,
                data_segments: d32(|t| t.data_segs_out),
                spurious: d32(|t| t.dsack_dups),
                in_recovery: shares.is_some_and(|s| s.in_loss_recovery),
                ..Default::default()
            },
            ..Default::default()
        },
        receiver: ReceiverFacts {
            who: Some("the lab's reader".into()),
            so_rcvbuf: spec.receiver_rcvbuf,
            rcvbuf_bytes: Some(rr.rcvbuf),
            recv_q_max_bytes: Some(rr.recvq_max),
            zero_windows: delta(
                &receiver_before,
                &receiver_after,
                "TcpExt.TCPToZeroWindowAdv",
            ),
            window_probes: delta(&sender_before, &sender_after, "TcpExt.TCPWinProbe"),
            host: Some(ReceiverHost { kernel, settings }),
            cpu_share: Some(rr.cpu.as_secs_f64() / rr.elapsed.as_secs_f64().max(1e-6)),
            ..Default::default()
        },
        path: PathFacts {
            rtt: Some(lab.config.rtt()),
            link_bps: match spec.sender {
                Side::Client => lab.config.uplink.rate_bps,
                Side::Server => lab.config.downlink.rate_bps,
            },
            drops: Some(path_drops),
            // The emulator never rewrites TCP options.
            options_preserved: true,
            ..Default::default()
        },
        buffers: Vec::new(),
        // The reader's timeout and the planned size, for the window model's arithmetic
        // (`transfer-misses-timeout`); whether it gave up is in the bytes and the time.
        deadline: spec.timeout.map(|timeout| AppDeadline {
            timeout,
            bytes_needed: spec.size,
            timeline: Vec::new(),
        }),
    })
}

/// Request/response round trips of one byte over one connection; returns each RTT.
pub fn ping_pong(lab: &Lab, count: usize) -> io::Result<Vec<Duration>> {
    let listener = listen(lab, None)?;
    let (mut client, _) = connect(lab, None, Duration::from_secs(10))?;
    let (mut server, _) = listener.accept()?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let echo = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while let Ok(1) = server.read(&mut b) {
            if server.write_all(&b).is_err() {
                break;
            }
        }
    });
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = Vec::with_capacity(count);
    let mut b = [7u8; 1];
    for _ in 0..count {
        let t = Instant::now();
        client.write_all(&b)?;
        client.read_exact(&mut b)?;
        out.push(t.elapsed());
    }
    drop(client);
    let _ = echo.join();
    Ok(out)
}
