//! `netblame lab`: namespaces joined by netblame's userspace WAN emulator; scenarios that
//! reproduce each seed incident and check the verdict.

use crate::args::{self, usage};
use crate::render;
use anyhow::{bail, Context};
use netblame_core::json::JsonDoc;
use netblame_core::units::format_duration;
use netblame_core::{BitRate, Bytes};
use netblame_lab::daemon;
use netblame_lab::emulator::{default_queue_bytes, LossModel};
use netblame_lab::lab::{self, Backend, LabConfig, Side};
use netblame_lab::scenario::{self, RunOptions, ScenarioReport};
use serde::Serialize;
use std::process::{Command, ExitCode};
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum What {
    /// Start a lab that keeps running: namespaces NAME client and server joined by the emulator.
    Up(UpArgs),
    /// Run a command on one side of a running lab ($NETBLAME_PEER holds the other side's address).
    Exec {
        #[arg(value_parser = parse_name)]
        name: String,
        /// client or server.
        side: Side,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a lab and remove its namespaces, devices and state.
    Down {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Running labs with their path and emulator counters.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove leftovers (processes, namespaces, state) of labs whose process died, and forget
    /// the records of labs that went away.
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// Reproduce a seed incident in a fresh lab and check netblame's verdict against the culprit.
    Scenario {
        /// Scenario name (see --list); `all` runs every one.
        name: Option<String>,
        /// Describe every scenario.
        #[arg(long)]
        list: bool,
        /// Smaller sizes and durations.
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        json: bool,
        /// Also draw an SVG, before and after: what limited each part's sender (or each
        /// connect's time), and its goodput (or slowest connect) beside the other parts'.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<std::path::PathBuf>,
    },
    /// The lab's own process (started by `lab up`; not for direct use).
    #[command(hide = true)]
    Daemon {
        #[arg(long)]
        config: String,
        /// Run the emulator itself (the supervisor runs it with this flag).
        #[arg(long)]
        emulator: bool,
    },
}

#[derive(clap::Args)]
struct UpArgs {
    /// Lab name (letters, digits, '-' and '_'; at most 24).
    #[arg(value_parser = parse_name)]
    name: String,
    /// Round-trip time: half of it each way (100ms).
    #[arg(long, value_parser = args::delay, default_value = "0ms")]
    rtt: Duration,
    /// Bottleneck rate each way, decimal bits per second (1gbit, 100mbit); default: unlimited.
    #[arg(long, value_parser = args::rate)]
    rate: Option<BitRate>,
    /// Random loss each way, percent (0.5% or 0.5).
    #[arg(long, value_parser = args::percent)]
    loss: Option<f64>,
    /// Gilbert-Elliott burst loss each way: P,R[,LOSS_BAD[,LOSS_GOOD]] in percent (1,30 = enter the
    /// bad state with 1% per packet, leave it with 30%; the bad state loses 100% by default).
    #[arg(long, value_parser = parse_ge, conflicts_with = "loss")]
    loss_burst: Option<LossModel>,
    /// Only impair this direction with loss: up (client->server), down, or both.
    #[arg(long, default_value = "both", value_parser = ["up", "down", "both"])]
    loss_direction: String,
    /// Uniform delay jitter each way (+/- this much); order is kept unless --reorder.
    #[arg(long, value_parser = args::delay)]
    jitter: Option<Duration>,
    /// Let jitter reorder packets.
    #[arg(long)]
    reorder: bool,
    /// Bottleneck queue in bytes (drop-tail); default one BDP, at least 150 KB.
    #[arg(long, value_parser = args::size)]
    queue: Option<Bytes>,
    /// Scripted: drop the first SYN of every Nth new connection (client -> server).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    drop_first_syn: Option<u32>,
    /// A sysctl inside the client namespace only (repeatable): KEY=VALUE, net.* keys only
    /// (others are not per-namespace and would change the host).
    #[arg(long, value_parser = parse_sysctl)]
    client_sysctl: Vec<(String, String)>,
    /// A sysctl inside the server namespace only (repeatable): net.ipv4.tcp_rmem="4096 131072 1048576".
    #[arg(long, value_parser = parse_sysctl)]
    server_sysctl: Vec<(String, String)>,
    /// MTU of the emulated link (576 to 65535).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=65_535))]
    mtu: u32,
    /// tun: netblame's userspace emulator; netem: the kernel's (where it exists).
    #[arg(long, default_value = "tun", value_parser = ["tun", "netem"])]
    backend: String,
    /// One packet per TUN read/write instead of TCP super-packets (offload): slower, for
    /// comparing the two modes.
    #[arg(long)]
    no_offload: bool,
    /// Seed of the loss generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

fn parse_name(s: &str) -> Result<String, String> {
    lab::validate_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_ge(s: &str) -> Result<LossModel, String> {
    let v: Vec<f64> = s.split(',').map(args::percent).collect::<Result<_, _>>()?;
    match v[..] {
        [p, r] => Ok(LossModel::GilbertElliott {
            p,
            r,
            loss_bad: 1.0,
            loss_good: 0.0,
        }),
        [p, r, b] => Ok(LossModel::GilbertElliott {
            p,
            r,
            loss_bad: b,
            loss_good: 0.0,
        }),
        [p, r, b, g] => Ok(LossModel::GilbertElliott {
            p,
            r,
            loss_bad: b,
            loss_good: g,
        }),
        _ => Err(format!(
            "'{s}': expected P,R[,LOSS_BAD[,LOSS_GOOD]] in percent, e.g. 1,30"
        )),
    }
}

fn parse_sysctl(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        format!("'{s}' is not KEY=VALUE (e.g. net.ipv4.tcp_rmem=\"4096 131072 1048576\")")
    })?;
    let k = k.trim();
    netblame_lab::netns::check_namespaced_sysctl(k)?;
    Ok((k.to_string(), v.trim().trim_matches('"').to_string()))
}

/// Runs `netblame lab ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Every lab command first removes what dead labs left behind.
    if !matches!(
        args.what,
        What::Daemon { .. } | What::Gc { .. } | What::Scenario { list: true, .. }
    ) && is_root()
    {
        let _ = lab::gc();
    }
    match args.what {
        What::Up(a) => up(a),
        What::Exec {
            name,
            side,
            command,
        } => exec(&name, side, &command),
        What::Down { name } => down(&name),
        What::List { json } => list(json),
        What::Gc { json } => gc(json),
        What::Scenario {
            name,
            list,
            quick,
            json,
            plot,
        } => scenario_cmd(name, list, quick, json, plot),
        What::Daemon { config, emulator } => daemon_cmd(&config, emulator),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn need_root() -> anyhow::Result<()> {
    if !is_root() {
        bail!("{}", lab::LabError::NotRoot);
    }
    Ok(())
}

fn config_from(a: &UpArgs) -> anyhow::Result<LabConfig> {
    let rate = a.rate.map(|r| r.bits_per_second());
    if rate.is_some_and(|r| r < 8_000.0) {
        return Err(usage(format!(
            "--rate {} is too slow for a lab (at least 8 kbit/s)",
            BitRate(rate.unwrap_or(0.0))
        )));
    }
    let mut c = LabConfig::symmetric(&a.name, a.rtt, rate);
    let loss = match (a.loss, a.loss_burst) {
        (Some(p), _) => LossModel::Random { p },
        (None, Some(ge)) => ge,
        (None, None) => LossModel::None,
    };
    let (up, down) = match a.loss_direction.as_str() {
        "up" => (true, false),
        "down" => (false, true),
        _ => (true, true),
    };
    for (on, link) in [(up, &mut c.uplink), (down, &mut c.downlink)] {
        if on {
            link.loss = loss;
        }
        link.jitter = a.jitter.unwrap_or_default();
        link.reorder = a.reorder;
        link.queue_bytes = a.queue.map_or(default_queue_bytes(rate, a.rtt), |q| {
            q.get().max(2 * a.mtu as u64)
        });
        link.seed = link.seed.wrapping_add(a.seed.wrapping_mul(0x9e37_79b9));
    }
    c.uplink.drop_first_syn_every = a.drop_first_syn;
    c.client_sysctls = a.client_sysctl.clone();
    c.server_sysctls = a.server_sysctl.clone();
    c.mtu = a.mtu;
    c.offload = !a.no_offload;
    c.backend = if a.backend == "netem" {
        Backend::Netem
    } else {
        Backend::Tun
    };
    Ok(c)
}

fn up(a: UpArgs) -> anyhow::Result<ExitCode> {
    need_root()?;
    let cfg = config_from(&a)?;
    if cfg.backend == Backend::Netem {
        // Say so before forking a daemon.
        match lab::netem_available() {
            Err(why) => bail!("{}", lab::LabError::NoNetem(why)),
            Ok(()) => bail!("{}", lab::LabError::NetemNotBuilt),
        }
    }
    let exe = std::env::current_exe().context("finding the netblame binary")?;
    let mut supervisor = Command::new(exe);
    supervisor.args(["lab", "daemon", "--config", &serde_json::to_string(&cfg)?]);
    let state = daemon::start(supervisor, &cfg.name)?;
    if a.json {
        render::print_json(&state)?;
    } else {
        println!(
            "lab {} up (pid {}): client {} in netns {}, server {} in netns {}",
            state.name,
            state.pid,
            state.client_addr,
            state.client_netns,
            state.server_addr,
            state.server_netns
        );
        println!("path: {}", path_text(&state.config));
        println!("run:  netblame lab exec {} client -- CMD   (the server's address is in $NETBLAME_PEER)", state.name);
        println!("stop: netblame lab down {}", state.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn path_text(c: &LabConfig) -> String {
    let mut s = format!("RTT {}", format_duration(c.rtt()));
    s += &match c.uplink.rate_bps {
        Some(r) => format!(
            ", {} each way, queue {}",
            BitRate(r),
            Bytes(c.uplink.queue_bytes)
        ),
        None => ", rate unlimited".to_string(),
    };
    for (dir, l) in [("up", &c.uplink), ("down", &c.downlink)] {
        match l.loss {
            LossModel::Random { p } => s += &format!(", {:.2}% loss {dir}", p * 100.0),
            LossModel::GilbertElliott { p, r, .. } => {
                s += &format!(
                    ", burst loss {dir} (p {:.1}%, r {:.1}%)",
                    p * 100.0,
                    r * 100.0
                )
            }
            LossModel::None => {}
        }
    }
    if !c.uplink.jitter.is_zero() {
        s += &format!(", jitter +/-{}", format_duration(c.uplink.jitter));
    }
    if let Some(n) = c.uplink.drop_first_syn_every {
        s += &format!(", first SYN dropped on every connection number divisible by {n}");
    }
    for (k, v) in &c.client_sysctls {
        s += &format!(", client {k}={v}");
    }
    for (k, v) in &c.server_sysctls {
        s += &format!(", server {k}={v}");
    }
    s
}

fn exec(name: &str, side: Side, command: &[String]) -> anyhow::Result<ExitCode> {
    need_root()?;
    let status = daemon::exec(name, side, command)?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::from(1),
    })
}

fn down(name: &str) -> anyhow::Result<ExitCode> {
    need_root()?;
    let gone = lab::gone(name);
    let removed = match (daemon::stop(name), gone) {
        (Ok(r), _) => r,
        (Err(lab::LabError::NotFound(_)), Some(g)) => {
            lab::forget_gone(name);
            println!("lab {name} was already gone: {}", g.why);
            return Ok(ExitCode::SUCCESS);
        }
        (Err(e), _) => return Err(e.into()),
    };
    if removed.processes.is_empty() {
        println!("lab {name} down");
    } else {
        println!(
            "lab {name} down (killed {} process(es) still running in it)",
            removed.processes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(json: bool) -> anyhow::Result<ExitCode> {
    let labs = lab::list();
    let gone = lab::gone_list();
    if json {
        let labs = labs
            .iter()
            .map(|s| Listed::Running {
                state: s,
                alive: s.alive(),
                counters: s.counters().map(Box::new),
            })
            .chain(gone.iter().map(|g| Listed::Gone {
                gone: g,
                alive: false,
            }))
            .collect();
        render::print_json(&ListOut { labs })?;
        return Ok(ExitCode::SUCCESS);
    }
    for g in &gone {
        println!("{}", gone_text(g));
    }
    if labs.is_empty() {
        if gone.is_empty() {
            println!("no labs (start one with `netblame lab up NAME --rtt 100ms`)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = labs
        .iter()
        .map(|s| {
            let c = s.counters().unwrap_or_default();
            vec![
                s.name.clone(),
                s.pid.to_string(),
                if s.alive() {
                    "running"
                } else {
                    "dead (lab gc)"
                }
                .to_string(),
                path_text(&s.config),
                format!("{}/{}", c.uplink.packets_out, c.downlink.packets_out),
                format!(
                    "{}/{}",
                    c.uplink.dropped_total(),
                    c.downlink.dropped_total()
                ),
            ]
        })
        .collect();
    print!(
        "{}",
        render::table(
            &[
                "name",
                "pid",
                "state",
                "path",
                "forwarded up/down",
                "dropped up/down"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// "lab X is gone: its emulator (pid N) was killed by signal 9 (Killed) at ...; removed ...".
fn gone_text(g: &lab::Gone) -> String {
    let ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_sub(g.at_unix))
        .unwrap_or(0);
    format!(
        "lab {} is gone ({} s ago): {}; removed {} namespace(s) and {} process(es) left in them \
         (`netblame lab gc` forgets this)",
        g.name,
        ago,
        g.why,
        g.removed.namespaces.len(),
        g.removed.processes.len()
    )
}

fn gc(json: bool) -> anyhow::Result<ExitCode> {
    need_root()?;
    let mut r = lab::gc()?;
    for g in lab::gone_list() {
        if lab::forget_gone(&g.name) {
            r.forgotten.push(g.name);
        }
    }
    if json {
        render::print_json(&r)?;
    } else if r.labs.is_empty() && r.namespaces.is_empty() && r.forgotten.is_empty() {
        println!("nothing to remove");
    } else {
        println!(
            "removed labs: {}; namespaces: {}; processes killed: {}; records forgotten: {}",
            r.labs.join(", "),
            r.namespaces.join(", "),
            r.processes.len(),
            r.forgotten.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn daemon_cmd(config: &str, emulator: bool) -> anyhow::Result<ExitCode> {
    let cfg: LabConfig = serde_json::from_str(config).context("bad --config")?;
    if !emulator {
        let exe = std::env::current_exe().context("finding the netblame binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(["lab", "daemon", "--emulator", "--config", config]);
        daemon::supervise(&cfg.name, cmd)?;
        return Ok(ExitCode::SUCCESS);
    }
    daemon::serve(cfg, |_| {
        println!("{}", daemon::READY);
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(ExitCode::SUCCESS)
}

fn scenario_cmd(
    name: Option<String>,
    list: bool,
    quick: bool,
    json: bool,
    plot: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    if list || name.is_none() {
        if json {
            render::print_json(&ScenariosOut {
                scenarios: scenario::SCENARIOS,
            })?;
        } else {
            for s in scenario::SCENARIOS {
                println!("{}\n    {}\n    {}\n", s.name, s.incident, s.description);
            }
            if name.is_none() && !list {
                println!("run one with `netblame lab scenario NAME`, or `all`");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    need_root()?;
    let name = name.unwrap_or_default();
    let names: Vec<&str> = if name == "all" {
        scenario::SCENARIOS.iter().map(|s| s.name).collect()
    } else {
        if scenario::info(&name).is_none() {
            let known: Vec<_> = scenario::SCENARIOS.iter().map(|s| s.name).collect();
            bail!("no scenario '{name}' (known: {}, all)", known.join(", "));
        }
        vec![name.as_str()]
    };
    // Ctrl-C, SIGTERM, SIGHUP: the main thread waits for them while a worker runs the
    // scenarios; on one, every lab of this process is removed before exiting.
    let set = netblame_lab::daemon::block_stop_signals();
    let opts = RunOptions {
        quick,
        netblame: std::env::current_exe().ok(),
    };
    let owned: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let worker = std::thread::spawn(move || -> Vec<Result<ScenarioReport, String>> {
        owned
            .iter()
            .map(|n| scenario::run(n, &opts).map_err(|e| format!("scenario {n}: {e}")))
            .collect()
    });
    while !worker.is_finished() {
        if let Some(sig) = netblame_lab::daemon::wait_for_signal(&set, Duration::from_millis(100)) {
            scenario::abort_and_clean_up();
            eprintln!("netblame: interrupted (signal {sig}); the scenario's labs were removed");
            return Ok(ExitCode::from(130));
        }
    }
    let results = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the scenario panicked (its labs were removed)"))?;
    let mut all_passed = true;
    let mut reports = Vec::new();
    for r in results {
        match r {
            Ok(rep) => {
                all_passed &= rep.passed;
                reports.push(rep);
            }
            Err(e) => bail!("{e}"),
        }
    }
    if let Some(p) = &plot {
        crate::plot::save(p, &crate::plot::lab::render(&reports)?)?;
    }
    if json {
        render::print_json(&ReportsOut {
            passed: all_passed,
            reports: &reports,
        })?;
    } else {
        for rep in &reports {
            print!("{}", scenario_text(rep));
        }
    }
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn scenario_text(rep: &ScenarioReport) -> String {
    let mut out = format!(
        "== scenario {}: {}\n",
        rep.scenario.name, rep.scenario.incident
    );
    for p in &rep.parts {
        let expected = match p.expected.finding {
            Some(id) => format!(
                "{id} ({})",
                p.expected.layer.map(|l| l.as_str()).unwrap_or("any layer")
            ),
            None => "no finding above info".to_string(),
        };
        let observed: Vec<String> = p
            .findings
            .iter()
            .map(|f| format!("{} ({}, {})", f.id, f.layer, f.severity))
            .collect();
        let tag = if p.matched {
            render::paint("MATCH", "32")
        } else {
            render::paint("MISMATCH", "1;31")
        };
        out += &format!("\n-- {}  [{}]\n", p.label, p.path);
        out += &format!(
            "   expected: {expected}\n   observed: {}\n   verdict:  {tag}\n",
            if observed.is_empty() {
                "nothing".to_string()
            } else {
                observed.join(", ")
            }
        );
        let c = &p.counters;
        out += &format!(
            "   emulator: up {} pkts ({} dropped), down {} pkts ({} dropped), tun kernel drops {}/{}, delay lateness p99 {} us\n",
            c.uplink.packets_out,
            c.uplink.dropped_total(),
            c.downlink.packets_out,
            c.downlink.dropped_total(),
            c.client_tun_tx_dropped,
            c.server_tun_tx_dropped,
            c.uplink.lateness_p99_us.max(c.downlink.lateness_p99_us)
        );
        if let Some(b) = &p.crosscheck {
            let seen: Vec<String> = b
                .findings
                .iter()
                .map(|f| format!("{} ({}, {})", f.id, f.layer, f.severity))
                .collect();
            out += &match &b.error {
                Some(e) => format!(
                    "   {:<9} {} failed: {e}\n",
                    format!("{}:", b.tool),
                    b.command
                ),
                None => format!(
                    "   {:<9} {}{}; findings: {}\n",
                    format!("{}:", b.tool),
                    b.command,
                    b.bits_per_second
                        .map(|v| format!(" -> {}", BitRate(v)))
                        .unwrap_or_default(),
                    if seen.is_empty() {
                        "none".to_string()
                    } else {
                        seen.join(", ")
                    }
                ),
            };
        }
        for line in render::findings(&p.findings).lines() {
            out += &format!("   {line}\n");
        }
    }
    out += &format!(
        "\n{} {} in {:.1} s\n\n",
        rep.scenario.name,
        if rep.passed { "PASSED" } else { "FAILED" },
        rep.elapsed_ms as f64 / 1000.0
    );
    out
}

/// The JSON documents `lab` writes.
pub const JSON_DOCS: &[JsonDoc] = &[
    JsonDoc::of::<lab::LabState>("lab-up", "netblame lab up --json"),
    JsonDoc::of::<ListOut<'static>>("lab-list", "netblame lab list --json"),
    JsonDoc::of::<lab::GcReport>("lab-gc", "netblame lab gc --json"),
    JsonDoc::of::<ScenariosOut>("lab-scenarios", "netblame lab scenario --list --json"),
    JsonDoc::of::<ReportsOut<'static>>("lab-scenario", "netblame lab scenario NAME --json"),
];

/// `lab list --json`: running labs, then labs that died and were cleaned up.
#[derive(Serialize, schemars::JsonSchema)]
struct ListOut<'a> {
    labs: Vec<Listed<'a>>,
}

/// One lab in `lab list --json`.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Listed<'a> {
    /// A lab whose state file is there (its process may have died: `alive`).
    Running {
        state: &'a lab::LabState,
        alive: bool,
        /// The emulator's counters, once it has written them.
        counters: Option<Box<lab::LabCounters>>,
    },
    /// A lab that died and whose leftovers were removed, with what was removed.
    Gone {
        gone: &'a lab::Gone,
        /// Always false.
        alive: bool,
    },
}

/// `lab scenario --list --json`.
#[derive(Serialize, schemars::JsonSchema)]
struct ScenariosOut {
    scenarios: &'static [scenario::ScenarioInfo],
}

/// `lab scenario NAME --json`: one report per scenario run (`all` runs every one).
#[derive(Serialize, schemars::JsonSchema)]
struct ReportsOut<'a> {
    /// Every scenario reached its expected verdict.
    passed: bool,
    reports: &'a [ScenarioReport],
}
