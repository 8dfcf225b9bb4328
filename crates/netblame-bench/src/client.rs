//! `netblame bench client`: drives a test against an iperf3 or netblame server.

use crate::config::{ClientConfig, Family, TestParams};
use crate::proto::{self, state, ProtoError, COOKIE_SIZE, MAX_RESULTS_JSON};
use crate::running::{self, CpuClock, CpuUsage, EndCause};
use crate::sample::{IntervalSample, Sampler};
use crate::stream::{self, BufferSizes, DataStream, SendBudget, StopFlags};
use netblame_core::observe::transfer::ReceiverHost;
use netblame_core::window::RcvSettings;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One data stream as the client set it up.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StreamInfo {
    /// The stream's number (1, 2... in connect order).
    pub id: i64,
    /// True when the client sends on it.
    pub client_sends: bool,
    /// The client's end, `address:port`.
    pub local: String,
    /// The server's end, `address:port`.
    pub remote: String,
    /// The client socket's buffer sizes.
    pub buffers: BufferSizes,
    /// TCP_MAXSEG once connected, bytes (iperf3's `tcp_mss_default` when `-M` is not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss_bytes: Option<u32>,
}

/// Per-stream totals after the test.
#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct StreamTotals {
    pub id: i64,
    pub client_sends: bool,
    /// Bytes the client sent or received (omitted seconds excluded).
    pub client_bytes: u64,
    /// Bytes the server reported for the stream.
    pub server_bytes: Option<u64>,
    /// Retransmits reported by the sending end (-1 when unknown).
    pub retransmits: i64,
}

/// What the server sent back beyond iperf3's fields, when it is netblame.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerExtension {
    /// The server's samples of every stream.
    pub intervals: Vec<IntervalSample>,
    /// The server sockets' buffer sizes, in stream order.
    pub buffers: Vec<BufferSizes>,
    /// The server's kernel and receive-window sysctls (for the window verdict when it
    /// receives); flattened, so the keys are `kernel` and `rcv_settings`.
    #[serde(default, flatten)]
    pub host: HostSettings,
}

/// One host's kernel release and receive-window sysctls: what the window verdict needs from
/// the receiving end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostSettings {
    /// Kernel release (empty when unknown).
    #[serde(default)]
    pub kernel: String,
    /// The receive-window sysctls (tcp_rmem, tcp_adv_win_scale...), when known.
    #[serde(default)]
    pub rcv_settings: Option<RcvSettings>,
}

impl HostSettings {
    /// Reads this host's (this network namespace's) settings; unknown parts stay empty.
    pub fn read() -> HostSettings {
        let kernel = netblame_linux::sysctl::kernel_version().ok();
        HostSettings {
            kernel: kernel.as_ref().map(|k| k.to_string()).unwrap_or_default(),
            rcv_settings: kernel.as_ref().map(netblame_linux::sysctl::rcv_settings),
        }
    }

    /// The kernel and settings as the window rules take them, when both are known.
    pub fn receiver_host(&self) -> Option<ReceiverHost> {
        Some(ReceiverHost {
            kernel: self.kernel.parse().ok()?,
            settings: self.rcv_settings.clone()?,
        })
    }
}

/// Everything a client run produced.
#[derive(Debug, Clone, Serialize)]
pub struct ClientOutcome {
    pub params: TestParams,
    pub host: String,
    pub port: u16,
    pub cookie: String,
    pub control_local: String,
    pub control_remote: String,
    pub streams: Vec<StreamInfo>,
    /// The client's own samples.
    pub intervals: Vec<IntervalSample>,
    pub totals: Vec<StreamTotals>,
    /// Seconds counted (omit excluded).
    pub seconds: f64,
    pub cpu_local: CpuUsage,
    pub cpu_remote: CpuUsage,
    pub congestion_local: String,
    pub congestion_remote: Option<String>,
    /// The server's samples (only from a netblame server).
    pub server: Option<ServerExtension>,
    /// The server's own text or JSON output (`--get-server-output`).
    pub server_output: Option<Value>,
    /// This host's settings when it receives (`-R`, `--bidir`); empty otherwise.
    pub local_host: HostSettings,
}

/// The first address of `host` in `family`.
fn resolve(host: &str, port: u16, family: Family) -> Result<SocketAddr, ProtoError> {
    // `[::1]` as well as `::1`.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (bare, port)
        .to_socket_addrs()
        .map_err(|e| ProtoError::Other(format!("cannot resolve {host}: {e}")))?
        .find(|a| family.admits(a))
        .ok_or_else(|| {
            ProtoError::Other(match family {
                Family::Any => format!("{host} has no address"),
                Family::V4 => format!("{host} has no IPv4 address (-4)"),
                Family::V6 => format!("{host} has no IPv6 address (-6)"),
            })
        })
}

