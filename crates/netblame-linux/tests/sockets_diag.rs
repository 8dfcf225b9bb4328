//! sock_diag dumps of real loopback connections, judged by netblame-core's connection rules.
//! Each test uses its own ephemeral listener port and filters the dump to it.

use netblame_core::diagnose::{connection as judge, ConnectionVerdict, HostContext};
use netblame_core::observe::{SocketSnapshot, TcpState};
use netblame_core::Limit;
use netblame_linux::diag::{dump_filtered, DumpRequest};
use netblame_linux::sockopt;
use netblame_testkit::Netns;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);

fn host() -> HostContext {
    let k = netblame_linux::sysctl::kernel_version().expect("kernel version");
    let s = netblame_linux::sysctl::rcv_settings(&k);
    HostContext::new(k, s)
}

/// Established sockets with `port` on either end, with processes.
fn sockets_on(port: u16) -> Vec<SocketSnapshot> {
    let req = DumpRequest {
        states: vec![TcpState::Established],
        ..Default::default()
    };
    dump_filtered(&req, |s| s.local.port() == port || s.peer.port() == port)
        .expect("sock_diag dump")
        .sockets
}

/// The server side (local port = listener) and the client side (peer port = listener).
fn sides(v: &[SocketSnapshot], port: u16) -> (SocketSnapshot, SocketSnapshot) {
    let server = v
        .iter()
        .find(|s| s.local.port() == port)
        .expect("server side listed");
    let client = v
        .iter()
        .find(|s| s.peer.port() == port)
        .expect("client side listed");
    (server.clone(), client.clone())
}

/// Two samples INTERVAL apart, judged: (server verdict, client verdict, later snapshots).
fn judged(
    port: u16,
) -> (
    ConnectionVerdict,
    ConnectionVerdict,
    SocketSnapshot,
    SocketSnapshot,
) {
    let host = host();
    let first = sockets_on(port);
    let t0 = Instant::now();
    std::thread::sleep(INTERVAL);
    let second = sockets_on(port);
    let iv = t0.elapsed();
    let (s0, c0) = sides(&first, port);
    let (s1, c1) = sides(&second, port);
    (
        judge(Some(&s0), &s1, iv, &host),
        judge(Some(&c0), &c1, iv, &host),
        s1,
        c1,
    )
}

fn ids(v: &ConnectionVerdict) -> Vec<&'static str> {
    v.findings.iter().map(|f| f.id).collect()
}

fn pair(listen: &str) -> (TcpListener, TcpStream, TcpStream, u16) {
    let l = TcpListener::bind(listen).unwrap();
    let port = l.local_addr().unwrap().port();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (l, c, s, port)
}

#[test]
fn ipv6_connection_is_listed_and_owned_by_this_process() {
    let (_l, _c, _s, port) = pair("[::1]:0");
    let v = sockets_on(port);
    assert_eq!(v.len(), 2, "{v:#?}");
    let me = std::process::id();
    for s in &v {
        assert!(s.local.is_ipv6() && s.peer.is_ipv6(), "{s:?}");
        assert_eq!(s.state, TcpState::Established);
        assert!(s.inode != 0 && s.cookie != 0);
        assert!(s.tcp_info.as_ref().is_some_and(|t| t.len >= 104));
        assert!(s.skmem.is_some(), "SKMEMINFO requested");
        assert!(s.congestion.as_deref().is_some_and(|c| !c.is_empty()));
        assert_eq!(s.shutdown, Some(0));
        let owner = s
            .owners
            .iter()
            .find(|o| o.pid == me)
            .expect("this process owns it");
        assert!(!owner.command.is_empty());
    }
}

#[test]
fn ipv4_connection_maps_to_our_fds() {
    use std::os::fd::AsRawFd;
    let (_l, c, s, port) = pair("127.0.0.1:0");
    let v = sockets_on(port);
    let (server, client) = sides(&v, port);
    assert_eq!(client.owners[0].fd, c.as_raw_fd() as u32);
    assert_eq!(server.owners[0].fd, s.as_raw_fd() as u32);
    assert_eq!(client.local, c.local_addr().unwrap());
    assert_eq!(client.peer, SocketAddr::from(([127, 0, 0, 1], port)));
}

