//! `netblame serve`: the always-on agent (netblame-serve). Glue only: options to
//! [`netblame_serve::Options`], errors to exit codes.

use netblame_core::json::JsonDoc;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Address of the HTTP endpoints: /metrics (OpenMetrics or Prometheus text), /findings (JSON),
    /// /healthz.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9911")]
    listen: SocketAddr,
    /// TOML configuration: interval, sources (trace too), label limits, probe targets, path
    /// (docs/serve.md). Refused at start with its line and the reason; SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Append the findings event log (JSON lines: raised, updated, cleared) to FILE instead of
    /// standard output.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Also serve the bench and probe responders (`netblame bench server`: iperf3 protocol,
    /// probe rr/tcp requests, UDP echo) on this address, e.g. 0.0.0.0:5201.
    #[arg(long, value_name = "ADDR:PORT")]
    responder: Option<SocketAddr>,
    /// Scan, probe and respond inside this network namespace (NAME in /run/netns, a path, or a
    /// PID); the HTTP endpoints stay in the agent's own namespace.
    #[arg(long, value_name = "NAME|PATH|PID")]
    netns: Option<String>,
    /// Check the configuration, print the series ceiling, and exit (0 when valid).
    #[arg(long, requires = "config")]
    check_config: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.check_config {
        let path = a.config.as_deref().expect("clap requires --config");
        let c = netblame_serve::Config::load(path)?;
        println!(
            "{}: ok (interval {}, {} probe targets, at most {} series)",
            path.display(),
            netblame_core::units::format_duration(c.interval),
            c.probes.len(),
            c.series_ceiling()
        );
        return Ok(ExitCode::SUCCESS);
    }
    netblame_serve::run(netblame_serve::Options {
        listen: a.listen,
        config: a.config,
        events: a.events,
        responder: a.responder,
        netns: a.netns,
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The JSON documents `serve` writes.
pub const JSON_DOCS: &[JsonDoc] = netblame_serve::agent::JSON_DOCS;
