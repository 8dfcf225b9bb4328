//! `netblame sockets`: every TCP connection with its `tcp_info`, memory and a verdict on what
//! limits it (`ss -tinm`, explained).

use crate::cmd::netns::{skipped_notes, NetnsArgs};
use crate::render;
use netblame_core::diagnose::{diagnose, ConnectionVerdict, HostContext, Observations, SocketPair};
use netblame_core::json::JsonDoc;
use netblame_core::observe::{ContainerRef, NetnsRef, SocketSnapshot, TcpState};
use netblame_core::units::format_duration;
use netblame_core::{BitRate, Bytes, Finding};
use netblame_linux::diag::{dump_namespaces, DumpRequest, DumpStats, MultiDump};
use netblame_linux::netns::Netns;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// One instant snapshot, no interval (no sender shares then: they need two samples).
    #[arg(long, conflicts_with = "watch")]
    once: bool,
    /// Time between the two samples a verdict is built from.
    #[arg(long, default_value = "1s", value_parser = crate::args::duration)]
    interval: Duration,
    /// Refresh every SECS (default 2) with deltas since the previous refresh, until interrupted.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2",
          value_parser = crate::args::seconds)]
    watch: Option<Duration>,
    /// Stop --watch after this many refreshes.
    #[arg(long, value_name = "N", requires = "watch", value_parser = crate::args::count)]
    count: Option<u64>,
    /// One JSON document (JSON lines, one per refresh, with --watch).
    #[arg(long)]
    json: bool,
    /// Full evidence per connection: tcp_info, memory, limit shares and findings.
    #[arg(long)]
    explain: bool,
    /// Only connections with this local or peer port.
    #[arg(long)]
    port: Option<u16>,
    /// Only connections to this peer address (IP, or IP:port).
    #[arg(long, value_parser = parse_peer)]
    peer: Option<PeerFilter>,
    /// Only sockets held by this process id.
    #[arg(long)]
    pid: Option<u32>,
    /// Only sockets held by a process whose command contains this text.
    #[arg(long)]
    process: Option<String>,
    /// States to show, comma-separated (established, syn-sent, time-wait, listen, ..., all);
    /// default: every state but listen.
    #[arg(long, value_delimiter = ',', value_parser = parse_state)]
    state: Vec<StateArg>,
    /// Only connections with a finding of warning or worse (with --watch --json: one small JSON
    /// line per refresh holding only those).
    #[arg(long)]
    problems: bool,
    /// Only sockets held by a process in this pod: `namespace/pod`, a pod name, or a pod UID
    /// (substring match).
    #[arg(long)]
    pod: Option<String>,
    /// Only sockets held by a process in this container: a name, or a container id prefix.
    #[arg(long)]
    container: Option<String>,
    /// Do not map sockets to processes (skips the /proc scan; --pid, --process, --pod and
    /// --container need it).
    #[arg(long, conflicts_with_all = ["pid", "process", "pod", "container"])]
    no_processes: bool,
    #[command(flatten)]
    netns: NetnsArgs,
}

#[derive(Clone, Copy, Debug)]
enum StateArg {
    All,
    One(TcpState),
}

fn parse_state(s: &str) -> Result<StateArg, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(StateArg::All);
    }
    TcpState::parse(s).map(StateArg::One).ok_or_else(|| {
        let names: Vec<&str> = TcpState::ALL.iter().map(|s| s.as_str()).collect();
        format!(
            "unknown TCP state '{s}' (one of: all, {})",
            names.join(", ")
        )
    })
}

#[derive(Debug, Clone)]
struct PeerFilter {
    ip: IpAddr,
    port: Option<u16>,
}

fn parse_peer(s: &str) -> Result<PeerFilter, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(PeerFilter { ip, port: None });
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok(PeerFilter {
            ip: sa.ip(),
            port: Some(sa.port()),
        });
    }
    Err(format!(
        "'{s}' is not an IP address or IP:port (e.g. 10.0.0.2, [::1]:443)"
    ))
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    canon(a) == canon(b)
}

/// The filters, applied in the dump (cheap ones) and after process mapping (pid, command).
struct Filters {
    request: DumpRequest,
    port: Option<u16>,
    peer: Option<PeerFilter>,
    pid: Option<u32>,
    process: Option<String>,
    pod: Option<String>,
    container: Option<String>,
}

