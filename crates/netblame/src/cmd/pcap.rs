//! `netblame pcap`: explain every TCP connection in a capture (a file, standard input, or a
//! live capture on an interface); match one stream across two captures (both sides of a NAT).

use crate::render;
use netblame_core::diagnose::{diagnose, headline as verdict, Observations};
use netblame_core::json::JsonDoc;
use netblame_core::observe::flow::{DirectionStats, Endpoint, FlowObservation, Side};
use netblame_core::units::{format_duration, group_thousands};
use netblame_core::{BitRate, Bytes, Finding, Severity};
use netblame_pcap::correlate::{correlate, Correlation, DelayStats};
use netblame_pcap::{Analysis, Capture, Config};
use serde::Serialize;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Appends a formatted line to an output buffer (printed once, so a closed pipe is not a panic).
macro_rules! outln {
    ($o:expr) => { $o.push('\n') };
    ($o:expr, $($t:tt)*) => {{ $o.push_str(&format!($($t)*)); $o.push('\n'); }};
}

/// Writes the output; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// One JSON document, stamped with `schema_version`.
fn emit_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    emit(&(render::json_text(v, true)? + "\n"))
}

#[derive(clap::Args)]
pub struct Args {
    /// A pcap or pcapng capture (gzip accepted); `-` reads standard input
    /// (`tcpdump -w - | netblame pcap -`). With a second file: match the same TCP streams in
    /// both (e.g. the client side and the server side of a NAT). With --live: a capture filter
    /// in tcpdump's syntax (e.g. `tcp port 443`).
    #[arg(num_args = 0.., value_name = "FILE|FILTER", required_unless_present = "live")]
    files: Vec<PathBuf>,
    /// Capture on this interface (e.g. lo, eth0, any) instead of reading a file, analysing as
    /// frames arrive (needs root or CAP_NET_RAW).
    #[arg(long, value_name = "IFACE")]
    live: Option<String>,
    /// How long --live captures.
    #[arg(long, value_parser = crate::args::duration, default_value = "30s", requires = "live")]
    duration: Duration,
    /// Details and a time series for one connection (the ID column of the table).
    #[arg(long)]
    conn: Option<u32>,
    /// Details for connections with this port on either side.
    #[arg(long)]
    port: Option<u16>,
    /// Details for connections with this address on either side.
    #[arg(long)]
    host: Option<IpAddr>,
    /// Interval of the time series in details (e.g. 100ms, 1s).
    #[arg(long, value_parser = crate::args::duration, default_value = "1s")]
    interval: Duration,
    /// Rows in the table (largest connections first); 0 for all.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// With --conn: draw its time-sequence graph as an SVG (sequence and ACK lines, receive
    /// window edge, retransmissions and zero windows marked).
    #[arg(long, value_name = "FILE.svg", requires = "conn")]
    plot: Option<PathBuf>,
}

fn selected(args: &Args, f: &FlowObservation) -> bool {
    args.conn.is_none_or(|c| f.id == c)
        && args
            .port
            .is_none_or(|p| f.client.port == p || f.server.port == p)
        && args
            .host
            .is_none_or(|h| f.client.ip == h || f.server.ip == h)
}

fn details_wanted(args: &Args) -> bool {
    args.conn.is_some() || args.port.is_some() || args.host.is_some()
}

