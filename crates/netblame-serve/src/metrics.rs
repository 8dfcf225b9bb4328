//! The metrics registry (prometheus-client) and the view of the last scan it exposes.
//!
//! Every scan is boiled down into a [`View`]: a few hundred numbers with bounded labels. Scrapes
//! encode the last published view through a [`Collector`], plus the live probe histograms; a
//! scrape never waits for a scan (the view is swapped behind an `Arc`), so scrapes are cheap and
//! any number may run at once. docs/metrics.md lists every metric.
//!
//! Cardinality is bounded by construction: labels take values from closed sets (TCP states,
//! limits, layers, severities, finding ids from the catalogue, probe targets from the config) or
//! are cut to the top N of the configuration (`limits.top_processes`, `limits.top_devices`), with
//! the rest summed into `other` and counted in `netblame_labels_collapsed`. No label names a
//! socket, an address or a pid. [`series_ceiling`] is the most series one exposition can hold.

use crate::config::Config;
use crate::judge::Judgement;
use crate::scan::ScanObservations;
use netblame_core::observe::TcpState;
use netblame_core::{Layer, Limit, Severity};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// Upper bounds (seconds) of the probe latency histogram. 0.9/1.5, 2.5/3.5 and 5/7.5 straddle
/// connects that needed one, two and three retransmitted SYNs (1 s, 3 s, 7 s), so
/// `le="0.9"` vs `le="1.5"` counts the connects that waited for a SYN retransmit.
pub const PROBE_BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.9, 1.5,
    2.5, 3.5, 5.0, 7.5, 10.0,
];

/// The limit label's values (core's [`Limit`] names, then `unknown`).
pub const LIMIT_VALUES: [&str; 6] = ["rwnd", "sndbuf", "cwnd", "app", "loss", "unknown"];

/// Most qdisc kinds counted per device (the rest are summed into `kind="other"`).
pub const MAX_QDISC_KINDS: usize = 4;

/// One finding series and its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingSeries {
    pub id: &'static str,
    pub layer: Layer,
    pub severity: Severity,
    /// Raised in the last scan.
    pub active: bool,
    /// Times raised since the agent started.
    pub raised: u64,
}

/// A per-process (or per-container) row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessRow {
    pub process: String,
    pub container: String,
    pub connections: u64,
    pub problems: u64,
}

/// A device's drop and error counters (absolute).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRow {
    pub device: String,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

/// A qdisc kind on a device (absolute counters summed over its qdiscs of that kind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QdiscRow {
    pub device: String,
    pub kind: String,
    pub drops: u64,
    pub overlimits: u64,
    pub requeues: u64,
    pub backlog_packets: u64,
}

/// A socket owner's cgroup CPU counters (absolute).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupRow {
    pub cgroup: String,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_seconds: f64,
}

