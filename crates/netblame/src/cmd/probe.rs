//! `netblame probe`: latency probes on a fixed schedule to several targets side by side, with
//! ping-style summaries, percentiles, log2 histograms, spikes, per-window loss, and findings;
//! `netblame probe serve` answers rr, udp, tcp --request and http probes.

use crate::render;
use anyhow::Context;
use netblame_core::diagnose::{diagnose, Observations};
use netblame_core::json::JsonDoc;
use netblame_core::observe::latency::{log2_buckets, Log2Bucket, Measures, TargetLatency};
use netblame_core::observe::trace::TraceSummary;
use netblame_core::rules::latency::{ProbeContext, SynSchedule};
use netblame_core::units::format_duration;
use netblame_core::Finding;
use netblame_probe::report::{HttpReport, TargetRun};
use netblame_probe::responder::Responder;
use netblame_probe::{histlog, ProbeConfig, ProbeKind, Target};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    serve: Option<Sub>,
    /// Targets, probed side by side: host:port ([v6]:port; http://host:port/path or
    /// https://host:port/path for http; a bare host for icmp).
    targets: Vec<String>,
    /// Probe kind: tcp (connect time; with --request one request/response per connection, like
    /// TCP_CRR), rr (request/response on one kept connection, like TCP_RR), http (GET over
    /// HTTP/1.1, TLS for https://: name lookup, connect, TLS handshake, first byte and total
    /// timed apart; redirects are not followed), udp (echo), icmp (echo; needs root, CAP_NET_RAW
    /// or ping_group_range).
    #[arg(long, default_value = "tcp", value_parser = parse_kind)]
    kind: ProbeKind,
    /// Time between probes (probes leave on this schedule whether or not replies came back).
    #[arg(long, default_value = "1s", value_parser = crate::args::duration)]
    interval: Duration,
    /// Probes per target (default 10, or --duration / --interval).
    #[arg(long, short = 'c', conflicts_with = "duration", value_parser = crate::args::count)]
    count: Option<u64>,
    /// Run for this long instead of a --count.
    #[arg(long, value_parser = crate::args::duration)]
    duration: Option<Duration>,
    /// A reply later than this is a loss (even when longer than the interval).
    #[arg(long, default_value = "5s", value_parser = crate::args::duration)]
    timeout: Duration,
    /// Request size in bytes for rr, udp, icmp and tcp --request (echoed back).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// tcp: after connecting, send one request and wait for its echo (TCP_CRR; the target must
    /// run `netblame probe serve` or `netblame bench server`).
    #[arg(long)]
    request: bool,
    /// Length of the per-window loss and latency rows.
    #[arg(long, default_value = "10s", value_parser = crate::args::duration)]
    window: Duration,
    /// https: accept any server certificate (self-signed test servers); the handshake is timed
    /// the same way.
    #[arg(long, conflicts_with = "cacert")]
    insecure: bool,
    /// https: trust only the CA certificates in this PEM file (like curl --cacert) instead of
    /// the host's trust store.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Save the run's histograms as an HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Load a saved interval log and show it side by side (repeatable; works without targets).
    #[arg(long, value_name = "FILE")]
    load: Vec<PathBuf>,
    /// How many of the largest latencies to list per target (the report keeps the 5 largest).
    #[arg(long, default_value_t = 5)]
    spikes: usize,
    /// Also trace the kernel (eBPF tracepoints) while probing: each of the largest spikes is
    /// shown beside the kernel events around it (long NET_RX runs, collapse, prune), and the
    /// kernel's findings join the verdict (root and BTF needed).
    #[arg(long)]
    trace: bool,
    /// One JSON document (every probe, histograms, windows, findings) instead of text.
    #[arg(long)]
    json: bool,
    /// Also draw an SVG: latency over time with the largest marked and losses along the top,
    /// beside each target's histogram.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Answer rr, udp, tcp --request and http probes on one TCP and UDP port until interrupted.
    Serve {
        /// Address to listen on (TCP and UDP).
        #[arg(long, default_value = "0.0.0.0:5202")]
        listen: SocketAddr,
    },
}