impl Filters {
    fn from_args(a: &Args) -> anyhow::Result<Filters> {
        let mut request = DumpRequest {
            processes: !a.no_processes,
            ..Default::default()
        };
        if a.state.iter().any(|s| matches!(s, StateArg::All)) {
            request.states = Vec::new();
        } else if a.state.is_empty() {
            request.states = TcpState::ALL
                .into_iter()
                .filter(|s| *s != TcpState::Listen)
                .collect();
        } else {
            request.states = a
                .state
                .iter()
                .filter_map(|s| match s {
                    StateArg::One(t) => Some(*t),
                    StateArg::All => None,
                })
                .collect();
        }
        Ok(Filters {
            request,
            port: a.port,
            peer: a.peer.clone(),
            pid: a.pid,
            process: a.process.clone(),
            pod: a.pod.clone(),
            container: a.container.clone(),
        })
    }

    fn keep_early(&self, s: &SocketSnapshot) -> bool {
        if let Some(p) = self.port {
            if s.local.port() != p && s.peer.port() != p {
                return false;
            }
        }
        if let Some(pf) = &self.peer {
            if !same_ip(pf.ip, s.peer.ip()) || pf.port.is_some_and(|p| p != s.peer.port()) {
                return false;
            }
        }
        true
    }

    fn keep_late(&self, s: &SocketSnapshot, c: Option<&ContainerRef>) -> bool {
        if let Some(want) = &self.pod {
            let Some(c) = c else { return false };
            let hit = [&c.pod_label(), &c.pod, &c.pod_uid]
                .into_iter()
                .flatten()
                .any(|v| v.contains(want.as_str()));
            if !hit {
                return false;
            }
        }
        if let Some(want) = &self.container {
            let Some(c) = c else { return false };
            let hit = c.container.as_deref() == Some(want.as_str())
                || c.id
                    .as_ref()
                    .is_some_and(|id| id.starts_with(want.as_str()))
                || c.unit.as_deref() == Some(want.as_str());
            if !hit {
                return false;
            }
        }
        if let Some(pid) = self.pid {
            if !s.owners.iter().any(|o| o.pid == pid) {
                return false;
            }
        }
        if let Some(name) = &self.process {
            if !s.owners.iter().any(|o| o.command.contains(name.as_str())) {
                return false;
            }
        }
        true
    }
}

/// One sample of every selected namespace. With `prev` (a --watch refresh), owners of sockets
/// already seen are carried over and `/proc` is scanned only for new sockets.
fn sample(
    f: &Filters,
    namespaces: &[Netns],
    prev: Option<&mut MultiDump>,
) -> anyhow::Result<(MultiDump, Instant)> {
    let at = Instant::now();
    let mut req = f.request.clone();
    let inherit = prev.is_some() && req.processes;
    if inherit {
        req.processes = false;
    }
    let mut d = dump_namespaces(&req, namespaces, |s| f.keep_early(s));
    if let (true, Some(p)) = (inherit, prev) {
        d.inherit_owners(p);
    }
    if d.namespaces.is_empty() {
        if let Some((_, e)) = d.skipped.first() {
            if namespaces.len() == 1 {
                anyhow::bail!("dumping TCP sockets: {e}");
            }
        }
    }
    let containers = std::mem::take(&mut d.containers);
    for n in d.namespaces.iter_mut() {
        n.sockets.retain(|s| {
            let c = s.owners.iter().find_map(|o| containers.get(&o.pid));
            f.keep_late(s, c)
        });
    }
    d.containers = containers;
    d.stats.sockets = d.namespaces.iter().map(|n| n.sockets.len()).sum();
    Ok((d, at))
}

/// What a sample could not see, as note lines.
fn sample_notes(d: &MultiDump) -> Vec<String> {
    let mut out = skipped_notes(d.skipped.iter().map(|(_, e)| e));
    out.extend(d.stats.limitation());
    out
}

