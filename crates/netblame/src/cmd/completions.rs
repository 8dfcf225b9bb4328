//! `netblame completions SHELL`: a shell completion script on stdout (clap_complete).

use clap_complete::Shell;
use std::process::ExitCode;

/// Arguments of `netblame completions`.
#[derive(clap::Args)]
#[command(after_help = "Install, for example:\n  \
    bash:       netblame completions bash > ~/.local/share/bash-completion/completions/netblame\n  \
    zsh:        netblame completions zsh > ~/.zfunc/_netblame   (with fpath+=~/.zfunc)\n  \
    fish:       netblame completions fish > ~/.config/fish/completions/netblame.fish\n  \
    elvish:     netblame completions elvish >> ~/.config/elvish/rc.elv\n  \
    powershell: netblame completions powershell >> $PROFILE")]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the completion script for `cmd` (the whole netblame command tree) to stdout.
pub fn run(args: Args, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(args.shell, &mut cmd, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
