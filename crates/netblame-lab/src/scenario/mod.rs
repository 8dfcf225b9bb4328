//! Scenarios: one per seed incident. Each builds a lab (or several, one per part), runs a
//! workload inside with plain sockets, hands what both ends saw to netblame-core's rules, and
//! compares the verdict with the culprit the incident had. Every lab is torn down at the end of
//! its part (Drop), whatever happens.

pub mod crosscheck;

use crate::emulator::LossModel;
use crate::lab::{Lab, LabConfig, LabCounters, LabError, Side};
use crate::workload::{self, TransferSpec};
use netblame_core::diagnose::{self, Expected};
use netblame_core::observe::host::{HostCounters, HostSnapshot};
use netblame_core::{Finding, Layer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a scenario is.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub struct ScenarioInfo {
    pub name: &'static str,
    /// The seed incident it reproduces.
    pub incident: &'static str,
    /// One paragraph: the path, the workload, what should be blamed.
    pub description: &'static str,
}

/// Every scenario, in the order `--list` shows them.
pub const SCENARIOS: &[ScenarioInfo] = &[
    ScenarioInfo {
        name: "rcvbuf",
        incident: "Netflix: transfers time out after a kernel upgrade (SO_RCVBUF=64 KiB)",
        description: "100 ms RTT, 100 Mbit/s. The receiver sets SO_RCVBUF 64 KiB and downloads a fixed size with an \
                      application timeout it cannot make; then the same transfer autotuned as the control. \
                      Expected: rcvbuf-fixed-small (application), control clean.",
    },
    ScenarioInfo {
        name: "slow-reader",
        incident: "Flow control: a receiver that sleeps between reads",
        description: "20 ms RTT, 100 Mbit/s. The receiving application reads 32 KiB every 100 ms while the sender pushes: \
                      Recv-Q fills, zero windows and window probes. Expected: receiver-zero-window (application).",
    },
    ScenarioInfo {
        name: "bdp",
        incident: "Google Cloud: windows too small for the bandwidth-delay product",
        description: "80 ms RTT, 100 Mbit/s (BDP 1 MB). Upload with the server's tcp_rmem[2] at 256 KiB, then with \
                      window scaling off, then tuned. Expected: buffer-max-below-bdp (host), \
                      window-scaling-absent (host), tuned clean.",
    },
    ScenarioInfo {
        name: "syn-loss",
        incident: "Cloudflare / Datadog: connect-latency spikes from lost SYNs",
        description: "20 ms RTT. The emulator drops the first SYN of every 3rd connection; 9 sequential connects. \
                      Expected: syn-retransmit (network): 3 connects take 1 s + RTT.",
    },
    ScenarioInfo {
        name: "lossy-path",
        incident: "Random loss on the path: the network, not the receiver",
        description: "40 ms RTT, 50 Mbit/s, 2% random loss on the data direction, cubic sender. \
                      Expected: network-loss (network), not a receiver finding.",
    },
    ScenarioInfo {
        name: "collapse",
        incident: "Cloudflare: latency spikes from tcp_collapse on huge receive buffers",
        description: "20 ms RTT, 20 Mbit/s, receiver tcp_rmem[2] = 32 MiB. The sender writes 16-byte segments \
                      (TCP_NODELAY) while the receiver reads 4 KiB every 500 ms: the queue's overhead outgrows \
                      the buffer, the kernel collapses and prunes it. Expected: rmem-collapse-spikes (host).",
    },
    ScenarioInfo {
        name: "throttled-proxy",
        incident: "Datadog: an Envoy sidecar throttled by its pod's CPU limit",
        description: "20 ms RTT. HTTP probes every 50 ms go through a proxy in the server namespace that spends \
                      8 ms of CPU per request inside a cgroup limited to 0.1 CPU (10 ms per 100 ms period): \
                      it is throttled in most periods and the probes see latency spikes. Expected: \
                      cpu-throttled (host) on the proxy's cgroup, with the probes' tail beside it.",
    },
    ScenarioInfo {
        name: "terminating-backend",
        incident: "Datadog: requests sent to terminating pods time out and are retried",
        description: "20 ms RTT. HTTP probes go through a proxy that spreads requests over four backends \
                      round-robin and retries on the next after 250 ms without an answer; one backend is \
                      terminating: its listener stays open, it accepts and never answers. Expected: \
                      timeout-and-retry (application): every fourth probe answers ~250 ms late.",
    },
    ScenarioInfo {
        name: "healthy",
        incident: "Control: RTT only, autotuned",
        description: "20 ms RTT, no rate limit, no loss, default buffers. Expected: no finding above info.",
    },
];

/// Looks a scenario up by name.
pub fn info(name: &str) -> Option<&'static ScenarioInfo> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Smaller sizes and durations (tests).
    pub quick: bool,
    /// The netblame binary: when given, each part is also run by `netblame bench` (transfers)
    /// or `netblame probe` (connects) inside the lab, and their findings are reported next to
    /// the verdict.
    pub netblame: Option<std::path::PathBuf>,
}

