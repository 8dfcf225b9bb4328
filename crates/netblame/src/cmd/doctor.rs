//! `netblame doctor` (also plain `netblame`): the host audit and every live TCP connection's
//! verdict over one window, then one verdict first — "Blame the application: ..." or "No TCP
//! problem found" — and the findings ranked by severity, grouped by layer, each with its fix.

use crate::cmd::host::{collect_live_with, host_text, path_spec, Progress};
use crate::render;
use netblame_core::diagnose::{diagnose, HostContext, Observations, Ranked, SocketPair, Verdict};
use netblame_core::json::JsonDoc;
use netblame_core::observe::{SocketSnapshot, TcpState};
use netblame_core::units::format_duration;
use netblame_core::{BitRate, Layer, Severity};
use netblame_linux::diag::{dump_namespaces, DumpRequest};
use serde::Serialize;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit code when `--fail-on` is reached (1 is a runtime error, 2 a usage error).
pub const FAIL_ON_EXIT: u8 = 3;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Warning,
    Critical,
}

#[derive(clap::Args, Default)]
pub struct Args {
    /// The window over which counters and connections are sampled (5s; a bare number is seconds).
    #[arg(long, default_value = "5s", value_parser = crate::args::seconds)]
    duration: Option<Duration>,
    /// Rate of a path this host must fill (10g): with --rtt, checks buffers against its BDP.
    #[arg(long, value_parser = crate::args::rate, requires = "rtt")]
    rate: Option<BitRate>,
    /// Round-trip time of that path (30ms).
    #[arg(long, value_parser = crate::args::rtt, requires = "rate")]
    rtt: Option<Duration>,
    /// One JSON document.
    #[arg(long)]
    json: bool,
    /// Exit with code 3 when a finding reaches this severity (for scripts).
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// Also trace the kernel (eBPF tracepoints) over the window: NET_RX softirq stalls, drops by
    /// reason, retransmits by peer, receive-buffer growth join the verdict (root and BTF needed;
    /// a line says so when tracing is unavailable).
    #[arg(long)]
    trace: bool,
    #[command(flatten)]
    netns: crate::cmd::netns::NetnsArgs,
    /// Also write a self-contained HTML report (verdict, findings by layer with evidence and
    /// fix, pictures; no network needed to view it).
    #[arg(long, value_name = "FILE.html")]
    report: Option<std::path::PathBuf>,
    /// Add an SVG to the report's pictures (repeatable), e.g. from `bench client --plot` or
    /// `pcap --conn ID --plot`; embedded as an image, so nothing in it runs.
    #[arg(long, value_name = "FILE.svg", requires = "report")]
    attach: Vec<std::path::PathBuf>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct ProblemConnection {
    connection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<String>,
    /// Its network namespace (with --netns / --all-netns).
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<String>,
    /// Its owner's pod/container, when it runs in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<String>,
    findings: Vec<&'static str>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct ConnectionCounts {
    sampled: usize,
    judged_over_window: usize,
    with_problems: usize,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Report {
    verdict: Verdict,
    kernel: Option<String>,
    window_us: u64,
    connections: ConnectionCounts,
    findings: Vec<Ranked>,
    /// Connections with a warning or worse, most severe first (at most 200).
    problem_connections: Vec<ProblemConnection>,
    skipped: Vec<netblame_core::observe::host::Skipped>,
    /// The host counters over the window (as `netblame host --json` reports them).
    host_deltas: crate::cmd::host::Deltas,
}

/// The most connections listed in JSON.
const MAX_LISTED: usize = 200;

fn sock_request(processes: bool) -> DumpRequest {
    DumpRequest {
        states: vec![TcpState::Established, TcpState::CloseWait],
        processes,
        ..Default::default()
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let window = a.duration.unwrap_or(Duration::from_secs(5));
    anyhow::ensure!(!window.is_zero(), "--duration must be more than zero");
    let path = path_spec(a.rate, a.rtt)?;
    let mut notes: Vec<(String, String)> = Vec::new();
    let selection = a.netns.select()?;
    let namespaces = &selection.namespaces;
    notes.extend(
        selection
            .notes
            .iter()
            .map(|n| ("netns".to_string(), n.clone())),
    );
    let named = selection.explicit;

    // First socket sample (with owners), then the host's first counter read, both at the start
    // of the window; the second samples at its end. Sockets come from every selected namespace;
    // other namespaces' own counters are read and judged each on their own.
    // The tracer loads first, so its events cover the whole window.
    let tracing = a.trace.then(crate::cmd::trace::Background::start);
    let t0 = Instant::now();
    let first_dump = dump_namespaces(&sock_request(true), namespaces, |_| true);
    for (_, e) in &first_dump.skipped {
        notes.push(("sockets".into(), format!("{e}: skipped")));
    }
    let first = if first_dump.namespaces.is_empty() {
        notes.push((
            "sockets".into(),
            "sock_diag dump failed: no per-connection verdicts".into(),
        ));
        None
    } else {
        if let Some(l) = first_dump.stats.limitation() {
            notes.push(("sockets".into(), l));
        }
        Some(first_dump)
    };
    let mut cg_skipped = Vec::new();
    let targets = netblame_linux::host::cgroup_targets_of(
        first.iter().flat_map(|d| d.iter().map(|(_, s)| s)),
        &mut cg_skipped,
    );
    notes.extend(cg_skipped.into_iter().map(|s| (s.section, s.reason)));
    let pending_ns = crate::cmd::host::begin_other_namespaces(&selection);
    let progress = Progress::new(window, "watching TCP for");
    let (snap, second, interval) = collect_live_with(targets, notes, t0, window, &progress, || {
        let t1 = Instant::now();
        let d = first
            .as_ref()
            .map(|_| dump_namespaces(&sock_request(false), namespaces, |_| true));
        (d, t1)
    });
    progress.finish();

    let mut skipped = snap.skipped.clone();
    let trace = match tracing {
        Some(Ok(t)) => t.finish(),
        Some(Err(e)) => {
            skipped.push(netblame_core::observe::host::Skipped {
                section: "trace".into(),
                reason: format!("kernel tracing unavailable ({e}): no kernel-event findings"),
            });
            None
        }
        None => None,
    };

    let interval = interval.max(Duration::from_millis(1));
    let ctx = match &snap.kernel {
        Some(k) => HostContext::new(k.clone(), netblame_linux::sysctl::rcv_settings(k)),
        None => HostContext::default(),
    };
    let mut counts = ConnectionCounts {
        sampled: 0,
        judged_over_window: 0,
        with_problems: 0,
    };
    // Each socket of the second dump with its namespace, its first sample and its owners.
    let mut current: Vec<(netblame_core::observe::NetnsRef, SocketSnapshot)> = Vec::new();
    let mut prev: HashMap<(u64, u64), &SocketSnapshot> = HashMap::new();
    match (second, &first) {
        (Some(d), Some(first)) if !d.namespaces.is_empty() => {
            prev = first
                .iter()
                .map(|(n, s)| ((n.inode, s.cookie), s))
                .collect();
            counts.sampled = d.stats.sockets;
            for (ns, s) in d.iter() {
                let mut s = s.clone();
                if let Some(p) = prev.get(&(ns.inode, s.cookie)) {
                    counts.judged_over_window += 1;
                    if s.owners.is_empty() && !p.owners.is_empty() {
                        s.owners = p.owners.clone();
                    }
                }
                current.push((ns.clone(), s));
            }
        }
        (Some(_), Some(_)) => skipped.push(netblame_core::observe::host::Skipped {
            section: "sockets".into(),
            reason: "second sock_diag dump failed: no per-connection verdicts".into(),
        }),
        _ => {}
    }
    let (ns_snaps, ns_notes) = crate::cmd::host::finish_other_namespaces(pending_ns);
    for n in ns_notes {
        skipped.push(netblame_core::observe::host::Skipped {
            section: "netns".into(),
            reason: n,
        });
    }
    let diagnosis = diagnose(&Observations {
        trace: trace.as_ref(),
        host: Some(&snap),
        path,
        namespaces: crate::cmd::host::namespace_observations(&ns_snaps),
        sockets: current
            .iter()
            .map(|(ns, s)| SocketPair {
                prev: prev.get(&(ns.inode, s.cookie)).copied(),
                cur: s,
            })
            .collect(),
        socket_host: ctx,
        socket_interval: interval,
        ..Default::default()
    });
    let mut problems: Vec<(Option<Severity>, ProblemConnection)> = Vec::new();
    for ((ns, s), v) in current.iter().zip(&diagnosis.connections) {
        if v.is_problem() {
            counts.with_problems += 1;
            problems.push((
                v.severity(),
                ProblemConnection {
                    connection: s.label(),
                    process: s.process_label(),
                    netns: named.then(|| ns.label()),
                    container: first
                        .as_ref()
                        .and_then(|f| f.container_of(s))
                        .map(|c| c.label()),
                    limit: v.limit.map(|l| l.to_string()),
                    findings: v.findings.iter().map(|f| f.id).collect(),
                },
            ));
        }
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    let all = &diagnosis.findings;
    let v = diagnosis.verdict().clone();
    let worst = v.worst;
    let code = match (a.fail_on, worst) {
        (Some(FailOn::Warning), Some(s)) if s >= Severity::Warning => ExitCode::from(FAIL_ON_EXIT),
        (Some(FailOn::Critical), Some(Severity::Critical)) => ExitCode::from(FAIL_ON_EXIT),
        _ => ExitCode::SUCCESS,
    };

    if let Some(path) = &a.report {
        let limits: Vec<(String, netblame_core::observe::LimitShares)> = current
            .iter()
            .zip(&diagnosis.connections)
            .filter_map(|((_, s), v)| Some((s.label(), v.shares?)))
            .collect();
        crate::plot::report::write_doctor(
            path,
            &crate::plot::report::DoctorPage {
                verdict: &v,
                context: format!(
                    "{} window; {} sampled, {} judged over the window, {} with problems; kernel {}",
                    format_duration(Duration::from_micros(snap.window_us)),
                    render::plural(counts.sampled, "connection"),
                    counts.judged_over_window,
                    counts.with_problems,
                    snap.kernel
                        .as_ref()
                        .map_or("unknown".into(), |k| k.to_string())
                ),
                findings: all.iter().map(|r| (&r.finding, r.seen)).collect(),
                problems: problems
                    .iter()
                    .map(|(_, p)| crate::plot::report::ProblemRow {
                        connection: &p.connection,
                        process: p.process.as_deref(),
                        limit: p.limit.as_deref(),
                        findings: &p.findings,
                    })
                    .collect(),
                skipped: &skipped,
                limits: &limits,
                attach: &a.attach,
            },
        )?;
    }
    if a.json {
        render::print_json(&Report {
            verdict: v,
            kernel: snap.kernel.as_ref().map(|k| k.to_string()),
            window_us: snap.window_us,
            connections: counts,
            findings: all.clone(),
            problem_connections: problems.into_iter().take(MAX_LISTED).map(|p| p.1).collect(),
            skipped,
            host_deltas: crate::cmd::host::deltas(&snap),
        })?;
        return Ok(code);
    }
    let headline = match v.blame {
        Some(_) => render::paint(&v.headline, "1"),
        None => render::paint(&v.headline, "1;32"),
    };
    println!("{headline}");
    println!(
        "({} window; {} sampled, {} judged over the window, {} with problems; kernel {})\n",
        format_duration(Duration::from_micros(snap.window_us)),
        render::plural(counts.sampled, "connection"),
        counts.judged_over_window,
        counts.with_problems,
        snap.kernel
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    // Layers in the order of their worst finding.
    let mut layers: Vec<(Layer, Severity)> = Vec::new();
    for r in all {
        if !layers.iter().any(|(l, _)| *l == r.finding.layer) {
            layers.push((r.finding.layer, r.finding.severity));
        }
    }
    for (layer, _) in &layers {
        println!("== {layer} ==");
        for r in all.iter().filter(|r| r.finding.layer == *layer) {
            print!("{}", render::findings(std::slice::from_ref(&r.finding)));
            if r.seen > 1 {
                println!(
                    "    seen:     {} times (connections or namespaces; the one shown is the most severe)",
                    r.seen
                );
            }
        }
        println!();
    }
    if !problems.is_empty() {
        println!(
            "connections with problems (most severe first; all with netblame sockets --problems):"
        );
        for (_, p) in problems.iter().take(10) {
            let mut place = String::new();
            if let Some(ns) = &p.netns {
                place += &format!("  netns {ns}");
            }
            if let Some(c) = &p.container {
                place += &format!("  {c}");
            }
            println!(
                "  {}  {}{place}  {}",
                p.connection,
                p.process.as_deref().unwrap_or("-"),
                p.findings.join(", ")
            );
        }
        if problems.len() > 10 {
            println!("  ... and {} more", problems.len() - 10);
        }
        println!();
    }
    let host = host_text(&snap, false);
    println!("-- host counters --\n{host}");
    if !skipped.is_empty() && snap.skipped.len() != skipped.len() {
        for s in &skipped[snap.skipped.len()..] {
            println!("  {}: {}", s.section, s.reason);
        }
    }
    Ok(code)
}

/// The JSON documents `doctor` writes.
pub const JSON_DOCS: &[JsonDoc] = &[JsonDoc::of::<Report>("doctor", "netblame doctor --json")];
