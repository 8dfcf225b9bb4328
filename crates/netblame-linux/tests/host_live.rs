//! Live host-audit tests: each causes a condition inside a network namespace it creates and
//! checks the counters and the finding (listen overflow, zero windows, qdisc drops, a tcp_rmem
//! below the BDP, one TX queue carrying everything).

mod host_common;

use host_common::{run, Netns};
use netblame_core::diagnose::{judge_host as judge, PathSpec};
use netblame_core::observe::host::HostSnapshot;
use netblame_core::{Finding, Severity};
use netblame_linux::host;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn find<'a>(f: &'a [Finding], id: &str) -> &'a Finding {
    f.iter().find(|f| f.id == id).unwrap_or_else(|| {
        panic!(
            "no {id} among {:?}",
            f.iter().map(|f| f.id).collect::<Vec<_>>()
        )
    })
}

#[test]
fn listen_overflow_is_found() {
    if !netblame_testkit::require_root("listen_overflow_is_found") {
        return;
    }
    let ns = Netns::new("nbhl");
    let snap: HostSnapshot = ns.run(|| {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        listener
            .bind(&SockAddr::from(
                "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            ))
            .unwrap();
        listener.listen(1).unwrap(); // accept queue of 2; never accepted
        let addr = listener.local_addr().unwrap();
        let pending = host::begin(Vec::new());
        let mut clients = Vec::new();
        for _ in 0..8 {
            let c = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
            c.set_nonblocking(true).unwrap();
            let _ = c.connect(&addr); // EINPROGRESS
            clients.push(c);
        }
        // Wait until the kernel has counted the overflows (bounded generously).
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(200));
            let text = host::procfs::read_proc_net("netstat").unwrap();
            let now = host::procfs::parse_proto_counters(&text);
            if now.get("TcpExt.ListenOverflows").copied().unwrap_or(0) > 0 {
                break;
            }
        }
        pending.finish()
    });
    let overflows = snap.proto_delta("TcpExt.ListenOverflows").unwrap();
    assert!(overflows > 0, "ListenOverflows did not rise");
    let f = judge(&snap, None);
    let l = find(&f, "listen-overflows");
    assert_eq!(l.severity, Severity::Critical);
    assert_eq!(l.value("listen_overflows"), Some(overflows as f64));
    assert!(l.explanation.contains("SYN"), "{}", l.explanation);
    // The host's own namespace did not see them: the counters were the namespace's.
    assert!(snap.window_us > 0);
}

