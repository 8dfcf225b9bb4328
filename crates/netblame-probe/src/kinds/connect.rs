//! `tcp`: a new connection per probe (optionally one request/response on it, like netperf
//! TCP_CRR), each on its own short-lived thread so a slow connect (a lost SYN waits a whole
//! second) never delays the next probe.

use super::{describe, PerProbeThreads};
use crate::config::ProbeConfig;
use crate::responder::MAGIC;
use crate::state::{Ended, ProbeResult, Prober, TargetState};
use crate::target::Target;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct ConnectProber {
    addr: SocketAddr,
    request: bool,
    size: usize,
    state: Arc<TargetState>,
    threads: PerProbeThreads,
}

impl ConnectProber {
    pub fn new(cfg: &ProbeConfig, t: &Target, state: Arc<TargetState>) -> Self {
        ConnectProber {
            addr: t.addr,
            request: cfg.request,
            size: cfg.size.max(8),
            threads: PerProbeThreads::new(state.clone(), 128 * 1024),
            state,
        }
    }
}

impl Prober for ConnectProber {
    fn fire(&mut self, seq: u64) {
        let job = Job {
            addr: self.addr,
            request: self.request,
            size: self.size,
            seq,
            state: self.state.clone(),
        };
        self.threads.spawn(seq, move || job.run());
    }

    fn finish(&mut self) {}
}

struct Job {
    addr: SocketAddr,
    request: bool,
    size: usize,
    seq: u64,
    state: Arc<TargetState>,
}

/// Why a probe stopped early.
pub(crate) enum Stop {
    /// The probe's timeout passed: leave it unanswered (a loss).
    Timeout,
    Failed(String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Stop::Timeout,
            _ => Stop::Failed(describe(&e)),
        }
    }
}

/// Time left before probe `seq`'s timeout, or [`Stop::Timeout`].
pub(crate) fn left(state: &TargetState, seq: u64) -> Result<Duration, Stop> {
    let deadline = state.scheduled(seq) + state.timeout;
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(Stop::Timeout)
    } else {
        Ok(d)
    }
}

impl Job {
    fn run(&self) {
        match self.attempt() {
            Ok(r) => self.state.record(self.seq, r),
            Err(Stop::Timeout) => {}
            Err(Stop::Failed(e)) => {
                let ns = self.state.since_scheduled(self.seq);
                self.state.record(self.seq, ProbeResult::failed(ns, e));
            }
        }
    }

    fn attempt(&self) -> Result<ProbeResult, Stop> {
        let sock = Socket::new(
            Domain::for_address(self.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        sock.set_nodelay(true)?;
        sock.connect_timeout(&SockAddr::from(self.addr), left(&self.state, self.seq)?)?;
        let connect_ns = self.state.since_scheduled(self.seq);
        let total_rto = netblame_linux::sockopt::tcp_info(&sock)
            .ok()
            .and_then(|i| i.total_rto);
        let mut stream: TcpStream = sock.into();
        let mut r = ProbeResult::reply(connect_ns);
        r.connect_ns = Some(connect_ns);
        r.total_rto = total_rto;
        if self.request {
            let mut req = vec![0u8; MAGIC.len() + self.size];
            req[..8].copy_from_slice(MAGIC);
            req[8..16].copy_from_slice(&self.seq.to_le_bytes());
            stream.write_all(&req)?;
            let mut resp = vec![0u8; self.size];
            stream.set_read_timeout(Some(left(&self.state, self.seq)?))?;
            stream.read_exact(&mut resp)?;
            if resp[..8] != self.seq.to_le_bytes() {
                return Err(Stop::Failed("reply does not echo the request".into()));
            }
            r.ended = Ended::Reply(self.state.since_scheduled(self.seq));
        }
        Ok(r)
    }
}