fn parse_kind(s: &str) -> Result<ProbeKind, String> {
    s.parse()
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// From now on Ctrl-C only sets a flag ([`interrupted`]): the command ends early and still reports.
pub(crate) fn catch_sigint() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

/// True once Ctrl-C was pressed after [`catch_sigint`].
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Sub::Serve { listen }) = args.serve {
        return serve(listen);
    }
    if args.targets.is_empty() && args.load.is_empty() {
        return Err(crate::args::usage("name at least one target (host:port) or --load a saved log; see `netblame probe --help`"));
    }
    let mut loaded = Vec::new();
    for path in &args.load {
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| path.display().to_string());
        crate::args::check_loadable(path)?;
        loaded.extend(
            // Its errors name the file already.
            histlog::load(path, &label)?,
        );
    }
    let tracing =
        (args.trace && !args.targets.is_empty()).then(crate::cmd::trace::Background::start);
    let runs = if args.targets.is_empty() {
        Vec::new()
    } else {
        probe(&args)?
    };
    let trace = match tracing {
        Some(Ok(t)) => t.finish(),
        Some(Err(e)) => {
            eprintln!(
                "note: kernel tracing unavailable ({e}): spikes are shown without kernel events"
            );
            None
        }
        None => None,
    };
    let near = spikes_near_kernel_events(&runs, args.spikes, trace.as_ref());
    if let Some(path) = &args.save {
        if runs.is_empty() {
            return Err(crate::args::usage("--save needs targets to probe"));
        }
        histlog::save(path, &runs).with_context(|| format!("saving {}", path.display()))?;
    }
    let ctx = context();
    let all: Vec<TargetLatency> = runs
        .iter()
        .map(|r| r.latency.clone())
        .chain(loaded.iter().cloned())
        .collect();
    let findings = diagnose(&Observations {
        latency: Some((&all, &ctx)),
        trace: trace.as_ref(),
        ..Default::default()
    })
    .all;
    if let Some(p) = &args.plot {
        crate::plot::save(p, &crate::plot::probe::render(&runs, &loaded)?)?;
    }
    if args.json {
        let traced = trace.as_ref().map(|t| (t, near.as_slice()));
        render::print_json(&json_doc(&args, &runs, &loaded, &findings, &ctx, traced))?;
    } else {
        print!("{}", text(&args, &runs, &loaded, &findings));
        if trace.is_some() {
            print!("{}", spikes_text(&near));
        }
        if let Some(p) = &args.save {
            println!("saved: {}", p.display());
        }
    }
    let silent: Vec<&str> = runs
        .iter()
        .filter(|r| r.latency.summary.sent > 0 && r.latency.summary.received == 0)
        .map(|r| r.latency.target.as_str())
        .collect();
    if !silent.is_empty() {
        eprintln!("netblame: no reply from {}", silent.join(", "));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let r = Responder::start(listen).with_context(|| format!("listening on {listen}"))?;
    eprintln!(
        "netblame probe serve: answering rr, udp, tcp --request and http probes on {} (TCP and UDP); Ctrl-C stops",
        r.local_addr()
    );
    r.run_forever();
    Ok(ExitCode::SUCCESS)
}

/// The client kernel's SYN schedule, read from this host.
fn context() -> ProbeContext {
    let kernel = netblame_linux::sysctl::kernel_version().ok();
    let one = |name: &str| -> Option<u32> {
        match netblame_linux::sysctl::read_ints(name).ok()?.as_slice() {
            [v] => u32::try_from(*v).ok(),
            _ => None,
        }
    };
    let syn = match &kernel {
        Some(k) => SynSchedule::for_kernel(
            k,
            one("net.ipv4.tcp_syn_linear_timeouts"),
            one("net.ipv4.tcp_syn_retries"),
        ),
        None => SynSchedule::CLASSIC,
    };
    ProbeContext { kernel, syn }
}

fn probe(args: &Args) -> anyhow::Result<Vec<TargetRun>> {
    let targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t, args.kind))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!(e))?;
    let count = match (args.count, args.duration) {
        (Some(c), _) => c,
        (None, Some(d)) => {
            anyhow::ensure!(!args.interval.is_zero(), "--interval must be above zero");
            (d.as_nanos() / args.interval.as_nanos()) as u64
        }
        (None, None) => 10,
    };
    let cfg = ProbeConfig {
        kind: args.kind,
        targets,
        interval: args.interval,
        count,
        timeout: args.timeout,
        size: args.size,
        request: args.request,
        window: args.window,
        tls: netblame_probe::TlsOptions {
            insecure: args.insecure,
            cacert: args.cacert.clone(),
        },
    };
    let running = netblame_probe::start(cfg)?;
    catch_sigint();
    let live = !args.json && std::io::stderr().is_terminal();
    let mut shown = false;
    while !running.is_finished() {
        if INTERRUPTED.load(Ordering::Relaxed) {
            running.stop();
        }
        if live {
            let line: Vec<String> = running
                .progress()
                .iter()
                .map(|p| {
                    format!(
                        "{}: {} sent, {} recv, {} lost, last {}",
                        p.target,
                        p.sent,
                        p.received,
                        p.lost,
                        p.last_latency
                            .map(format_duration)
                            .unwrap_or_else(|| "-".into())
                    )
                })
                .collect();
            eprint!("\r\x1b[K{}", line.join(" | "));
            let _ = std::io::stderr().flush();
            shown = true;
        }
        std::thread::sleep(Duration::from_millis(if live { 250 } else { 20 }));
    }
    if shown {
        eprint!("\r\x1b[K");
    }
    Ok(running.wait())
}

