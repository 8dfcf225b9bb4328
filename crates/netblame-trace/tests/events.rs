//! Each traced event caused for real, in a network namespace of its own (named `trace-...`),
//! with events kept by that namespace's inode so parallel tests and the rest of the host do not
//! mix in.

use netblame_core::observe::trace::{EventKind, TraceEvent, TraceSummary};
use netblame_core::observe::TcpState;
use netblame_core::rules::kernel_events;
use netblame_testkit::{require_root, Netns};
use netblame_trace::{rmem_limits, Config, Tracer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// The namespace's inode, as the kernel reports it in events.
fn inode(ns: &Netns) -> u32 {
    std::fs::metadata(format!("/run/netns/{}", ns.name()))
        .expect("netns file")
        .ino() as u32
}

fn start() -> Tracer {
    Tracer::start(&Config::default()).unwrap_or_else(|e| panic!("tracer: {e}"))
}

/// Polls until `done` holds for the namespace's events or `limit` passes; returns the events.
fn collect(
    t: &mut Tracer,
    ns: u32,
    limit: Duration,
    done: impl Fn(&[TraceEvent]) -> bool,
) -> Vec<TraceEvent> {
    let end = Instant::now() + limit;
    let mut evs = Vec::new();
    while Instant::now() < end && !done(&evs) {
        t.poll(Duration::from_millis(50), &mut |e| {
            if e.netns == ns {
                evs.push(e.clone())
            }
        });
    }
    evs
}

/// Sends `bytes` over loopback inside the calling thread's namespace to a reader that reads in
/// `chunk`-byte reads (with `pause` between them); returns the server's address.
fn transfer(bytes: usize, chunk: usize, pause: Duration, rcvbuf: Option<u64>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        if let Some(n) = rcvbuf {
            netblame_linux::sockopt::set_rcvbuf(&s, n).unwrap();
        }
        let mut buf = vec![0u8; chunk];
        let mut got = 0;
        while got < bytes {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        got
    });
    let mut c = TcpStream::connect(addr).unwrap();
    let block = vec![7u8; 64 * 1024];
    let mut sent = 0;
    while sent < bytes {
        c.write_all(&block).unwrap();
        sent += block.len();
    }
    drop(c);
    assert!(reader.join().unwrap() >= bytes);
    addr
}

#[test]
fn resets_to_a_closed_port_with_reason_and_owner() {
    if !require_root("resets_to_a_closed_port_with_reason_and_owner") {
        return;
    }
    let ns = Netns::new("trace-rst");
    let id = inode(&ns);
    let mut t = start();
    let refused = ns.run(|| TcpStream::connect("127.0.0.1:9").unwrap_err().kind());
    assert_eq!(refused, std::io::ErrorKind::ConnectionRefused);
    let evs = collect(&mut t, id, Duration::from_secs(5), |evs| {
        evs.iter()
            .any(|e| matches!(e.kind, EventKind::ResetReceived { .. }))
            && evs
                .iter()
                .any(|e| matches!(e.kind, EventKind::ResetSent { .. }))
    });
    let sent = evs
        .iter()
        .find(|e| matches!(e.kind, EventKind::ResetSent { .. }))
        .unwrap_or_else(|| panic!("no reset sent in {evs:#?}"));
    assert_eq!(sent.conn.unwrap().sport, 9, "{sent:?}");
    // Older kernels have no sk_rst_reason; where there is one it is named from BTF.
    if let EventKind::ResetSent {
        reason: Some(r), ..
    } = &sent.kind
    {
        assert_eq!(r, "NO_SOCKET");
    }
    let recv = evs
        .iter()
        .find(|e| matches!(e.kind, EventKind::ResetReceived { .. }))
        .unwrap();
    assert!(matches!(
        recv.kind,
        EventKind::ResetReceived {
            state: Some(TcpState::SynSent)
        }
    ));
    assert_eq!(recv.owner.as_ref().unwrap().pid, std::process::id());
    // The SYN to a closed port is itself dropped, with the kernel's reason.
    assert!(
        evs.iter()
            .any(|e| matches!(&e.kind, EventKind::Drop { reason, .. } if reason == "NO_SOCKET")),
        "{evs:#?}"
    );
}

