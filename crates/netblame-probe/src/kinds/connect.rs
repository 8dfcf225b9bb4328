//! `tcp` and `http`: a new connection per probe, on its own short-lived thread so a slow connect
//! (a lost SYN waits a whole second) never delays the next probe.

use super::describe;
use crate::config::ProbeConfig;
use crate::responder::MAGIC;
use crate::state::{ProbeResult, Prober, TargetState};
use crate::target::{ProbeKind, Target};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most probes of one target in flight at once (each holds a thread).
const MAX_IN_FLIGHT: u64 = 4096;

pub(crate) struct ConnectProber {
    kind: ProbeKind,
    addr: SocketAddr,
    host: String,
    path: String,
    request: bool,
    size: usize,
    state: Arc<TargetState>,
    in_flight: Arc<AtomicU64>,
}

impl ConnectProber {
    pub fn new(cfg: &ProbeConfig, t: &Target, state: Arc<TargetState>) -> Self {
        ConnectProber {
            kind: cfg.kind,
            addr: t.addr,
            host: t.host.clone(),
            path: t.path.clone(),
            request: cfg.request,
            size: cfg.size.max(8),
            state,
            in_flight: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Prober for ConnectProber {
    fn fire(&mut self, seq: u64) {
        if self.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            self.state.record(
                seq,
                ProbeResult::failed(
                    0,
                    format!("not sent: {MAX_IN_FLIGHT} probes already in flight (local limit)"),
                ),
            );
            return;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            kind: self.kind,
            addr: self.addr,
            host: self.host.clone(),
            path: self.path.clone(),
            request: self.request,
            size: self.size,
            seq,
            state: self.state.clone(),
        };
        let in_flight = self.in_flight.clone();
        let spawned = std::thread::Builder::new()
            .name("probe-connect".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                job.run();
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.state.record(
                seq,
                ProbeResult::failed(0, format!("not sent: cannot start a thread: {e}")),
            );
        }
    }

    fn finish(&mut self) {}
}

struct Job {
    kind: ProbeKind,
    addr: SocketAddr,
    host: String,
    path: String,
    request: bool,
    size: usize,
    seq: u64,
    state: Arc<TargetState>,
}

enum Stop {
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

impl Job {
    fn deadline(&self) -> Instant {
        self.state.scheduled(self.seq) + self.state.timeout
    }

    fn left(&self) -> Result<Duration, Stop> {
        let d = self.deadline().saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(Stop::Timeout)
        } else {
            Ok(d)
        }
    }

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
        sock.connect_timeout(&SockAddr::from(self.addr), self.left()?)?;
        let connect_ns = self.state.since_scheduled(self.seq);
        let total_rto = netblame_linux::sockopt::tcp_info(&sock)
            .ok()
            .and_then(|i| i.total_rto);
        let mut stream: TcpStream = sock.into();
        let mut r = ProbeResult::reply(connect_ns);
        r.connect_ns = Some(connect_ns);
        r.total_rto = total_rto;
        match self.kind {
            ProbeKind::Http => {
                let (first, total, status) = self.http_get(&mut stream)?;
                r.first_byte_ns = Some(first);
                if status >= 500 {
                    let mut f = ProbeResult::failed(total, format!("HTTP {status}"));
                    f.connect_ns = r.connect_ns;
                    f.first_byte_ns = r.first_byte_ns;
                    f.total_rto = r.total_rto;
                    return Ok(f);
                }
                r.ended = crate::state::Ended::Reply(total);
            }
            _ if self.request => {
                let mut req = vec![0u8; MAGIC.len() + self.size];
                req[..8].copy_from_slice(MAGIC);
                req[8..16].copy_from_slice(&self.seq.to_le_bytes());
                stream.write_all(&req)?;
                let mut resp = vec![0u8; self.size];
                stream.set_read_timeout(Some(self.left()?))?;
                stream.read_exact(&mut resp)?;
                if resp[..8] != self.seq.to_le_bytes() {
                    return Err(Stop::Failed("reply does not echo the request".into()));
                }
                r.ended = crate::state::Ended::Reply(self.state.since_scheduled(self.seq));
            }
            _ => {}
        }
        Ok(r)
    }

    /// GET, returning (first byte ns, total ns, status).
    fn http_get(&self, stream: &mut TcpStream) -> Result<(u64, u64, u16), Stop> {
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: netblame-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path, self.host
        );
        stream.write_all(req.as_bytes())?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut head = Vec::new();
        let mut first = None;
        let mut body_len: Option<usize> = None;
        let mut body_seen = 0usize;
        let mut status = 0u16;
        loop {
            stream.set_read_timeout(Some(self.left()?))?;
            let n = match stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n > 0 && first.is_none() {
                first = Some(self.state.since_scheduled(self.seq));
            }
            if n == 0 {
                break;
            }
            if status == 0 {
                head.extend_from_slice(&buf[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    let text = String::from_utf8_lossy(&head[..end]).to_string();
                    status = parse_status(&text)
                        .ok_or_else(|| Stop::Failed("not an HTTP response".into()))?;
                    body_len = content_length(&text);
                    body_seen = head.len() - end - 4;
                } else if head.len() > 64 * 1024 {
                    return Err(Stop::Failed("HTTP header larger than 64 KiB".into()));
                }
            } else {
                body_seen += n;
            }
            if status != 0 && body_len.is_some_and(|l| body_seen >= l) {
                break;
            }
        }
        if status == 0 {
            return Err(Stop::Failed(if head.is_empty() {
                "closed without a response".into()
            } else {
                "truncated HTTP response".into()
            }));
        }
        let total = self.state.since_scheduled(self.seq);
        Ok((first.unwrap_or(total), total, status))
    }
}

fn parse_status(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_head_parsing() {
        let h = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nX: y";
        assert_eq!(parse_status(h), Some(503));
        assert_eq!(content_length(h), Some(12));
        assert_eq!(parse_status("garbage"), None);
    }
}
