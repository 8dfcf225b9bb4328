//! `netblame bench server`: serves iperf3 and netblame clients, several at once.
//!
//! One thread accepts and identifies connections: it polls every connection that has not said
//! what it is yet, and its first bytes decide whether it is a probe (the probe magic), a data
//! stream of a running session (cookie known), a new control connection (cookie unknown), or
//! garbage. Hostile peers are bounded: every connection counts against one limit
//! (`max_connections`, kept below the descriptor limit), unidentified ones are evicted oldest
//! first (`max_pending`), each protocol stage has a deadline as a whole, running out of
//! descriptors sheds load instead of ending the server, and the block buffers of all running
//! tests share one budget (`max_memory`).

use crate::client::ServerExtension;
use crate::config::TestParams;
use crate::proto::{self, state, ProtoError, COOKIE_SIZE, MAX_PARAMS_JSON};
use crate::running::{self, CpuClock, CpuUsage, EndCause};
use crate::sample::{IntervalSample, Sampler};
use crate::stream::{self, BufferSizes, DataStream, SendBudget, StopFlags};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Longest test accepted and enforced (`--max-duration`).
    pub max_duration: Option<Duration>,
    /// Each protocol stage after the cookie (parameters, stream creation, results) must finish
    /// within this, as a whole; a running test that moves less than [`MIN_PROGRESS_BYTES`] in
    /// this long is dropped; a probe connection silent this long is closed.
    pub idle_timeout: Duration,
    /// Serve one test (successful or not), then return.
    pub one_off: bool,
    /// Concurrent tests; more get ACCESS_DENIED.
    pub max_sessions: usize,
    /// Connections still being identified (no cookie or probe magic yet): beyond this many,
    /// the oldest is evicted.
    pub max_pending: usize,
    /// Open connections of every kind (being identified, control, data, probe) together; at
    /// the limit the oldest unidentified one is evicted, else the new one is closed. Lowered at
    /// bind time to fit the process's file descriptor limit.
    pub max_connections: usize,
    /// Block buffers all running tests may hold together; a test that needs more gets iperf3's
    /// SERVER_ERROR ("unable to create a new test: Cannot allocate memory").
    pub max_memory: u64,
    /// With an IPv6 `bind` address: accept IPv6 only (`-6`); otherwise IPv4 clients are
    /// accepted on it too (as IPv4-mapped addresses, reported as plain IPv4).
    pub v6_only: bool,
}

/// A running test that moves less than this in `idle_timeout` is dropped (a drip sender).
pub const MIN_PROGRESS_BYTES: u64 = 4096;
/// The identification stage (cookie or probe magic) gets at most this, as a whole.
pub const MAX_IDENTIFY: Duration = Duration::from_secs(10);
/// File descriptors kept free of connections (listener, UDP echo, stdio, memory files).
const FD_RESERVE: usize = 32;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "0.0.0.0:5201".parse().expect("literal address"),
            max_duration: None,
            idle_timeout: Duration::from_secs(30),
            one_off: false,
            max_sessions: 8,
            max_pending: 64,
            max_connections: 1024,
            max_memory: 256 << 20,
            v6_only: false,
        }
    }
}

/// One stream's totals on the server.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ServerStreamTotals {
    /// The stream's number (1, 2... in the client's connect order).
    pub id: i64,
    /// True when the server sent on it.
    pub server_sends: bool,
    /// Bytes the server sent or received (omitted seconds excluded).
    pub server_bytes: u64,
    /// Bytes the client reported in its results.
    pub client_bytes: Option<u64>,
    /// The server socket's buffer sizes.
    pub buffers: BufferSizes,
}

/// A finished test, as the server saw it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SessionReport {
    /// The client's control connection, `address:port`.
    pub peer: String,
    /// The client's parameter JSON as it sent it (iperf3's parameter object; a netblame
    /// client's has the `netblame` key; other clients may add keys of their own).
    pub params: Value,
    /// True when the client is netblame (its parameters had the `netblame` key).
    pub peer_is_netblame: bool,
    /// Seconds counted (the omitted start excluded).
    pub seconds: f64,
    /// Per stream totals.
    pub streams: Vec<ServerStreamTotals>,
    /// The server's samples of every stream.
    pub intervals: Vec<IntervalSample>,
    /// The server process's CPU over the test, percent of one core.
    pub cpu: CpuUsage,
    /// Congestion control of the server's data streams (`TCP_CONGESTION`).
    pub congestion: String,
}