#[test]
fn receiver_that_stops_reading_advertises_zero_windows() {
    if !netblame_testkit::require_root("receiver_that_stops_reading_advertises_zero_windows") {
        return;
    }
    let ns = Netns::new("nbhz");
    let snap = ns.run(|| {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        listener.set_recv_buffer_size(65536).unwrap();
        listener
            .bind(&SockAddr::from(
                "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            ))
            .unwrap();
        listener.listen(4).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let pending = host::begin(Vec::new());
        let mut sender = std::net::TcpStream::connect(addr).unwrap();
        let (_receiver, _) = listener.accept().unwrap(); // never read
        sender.set_nonblocking(true).unwrap();
        let chunk = vec![7u8; 65536];
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            if sender.write(&chunk).is_err() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        pending.finish()
    });
    assert!(snap.proto_delta("TcpExt.TCPToZeroWindowAdv").unwrap() > 0);
    let f = judge(&snap, None);
    let z = find(&f, "receiver-zero-window");
    assert!(z.value("zero_windows").unwrap() >= 1.0);
    assert_eq!(z.layer, netblame_core::Layer::Application);
}

#[test]
fn tcp_rmem_below_the_named_bdp() {
    if !netblame_testkit::require_root("tcp_rmem_below_the_named_bdp") {
        return;
    }
    let host_rmem = netblame_linux::sysctl::read_normalized("net.ipv4.tcp_rmem").unwrap();
    let ns = Netns::new("nbhr");
    let snap = ns.run(|| {
        // tcp_rmem is per network namespace: only this namespace changes.
        netblame_linux::sysctl::write("net.ipv4.tcp_rmem", "4096 131072 1048576").unwrap();
        host::collect(Duration::from_millis(100), Vec::new())
    });
    assert_eq!(
        netblame_linux::sysctl::read_normalized("net.ipv4.tcp_rmem").unwrap(),
        host_rmem
    );
    assert_eq!(snap.sysctls["net.ipv4.tcp_rmem"], "4096 131072 1048576");
    // 1 Gbit/s x 100 ms = 12.5 MB of BDP; 1 MiB of buffer gives about 512 KiB of window.
    let path = PathSpec {
        rate_bps: 1e9,
        rtt: Duration::from_millis(100),
    };
    let f = judge(&snap, Some(path));
    let b = f
        .iter()
        .find(|f| {
            f.id == "buffer-max-below-bdp" && f.subject.as_deref() == Some("net.ipv4.tcp_rmem[2]")
        })
        .expect("tcp_rmem finding");
    assert_eq!(b.severity, Severity::Critical);
    assert_eq!(b.value("buffer_max"), Some(1_048_576.0));
    assert_eq!(b.value("bdp"), Some(12_500_000.0));
    assert!(b.value("ceiling").unwrap() < 1e9 / 10.0);
    // A path this buffer fills is not flagged.
    let small = PathSpec {
        rate_bps: 10e6,
        rtt: Duration::from_millis(10),
    };
    assert!(judge(&snap, Some(small))
        .iter()
        .all(|f| f.subject.as_deref() != Some("net.ipv4.tcp_rmem[2]")));
}

#[test]
fn qdisc_drops_are_counted() {
    if !netblame_testkit::require_root("qdisc_drops_are_counted") {
        return;
    }
    let ns = Netns::new("nbhq");
    // A slow, short queue on loopback: UDP floods overflow it.
    run(&[
        "ip", "netns", "exec", &ns.0, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate",
        "1mbit", "burst", "1600", "limit", "3000",
    ]);
    let snap = ns.run(|| {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let pending = host::begin(Vec::new());
        let payload = [1u8; 1000];
        for _ in 0..500 {
            let _ = tx.send_to(&payload, rx.local_addr().unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
        pending.finish()
    });
    let q = snap.qdisc_deltas();
    let tbf = q
        .iter()
        .find(|q| q.kind == "tbf" && q.device == "lo")
        .expect("tbf on lo");
    assert!(tbf.drops > 0, "{tbf:?}");
    let f = judge(&snap, None);
    let d = find(&f, "qdisc-drops");
    assert_eq!(d.value("drops"), Some(tbf.drops as f64));
    assert_eq!(
        d.subject.as_deref(),
        Some(format!("dev lo qdisc tbf {}", tbf.handle).as_str())
    );
}

#[test]
fn one_tx_queue_carrying_everything_is_skew() {
    if !netblame_testkit::require_root("one_tx_queue_carrying_everything_is_skew") {
        return;
    }
    let a = Netns::new("nbta");
    let b = Netns::new("nbtb");
    let (va, vb) = (
        netblame_testkit::unique_name("nbva"),
        netblame_testkit::unique_name("nbvb"),
    );
    run(&[
        "ip",
        "link",
        "add",
        &va,
        "numtxqueues",
        "4",
        "numrxqueues",
        "4",
        "netns",
        &a.0,
        "type",
        "veth",
        "peer",
        "name",
        &vb,
        "numtxqueues",
        "4",
        "numrxqueues",
        "4",
        "netns",
        &b.0,
    ]);
    run(&[
        "ip",
        "-n",
        &a.0,
        "addr",
        "add",
        "198.18.91.1/24",
        "dev",
        &va,
    ]);
    run(&[
        "ip",
        "-n",
        &b.0,
        "addr",
        "add",
        "198.18.91.2/24",
        "dev",
        &vb,
    ]);
    run(&["ip", "-n", &a.0, "link", "set", &va, "up"]);
    run(&["ip", "-n", &b.0, "link", "set", &vb, "up"]);
    // mq: one child qdisc per TX queue, so per-queue counts are visible.
    run(&[
        "ip", "netns", "exec", &a.0, "tc", "qdisc", "replace", "dev", &va, "root", "handle", "1:",
        "mq",
    ]);
    let listener = b.run(|| std::net::TcpListener::bind("198.18.91.2:0").unwrap());
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = std::io::copy(&mut s, &mut std::io::sink());
    });
    let dev = va.clone();
    let snap = a.run(move || {
        let pending = host::begin(Vec::new());
        let mut s = std::net::TcpStream::connect(("198.18.91.2", port)).unwrap();
        let chunk = vec![3u8; 1 << 16];
        for _ in 0..400 {
            s.write_all(&chunk).unwrap();
        }
        drop(s);
        let snap = pending.finish();
        assert!(snap.after.queues.iter().filter(|q| q.device == dev).count() >= 2);
        snap
    });
    reader.join().unwrap();
    let f = judge(&snap, None);
    let skew = find(&f, "tx-queue-skew");
    assert_eq!(skew.subject.as_deref(), Some(format!("dev {va}").as_str()));
    assert!(skew.value("top_queue_share").unwrap() >= 90.0);
    assert_eq!(skew.value("queues"), Some(4.0));
}
