//! The `netblame` binary: argument parsing, rendering and glue. Decisions live in
//! `netblame-core`; observations come from the source crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;
mod render;

/// Tells you what to blame when TCP is slow or spiky — the network, the kernel, the host or the
/// application — with the evidence and the fix.
#[derive(Parser)]
#[command(name = "netblame", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Window, BDP, throughput ceiling and transfer time for any kernel version and SO_RCVBUF.
    Calc(cmd::calc::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Calc(args) => cmd::calc::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netblame: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
