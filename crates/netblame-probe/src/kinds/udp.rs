//! `udp`: echo datagrams (`MAGIC`, sequence number, padding) to a responder. Replies are read on
//! the scheduler's thread while it waits for the next departure.

use super::{describe, poll_until, BUSY_POLL};
use crate::config::ProbeConfig;
use crate::responder::MAGIC;
use crate::state::{ProbeResult, Prober, TargetState};
use crate::target::Target;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct UdpProber {
    sock: UdpSocket,
    datagram: Vec<u8>,
    rbuf: Vec<u8>,
    state: Arc<TargetState>,
    /// Busy-poll for replies until then.
    busy_until: Instant,
}

impl UdpProber {
    pub fn open(cfg: &ProbeConfig, t: &Target, state: Arc<TargetState>) -> io::Result<Self> {
        let any: SocketAddr = if t.addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("address")
        } else {
            "[::]:0".parse().expect("address")
        };
        let sock = UdpSocket::bind(any)?;
        sock.connect(t.addr)?;
        sock.set_nonblocking(true)?;
        let mut datagram = vec![0u8; cfg.size];
        datagram[..8].copy_from_slice(MAGIC);
        Ok(UdpProber {
            sock,
            datagram,
            rbuf: vec![0u8; cfg.size.max(64) + 64],
            state,
            busy_until: Instant::now(),
        })
    }

    fn read_available(&mut self) {
        loop {
            match self.sock.recv(&mut self.rbuf) {
                Ok(n) if n >= 16 && &self.rbuf[..8] == MAGIC => {
                    let seq = u64::from_le_bytes(self.rbuf[8..16].try_into().unwrap_or_default());
                    let ns = self.state.since_scheduled(seq);
                    self.state.record(seq, ProbeResult::reply(ns));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP port unreachable for an earlier datagram, or a transient error.
                Err(_) => return,
            }
        }
    }
}

impl Prober for UdpProber {
    fn fire(&mut self, seq: u64) {
        self.busy_until = Instant::now() + BUSY_POLL;
        self.datagram[8..16].copy_from_slice(&seq.to_le_bytes());
        if let Err(e) = self.sock.send(&self.datagram) {
            let what = if e.kind() == io::ErrorKind::ConnectionRefused {
                "port unreachable (nothing listens there)".to_string()
            } else {
                describe(&e)
            };
            self.state.record(seq, ProbeResult::failed(0, what));
        }
    }

    fn idle(&mut self, until: Instant) {
        let fd = self.sock.as_raw_fd();
        let busy = self.busy_until;
        poll_until(
            fd,
            || libc::POLLIN,
            until,
            busy,
            |_| {
                self.read_available();
                true
            },
        );
    }

    fn finish(&mut self) {}
}
