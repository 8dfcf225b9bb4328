//! Data streams: socket options applied before connect (client) or after accept (server), and
//! the sender and receiver loops, one thread per stream.

use crate::config::TestParams;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often blocked loops wake to check their stop flag.
const WAKE: Duration = Duration::from_millis(100);

/// Requested versus actual buffer sizes of one socket (the kernel doubles and caps requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BufferSizes {
    /// SO_SNDBUF asked for, bytes (absent: autotuned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_sndbuf_bytes: Option<u64>,
    /// SO_RCVBUF asked for, bytes (absent: autotuned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_rcvbuf_bytes: Option<u64>,
    /// The send buffer the kernel set at setup, bytes (SO_SNDBUF read back).
    pub actual_sndbuf_bytes: u64,
    /// The receive buffer the kernel set at setup, bytes (SO_RCVBUF read back).
    pub actual_rcvbuf_bytes: u64,
}

/// Which buffer sizes a socket should get, given the test and its direction.
fn wanted_buffers(p: &TestParams, sending: bool) -> (Option<u64>, Option<u64>) {
    let mut snd = p.window;
    let mut rcv = p.window;
    if sending {
        if p.sndbuf.is_some() {
            snd = p.sndbuf;
        }
    } else if p.rcvbuf.is_some() {
        rcv = p.rcvbuf;
    }
    (snd, rcv)
}

fn apply_options(sock: &Socket, p: &TestParams, sending: bool) -> io::Result<BufferSizes> {
    let (snd, rcv) = wanted_buffers(p, sending);
    if let Some(v) = snd {
        netblame_linux::sockopt::set_sndbuf(sock, v)?;
    }
    if let Some(v) = rcv {
        netblame_linux::sockopt::set_rcvbuf(sock, v)?;
    }
    if p.nodelay {
        sock.set_nodelay(true)?;
    }
    if sending {
        if let Some(rate) = pacing_rate(p) {
            netblame_linux::sockopt::set_max_pacing_rate(sock, rate)
                .map_err(|e| io::Error::new(e.kind(), format!("SO_MAX_PACING_RATE: {e}")))?;
        }
    }
    if let Some(c) = &p.congestion {
        sock.set_tcp_congestion(c.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("congestion control {c:?}: {e}")))?;
    }
    Ok(BufferSizes {
        requested_sndbuf_bytes: snd,
        requested_rcvbuf_bytes: rcv,
        actual_sndbuf_bytes: netblame_linux::sockopt::sndbuf(sock)?,
        actual_rcvbuf_bytes: netblame_linux::sockopt::rcvbuf(sock)?,
    })
}

/// Headroom of the kernel's pacing over `-b`. The kernel paces whole packets, headers included
/// (52 to 72 bytes per 1448-byte segment at a 1500-byte MTU), while `-b` counts payload; and a
/// sender that was held up (descheduled on a busy host) must be able to catch up, or the
/// shortfall stays for good. The sender's own throttle keeps the payload average exact; the
/// kernel only keeps departures from bursting above 1.25 times the rate.
const PACING_HEADROOM: f64 = 1.25;

/// `SO_MAX_PACING_RATE` for a sending socket, bytes per second: iperf3's `--fq-rate` as asked,
/// else `-b` with [`PACING_HEADROOM`].
pub fn pacing_rate(p: &TestParams) -> Option<u64> {
    if p.fqrate > 0 {
        Some((p.fqrate / 8).max(1))
    } else if p.bandwidth > 0 {
        Some(((p.bandwidth as f64 / 8.0 * PACING_HEADROOM) as u64).max(1))
    } else {
        None
    }
}

/// Connects one data stream with the test's options set before connect (so SO_RCVBUF shapes the
/// window scale), then writes the cookie.
pub fn connect_stream(
    addr: SocketAddr,
    p: &TestParams,
    sending: bool,
    cookie: &[u8],
    timeout: Duration,
) -> io::Result<(TcpStream, BufferSizes)> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(mss) = p.mss {
        sock.set_mss(mss)?;
    }
    apply_options(&sock, p, sending)?;
    sock.connect_timeout(&SockAddr::from(addr), timeout)?;
    let mut buffers = BufferSizes {
        actual_sndbuf_bytes: netblame_linux::sockopt::sndbuf(&sock)?,
        actual_rcvbuf_bytes: netblame_linux::sockopt::rcvbuf(&sock)?,
        ..BufferSizes::default()
    };
    let (s, r) = wanted_buffers(p, sending);
    buffers.requested_sndbuf_bytes = s;
    buffers.requested_rcvbuf_bytes = r;
    let stream: TcpStream = sock.into();
    io::Write::write_all(&mut &stream, cookie)?;
    Ok((stream, buffers))
}