fn host_context() -> (HostContext, Option<String>) {
    match netblame_linux::sysctl::kernel_version() {
        Ok(k) => {
            let s = netblame_linux::sysctl::rcv_settings(&k);
            (HostContext::new(k, s), None)
        }
        Err(e) => (
            HostContext::default(),
            Some(format!(
                "kernel version unknown ({e}): no SO_RCVBUF inference or known-issue checks"
            )),
        ),
    }
}

/// One connection in the output.
#[derive(Serialize, schemars::JsonSchema)]
struct Connection<'a> {
    #[serde(flatten)]
    socket: &'a SocketSnapshot,
    /// The network namespace the socket lives in.
    netns: &'a NetnsRef,
    /// The container or pod of its owner, when it runs in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a ContainerRef>,
    /// Bytes acknowledged plus received per second over the interval (both directions).
    #[serde(skip_serializing_if = "Option::is_none")]
    throughput_bits_per_second: Option<f64>,
    verdict: ConnectionVerdict,
}

/// A namespace in the output.
#[derive(Serialize, schemars::JsonSchema)]
struct NamespaceRow<'a> {
    #[serde(flatten)]
    netns: &'a NetnsRef,
    current: bool,
    connections: usize,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Report<'a> {
    kernel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_us: Option<u64>,
    stats: &'a DumpStats,
    limitations: Vec<String>,
    namespaces: Vec<NamespaceRow<'a>>,
    connections: Vec<Connection<'a>>,
}

impl<'a> Report<'a> {
    fn new(
        kernel: Option<String>,
        interval: Option<Duration>,
        d: &'a MultiDump,
        limitations: Vec<String>,
        connections: Vec<Connection<'a>>,
    ) -> Report<'a> {
        Report {
            kernel,
            interval_us: interval.map(|i| i.as_micros() as u64),
            stats: &d.stats,
            limitations,
            namespaces: d
                .namespaces
                .iter()
                .map(|n| NamespaceRow {
                    netns: &n.netns,
                    current: n.current,
                    connections: connections
                        .iter()
                        .filter(|c| c.netns.inode == n.netns.inode)
                        .count(),
                })
                .collect(),
            connections,
        }
    }
}

fn throughput(prev: Option<&SocketSnapshot>, cur: &SocketSnapshot, secs: f64) -> Option<f64> {
    let (p, c) = (prev?.tcp_info.as_ref()?, cur.tcp_info.as_ref()?);
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    let bytes = delta(p.bytes_acked, c.bytes_acked)? + delta(p.bytes_received, c.bytes_received)?;
    Some(bytes as f64 * 8.0 / secs.max(1e-6))
}

fn build<'a>(
    prev: Option<&MultiDump>,
    cur: &'a MultiDump,
    interval: Option<Duration>,
    host: &HostContext,
    problems_only: bool,
) -> Vec<Connection<'a>> {
    let by_cookie: HashMap<(u64, u64), &SocketSnapshot> = prev
        .map(|p| p.iter().map(|(n, s)| ((n.inode, s.cookie), s)).collect())
        .unwrap_or_default();
    let iv = interval.unwrap_or(Duration::ZERO);
    let all: Vec<_> = cur.iter().collect();
    let diagnosis = diagnose(&Observations {
        sockets: all
            .iter()
            .map(|(ns, s)| SocketPair {
                prev: by_cookie.get(&(ns.inode, s.cookie)).copied(),
                cur: s,
            })
            .collect(),
        socket_host: host.clone(),
        socket_interval: iv,
        ..Default::default()
    });
    let mut out: Vec<Connection> = all
        .into_iter()
        .zip(diagnosis.connections)
        .filter_map(|((ns, s), verdict)| {
            let p = by_cookie.get(&(ns.inode, s.cookie)).copied();
            if problems_only && !verdict.is_problem() {
                return None;
            }
            Some(Connection {
                throughput_bits_per_second: interval
                    .and_then(|i| throughput(p, s, i.as_secs_f64())),
                socket: s,
                netns: ns,
                container: cur.container_of(s),
                verdict,
            })
        })
        .collect();
    // Problems first (most severe first), then the busiest.
    let weight = |c: &Connection| {
        let t = c.socket.tcp_info.as_ref();
        c.throughput_bits_per_second
            .or_else(|| t.and_then(|t| t.delivery_rate).map(|r| r as f64 * 8.0))
            .unwrap_or(0.0)
            + (c.socket.recv_q_bytes as f64 + c.socket.send_q_bytes as f64) * 1e-3
    };
    out.sort_by(|a, b| {
        b.verdict
            .severity()
            .cmp(&a.verdict.severity())
            .then(weight(b).total_cmp(&weight(a)))
    });
    out
}