/// What a running client reports as it goes.
#[derive(Debug)]
pub enum ClientEvent<'a> {
    /// Every data stream is connected and the test is running (iperf3's `start` event).
    Started {
        /// The cookie, without its NUL.
        cookie: &'a str,
        streams: &'a [StreamInfo],
    },
    /// An interval completed.
    Interval(&'a IntervalSample),
}

/// Runs one test. `on_interval` sees each interval as it completes (for live lines).
pub fn run_client(
    cfg: &ClientConfig,
    on_interval: &mut dyn FnMut(&IntervalSample),
) -> Result<ClientOutcome, ProtoError> {
    run_client_with_events(cfg, &mut |ev| {
        if let ClientEvent::Interval(iv) = ev {
            on_interval(iv);
        }
    })
}

/// Runs one test, reporting the start and each interval as they happen (for `--json-stream`).
pub fn run_client_with_events(
    cfg: &ClientConfig,
    on_event: &mut dyn FnMut(ClientEvent),
) -> Result<ClientOutcome, ProtoError> {
    let p = &cfg.params;
    let addr = resolve(&cfg.host, cfg.port, cfg.family)?;
    let ctrl = TcpStream::connect_timeout(&addr, cfg.connect_timeout)
        .map_err(|e| ProtoError::Other(format!("cannot connect to {addr}: {e}")))?;
    ctrl.set_nodelay(true)?;
    // Every blocking control read is bounded, so a silent server cannot hang the client.
    let hs_timeout = cfg.connect_timeout.max(Duration::from_secs(5));
    ctrl.set_read_timeout(Some(hs_timeout))?;
    let cookie = proto::make_cookie();
    (&ctrl).write_all(&cookie)?;
    proto::expect_state(&mut &ctrl, state::PARAM_EXCHANGE)?;
    let mut params_json = p.to_json();
    params_json["netblame"]["interval_ms"] = json!(cfg.interval.as_millis() as u64);
    proto::write_json(&mut &ctrl, &params_json)?;
    proto::expect_state(&mut &ctrl, state::CREATE_STREAMS)?;

    let mut socks = Vec::new();
    for i in 0..p.total_streams() {
        let sending = p.client_sends(i);
        let (s, b) = stream::connect_stream(addr, p, sending, &cookie, cfg.connect_timeout)
            .map_err(|e| ProtoError::Other(format!("data stream {}: {e}", i + 1)))?;
        socks.push((s, sending, b));
    }
    proto::expect_state(&mut &ctrl, state::TEST_START)?;
    proto::expect_state(&mut &ctrl, state::TEST_RUNNING)?;

    let stop = StopFlags::default();
    let budget = SendBudget {
        limit: p.bytes,
        ..SendBudget::default()
    };
    let mut infos = Vec::new();
    let mut streams = Vec::new();
    for (i, (s, sending, b)) in socks.into_iter().enumerate() {
        infos.push(StreamInfo {
            id: proto::stream_id(i),
            client_sends: sending,
            local: s.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            remote: s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            buffers: b,
            mss_bytes: socket2::SockRef::from(&s).mss().ok(),
        });
        streams.push(DataStream::start(
            proto::stream_id(i),
            s,
            sending,
            b,
            p,
            &stop,
            &budget,
        )?);
    }
    let cookie_text = String::from_utf8_lossy(&cookie[..COOKIE_SIZE - 1]).into_owned();
    on_event(ClientEvent::Started {
        cookie: &cookie_text,
        streams: &infos,
    });
    let mut on_interval = |iv: &IntervalSample| on_event(ClientEvent::Interval(iv));
    let on_interval: &mut dyn FnMut(&IntervalSample) = &mut on_interval;
    let congestion_local = streams
        .first()
        .and_then(|s| netblame_linux::sockopt::congestion(&*s.sock).ok())
        .unwrap_or_default();

    let result = run_test(cfg, &ctrl, &streams, &stop, on_interval);
    stop.all();
    let (intervals, final_bytes, base_bytes, seconds, cpu_local, server_results) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = proto::write_state(&mut &ctrl, state::CLIENT_TERMINATE);
            for s in &mut streams {
                let _ = s.finish();
            }
            return Err(e);
        }
    };
    for s in &mut streams {
        let _ = s.finish();
    }

    let sr = &server_results;
    let server_streams = sr["streams"].as_array().cloned().unwrap_or_default();
    let mut totals = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let srv = server_streams
            .iter()
            .find(|v| v["id"].as_i64() == Some(s.id));
        let server_bytes = srv.and_then(|v| v["bytes"].as_u64());
        let retransmits = if s.sending {
            intervals
                .iter()
                .filter(|iv| !iv.omitted)
                .flat_map(|iv| iv.streams.iter().filter(|x| x.id == s.id))
                .map(|x| x.retransmits as i64)
                .sum()
        } else {
            srv.and_then(|v| v["retransmits"].as_i64()).unwrap_or(-1)
        };
        totals.push(StreamTotals {
            id: s.id,
            client_sends: s.sending,
            client_bytes: final_bytes[i].saturating_sub(base_bytes[i]),
            server_bytes,
            retransmits,
        });
    }
    let server = sr
        .get("netblame")
        .and_then(|v| serde_json::from_value::<ServerExtension>(v.clone()).ok());
    let server_output = sr
        .get("server_output_json")
        .or_else(|| sr.get("server_output_text"))
        .cloned();
    Ok(ClientOutcome {
        params: p.clone(),
        host: cfg.host.clone(),
        port: cfg.port,
        cookie: cookie_text,
        control_local: ctrl.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        control_remote: ctrl.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        streams: infos,
        intervals,
        totals,
        seconds,
        cpu_local,
        cpu_remote: CpuUsage {
            total: sr["cpu_util_total"].as_f64().unwrap_or(0.0),
            user: sr["cpu_util_user"].as_f64().unwrap_or(0.0),
            system: sr["cpu_util_system"].as_f64().unwrap_or(0.0),
        },
        congestion_local,
        congestion_remote: sr["congestion_used"].as_str().map(str::to_string),
        server,
        server_output,
        // Only a receiving client's settings enter the verdict.
        local_host: if p.reverse || p.bidir {
            HostSettings::read()
        } else {
            HostSettings::default()
        },
    })
}

