//! `netblame bench`: an iperf3-compatible throughput test that says what limited the transfer.

use crate::args;
use crate::render;
use anyhow::Context;
use netblame_bench::client::{ClientEvent, ClientOutcome};
use netblame_bench::config::{ClientConfig, Family, TestParams, DEFAULT_LEN};
use netblame_bench::iperf3_json::{ClientDoc, StreamEvent};
use netblame_bench::report;
use netblame_bench::sample::IntervalSample;
use netblame_bench::server::{ServerConfig, ServerEvent, SessionReport};
use netblame_core::diagnose::{diagnose, Observations};
use netblame_core::json::JsonDoc;
use netblame_core::observe::transfer::{PathFacts, Transfer};
use netblame_core::units::format_duration;
use netblame_core::{BitRate, Bytes, Finding};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(clap::Subcommand)]
enum Role {
    /// Serve tests from iperf3 and netblame clients (several at once).
    Server(ServerArgs),
    /// Run a test against an iperf3 or netblame server.
    Client(Box<ClientArgs>),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Port to listen on.
    #[arg(short = 'p', long, default_value_t = 5201)]
    port: u16,
    /// Address to bind (default: every address, IPv6 and IPv4 on one socket; with -4 every
    /// IPv4 address, with -6 every IPv6 address).
    #[arg(short = 'B', long)]
    bind: Option<IpAddr>,
    /// IPv4 only.
    #[arg(short = '4', long = "version4", conflicts_with = "v6")]
    v4: bool,
    /// IPv6 only (IPv4 clients are refused).
    #[arg(short = '6', long = "version6")]
    v6: bool,
    /// Append the output to this file instead of printing it (iperf3 --logfile).
    #[arg(long, value_name = "FILE")]
    logfile: Option<std::path::PathBuf>,
    /// Refuse and stop tests longer than this (e.g. 60s).
    #[arg(long, value_parser = args::duration)]
    max_duration: Option<Duration>,
    /// Deadline of each protocol stage as a whole (parameters, streams, results); a running
    /// test that moves less than 4 KiB in this long and a silent probe connection are dropped;
    /// a new connection gets at most 10 s of it to send its cookie.
    #[arg(long, value_parser = args::duration, default_value = "30s")]
    idle_timeout: Duration,
    /// Serve one test, then exit.
    #[arg(short = '1', long)]
    one_off: bool,
    /// Concurrent tests before clients get "busy".
    #[arg(long, default_value_t = 8, value_parser = args::count)]
    max_clients: u64,
    /// Connections that sent no cookie yet; beyond this the oldest is evicted.
    #[arg(long, default_value_t = 64, value_parser = args::count)]
    max_pending: u64,
    /// Open connections of every kind together (lowered to fit the file descriptor limit);
    /// probe connections get at most a quarter.
    #[arg(long, default_value_t = 1024, value_parser = args::count)]
    max_connections: u64,
    /// Block buffers all running tests may hold together; a test needing more is refused
    /// with iperf3's "unable to create a new test: Cannot allocate memory".
    #[arg(long, default_value = "256MiB", value_parser = args::size)]
    max_memory: Bytes,
    /// One JSON line per finished test instead of text.
    #[arg(short = 'J', long)]
    json: bool,
    /// JSON lines as iperf3 --json-stream writes them: per test {"event":"start"}, one
    /// {"event":"interval"} per interval, {"event":"end"}; {"event":"error"} for a dropped
    /// test. Tests running at once interleave their lines (--max-clients 1 keeps them apart,
    /// as iperf3 serves one test at a time).
    #[arg(long, conflicts_with = "json")]
    json_stream: bool,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// Server host name or address.
    host: String,
    /// Server port.
    #[arg(short = 'p', long, default_value_t = 5201, value_parser = args::port)]
    port: u16,
    /// Seconds to transmit (1 to 86400, as iperf3).
    #[arg(short = 't', long, default_value_t = 10, value_parser = args::test_seconds)]
    time: u64,
    /// Bytes to transmit instead of a time (10M, 1GiB).
    #[arg(short = 'n', long, value_parser = args::size)]
    bytes: Option<Bytes>,
    /// Parallel streams (a thread each).
    #[arg(short = 'P', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=128))]
    parallel: u16,
    /// Reverse: the server sends, the client receives.
    #[arg(short = 'R', long)]
    reverse: bool,
    /// Both directions at once.
    #[arg(long, conflicts_with = "reverse")]
    bidir: bool,
    /// SO_SNDBUF and SO_RCVBUF on every data socket of both ends (iperf3 -w).
    #[arg(short = 'w', long, value_parser = args::socket_buffer)]
    window: Option<Bytes>,
    /// SO_RCVBUF on the receiving side only (a netblame server applies it when it receives).
    #[arg(long, value_parser = args::socket_buffer)]
    rcvbuf: Option<Bytes>,
    /// SO_SNDBUF on the sending side only.
    #[arg(long, value_parser = args::socket_buffer)]
    sndbuf: Option<Bytes>,
    /// TCP_NODELAY.
    #[arg(short = 'N', long)]
    no_delay: bool,
    /// Congestion control algorithm (cubic, bbr, reno...).
    #[arg(short = 'C', long)]
    congestion: Option<String>,
    /// TCP maximum segment size (TCP_MAXSEG, 88 to 32767 bytes).
    #[arg(short = 'M', long, value_parser = args::mss)]
    set_mss: Option<u32>,
    /// Block size per write/read (default 128 KiB).
    #[arg(short = 'l', long, value_parser = args::block_size)]
    length: Option<Bytes>,
    /// Omit the first N seconds from the totals (slow start).
    #[arg(short = 'O', long, default_value_t = 0)]
    omit: u64,
    /// Seconds between samples and live lines.
    #[arg(short = 'i', long, default_value = "1", value_parser = parse_interval)]
    interval: Duration,
    /// Send with sendfile(2) from a memory file (zero copy on the sender; up to 1 MiB of whole
    /// blocks per call).
    #[arg(short = 'Z', long)]
    zerocopy: bool,
    /// Receive with MSG_TRUNC (no copy into user space), woken once per block (SO_RCVLOWAT).
    /// Without it the receiver reads whole blocks with MSG_WAITALL, as iperf3 does.
    #[arg(long)]
    skip_rx_copy: bool,
    /// Include the server's own output in the results.
    #[arg(long)]
    get_server_output: bool,
    /// Say whether an application with this read timeout would have given up (e.g. 30s).
    #[arg(long, value_parser = args::duration)]
    app_timeout: Option<Duration>,
    /// How long to wait for connections; handshake replies get this too, but at least 5 s.
    #[arg(long, value_parser = args::duration, default_value = "10s")]
    connect_timeout: Duration,
    /// Target rate of each sending stream in bits per second (100m, 1g; 0 = unlimited): the
    /// sender keeps its average at or below it and the kernel paces it (SO_MAX_PACING_RATE).
    #[arg(short = 'b', long, value_name = "RATE", value_parser = args::bitrate)]
    bitrate: Option<u64>,
    /// SO_MAX_PACING_RATE of each sending stream in bits per second (iperf3 --fq-rate): the
    /// kernel's pacing alone, without -b's own throttle.
    #[arg(long, value_name = "RATE", value_parser = args::bitrate)]
    fq_rate: Option<u64>,
    /// Use the host's IPv4 address only.
    #[arg(short = '4', long = "version4", conflicts_with = "v6")]
    v4: bool,
    /// Use the host's IPv6 address only.
    #[arg(short = '6', long = "version6")]
    v6: bool,
    /// One iperf3-layout JSON document (with a `netblame` key) instead of text.
    #[arg(short = 'J', long)]
    json: bool,
    /// JSON lines as iperf3 --json-stream writes them, as the test runs: {"event":"start"},
    /// one {"event":"interval"} per interval, {"event":"netblame"} (samples and findings) and
    /// {"event":"end"}; {"event":"error"} on failure.
    #[arg(long, conflicts_with = "json")]
    json_stream: bool,
    /// Append the output to this file instead of printing it (iperf3 --logfile).
    #[arg(long, value_name = "FILE")]
    logfile: Option<std::path::PathBuf>,
    /// Also draw an SVG: throughput, cwnd, RTT and what limited the sender per interval, from
    /// both ends when the server is netblame.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = args::seconds(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
        return Err("interval must be between 0.1 and 60 seconds".into());
    }
    Ok(d)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.role {
        Role::Server(a) => server(a),
        Role::Client(a) => client(*a),
    }
}