fn row(c: &Connection) -> Vec<String> {
    let s = &c.socket;
    let t = s.tcp_info.as_ref();
    let dash = || "-".to_string();
    let rtt = t
        .and_then(|t| t.srtt_us())
        .map(|r| format_duration(Duration::from_micros(r as u64)))
        .unwrap_or_else(dash);
    let cwnd = t.map(|t| t.snd_cwnd.to_string()).unwrap_or_else(dash);
    let wnd = |w: Option<u32>| w.map(|w| Bytes(w as u64).to_string()).unwrap_or_else(dash);
    let windows = format!(
        "{}/{}",
        wnd(t.and_then(|t| t.snd_wnd)),
        wnd(t.and_then(|t| t.rcv_wnd))
    );
    let rate = c
        .throughput_bits_per_second
        .or_else(|| t.and_then(|t| t.delivery_rate).map(|r| r as f64 * 8.0))
        .map(|r| BitRate(r).to_string())
        .unwrap_or_else(dash);
    vec![
        s.local.to_string(),
        s.peer.to_string(),
        s.state.to_string(),
        s.process_label().unwrap_or_else(dash),
        rtt,
        cwnd,
        windows,
        format!("{}/{}", s.recv_q_bytes, s.send_q_bytes),
        rate,
        t.map(|t| t.total_retrans.to_string()).unwrap_or_else(dash),
        c.verdict.limit.map(|l| l.to_string()).unwrap_or_else(dash),
        c.verdict.headline(),
    ]
}

const HEADER: [&str; 12] = [
    "local",
    "peer",
    "state",
    "process",
    "rtt",
    "cwnd",
    "snd/rcv wnd",
    "recv-q/send-q",
    "rate",
    "retrans",
    "limit",
    "verdict",
];

fn explain(c: &Connection) -> String {
    let s = &c.socket;
    let mut out = format!(
        "{}  {}  {}\n",
        s.label(),
        s.state,
        s.process_label()
            .unwrap_or_else(|| "(process unknown)".into())
    );
    out += &format!(
        "    netns:    {} (inode {})\n",
        c.netns.label(),
        c.netns.inode
    );
    if let Some(ct) = c.container {
        out += &format!("    owner:    {}  (cgroup {})\n", ct.label(), ct.cgroup);
    } else if let Some(o) = s.owners.first() {
        if let Some(cg) = &o.cgroup {
            out += &format!("    cgroup:   {cg}\n");
        }
    }
    if let Some(t) = &s.tcp_info {
        out += &format!(
            "    tcp_info: cc {} rtt {}/{} us  min_rtt {} us  cwnd {} x {} B  ssthresh {}  wscale {}  snd_wnd {}  rcv_wnd {}  \
             retrans {}  lost {}  unacked {}  notsent {}  delivery {}{}  ({} bytes of tcp_info)\n",
            s.congestion.as_deref().unwrap_or("?"),
            t.rtt_us,
            t.rttvar_us,
            t.min_rtt_us.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            t.snd_cwnd,
            t.snd_mss,
            t.snd_ssthresh,
            if t.has_wscale() {
                format!("{},{}", t.snd_wscale, t.rcv_wscale)
            } else {
                "none".into()
            },
            t.snd_wnd.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            t.rcv_wnd.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            t.total_retrans,
            t.lost,
            t.unacked,
            t.notsent_bytes.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            t.delivery_rate
                .map(|r| BitRate(r as f64 * 8.0).to_string())
                .unwrap_or_else(|| "-".into()),
            if t.delivery_rate_app_limited == Some(true) {
                " (app-limited)"
            } else {
                ""
            },
            t.len
        );
    }
    if let Some(m) = &s.skmem {
        out += &format!(
            "    skmem:    r {} rb {} t {} tb {} f {} w {} o {} bl {} d {}\n",
            m.rmem_alloc_bytes,
            m.rcvbuf_bytes,
            m.wmem_alloc_bytes,
            m.sndbuf_bytes,
            m.fwd_alloc_bytes,
            m.wmem_queued_bytes,
            m.optmem_bytes,
            m.backlog_bytes
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            m.drops.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
        );
    }
    if let Some(sh) = &c.verdict.shares {
        let pct = |us: u64| us as f64 * 100.0 / sh.interval_us.max(1) as f64;
        out += &format!(
            "    shares:   over {}: busy {:.0}% (rwnd {:.0}%, sndbuf {:.0}%, cwnd/network {:.0}%), idle {:.0}%, {} retransmitted\n",
            format_duration(Duration::from_micros(sh.interval_us)),
            pct(sh.busy_us),
            pct(sh.rwnd_limited_us),
            pct(sh.sndbuf_limited_us),
            pct(sh.cwnd_limited_us),
            pct(sh.idle_us),
            render::plural(sh.retransmitted_segments, "segment")
        );
    }
    if let Some(l) = c.verdict.limit {
        out += &format!("    limit:    {l} ({})\n", l.layer());
    }
    if !c.verdict.findings.is_empty() {
        let indented: String = render::findings(&c.verdict.findings)
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        out += &indented;
    }
    out
}

