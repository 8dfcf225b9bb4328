//! `netblame host`: the host audit — sysctls that bound TCP, known kernel issues, and counters
//! read twice over a window (TcpExt/Tcp, softnet, interfaces, qdiscs, TX queues, NIC statistics,
//! cgroup CPU throttling of socket owners), with findings. `--save` writes what was collected,
//! `--load` judges such a file on another machine.

use crate::render;
use anyhow::Context;
use netblame_core::diagnose::{diagnose, Observations, PathSpec};
use netblame_core::json::{JsonDoc, SCHEMA_VERSION};
use netblame_core::observe::host::CounterDelta;
use netblame_core::observe::host::{HostSnapshot, QueueDir};
use netblame_core::observe::TcpState;
use netblame_core::units::{format_duration, group_thousands};
use netblame_core::{BitRate, Bytes, Finding};
use netblame_linux::diag::{dump, DumpRequest};
use netblame_linux::host as linux_host;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Counter window: counters are read at its start and end (2s, 500ms; a bare number is seconds).
    #[arg(long, default_value = "2s", value_parser = crate::args::seconds, conflicts_with = "load")]
    duration: Duration,
    /// Rate of a path this host must fill (10g, 100mbit): with --rtt, checks buffers against its BDP.
    #[arg(long, value_parser = crate::args::rate, requires = "rtt")]
    rate: Option<BitRate>,
    /// Round-trip time of that path (30ms).
    #[arg(long, value_parser = crate::args::rtt, requires = "rate")]
    rtt: Option<Duration>,
    /// One JSON document: the snapshot, the deltas and the findings.
    #[arg(long)]
    json: bool,
    /// Also write everything collected to FILE (JSON), e.g. for a support bundle.
    #[arg(long, value_name = "FILE", conflicts_with = "load")]
    save: Option<PathBuf>,
    /// Judge a snapshot written by --save (on any machine) instead of this host.
    #[arg(long, value_name = "FILE")]
    load: Option<PathBuf>,
    #[command(flatten)]
    netns: crate::cmd::netns::NetnsArgs,
}

/// The path named by `--rate`/`--rtt`, if both were given.
pub(crate) fn path_spec(
    rate: Option<BitRate>,
    rtt: Option<Duration>,
) -> anyhow::Result<Option<PathSpec>> {
    match (rate, rtt) {
        (Some(r), Some(t)) => {
            anyhow::ensure!(!t.is_zero(), "--rtt must be more than zero");
            Ok(Some(PathSpec {
                rate_bps: r.bits_per_second(),
                rtt: t,
            }))
        }
        _ => Ok(None),
    }
}

/// A spinner-and-bar on stderr while a window elapses, only on a terminal.
pub(crate) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub(crate) fn new(window: Duration, what: &str) -> Progress {
        if !std::io::stderr().is_terminal() || window < Duration::from_millis(500) {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(window.as_millis() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {elapsed}/{duration}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        Progress(Some(bar))
    }

    /// Sleeps until `until` has elapsed since `start`, ticking the bar.
    pub(crate) fn wait(&self, start: std::time::Instant, until: Duration) {
        loop {
            let e = start.elapsed();
            if e >= until {
                break;
            }
            if let Some(b) = &self.0 {
                b.set_position(e.as_millis() as u64);
            }
            std::thread::sleep((until - e).min(Duration::from_millis(100)));
        }
    }

    pub(crate) fn finish(self) {
        if let Some(b) = self.0 {
            b.finish_and_clear();
        }
    }
}

/// Dumps established sockets with their owning processes: the processes whose cgroups the
/// audit watches. Returns what it could not do as a skipped note.
/// With `namespaces`, the socket owners of every one of them (cgroups are host-wide: read
/// once).
pub(crate) fn socket_owner_targets(
    pending_notes: &mut Vec<(String, String)>,
    namespaces: &[netblame_linux::netns::Netns],
) -> Vec<linux_host::CgroupTarget> {
    let req = DumpRequest {
        states: vec![TcpState::Established, TcpState::CloseWait],
        processes: true,
        ..Default::default()
    };
    if !namespaces.is_empty() {
        let d = netblame_linux::diag::dump_namespaces(&req, namespaces, |_| true);
        if let Some(l) = d.stats.limitation() {
            pending_notes.push(("cgroup".into(), l));
        }
        let mut skipped = Vec::new();
        let t = linux_host::cgroup_targets_of(d.iter().map(|(_, s)| s), &mut skipped);
        pending_notes.extend(skipped.into_iter().map(|s| (s.section, s.reason)));
        return t;
    }
    match dump(&req) {
        Ok(d) => {
            if let Some(l) = d.stats.limitation() {
                pending_notes.push(("cgroup".into(), l));
            }
            let mut skipped = Vec::new();
            let t = linux_host::cgroup_targets(&d.sockets, &mut skipped);
            pending_notes.extend(skipped.into_iter().map(|s| (s.section, s.reason)));
            t
        }
        Err(e) => {
            pending_notes.push((
                "cgroup".into(),
                format!("could not list socket owners ({e}): no CPU-throttling check"),
            ));
            Vec::new()
        }
    }
}

/// Deltas over the window, for JSON and the text report.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Deltas {
    window_us: u64,
    proto: Vec<CounterDelta>,
    softnet: Vec<netblame_core::observe::host::SoftnetRow>,
    devices: Vec<netblame_core::observe::host::DevCounters>,
    qdiscs: Vec<netblame_core::observe::host::QdiscStats>,
    queues: Vec<netblame_core::observe::host::QueueStats>,
    nic: Vec<netblame_core::observe::host::NicStats>,
    cgroups: Vec<netblame_core::observe::host::CgroupCpu>,
}