/// Everything one exposition shows from the last scan.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Scans done since the start.
    pub scans: u64,
    pub last_scan_unix_seconds: f64,
    pub scan_seconds: f64,
    /// Sections the last scan could not read.
    pub skipped: u64,
    pub findings: Vec<FindingSeries>,
    /// Active finding id -> connections that showed it.
    pub finding_connections: Vec<(&'static str, u64)>,
    pub blame: Option<Layer>,
    /// Sockets by state (every state, zero included) — `None` when sockets were not dumped.
    pub states: Option<Vec<(&'static str, u64)>>,
    pub limits: Vec<(&'static str, u64)>,
    pub problem_connections: u64,
    /// Listeners whose accept queue is at its backlog.
    pub listeners_full: u64,
    pub processes: Vec<ProcessRow>,
    /// metric -> values summed into `other`.
    pub collapsed: Vec<(&'static str, u64)>,
    /// `(name as in /proc/net, absolute value)` for every counter the rules read (`observe::host::Counter`).
    pub netstat: Vec<(&'static str, u64)>,
    pub softnet: Option<(u64, u64, u64)>,
    pub devices: Vec<DeviceRow>,
    pub qdiscs: Vec<QdiscRow>,
    pub cgroups: Vec<CgroupRow>,
    pub tcp_inuse: Option<u64>,
    pub tcp_memory_bytes: Option<u64>,
}

/// The container of a cgroup path: a short id for docker, containerd, CRI-O and podman scopes,
/// `""` for host processes.
pub fn container_of(cgroup: &str) -> String {
    for part in cgroup.rsplit('/') {
        let p = part.trim_end_matches(".scope");
        for prefix in ["docker-", "cri-containerd-", "crio-", "libpod-", ""] {
            if let Some(id) = p.strip_prefix(prefix) {
                if id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return id[..12].to_string();
                }
            }
        }
    }
    String::new()
}

/// Keeps the `n` largest rows by `key` and sums the rest into one row made by `other`; returns
/// how many rows were collapsed.
fn top_n<T>(
    mut rows: Vec<T>,
    n: usize,
    key: impl Fn(&T) -> u64,
    merge: impl Fn(&mut T, &T),
    other: impl FnOnce() -> T,
) -> (Vec<T>, u64) {
    if rows.len() <= n {
        return (rows, 0);
    }
    rows.sort_by_key(|r| std::cmp::Reverse(key(r)));
    let rest = rows.split_off(n);
    let mut o = other();
    for r in &rest {
        merge(&mut o, r);
    }
    rows.push(o);
    (rows, rest.len() as u64)
}

/// Boils a judged scan down to a view. `findings` is the history kept by
/// [`crate::events::Tracker`].
pub fn view(
    cfg: &Config,
    obs: &ScanObservations,
    j: &Judgement,
    findings: Vec<FindingSeries>,
    scans: u64,
) -> View {
    let mut v = View {
        scans,
        last_scan_unix_seconds: obs
            .at
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64()),
        scan_seconds: obs.duration.as_secs_f64(),
        skipped: obs.skipped.len() as u64,
        findings,
        finding_connections: j
            .findings
            .iter()
            .filter(|f| f.connections > 0)
            .map(|f| (f.finding.id, f.connections as u64))
            .collect(),
        blame: j.verdict.blame,
        ..Default::default()
    };
    let mut collapsed = Vec::new();
    if cfg.sources.sockets && !obs.skipped.iter().any(|s| s.section == "sockets") {
        let mut by_state: BTreeMap<u8, u64> = BTreeMap::new();
        for s in &obs.sockets {
            *by_state.entry(s.state as u8).or_default() += 1;
            if s.state == TcpState::Listen && s.send_q_bytes > 0 && s.recv_q_bytes >= s.send_q_bytes
            {
                v.listeners_full += 1;
            }
        }
        v.states = Some(
            TcpState::ALL
                .iter()
                .map(|st| {
                    (
                        st.as_str(),
                        by_state.get(&(*st as u8)).copied().unwrap_or(0),
                    )
                })
                .collect(),
        );
        let mut limits = [0u64; 6];
        let mut procs: HashMap<(String, String), ProcessRow> = HashMap::new();
        let mut problem = vec![false; obs.sockets.len()];
        for c in &j.connections {
            let i = match c.limit {
                Some(Limit::ReceiverWindow) => 0,
                Some(Limit::SendBuffer) => 1,
                Some(Limit::CongestionWindow) => 2,
                Some(Limit::Application) => 3,
                Some(Limit::LossRecovery) => 4,
                None => 5,
            };
            limits[i] += 1;
            if c.problem {
                v.problem_connections += 1;
                problem[c.socket] = true;
            }
        }
        v.limits = LIMIT_VALUES.iter().copied().zip(limits).collect();
        for (i, s) in obs.sockets.iter().enumerate() {
            let Some(o) = s.owners.first() else { continue };
            if matches!(s.state, TcpState::TimeWait | TcpState::NewSynRecv) {
                continue;
            }
            let container = o.cgroup.as_deref().map(container_of).unwrap_or_default();
            let row = procs
                .entry((o.command.clone(), container.clone()))
                .or_insert_with(|| ProcessRow {
                    process: o.command.clone(),
                    container,
                    ..Default::default()
                });
            row.connections += 1;
            row.problems += problem[i] as u64;
        }
        let mut rows: Vec<ProcessRow> = procs.into_values().collect();
        rows.sort_by(|a, b| (&a.process, &a.container).cmp(&(&b.process, &b.container)));
        let (rows, n) = top_n(
            rows,
            cfg.limits.top_processes,
            |r| r.problems * 1_000_000 + r.connections,
            |o, r| {
                o.connections += r.connections;
                o.problems += r.problems;
            },
            || ProcessRow {
                process: "other".into(),
                ..Default::default()
            },
        );
        v.processes = rows;
        collapsed.push(("netblame_process_connections", n));
    }
    if let Some(h) = &obs.host {
        let a = &h.after;
        v.netstat = netblame_core::observe::host::Counter::ALL
            .iter()
            .filter_map(|c| {
                a.proto
                    .get(c.name())
                    .map(|x| (c.name(), (*x).max(0) as u64))
            })
            .collect();
        if !a.softnet.is_empty() {
            v.softnet = Some(a.softnet.iter().fold((0, 0, 0), |t, r| {
                (t.0 + r.processed, t.1 + r.dropped, t.2 + r.time_squeeze)
            }));
        }
        let devices: Vec<DeviceRow> = a
            .devices
            .iter()
            .map(|d| DeviceRow {
                device: d.device.clone(),
                rx_dropped: d.rx_dropped,
                tx_dropped: d.tx_dropped,
                rx_errors: d.rx_errors,
                tx_errors: d.tx_errors,
            })
            .collect();
        let (devices, n) = top_n(
            devices,
            cfg.limits.top_devices,
            |d| d.rx_dropped + d.tx_dropped + d.rx_errors + d.tx_errors,
            |o, d| {
                o.rx_dropped += d.rx_dropped;
                o.tx_dropped += d.tx_dropped;
                o.rx_errors += d.rx_errors;
                o.tx_errors += d.tx_errors;
            },
            || DeviceRow {
                device: "other".into(),
                ..Default::default()
            },
        );
        v.devices = devices;
        collapsed.push(("netblame_network_receive_drop", n));
        let named: std::collections::HashSet<&str> =
            v.devices.iter().map(|d| d.device.as_str()).collect();
        let mut q: BTreeMap<(String, String), QdiscRow> = BTreeMap::new();
        for s in &a.qdiscs {
            let device = if named.contains(s.device.as_str()) {
                s.device.clone()
            } else {
                "other".to_string()
            };
            let kinds_here = q.keys().filter(|(d, _)| *d == device).count();
            let mut kind = s.kind.clone();
            if !q.contains_key(&(device.clone(), kind.clone())) && kinds_here >= MAX_QDISC_KINDS - 1
            {
                kind = "other".into();
            }
            let r = q
                .entry((device.clone(), kind.clone()))
                .or_insert_with(|| QdiscRow {
                    device,
                    kind,
                    ..Default::default()
                });
            r.drops += s.drops;
            r.overlimits += s.overlimits;
            r.requeues += s.requeues;
            r.backlog_packets += s.qlen;
        }
        v.qdiscs = q.into_values().collect();
        let cgroups: Vec<CgroupRow> = a
            .cgroups
            .iter()
            .map(|c| CgroupRow {
                cgroup: c.path.clone(),
                periods: c.nr_periods,
                throttled_periods: c.nr_throttled,
                throttled_seconds: c.throttled_usec as f64 / 1e6,
            })
            .collect();
        let (cgroups, n) = top_n(
            cgroups,
            cfg.limits.top_processes,
            |c| c.throttled_periods,
            |o, c| {
                o.periods += c.periods;
                o.throttled_periods += c.throttled_periods;
                o.throttled_seconds += c.throttled_seconds;
            },
            || CgroupRow {
                cgroup: "other".into(),
                ..Default::default()
            },
        );
        v.cgroups = cgroups;
        collapsed.push(("netblame_cgroup_throttled_periods", n));
        v.tcp_inuse = a.tcp_inuse;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        v.tcp_memory_bytes = a.tcp_mem_pages.map(|p| p * page);
    }
    v.collapsed = collapsed;
    v
}

/// The most series one exposition can hold with `cfg` (each histogram bucket counts as one).
pub fn series_ceiling(cfg: &Config) -> usize {
    let ids = netblame_core::catalogue::all().count();
    let procs = cfg.limits.top_processes + 1;
    let devs = cfg.limits.top_devices + 1;
    let findings = ids * 3 * 2 + ids; // active + raised per (id, severity), connections per id
    let verdict = 4;
    let connections = TcpState::ALL.len() + LIMIT_VALUES.len() + 2 + 2 * procs;
    let host = netblame_core::observe::host::Counter::ALL.len()
        + 3
        + 4 * devs
        + 4 * devs * MAX_QDISC_KINDS
        + 3 * procs
        + 2;
    let probes = cfg.probes.len() * (PROBE_BUCKETS.len() + 1 + 2 + 2);
    let meta = 5 + 3;
    let trace = if cfg.sources.trace {
        1 + crate::trace::NET_RX_BUCKETS + 2 + crate::trace::MAX_REASONS + 1 + 4
    } else {
        0
    };
    findings + verdict + connections + host + probes + meta + trace
}

/// Labels of the probe series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub target: String,
    pub kind: String,
}

/// Live probe series, updated by the probe threads between scans.
#[derive(Debug, Clone)]
pub struct ProbeMetrics {
    pub latency: Family<ProbeLabels, Histogram>,
    pub sent: Family<ProbeLabels, Counter>,
    pub lost: Family<ProbeLabels, Counter>,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        ProbeMetrics {
            latency: Family::new_with_constructor(|| Histogram::new(PROBE_BUCKETS)),
            sent: Family::default(),
            lost: Family::default(),
        }
    }
}