fn client(a: ClientArgs) -> anyhow::Result<ExitCode> {
    let len = a.length.map(|b| b.get() as usize).unwrap_or(DEFAULT_LEN);
    if len == 0 || len > netblame_bench::config::MAX_LEN {
        anyhow::bail!("-l must be between 1 byte and 16 MiB");
    }
    if a.time == 0 && a.bytes.is_none() {
        anyhow::bail!("-t must be at least 1 second (or give -n)");
    }
    let cfg = ClientConfig {
        host: a.host.clone(),
        port: a.port,
        params: TestParams {
            time_s: a.time,
            bytes: a.bytes.map(Bytes::get).unwrap_or(0),
            omit_s: a.omit,
            parallel: a.parallel as usize,
            reverse: a.reverse,
            bidir: a.bidir,
            window: a.window.map(Bytes::get),
            len,
            mss: a.set_mss,
            nodelay: a.no_delay,
            congestion: a.congestion.clone(),
            get_server_output: a.get_server_output,
            zerocopy: a.zerocopy,
            skip_rx_copy: a.skip_rx_copy,
            rcvbuf: a.rcvbuf.map(Bytes::get),
            sndbuf: a.sndbuf.map(Bytes::get),
            interval_ms: a.interval.as_millis() as u64,
            peer_is_netblame: false,
            bandwidth: a.bitrate.unwrap_or(0),
            fqrate: a.fq_rate.unwrap_or(0),
        },
        interval: a.interval,
        app_timeout: a.app_timeout,
        connect_timeout: a.connect_timeout,
        family: family(a.v4, a.v6),
    };
    if let Some(path) = &a.logfile {
        log_to(path)?;
    }
    if a.json_stream {
        return client_json_stream(&cfg, a.app_timeout);
    }
    if !a.json {
        println!(
            "Connecting to host {}, port {} ({} stream{}{})",
            a.host,
            a.port,
            a.parallel,
            if a.parallel > 1 { "s" } else { "" },
            if a.bidir {
                ", both directions"
            } else if a.reverse {
                ", reverse: server sends"
            } else {
                ""
            }
        );
        println!("{}", interval_header());
    }
    let json = a.json;
    let mut live = |iv: &IntervalSample| {
        if !json {
            print!("{}", interval_lines(iv));
        }
    };
    let outcome = netblame_bench::run_client(&cfg, &mut live)?;
    let findings = client_findings(&outcome, a.app_timeout);
    if let Some(p) = &a.plot {
        crate::plot::save(p, &crate::plot::bench::render(&outcome)?)?;
    }
    if json {
        render::print_json(&report::iperf3_json(&outcome, &findings))?;
    } else {
        print!("{}", summary_text(&outcome));
        if outcome.server.is_none() && (outcome.params.reverse || outcome.params.bidir) {
            println!("(the server is not netblame: no sender-side tcp_info for server -> client)");
        }
        if let Some(out) = &outcome.server_output {
            println!(
                "Server output:\n{}",
                out.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| out.to_string())
            );
        }
        println!();
        print!("{}", render::findings(&findings));
    }
    Ok(ExitCode::SUCCESS)
}

