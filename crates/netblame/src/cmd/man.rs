//! `netblame man`: manual pages in roff (clap_mangen), one per command and subcommand.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `netblame man`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    netblame man | man -l -                 read the main page\n  \
    netblame man bench client | man -l -    read one subcommand's page\n  \
    netblame man --out /usr/local/share/man/man1   install every page (netblame.1, netblame-bench-client.1, ...)")]
pub struct Args {
    /// Write every page (netblame.1 and one netblame-SUB[-SUB].1 per subcommand) into DIR
    /// instead of printing one page to stdout.
    #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
    out: Option<PathBuf>,
    /// The subcommand whose page to print (e.g. `bench client`); the main page without one.
    #[arg(value_name = "SUBCOMMAND")]
    subcommand: Vec<String>,
}

/// Prints one page, or writes all of them with `--out`.
pub fn run(args: Args, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    // Built first so subcommands carry their full names (`netblame-bench-client`).
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    if let Some(dir) = args.out {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut count = 0;
        write_all(&cmd, &dir, &mut count)
            .with_context(|| format!("writing man pages into {}", dir.display()))?;
        eprintln!(
            "wrote {} into {}",
            crate::render::plural(count, "man page"),
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut page = &cmd;
    for name in &args.subcommand {
        let Some(sub) = page.find_subcommand(name) else {
            let known: Vec<&str> = page.get_subcommands().map(|s| s.get_name()).collect();
            bail!(
                "no man page for `{}`: `{}` has the subcommands {}",
                args.subcommand.join(" "),
                page.get_display_name().unwrap_or(page.get_name()),
                known.join(", ")
            );
        };
        page = sub;
    }
    man(page)
        .render(&mut std::io::stdout())
        .context("writing the man page")?;
    Ok(ExitCode::SUCCESS)
}

/// One page; the footer names netblame's version on every page, not the subcommand's.
fn man(cmd: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd.clone())
        .source(format!("netblame {}", env!("CARGO_PKG_VERSION")))
        .manual("netblame manual")
}

/// Writes `cmd`'s page and its subcommands' into `dir`, counting them.
fn write_all(cmd: &clap::Command, dir: &std::path::Path, count: &mut usize) -> std::io::Result<()> {
    man(cmd).generate_to(dir)?;
    *count += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_all(sub, dir, count)?;
    }
    Ok(())
}