/// One part of a scenario (a lab, a workload, a verdict).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PartReport {
    pub label: String,
    /// The path: RTT, rate, loss, sysctls.
    pub path: String,
    pub expected: Expected,
    /// The rules' findings, most severe first.
    pub findings: Vec<Finding>,
    pub matched: bool,
    /// Emulator counters for the part.
    pub counters: LabCounters,
    /// The same workload by `netblame bench` or `netblame probe` (a cross-check; not part of
    /// the verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crosscheck: Option<crosscheck::CrossCheck>,
    pub elapsed_ms: u64,
    /// What the workload observed, as handed to the rules (for plots; not in JSON).
    #[serde(skip)]
    pub observed: Observed,
}

/// What a part's workload observed.
#[derive(Debug, Clone)]
pub enum Observed {
    /// A transfer, as the rules saw it: bytes, goodput, the sender's limit shares, RTT.
    Transfer(Box<netblame_core::observe::Transfer>),
    /// Sequential connects: each one's time.
    Connects(netblame_core::observe::transfer::ConnectObservation),
    /// Probes through a proxy (judged as latency targets; not drawn).
    Probes,
}

/// A whole scenario.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ScenarioReport {
    pub scenario: &'static ScenarioInfo,
    pub parts: Vec<PartReport>,
    /// True when every part's verdict matched its expected culprit.
    pub passed: bool,
    pub elapsed_ms: u64,
}

/// On Ctrl-C: stops this process from building more labs and removes every lab it built,
/// including one caught half-built.
pub fn abort_and_clean_up() {
    crate::lab::cancel_all();
    let pid = std::process::id() as i32;
    crate::lab::remove_labs_of(pid);
    // A namespace whose `ip netns add` was already running when we cancelled appears just after.
    std::thread::sleep(Duration::from_millis(300));
    crate::lab::remove_labs_of(pid);
    let mine = format!("-{}-", std::process::id() % 100_000);
    for ns in crate::netns::list() {
        if ns.starts_with(&format!("{}sc-", crate::lab::NETNS_PREFIX)) && ns.contains(&mine) {
            let _ = crate::netns::delete(&ns);
        }
    }
    // A throttled-proxy's cgroup (its threads are gone with this process's exit; rmdir then
    // works, so try now and leave nothing if it already does).
    if let Some(root) = netblame_linux::host::cgroup::mounts().v1_cpu {
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("netblame-lab-sc-") && n.contains(&mine) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
    }
}

fn lab_name(scenario: &str, part: usize) -> String {
    let short: String = scenario.chars().take(10).collect();
    format!("sc-{short}-{}-{part}", std::process::id() % 100_000)
}

fn describe(cfg: &LabConfig) -> String {
    use netblame_core::units::format_duration;
    let mut s = format!("RTT {}", format_duration(cfg.rtt()));
    if let Some(r) = cfg.downlink.rate_bps {
        s += &format!(", {}", netblame_core::BitRate(r));
    }
    for (dir, l) in [("up", &cfg.uplink), ("down", &cfg.downlink)] {
        if let LossModel::Random { p } = l.loss {
            s += &format!(", {:.1}% loss {dir}", p * 100.0);
        }
        if let Some(n) = l.drop_first_syn_every {
            s +=
                &format!(", first SYN dropped on every connection number divisible by {n} ({dir})");
        }
    }
    for (k, v) in &cfg.server_sysctls {
        s += &format!(", server {k}={v}");
    }
    for (k, v) in &cfg.client_sysctls {
        s += &format!(", client {k}={v}");
    }
    s
}

enum Work {
    Transfer(TransferSpec),
    Connects(usize),
    /// A transfer judged also by the host rules on the receiver namespace's counters.
    TransferWithHost(TransferSpec),
    /// HTTP probes from the client through a proxy (and its backends) on the server side,
    /// judged by the probe rules.
    ProxiedProbes(crate::proxy::ProxySpec, u64, Duration),
}