fn us(v: f64) -> String {
    if v <= 0.0 {
        return "0".into();
    }
    format_duration(Duration::from_nanos((v * 1000.0).round() as u64))
}

/// A latency cell: `-` when no reply came back (a zero would read as a latency).
fn latency_cell(received: u64, v: f64) -> String {
    if received == 0 {
        "-".into()
    } else {
        us(v)
    }
}

/// `HH:MM:SS.mmm` UTC of a Unix time in milliseconds.
fn clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        unix_ms % 1000
    )
}

fn summary_rows(targets: &[&TargetLatency]) -> String {
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            let s = &t.summary;
            let mut row = vec![
                t.target.clone(),
                s.sent.to_string(),
                s.received.to_string(),
                format!("{:.1}%", s.loss_percent),
            ];
            let latencies = [
                s.min_us, s.avg_us, s.max_us, s.mdev_us, s.p50_us, s.p90_us, s.p99_us, s.p999_us,
            ];
            row.extend(latencies.map(|v| latency_cell(s.received, v)));
            row
        })
        .collect();
    render::table(
        &[
            "target", "sent", "recv", "loss", "min", "avg", "max", "mdev", "p50", "p90", "p99",
            "p99.9",
        ],
        &rows,
    )
}

/// SystemTap-style log2 histogram (microseconds).
fn histogram_text(rows: &[Log2Bucket]) -> String {
    let max = rows.iter().map(|r| r.count).max().unwrap_or(0).max(1);
    let w = rows
        .iter()
        .map(|r| r.lower_us.to_string().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:>w$} |{} count\n", "value", "-".repeat(50));
    for r in rows {
        let bar = (r.count * 50).div_ceil(max) as usize;
        out += &format!("{:>w$} |{:<50} {}\n", r.lower_us, "@".repeat(bar), r.count);
    }
    out
}

/// One of the largest spikes with the kernel events around it (`--trace`).
#[derive(Serialize, schemars::JsonSchema)]
struct SpikeContext<'a> {
    target: &'a str,
    seq: u64,
    latency_us: u64,
    /// When the probe left, Unix milliseconds.
    at_unix_ms: u64,
    /// Long NET_RX runs (and collapse/prune calls where traced) overlapping the probe's flight.
    kernel_events: Vec<&'a netblame_core::observe::trace::TraceEvent>,
}

/// Cloudflare's method: each of the largest spikes next to what the kernel did while that
/// probe was in flight (from 10 ms before it left to when its reply came).
fn spikes_near_kernel_events<'a>(
    runs: &'a [TargetRun],
    n: usize,
    trace: Option<&'a netblame_core::observe::trace::TraceSummary>,
) -> Vec<SpikeContext<'a>> {
    let Some(trace) = trace else {
        return Vec::new();
    };
    runs.iter()
        .flat_map(|r| {
            r.spikes.iter().take(n).map(move |s| {
                let left_ns = (r.started_unix_ms * 1000 + s.at_us) * 1000;
                SpikeContext {
                    target: &r.latency.target,
                    seq: s.seq,
                    latency_us: s.latency_us,
                    at_unix_ms: r.started_unix_ms + s.at_us / 1000,
                    kernel_events: trace.events_between(
                        left_ns.saturating_sub(10_000_000),
                        left_ns + s.latency_us * 1000,
                    ),
                }
            })
        })
        .collect()
}

fn spikes_text(near: &[SpikeContext]) -> String {
    let mut out = String::from("\nlargest spikes and the kernel around them (--trace):\n");
    for c in near {
        out += &format!(
            "  {} probe {} at {}: {}",
            c.target,
            c.seq,
            clock(c.at_unix_ms),
            format_duration(Duration::from_micros(c.latency_us))
        );
        if c.kernel_events.is_empty() {
            out += " — no long NET_RX run, collapse or prune while it was in flight\n";
            continue;
        }
        out += "\n";
        for e in &c.kernel_events {
            out += &format!("      cpu {} {}\n", e.cpu, crate::cmd::trace::event_line(e));
        }
    }
    out
}