/// True for `-` (standard input).
fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads one capture with a progress bar on a terminal for large files.
fn read(path: &Path, cfg: Config) -> anyhow::Result<Analysis> {
    if is_stdin(path) {
        if std::io::stdin().is_terminal() {
            anyhow::bail!("`netblame pcap -` reads a capture from standard input: pipe one in (tcpdump -w - | netblame pcap -)");
        }
        let capture = Capture::from_stream("standard input", std::io::stdin())?;
        return Ok(netblame_pcap::analyze(capture, cfg));
    }
    let capture = Capture::open(path)?;
    let size = capture.file_size.unwrap_or(0);
    let show = std::io::stderr().is_terminal() && size > 32 << 20;
    if !show {
        return Ok(netblame_pcap::analyze(capture, cfg));
    }
    let counter = capture.progress_counter();
    let done = Arc::new(AtomicBool::new(false));
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(path.display().to_string());
    let ticker = {
        let bar = bar.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                bar.set_position(counter.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let analysis = netblame_pcap::analyze(capture, cfg);
    done.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    bar.finish_and_clear();
    Ok(analysis)
}

fn warn_damage(a: &Analysis) -> anyhow::Result<()> {
    for w in &a.warnings {
        eprintln!("netblame: warning: {w}");
    }
    if let Some(d) = &a.damage {
        if a.frames == 0 {
            anyhow::bail!("{d}");
        }
        eprintln!("netblame: warning: {d}");
    }
    Ok(())
}

/// What a reader of the results must know about the capture as a whole: frames counted once,
/// frames not decoded, no TCP at all.
fn capture_notes(a: &Analysis) -> Vec<String> {
    let mut notes = Vec::new();
    let dups = a.duplicate_frames();
    if dups > 0 {
        notes.push(format!(
            "{} frames were captured twice (same IP ID, checksum and timestamps within 10 ms: a mirror port or two capture interfaces) and are counted once",
            group_thousands(dups)
        ));
    }
    let skipped = a.skipped_frames();
    if skipped > 0 {
        let why: Vec<String> = a
            .skipped
            .iter()
            .take(4)
            .map(|(w, n)| format!("{} {w}", group_thousands(*n)))
            .collect();
        notes.push(format!(
            "{} frames were skipped, not decoded down to TCP ({})",
            group_thousands(skipped),
            why.join(", ")
        ));
    }
    if a.frames > 0 && a.tcp_segments == 0 {
        notes.push(format!(
            "no TCP in this capture: {} frames, {} of them decoded and not TCP",
            group_thousands(a.frames),
            group_thousands(a.not_tcp_frames)
        ));
    }
    notes
}

/// Captures on `iface` (the positional arguments are the filter).
#[cfg(feature = "live")]
fn read_live(args: &Args, iface: &str, cfg: Config) -> anyhow::Result<Analysis> {
    use netblame_pcap::live::{capture, LiveOptions};
    let words: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    let opts = LiveOptions {
        interface: iface.to_string(),
        filter: (!words.is_empty()).then(|| words.join(" ")),
        duration: args.duration,
        snaplen: 256,
    };
    eprintln!(
        "netblame: capturing on {iface} for {}{} ...",
        format_duration(args.duration),
        opts.filter
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default()
    );
    let stop = AtomicBool::new(false);
    Ok(capture(&opts, cfg, &stop)?)
}

#[cfg(not(feature = "live"))]
fn read_live(_: &Args, _: &str, _: Config) -> anyhow::Result<Analysis> {
    anyhow::bail!(
        "this netblame was built without live capture (cargo feature `live` of netblame-pcap)"
    )
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.interval.is_zero() {
        anyhow::bail!("--interval must be more than zero");
    }
    if args.live.is_none() {
        match args.files.len() {
            0 => anyhow::bail!("give a capture file, `-` for standard input, or --live IFACE"),
            1 => {}
            2 => return two_captures(&args),
            n => anyhow::bail!("{n} files given: one capture, or two to match streams across"),
        }
    }
    // A stream (standard input, a live capture) can be read once only.
    let once = args.live.is_some() || is_stdin(&args.files[0]);
    let source = match &args.live {
        Some(iface) => format!("live capture on {iface}"),
        None if once => "standard input".to_string(),
        None => args.files[0].display().to_string(),
    };
    let details = details_wanted(&args);
    let mut cfg = Config::default();
    if details {
        cfg.series_interval = Some(args.interval);
        cfg.segments = args.plot.is_some();
        let (port, host) = (args.port, args.host);
        // A connection's id is not known when it opens: with --conn, a first pass without
        // series finds its endpoints, so the second keeps a series for that tuple only.
        let tuple = match args.conn {
            Some(_) if once => None,
            Some(id) => {
                let first = read(&args.files[0], Config::default())?;
                let f = first.flows.iter().find(|f| f.id == id).ok_or_else(|| {
                    anyhow::anyhow!(
                        "no connection #{id} in {} ({} in all)",
                        args.files[0].display(),
                        render::plural(first.flows.len(), "connection")
                    )
                })?;
                Some((f.client, f.server))
            }
            None => None,
        };
        cfg.series_filter = Some(Arc::new(move |c: &Endpoint, s: &Endpoint| {
            tuple.is_none_or(|(tc, ts)| (tc, ts) == (*c, *s))
                && port.is_none_or(|p| c.port == p || s.port == p)
                && host.is_none_or(|h| c.ip == h || s.ip == h)
        }));
    }
    let analysis = match &args.live {
        Some(iface) => read_live(&args, iface, cfg)?,
        None => read(&args.files[0], cfg)?,
    };
    warn_damage(&analysis)?;
    if let (Some(path), Some(id)) = (&args.plot, args.conn) {
        crate::plot::timeseq::save(path, &analysis, id)?;
    }
    let notes = capture_notes(&analysis);
    let chosen: Vec<FlowObservation> = analysis
        .flows
        .iter()
        .filter(|f| !details || selected(&args, f))
        .cloned()
        .collect();
    let diagnosis = diagnose(&Observations {
        flows: &chosen,
        ..Default::default()
    });
    let mut flows: Vec<(FlowObservation, Vec<Finding>)> = chosen
        .iter()
        .cloned()
        .zip(diagnosis.flows.iter().cloned())
        .collect();
    flows.sort_by(|a, b| {
        b.0.total_bytes()
            .cmp(&a.0.total_bytes())
            .then(a.0.id.cmp(&b.0.id))
    });
    if details && flows.is_empty() {
        anyhow::bail!(
            "no connection in {source} matches the selection ({} in all)",
            render::plural(analysis.flows.len(), "connection")
        );
    }
    if args.json {
        emit_json(&CaptureOut {
            file: source.clone(),
            format: analysis.format,
            gzip: analysis.gzip,
            frames: analysis.frames,
            tcp_segments: analysis.tcp_segments,
            damage: analysis.damage.as_deref(),
            warnings: &analysis.warnings,
            notes: &notes,
            not_tcp_frames: analysis.not_tcp_frames,
            skipped_frames: analysis.skipped_frames(),
            skipped: &analysis.skipped,
            duplicate_frames: analysis.duplicate_frames(),
            connections_total: analysis.flows.len(),
            connections: flows
                .iter()
                .map(|(f, fi)| Conn {
                    flow: f,
                    verdict: verdict(fi),
                    findings: fi,
                })
                .collect(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut o = String::new();
    let n = analysis.flows.len();
    outln!(
        o,
        "{source}: {}{}, {} {}, {} TCP {}, {}",
        if args.live.is_some() {
            format_duration(args.duration)
        } else {
            analysis.format.to_string()
        },
        if analysis.gzip { " (gzip)" } else { "" },
        group_thousands(analysis.frames),
        render::noun(analysis.frames, "frame"),
        group_thousands(analysis.tcp_segments),
        render::noun(analysis.tcp_segments, "segment"),
        render::plural(n, "connection")
    );
    for note in &notes {
        outln!(o, "note: {note}");
    }
    if details {
        for (f, fi) in &flows {
            o.push('\n');
            o += &detail(f, fi);
        }
    } else {
        o += &table(&flows, args.limit);
    }
    emit(&o)?;
    Ok(ExitCode::SUCCESS)
}

fn us(v: u64) -> String {
    format_duration(Duration::from_micros(v))
}

fn opt_us(v: Option<u64>) -> String {
    v.map(us).unwrap_or_else(|| "-".into())
}

fn rate(d: &DirectionStats) -> String {
    if d.sending_rate_bits_per_second > 0.0 {
        BitRate(d.sending_rate_bits_per_second).to_string()
    } else {
        "-".into()
    }
}

fn table(flows: &[(FlowObservation, Vec<Finding>)], limit: usize) -> String {
    let mut o = String::new();
    let shown = if limit == 0 {
        flows.len()
    } else {
        limit.min(flows.len())
    };
    let rows: Vec<Vec<String>> = flows[..shown]
        .iter()
        .map(|(f, fi)| {
            let m = f.main_sender();
            vec![
                f.id.to_string(),
                f.client.to_string(),
                f.server.to_string(),
                f.conn_state.clone(),
                us(f.duration_us),
                Bytes(f.from_client.payload_bytes).to_string(),
                Bytes(f.from_server.payload_bytes).to_string(),
                rate(f.sent_by(m)),
                opt_us(f.path_rtt_us(m)),
                (f.from_client.retransmissions + f.from_server.retransmissions).to_string(),
                (f.from_client.zero_window_adverts + f.from_server.zero_window_adverts).to_string(),
                verdict(fi),
            ]
        })
        .collect();
    outln!(o);
    o += &render::table(
        &[
            "ID", "CLIENT", "SERVER", "STATE", "DURATION", "C->S", "S->C", "RATE", "RTT", "RETR",
            "ZWIN", "VERDICT",
        ],
        &rows,
    );
    if shown < flows.len() {
        outln!(
            o,
            "({} more: --limit 0 shows all)",
            render::plural(flows.len() - shown, "connection")
        );
    }
    let mut notable: Vec<&Finding> = flows
        .iter()
        .flat_map(|(_, fi)| fi.iter())
        .filter(|f| f.severity >= Severity::Warning)
        .collect();
    if !notable.is_empty() {
        let total = notable.len();
        notable.truncate(10);
        outln!(
            o,
            "\nFindings (largest connections first; --conn ID for details):\n"
        );
        let owned: Vec<Finding> = notable.into_iter().cloned().collect();
        o += &render::findings(&owned);
        if total > 10 {
            outln!(o, "({} more findings)", total - 10);
        }
    }
    o
}

fn side_rows(f: &FlowObservation) -> Vec<Vec<String>> {
    let c = &f.from_client;
    let s = &f.from_server;
    let mut rows = Vec::new();
    let mut row = |name: &str, g: &dyn Fn(&DirectionStats) -> String| {
        rows.push(vec![name.to_string(), g(c), g(s)]);
    };
    row("packets", &|d| group_thousands(d.packets));
    row("data packets", &|d| group_thousands(d.data_packets));
    row("payload", &|d| {
        format!("{} B", group_thousands(d.payload_bytes))
    });
    row("unique", &|d| {
        format!("{} B", group_thousands(d.unique_bytes))
    });
    row("retransmitted", &|d| {
        format!("{} B", group_thousands(d.retransmitted_bytes))
    });
    row("retransmissions", &|d| {
        format!(
            "{} (fast {}, timeout {}, spurious {})",
            d.retransmissions,
            d.fast_retransmissions,
            d.timeout_retransmissions,
            d.spurious_retransmissions
        )
    });
    row("out of order", &|d| d.out_of_order.to_string());
    row("not captured", &|d| {
        format!(
            "{}, {} B",
            render::plural(d.lost_segments, "segment"),
            group_thousands(d.lost_bytes)
        )
    });
    row("dup acks sent", &|d| d.dup_acks.to_string());
    row("keep-alives", &|d| d.keep_alives.to_string());
    row("zero windows sent", &|d| d.zero_window_adverts.to_string());
    row("zero-window probes", &|d| d.zero_window_probes.to_string());
    row("window (min/mean/max)", &|d| match (
        d.window_min_bytes,
        d.window_mean_bytes,
        d.window_max_bytes,
    ) {
        (Some(a), Some(b), Some(c)) => format!("{} / {} / {}", Bytes(a), Bytes(b), Bytes(c)),
        _ => "-".into(),
    });
    row("rtt of its data", &|d| match d.rtt.samples {
        0 => "-".into(),
        n => format!(
            "{} / {} / {} ({})",
            opt_us(d.rtt.min_us),
            opt_us(d.rtt.mean_us),
            opt_us(d.rtt.max_us),
            render::plural(n, "sample")
        ),
    });
    row("max in flight", &|d| {
        Bytes(d.max_in_flight_bytes).to_string()
    });
    row("window full", &|d| d.window_full.to_string());
    row("at peer's window", &|d| {
        format!(
            "{} ({:.0}% of sending time)",
            us(d.window_limited_us),
            d.window_limited_share() * 100.0
        )
    });
    row("throughput (duration)", &|d| {
        BitRate(d.throughput_bits_per_second).to_string()
    });
    row("rate while sending", &rate);
    row("FIN at", &|d| opt_us(d.fin_at_us));
    row("RST at (count)", &|d| match d.rst_at_us {
        Some(t) => format!("{} ({})", us(t), d.rst_count),
        None => "-".into(),
    });
    rows
}

fn detail(f: &FlowObservation, findings: &[Finding]) -> String {
    let mut out = format!(
        "connection #{}  {} -> {}\n  state {}  history {}  duration {}  packets {}{}\n",
        f.id,
        f.client,
        f.server,
        f.conn_state,
        f.history,
        us(f.duration_us),
        f.packets,
        if f.midstream {
            "  (caught midstream: no SYN, windows unscaled)"
        } else {
            ""
        }
    );
    let h = &f.handshake;
    let o = |x: &Option<netblame_core::observe::flow::TcpOptions>| match x {
        Some(o) => format!(
            "mss {} wscale {} sack {} ts {}",
            o.mss_bytes.map(|m| m.to_string()).unwrap_or("-".into()),
            o.wscale.map(|m| m.to_string()).unwrap_or("-".into()),
            if o.sack_permitted { "yes" } else { "no" },
            if o.timestamps { "yes" } else { "no" }
        ),
        None => "-".into(),
    };
    out += &format!(
        "  handshake: {} SYN, {} SYN-ACK, SYN->SYN-ACK {}, SYN-ACK->ACK {}, iRTT {}; scaling {}\n    client options: {}\n    server options: {}\n",
        h.syn_count,
        h.synack_count,
        opt_us(h.syn_to_synack_us),
        opt_us(h.synack_to_ack_us),
        opt_us(h.rtt_us),
        if h.window_scaling { "on" } else { "off" },
        o(&h.client_options),
        o(&h.server_options)
    );
    let c = &f.close;
    if let (Some(closer), Some(at)) = (c.closer, c.at_us) {
        out += &format!(
            "  close: {} sent the first {} at {}, {} after the last data it received; the {} had {} B unacknowledged then, sent {} B in {} after, answered by {}\n",
            closer,
            match c.kind {
                Some(netblame_core::observe::flow::CloseKind::Rst) => "RST",
                _ => "FIN",
            },
            us(at),
            opt_us(c.since_last_data_received_us),
            closer.other(),
            group_thousands(c.peer_unacked_at_close_bytes),
            group_thousands(c.peer_data_after_close_bytes),
            render::plural(c.peer_segments_after_close, "segment"),
            render::plural(c.closer_rsts_after_close, "RST")
        );
    } else {
        out += "  close: not seen (still open at the end of the capture)\n";
    }
    out += "\n";
    let mut t = render::table(
        &[
            "",
            &format!("client {}", f.client),
            &format!("server {}", f.server),
        ],
        &side_rows(f),
    );
    t = t.lines().map(|l| format!("  {l}\n")).collect();
    out += &t;
    if !f.zero_windows.is_empty() {
        out += &format!("\n  zero-window episodes ({}):\n", f.zero_windows.len());
        for e in f.zero_windows.iter().take(20) {
            out += &format!(
                "    {} at {} for {}{}, {}\n",
                e.side,
                us(e.start_us),
                us(e.duration_us),
                if e.reopened { "" } else { " (never reopened)" },
                render::plural(e.probes, "probe")
            );
        }
        if f.zero_windows.len() > 20 {
            out += &format!("    ... {} more\n", f.zero_windows.len() - 20);
        }
    }
    if !f.idle_gaps.is_empty() {
        out += &format!(
            "\n  idle gaps of 1 s or more ({}), longest:\n",
            f.idle_gaps_total
        );
        for g in &f.idle_gaps {
            out += &format!("    at {} for {}\n", us(g.start_us), us(g.duration_us));
        }
    }
    if !f.series.is_empty() {
        out += &format!(
            "\n  time series ({} intervals):\n",
            us(f.series_interval_us)
        );
        let secs = f.series_interval_us as f64 / 1e6;
        let rows: Vec<Vec<String>> = f
            .series
            .iter()
            .map(|b| {
                let mut r = vec![us(b.start_us)];
                for s in [Side::Client, Side::Server] {
                    let x = match s {
                        Side::Client => &b.client,
                        Side::Server => &b.server,
                    };
                    r.push(BitRate(x.bytes as f64 * 8.0 / secs).to_string());
                    r.push(x.retransmissions.to_string());
                    r.push(
                        x.window_min_bytes
                            .map(|w| Bytes(w).to_string())
                            .unwrap_or("-".into()),
                    );
                    r.push(Bytes(x.in_flight_max_bytes).to_string());
                    r.push(opt_us(x.rtt_mean_us));
                    r.push(x.zero_window_adverts.to_string());
                }
                r
            })
            .collect();
        let t = render::table(
            &[
                "at",
                "C rate",
                "C retr",
                "C win min",
                "C inflight",
                "C rtt",
                "C zwin",
                "S rate",
                "S retr",
                "S win min",
                "S inflight",
                "S rtt",
                "S zwin",
            ],
            &rows,
        );
        out += &t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    }
    if findings.is_empty() {
        out += "\n  verdict: nothing wrong found\n";
    } else {
        out += "\n";
        out += &render::findings(findings);
    }
    out
}

fn delay(d: &Option<DelayStats>) -> String {
    match d {
        Some(d) => format!(
            "min {} us, median {} us, max {} us ({})",
            d.min_us,
            d.median_us,
            d.max_us,
            render::plural(d.samples, "segment")
        ),
        None => "-".into(),
    }
}

/// True when both paths name the same file (a link, a relative and an absolute path...).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn two_captures(args: &Args) -> anyhow::Result<ExitCode> {
    if args.plot.is_some() {
        return Err(crate::args::usage(
            "--plot draws one connection of one capture: give one file",
        ));
    }
    if args.files.iter().any(|f| is_stdin(f)) {
        anyhow::bail!("standard input (-) cannot be one of two captures: give two files");
    }
    if same_file(&args.files[0], &args.files[1]) {
        anyhow::bail!(
            "{} and {} are the same file: give the captures of two capture points (e.g. both sides of a NAT)",
            args.files[0].display(),
            args.files[1].display()
        );
    }
    let a = read(&args.files[0], Config::default())?;
    warn_damage(&a)?;
    let b = read(&args.files[1], Config::default())?;
    warn_damage(&b)?;
    let mut corr: Correlation = correlate(&args.files[0], &a.flows, &args.files[1], &b.flows)?;
    if details_wanted(args) {
        corr.matches.retain(|m| {
            a.flows
                .iter()
                .find(|f| f.id == m.a_id)
                .is_some_and(|f| selected(args, f))
        });
    }
    for w in &corr.warnings {
        eprintln!("netblame: warning: {w}");
    }
    if args.json {
        emit_json(&CompareOut {
            a: args.files[0].display().to_string(),
            b: args.files[1].display().to_string(),
            a_connections: a.flows.len(),
            b_connections: b.flows.len(),
            correlation: &corr,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut o = String::new();
    outln!(
        o,
        "A = {} ({}), B = {} ({}): {} in both",
        args.files[0].display(),
        render::plural(a.flows.len(), "connection"),
        args.files[1].display(),
        render::plural(b.flows.len(), "connection"),
        render::plural(corr.matches.len(), "stream")
    );
    for m in &corr.matches {
        outln!(
            o,
            "\nA #{} = B #{}  (client ISN {}, server ISN {}; confirmed by {})",
            m.a_id,
            m.b_id,
            m.client_isn.map(|v| v.to_string()).unwrap_or("-".into()),
            m.server_isn.map(|v| v.to_string()).unwrap_or("-".into()),
            m.confirmed_by.join(", ")
        );
        for t in &m.translation {
            outln!(o, "  {t}");
        }
        outln!(
            o,
            "  segments in both: {}",
            group_thousands(m.common_segments)
        );
        outln!(
            o,
            "  only in A: {} client->server, {} server->client",
            m.only_in_a.client_to_server,
            m.only_in_a.server_to_client
        );
        outln!(
            o,
            "  only in B: {} client->server, {} server->client",
            m.only_in_b.client_to_server,
            m.only_in_b.server_to_client
        );
        outln!(
            o,
            "  client->server, B minus A: {}",
            delay(&m.client_to_server_a_to_b)
        );
        outln!(
            o,
            "  server->client, A minus B: {}",
            delay(&m.server_to_client_b_to_a)
        );
        outln!(o, "  {}", m.note);
    }
    if !corr.unmatched_a.is_empty() || !corr.unmatched_b.is_empty() {
        outln!(o,
            "\nno partner: A connections {:?}, B connections {:?} (no handshake seen, or not in the other capture)",
            corr.unmatched_a, corr.unmatched_b
        );
    }
    emit(&o)?;
    Ok(ExitCode::SUCCESS)
}

/// The JSON documents `pcap` writes.
pub const JSON_DOCS: &[JsonDoc] = &[
    JsonDoc::of::<CaptureOut<'static>>("pcap", "netblame pcap FILE --json"),
    JsonDoc::of::<CompareOut<'static>>("pcap-compare", "netblame pcap A B --json"),
];

/// One connection of a capture: the flow, its verdict and findings.
#[derive(Serialize, schemars::JsonSchema)]
struct Conn<'a> {
    #[serde(flatten)]
    flow: &'a FlowObservation,
    verdict: String,
    findings: &'a [Finding],
}
/// `netblame pcap FILE --json`.
#[derive(Serialize, schemars::JsonSchema)]
struct CaptureOut<'a> {
    file: String,
    format: &'static str,
    gzip: bool,
    frames: u64,
    tcp_segments: u64,
    damage: Option<&'a str>,
    warnings: &'a [String],
    notes: &'a [String],
    not_tcp_frames: u64,
    skipped_frames: u64,
    skipped: &'a [(String, u64)],
    duplicate_frames: u64,
    connections_total: usize,
    connections: Vec<Conn<'a>>,
}

/// `netblame pcap A B --json`: the same streams matched across two captures.
#[derive(Serialize, schemars::JsonSchema)]
struct CompareOut<'a> {
    a: String,
    b: String,
    a_connections: usize,
    b_connections: usize,
    #[serde(flatten)]
    correlation: &'a Correlation,
}