pub(crate) fn deltas(s: &HostSnapshot) -> Deltas {
    Deltas {
        window_us: s.window_us,
        proto: s.proto_deltas(),
        softnet: s.softnet_deltas(),
        devices: s.device_deltas(),
        qdiscs: s.qdisc_deltas(),
        queues: s.queue_deltas(),
        nic: s
            .nic_deltas()
            .into_iter()
            .filter(|n| !n.stats.is_empty())
            .collect(),
        cgroups: s.cgroup_deltas(),
    }
}

#[derive(Serialize, schemars::JsonSchema)]
struct Report<'a> {
    source: &'a str,
    snapshot: &'a HostSnapshot,
    deltas: Deltas,
    findings: &'a [Finding],
    /// Other network namespaces (--netns, --all-netns): their own counters, judged each.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    namespaces: &'a [NetnsReport],
    /// Namespaces that could not be read, and why.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    namespaces_skipped: &'a [String],
}

/// One other network namespace's counters and findings.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct NetnsReport {
    pub(crate) netns: netblame_core::observe::NetnsRef,
    pub(crate) deltas: Deltas,
    pub(crate) findings: Vec<Finding>,
    pub(crate) skipped: Vec<netblame_core::observe::host::Skipped>,
}

/// Starts the per-namespace collections of the selected namespaces other than this one.
pub(crate) fn begin_other_namespaces(
    sel: &crate::cmd::netns::Selection,
) -> Option<linux_host::NetnsPending> {
    let others: Vec<_> = sel
        .namespaces
        .iter()
        .filter(|n| !n.current)
        .cloned()
        .collect();
    (!others.is_empty()).then(|| linux_host::begin_namespaces(&others))
}

/// Finishes them: each namespace's own snapshot, and a note per namespace that could not be read.
pub(crate) fn finish_other_namespaces(
    pending: Option<linux_host::NetnsPending>,
) -> (
    Vec<(netblame_core::observe::NetnsRef, HostSnapshot)>,
    Vec<String>,
) {
    let Some(p) = pending else {
        return (Vec::new(), Vec::new());
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (id, r) in p.finish() {
        match r {
            Ok(snap) => out.push((id, snap)),
            Err(e) => errors.push(e),
        }
    }
    (out, crate::cmd::netns::skipped_notes(errors.iter()))
}

/// The other namespaces as the diagnose step sees them (label, snapshot).
pub(crate) fn namespace_observations(
    snaps: &[(netblame_core::observe::NetnsRef, HostSnapshot)],
) -> Vec<(String, &HostSnapshot)> {
    snaps.iter().map(|(id, s)| (id.label(), s)).collect()
}

/// Each other namespace's report: its counters and the findings the diagnose step made for it
/// (those already made for this host's own namespace are not repeated).
pub(crate) fn namespace_reports(
    snaps: Vec<(netblame_core::observe::NetnsRef, HostSnapshot)>,
    findings: &[Vec<Finding>],
) -> Vec<NetnsReport> {
    snaps
        .into_iter()
        .zip(findings)
        .map(|((netns, snap), f)| NetnsReport {
            netns,
            deltas: deltas(&snap),
            findings: f.clone(),
            skipped: snap.skipped,
        })
        .collect()
}

/// The text for other namespaces: a table, then each one's findings.
pub(crate) fn namespaces_text(reports: &[NetnsReport], notes: &[String]) -> String {
    let mut out = String::new();
    if !reports.is_empty() {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|r| {
                vec![
                    r.netns.label(),
                    r.netns.inode.to_string(),
                    r.deltas.proto.len().to_string(),
                    r.findings.len().to_string(),
                ]
            })
            .collect();
        out += &format!("\nother network namespaces ({}):\n", reports.len());
        out += &render::table(&["netns", "inode", "counters moved", "findings"], &rows);
        for r in reports.iter().filter(|r| !r.findings.is_empty()) {
            out += &format!("\n== netns {} ==\n", r.netns.label());
            out += &render::findings(&r.findings);
        }
    }
    for n in notes {
        out += &format!("note: {n}\n");
    }
    out
}