/// The group a connection is listed under: its namespace (when several were asked for) and its
/// owner's pod/container.
fn group_label(c: &Connection, namespaces: bool) -> String {
    let owner = match c.container {
        Some(ct) => match (ct.pod_label(), ct.container_label()) {
            (Some(p), Some(k)) => format!("pod {p}  container {k}"),
            (Some(p), None) => format!("pod {p}"),
            (None, Some(k)) => format!("container {k}"),
            (None, None) => ct.label(),
        },
        None => "no container".to_string(),
    };
    if namespaces {
        format!("netns {}  {owner}", c.netns.label())
    } else {
        owner
    }
}

/// One table, or one per namespace and pod/container (groups in order of their first, most
/// severe, connection).
fn grouped_tables(conns: &[Connection], grouped: Grouping) -> String {
    if grouped == Grouping::None {
        let rows: Vec<Vec<String>> = conns.iter().map(row).collect();
        return render::table(&HEADER, &rows);
    }
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<&Connection>> = HashMap::new();
    for c in conns {
        let key = group_label(c, grouped == Grouping::NamespaceAndOwner);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(c);
    }
    let mut out = String::new();
    for (i, key) in order.iter().enumerate() {
        let members = &groups[key];
        if i > 0 {
            out += "\n";
        }
        out += &format!(
            "== {key} ({}) ==\n",
            render::plural(members.len(), "connection")
        );
        let rows: Vec<Vec<String>> = members.iter().map(|c| row(c)).collect();
        out += &render::table(&HEADER, &rows);
    }
    out
}

/// How text output groups connections.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grouping {
    /// One table (one namespace, no container owners).
    None,
    /// By pod/container.
    Owner,
    /// By namespace and pod/container.
    NamespaceAndOwner,
}

fn grouping(conns: &[Connection], explicit_netns: bool) -> Grouping {
    if explicit_netns {
        Grouping::NamespaceAndOwner
    } else if conns.iter().any(|c| c.container.is_some()) {
        Grouping::Owner
    } else {
        Grouping::None
    }
}

