//! `netblame trace`: kernel events from eBPF tracepoints (netblame-trace), live lines then the
//! aggregates (NET_RX histograms per CPU, longest runs, drops by reason, retransmits by
//! connection, buffer growth, connect times, lost events) and the findings of
//! `netblame_core::rules::kernel_events`.
//!
//! Exit codes: 0 traced, 1 error, [`TRACE_UNAVAILABLE_EXIT`] (4) when tracing cannot run here
//! (not root, no BTF, programs refused).

use crate::render;
use netblame_core::diagnose::{diagnose, Observations};
use netblame_core::json::JsonDoc;
use netblame_core::observe::trace::{EventKind, Log2Histogram, TraceEvent, TraceSummary};
use netblame_core::units::{format_duration, parse_duration_default_secs};
use netblame_core::{Bytes, Finding};
use netblame_trace::{Config, TraceError, Tracer};
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code when this machine cannot trace (not root, no BTF, the kernel refused the programs).
pub const TRACE_UNAVAILABLE_EXIT: u8 = 4;

#[derive(clap::Args)]
pub struct Args {
    /// How long to trace (10s, 500ms; a bare number is seconds); Ctrl-C ends it early, with the summary.
    #[arg(long, default_value = "10s", value_parser = parse_duration_default_secs)]
    duration: Duration,
    /// Only events of sockets owned by this process (as last seen sending or receiving).
    #[arg(long)]
    pid: Option<u32>,
    /// Only events with this local or remote port.
    #[arg(long)]
    port: Option<u16>,
    /// Only events in this network namespace: a name under /run/netns, a path, or a PID.
    #[arg(long, value_name = "NAME|PATH|PID")]
    netns: Option<String>,
    /// NET_RX runs at least this long are listed one by one (all go into the histograms).
    #[arg(long, default_value = "500us", value_parser = parse_duration_default_secs)]
    long_run: Duration,
    /// No live event lines, only the summary.
    #[arg(long, short)]
    quiet: bool,
    /// JSON lines: one per event, then one with the summary and findings.
    #[arg(long)]
    json: bool,
}

/// Which events to keep.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub netns: Option<u32>,
}

impl Filter {
    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.pid.is_none() && self.port.is_none() && self.netns.is_none()
    }

    /// True when `e` passes.
    pub fn keep(&self, e: &TraceEvent) -> bool {
        self.pid
            .is_none_or(|p| e.owner.as_ref().is_some_and(|o| o.pid == p))
            && self
                .port
                .is_none_or(|p| e.conn.is_some_and(|c| c.sport == p || c.dport == p))
            && self.netns.is_none_or(|n| e.netns == n)
    }
}

/// A network namespace given as a name under /run/netns, a path or a PID: its path and inode.
pub fn netns_path(spec: &str) -> anyhow::Result<(std::path::PathBuf, u32)> {
    let path = if spec.chars().all(|c| c.is_ascii_digit()) {
        format!("/proc/{spec}/ns/net")
    } else if spec.contains('/') {
        spec.to_string()
    } else {
        format!("/run/netns/{spec}")
    };
    let meta = std::fs::metadata(&path)
        .map_err(|e| anyhow::anyhow!("--netns {spec}: cannot open {path}: {e}"))?;
    Ok((path.into(), meta.ino() as u32))
}

/// One line of `trace --json`: each kernel event as it happens, the summary last.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
enum TraceLine<'a> {
    Event(&'a TraceEvent),
    Summary(Report<'a>),
}

/// The last line of `trace --json`.
#[derive(Serialize, schemars::JsonSchema)]
struct Report<'a> {
    summary: &'a TraceSummary,
    findings: &'a [Finding],
    /// True when events were filtered (then drops are counted from the kept events).
    filtered: bool,
}

/// A trace running in the background over another command's window (`doctor --trace`,
/// `probe --trace`): every event accumulated, nothing printed.
pub struct Background {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<TraceSummary>,
}