fn text(args: &Args, runs: &[TargetRun], loaded: &[TargetLatency], findings: &[Finding]) -> String {
    let mut out = String::new();
    if let Some(first) = runs.first() {
        let what = match first.latency.measures {
            Measures::Connect => "TCP connect time",
            Measures::RoundTrip => "round trip",
        };
        out += &format!(
            "netblame probe --kind {}: {} per target every {} (timeout {}); {} measured from each probe's scheduled departure\n\n",
            args.kind,
            render::plural(first.latency.summary.sent, "probe"),
            format_duration(args.interval),
            format_duration(args.timeout),
            what
        );
    }
    let all: Vec<&TargetLatency> = runs
        .iter()
        .map(|r| &r.latency)
        .chain(loaded.iter())
        .collect();
    out += &summary_rows(&all);
    for t in &all {
        let rows = log2_buckets(t.values.iter().copied());
        if rows.is_empty() {
            continue;
        }
        out += &format!("\n{}: latency histogram (us)\n", t.target);
        out += &histogram_text(&rows);
    }
    for r in runs {
        let l = &r.latency;
        if !r.spikes.is_empty() && args.spikes > 0 {
            let list: Vec<String> = r
                .spikes
                .iter()
                .take(args.spikes)
                .map(|s| {
                    format!(
                        "{} at {} (probe {})",
                        format_duration(Duration::from_micros(s.latency_us)),
                        clock(r.started_unix_ms + s.at_us / 1000),
                        s.seq
                    )
                })
                .collect();
            out += &format!("\n{}: largest: {}\n", l.target, list.join("; "));
        }
        if let Some(h) = r.http.as_ref().filter(|h| !h.phases.is_empty()) {
            out += &http_text(&l.target, h);
        } else if l.measures == Measures::RoundTrip && !l.connect_values.is_empty() {
            let mut parts = vec![format!(
                "connect {}",
                phase(l.samples.iter().filter_map(|s| s.connect_us))
            )];
            if l.samples.iter().any(|s| s.first_byte_us.is_some()) {
                parts.push(format!(
                    "first byte {}",
                    phase(l.samples.iter().filter_map(|s| s.first_byte_us))
                ));
            }
            out += &format!("{}: {}\n", l.target, parts.join("; "));
        }
        let errors = error_counts(l);
        if !errors.is_empty() {
            out += &format!("{}: failures: {}\n", l.target, errors.join(", "));
        }
        if l.summary.late > 0 {
            out += &format!(
                "{}: {} after the {} timeout (counted as lost)\n",
                l.target,
                render::plural_as(l.summary.late, "reply came", "replies came"),
                format_duration(args.timeout)
            );
        }
    }
    for t in &all {
        if t.windows.len() < 2 {
            continue;
        }
        let rows: Vec<Vec<String>> = t
            .windows
            .iter()
            .map(|w| {
                vec![
                    if w.start_us == 0 {
                        "+0 s".to_string()
                    } else {
                        format!("+{}", format_duration(Duration::from_micros(w.start_us)))
                    },
                    w.sent.to_string(),
                    w.lost.to_string(),
                    format!("{:.1}%", w.loss_percent),
                    latency_cell(w.received, w.p50_us),
                    latency_cell(w.received, w.p99_us),
                    latency_cell(w.received, w.max_us),
                ]
            })
            .collect();
        out += &format!(
            "\n{}: per {} window\n",
            t.target,
            format_duration(Duration::from_micros(t.windows[0].duration_us))
        );
        out += &render::table(
            &["window", "sent", "lost", "loss", "p50", "p99", "max"],
            &rows,
        );
    }
    for r in runs {
        let s = &r.schedule;
        out += &format!(
            "{}schedule {}: probes left late by p50 {} / p99 {} / max {} (mean slip {:.2}% of the interval)\n",
            if std::ptr::eq(r, &runs[0]) { "\n" } else { "" },
            r.latency.target,
            format_duration(Duration::from_nanos(s.late_p50_ns)),
            format_duration(Duration::from_nanos(s.late_p99_ns)),
            format_duration(Duration::from_nanos(s.late_max_ns)),
            s.slip_percent
        );
    }
    if !findings.is_empty() {
        out += "\n";
        out += &render::findings(findings);
    }
    out
}