fn part(
    opts: &RunOptions,
    label: &str,
    cfg: LabConfig,
    work: Work,
    expected: Expected,
) -> Result<PartReport, LabError> {
    let start = Instant::now();
    let path = describe(&cfg);
    let lab = Lab::up(cfg)?;
    // What to cross-check with netblame's own tools (the bench cannot sleep between reads:
    // slow readers are not cross-checked).
    enum Cross {
        Bench(TransferSpec),
        Probe(usize),
    }
    let cross = match &work {
        Work::Transfer(s) | Work::TransferWithHost(s) if s.read_pause.is_none() => {
            Some(Cross::Bench(s.clone()))
        }
        Work::Connects(n) => Some(Cross::Probe(*n)),
        _ => None,
    };
    let mut transfers = Vec::new();
    let mut connects = Vec::new();
    let mut snap = None;
    let mut latency = Vec::new();
    let observed;
    match work {
        Work::Transfer(spec) => {
            let t = workload::transfer(&lab, &spec)?;
            observed = Observed::Transfer(Box::new(t.clone()));
            transfers.push(t);
        }
        Work::Connects(n) => {
            let c = workload::connects(&lab, n)?;
            observed = Observed::Connects(c.clone());
            connects.push(c);
        }
        Work::ProxiedProbes(spec, count, interval) => {
            let proxy = crate::proxy::Proxy::start(&lab, spec)?;
            let before = proxy.cpu();
            let t0 = Instant::now();
            let runs = probes_through(&lab, proxy.addr, count, interval);
            let (after, window) = (proxy.cpu(), t0.elapsed());
            proxy.stop();
            if let (Some(b), Some(a)) = (before, after) {
                // The proxy's cgroup, judged by the host rules as `netblame host` would.
                snap = Some(HostSnapshot {
                    collector: "netblame-lab (proxy cgroup)".into(),
                    window_us: window.as_micros() as u64,
                    before: HostCounters {
                        cgroups: vec![b],
                        ..Default::default()
                    },
                    after: HostCounters {
                        cgroups: vec![a],
                        ..Default::default()
                    },
                    ..Default::default()
                });
            }
            latency = runs?;
            observed = Observed::Probes;
        }
        Work::TransferWithHost(spec) => {
            let rns = lab.netns(spec.sender.peer());
            let before = workload::counters(&rns)?;
            let t0 = Instant::now();
            let t = workload::transfer(&lab, &spec)?;
            observed = Observed::Transfer(Box::new(t.clone()));
            transfers.push(t);
            let after = workload::counters(&rns)?;
            snap = Some(host_snapshot(&rns, before, after, t0.elapsed())?);
        }
    }
    let probe_ctx = netblame_core::rules::latency::ProbeContext {
        kernel: netblame_linux::sysctl::kernel_version().ok(),
        syn: netblame_core::rules::latency::SynSchedule::CLASSIC,
    };
    let findings = diagnose::diagnose(&diagnose::Observations {
        host: snap.as_ref(),
        transfers,
        connects,
        latency: (!latency.is_empty()).then_some((latency.as_slice(), &probe_ctx)),
        ..Default::default()
    })
    .all;
    let counters = lab.counters();
    let crosscheck = match (&opts.netblame, cross) {
        (Some(bin), Some(Cross::Bench(spec))) => Some(crosscheck::bench(bin, &lab, &spec)),
        (Some(bin), Some(Cross::Probe(n))) => Some(crosscheck::probe(bin, &lab, n)),
        _ => None,
    };
    lab.down()?;
    Ok(PartReport {
        label: label.to_string(),
        path,
        matched: expected.matches(&findings),
        expected,
        findings,
        counters,
        crosscheck,
        elapsed_ms: start.elapsed().as_millis() as u64,
        observed,
    })
}

/// `count` HTTP probes, `interval` apart, from the client side to `addr` (netblame-probe's
/// prober, run inside the client namespace).
fn probes_through(
    lab: &Lab,
    addr: std::net::SocketAddr,
    count: u64,
    interval: Duration,
) -> std::io::Result<Vec<netblame_core::observe::latency::TargetLatency>> {
    use netblame_probe::{ProbeConfig, ProbeKind, Target};
    crate::netns::run_in(&lab.netns(Side::Client), move || {
        let target = Target::parse(&format!("http://{addr}/"), ProbeKind::Http)
            .map_err(std::io::Error::other)?;
        let cfg = ProbeConfig {
            kind: ProbeKind::Http,
            targets: vec![target],
            interval,
            count,
            timeout: Duration::from_secs(2),
            size: 0,
            request: false,
            window: Duration::from_secs(1),
            tls: Default::default(),
        };
        let runs = netblame_probe::start(cfg)
            .map_err(std::io::Error::other)?
            .wait();
        Ok(runs.into_iter().map(|r| r.latency).collect())
    })
}