/// The last published view, shared by the scan loop (writer) and the scrapes (readers).
#[derive(Debug, Default)]
pub struct Published(RwLock<Arc<View>>);

impl Published {
    /// Replaces the view (scrapes in flight keep the old one).
    pub fn publish(&self, v: View) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(v);
    }

    /// The current view.
    pub fn get(&self) -> Arc<View> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The registry: the scan view (through a collector) and the probe families.
pub fn registry(
    published: Arc<Published>,
    probes: &ProbeMetrics,
    trace: crate::trace::Shared,
) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(ViewCollector(published)));
    r.register_collector(Box::new(crate::trace::TraceCollector(trace)));
    r.register_with_unit(
        "netblame_probe_latency",
        "Latency of the configured probes, from each probe's scheduled departure (connect time for tcp)",
        Unit::Seconds,
        probes.latency.clone(),
    );
    r.register(
        "netblame_probe_sent",
        "Probes sent to the configured targets",
        probes.sent.clone(),
    );
    r.register(
        "netblame_probe_lost",
        "Probes without a reply within their timeout (or failed)",
        probes.lost.clone(),
    );
    r
}

/// Encodes the registry as OpenMetrics text.
pub fn encode(r: &Registry) -> String {
    let mut s = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail; an encoder error would be a bug in a label value.
    let _ = prometheus_client::encoding::text::encode(&mut s, r);
    s
}

