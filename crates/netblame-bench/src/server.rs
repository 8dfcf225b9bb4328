//! `netblame bench server`: serves iperf3 and netblame clients, several at once. Every accepted
//! connection goes through [`Server::route`]: its first bytes decide whether it is a data stream
//! of a running session (cookie known), a new control connection (cookie unknown), or garbage.

use crate::client::ServerExtension;
use crate::config::TestParams;
use crate::proto::{self, state, ProtoError, COOKIE_SIZE, MAX_PARAMS_JSON};
use crate::running::{self, CpuClock, CpuUsage, EndCause};
use crate::sample::{IntervalSample, Sampler};
use crate::stream::{self, BufferSizes, DataStream, SendBudget, StopFlags};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// A connection silent this long (no cookie, no parameters, no streams, no bytes) is dropped.
    pub idle_timeout: Duration,
    /// Serve one test (successful or not), then return.
    pub one_off: bool,
    /// Concurrent tests; more get ACCESS_DENIED.
    pub max_sessions: usize,
    /// Concurrent connections still being identified (sent no cookie yet); more are dropped.
    pub max_pending: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "0.0.0.0:5201".parse().expect("literal address"),
            max_duration: None,
            idle_timeout: Duration::from_secs(30),
            one_off: false,
            max_sessions: 8,
            max_pending: 64,
        }
    }
}

/// One stream's totals on the server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStreamTotals {
    pub id: i64,
    /// True when the server sent on it.
    pub server_sends: bool,
    pub server_bytes: u64,
    /// Bytes the client reported.
    pub client_bytes: Option<u64>,
    pub buffers: BufferSizes,
}

/// A finished test, as the server saw it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub peer: String,
    pub params: Value,
    pub peer_is_netblame: bool,
    pub seconds: f64,
    pub streams: Vec<ServerStreamTotals>,
    pub intervals: Vec<IntervalSample>,
    pub cpu: CpuUsage,
}

/// What the server tells its caller (the CLI prints these; the library never does).
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A test started.
    Started { peer: String, params: Value },
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

/// Data connections travel to their session with their accept sequence number: threads reading
/// cookies may finish out of order, the accept order is the client's connect order.
type Registry = Arc<Mutex<HashMap<[u8; COOKIE_SIZE], SyncSender<(u64, TcpStream)>>>>;

struct Shared {
    cfg: ServerConfig,
    sessions: Registry,
    active: AtomicUsize,
    pending: AtomicUsize,
    shutdown: Arc<AtomicBool>,
    on_event: Box<dyn Fn(ServerEvent) + Send + Sync>,
}