impl Background {
    /// Starts tracing on a thread of its own; the error says why tracing is unavailable.
    pub fn start() -> Result<Background, String> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut tracer = match Tracer::start(&Config::default()) {
                Ok(t) => {
                    let _ = tx.send(Ok(()));
                    t
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return TraceSummary::default();
                }
            };
            while !flag.load(Ordering::Relaxed) {
                tracer.poll(Duration::from_millis(100), &mut |_| {});
            }
            finish(
                tracer,
                netblame_trace::rmem_limits(),
                &Filter::default(),
                &[],
            )
        });
        match rx.recv() {
            Ok(Ok(())) => Ok(Background { stop, handle }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => Err("the tracing thread ended before it started".into()),
        }
    }

    /// Stops tracing and returns what it saw.
    pub fn finish(self) -> Option<TraceSummary> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().ok()
    }
}

/// Prints the one line that says why tracing is unavailable and returns its exit code.
pub fn unavailable(e: &TraceError) -> ExitCode {
    eprintln!("netblame trace: {e}");
    ExitCode::from(TRACE_UNAVAILABLE_EXIT)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let netns = args.netns.as_deref().map(netns_path).transpose()?;
    let filter = Filter {
        pid: args.pid,
        port: args.port,
        netns: netns.as_ref().map(|n| n.1),
    };
    let cfg = Config {
        long_run: args.long_run,
        ..Config::default()
    };
    let mut tracer = match Tracer::start(&cfg) {
        Ok(t) => t,
        Err(e) => return Ok(unavailable(&e)),
    };
    if !args.json {
        print_capabilities(&tracer);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut kept = Vec::new();
    let mut batch = Vec::new();
    super::probe::catch_sigint();
    let end = std::time::Instant::now() + args.duration;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        if super::probe::interrupted() {
            break;
        }
        tracer.poll(left.min(Duration::from_millis(100)), &mut |e| {
            if filter.keep(e) {
                batch.push(e.clone())
            }
        });
        for e in batch.drain(..) {
            let shown = !args.quiet
                && (args.json
                    || !matches!(
                        e.kind,
                        EventKind::TcpProbe { .. } | EventKind::RcvSpace { .. }
                    ));
            if shown {
                let line = if args.json {
                    render::json_text(&TraceLine::Event(&e), false).unwrap_or_default()
                } else {
                    event_line(&e)
                };
                let _ = writeln!(out, "{line}");
            }
            if !filter.is_empty() {
                kept.push(e);
            }
        }
        let _ = out.flush();
    }
    drop(out);
    let limits = match &netns {
        Some((path, _)) => netblame_trace::rmem_limits_of(path)?,
        None => netblame_trace::rmem_limits(),
    };
    let summary = finish(tracer, limits, &filter, &kept);
    let findings = diagnose(&Observations {
        trace: Some(&summary),
        ..Default::default()
    })
    .all;
    if args.json {
        render::print_json_line(&TraceLine::Summary(Report {
            summary: &summary,
            findings: &findings,
            filtered: !filter.is_empty(),
        }))?;
    } else {
        print!("{}", summary_text(&summary, !filter.is_empty()));
        print!("{}", render::findings(&findings));
    }
    Ok(ExitCode::SUCCESS)
}

/// Ends a trace: with a filter, the per-connection parts and drop counts come from the kept
/// events only (the kernel's own counters are host-wide).
pub fn finish(
    tracer: Tracer,
    limits: netblame_core::observe::trace::RmemLimits,
    filter: &Filter,
    kept: &[TraceEvent],
) -> TraceSummary {
    let mut summary = tracer.finish(limits);
    if !filter.is_empty() {
        let mut acc = netblame_core::observe::trace::TraceAccumulator::default();
        kept.iter().for_each(|e| acc.add(e));
        summary.drops.clear();
        // NET_RX runs and function timings belong to no socket: they stay host-wide.
        let (runs, collapse, prune) = (
            std::mem::take(&mut summary.longest_runs),
            summary.collapse,
            summary.prune,
        );
        acc.finish(&mut summary);
        (summary.longest_runs, summary.collapse, summary.prune) = (runs, collapse, prune);
    }
    summary
}

