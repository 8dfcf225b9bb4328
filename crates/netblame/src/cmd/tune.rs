//! `netblame tune`: a sysctl plan for a path (rate, RTT, profile) with the BDP arithmetic behind
//! each value, written as a sysctl.d file. Dry run by default; `--apply` saves a backup, writes
//! the live values and the file; `--rollback` restores the backup exactly.

use crate::render;
use anyhow::Context;
use netblame_core::json::JsonDoc;
use netblame_core::observe::host::AUDITED_SYSCTLS;
use netblame_core::tune::{plan, sysctl_d_file, Profile, TuneInput, TunePlan};
use netblame_core::units::duration_exact_string;
use netblame_core::BitRate;
use netblame_linux::host::apply;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Default directory of the sysctl.d file.
pub const DEFAULT_SYSCTL_DIR: &str = "/etc/sysctl.d";
/// Name of the file netblame writes there.
pub const FILE_NAME: &str = "90-netblame.conf";
/// Default backup of the previous values.
pub const DEFAULT_BACKUP: &str = "/var/lib/netblame/sysctl-backup.json";

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProfileArg {
    Throughput,
    Latency,
    Balanced,
}

#[derive(clap::Args)]
pub struct Args {
    /// Rate of the path to fill (10g, 100mbit).
    #[arg(long, value_parser = crate::args::rate, required_unless_present = "rollback")]
    rate: Option<BitRate>,
    /// Round-trip time of the path (30ms).
    #[arg(long, value_parser = crate::args::rtt, required_unless_present = "rollback")]
    rtt: Option<Duration>,
    /// Every profile raises buffer maxima to the path's need where below, never below the
    /// kernel's defaults or what is set now, and never lowers one. throughput and latency also
    /// keep the window after idle; latency keeps send queues short (and says when tcp_rmem[2]
    /// is large enough to cost tcp_collapse time); balanced only raises buffers.
    #[arg(long, value_enum, default_value = "balanced")]
    profile: ProfileArg,
    /// Write the live values and the sysctl.d file (after saving a backup). Needs root.
    #[arg(long, conflicts_with = "rollback")]
    apply: bool,
    /// Restore the values saved by the last --apply and remove (or restore) the sysctl.d file.
    #[arg(long, conflicts_with_all = ["rate", "rtt"])]
    rollback: bool,
    /// Directory of the sysctl.d file (default /etc/sysctl.d). Inside a network namespace
    /// (e.g. `ip netns exec`) --apply writes only live values unless this is given: a file in
    /// the host's /etc/sysctl.d would apply to the host at its next boot.
    #[arg(long, value_name = "DIR")]
    sysctl_dir: Option<PathBuf>,
    /// Where --apply saves the previous values and --rollback reads them.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_BACKUP)]
    backup: PathBuf,
    /// One JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Out<'a> {
    #[serde(flatten)]
    plan: &'a TunePlan,
    /// The sysctl.d file (written with --apply); `None` when none is written here.
    sysctl_file: Option<PathBuf>,
    mode: &'static str,
    /// Changes not writable here, with why.
    not_applicable: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<PathBuf>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct RollbackOut {
    mode: &'static str,
    restored: Vec<(String, String)>,
    sysctl_file: Option<PathBuf>,
    sysctl_file_restored: bool,
}

fn command_line(rate: BitRate, rtt: Duration, profile: Profile) -> String {
    format!(
        "netblame tune --rate {} --rtt {} --profile {}",
        netblame_core::tune::rate_arg(rate.bits_per_second()),
        duration_exact_string(rtt),
        profile.as_str()
    )
}

fn rollback(a: &Args) -> anyhow::Result<ExitCode> {
    let backup = apply::rollback(&a.backup).with_context(|| "rollback failed")?;
    if a.json {
        render::print_json(&RollbackOut {
            mode: "rollback",
            restored: backup.values.clone(),
            sysctl_file: backup.sysctl_file.clone(),
            sysctl_file_restored: backup.previous_file.is_some(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "restored {} from {}:",
        render::plural(backup.values.len(), "sysctl"),
        a.backup.display()
    );
    for (name, value) in &backup.values {
        println!(
            "  {name} = {}",
            value.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    match (&backup.sysctl_file, &backup.previous_file) {
        (None, _) => {}
        (Some(f), Some(_)) => println!("{} put back as it was", f.display()),
        (Some(f), None) => println!("{} removed", f.display()),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.rollback {
        return rollback(&a);
    }
    let (Some(rate), Some(rtt)) = (a.rate, a.rtt) else {
        return Err(crate::args::usage("--rate and --rtt are required"));
    };
    let profile = match a.profile {
        ProfileArg::Throughput => Profile::Throughput,
        ProfileArg::Latency => Profile::Latency,
        ProfileArg::Balanced => Profile::Balanced,
    };
    let kernel =
        netblame_linux::sysctl::kernel_version().context("reading the running kernel's version")?;
    let (current, _) = netblame_linux::sysctl::read_many(AUDITED_SYSCTLS);
    let p = plan(&TuneInput {
        kernel,
        current,
        rate_bps: rate.bits_per_second(),
        rtt,
        profile,
    })?;
    // Inside a network namespace only the namespace's live values change, unless a directory
    // for the file was asked for.
    let file = match (&a.sysctl_dir, apply::in_child_netns()) {
        (Some(dir), _) => Some(dir.join(FILE_NAME)),
        (None, false) => Some(Path::new(DEFAULT_SYSCTL_DIR).join(FILE_NAME)),
        (None, true) => None,
    };
    let changes: Vec<(String, String)> = p
        .changes
        .iter()
        .map(|c| (c.name.clone(), c.proposed.clone()))
        .collect();
    let (writable, not_applicable) = apply::partition(&changes);
    let cmd = command_line(rate, rtt, profile);
    let mut applied_plan = p.clone();
    applied_plan
        .changes
        .retain(|c| writable.iter().any(|(n, _)| *n == c.name));
    let file_text = sysctl_d_file(&applied_plan, &cmd);

    let mut backup = None;
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    if a.apply && writable.is_empty() && !not_applicable.is_empty() && !root {
        let why: Vec<String> = not_applicable
            .iter()
            .map(|(n, w)| format!("{n}: {w}"))
            .collect();
        anyhow::bail!(
            "--apply: nothing in the plan can be written here ({})",
            why.join("; ")
        );
    }
    if a.apply && !writable.is_empty() {
        match &file {
            Some(f) => apply::apply(&writable, &file_text, f, &a.backup),
            None => apply::apply_live(&writable, &a.backup),
        }
        .context("apply failed")?;
        backup = Some(a.backup.clone());
    }
    if a.json {
        render::print_json(&Out {
            plan: &p,
            sysctl_file: file,
            mode: if a.apply { "apply" } else { "dry-run" },
            not_applicable,
            backup,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    print_text(
        &a,
        &p,
        file.as_deref(),
        &file_text,
        &not_applicable,
        backup.as_deref(),
        &cmd,
    );
    Ok(ExitCode::SUCCESS)
}

fn print_text(
    a: &Args,
    p: &TunePlan,
    file: Option<&Path>,
    file_text: &str,
    not_applicable: &[(String, String)],
    backup: Option<&Path>,
    cmd: &str,
) {
    println!(
        "path {} at {} RTT: BDP {} B; kernel {} turns buffer into window x {:.2}: buffers of {} B (profile {})\n",
        BitRate(p.rate_bits_per_second),
        netblame_core::units::format_duration(Duration::from_micros(p.rtt_us)),
        netblame_core::units::group_thousands(p.bdp_bytes),
        p.kernel,
        p.window_fraction,
        netblame_core::units::group_thousands(p.buffer_bytes),
        p.profile.as_str()
    );
    if p.changes.is_empty() {
        println!("Nothing to change: this host's sysctls already allow it.");
    } else {
        let rows: Vec<Vec<String>> = p
            .changes
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.current.clone().unwrap_or_else(|| "?".into()),
                    c.proposed.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            render::table(&["sysctl", "current", "proposed"], &rows)
        );
        println!("\nwhy:");
        for c in &p.changes {
            println!("  {}: {}", c.name, c.reason);
        }
    }
    println!("\nnotes:");
    for n in &p.notes {
        println!("  - {n}");
    }
    for (name, why) in not_applicable {
        println!("  - {name} not applied: {why}");
    }
    if p.changes.is_empty() {
        return;
    }
    match backup {
        Some(b) => {
            println!("\napplied; previous values saved to {}", b.display());
            match file {
                Some(f) => println!("wrote {}", f.display()),
                None => println!(
                    "inside a network namespace: live values only, no sysctl.d file (pass --sysctl-dir to write one)"
                ),
            }
            let extra = if b == Path::new(DEFAULT_BACKUP) {
                String::new()
            } else {
                format!(" --backup {}", b.display())
            };
            println!("undo with: netblame tune --rollback{extra}");
        }
        None if a.apply => println!("\nnothing to change here: nothing changed"),
        None => {
            match file {
                Some(f) => println!("\n{} would contain:\n", f.display()),
                None => println!(
                    "\ninside a network namespace --apply writes live values only; a sysctl.d file (--sysctl-dir) would contain:\n"
                ),
            }
            print!("{file_text}");
            println!("\nDry run: nothing changed. Apply (as root) with:\n  {cmd} --apply");
        }
    }
}

/// The JSON documents `tune` writes.
pub const JSON_DOCS: &[JsonDoc] = &[
    JsonDoc::of::<Out<'static>>("tune", "netblame tune --json"),
    JsonDoc::of::<RollbackOut>("tune-rollback", "netblame tune --rollback --json"),
];