/// What the server tells its caller (the CLI prints these; the library never does).
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A test started.
    Started { peer: String, params: Value },
    /// Every data stream of a test is connected and the test runs (iperf3's `start` event).
    Running {
        peer: String,
        /// The test's cookie, without its NUL.
        cookie: String,
        params: TestParams,
        /// The data streams from the client's point of view (`client_sends`, local = the
        /// server's end).
        streams: Vec<crate::client::StreamInfo>,
    },
    /// A server-side interval of a running test.
    Interval {
        peer: String,
        sample: IntervalSample,
    },
    /// A test finished and results were exchanged.
    Finished(Box<SessionReport>),
    /// A connection was refused or a test aborted (garbage, timeout, vanished client...).
    Dropped { peer: String, reason: String },
}

/// A data connection on its way to its session: its accept sequence number (threads may hand
/// streams over out of order, the accept order is the client's connect order) and its slot.
type DataConn = (u64, TcpStream, Slot);
type Registry = Arc<Mutex<HashMap<[u8; COOKIE_SIZE], SyncSender<DataConn>>>>;

struct Shared {
    cfg: ServerConfig,
    sessions: Registry,
    active: AtomicUsize,
    /// Open connections of every kind (see [`Slot`]).
    open: AtomicUsize,
    /// Probe connections being served.
    probes: AtomicUsize,
    /// Bytes of block buffers reserved by running tests.
    memory: AtomicU64,
    shutdown: Arc<AtomicBool>,
    on_event: Box<dyn Fn(ServerEvent) + Send + Sync>,
}

impl Shared {
    fn drop_event(&self, peer: impl ToString, reason: impl Into<String>) {
        (self.on_event)(ServerEvent::Dropped {
            peer: peer.to_string(),
            reason: reason.into(),
        });
    }
}

/// One open connection counted against `max_connections`; released when dropped, with the
/// connection it travels with.
struct Slot(Arc<Shared>);