#[test]
fn state_changes_and_connect_time_from_connects() {
    if !require_root("state_changes_and_connect_time_from_connects") {
        return;
    }
    let ns = Netns::new("trace-st");
    let id = inode(&ns);
    let mut t = start();
    ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        for _ in 0..3 {
            let _c = TcpStream::connect(a).unwrap();
            let _s = l.accept().unwrap();
        }
    });
    let established = |evs: &[TraceEvent]| {
        evs.iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::StateChange {
                        old: Some(TcpState::SynSent),
                        new: Some(TcpState::Established)
                    }
                )
            })
            .count()
    };
    let evs = collect(&mut t, id, Duration::from_secs(5), |evs| {
        established(evs) >= 3
    });
    assert_eq!(established(&evs), 3, "{evs:#?}");
    let mut acc = netblame_core::observe::trace::TraceAccumulator::default();
    evs.iter().for_each(|e| acc.add(e));
    let mut s = TraceSummary::default();
    acc.finish(&mut s);
    assert_eq!(s.connects.len(), 3);
    for c in &s.connects {
        assert!(c.duration_us > 0);
        assert_eq!(c.owner.as_ref().unwrap().pid, std::process::id());
    }
}

#[test]
fn nftables_drop_rule_shows_netfilter_reason_and_finding() {
    if !require_root("nftables_drop_rule_shows_netfilter_reason_and_finding") {
        return;
    }
    let ns = Netns::new("trace-nft");
    ns.nft("table inet trace_t {\n chain input {\n type filter hook input priority 0;\n tcp dport 9 drop\n }\n}\n");
    let id = inode(&ns);
    let mut t = start();
    ns.run(|| {
        let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let _ = TcpStream::connect_timeout(&a, Duration::from_millis(300));
    });
    let evs = collect(&mut t, id, Duration::from_secs(5), |evs| {
        evs.iter().any(
            |e| matches!(&e.kind, EventKind::Drop { reason, .. } if reason == "NETFILTER_DROP"),
        )
    });
    let drop = evs
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Drop { reason, .. } if reason == "NETFILTER_DROP"))
        .unwrap_or_else(|| panic!("no NETFILTER_DROP in {evs:#?}"));
    let EventKind::Drop {
        location, l4proto, ..
    } = &drop.kind
    else {
        unreachable!()
    };
    assert_eq!(*l4proto, 6);
    assert_eq!(drop.conn.unwrap().dport, 9);
    assert!(
        location.as_deref().is_some_and(|l| l.contains('+')),
        "location resolved to a function: {location:?}"
    );
    // The kernel's own per-reason count has it too, and the core maps it to the host layer.
    let s = t.finish(rmem_limits());
    let d = s
        .drops
        .iter()
        .find(|d| d.reason == "NETFILTER_DROP")
        .unwrap();
    assert!(d.count >= 1);
    let f = kernel_events::findings(&s);
    let nf = f.iter().find(|f| f.id == "drops-netfilter").unwrap();
    assert!(nf.summary.contains("NETFILTER_DROP"), "{}", nf.summary);
}

#[test]
fn retransmissions_through_a_lossy_nftables_rule() {
    if !require_root("retransmissions_through_a_lossy_nftables_rule") {
        return;
    }
    let ns = Netns::new("trace-rtx");
    // Drop 10% of the segments arriving at the server (at input: a drop at output is an
    // error to the sender, not a loss) (loopback segments are up to 64 KiB, so a
    // few hundred of them): the sender retransmits them.
    ns.nft("table inet trace_l {\n chain input {\n type filter hook input priority 0;\n tcp dport 5001 numgen random mod 10 == 0 drop\n }\n}\n");
    let id = inode(&ns);
    let mut t = start();
    ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:5001").unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        });
        let mut c = TcpStream::connect("127.0.0.1:5001").unwrap();
        let block = vec![1u8; 16 * 1024];
        for _ in 0..2000 {
            c.write_all(&block).unwrap();
        }
        drop(c);
        reader.join().unwrap();
    });
    let rtx = |evs: &[TraceEvent]| {
        evs.iter()
            .filter(|e| matches!(e.kind, EventKind::Retransmit { .. }))
            .count()
    };
    let evs = collect(&mut t, id, Duration::from_secs(10), |evs| rtx(evs) >= 10);
    let drops = evs
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Drop { .. }))
        .count();
    assert!(rtx(&evs) >= 10, "{} retransmits, {drops} drops", rtx(&evs));
    let mut acc = netblame_core::observe::trace::TraceAccumulator::default();
    evs.iter().for_each(|e| acc.add(e));
    let mut s = TraceSummary {
        duration_us: 1_000_000,
        ..Default::default()
    };
    acc.finish(&mut s);
    let top = &s.retransmits[0];
    assert_eq!(top.conn.dport, 5001);
    assert_eq!(top.owner.as_ref().unwrap().pid, std::process::id());
    let f = kernel_events::findings(&s);
    let c = f
        .iter()
        .find(|f| f.id == "retransmits-concentrated")
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(c.subject.as_deref(), Some("127.0.0.1"));
}