/// The host sections of a text report (everything but the findings).
pub(crate) fn host_text(s: &HostSnapshot, verbose: bool) -> String {
    let secs = s.window_secs();
    let mut out = String::new();
    out += &format!(
        "host {}  kernel {}  window {}\n\n",
        s.hostname.as_deref().unwrap_or("?"),
        s.kernel
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "unknown".into()),
        format_duration(Duration::from_micros(s.window_us))
    );
    if verbose {
        let rows: Vec<Vec<String>> = s
            .sysctls
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect();
        out += &render::table(&["sysctl", "value"], &rows);
        out += "\n";
    }
    let d = deltas(s);
    let counter_row = |c: &CounterDelta| -> Vec<String> {
        vec![
            c.name.clone(),
            group_thousands(c.delta),
            format!("{:.1}/s", c.per_second),
        ]
    };
    let rows: Vec<Vec<String>> = d.proto.iter().map(counter_row).collect();
    if rows.is_empty() {
        out += "TCP/IP counters: none moved\n\n";
    } else if verbose {
        out += &render::table(&["counter", "delta", "rate"], &rows);
        out += "\n";
    } else {
        // The counters the findings read, when they moved.
        let watched = netblame_core::observe::host::Counter::ALL;
        let rows: Vec<Vec<String>> = d
            .proto
            .iter()
            .filter(|c| watched.iter().any(|w| w.name() == c.name))
            .map(counter_row)
            .collect();
        out += &format!(
            "TCP/IP counters: {} moved ({} shown; all with --json)\n",
            d.proto.len(),
            rows.len()
        );
        if !rows.is_empty() {
            out += &render::table(&["counter", "delta", "rate"], &rows);
        }
        out += "\n";
    }
    let processed: u64 = d.softnet.iter().map(|r| r.processed).sum();
    let squeeze: u64 = d.softnet.iter().map(|r| r.time_squeeze).sum();
    let dropped: u64 = d.softnet.iter().map(|r| r.dropped).sum();
    out += &format!(
        "softnet: {}, {} {} ({:.0}/s), time_squeeze +{squeeze}, dropped +{dropped}\n",
        render::plural(d.softnet.len(), "CPU"),
        group_thousands(processed),
        render::noun(processed, "packet"),
        processed as f64 / secs
    );
    let dev_rows: Vec<Vec<String>> = d
        .devices
        .iter()
        .filter(|x| verbose || x.rx_packets + x.tx_packets + x.rx_dropped + x.tx_dropped > 0)
        .map(|x| {
            vec![
                x.device.clone(),
                BitRate(x.rx_bytes as f64 * 8.0 / secs).to_string(),
                BitRate(x.tx_bytes as f64 * 8.0 / secs).to_string(),
                group_thousands(x.rx_packets),
                group_thousands(x.tx_packets),
                format!("{}/{}", x.rx_dropped, x.tx_dropped),
                format!("{}/{}", x.rx_errors, x.tx_errors),
            ]
        })
        .collect();
    if !dev_rows.is_empty() {
        out += "\n";
        out += &render::table(
            &[
                "interface",
                "rx rate",
                "tx rate",
                "rx pkts",
                "tx pkts",
                "drop rx/tx",
                "err rx/tx",
            ],
            &dev_rows,
        );
    }
    let q_rows: Vec<Vec<String>> = d
        .qdiscs
        .iter()
        .filter(|q| verbose || q.packets + q.drops + q.requeues + q.overlimits > 0)
        .map(|q| {
            vec![
                q.device.clone(),
                q.kind.clone(),
                q.handle.clone(),
                q.parent.clone(),
                group_thousands(q.packets),
                group_thousands(q.drops),
                group_thousands(q.requeues),
                group_thousands(q.overlimits),
                Bytes(q.backlog_bytes).to_string(),
            ]
        })
        .collect();
    if !q_rows.is_empty() {
        out += "\n";
        out += &render::table(
            &[
                "qdisc dev",
                "kind",
                "handle",
                "parent",
                "packets",
                "drops",
                "requeues",
                "overlimits",
                "backlog",
            ],
            &q_rows,
        );
    }
    let mut by_dev: BTreeMap<&str, Vec<(u32, u64)>> = BTreeMap::new();
    for q in d.queues.iter().filter(|q| q.dir == QueueDir::Tx) {
        by_dev
            .entry(&q.device)
            .or_default()
            .push((q.index, q.packets));
    }
    for (dev, qs) in by_dev.iter().filter(|(_, q)| q.len() > 1) {
        let total: u64 = qs.iter().map(|q| q.1).sum::<u64>().max(1);
        let parts: Vec<String> = qs
            .iter()
            .map(|(i, p)| format!("tx-{i} {:.0}%", *p as f64 * 100.0 / total as f64))
            .collect();
        out += &format!("\nTX queues of {dev}: {}\n", parts.join(", "));
    }
    for nic in &d.nic {
        let mut moved: Vec<(&String, &u64)> = nic.stats.iter().collect();
        moved.sort_by(|a, b| b.1.cmp(a.1));
        let shown: Vec<String> = moved
            .iter()
            .take(if verbose { usize::MAX } else { 8 })
            .map(|(k, v)| format!("{k} +{v}"))
            .collect();
        out += &format!(
            "\nNIC {} ({}): {}{}\n",
            nic.device,
            nic.driver.as_deref().unwrap_or("?"),
            shown.join(", "),
            if moved.len() > shown.len() {
                format!(" (+{} more)", moved.len() - shown.len())
            } else {
                String::new()
            }
        );
    }
    if !d.cgroups.is_empty() {
        let rows: Vec<Vec<String>> = d
            .cgroups
            .iter()
            .map(|c| {
                let owners: Vec<String> = c
                    .owners
                    .iter()
                    .map(|o| format!("{}[{}]", o.command, o.pid))
                    .collect();
                vec![
                    c.path.clone(),
                    owners.join(" "),
                    c.nr_periods.to_string(),
                    c.nr_throttled.to_string(),
                    format_duration(Duration::from_micros(c.throttled_usec)),
                    match (c.quota_usec, c.period_usec) {
                        (Some(q), Some(p)) => format!("{:.2} CPUs", q as f64 / p.max(1) as f64),
                        _ => "none".into(),
                    },
                ]
            })
            .collect();
        out += "\n";
        out += &render::table(
            &[
                "cgroup (socket owners)",
                "processes",
                "periods",
                "throttled",
                "throttled time",
                "cpu limit",
            ],
            &rows,
        );
    }
    if !s.skipped.is_empty() {
        out += "\nskipped:\n";
        for sk in &s.skipped {
            out += &format!("  {}: {}\n", sk.section, sk.reason);
        }
    }
    out
}