impl Slot {
    fn take(shared: &Arc<Shared>) -> Slot {
        shared.open.fetch_add(1, Ordering::SeqCst);
        Slot(shared.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection that has not said what it is yet.
struct Pending {
    conn: TcpStream,
    peer: SocketAddr,
    seq: u64,
    since: Instant,
    /// Bytes the kernel must queue before poll wakes us (SO_RCVLOWAT): a drip sender costs no
    /// wake-up per byte.
    want: usize,
    slot: Slot,
}

/// What the first bytes of a pending connection say.
enum Identified {
    Wait(usize),
    Probe,
    Cookie([u8; COOKIE_SIZE]),
    Garbage,
    Closed,
}

/// The listening socket: SO_REUSEADDR as iperf3 sets it; an IPv6 address is dual-stack unless
/// `v6_only`, whatever `net.ipv6.bindv6only` says. The dual-stack `[::]` falls back to
/// `0.0.0.0` on a host without IPv6.
fn listen(addr: SocketAddr, v6_only: bool) -> io::Result<TcpListener> {
    let sock = match socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    ) {
        Err(e)
            if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                && addr.ip() == std::net::Ipv6Addr::UNSPECIFIED
                && !v6_only =>
        {
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
            return listen(v4, false);
        }
        r => r?,
    };
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(v6_only)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

/// A bound server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listener. `on_event` receives progress and outcomes.
    pub fn bind(
        mut cfg: ServerConfig,
        on_event: impl Fn(ServerEvent) + Send + Sync + 'static,
    ) -> io::Result<Server> {
        let listener = listen(cfg.bind, cfg.v6_only)?;
        listener.set_nonblocking(true)?;
        map_large_blocks();
        cfg.max_connections = cfg
            .max_connections
            .min(fd_limit().saturating_sub(FD_RESERVE))
            .max(4);
        cfg.max_pending = cfg.max_pending.clamp(1, cfg.max_connections);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                cfg,
                sessions: Arc::default(),
                active: AtomicUsize::new(0),
                open: AtomicUsize::new(0),
                probes: AtomicUsize::new(0),
                memory: AtomicU64::new(0),
                shutdown: Arc::default(),
                on_event: Box::new(on_event),
            }),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A flag that stops [`Server::serve`] when set.
    pub fn shutdown_handle(&self) -> Arc<AtomicBool> {
        self.shared.shutdown.clone()
    }

    /// The limits in force (`max_connections` lowered to the file descriptor limit).
    pub fn config(&self) -> &ServerConfig {
        &self.shared.cfg
    }

    /// Accepts connections until shut down (or after one test with `one_off`). Running out of
    /// file descriptors or threads sheds load; it never ends the server. Probe connections are
    /// not waited for: they end on their own (idle timeout) or with the process.
    pub fn serve(&self) -> io::Result<()> {
        // `netblame probe --kind udp` answered on the same port, while serving (best effort).
        let _udp_echo = self
            .local_addr()
            .ok()
            .and_then(|a| netblame_probe::responder::UdpEcho::start(a).ok());
        let mut sessions: Vec<JoinHandle<()>> = Vec::new();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut seq = 0u64;
        let mut starved_since: Option<Instant> = None;
        let identify = self.shared.cfg.idle_timeout.min(MAX_IDENTIFY);
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            let (listener_ready, ready) = self.poll(&pending, identify);
            if listener_ready {
                self.accept_some(&mut pending, &mut seq, &mut starved_since);
            }
            // Identify the connections that have enough bytes (or closed), oldest first.
            let mut i = 0;
            while i < pending.len() {
                let p = &pending[i];
                let outcome = if ready.contains(&p.seq) {
                    identify_bytes(&p.conn)
                } else {
                    Identified::Wait(p.want)
                };
                match outcome {
                    Identified::Wait(want) if p.since.elapsed() < identify => {
                        if want != p.want {
                            let _ = netblame_linux::sockopt::set_rcvlowat(&p.conn, want as u64);
                            pending[i].want = want;
                        }
                        i += 1;
                    }
                    Identified::Wait(_) => {
                        let p = pending.remove(i).expect("index in range");
                        self.shared.drop_event(
                            p.peer,
                            format!(
                                "no cookie or probe hello within {} s",
                                identify.as_secs_f64()
                            ),
                        );
                    }
                    other => {
                        let p = pending.remove(i).expect("index in range");
                        if let Some(h) = self.dispatch(p, other) {
                            sessions.push(h);
                        }
                    }
                }
            }
            sessions.retain(|h| !h.is_finished());
        }
        drop(pending);
        for h in sessions {
            let _ = h.join();
        }
        Ok(())
    }