type RunResult = (
    Vec<IntervalSample>,
    Vec<u64>,
    Vec<u64>,
    f64,
    CpuUsage,
    Value,
);

fn run_test(
    cfg: &ClientConfig,
    ctrl: &TcpStream,
    streams: &[DataStream],
    stop: &StopFlags,
    on_interval: &mut dyn FnMut(&IntervalSample),
) -> Result<RunResult, ProtoError> {
    let p = &cfg.params;
    let cpu = CpuClock::start();
    let mut sampler = Sampler::new(streams, p.omit_s);
    let mut intervals = Vec::new();
    let omit = p.omit_s as f64;
    let mut base: Option<Vec<u64>> = if p.omit_s == 0 {
        Some(vec![0; streams.len()])
    } else {
        None
    };
    let mut base_at = 0.0;
    let total_time = p.duration().map(|d| d.as_secs_f64());
    let cause = running::run(
        ctrl,
        streams,
        &mut sampler,
        cfg.interval,
        running::Wakeups {
            end_at: total_time,
            max_sleep: Duration::from_millis(if total_time.is_some() { 250 } else { 10 }),
        },
        &mut intervals,
        |elapsed, st| {
            if base.is_none() && elapsed >= omit {
                base = Some(st.iter().map(DataStream::bytes).collect());
                base_at = elapsed;
            }
            match total_time {
                Some(t) => elapsed >= t,
                None => st.iter().map(DataStream::bytes).sum::<u64>() >= p.bytes,
            }
        },
        on_interval,
    )?;
    // Final byte snapshot: what counts. Senders stop now.
    stop.send.store(true, std::sync::atomic::Ordering::SeqCst);
    let final_bytes: Vec<u64> = streams.iter().map(DataStream::bytes).collect();
    let seconds = sampler.elapsed() - base_at;
    let last = sampler.sample(streams, Some(&final_bytes));
    if last.streams.first().is_some_and(|s| s.seconds > 0.01) {
        on_interval(&last);
        intervals.push(last);
    }
    let cpu_local = cpu.read();
    match cause {
        EndCause::Done | EndCause::StreamsClosed => {}
        EndCause::State(s) if s == state::SERVER_TERMINATE => {
            return Err(ProtoError::Terminated("SERVER_TERMINATE".into()))
        }
        EndCause::State(s) => {
            return Err(ProtoError::Unexpected {
                got: proto::state_name(s),
                expected: "nothing while the test runs".into(),
            })
        }
    }
    proto::write_state(&mut &*ctrl, state::TEST_END)?;
    proto::expect_state(&mut &*ctrl, state::EXCHANGE_RESULTS)?;
    let base = base.unwrap_or_else(|| vec![0; streams.len()]);
    let results = crate::running::results_json(
        &cpu_local,
        streams,
        &intervals
            .iter()
            .filter(|iv| !iv.omitted)
            .cloned()
            .collect::<Vec<_>>(),
        |i| final_bytes[i].saturating_sub(base[i]),
        seconds,
    );
    proto::write_json(&mut &*ctrl, &results)?;
    let server_results = proto::read_json(&mut &*ctrl, MAX_RESULTS_JSON)?;
    proto::expect_state(&mut &*ctrl, state::DISPLAY_RESULTS)?;
    proto::write_state(&mut &*ctrl, state::IPERF_DONE)?;
    Ok((
        intervals,
        final_bytes,
        base,
        seconds,
        cpu_local,
        server_results,
    ))
}
