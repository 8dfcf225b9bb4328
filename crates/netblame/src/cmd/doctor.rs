//! `netblame doctor` (also plain `netblame`): the host audit and every live TCP connection's
//! verdict over one window, then one verdict first — "Blame the application: ..." or "No TCP
//! problem found" — and the findings ranked by severity, grouped by layer, each with its fix.

use crate::cmd::host::{collect_live_with, host_text, path_spec, Progress};
use crate::render;
use netblame_core::observe::{SocketSnapshot, TcpState};
use netblame_core::rules::connection::{judge as judge_connection, HostContext};
use netblame_core::rules::host::judge as judge_host;
use netblame_core::rules::verdict::{verdict, Verdict};
use netblame_core::units::format_duration;
use netblame_core::{rank, BitRate, Finding, Layer, Severity};
use netblame_linux::diag::{dump, DumpRequest};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
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
    /// Also write a self-contained HTML report (verdict, findings by layer with evidence and
    /// fix, pictures; no network needed to view it).
    #[arg(long, value_name = "FILE.html")]
    report: Option<std::path::PathBuf>,
    /// Add an SVG to the report's pictures (repeatable), e.g. from `bench client --plot` or
    /// `pcap --conn ID --plot`; embedded as an image, so nothing in it runs.
    #[arg(long, value_name = "FILE.svg", requires = "report")]
    attach: Vec<std::path::PathBuf>,
}

/// A finding with how many connections showed it (0 for host findings).
#[derive(Serialize)]
struct Ranked {
    #[serde(flatten)]
    finding: Finding,
    connections: usize,
}

#[derive(Serialize)]
struct ProblemConnection {
    connection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<String>,
    findings: Vec<&'static str>,
}

#[derive(Serialize)]
struct ConnectionCounts {
    sampled: usize,
    judged_over_window: usize,
    with_problems: usize,
}

#[derive(Serialize)]
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

    // First socket sample (with owners), then the host's first counter read, both at the start
    // of the window; the second samples at its end.
    let t0 = Instant::now();
    let first = match dump(&sock_request(true)) {
        Ok(d) => {
            if let Some(l) = d.stats.limitation() {
                notes.push(("sockets".into(), l));
            }
            Some(d.sockets)
        }
        Err(e) => {
            notes.push((
                "sockets".into(),
                format!("sock_diag dump failed ({e}): no per-connection verdicts"),
            ));
            None
        }
    };
    let mut cg_skipped = Vec::new();
    let targets =
        netblame_linux::host::cgroup_targets(first.as_deref().unwrap_or(&[]), &mut cg_skipped);
    notes.extend(cg_skipped.into_iter().map(|s| (s.section, s.reason)));
    let progress = Progress::new(window, "watching TCP for");
    let (snap, second, interval) = collect_live_with(targets, notes, t0, window, &progress, || {
        let t1 = Instant::now();
        let d = first.as_ref().map(|_| dump(&sock_request(false)));
        (d, t1)
    });
    progress.finish();

    let mut skipped = snap.skipped.clone();
    let interval = interval.max(Duration::from_millis(1));
    let ctx = match &snap.kernel {
        Some(k) => HostContext::new(k.clone(), netblame_linux::sysctl::rcv_settings(k)),
        None => HostContext::default(),
    };
    let mut conn_findings: Vec<Finding> = Vec::new();
    let mut counts = ConnectionCounts {
        sampled: 0,
        judged_over_window: 0,
        with_problems: 0,
    };
    let mut problems: Vec<(Option<Severity>, ProblemConnection)> = Vec::new();
    let mut limits = Vec::new();
    match second {
        Some(Ok(d)) => {
            let prev: HashMap<u64, &SocketSnapshot> = first
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|s| (s.cookie, s))
                .collect();
            counts.sampled = d.sockets.len();
            for mut s in d.sockets {
                let p = prev.get(&s.cookie).copied();
                if let Some(p) = p {
                    counts.judged_over_window += 1;
                    if s.owners.is_empty() {
                        s.owners = p.owners.clone();
                    }
                }
                let v = judge_connection(p, &s, interval, &ctx);
                if let Some(sh) = v.shares {
                    limits.push((s.label(), sh));
                }
                if v.is_problem() {
                    counts.with_problems += 1;
                    problems.push((
                        v.severity(),
                        ProblemConnection {
                            connection: s.label(),
                            process: s.process_label(),
                            limit: v.limit.map(|l| l.to_string()),
                            findings: v.findings.iter().map(|f| f.id).collect(),
                        },
                    ));
                }
                conn_findings.extend(v.findings);
            }
        }
        Some(Err(e)) => skipped.push(netblame_core::observe::host::Skipped {
            section: "sockets".into(),
            reason: format!("second sock_diag dump failed ({e}): no per-connection verdicts"),
        }),
        None => {}
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));

    // One entry per connection finding id (its most severe instance), counted.
    rank(&mut conn_findings);
    let mut by_id: BTreeMap<&'static str, Ranked> = BTreeMap::new();
    for f in conn_findings {
        by_id
            .entry(f.id)
            .and_modify(|r| r.connections += 1)
            .or_insert(Ranked {
                finding: f,
                connections: 1,
            });
    }
    let mut host_findings = judge_host(&snap, path);
    host_findings.retain(|h| {
        by_id
            .get(h.id)
            .is_none_or(|c| c.finding.severity < h.severity)
    });
    let mut all: Vec<Ranked> = host_findings
        .into_iter()
        .map(|f| Ranked {
            finding: f,
            connections: 0,
        })
        .chain(by_id.into_values())
        .collect();
    all.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then(a.finding.layer.cmp(&b.finding.layer))
            .then(b.connections.cmp(&a.connections))
            .then(a.finding.id.cmp(b.finding.id))
    });
    let plain: Vec<Finding> = all.iter().map(|r| r.finding.clone()).collect();
    let v = verdict(&plain);
    let worst = v.worst;
    let code = match (a.fail_on, worst) {
        (Some(FailOn::Warning), Some(s)) if s >= Severity::Warning => ExitCode::from(FAIL_ON_EXIT),
        (Some(FailOn::Critical), Some(Severity::Critical)) => ExitCode::from(FAIL_ON_EXIT),
        _ => ExitCode::SUCCESS,
    };

    if let Some(path) = &a.report {
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
                findings: all.iter().map(|r| (&r.finding, r.connections)).collect(),
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
            findings: all,
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
    for r in &all {
        if !layers.iter().any(|(l, _)| *l == r.finding.layer) {
            layers.push((r.finding.layer, r.finding.severity));
        }
    }
    for (layer, _) in &layers {
        println!("== {layer} ==");
        for r in all.iter().filter(|r| r.finding.layer == *layer) {
            print!("{}", render::findings(std::slice::from_ref(&r.finding)));
            if r.connections > 1 {
                println!(
                    "    seen on:  {} connections (the one shown is the most severe)",
                    r.connections
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
            println!(
                "  {}  {}  {}",
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