    /// Waits for the listener or a pending connection to become readable (at most 100 ms, or
    /// until the oldest pending connection's deadline). Returns whether the listener is ready
    /// and the sequence numbers of the ready pending connections.
    fn poll(&self, pending: &VecDeque<Pending>, identify: Duration) -> (bool, Vec<u64>) {
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.listener.as_raw_fd())
            .chain(pending.iter().map(|p| p.conn.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut wait = Duration::from_millis(100);
        if let Some(p) = pending.front() {
            wait = wait.min((p.since + identify).saturating_duration_since(Instant::now()));
        }
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let rc = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis() as i32 + 1,
            )
        };
        if rc <= 0 {
            return (false, Vec::new());
        }
        let ready = pending
            .iter()
            .zip(&fds[1..])
            .filter(|(_, f)| f.revents != 0)
            .map(|(p, _)| p.seq)
            .collect();
        (fds[0].revents != 0, ready)
    }

    /// Accepts what the listener has (a bounded batch), evicting the oldest unidentified
    /// connection when a limit is reached or descriptors run out.
    fn accept_some(
        &self,
        pending: &mut VecDeque<Pending>,
        seq: &mut u64,
        starved_since: &mut Option<Instant>,
    ) {
        let sh = &self.shared;
        for _ in 0..64 {
            match self.listener.accept() {
                Ok((conn, peer)) => {
                    // An IPv4 client on a dual-stack listener: show it as IPv4.
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    *starved_since = None;
                    if sh.open.load(Ordering::SeqCst) >= sh.cfg.max_connections
                        && !self.evict_oldest(pending, "evicted: connection limit reached")
                    {
                        sh.drop_event(
                            peer,
                            format!(
                                "refused: {} connections open (--max-connections)",
                                sh.cfg.max_connections
                            ),
                        );
                        continue;
                    }
                    if pending.len() >= sh.cfg.max_pending {
                        self.evict_oldest(pending, "evicted: too many unidentified connections");
                    }
                    *seq += 1;
                    let slot = Slot::take(sh);
                    let _ = netblame_linux::sockopt::set_rcvlowat(&conn, 1);
                    pending.push_back(Pending {
                        conn,
                        peer,
                        seq: *seq,
                        since: Instant::now(),
                        want: 1,
                        slot,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if out_of_resources(&e) => {
                    // No descriptor to accept with: free the oldest unidentified connection;
                    // with none, leave the rest in the listen queue for a moment.
                    if !self.evict_oldest(pending, "evicted: out of file descriptors") {
                        if starved_since.is_none() {
                            sh.drop_event("-", format!("shedding load: {e}"));
                            *starved_since = Some(Instant::now());
                        }
                        std::thread::sleep(Duration::from_millis(20));
                        return;
                    }
                }
                // Interrupted, aborted handshakes, transient network errors: try again later.
                Err(_) => return,
            }
        }
    }

    fn evict_oldest(&self, pending: &mut VecDeque<Pending>, why: &str) -> bool {
        match pending.pop_front() {
            Some(p) => {
                self.shared.drop_event(p.peer, why);
                true
            }
            None => false,
        }
    }

    /// Hands an identified connection on: to a probe thread, to its session, or to a new
    /// session thread (returned).
    fn dispatch(&self, p: Pending, what: Identified) -> Option<JoinHandle<()>> {
        let sh = &self.shared;
        let Pending {
            conn,
            peer,
            seq,
            slot,
            ..
        } = p;
        let cookie = match what {
            Identified::Cookie(c) => c,
            Identified::Probe => {
                self.serve_probe(conn, peer, slot);
                return None;
            }
            Identified::Garbage => {
                sh.drop_event(peer, "garbage instead of an iperf3 cookie");
                return None;
            }
            Identified::Closed | Identified::Wait(_) => {
                sh.drop_event(peer, "closed before sending a cookie");
                return None;
            }
        };
        if conn.set_nonblocking(false).is_err() {
            return None;
        }
        let data_tx = sh
            .sessions
            .lock()
            .ok()
            .and_then(|m| m.get(&cookie).cloned());
        if let Some(tx) = data_tx {
            if tx.try_send((seq, conn, slot)).is_err() {
                sh.drop_event(peer, "data stream beyond the announced count");
            }
            return None;
        }
        // A new control connection.
        if sh.active.fetch_add(1, Ordering::SeqCst) >= sh.cfg.max_sessions {
            sh.active.fetch_sub(1, Ordering::SeqCst);
            let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = proto::write_state(&mut &conn, state::ACCESS_DENIED);
            sh.drop_event(peer, "busy: too many concurrent tests");
            return None;
        }
        let shared = sh.clone();
        let spawned = std::thread::Builder::new()
            .name("bench-session".into())
            .spawn(move || Server::session(&shared, conn, peer, cookie, slot));
        match spawned {
            Ok(h) => Some(h),
            Err(e) => {
                sh.active.fetch_sub(1, Ordering::SeqCst);
                sh.drop_event(peer, format!("shedding load: no thread for the test: {e}"));
                None
            }
        }
    }

    /// `netblame probe --kind rr` (and `tcp --request`): echoed on a thread of its own, at most
    /// a quarter of `max_connections` at once, each closed after `idle_timeout` of silence.
    fn serve_probe(&self, conn: TcpStream, peer: SocketAddr, slot: Slot) {
        let sh = &self.shared;
        if sh.probes.fetch_add(1, Ordering::SeqCst) >= (sh.cfg.max_connections / 4).max(1) {
            sh.probes.fetch_sub(1, Ordering::SeqCst);
            sh.drop_event(peer, "refused: too many probe connections");
            return;
        }
        let shared = sh.clone();
        let idle = sh.cfg.idle_timeout;
        let spawned = std::thread::Builder::new()
            .name("bench-probe".into())
            .spawn(move || {
                let _slot = slot;
                if conn.set_nonblocking(false).is_ok() {
                    let _ = netblame_probe::responder::serve_probe_stream(conn, Some(idle));
                }
                shared.probes.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            sh.probes.fetch_sub(1, Ordering::SeqCst);
            sh.drop_event(peer, format!("shedding load: no thread for a probe: {e}"));
        }
    }

    /// A new control connection's whole test.
    fn session(
        shared: &Arc<Shared>,
        conn: TcpStream,
        peer: SocketAddr,
        cookie: [u8; COOKIE_SIZE],
        slot: Slot,
    ) {
        let peer_s = peer.to_string();
        let outcome = run_session(shared, &conn, &peer_s, cookie);
        drop(conn);
        drop(slot);
        shared.active.fetch_sub(1, Ordering::SeqCst);
        return_freed_memory();
        match outcome {
            Ok(report) => (shared.on_event)(ServerEvent::Finished(Box::new(report))),
            Err(e) => shared.drop_event(peer_s, e.to_string()),
        }
        if shared.cfg.one_off {
            shared.shutdown.store(true, Ordering::SeqCst);
        }
    }
}

/// Reads what a pending connection sent so far (without consuming unless it is a whole
/// cookie): the probe magic, a cookie, a prefix of either (wait for more), or garbage.
fn identify_bytes(conn: &TcpStream) -> Identified {
    let magic = netblame_probe::responder::MAGIC;
    let mut buf = [0u8; COOKIE_SIZE];
    // SAFETY: buf is valid for its length; MSG_PEEK leaves the bytes queued.
    let rc = unsafe {
        libc::recv(
            conn.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Identified::Wait(1),
            _ => Identified::Closed,
        };
    }
    let n = rc as usize;
    let got = &buf[..n];
    if n == 0 {
        Identified::Closed
    } else if magic.starts_with(got) || got.starts_with(magic) {
        if n >= magic.len() {
            Identified::Probe
        } else {
            Identified::Wait(magic.len())
        }
    } else if !proto::is_cookie_prefix(got) {
        Identified::Garbage
    } else if n < COOKIE_SIZE {
        Identified::Wait(COOKIE_SIZE)
    } else {
        match (&*conn).read_exact(&mut buf) {
            Ok(()) => Identified::Cookie(buf),
            Err(_) => Identified::Closed,
        }
    }
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the system is out of something accept needs.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The soft RLIMIT_NOFILE of this process.
fn fd_limit() -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    usize::try_from(r.rlim_cur).unwrap_or(usize::MAX)
}

/// Block buffers of 1 MiB and more get their own mappings, returned to the system when freed.
/// glibc's default raises its mmap threshold after the first such free (up to 32 MiB), and a
/// later 16 MiB block then lands in a thread arena that `malloc_trim` does not shrink: 8
/// streams of 16 MiB blocks kept 128 MiB of RSS after their test. Fixing the threshold turns
/// that adjustment off (process-wide: the server is the process).
fn map_large_blocks() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before the server's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Gives the heap memory freed by a finished test back to the system: glibc keeps freed
/// small blocks in its arenas otherwise, and a server's RSS would stay at its busiest.
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A reader whose reads all end by one instant: a protocol stage gets a deadline as a whole,
/// so a peer dripping one byte at a time cannot stretch it.
struct Deadline<'a> {
    conn: &'a TcpStream,
    until: Instant,
}

impl<'a> Deadline<'a> {
    fn new(conn: &'a TcpStream, within: Duration) -> Deadline<'a> {
        Deadline {
            conn,
            until: Instant::now() + within,
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the stage's deadline passed",
            ));
        }
        self.conn.set_read_timeout(Some(left))?;
        (&*self.conn).read(buf)
    }
}

/// Memory reserved for one test's block buffers, given back when dropped.
struct Reservation<'a> {
    pool: &'a AtomicU64,
    bytes: u64,
}