/// Applies the test's options to an accepted data socket (the server side). SO_RCVBUF set after
/// the handshake still locks the buffer and caps the window, though the window scale was
/// already chosen by the listener.
pub fn configure_accepted(
    stream: TcpStream,
    p: &TestParams,
    sending: bool,
) -> io::Result<(TcpStream, BufferSizes)> {
    let sock = Socket::from(stream);
    if let Some(mss) = p.mss {
        // Only effective before the handshake; ignore failure like iperf3 does on accepted sockets.
        let _ = sock.set_mss(mss);
    }
    let b = apply_options(&sock, p, sending)?;
    Ok((sock.into(), b))
}

/// One running data stream.
pub struct DataStream {
    /// iperf3 stream id (1, 3, 4, ...).
    pub id: i64,
    /// True when this end sends on it.
    pub sending: bool,
    pub sock: Arc<TcpStream>,
    /// Bytes sent or received so far.
    pub bytes: Arc<AtomicU64>,
    pub buffers: BufferSizes,
    handle: Option<JoinHandle<io::Result<()>>>,
}

/// Flags shared by the streams of one test.
#[derive(Debug, Clone, Default)]
pub struct StopFlags {
    /// Senders stop (test end).
    pub send: Arc<AtomicBool>,
    /// Receivers stop reading (session teardown).
    pub recv: Arc<AtomicBool>,
}

impl StopFlags {
    /// Stops everything.
    pub fn all(&self) {
        self.send.store(true, Ordering::SeqCst);
        self.recv.store(true, Ordering::SeqCst);
    }
}

/// Limits shared by the senders of one direction (`-n`).
#[derive(Debug, Clone, Default)]
pub struct SendBudget {
    /// Bytes reserved (whole blocks) by all senders of this end.
    pub sent: Arc<AtomicU64>,
    /// 0 = unlimited.
    pub limit: u64,
}

impl DataStream {
    /// Starts the stream's thread: a sender or a receiver loop.
    pub fn start(
        id: i64,
        sock: TcpStream,
        sending: bool,
        buffers: BufferSizes,
        p: &TestParams,
        stop: &StopFlags,
        budget: &SendBudget,
    ) -> io::Result<DataStream> {
        sock.set_read_timeout(Some(WAKE))?;
        sock.set_write_timeout(Some(WAKE))?;
        let sock = Arc::new(sock);
        let bytes = Arc::new(AtomicU64::new(0));
        let (s, b, len) = (sock.clone(), bytes.clone(), p.len);
        let handle = if sending {
            let (stop, budget, zc) = (stop.send.clone(), budget.clone(), p.zerocopy);
            let rate = p.bandwidth;
            std::thread::Builder::new()
                .name(format!("send-{id}"))
                .spawn(move || send_loop(&s, len, zc, rate, &b, &budget, &stop))?
        } else {
            let (stop, skip) = (stop.recv.clone(), p.skip_rx_copy);
            std::thread::Builder::new()
                .name(format!("recv-{id}"))
                .spawn(move || recv_loop(&s, len, skip, &b, &stop))?
        };
        Ok(DataStream {
            id,
            sending,
            sock,
            bytes,
            buffers,
            handle: Some(handle),
        })
    }