/// The content type of [`to_prometheus_text`].
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites an OpenMetrics exposition as the classic Prometheus text format (0.0.4), for
/// clients that do not ask for OpenMetrics (curl, `promtool check metrics`): counter families
/// are named with their `_total` suffix in `# HELP`/`# TYPE`, and `# UNIT` and `# EOF` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((p, rest)) = meta {
            let name = rest.split(' ').next().unwrap_or("");
            if counters.contains(name) {
                out.push_str(p);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&rest[name.len()..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Debug)]
struct ViewCollector(Arc<Published>);

type Labels = Vec<(&'static str, String)>;

fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    ty: MetricType,
    series: impl IntoIterator<Item = (Labels, M)>,
) -> std::fmt::Result {
    let mut series: Vec<(Labels, M)> = series.into_iter().collect();
    let mut m = enc.encode_descriptor(name, help, unit, ty)?;
    if series.len() == 1 && series[0].0.is_empty() {
        // One series without labels: `name value`, not `name{} value`.
        if let Some((_, metric)) = series.pop() {
            metric.encode(m)?;
        }
        return Ok(());
    }
    for (labels, metric) in series {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (Labels, f64)>,
) -> std::fmt::Result {
    family(
        enc,
        name,
        help,
        unit,
        MetricType::Gauge,
        series.into_iter().map(|(l, v)| (l, ConstGauge::new(v))),
    )
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> std::fmt::Result {
    family(
        enc,
        name,
        help,
        None,
        MetricType::Counter,
        series.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
    )
}

fn one(v: f64) -> Vec<(Labels, f64)> {
    vec![(Vec::new(), v)]
}

/// `TcpExt.ListenOverflows` -> `netblame_netstat_tcpext_listen_overflows` (`_total` is added by
/// the encoder): node_exporter's `node_netstat_TcpExt_ListenOverflows` in snake case, which
/// `promtool check metrics` asks for.
pub fn netstat_metric(counter: &str) -> String {
    let (proto, field) = counter.split_once('.').unwrap_or(("", counter));
    let chars: Vec<char> = field.chars().collect();
    let mut snake = String::new();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                snake.push('_');
            }
        }
        snake.push(c.to_ascii_lowercase());
    }
    format!("netblame_netstat_{}_{snake}", proto.to_ascii_lowercase())
}