fn print_capabilities(t: &Tracer) {
    let c = t.capabilities();
    eprintln!(
        "tracing {} tracepoints ({} drop reason names from the kernel's BTF){}",
        c.attached.len(),
        t.drop_reason_names(),
        if c.missing.is_empty() {
            String::new()
        } else {
            format!("; not on this kernel: {}", c.missing.join(", "))
        }
    );
    eprintln!("function tracing: {}", c.function_tracing.detail);
}

/// Local wall-clock time of day with microseconds (UTC): `HH:MM:SS.uuuuuu`.
pub fn clock(wall_ns: u64) -> String {
    let secs = wall_ns / 1_000_000_000;
    let us = (wall_ns % 1_000_000_000) / 1000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{us:06}",
        day / 3600,
        (day / 60) % 60,
        day % 60
    )
}

/// One live line for an event.
pub fn event_line(e: &TraceEvent) -> String {
    let conn = e.conn.map(|c| c.to_string()).unwrap_or_default();
    let owner = e
        .owner
        .as_ref()
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let st = |s: &Option<netblame_core::observe::TcpState>| {
        s.map(|s| format!("{s:?}").to_lowercase())
            .unwrap_or_else(|| "-".into())
    };
    let what = match &e.kind {
        EventKind::Retransmit { state, .. } => format!("retransmit   {conn} state {}", st(state)),
        EventKind::ResetSent { reason, .. } => format!(
            "reset sent   {conn} ({})",
            reason.as_deref().unwrap_or("no reason")
        ),
        EventKind::ResetReceived { state } => {
            format!("reset recv   {conn} in {}", st(state))
        }
        EventKind::Drop {
            reason, location, ..
        } => format!(
            "drop         {conn} reason {reason} at {}",
            location.as_deref().unwrap_or("?")
        ),
        EventKind::StateChange { old, new } => {
            format!("state        {conn} {} -> {}", st(old), st(new))
        }
        EventKind::RcvbufGrow {
            rcvbuf,
            window_clamp,
            rtt_us,
            ..
        } => format!(
            "rcvbuf grow  {conn} rcvbuf {} clamp {} rtt {rtt_us} us",
            Bytes(*rcvbuf),
            Bytes(*window_clamp)
        ),
        EventKind::RcvSpace { rcvbuf, locked, .. } => format!(
            "rcvbuf       {conn} {}{}",
            Bytes(*rcvbuf),
            if *locked { " (SO_RCVBUF)" } else { "" }
        ),
        EventKind::TcpProbe {
            snd_cwnd, srtt_us, ..
        } => format!("tcp_probe    {conn} cwnd {snd_cwnd} srtt {srtt_us} us"),
        EventKind::NetRxLong { duration_ns } => format!(
            "NET_RX run   {} on cpu {}",
            format_duration(Duration::from_nanos(*duration_ns)),
            e.cpu
        ),
        EventKind::Collapse { duration_ns } | EventKind::Prune { duration_ns } => format!(
            "{}     {conn} {}",
            e.kind.name(),
            format_duration(Duration::from_nanos(*duration_ns))
        ),
    };
    format!("{} {what}{owner}", clock(e.wall_ns))
}

fn histogram_text(h: &Log2Histogram) -> String {
    let rows = h.rows();
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let mut s =
        String::from("   value (us) |-------------------------------------------------- count\n");
    for (lower, n) in rows {
        let bar = (n as f64 / max as f64 * 50.0).ceil() as usize;
        s += &format!("{lower:>13} |{:<50} {n}\n", "@".repeat(bar.min(50)));
    }
    s
}