fn print_text(
    conns: &[Connection],
    a: &Args,
    limitations: &[String],
    interval: Option<Duration>,
    grouped: Grouping,
) {
    let mut out = String::new();
    match interval {
        Some(i) => {
            out += &format!(
                "{}, verdicts over {}\n\n",
                render::plural(conns.len(), "connection"),
                format_duration(i)
            )
        }
        None => {
            out += &format!(
                "{}, one instant (--once: no sender shares)\n\n",
                render::plural(conns.len(), "connection")
            )
        }
    }
    out += &grouped_tables(conns, grouped);
    let with_findings: Vec<&Finding> = conns
        .iter()
        .flat_map(|c| c.verdict.findings.iter())
        .collect();
    if a.explain {
        out += "\n";
        for c in conns {
            out += &explain(c);
            out += "\n";
        }
    } else if !with_findings.is_empty() {
        out += &format!(
            "\n{} on {}; --explain for evidence and fixes\n",
            render::plural(with_findings.len(), "finding"),
            render::plural(
                conns
                    .iter()
                    .filter(|c| !c.verdict.findings.is_empty())
                    .count(),
                "connection"
            )
        );
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    for l in limitations {
        eprintln!("note: {l}");
    }
}

/// One document (with `schema_version`) and a newline.
fn write_json_line<T: Serialize>(v: &T, pretty: bool) -> anyhow::Result<()> {
    // Streamed through a buffer: a document of tens of thousands of sockets is never one string.
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    render::write_json(&mut w, v, pretty)?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.interval.is_zero() {
        anyhow::bail!("--interval must be more than zero");
    }
    if a.watch.is_some_and(|w| w.is_zero()) {
        anyhow::bail!("--watch must be more than zero");
    }
    let filters = Filters::from_args(&a)?;
    let selection = a.netns.select()?;
    let namespaces = &selection.namespaces;
    let (host, host_note) = host_context();
    let kernel = host.kernel.as_ref().map(|k| k.to_string());
    let mut limitations: Vec<String> = host_note.into_iter().collect();
    limitations.extend(selection.notes.iter().cloned());
    let with = |extra: Vec<String>| -> Vec<String> {
        let mut l = limitations.clone();
        l.extend(extra);
        l
    };

    let (first, t0) = sample(&filters, namespaces, None)?;
    if a.once {
        let conns = build(None, &first, None, &host, a.problems);
        let g = grouping(&conns, selection.explicit);
        let lims = with(sample_notes(&first));
        return output(&a, conns, &first, lims, kernel, None, g);
    }

    let Some(every) = a.watch else {
        std::thread::sleep(a.interval);
        let (second, t1) = sample(&filters, namespaces, None)?;
        let iv = t1 - t0;
        let conns = build(Some(&first), &second, Some(iv), &host, a.problems);
        let g = grouping(&conns, selection.explicit);
        let lims = with(sample_notes(&second));
        return output(&a, conns, &second, lims, kernel, Some(iv), g);
    };

    // --watch: refresh with deltas since the previous refresh, on a fixed schedule (a round
    // that overran starts the next at once). Each round reuses the previous one's owners, so
    // /proc is scanned only for sockets that are new.
    let mut prev = first;
    let mut t_prev = t0;
    let mut n = 0u64;
    loop {
        // The next sample starts one interval after the previous one started: the time spent
        // judging and printing does not add to the interval.
        let next = t_prev + every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let (cur, t) = sample(&filters, namespaces, Some(&mut prev))?;
        let iv = t - t_prev;
        {
            let conns = build(Some(&prev), &cur, Some(iv), &host, a.problems);
            let lims = with(sample_notes(&cur));
            if a.json {
                write_json_line(
                    &Report::new(kernel.clone(), Some(iv), &cur, lims, conns),
                    false,
                )?;
            } else {
                if std::io::stdout().is_terminal() {
                    print!("\x1b[2J\x1b[H");
                }
                let g = grouping(&conns, selection.explicit);
                print_text(&conns, &a, &lims, Some(iv), g);
                println!();
            }
        }
        prev = cur;
        t_prev = t;
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn output(
    a: &Args,
    conns: Vec<Connection>,
    dump: &MultiDump,
    limitations: Vec<String>,
    kernel: Option<String>,
    interval: Option<Duration>,
    grouped: Grouping,
) -> anyhow::Result<ExitCode> {
    if a.json {
        // Compact when large: a pretty document of tens of thousands of sockets is mostly spaces.
        let pretty = conns.len() <= 200;
        let report = Report::new(kernel, interval, dump, limitations, conns);
        write_json_line(&report, pretty)?;
        // Tens of thousands of connections: the process exits next, let it drop them wholesale.
        std::mem::forget(report);
    } else {
        print_text(&conns, a, &limitations, interval, grouped);
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON documents `sockets` writes.
pub const JSON_DOCS: &[JsonDoc] = &[JsonDoc::of::<Report<'static>>(
    "sockets",
    "netblame sockets --json (with --watch: one document per line and interval)",
)];
