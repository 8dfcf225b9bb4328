//! The responder: the far end of `rr`, `udp` and `tcp --request` probes (and a minimal HTTP
//! answer for `http` probes), on one TCP and one UDP port.
//!
//! Wire format. TCP: the prober sends [`MAGIC`] first (8 bytes: distinct from iperf3's 37-byte
//! cookie of lowercase base32, so a bench server can tell them apart by peeking), then
//! fixed-size requests that start with a little-endian u64 sequence number; the responder echoes
//! every byte back, so framing stays with the prober. UDP: each datagram starts with [`MAGIC`]
//! and is echoed whole. `netblame bench server` answers probes by peeking for the magic and
//! handing the stream to [`serve_probe_stream`], and datagrams to [`udp_echo`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// First bytes of every probe connection and datagram.
pub const MAGIC: &[u8; 8] = b"NBPROBE1";

/// True when the first bytes a peer sent are a probe hello (needs at least 8 bytes).
pub fn is_probe_hello(first: &[u8]) -> bool {
    first.len() >= MAGIC.len() && &first[..MAGIC.len()] == MAGIC
}

/// Serves one probe connection whose first bytes are [`MAGIC`] (not yet read): reads the magic,
/// then echoes everything back until the peer closes, or until it sends nothing (or reads
/// nothing back) for `idle`, when given.
pub fn serve_probe_stream(mut stream: TcpStream, idle: Option<Duration>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(idle)?;
    stream.set_write_timeout(idle)?;
    let mut hello = [0u8; 8];
    stream.read_exact(&mut hello)?;
    if !is_probe_hello(&hello) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a netblame probe connection",
        ));
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
    }
}

/// Echoes `datagram` back to `from` when it is a probe; returns whether it was one.
pub fn udp_echo(sock: &UdpSocket, datagram: &[u8], from: SocketAddr) -> io::Result<bool> {
    if !is_probe_hello(datagram) {
        return Ok(false);
    }
    sock.send_to(datagram, from)?;
    Ok(true)
}

/// Peeks (without consuming) at the first bytes of a fresh connection, waiting up to `timeout`
/// for 8 of them: true when the peer is a netblame prober. Sets the stream's read timeout to
/// `timeout`; returns at the first byte that cannot begin [`MAGIC`] (an iperf3 cookie is
/// lowercase), so other clients are not delayed. For servers that share their port
/// with the responder (`netblame bench server`): on true, hand the stream to
/// [`serve_probe_stream`]; on false, read it as usual (nothing was consumed).
pub fn peek_probe_hello(stream: &TcpStream, timeout: Duration) -> io::Result<bool> {
    let mut first = [0u8; 8];
    let deadline = Instant::now() + timeout;
    stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    loop {
        let n = match stream.peek(&mut first) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        if n == first.len() {
            return Ok(is_probe_hello(&first));
        }
        // A prefix that cannot become the magic, or a closed peer: not a prober.
        if n == 0 || first[..n] != MAGIC[..n] || Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A UDP echo for probe datagrams on one port, for as long as it lives (dropping it stops and
/// joins its thread within 100 ms). `netblame bench server` runs one on its port.
pub struct UdpEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    /// Binds UDP `addr` and echoes probe datagrams (those starting with [`MAGIC`]).
    pub fn start(addr: SocketAddr) -> io::Result<UdpEcho> {
        let udp = UdpSocket::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("binding UDP {addr}: {e}")))?;
        let addr = udp.local_addr()?;
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("probe-udp".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = udp.recv_from(&mut buf) {
                        let _ = udp_echo(&udp, &buf[..n], from);
                    }
                }
            })?;
        Ok(UdpEcho {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one HTTP request with `200 OK` and a 3-byte body, then closes.
fn serve_http(mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || req.len() > 16 * 1024 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// Serves any connection accepted on the responder's port: a probe (magic), an HTTP GET, or a
/// bare connect (closed).
pub fn serve_connection(stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut first = [0u8; 8];
    let deadline = Instant::now() + Duration::from_secs(10);
    let n = loop {
        let n = match stream.peek(&mut first) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(()),
        };
        if n == 0 || n == first.len() || Instant::now() > deadline {
            break n;
        }
        if first[..n].starts_with(b"GET ") || first[..n].starts_with(b"HEAD") {
            break n;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    if n == 8 && is_probe_hello(&first) {
        serve_probe_stream(stream, None)
    } else if first[..n].starts_with(b"GET ") || first[..n].starts_with(b"HEAD") {
        serve_http(stream)
    } else {
        Ok(())
    }
}

/// A running responder on one TCP and one UDP port. Stops (and joins its threads, within
/// 100 ms) on drop; connections already being served end when their peers close.
pub struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    _udp: UdpEcho,
}

impl Responder {
    /// Binds TCP and UDP on `addr` (port 0: any free port, the same for both) and starts serving.
    pub fn start(addr: SocketAddr) -> io::Result<Responder> {
        let tcp = TcpListener::bind(addr)?;
        let addr = tcp.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        // UDP first: if its port is taken, nothing has started yet.
        let udp = UdpEcho::start(addr)?;
        let s = stop.clone();
        tcp.set_nonblocking(true)?;
        let accept = std::thread::Builder::new()
            .name("probe-accept".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if !readable(&tcp, 100) {
                        continue;
                    }
                    let Ok((c, _)) = tcp.accept() else { continue };
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_nodelay(true);
                    let _ = std::thread::Builder::new()
                        .name("probe-conn".into())
                        .stack_size(256 * 1024)
                        .spawn(move || {
                            let _ = serve_connection(c);
                        });
                }
            });
        Ok(Responder {
            addr,
            stop,
            accept: Some(accept?),
            _udp: udp,
        })
    }

    /// The bound address (TCP and UDP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends.
    pub fn run_forever(self) {
        loop {
            std::thread::park();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Waits up to `ms` for a listener to have a connection to accept.
fn readable(l: &TcpListener, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}