/// A bound server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listener. `on_event` receives progress and outcomes.
    pub fn bind(
        cfg: ServerConfig,
        on_event: impl Fn(ServerEvent) + Send + Sync + 'static,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(cfg.bind)?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                cfg,
                sessions: Arc::default(),
                active: AtomicUsize::new(0),
                pending: AtomicUsize::new(0),
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

    /// Accepts connections until shut down (or after one test with `one_off`).
    pub fn serve(&self) -> io::Result<()> {
        // `netblame probe --kind udp` answered on the same port, while serving (best effort).
        let _udp_echo = self
            .local_addr()
            .ok()
            .and_then(|a| netblame_probe::responder::UdpEcho::start(a).ok());
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        let mut seq = 0u64;
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((conn, peer)) => {
                    if self.shared.pending.load(Ordering::SeqCst) >= self.shared.cfg.max_pending {
                        drop(conn);
                        continue;
                    }
                    let _ = conn.set_nonblocking(false);
                    let shared = self.shared.clone();
                    seq += 1;
                    let n = seq;
                    self.shared.pending.fetch_add(1, Ordering::SeqCst);
                    match std::thread::Builder::new()
                        .name("bench-conn".into())
                        .spawn(move || Server::route(&shared, conn, peer, n))
                    {
                        Ok(h) => workers.push(h),
                        Err(_) => {
                            self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    workers.retain(|h| !h.is_finished());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ =
                        running::wait_readable_listener(&self.listener, Duration::from_millis(100));
                    workers.retain(|h| !h.is_finished());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => return Err(e),
            }
        }
        for h in workers {
            let _ = h.join();
        }
        Ok(())
    }

    /// The single accept path: reads the first bytes of a connection and routes it. A known
    /// cookie makes it a data stream of that session; an unknown well-formed cookie opens a
    /// new session; anything else is dropped.
    ///
    /// Other protocols on the same port (the latency probes' magic prefix) belong here, before
    /// `read_cookie`: peek at the first bytes (`MSG_PEEK`) and hand the connection over when they
    /// are not the start of a cookie.
    fn route(shared: &Arc<Shared>, conn: TcpStream, peer: SocketAddr, seq: u64) {
        // `netblame probe --kind rr` (and `tcp --request`): the probe magic instead of a cookie.
        // One deadline for the probe magic and the cookie together.
        let wait = shared.cfg.idle_timeout.min(Duration::from_secs(10));
        let arrived = std::time::Instant::now();
        if netblame_probe::responder::peek_probe_hello(&conn, wait).unwrap_or(false) {
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            let _ = netblame_probe::responder::serve_probe_stream(conn);
            return;
        }
        let left = wait
            .saturating_sub(arrived.elapsed())
            .max(Duration::from_millis(1));
        let first = read_cookie(&conn, left);
        shared.pending.fetch_sub(1, Ordering::SeqCst);
        let peer_s = peer.to_string();
        let cookie = match first {
            Ok(c) if proto::is_cookie(&c) => c,
            Ok(_) => {
                (shared.on_event)(ServerEvent::Dropped {
                    peer: peer_s,
                    reason: "garbage instead of an iperf3 cookie".into(),
                });
                return;
            }
            Err(e) => {
                (shared.on_event)(ServerEvent::Dropped {
                    peer: peer_s,
                    reason: format!("no cookie: {e}"),
                });
                return;
            }
        };
        let data_tx = shared
            .sessions
            .lock()
            .ok()
            .and_then(|m| m.get(&cookie).cloned());
        if let Some(tx) = data_tx {
            if tx.try_send((seq, conn)).is_err() {
                (shared.on_event)(ServerEvent::Dropped {
                    peer: peer_s,
                    reason: "data stream beyond the announced count".into(),
                });
            }
            return;
        }
        // A new control connection.
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.cfg.max_sessions {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            let _ = proto::write_state(&mut &conn, state::ACCESS_DENIED);
            (shared.on_event)(ServerEvent::Dropped {
                peer: peer_s,
                reason: "busy: too many concurrent tests".into(),
            });
            return;
        }
        let outcome = run_session(shared, &conn, &peer_s, cookie);
        shared.active.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(report) => (shared.on_event)(ServerEvent::Finished(Box::new(report))),
            Err(e) => (shared.on_event)(ServerEvent::Dropped {
                peer: peer_s,
                reason: e.to_string(),
            }),
        }
        if shared.cfg.one_off {
            shared.shutdown.store(true, Ordering::SeqCst);
        }
    }
}

fn read_cookie(conn: &TcpStream, timeout: Duration) -> io::Result<[u8; COOKIE_SIZE]> {
    conn.set_read_timeout(Some(timeout))?;
    let mut c = [0u8; COOKIE_SIZE];
    (&*conn).read_exact(&mut c)?;
    Ok(c)
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
}

fn run_session(
    shared: &Arc<Shared>,
    ctrl: &TcpStream,
    peer: &str,
    cookie: [u8; COOKIE_SIZE],
) -> Result<SessionReport, ProtoError> {
    let cfg = &shared.cfg;
    ctrl.set_nodelay(true)?;
    ctrl.set_read_timeout(Some(cfg.idle_timeout))?;
    proto::write_state(&mut &*ctrl, state::PARAM_EXCHANGE)?;
    let raw = match proto::read_json(&mut &*ctrl, MAX_PARAMS_JSON) {
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
    (shared.on_event)(ServerEvent::Started {
        peer: peer.to_string(),
        params: raw.clone(),
    });
    let n = p.total_streams();
    let (tx, rx) = sync_channel::<(u64, TcpStream)>(n);
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
    socks.sort_by_key(|(seq, _)| *seq);

    let stop = StopFlags::default();
    let budget = SendBudget {
        limit: p.bytes,
        ..SendBudget::default()
    };
    let mut streams = Vec::with_capacity(n);
    for (i, (_, s)) in socks.into_iter().enumerate() {
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
            if total != last_total {
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
                "no data for {} s: dropped the test",
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
    let client_results = proto::read_json(&mut &*ctrl, 1 << 20)
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
    let _ = ctrl.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = proto::read_state(&mut &*ctrl);
    Ok((intervals, final_bytes, seconds, cpu, client_results))
}