/// The http phase table: each phase's own duration, then statuses and the TLS session.
fn http_text(target: &str, h: &HttpReport) -> String {
    let name = |p: &str| match p {
        "dns" => "name lookup",
        "connect" => "TCP connect",
        "tls" => "TLS handshake",
        "first_byte" => "first byte",
        "transfer" => "transfer",
        _ => "total",
    };
    let rows: Vec<Vec<String>> = h
        .phases
        .iter()
        .map(|p| {
            vec![
                name(p.phase).to_string(),
                p.count.to_string(),
                us(p.p50_us),
                us(p.p90_us),
                us(p.p99_us),
                us(p.max_us),
            ]
        })
        .collect();
    let mut out = format!(
        "\n{target}: HTTP phases (each on its own; first byte = request sent to first response byte; total = from the scheduled departure)\n"
    );
    out += &render::table(&["phase", "probes", "p50", "p90", "p99", "max"], &rows);
    let statuses: Vec<String> = h
        .statuses
        .iter()
        .map(|(s, n)| format!("{n} x {s}"))
        .collect();
    let mut line = Vec::new();
    if !statuses.is_empty() {
        line.push(format!("status {}", statuses.join(", ")));
    }
    if let Some(v) = &h.tls_version {
        line.push(match &h.cipher {
            Some(c) => format!("{v} {c}"),
            None => v.clone(),
        });
    }
    if h.probes.iter().any(|p| p.chunked) {
        line.push("chunked body".into());
    }
    if !line.is_empty() {
        out += &format!("{target}: {}\n", line.join("; "));
    }
    out
}

/// `p50 X / p99 Y` of a phase (microseconds from the scheduled departure).
fn phase(values: impl Iterator<Item = u64>) -> String {
    let mut v: Vec<u64> = values.collect();
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    format!(
        "p50 {} / p99 {}",
        format_duration(Duration::from_micros(q(0.5))),
        format_duration(Duration::from_micros(q(0.99)))
    )
}

fn error_counts(t: &TargetLatency) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
    for s in &t.samples {
        if let netblame_core::observe::latency::ProbeOutcome::Failed { error, .. } = &s.outcome {
            *counts.entry(error.as_str()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(e, n)| format!("{n} x {e}"))
        .collect()
}

#[derive(Serialize, schemars::JsonSchema)]
struct JsonTarget<'a> {
    #[serde(flatten)]
    run: &'a TargetRun,
    histogram_log2_us: Vec<Log2Bucket>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct JsonLoaded<'a> {
    #[serde(flatten)]
    latency: &'a TargetLatency,
    histogram_log2_us: Vec<Log2Bucket>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct ProbeOut<'a> {
    kind: &'static str,
    interval_us: u64,
    timeout_us: u64,
    size_bytes: usize,
    kernel: Option<String>,
    syn_retry_schedule_s: Vec<f64>,
    targets: Vec<JsonTarget<'a>>,
    loaded: Vec<JsonLoaded<'a>>,
    findings: &'a [Finding],
    started_unix_ms: Option<u64>,
    /// With --trace: each of the largest spikes next to the kernel events in its flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    spikes_with_kernel_events: Option<&'a [SpikeContext<'a>]>,
    /// With --trace: what the kernel did during the probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<&'a TraceSummary>,
}

fn json_doc<'a>(
    args: &Args,
    runs: &'a [TargetRun],
    loaded: &'a [TargetLatency],
    findings: &'a [Finding],
    ctx: &ProbeContext,
    traced: Option<(&'a TraceSummary, &'a [SpikeContext<'a>])>,
) -> ProbeOut<'a> {
    ProbeOut {
        kind: args.kind.as_str(),
        interval_us: args.interval.as_micros() as u64,
        timeout_us: args.timeout.as_micros() as u64,
        size_bytes: args.size,
        kernel: ctx.kernel.as_ref().map(|k| k.to_string()),
        syn_retry_schedule_s: ctx
            .syn
            .retry_times()
            .iter()
            .map(|d| d.as_secs_f64())
            .collect(),
        targets: runs
            .iter()
            .map(|r| JsonTarget {
                run: r,
                histogram_log2_us: log2_buckets(r.latency.values.iter().copied()),
            })
            .collect(),
        loaded: loaded
            .iter()
            .map(|l| JsonLoaded {
                latency: l,
                histogram_log2_us: log2_buckets(l.values.iter().copied()),
            })
            .collect(),
        findings,
        started_unix_ms: runs.first().map(|r| r.started_unix_ms),
        spikes_with_kernel_events: traced.map(|(_, near)| near),
        trace: traced.map(|(t, _)| t),
    }
}

/// The JSON documents `probe` writes.
pub const JSON_DOCS: &[JsonDoc] = &[JsonDoc::of::<ProbeOut<'static>>(
    "probe",
    "netblame probe TARGET... --json",
)];