impl<'a> Reservation<'a> {
    /// Reserves `bytes` out of `max`, or says how much is free.
    fn take(pool: &'a AtomicU64, bytes: u64, max: u64) -> Result<Reservation<'a>, u64> {
        pool.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            used.checked_add(bytes).filter(|t| *t <= max)
        })
        .map(|_| Reservation { pool, bytes })
        .map_err(|used| max.saturating_sub(used))
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.pool.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Removes a session's cookie from the registry when the session ends, however it ends.
struct Registered<'a> {
    reg: &'a Registry,
    cookie: [u8; COOKIE_SIZE],
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.reg.lock() {
            m.remove(&self.cookie);
        }
    }
}

/// iperf3 error numbers used in SERVER_ERROR (src/iperf_api.h).
mod ierr {
    /// IERECVPARAMS: bad parameters.
    pub const RECV_PARAMS: i32 = 114;
    /// IEMAXSERVERTESTDURATIONEXCEEDED.
    pub const MAX_DURATION: i32 = 33;
    /// IEACCEPT: could not accept streams.
    pub const ACCEPT: i32 = 103;
    /// IENEWTEST: unable to create a new test (with errno ENOMEM: over `--max-memory`).
    pub const NEW_TEST: i32 = 100;
}

fn run_session(
    shared: &Arc<Shared>,
    ctrl: &TcpStream,
    peer: &str,
    cookie: [u8; COOKIE_SIZE],
) -> Result<SessionReport, ProtoError> {
    let cfg = &shared.cfg;
    ctrl.set_nodelay(true)?;
    ctrl.set_write_timeout(Some(cfg.idle_timeout))?;
    proto::write_state(&mut &*ctrl, state::PARAM_EXCHANGE)?;
    let raw = match proto::read_json(&mut Deadline::new(ctrl, cfg.idle_timeout), MAX_PARAMS_JSON) {
        Ok(v) => v,
        Err(e) => {
            let _ = proto::write_server_error(&mut &*ctrl, ierr::RECV_PARAMS, 0);
            return Err(e);
        }
    };
    let p = match TestParams::from_json(&raw) {
        Ok(p) => p,
        Err(e) => {
            let _ = proto::write_server_error(&mut &*ctrl, ierr::RECV_PARAMS, 0);
            return Err(ProtoError::Other(format!("refused parameters: {e}")));
        }
    };
    if let (Some(max), Some(d)) = (cfg.max_duration, p.duration()) {
        if d > max {
            let _ = proto::write_server_error(&mut &*ctrl, ierr::MAX_DURATION, 0);
            return Err(ProtoError::Other(format!(
                "requested {} s exceeds --max-duration {} s",
                d.as_secs(),
                max.as_secs()
            )));
        }
    }
    let need: u64 = (0..p.total_streams())
        .map(|i| stream::buffer_memory(&p, !p.client_sends(i)))
        .sum();
    let _memory = match Reservation::take(&shared.memory, need, cfg.max_memory) {
        Ok(r) => r,
        Err(free) => {
            let _ = proto::write_server_error(&mut &*ctrl, ierr::NEW_TEST, libc::ENOMEM);
            return Err(ProtoError::Other(format!(
                "refused: the test needs {} of buffers, {} of --max-memory {} is free",
                netblame_core::Bytes(need),
                netblame_core::Bytes(free),
                netblame_core::Bytes(cfg.max_memory)
            )));
        }
    };
    (shared.on_event)(ServerEvent::Started {
        peer: peer.to_string(),
        params: raw.clone(),
    });
    let n = p.total_streams();
    let (tx, rx) = sync_channel::<DataConn>(n);
    shared
        .sessions
        .lock()
        .map_err(|_| ProtoError::Other("session registry poisoned".into()))?
        .insert(cookie, tx);
    let guard = Registered {
        reg: &shared.sessions,
        cookie,
    };
    proto::write_state(&mut &*ctrl, state::CREATE_STREAMS)?;
    let mut socks = Vec::with_capacity(n);
    let deadline = Instant::now() + cfg.idle_timeout;
    while socks.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(s) => socks.push(s),
            Err(_) if Instant::now() < deadline => {
                // The client may have vanished: a readable control socket here means EOF or junk.
                if running::wait_readable(ctrl, Duration::ZERO)? {
                    let _ = proto::read_state(&mut &*ctrl)?;
                    return Err(ProtoError::Other(
                        "client sent a state before its streams".into(),
                    ));
                }
            }
            Err(_) => {
                let _ = proto::write_server_error(&mut &*ctrl, ierr::ACCEPT, 0);
                return Err(ProtoError::Other(format!(
                    "only {} of {n} data streams arrived",
                    socks.len()
                )));
            }
        }
    }
    drop(guard);
    socks.sort_by_key(|(seq, _, _)| *seq);

    let stop = StopFlags::default();
    let budget = SendBudget {
        limit: p.bytes,
        ..SendBudget::default()
    };
    let mut streams = Vec::with_capacity(n);
    // The data connections stay counted until the session ends.
    let mut _slots = Vec::with_capacity(n);
    for (i, (_, s, slot)) in socks.into_iter().enumerate() {
        _slots.push(slot);
        let sending = !p.client_sends(i);
        let (s, b) = stream::configure_accepted(s, &p, sending)?;
        streams.push(DataStream::start(
            proto::stream_id(i),
            s,
            sending,
            b,
            &p,
            &stop,
            &budget,
        )?);
    }
    (shared.on_event)(ServerEvent::Running {
        peer: peer.to_string(),
        cookie: String::from_utf8_lossy(&cookie[..COOKIE_SIZE - 1]).into_owned(),
        params: p.clone(),
        streams: streams
            .iter()
            .map(|s| crate::client::StreamInfo {
                id: s.id,
                client_sends: !s.sending,
                local: s
                    .sock
                    .local_addr()
                    .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()).to_string())
                    .unwrap_or_default(),
                remote: s
                    .sock
                    .peer_addr()
                    .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()).to_string())
                    .unwrap_or_default(),
                buffers: s.buffers,
                mss_bytes: socket2::SockRef::from(&*s.sock).mss().ok(),
            })
            .collect(),
    });
    let congestion = streams
        .first()
        .and_then(|s| netblame_linux::sockopt::congestion(&*s.sock).ok())
        .unwrap_or_default();
    let result = serve_test(shared, ctrl, peer, &p, &mut streams, &stop);
    stop.all();
    for s in &mut streams {
        let _ = s.finish();
    }
    let (intervals, final_bytes, seconds, cpu, client_results) = result?;
    let client_streams = client_results["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(SessionReport {
        peer: peer.to_string(),
        params: raw,
        peer_is_netblame: p.peer_is_netblame,
        seconds,
        streams: streams
            .iter()
            .enumerate()
            .map(|(i, s)| ServerStreamTotals {
                id: s.id,
                server_sends: s.sending,
                server_bytes: final_bytes[i],
                client_bytes: client_streams
                    .iter()
                    .find(|v| v["id"].as_i64() == Some(s.id))
                    .and_then(|v| v["bytes"].as_u64()),
                buffers: s.buffers,
            })
            .collect(),
        intervals,
        cpu,
        congestion,
    })
}