    /// Bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// True when the stream's thread has ended (peer closed, error, or stopped).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the thread (after the stop flags are set) and closes the socket.
    pub fn finish(&mut self) -> io::Result<()> {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("stream thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for DataStream {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

fn payload(len: usize) -> Vec<u8> {
    // Not all zeros, so compression anywhere on the path cannot flatter the result.
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// User-space memory one stream allocates: its block buffer, or for a `-Z` sender the memory
/// file it sends from instead. The server's memory cap (`--max-memory`) adds these up.
pub fn buffer_memory(p: &TestParams, sending: bool) -> u64 {
    let len = p.len as u64;
    match (sending, p.zerocopy, p.skip_rx_copy) {
        (true, true, _) => send_span(p.len, true, p.bytes) as u64,
        (true, false, _) | (false, _, false) => len,
        (false, _, true) => 1,
    }
}

/// Bytes after which a sender's payload repeats: one block for write(), several blocks in the
/// memory file that sendfile reads when no byte budget needs per-block reservations.
fn send_span(len: usize, zerocopy: bool, budget: u64) -> usize {
    if zerocopy && budget == 0 {
        len * (SENDFILE_SPAN / len).max(1)
    } else {
        len
    }
}

/// A memory file holding `blocks` copies of the payload block, for sendfile.
fn memfd_payload(block: &[u8], blocks: usize) -> io::Result<OwnedFd> {
    // SAFETY: the name is a valid NUL-terminated string; the returned fd is owned below.
    let fd = unsafe { libc::memfd_create(c"netblame-bench".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(owned);
    for _ in 0..blocks {
        io::Write::write_all(&mut f, block)?;
    }
    Ok(OwnedFd::from(f))
}

/// `sendfile` has no `MSG_NOSIGNAL`: a peer that closes mid-block would raise SIGPIPE, whose
/// default action (the cli restores it) kills the process. Blocked in the sending thread, the
/// signal stays pending on that thread and `sendfile` returns `EPIPE` instead.
fn block_sigpipe_in_this_thread() {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only changes
    // the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// How long a sender keeps finishing its current block after the stop flag.
const FINISH_BLOCK: Duration = Duration::from_secs(5);

/// Bytes one `sendfile` call may cover in a time-limited `-Z` test: several blocks per call
/// (fewer system calls and pushes); stop and budget checks still happen at block boundaries.
const SENDFILE_SPAN: usize = 1 << 20;

/// Sends whole blocks of `len` bytes until stopped. A started block is always completed (iperf3
/// 3.12 clients read exactly `len` bytes per call on blocking sockets: a torn last block would
/// leave them waiting forever). With a byte budget, each block is reserved before it is sent,
/// so the total is the budget rounded up to whole blocks, as iperf3 does. With a target rate
/// (`-b`, bits per second), a block starts only while the stream's average since its start is
/// below the rate (iperf3's throttle), sleeping until then otherwise.
fn send_loop(
    sock: &TcpStream,
    len: usize,
    zerocopy: bool,
    rate: u64,
    bytes: &AtomicU64,
    budget: &SendBudget,
    stop: &AtomicBool,
) -> io::Result<()> {
    let span = send_span(len, zerocopy, budget.limit);
    let mut buf = payload(len);
    let file = if zerocopy {
        block_sigpipe_in_this_thread();
        let f = memfd_payload(&buf, span / len)?;
        // sendfile reads the memory file: the block itself is no longer needed.
        buf = Vec::new();
        Some(f)
    } else {
        None
    };
    let fd = sock.as_raw_fd();
    let mut pos = 0usize;
    let mut stopped_at: Option<std::time::Instant> = None;
    let started = std::time::Instant::now();
    let mut sent: u64 = 0;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if pos.is_multiple_of(len) {
            if stopping {
                return Ok(());
            }
            if rate > 0 {
                // When the bytes sent so far are due at this rate.
                let due = Duration::from_secs_f64(sent as f64 * 8.0 / rate as f64);
                let now = started.elapsed();
                if due > now {
                    std::thread::sleep((due - now).min(WAKE));
                    continue;
                }
            }
            if budget.limit > 0
                && budget.sent.fetch_add(len as u64, Ordering::Relaxed) >= budget.limit
            {
                return Ok(());
            }
        } else if stopping {
            let t = *stopped_at.get_or_insert_with(std::time::Instant::now);
            if t.elapsed() > FINISH_BLOCK {
                return Ok(());
            }
        }
        let want = if stopping {
            len - pos % len
        } else {
            span - pos
        };
        let n = match &file {
            Some(f) => {
                let mut off = pos as libc::off_t;
                // SAFETY: both fds are open for the duration of the call; off is a valid pointer.
                let rc = unsafe { libc::sendfile(fd, f.as_raw_fd(), &mut off, want) };
                if rc < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(rc as usize)
                }
            }
            None => io::Write::write(&mut &*sock, &buf[pos..pos + want]),
        };
        match n {
            Ok(0) => return Ok(()),
            Ok(n) => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                sent += n as u64;
                pos = (pos + n) % span;
            }
            Err(e) if transient(&e) => continue,
            Err(e) if peer_gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Receives until stopped or the peer closes. Each call waits for a whole block
/// (`MSG_WAITALL`), as iperf3's receiver loops until it has read `len` bytes, but in one
/// system call: while it sleeps inside the kernel the data is still copied out as it arrives,
/// so the advertised window is the same as with plain reads, and the segments that arrive while
/// this thread holds the socket are processed here (the socket backlog) rather than on the
/// sender's CPU. With `--skip-rx-copy` (`MSG_TRUNC`, no copy at all) the kernel is also asked
/// to wake this thread only once a block is queued (`SO_RCVLOWAT`, capped by the kernel at
/// half a locked buffer), because waking a reader per segment is then its main cost.
fn recv_loop(
    sock: &TcpStream,
    len: usize,
    skip_copy: bool,
    bytes: &AtomicU64,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut buf = vec![0u8; if skip_copy { 1 } else { len }];
    let fd = sock.as_raw_fd();
    let flags = if skip_copy {
        netblame_linux::sockopt::set_rcvlowat(sock, len as u64)?;
        libc::MSG_WAITALL | libc::MSG_TRUNC
    } else {
        libc::MSG_WAITALL
    };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: buf is valid for `len` bytes, or for none when MSG_TRUNC discards the data
        // without writing to it.
        let rc = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), len, flags) };
        let n = if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        };
        match n {
            Ok(0) => return Ok(()),
            Ok(n) => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if transient(&e) => continue,
            Err(e) if peer_gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