#[test]
fn receive_buffer_grows_then_stops_at_tcp_rmem_max() {
    if !require_root("receive_buffer_grows_then_stops_at_tcp_rmem_max") {
        return;
    }
    let ns = Netns::new("trace-buf");
    ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.tcp_rmem=4096 131072 1048576",
    ]);
    let id = inode(&ns);
    let mut t = start();
    let (addr, limits) = ns.run(|| {
        (
            transfer(64 << 20, 256 << 10, Duration::ZERO, None),
            rmem_limits(),
        )
    });
    assert_eq!(limits.tcp_rmem[2], 1 << 20);
    let evs = collect(&mut t, id, Duration::from_secs(3), |_| false);
    let mut acc = netblame_core::observe::trace::TraceAccumulator::default();
    evs.iter().for_each(|e| acc.add(e));
    let mut s = TraceSummary {
        limits,
        duration_us: 3_000_000,
        ..Default::default()
    };
    acc.finish(&mut s);
    let b = s
        .buffers
        .iter()
        .find(|b| b.conn.sport == addr.port())
        .unwrap_or_else(|| panic!("no buffer steps for the receiver in {:#?}", s.buffers));
    assert!(b.steps.len() >= 2, "autotuning grew the buffer: {b:#?}");
    assert!(b
        .steps
        .windows(2)
        .all(|w| w[1].rcvbuf > w[0].rcvbuf || b.locked));
    assert_eq!(b.final_rcvbuf(), 1 << 20, "{b:#?}");
    let f = kernel_events::findings(&s);
    let capped = f
        .iter()
        .find(|f| {
            f.id == "rcvbuf-growth-capped"
                && f.subject
                    .as_deref()
                    .is_some_and(|x| x.contains(&format!(":{} ->", addr.port())))
        })
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(capped.layer, netblame_core::Layer::Host);
    assert!(capped.summary.contains("tcp_rmem[2]"));
}

#[test]
fn so_rcvbuf_shows_as_a_locked_buffer() {
    if !require_root("so_rcvbuf_shows_as_a_locked_buffer") {
        return;
    }
    let ns = Netns::new("trace-lck");
    let id = inode(&ns);
    let mut t = start();
    let addr = ns.run(|| transfer(4 << 20, 16 << 10, Duration::ZERO, Some(64 << 10)));
    let evs = collect(&mut t, id, Duration::from_secs(2), |_| false);
    let locked = evs.iter().find(|e| {
        e.conn.is_some_and(|c| c.sport == addr.port())
            && matches!(e.kind, EventKind::RcvSpace { locked: true, .. })
    });
    let Some(TraceEvent {
        kind: EventKind::RcvSpace { rcvbuf, .. },
        ..
    }) = locked
    else {
        panic!("no locked rcv-space event for the receiver in {evs:#?}");
    };
    // SO_RCVBUF = 64 KiB: the kernel doubles it.
    assert_eq!(*rcvbuf, 128 << 10);
}

#[test]
fn net_rx_histograms_fill_under_load() {
    if !require_root("net_rx_histograms_fill_under_load") {
        return;
    }
    let ns = Netns::new("trace-rx");
    let t = start();
    ns.run(|| transfer(32 << 20, 64 << 10, Duration::ZERO, None));
    let s = t.finish(rmem_limits());
    let total = s.net_rx_total();
    assert!(total.runs > 0, "{:#?}", s.net_rx);
    assert_eq!(total.histogram.count(), total.runs);
    assert!(total.max_ns > 0 && total.max_at_wall_ns > 0);
    assert!(s.napi.polls > 0);
    assert!(s
        .lost
        .iter()
        .any(|l| l.kind == "state-change" && l.seen > 0));
    assert!(s
        .capabilities
        .attached
        .iter()
        .any(|a| a == "irq:softirq_exit"));
    // This kernel refuses function tracing; where it allows it the detail names what is timed.
    assert!(!s.capabilities.function_tracing.detail.is_empty());
}