/// The aggregates as text.
pub fn summary_text(s: &TraceSummary, filtered: bool) -> String {
    let mut out = String::new();
    let secs = s.duration_us as f64 / 1e6;
    out += &format!("\nTraced {secs:.1} s.\n");
    let total = s.net_rx_total();
    out += &format!(
        "\nNET_RX softirq time (host-wide): {} runs, max {} on cpu {}{}\n",
        total.runs,
        format_duration(Duration::from_nanos(total.max_ns)),
        total.cpu,
        if total.max_at_wall_ns > 0 {
            format!(" at {}", clock(total.max_at_wall_ns))
        } else {
            String::new()
        }
    );
    for c in &s.net_rx {
        out += &format!(
            "cpu {}: {} runs, avg {}, max {}\n",
            c.cpu,
            c.runs,
            format_duration(Duration::from_nanos(c.total_ns / c.runs.max(1))),
            format_duration(Duration::from_nanos(c.max_ns))
        );
        out += &histogram_text(&c.histogram);
    }
    if !s.longest_runs.is_empty() {
        out += "Longest NET_RX runs:\n";
        for e in &s.longest_runs {
            out += &format!("  {}\n", event_line(e));
        }
    }
    out += &format!(
        "NAPI: {} polls, {} packets, {} used their whole budget\n",
        s.napi.polls, s.napi.packets, s.napi.budget_exhausted
    );
    out += &format!(
        "\nDrops by reason{}:\n",
        if filtered {
            " (filtered events)"
        } else {
            " (host-wide, counted in the kernel)"
        }
    );
    if s.drops.is_empty() {
        out += "  none\n";
    }
    for d in &s.drops {
        let at = d
            .locations
            .iter()
            .take(3)
            .map(|(l, n)| format!("{l} x{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!("  {:<28} {:>8}  {at}\n", d.reason, d.count);
    }
    out += &format!(
        "\nRetransmits by connection (resets sent {}, received {}):\n",
        s.resets_sent, s.resets_received
    );
    if s.retransmits.is_empty() {
        out += "  none\n";
    }
    for r in s.retransmits.iter().take(20) {
        let owner = r
            .owner
            .as_ref()
            .map(|o| format!(" {o}"))
            .unwrap_or_default();
        out += &format!("  {:>6}  {}{owner}\n", r.count, r.conn);
    }
    if !s.buffers.is_empty() {
        out += "\nReceive buffer growth per socket:\n";
        for b in s
            .buffers
            .iter()
            .filter(|b| b.steps.len() > 1 || b.locked)
            .take(20)
        {
            let steps = b
                .steps
                .iter()
                .map(|st| Bytes(st.rcvbuf).to_string())
                .collect::<Vec<_>>()
                .join(" -> ");
            out += &format!(
                "  {}{}: {steps}{}\n",
                b.conn,
                b.owner
                    .as_ref()
                    .map(|o| format!(" {o}"))
                    .unwrap_or_default(),
                if b.locked { " (SO_RCVBUF)" } else { "" }
            );
        }
    }
    if !s.connects.is_empty() {
        let mut d: Vec<u64> = s.connects.iter().map(|c| c.duration_us).collect();
        d.sort_unstable();
        out += &format!(
            "\nConnects: {}, median {}, max {}\n",
            d.len(),
            format_duration(Duration::from_micros(d[d.len() / 2])),
            format_duration(Duration::from_micros(*d.last().unwrap_or(&0)))
        );
    }
    for (name, t) in [("tcp_collapse", s.collapse), ("tcp_prune_queue", s.prune)] {
        if let Some(t) = t {
            out += &format!(
                "{name}: {} calls, max {}\n",
                t.calls,
                format_duration(Duration::from_nanos(t.max_ns))
            );
        }
    }
    let lost = s.lost_total();
    out += &format!(
        "\nEvents: {}; lost (ring buffer full): {lost}\n",
        s.lost
            .iter()
            .map(|l| format!("{} {}", l.kind, l.seen))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out
}

/// The JSON documents `trace` writes.
pub const JSON_DOCS: &[JsonDoc] = &[JsonDoc::of::<TraceLine<'static>>(
    "trace",
    "netblame trace --json (one line per event, the summary last)",
)];