impl Collector for ViewCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let v = self.0.get();
        let e = &mut enc;
        gauge(
            e,
            "netblame_finding_active",
            "1 while a finding is raised by the last scan, 0 once it cleared (series appear when first raised)",
            None,
            v.findings.iter().map(|f| {
                (
                    vec![
                        ("id", f.id.to_string()),
                        ("layer", f.layer.as_str().to_string()),
                        ("severity", f.severity.as_str().to_string()),
                    ],
                    f.active as u8 as f64,
                )
            }),
        )?;
        counter(
            e,
            "netblame_finding_raised",
            "Times a finding was raised (went from cleared, or another severity, to active)",
            v.findings.iter().map(|f| {
                (
                    vec![
                        ("id", f.id.to_string()),
                        ("layer", f.layer.as_str().to_string()),
                        ("severity", f.severity.as_str().to_string()),
                    ],
                    f.raised,
                )
            }),
        )?;
        gauge(
            e,
            "netblame_finding_connections",
            "Connections that showed an active connection finding in the last scan",
            None,
            v.finding_connections
                .iter()
                .map(|(id, n)| (vec![("id", id.to_string())], *n as f64)),
        )?;
        gauge(
            e,
            "netblame_blame",
            "The verdict: 1 for the layer to blame (a warning or worse), 0 for the others",
            None,
            [
                Layer::Network,
                Layer::Kernel,
                Layer::Host,
                Layer::Application,
            ]
            .iter()
            .map(|l| {
                (
                    vec![("layer", l.as_str().to_string())],
                    (v.blame == Some(*l)) as u8 as f64,
                )
            }),
        )?;
        if let Some(states) = &v.states {
            gauge(
                e,
                "netblame_connections",
                "TCP sockets by state",
                None,
                states
                    .iter()
                    .map(|(s, n)| (vec![("state", s.to_string())], *n as f64)),
            )?;
            gauge(
                e,
                "netblame_connections_limited",
                "Established connections by what bounded their sender over the last interval (unknown: first sample or no stopwatches)",
                None,
                v.limits
                    .iter()
                    .map(|(l, n)| (vec![("limit", l.to_string())], *n as f64)),
            )?;
            gauge(
                e,
                "netblame_connections_problem",
                "Connections with a warning or worse in the last scan",
                None,
                one(v.problem_connections as f64),
            )?;
            gauge(
                e,
                "netblame_listeners_full",
                "Listening sockets whose accept queue is at its backlog",
                None,
                one(v.listeners_full as f64),
            )?;
            let plabels = |r: &ProcessRow| {
                vec![
                    ("process", r.process.clone()),
                    ("container", r.container.clone()),
                ]
            };
            gauge(
                e,
                "netblame_process_connections",
                "TCP sockets (not time-wait) by owning process and container, top N (limits.top_processes), the rest as process=\"other\"",
                None,
                v.processes
                    .iter()
                    .map(|r| (plabels(r), r.connections as f64)),
            )?;
            gauge(
                e,
                "netblame_process_problem_connections",
                "Connections with a warning or worse by owning process and container (same label set as netblame_process_connections)",
                None,
                v.processes.iter().map(|r| (plabels(r), r.problems as f64)),
            )?;
        }
        gauge(
            e,
            "netblame_labels_collapsed",
            "Label values summed into \"other\" by the label limits in the last scan, by metric",
            None,
            v.collapsed
                .iter()
                .map(|(m, n)| (vec![("metric", m.to_string())], *n as f64)),
        )?;
        for (name, value) in &v.netstat {
            counter(
                e,
                &netstat_metric(name),
                &format!(
                    "{name} from /proc/net/netstat or /proc/net/snmp (a counter netblame judges)"
                ),
                [(Vec::new(), *value)],
            )?;
        }
        if let Some((processed, dropped, squeezed)) = v.softnet {
            counter(
                e,
                "netblame_softnet_processed",
                "Packets processed by NET_RX softirqs, all CPUs (/proc/net/softnet_stat)",
                [(Vec::new(), processed)],
            )?;
            counter(
                e,
                "netblame_softnet_dropped",
                "Packets dropped because the backlog queue was full, all CPUs",
                [(Vec::new(), dropped)],
            )?;
            counter(
                e,
                "netblame_softnet_times_squeezed",
                "NET_RX runs that ended with work left (budget or time exhausted), all CPUs",
                [(Vec::new(), squeezed)],
            )?;
        }
        let dl = |d: &DeviceRow| vec![("device", d.device.clone())];
        for (name, help, f) in [
            (
                "netblame_network_receive_drop",
                "Received packets dropped, by device (top N by drops and errors; the rest as device=\"other\")",
                (|d: &DeviceRow| d.rx_dropped) as fn(&DeviceRow) -> u64,
            ),
            (
                "netblame_network_transmit_drop",
                "Packets dropped on transmit, by device",
                |d: &DeviceRow| d.tx_dropped,
            ),
            (
                "netblame_network_receive_errs",
                "Receive errors, by device",
                |d: &DeviceRow| d.rx_errors,
            ),
            (
                "netblame_network_transmit_errs",
                "Transmit errors, by device",
                |d: &DeviceRow| d.tx_errors,
            ),
        ] {
            counter(e, name, help, v.devices.iter().map(|d| (dl(d), f(d))))?;
        }
        let ql = |q: &QdiscRow| vec![("device", q.device.clone()), ("kind", q.kind.clone())];
        counter(
            e,
            "netblame_qdisc_drops",
            "Packets dropped by qdiscs, by device and qdisc kind",
            v.qdiscs.iter().map(|q| (ql(q), q.drops)),
        )?;
        counter(
            e,
            "netblame_qdisc_overlimits",
            "Qdisc overlimit events (shaping or policing), by device and qdisc kind",
            v.qdiscs.iter().map(|q| (ql(q), q.overlimits)),
        )?;
        counter(
            e,
            "netblame_qdisc_requeues",
            "Packets requeued by qdiscs (the driver refused them), by device and qdisc kind",
            v.qdiscs.iter().map(|q| (ql(q), q.requeues)),
        )?;
        gauge(
            e,
            "netblame_qdisc_backlog_packets",
            "Packets queued in qdiscs at the last scan, by device and qdisc kind",
            None,
            v.qdiscs.iter().map(|q| (ql(q), q.backlog_packets as f64)),
        )?;
        let cl = |c: &CgroupRow| vec![("cgroup", c.cgroup.clone())];
        counter(
            e,
            "netblame_cgroup_periods",
            "CFS enforcement periods of the cgroups of socket owners (top N by throttled periods)",
            v.cgroups.iter().map(|c| (cl(c), c.periods)),
        )?;
        counter(
            e,
            "netblame_cgroup_throttled_periods",
            "CFS periods in which a socket owner's cgroup was throttled",
            v.cgroups.iter().map(|c| (cl(c), c.throttled_periods)),
        )?;
        family(
            e,
            "netblame_cgroup_throttled",
            "Time a socket owner's cgroup spent throttled",
            Some(&Unit::Seconds),
            MetricType::Counter,
            v.cgroups
                .iter()
                .map(|c| (cl(c), ConstCounter::new(c.throttled_seconds))),
        )?;
        if let Some(n) = v.tcp_inuse {
            gauge(
                e,
                "netblame_tcp_sockets_inuse",
                "TCP sockets in use (/proc/net/sockstat)",
                None,
                one(n as f64),
            )?;
        }
        if let Some(b) = v.tcp_memory_bytes {
            gauge(
                e,
                "netblame_tcp_memory",
                "Memory held by TCP sockets, compare with net.ipv4.tcp_mem (/proc/net/sockstat)",
                Some(&Unit::Bytes),
                one(b as f64),
            )?;
        }
        counter(
            e,
            "netblame_scans",
            "Scans done since the agent started",
            [(Vec::new(), v.scans)],
        )?;
        gauge(
            e,
            "netblame_scan_duration",
            "How long the last scan took (observing and judging)",
            Some(&Unit::Seconds),
            one(v.scan_seconds),
        )?;
        gauge(
            e,
            "netblame_last_scan_timestamp",
            "When the last scan started (Unix time)",
            Some(&Unit::Seconds),
            one(v.last_scan_unix_seconds),
        )?;
        gauge(
            e,
            "netblame_scan_skipped_sections",
            "Sections the last scan could not read (see /findings for why)",
            None,
            one(v.skipped as f64),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_from_cgroup_paths() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            container_of(&format!("/system.slice/docker-{id}.scope")),
            "0123456789ab"
        );
        assert_eq!(
            container_of(&format!(
                "/kubepods/burstable/pod1/cri-containerd-{id}.scope"
            )),
            "0123456789ab"
        );
        assert_eq!(container_of("/user.slice/user-0.slice/session-1.scope"), "");
    }

    #[test]
    fn top_n_collapses_the_rest() {
        let (rows, n) = top_n(vec![5u64, 1, 9, 3], 2, |x| *x, |o, x| *o += *x, || 0);
        assert_eq!(rows, vec![9, 5, 4]);
        assert_eq!(n, 2);
    }

    #[test]
    fn netstat_names_are_snake_case() {
        assert_eq!(
            netstat_metric("TcpExt.ListenOverflows"),
            "netblame_netstat_tcpext_listen_overflows"
        );
        assert_eq!(
            netstat_metric("TcpExt.TCPToZeroWindowAdv"),
            "netblame_netstat_tcpext_tcp_to_zero_window_adv"
        );
        assert_eq!(
            netstat_metric("Tcp.RetransSegs"),
            "netblame_netstat_tcp_retrans_segs"
        );
    }

    #[test]
    fn prometheus_text_names_counters_with_total() {
        let om = "# HELP a_b Scans.\n# TYPE a_b counter\na_b_total 3\n# HELP c Gauge.\n# TYPE c gauge\n# UNIT c seconds\nc 1.0\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_b_total Scans.\n# TYPE a_b_total counter\na_b_total 3\n# HELP c Gauge.\n# TYPE c gauge\nc 1.0\n"
        );
    }

    /// A view with one row of every kind.
    fn full_view() -> View {
        View {
            scans: 3,
            findings: vec![FindingSeries {
                id: "listen-overflows",
                layer: Layer::Application,
                severity: Severity::Critical,
                active: true,
                raised: 1,
            }],
            finding_connections: vec![("receiver-zero-window", 2)],
            blame: Some(Layer::Application),
            states: Some(TcpState::ALL.iter().map(|s| (s.as_str(), 1)).collect()),
            limits: LIMIT_VALUES.iter().map(|l| (*l, 1)).collect(),
            processes: vec![ProcessRow {
                process: "nginx".into(),
                ..Default::default()
            }],
            collapsed: vec![("netblame_process_connections", 0)],
            netstat: netblame_core::observe::host::Counter::ALL
                .iter()
                .map(|c| (c.name(), 1))
                .collect(),
            softnet: Some((1, 2, 3)),
            devices: vec![DeviceRow {
                device: "eth0".into(),
                ..Default::default()
            }],
            qdiscs: vec![QdiscRow {
                device: "eth0".into(),
                kind: "fq".into(),
                ..Default::default()
            }],
            cgroups: vec![CgroupRow {
                cgroup: "/system.slice/x.service".into(),
                ..Default::default()
            }],
            tcp_inuse: Some(5),
            tcp_memory_bytes: Some(4096),
            ..Default::default()
        }
    }

    #[test]
    fn docs_list_every_metric() {
        let published = Arc::new(Published::default());
        published.publish(full_view());
        let probes = ProbeMetrics::default();
        probes
            .sent
            .get_or_create(&ProbeLabels {
                target: "t:1".into(),
                kind: "tcp".into(),
            })
            .inc();
        let trace = crate::trace::Shared::default();
        {
            let mut t = trace.lock().unwrap();
            t.enabled = true;
            t.rounds = 1;
            t.net_rx_buckets = vec![1; crate::trace::NET_RX_BUCKETS];
            t.drops.insert("NETFILTER_DROP".into(), 3);
        }
        let text = to_prometheus_text(&encode(&registry(published, &probes, trace)));
        let exposed: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect();
        let docs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/metrics.md"
        ))
        .expect("docs/metrics.md");
        let documented: std::collections::BTreeSet<String> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `netblame_"))
            .filter_map(|l| l.split('`').next())
            .map(|n| format!("netblame_{n}"))
            .collect();
        let missing: Vec<_> = exposed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&exposed).collect();
        assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
        assert!(extra.is_empty(), "documented but not exposed: {extra:?}");
    }

    #[test]
    fn ceilings_in_the_docs() {
        assert_eq!(series_ceiling(&Config::default()), 847);
        let mut big = Config::default();
        big.sources.trace = true;
        big.limits.top_processes = crate::config::MAX_TOP;
        big.limits.top_devices = crate::config::MAX_TOP;
        big.probes = (0..crate::config::MAX_PROBES)
            .map(|i| crate::config::Probe {
                target: format!("127.0.0.1:{i}"),
                kind: netblame_probe::ProbeKind::Tcp,
                interval: std::time::Duration::from_secs(1),
                timeout: std::time::Duration::from_secs(1),
            })
            .collect();
        assert!(series_ceiling(&big) < 5000, "{}", series_ceiling(&big));
    }

    #[test]
    fn ceiling_is_bounded() {
        let c = Config::default();
        assert!(series_ceiling(&c) < 2000, "{}", series_ceiling(&c));
    }
}