fn family(v4: bool, v6: bool) -> Family {
    match (v4, v6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    }
}

/// `--logfile`: from now on standard output appends to `path` (errors stay on stderr).
fn log_to(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("--logfile {}", path.display()))?;
    // SAFETY: both descriptors are open; dup2 makes fd 1 a second descriptor of the file, which
    // stays open after `f` is dropped.
    if unsafe { libc::dup2(f.as_raw_fd(), libc::STDOUT_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("--logfile {}", path.display()));
    }
    Ok(())
}

/// One `--json-stream` line, as iperf3 writes it (`{"event":NAME,"data":DATA}`, compact), with
/// `schema_version` in front.
fn stream_event(event: StreamEvent) {
    print_line(&event);
}

/// One JSON line; a line that cannot be written is said on stderr (the stream goes on).
fn print_line<T: serde::Serialize>(body: &T) {
    if let Err(e) = render::print_json_line(body) {
        eprintln!("cannot write a JSON line: {e}");
    }
}

/// `--json-stream`: the start, each interval and the end as JSON lines while the test runs.
fn client_json_stream(
    cfg: &ClientConfig,
    app_timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let params = cfg.params.clone();
    let run = netblame_bench::run_client_with_events(cfg, &mut |ev| match ev {
        ClientEvent::Started { cookie, streams } => stream_event(StreamEvent::Start(Box::new(
            report::start_json(&cfg.host, cfg.port, &params, cookie, streams),
        ))),
        ClientEvent::Interval(iv) => stream_event(StreamEvent::Interval(Box::new(
            report::interval_json(&params, iv),
        ))),
    });
    let outcome = match run {
        Ok(o) => o,
        Err(e) => {
            stream_event(StreamEvent::Error(e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    let findings = client_findings(&outcome, app_timeout);
    if let Some(out) = &outcome.server_output {
        stream_event(match out {
            serde_json::Value::String(text) => StreamEvent::ServerOutputText(text.clone()),
            json => StreamEvent::ServerOutputJson(json.clone()),
        });
    }
    stream_event(StreamEvent::Netblame(Box::new(report::netblame_json(
        &outcome, &findings,
    ))));
    stream_event(StreamEvent::End(Box::new(report::end_json(&outcome))));
    Ok(ExitCode::SUCCESS)
}

fn interval_header() -> String {
    format!(
        "{:<6} {:<13} {:>10} {:>14} {:>5} {:>10} {:>10} {:>9} {:>8}  limits (rwnd/sndbuf/busy)",
        "[ ID]", "Interval", "Transfer", "Bitrate", "Retr", "Cwnd", "Wnd", "RTT", "Recv-Q"
    )
}

fn interval_lines(iv: &IntervalSample) -> String {
    let mut out = String::new();
    let line = |id: &str, s: &netblame_bench::sample::StreamSample| {
        let lim = match (s.busy_us, s.rwnd_limited_us, s.sndbuf_limited_us) {
            (Some(b), Some(r), Some(sb)) if s.sender => {
                let iv = s.interval_us.max(1) as f64;
                format!(
                    "{:.0}%/{:.0}%/{:.0}%",
                    r as f64 / iv * 100.0,
                    sb as f64 / iv * 100.0,
                    b as f64 / iv * 100.0
                )
            }
            _ => String::new(),
        };
        format!(
            "[{:>4}] {:>5.2}-{:<6.2} s {:>10} {:>14} {:>5} {:>10} {:>10} {:>9} {:>8}  {}{}\n",
            id,
            s.start,
            s.end,
            Bytes(s.bytes).to_string(),
            BitRate(s.bits_per_second).to_string(),
            if s.sender {
                s.retransmits.to_string()
            } else {
                "-".into()
            },
            Bytes(s.snd_cwnd_bytes).to_string(),
            Bytes(if s.sender {
                s.snd_wnd_bytes.unwrap_or(0)
            } else {
                s.rcv_wnd_bytes.unwrap_or(0)
            })
            .to_string(),
            format_duration(Duration::from_micros(s.rtt_us)),
            Bytes(s.recv_q_bytes).to_string(),
            lim,
            if s.omitted {
                " (omitted)"
            } else if s.sender {
                ""
            } else {
                " receiver"
            }
        )
    };
    for s in &iv.streams {
        out += &line(&s.id.to_string(), s);
    }
    if iv.streams.len() > 1 {
        let bytes: u64 = iv.streams.iter().map(|s| s.bytes).sum();
        let secs = iv.streams[0].seconds.max(1e-9);
        out += &format!(
            "[ SUM] {:>5.2}-{:<6.2} s {:>10} {:>14}\n",
            iv.start,
            iv.end,
            Bytes(bytes).to_string(),
            BitRate(bytes as f64 * 8.0 / secs).to_string()
        );
    }
    out
}

fn summary_text(o: &ClientOutcome) -> String {
    let mut rows = Vec::new();
    for t in &o.totals {
        let (sent, recvd) = if t.client_sends {
            (Some(t.client_bytes), t.server_bytes)
        } else {
            (t.server_bytes, Some(t.client_bytes))
        };
        let rate = |b: Option<u64>| {
            b.map(|b| BitRate(b as f64 * 8.0 / o.seconds.max(1e-9)).to_string())
                .unwrap_or("-".into())
        };
        rows.push(vec![
            t.id.to_string(),
            if t.client_sends {
                "client -> server"
            } else {
                "server -> client"
            }
            .to_string(),
            sent.map(|b| Bytes(b).to_string()).unwrap_or("-".into()),
            rate(sent),
            recvd.map(|b| Bytes(b).to_string()).unwrap_or("-".into()),
            rate(recvd),
            if t.retransmits >= 0 {
                t.retransmits.to_string()
            } else {
                "-".into()
            },
        ]);
    }
    let mut out = format!("\nTotals over {:.2} s:\n", o.seconds);
    out += &render::table(
        &[
            "ID",
            "Direction",
            "Sent",
            "Sender rate",
            "Received",
            "Receiver rate",
            "Retr",
        ],
        &rows,
    );
    let mut brows = Vec::new();
    for (i, s) in o.streams.iter().enumerate() {
        let mut add = |side: &str, b: &netblame_bench::stream::BufferSizes| {
            let req = |r: Option<u64>| r.map(|v| Bytes(v).to_string()).unwrap_or("auto".into());
            brows.push(vec![
                s.id.to_string(),
                side.to_string(),
                req(b.requested_sndbuf_bytes),
                Bytes(b.actual_sndbuf_bytes).to_string(),
                req(b.requested_rcvbuf_bytes),
                Bytes(b.actual_rcvbuf_bytes).to_string(),
            ]);
        };
        add("client", &s.buffers);
        if let Some(b) = o.server.as_ref().and_then(|x| x.buffers.get(i)) {
            add("server", b);
        }
    }
    out += "\nSocket buffers (requested vs actual; the kernel doubles requests and caps them at rmem_max/wmem_max):\n";
    out += &render::table(
        &[
            "ID",
            "End",
            "SO_SNDBUF asked",
            "sndbuf actual",
            "SO_RCVBUF asked",
            "rcvbuf actual",
        ],
        &brows,
    );
    out += &format!(
        "\nCPU: local {:.1}% (user {:.1}%, system {:.1}%), remote {:.1}%\n",
        o.cpu_local.total, o.cpu_local.user, o.cpu_local.system, o.cpu_remote.total
    );
    out
}

/// The verdict on a client run: the core's diagnose step on each direction that carried data.
fn client_findings(
    outcome: &netblame_bench::ClientOutcome,
    app_timeout: Option<Duration>,
) -> Vec<Finding> {
    diagnose(&Observations {
        transfers: report::observations(outcome, app_timeout),
        ..Default::default()
    })
    .all
}

/// The verdict on what a server saw while it was the sender.
fn server_findings(r: &SessionReport) -> Vec<Finding> {
    let mut by_id: Vec<(i64, Vec<&netblame_bench::sample::StreamSample>)> = Vec::new();
    for iv in &r.intervals {
        for s in iv.streams.iter().filter(|s| s.sender) {
            match by_id.iter_mut().find(|(id, _)| *id == s.id) {
                Some((_, v)) => v.push(s),
                None => by_id.push((s.id, vec![s])),
            }
        }
    }
    if by_id.is_empty() {
        return Vec::new();
    }
    let senders: Vec<_> = by_id
        .iter()
        .map(|(id, v)| report::sender_stream(*id, v))
        .collect();
    let t = Transfer {
        subject: format!("server -> {}", r.peer),
        sender: report::sender_facts(&senders),
        path: PathFacts {
            rtt: report::mean_rtt(&senders),
            ..Default::default()
        },
        ..Default::default()
    };
    diagnose(&Observations {
        transfers: vec![t],
        ..Default::default()
    })
    .all
}

fn server(a: ServerArgs) -> anyhow::Result<ExitCode> {
    let json = a.json;
    if let Some(path) = &a.logfile {
        log_to(path)?;
    }
    let bind = a.bind.unwrap_or(if a.v4 {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
    });
    if (a.v4 && bind.is_ipv6()) || (a.v6 && bind.is_ipv4()) {
        return Err(args::usage(format!(
            "-B {bind} is not an {} address",
            if a.v4 { "IPv4 (-4)" } else { "IPv6 (-6)" }
        )));
    }
    let cfg = ServerConfig {
        bind: SocketAddr::new(bind, a.port),
        v6_only: a.v6,
        max_duration: a.max_duration,
        idle_timeout: a.idle_timeout,
        one_off: a.one_off,
        max_sessions: a.max_clients as usize,
        max_pending: a.max_pending as usize,
        max_connections: a.max_connections as usize,
        max_memory: a.max_memory.get(),
    };
    let srv = if a.json_stream {
        netblame_bench::Server::bind(cfg, server_json_stream())
    } else {
        netblame_bench::Server::bind(cfg, server_events(json))
    }
    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", SocketAddr::new(bind, a.port)))?;
    if !json && !a.json_stream {
        println!("Server listening on {}", srv.local_addr()?);
    }
    srv.serve()?;
    Ok(ExitCode::SUCCESS)
}

/// `bench server --json-stream`: iperf3's server event lines.
fn server_json_stream() -> impl Fn(ServerEvent) + Send + Sync + 'static {
    // Each running test's parameters, by peer, for its interval lines.
    let params: std::sync::Mutex<std::collections::HashMap<String, TestParams>> =
        Default::default();
    move |ev| match ev {
        ServerEvent::Running {
            peer,
            cookie,
            params: p,
            streams,
        } => {
            stream_event(StreamEvent::Start(Box::new(report::server_start_json(
                &peer, &p, &cookie, &streams,
            ))));
            if let Ok(mut m) = params.lock() {
                m.insert(peer, p);
            }
        }
        ServerEvent::Interval { peer, sample } => {
            let p = params
                .lock()
                .ok()
                .and_then(|m| m.get(&peer).cloned())
                .unwrap_or_default();
            stream_event(StreamEvent::Interval(Box::new(report::interval_json(
                &p, &sample,
            ))));
        }
        ServerEvent::Finished(r) => {
            if let Ok(mut m) = params.lock() {
                m.remove(&r.peer);
            }
            stream_event(StreamEvent::End(Box::new(report::server_end_json(&r))));
        }
        ServerEvent::Dropped { peer, reason } => {
            if let Ok(mut m) = params.lock() {
                m.remove(&peer);
            }
            stream_event(StreamEvent::Error(format!("{peer}: {reason}")));
        }
        ServerEvent::Started { .. } => {}
    }
}

/// `bench server` text (or `-J` lines): what each test did and the verdict when it sent.
fn server_events(json: bool) -> impl Fn(ServerEvent) + Send + Sync + 'static {
    move |ev| match ev {
        ServerEvent::Started { peer, params } if !json => {
            println!("Accepted test from {peer}: {params}");
        }
        ServerEvent::Interval { peer, sample } if !json => {
            for line in interval_lines(&sample).lines() {
                println!("{peer} {line}");
            }
        }
        ServerEvent::Finished(r) => {
            let f = server_findings(&r);
            if json {
                print_line(&ServerLine::Test {
                    test: r,
                    findings: f,
                });
            } else {
                let total: u64 = r.streams.iter().map(|s| s.server_bytes).sum();
                println!(
                    "Test from {} done: {} in {:.2} s ({}), CPU {:.1}%",
                    r.peer,
                    Bytes(total),
                    r.seconds,
                    BitRate(total as f64 * 8.0 / r.seconds.max(1e-9)),
                    r.cpu.total
                );
                print!("{}", render::findings(&f));
            }
        }
        ServerEvent::Dropped { peer, reason } => {
            if json {
                print_line(&ServerLine::Dropped {
                    dropped: peer,
                    reason,
                });
            } else {
                eprintln!("{peer}: {reason}");
            }
        }
        _ => {}
    }
}

/// One `bench server --json` line.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
enum ServerLine {
    /// A finished test, as the server saw it, and the verdict on what it sent.
    Test {
        test: Box<SessionReport>,
        /// What limited the server's sending (empty when it only received).
        findings: Vec<Finding>,
    },
    /// A connection refused or a test aborted.
    Dropped {
        /// The peer's address.
        dropped: String,
        /// Why (garbage, timeout, vanished client, server busy...).
        reason: String,
    },
}

/// The JSON documents `bench` writes.
pub const JSON_DOCS: &[JsonDoc] = &[
    JsonDoc::of::<ClientDoc>("bench", "netblame bench client --json"),
    JsonDoc::of::<StreamEvent>(
        "bench-stream",
        "netblame bench client --json-stream, netblame bench server --json-stream (one line)",
    ),
    JsonDoc::of::<ServerLine>("bench-server", "netblame bench server --json (one line)"),
];