#[test]
fn state_filter_is_applied_by_the_kernel() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let listening = |states: Vec<TcpState>| {
        dump_filtered(
            &DumpRequest {
                states,
                ipv6: false,
                processes: false,
                ..Default::default()
            },
            |s| s.local.port() == port,
        )
        .unwrap()
        .sockets
    };
    let only_listen = listening(vec![TcpState::Listen]);
    assert_eq!(only_listen.len(), 1);
    assert_eq!(only_listen[0].state, TcpState::Listen);
    assert!(
        only_listen[0].owners.is_empty(),
        "processes: false maps nothing"
    );
    assert!(listening(vec![TcpState::Established]).is_empty());
}

#[test]
fn receiver_that_stops_reading() {
    let (_l, mut client, _server_never_reads, port) = pair("127.0.0.1:0");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        client
            .set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        std::thread::spawn(move || {
            let buf = vec![0x5au8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                let _ = client.write(&buf);
            }
        })
    };
    // Let the receive buffer fill and the window close.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = sockets_on(port);
        let (server, _) = sides(&v, port);
        if server.tcp_info.as_ref().and_then(|t| t.rcv_wnd) == Some(0) || Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (server_v, client_v, server, _client) = judged(port);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    assert!(
        ids(&server_v).contains(&"receiver-zero-window"),
        "{server_v:#?}"
    );
    let zw = server_v
        .findings
        .iter()
        .find(|f| f.id == "receiver-zero-window")
        .unwrap();
    assert!(zw.value("recv_q").unwrap() > 0.0);
    let me = std::process::id().to_string();
    assert!(
        zw.summary.contains(&me),
        "names the process: {}",
        zw.summary
    );
    assert!(server.recv_q_bytes > 0);

    assert_eq!(client_v.limit, Some(Limit::ReceiverWindow), "{client_v:#?}");
    assert!(
        ids(&client_v).contains(&"receiver-window-limited"),
        "{client_v:#?}"
    );
}

/// A writer thread that writes as fast as it can and a reader thread that reads as fast as it
/// can, until dropped.
struct Pump {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pump {
    fn start(mut writer: TcpStream, mut reader: TcpStream) -> Pump {
        let stop = Arc::new(AtomicBool::new(false));
        writer
            .set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        reader
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (s1, s2) = (stop.clone(), stop.clone());
        let threads = vec![
            std::thread::spawn(move || {
                // Larger than one segment (64 KiB): the kernel starts its send-buffer stopwatch
                // only when a write still has data left as it pushes and waits for room.
                let buf = vec![0xa5u8; 1 << 20];
                while !s1.load(Ordering::Relaxed) {
                    let _ = writer.write(&buf);
                }
            }),
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while !s2.load(Ordering::Relaxed) {
                    let _ = reader.read(&mut buf);
                }
            }),
        ];
        Pump { stop, threads }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn tiny_send_buffer_is_send_buffer_limited() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sockopt::set_sndbuf(&sock, 4096).unwrap();
    sock.connect(&l.local_addr().unwrap().into()).unwrap();
    let client: TcpStream = sock.into();
    let (server, _) = l.accept().unwrap();
    let pump = Pump::start(client, server);
    std::thread::sleep(Duration::from_millis(300));
    // Two instants on a loaded machine may both catch the writer descheduled (buffer empty):
    // judge up to three intervals.
    let mut attempt = 0;
    let (client_v, client) = loop {
        let (_, v, _, c) = judged(port);
        attempt += 1;
        if v.limit == Some(Limit::SendBuffer) || attempt == 3 {
            break (v, c);
        }
    };
    drop(pump);
    let m = client.skmem.unwrap();
    assert!(m.sndbuf_bytes <= 8192, "{m:?}");
    assert_eq!(
        client_v.limit,
        Some(Limit::SendBuffer),
        "{client_v:#?} {client:#?}"
    );
    let f = client_v
        .findings
        .iter()
        .find(|f| f.id == "send-buffer-limited")
        .unwrap_or_else(|| panic!("{client_v:#?}"));
    assert_eq!(f.value("sndbuf"), Some(m.sndbuf_bytes as f64));
}

#[test]
fn idle_connection_gets_no_blame() {
    let (_l, mut client, mut server, port) = pair("127.0.0.1:0");
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (server_v, client_v, _, _) = judged(port);
    for v in [&server_v, &client_v] {
        assert_eq!(v.limit, Some(Limit::Application), "{v:#?}");
        assert!(v.findings.is_empty(), "no blame for idle: {v:#?}");
        assert!(!v.is_problem());
    }
}