/// Gives both directions a queue of four BDPs: a slow-start overshoot then fills the queue
/// instead of dropping, so only the impairment a scenario asks for shows.
fn deep_queue(mut cfg: LabConfig) -> LabConfig {
    let rtt = cfg.rtt();
    for l in [&mut cfg.uplink, &mut cfg.downlink] {
        l.queue_bytes = 4 * crate::emulator::default_queue_bytes(l.rate_bps, rtt);
    }
    cfg
}

/// The receiver namespace's counters and buffer sysctls as a host snapshot, for the host rules.
fn host_snapshot(
    ns: &str,
    before: BTreeMap<String, i64>,
    after: BTreeMap<String, i64>,
    window: Duration,
) -> std::io::Result<HostSnapshot> {
    let (sysctls, _missing) = crate::netns::run_in(ns, || {
        Ok(netblame_linux::sysctl::read_many(&[
            "net.ipv4.tcp_rmem",
            "net.ipv4.tcp_wmem",
            "net.ipv4.tcp_window_scaling",
            "net.ipv4.tcp_moderate_rcvbuf",
        ]))
    })?;
    Ok(HostSnapshot {
        collector: format!("netblame-lab (namespace {ns})"),
        kernel: netblame_linux::sysctl::kernel_version().ok(),
        sysctls,
        window_us: window.as_micros() as u64,
        before: HostCounters {
            proto: before,
            ..Default::default()
        },
        after: HostCounters {
            proto: after,
            ..Default::default()
        },
        ..Default::default()
    })
}

fn expect(id: &'static str, layer: Layer) -> Expected {
    Expected {
        finding: Some(id),
        layer: Some(layer),
    }
}

const NOTHING: Expected = Expected {
    finding: None,
    layer: None,
};

