//! The `netblame` binary: argument parsing, rendering and glue. Decisions live in
//! `netblame-core`; observations come from the source crates.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

mod args;
mod cmd;
mod plot;
mod render;

/// Tells you what to blame when TCP is slow or spiky — the network, the kernel, the host or the
/// application — with the evidence and the fix.
#[derive(Parser)]
#[command(name = "netblame", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, netblame runs `doctor` with these options.
    #[command(flatten)]
    doctor: cmd::doctor::Args,
    /// When to colour the output: `auto` colours a terminal unless NO_COLOR is set (non-empty);
    /// CLICOLOR_FORCE forces it.
    #[arg(long, value_name = "WHEN", default_value = "auto", global = true)]
    color: clap::ColorChoice,
}

#[derive(Subcommand)]
enum Command {
    /// The main job (also plain `netblame`): audit this host and its live TCP connections over a
    /// short window, then say what to blame, with the evidence and the fix per finding.
    Doctor(cmd::doctor::Args),
    /// Host audit: TCP sysctls, kernel known issues, counter deltas (TcpExt, softnet, NIC,
    /// qdisc, TX queues, cgroup throttling) with findings; --save/--load a snapshot.
    Host(cmd::host::Args),
    /// A sysctl plan for a path (--rate, --rtt, --profile) with the BDP arithmetic; dry run by
    /// default, --apply with a backup, --rollback.
    Tune(cmd::tune::Args),
    /// Window, BDP, throughput ceiling and transfer time for any kernel version and SO_RCVBUF.
    Calc(cmd::calc::Args),
    /// iperf3-compatible throughput test (client and server) that says what limited the transfer.
    Bench(cmd::bench::Args),
    /// Network namespaces joined by a userspace WAN emulator (delay, rate, loss); scenarios that
    /// reproduce each seed incident and check the verdict.
    Lab(cmd::lab::Args),
    /// Every TCP connection with its tcp_info, memory and a verdict on what limits it
    /// (`ss -tinm`, explained); --watch refreshes.
    Sockets(cmd::sockets::Args),
    /// Explain every TCP connection in a pcap/pcapng capture (a file, `-` for standard input,
    /// or --live IFACE) (throughput, RTT, windows, zero
    /// windows, retransmissions, who closed and when); with two files, match the same streams
    /// across both captures (e.g. both sides of a NAT).
    Pcap(cmd::pcap::Args),
    /// Latency probes (tcp connect, rr, http, udp, icmp) on a fixed schedule to several targets
    /// side by side: loss, percentiles, histograms, spikes, SYN-retransmit signatures;
    /// `probe serve` answers them.
    Probe(cmd::probe::Args),
    /// Kernel events from eBPF tracepoints (root, BTF): NET_RX softirq time per CPU, drops by
    /// reason, retransmits and resets per connection, state changes, receive-buffer growth;
    /// exits 4 when tracing is unavailable here.
    Trace(cmd::trace::Args),
    /// Always on: the doctor's observations and diagnosis every interval as Prometheus metrics
    /// (findings as series), a /findings endpoint and a JSON-lines event log; SIGHUP reloads
    /// the config, SIGTERM stops. Deploy files in deploy/ (systemd, Kubernetes, Prometheus,
    /// Grafana).
    Serve(cmd::serve::Args),
    /// A shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(cmd::completions::Args),
    /// Manual pages: the main page (or one subcommand's) on stdout, or all of them with --out DIR.
    Man(cmd::man::Args),
    /// The JSON Schema of each `--json` document (every one carries `schema_version`); lists
    /// them without a name, writes them all with --out DIR.
    Schema(cmd::schema::Args),
}

/// Parses the command line. Doctor's options given before a subcommand are refused (what
/// `args_conflicts_with_subcommands` did, which would also refuse the global `--color` there).
fn parse() -> Result<Cli, clap::Error> {
    let mut cmd = Cli::command();
    let matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
    if let Some(sub) = matches.subcommand_name() {
        let stray = cmd.get_arguments().find(|a| {
            !a.is_global_set()
                && matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine)
        });
        if let Some(arg) = stray {
            return Err(cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("the subcommand '{sub}' cannot be used with '{arg}' (an option of doctor)"),
            ));
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`netblame doctor --json | head`) instead of panicking in print!.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // A usage error: one line, exit 2. Clap's paragraph before its usage hint ("error: ...",
            // then e.g. "[possible values: ...]") joined into that line.
            let text = e.to_string();
            let line: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{}", line.join(" "));
            return ExitCode::from(2);
        }
    };
    render::set_colour(cli.color);
    let result = match cli.command {
        None => cmd::doctor::run(cli.doctor),
        Some(Command::Doctor(args)) => cmd::doctor::run(args),
        Some(Command::Host(args)) => cmd::host::run(args),
        Some(Command::Tune(args)) => cmd::tune::run(args),
        Some(Command::Calc(args)) => cmd::calc::run(args),
        Some(Command::Bench(args)) => cmd::bench::run(args),
        Some(Command::Lab(args)) => cmd::lab::run(args),
        Some(Command::Sockets(args)) => cmd::sockets::run(args),
        Some(Command::Pcap(args)) => cmd::pcap::run(args),
        Some(Command::Probe(args)) => cmd::probe::run(args),
        Some(Command::Trace(args)) => cmd::trace::run(args),
        Some(Command::Serve(args)) => cmd::serve::run(args),
        Some(Command::Completions(args)) => cmd::completions::run(args, Cli::command()),
        Some(Command::Man(args)) => cmd::man::run(args, Cli::command()),
        Some(Command::Schema(args)) => cmd::schema::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netblame: error: {}", error_line(&e));
            if e.downcast_ref::<args::Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// An error and its causes on one line, leaving out a cause the text already says (contexts
/// often quote their cause).
fn error_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if out.is_empty() {
            out = cause;
        } else if !out.contains(&cause) {
            out = format!("{out}: {cause}");
        }
    }
    out.replace('\n', " ")
}