/// Collects a live snapshot over `window`, with a progress bar on a terminal.
/// With `namespaces` (--all-netns, several --netns), the cgroups watched are those of the
/// socket owners in all of them.
pub(crate) fn collect_live(
    window: Duration,
    namespaces: &[netblame_linux::netns::Netns],
) -> HostSnapshot {
    let mut notes = Vec::new();
    let targets = socket_owner_targets(&mut notes, namespaces);
    let progress = Progress::new(window, "reading host counters");
    let (snap, (), _) = collect_live_with(
        targets,
        notes,
        std::time::Instant::now(),
        window,
        &progress,
        || ((), std::time::Instant::now()),
    );
    progress.finish();
    snap
}

/// Reads the first counters, waits until `window` has passed since `t0`, runs `at_end` (which
/// returns its result and when it started) and reads the counters again. Returns the snapshot,
/// `at_end`'s result and the time from `t0` to when `at_end` started.
pub(crate) fn collect_live_with<T>(
    targets: Vec<linux_host::CgroupTarget>,
    notes: Vec<(String, String)>,
    t0: std::time::Instant,
    window: Duration,
    progress: &Progress,
    at_end: impl FnOnce() -> (T, std::time::Instant),
) -> (HostSnapshot, T, Duration) {
    let mut pending = linux_host::begin(targets);
    for (section, reason) in notes {
        pending.skipped(&section, reason);
    }
    progress.wait(t0, window);
    let (result, t1) = at_end();
    let snap = pending.finish();
    (snap, result, t1.duration_since(t0))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let path = path_spec(a.rate, a.rtt)?;
    let selection = match &a.load {
        None => Some(a.netns.select()?),
        Some(_) => None,
    };
    let mut ns_notes: Vec<String> = selection
        .as_ref()
        .map(|s| s.notes.clone())
        .unwrap_or_default();
    // One namespace asked for: the whole audit runs inside it.
    let inside = selection
        .as_ref()
        .filter(|s| s.namespaces.len() == 1 && !s.namespaces[0].current)
        .map(|s| s.namespaces[0].clone());
    let pending = match (&selection, &inside) {
        (Some(sel), None) => begin_other_namespaces(sel),
        _ => None,
    };
    let (snap, source) = match &a.load {
        Some(file) => {
            let text = crate::args::read_loadable(file)?;
            let snap = parse_snapshot(&text).with_context(|| {
                format!(
                    "{} is not a snapshot written by netblame host --save",
                    file.display()
                )
            })?;
            (snap, "loaded")
        }
        None => {
            anyhow::ensure!(!a.duration.is_zero(), "--duration must be more than zero");
            let window = a.duration;
            match &inside {
                Some(ns) => (ns.run(|| collect_live(window, &[]))?, "live"),
                None => {
                    let all: &[netblame_linux::netns::Netns] = match &selection {
                        Some(sel) if sel.namespaces.len() > 1 => &sel.namespaces,
                        _ => &[],
                    };
                    (collect_live(window, all), "live")
                }
            }
        }
    };

    if let Some(file) = &a.save {
        let text = render::json_text(&snap, true)?;
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    let (ns_snaps, more) = finish_other_namespaces(pending);
    ns_notes.extend(more);
    let diagnosis = diagnose(&Observations {
        host: Some(&snap),
        path,
        namespaces: namespace_observations(&ns_snaps),
        ..Default::default()
    });
    let findings = diagnosis.host.clone();
    let ns_reports = namespace_reports(ns_snaps, &diagnosis.namespaces);
    if a.json {
        render::print_json(&Report {
            source,
            snapshot: &snap,
            deltas: deltas(&snap),
            findings: &findings,
            namespaces: &ns_reports,
            namespaces_skipped: &ns_notes,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(ns) = &inside {
        println!(
            "network namespace {} (inode {})\n",
            ns.id.label(),
            ns.id.inode
        );
    }
    if let Some(file) = &a.load {
        println!("snapshot {} ({})\n", file.display(), snap.collector);
    }
    print!("{}", host_text(&snap, true));
    if findings.is_empty() {
        println!("\nNo host finding.");
    } else {
        println!("\nFindings:\n");
        print!("{}", render::findings(&findings));
    }
    print!("{}", namespaces_text(&ns_reports, &ns_notes));
    if let Some(file) = &a.save {
        println!(
            "\nsaved to {} (judge it anywhere with: netblame host --load {})",
            file.display(),
            file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON documents `host` writes.
pub const JSON_DOCS: &[JsonDoc] = &[
    JsonDoc::of::<Report<'static>>("host", "netblame host --json"),
    JsonDoc::of::<HostSnapshot>("host-snapshot", "netblame host --save FILE"),
];

/// A snapshot written by `--save`: this layout or an older one (snapshots from before
/// `schema_version` have none); a newer layout is refused by name rather than misread.
fn parse_snapshot(text: &str) -> anyhow::Result<HostSnapshot> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    if let Some(v) = value.get("schema_version").and_then(|v| v.as_u64()) {
        anyhow::ensure!(
            v <= u64::from(SCHEMA_VERSION),
            "its schema_version is {v}, newer than this netblame's {SCHEMA_VERSION}: load it with a newer netblame"
        );
    }
    Ok(serde_json::from_value(value)?)
}