fn mbit(n: f64) -> Option<f64> {
    Some(n * 1e6)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs scenario `name`. Unknown names are an error listing the known ones.
pub fn run(name: &str, opts: &RunOptions) -> Result<ScenarioReport, LabError> {
    let info = info(name).ok_or_else(|| {
        let names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
        LabError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no scenario '{name}' (known: {})", names.join(", ")),
        ))
    })?;
    let start = Instant::now();
    let q = opts.quick;
    let mut parts = Vec::new();
    match name {
        "rcvbuf" => {
            let (size, timeout) = if q {
                (2u64 << 20, ms(2500))
            } else {
                (4 << 20, ms(5000))
            };
            let spec = |rcvbuf| TransferSpec {
                size: Some(size),
                timeout: Some(timeout),
                receiver_rcvbuf: rcvbuf,
                ..TransferSpec::timed(Side::Server, Duration::ZERO)
            };
            let cfg = |p| {
                deep_queue(LabConfig::symmetric(
                    &lab_name(name, p),
                    ms(100),
                    mbit(100.0),
                ))
            };
            parts.push(part(
                opts,
                "SO_RCVBUF 64 KiB at the receiver",
                cfg(1),
                Work::Transfer(spec(Some(64 << 10))),
                expect("rcvbuf-fixed-small", Layer::Application),
            )?);
            parts.push(part(
                opts,
                "control: autotuned",
                cfg(2),
                Work::Transfer(spec(None)),
                NOTHING,
            )?);
        }
        "slow-reader" => {
            let cfg = deep_queue(LabConfig::symmetric(
                &lab_name(name, 1),
                ms(20),
                mbit(100.0),
            ));
            let spec = TransferSpec {
                read_chunk: 32 << 10,
                read_pause: Some(ms(100)),
                ..TransferSpec::timed(Side::Server, if q { ms(1500) } else { ms(3000) })
            };
            parts.push(part(
                opts,
                "receiver reads 32 KiB every 100 ms",
                cfg,
                Work::Transfer(spec),
                expect("receiver-zero-window", Layer::Application),
            )?);
        }
        "bdp" => {
            let d = if q { ms(2000) } else { ms(3000) };
            let mk = |p, sysctls: &[(&str, &str)]| {
                let mut c = deep_queue(LabConfig::symmetric(
                    &lab_name(name, p),
                    ms(80),
                    mbit(100.0),
                ));
                c.server_sysctls = sysctls
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                c
            };
            let spec = TransferSpec::timed(Side::Client, d);
            parts.push(part(
                opts,
                "server tcp_rmem[2] = 256 KiB",
                mk(1, &[("net.ipv4.tcp_rmem", "4096 131072 262144")]),
                Work::Transfer(spec.clone()),
                expect("buffer-max-below-bdp", Layer::Host),
            )?);
            parts.push(part(
                opts,
                "window scaling off",
                mk(2, &[("net.ipv4.tcp_window_scaling", "0")]),
                Work::Transfer(spec.clone()),
                expect("window-scaling-absent", Layer::Host),
            )?);
            parts.push(part(
                opts,
                "tuned: tcp_rmem[2] = 8 MiB",
                mk(3, &[("net.ipv4.tcp_rmem", "4096 131072 8388608")]),
                Work::Transfer(spec),
                NOTHING,
            )?);
        }
        "syn-loss" => {
            let mut cfg = LabConfig::symmetric(&lab_name(name, 1), ms(20), None);
            cfg.uplink.drop_first_syn_every = Some(3);
            parts.push(part(
                opts,
                "first SYN of every 3rd connection lost",
                cfg,
                Work::Connects(if q { 6 } else { 9 }),
                expect("syn-retransmit", Layer::Network),
            )?);
        }
        "lossy-path" => {
            let mut cfg = LabConfig::symmetric(&lab_name(name, 1), ms(40), mbit(50.0));
            cfg.downlink.loss = LossModel::Random { p: 0.02 };
            let spec = TransferSpec {
                congestion: Some("cubic".into()),
                ..TransferSpec::timed(Side::Server, if q { ms(2000) } else { ms(3000) })
            };
            parts.push(part(
                opts,
                "2% random loss server -> client, cubic sender",
                cfg,
                Work::Transfer(spec),
                expect("network-loss", Layer::Network),
            )?);
        }
        "collapse" => {
            let mut cfg = LabConfig::symmetric(&lab_name(name, 1), ms(20), mbit(20.0));
            cfg.client_sysctls = vec![("net.ipv4.tcp_rmem".into(), "4096 131072 33554432".into())];
            let spec = TransferSpec {
                write_chunk: 16,
                nodelay: true,
                read_chunk: 4 << 10,
                read_pause: Some(ms(500)),
                ..TransferSpec::timed(Side::Server, if q { ms(2000) } else { ms(3000) })
            };
            parts.push(part(
                opts,
                "16-byte segments into a 32 MiB buffer, reader pauses 500 ms",
                cfg,
                Work::TransferWithHost(spec),
                expect("rmem-collapse-spikes", Layer::Host),
            )?);
        }
        "terminating-backend" => {
            let cfg = LabConfig::symmetric(&lab_name(name, 1), ms(20), None);
            let spec = crate::proxy::ProxySpec {
                backends: 4,
                terminating: Some(3),
                upstream_timeout: ms(250),
                work_per_request: Duration::ZERO,
                cpu_limit: None,
            };
            parts.push(part(
                opts,
                "one of four backends accepts and never answers; the proxy retries after 250 ms",
                cfg,
                Work::ProxiedProbes(spec, if q { 16 } else { 40 }, ms(100)),
                expect("timeout-and-retry", Layer::Application),
            )?);
        }
        "throttled-proxy" => {
            let cfg = LabConfig::symmetric(&lab_name(name, 1), ms(20), None);
            let spec = crate::proxy::ProxySpec {
                backends: 2,
                terminating: None,
                upstream_timeout: Duration::from_secs(2),
                work_per_request: ms(8),
                cpu_limit: Some((10_000, 100_000)),
            };
            parts.push(part(
                opts,
                "proxy limited to 0.1 CPU, 8 ms of CPU per request, 20 requests/s",
                cfg,
                Work::ProxiedProbes(spec, if q { 30 } else { 60 }, ms(50)),
                expect("cpu-throttled", Layer::Host),
            )?);
        }
        "healthy" => {
            let cfg = LabConfig::symmetric(&lab_name(name, 1), ms(20), None);
            parts.push(part(
                opts,
                "RTT only, autotuned",
                cfg,
                Work::Transfer(TransferSpec::timed(
                    Side::Client,
                    if q { ms(1500) } else { ms(2500) },
                )),
                NOTHING,
            )?);
        }
        _ => unreachable!("info() checked the name"),
    }
    Ok(ScenarioReport {
        scenario: info,
        passed: parts.iter().all(|p| p.matched),
        parts,
        elapsed_ms: start.elapsed().as_millis() as u64,
    })
}
