//! `rr`: request/response on one kept TCP connection (netperf TCP_RR), on the fixed schedule.
//! Requests are pipelined when replies are slow (a stall does not hold the next request back);
//! TCP keeps them in order and each echo carries its sequence number. Replies are read on the
//! scheduler's thread while it waits for the next departure (one thread, like sockperf).

use super::{describe, poll_until, BUSY_POLL};
use crate::config::ProbeConfig;
use crate::responder::MAGIC;
use crate::state::{ProbeResult, Prober, TargetState};
use crate::target::Target;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests buffered locally when the socket's send buffer is full; beyond, probes fail.
const MAX_PENDING: usize = 1 << 20;

pub(crate) struct StreamProber {
    stream: TcpStream,
    size: usize,
    pending: Vec<u8>,
    frame: Vec<u8>,
    rbuf: Vec<u8>,
    filled: usize,
    broken: bool,
    state: Arc<TargetState>,
    /// Busy-poll for replies until then.
    busy_until: Instant,
}

impl StreamProber {
    pub fn open(cfg: &ProbeConfig, t: &Target, state: Arc<TargetState>) -> io::Result<Self> {
        let mut stream = TcpStream::connect_timeout(&t.addr, cfg.timeout.max(Duration::from_secs(1))).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connecting for rr probes: {e} (is `netblame probe serve` or `netblame bench server` running there?)"),
            )
        })?;
        stream.set_nodelay(true)?;
        stream.write_all(MAGIC)?;
        stream.set_nonblocking(true)?;
        Ok(StreamProber {
            stream,
            size: cfg.size,
            pending: Vec::new(),
            frame: vec![0u8; cfg.size],
            rbuf: vec![0u8; cfg.size],
            filled: 0,
            broken: false,
            state,
            busy_until: Instant::now(),
        })
    }

    /// Sends as much of `pending` as the socket takes without blocking.
    fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            // SAFETY: the buffer is valid for its length; MSG_DONTWAIT keeps the scheduler from
            // blocking on a full send buffer, MSG_NOSIGNAL turns a reset into EPIPE.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    self.pending.as_ptr().cast(),
                    self.pending.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            self.pending.drain(..n as usize);
        }
        Ok(())
    }

    /// Reads every complete echo available now and records it.
    fn read_available(&mut self) {
        loop {
            match self.stream.read(&mut self.rbuf[self.filled..]) {
                Ok(0) => {
                    self.broken = true;
                    return;
                }
                Ok(n) => {
                    self.filled += n;
                    if self.filled == self.size {
                        self.filled = 0;
                        let seq = u64::from_le_bytes(self.rbuf[..8].try_into().unwrap_or_default());
                        let ns = self.state.since_scheduled(seq);
                        self.state.record(seq, ProbeResult::reply(ns));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
    }
}

impl Prober for StreamProber {
    fn fire(&mut self, seq: u64) {
        self.busy_until = Instant::now() + BUSY_POLL;
        if self.broken {
            self.state.record(
                seq,
                ProbeResult::failed(0, "connection closed by the target"),
            );
            return;
        }
        if self.pending.len() + self.size > MAX_PENDING {
            self.state.record(
                seq,
                ProbeResult::failed(0, "not sent: the target stopped reading (send buffer full)"),
            );
            let _ = self.flush();
            return;
        }
        self.frame[..8].copy_from_slice(&seq.to_le_bytes());
        self.pending.extend_from_slice(&self.frame);
        if let Err(e) = self.flush() {
            self.broken = true;
            self.state.record(seq, ProbeResult::failed(0, describe(&e)));
        }
    }

    fn idle(&mut self, until: Instant) {
        if self.broken {
            crate::schedule::sleep_until(until);
            return;
        }
        let fd = self.stream.as_raw_fd();
        let busy = self.busy_until;
        let pending = std::cell::Cell::new(!self.pending.is_empty());
        let events = || libc::POLLIN | if pending.get() { libc::POLLOUT } else { 0 };
        let mut ready = |revents: i16| {
            if revents & libc::POLLIN != 0 {
                self.read_available();
            }
            if revents & libc::POLLOUT != 0 && self.flush().is_err() {
                self.broken = true;
            }
            pending.set(!self.pending.is_empty());
            !self.broken
        };
        poll_until(fd, events, until, busy, &mut ready);
    }

    fn finish(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