type Served = (Vec<IntervalSample>, Vec<u64>, f64, CpuUsage, Value);

fn serve_test(
    shared: &Arc<Shared>,
    ctrl: &TcpStream,
    peer: &str,
    p: &TestParams,
    streams: &mut [DataStream],
    stop: &StopFlags,
) -> Result<Served, ProtoError> {
    let cfg = &shared.cfg;
    let cpu_clock = CpuClock::start();
    proto::write_state(&mut &*ctrl, state::TEST_START)?;
    proto::write_state(&mut &*ctrl, state::TEST_RUNNING)?;
    let mut sampler = Sampler::new(streams, p.omit_s);
    let mut intervals = Vec::new();
    let interval = Duration::from_millis(p.interval_ms);
    // A generous bound even without --max-duration: the requested time plus slack.
    let hard_limit = cfg.max_duration.map(|d| d.as_secs_f64()).or_else(|| {
        p.duration()
            .map(|d| d.as_secs_f64() + cfg.idle_timeout.as_secs_f64())
    });
    // Progress is at least MIN_PROGRESS_BYTES per idle_timeout: a drip sender does not
    // hold its test slot.
    let mut last_total = 0u64;
    let mut last_progress = Instant::now();
    let idle = cfg.idle_timeout;
    let mut timed_out = false;
    let mut idle_out = false;
    let peer_s = peer.to_string();
    let mut cause = running::run(
        ctrl,
        streams,
        &mut sampler,
        interval,
        running::Wakeups {
            end_at: None,
            max_sleep: Duration::from_millis(250),
        },
        &mut intervals,
        |elapsed, st| {
            let total: u64 = st.iter().map(DataStream::bytes).sum();
            if total >= last_total + MIN_PROGRESS_BYTES {
                last_total = total;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > idle {
                idle_out = true;
                return true;
            }
            if hard_limit.is_some_and(|h| elapsed > h) {
                timed_out = true;
                return true;
            }
            false
        },
        &mut |s| {
            (shared.on_event)(ServerEvent::Interval {
                peer: peer_s.clone(),
                sample: s.clone(),
            })
        },
    )?;
    if cause == EndCause::StreamsClosed {
        // The client closed its streams; its TEST_END (or EOF) follows on the control socket.
        let errs: Vec<String> = streams
            .iter_mut()
            .filter_map(|s| s.finish().err())
            .map(|e| e.to_string())
            .collect();
        cause = EndCause::State(proto::read_state(&mut &*ctrl).map_err(|e| {
            ProtoError::Other(format!(
                "the client closed its streams ({}), then: {e}",
                errs.join("; ")
            ))
        })?);
    }
    stop.send.store(true, Ordering::SeqCst);
    let final_bytes: Vec<u64> = streams.iter().map(DataStream::bytes).collect();
    let seconds = sampler.elapsed();
    let last = sampler.sample(streams, Some(&final_bytes));
    if last.streams.first().is_some_and(|s| s.seconds > 0.01) {
        intervals.push(last);
    }
    let cpu = cpu_clock.read();
    // Like iperf3's server, close the data streams at the end of the test: a 3.12 client blocked
    // in a read on a stream only wakes up on EOF.
    stop.all();
    for s in streams.iter_mut() {
        let _ = s.finish();
    }
    match cause {
        EndCause::State(s) if s == state::TEST_END => {}
        EndCause::State(s) if s == state::CLIENT_TERMINATE => {
            return Err(ProtoError::Terminated("CLIENT_TERMINATE".into()))
        }
        EndCause::State(s) => {
            return Err(ProtoError::Unexpected {
                got: proto::state_name(s),
                expected: "TEST_END".into(),
            })
        }
        _ if idle_out => {
            let _ = proto::write_state(&mut &*ctrl, state::SERVER_TERMINATE);
            return Err(ProtoError::Other(format!(
                "less than {MIN_PROGRESS_BYTES} bytes in {} s: dropped the test",
                idle.as_secs()
            )));
        }
        _ => {
            let _ = proto::write_state(&mut &*ctrl, state::SERVER_TERMINATE);
            let why = if timed_out {
                "test exceeded the maximum duration"
            } else {
                "test ended early"
            };
            return Err(ProtoError::Other(why.into()));
        }
    }
    proto::write_state(&mut &*ctrl, state::EXCHANGE_RESULTS)?;
    let client_results = proto::read_json(&mut Deadline::new(ctrl, idle), 1 << 20)
        .map_err(|e| ProtoError::Other(format!("reading the client's results: {e}")))?;
    let mut results =
        crate::running::results_json(&cpu, streams, &intervals, |i| final_bytes[i], seconds);
    // Only a netblame client gets the samples (and this host's settings): iperf3 reads results
    // with a single read on a non-blocking socket and would see a large message arrive in pieces.
    if p.peer_is_netblame {
        let mut ext_intervals = intervals.clone();
        // Bound what travels back: at most 20 000 stream samples (the newest).
        let per = streams.len().max(1);
        if ext_intervals.len() * per > 20_000 {
            let keep = 20_000 / per;
            ext_intervals.drain(..ext_intervals.len() - keep);
        }
        let ext = ServerExtension {
            intervals: ext_intervals,
            buffers: streams.iter().map(|s| s.buffers).collect(),
            host: crate::client::HostSettings::read(),
        };
        results["netblame"] = serde_json::to_value(&ext).unwrap_or(Value::Null);
    }
    if p.get_server_output {
        let text: String = final_bytes
            .iter()
            .zip(streams)
            .map(|(b, s)| {
                format!(
                    "[{:>3}] {:.2}-{:.2} sec {} bytes {} ({})\n",
                    s.id,
                    0.0,
                    seconds,
                    b,
                    netblame_core::BitRate(*b as f64 * 8.0 / seconds.max(1e-9)),
                    if s.sending { "sender" } else { "receiver" }
                )
            })
            .collect();
        results["server_output_text"] = json!(text);
    }
    proto::write_json(&mut &*ctrl, &results)?;
    proto::write_state(&mut &*ctrl, state::DISPLAY_RESULTS)?;
    // IPERF_DONE (or a close): either way the test is over.
    let _ = proto::read_state(&mut Deadline::new(ctrl, idle.min(Duration::from_secs(5))));
    Ok((intervals, final_bytes, seconds, cpu, client_results))
}