#[test]
fn rcvbuf_64k_before_connect_is_fixed_small_with_wscale_evidence() {
    let host = host();
    let auto = host.autotuned_wscale().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sockopt::set_rcvbuf(&sock, 65536).unwrap();
    sock.connect(&l.local_addr().unwrap().into()).unwrap();
    let _client: TcpStream = sock.into();
    let (_server, _) = l.accept().unwrap();
    let (server, client) = sides(&sockets_on(port), port);
    let v = judge(None, &client, INTERVAL, &host);
    let f = v
        .findings
        .iter()
        .find(|f| f.id == "rcvbuf-fixed-small")
        .unwrap_or_else(|| panic!("{v:#?}"));
    let wscale = client.tcp_info.as_ref().unwrap().rcv_wscale;
    assert_eq!(f.value("rcv_wscale"), Some(wscale as f64));
    assert_eq!(f.value("autotuned_wscale"), Some(auto as f64));
    assert!(wscale + 2 <= auto, "wscale {wscale} vs autotuned {auto}");
    assert_eq!(f.value("sk_rcvbuf"), Some(131072.0));
    assert!(f.explanation.contains("ceiling"), "{}", f.explanation);
    // The autotuned side of the same connection gets no such finding.
    let sv = judge(None, &server, INTERVAL, &host);
    assert!(!ids(&sv).contains(&"rcvbuf-fixed-small"), "{sv:#?}");
}

#[test]
fn no_window_scaling_caps_at_64k_and_blames_this_hosts_sysctl() {
    if !netblame_testkit::require_root("no_window_scaling_caps_at_64k_and_blames_this_hosts_sysctl")
    {
        return;
    }
    let ns = Netns::new("nbsk");
    ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_window_scaling=0"]);
    // The test thread runs in the namespace; /proc/sys/net then shows the namespace's sysctls.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter();
                let host = host();
                assert!(!host.settings.as_ref().unwrap().window_scaling);
                let (_l, _c, _s, port) = pair("127.0.0.1:0");
                let (_, client) = sides(&sockets_on(port), port);
                assert!(!client.tcp_info.as_ref().unwrap().has_wscale());
                let v = judge(None, &client, INTERVAL, &host);
                let f = v
                    .findings
                    .iter()
                    .find(|f| f.id == "window-scaling-absent")
                    .unwrap_or_else(|| panic!("{v:#?}"));
                assert_eq!(f.value("window_cap"), Some(65535.0));
                assert_eq!(f.layer, netblame_core::Layer::Host);
                assert!(f.fix.contains("tcp_window_scaling"), "{}", f.fix);
            })
            .join()
            .unwrap();
    });
}

#[test]
fn slow_reader_recv_q_grows_toward_the_buffer() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut server, _) = l.accept().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The writer sends 4 KiB every 10 ms, the reader takes 1 KiB every 10 ms.
    let paced = |stop: Arc<AtomicBool>, mut f: Box<dyn FnMut() + Send>| {
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                f();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    client
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let w = paced(
        stop.clone(),
        Box::new(move || {
            let _ = client.write(&[7u8; 4096]);
        }),
    );
    let r = paced(
        stop.clone(),
        Box::new(move || {
            let mut buf = [0u8; 1024];
            let _ = server.read(&mut buf);
        }),
    );
    let host = host();
    let server_side = |v: &[SocketSnapshot]| v.iter().find(|s| s.local.port() == port).cloned();
    // Wait until the buffer is a quarter full, then judge a short interval of growth.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut verdict = None;
    while Instant::now() < deadline {
        let Some(a) = server_side(&sockets_on(port)) else {
            break;
        };
        let m = a.skmem.unwrap();
        if (m.rmem_alloc_bytes as u64) * 4 < m.rcvbuf_bytes as u64 {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        let b = server_side(&sockets_on(port)).unwrap();
        let v = judge(Some(&a), &b, t0.elapsed(), &host);
        if ids(&v).contains(&"receiver-app-slow") {
            verdict = Some((v, b));
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    r.join().unwrap();
    let (v, b) = verdict.expect("Recv-Q growth seen as receiver-app-slow");
    let f = v
        .findings
        .iter()
        .find(|f| f.id == "receiver-app-slow")
        .unwrap();
    assert!(f.value("recv_q").unwrap() > f.value("recv_q_before").unwrap());
    assert!(
        f.summary.contains(&format!("[{}]", std::process::id())),
        "{}",
        f.summary
    );
    assert!(b.recv_q_bytes > 0);
}
