//! `--netns NAME|PATH|PID` and `--all-netns`, shared by `sockets`, `host` and `doctor`: which
//! network namespaces a command looks into, and the notes on those it could not.

use netblame_linux::netns::{discover, Netns, NetnsError, NetnsSpec};

/// Namespace selection flags.
#[derive(clap::Args, Clone, Default, Debug)]
pub struct NetnsArgs {
    /// Look inside this network namespace: a name under /run/netns, a path to a namespace file
    /// (/proc/PID/ns/net, a bind mount) or a process id; repeat for several.
    #[arg(long, value_name = "NAME|PATH|PID", conflicts_with = "all_netns")]
    pub netns: Vec<NetnsSpec>,
    /// Look inside every network namespace on the host (from /run/netns and /proc/*/ns/net,
    /// each once); needs root to enter the others.
    #[arg(long)]
    pub all_netns: bool,
}

/// The namespaces to visit.
pub struct Selection {
    pub namespaces: Vec<Netns>,
    /// True when the user asked for namespaces (output then names them).
    pub explicit: bool,
    /// What discovery could not see.
    pub notes: Vec<String>,
}

impl NetnsArgs {
    /// Resolves the flags: `--netns` values must exist (a usage error otherwise); without a
    /// flag, this process's own namespace.
    pub fn select(&self) -> anyhow::Result<Selection> {
        if self.all_netns {
            let d = discover();
            let mut notes = Vec::new();
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            if d.unreadable_processes > 0 && !root {
                notes.push(format!(
                    "not root: the network namespaces of {} processes of other users could not be checked: run as root to see them",
                    d.unreadable_processes
                ));
            } else if d.unreadable_processes > 0 {
                notes.push(format!(
                    "the network namespaces of {} processes could not be checked (permission denied, e.g. by a security module)",
                    d.unreadable_processes
                ));
            }
            return Ok(Selection {
                namespaces: d.namespaces,
                explicit: true,
                notes,
            });
        }
        if self.netns.is_empty() {
            return Ok(Selection {
                namespaces: vec![Netns::current()?],
                explicit: false,
                notes: Vec::new(),
            });
        }
        let mut namespaces: Vec<Netns> = Vec::new();
        for spec in &self.netns {
            let ns = Netns::resolve(spec).map_err(|e| crate::args::usage(e.to_string()))?;
            if !namespaces.iter().any(|n| n.id.inode == ns.id.inode) {
                namespaces.push(ns);
            }
        }
        Ok(Selection {
            namespaces,
            explicit: true,
            notes: Vec::new(),
        })
    }
}

/// Lines for namespaces that were not visited: one line for all the permission failures (not
/// root), one per namespace that vanished or failed otherwise.
pub fn skipped_notes<'a>(skipped: impl IntoIterator<Item = &'a NetnsError>) -> Vec<String> {
    let mut denied = 0;
    let mut out = Vec::new();
    for e in skipped {
        if e.is_permission() {
            denied += 1;
        } else {
            out.push(format!("{e}: skipped"));
        }
    }
    if denied > 0 {
        out.insert(
            0,
            format!(
                "not root: {denied} other network {} not visited (entering one needs CAP_SYS_ADMIN): run as root to see {}",
                if denied == 1 { "namespace was" } else { "namespaces were" },
                if denied == 1 { "it" } else { "them" }
            ),
        );
    }
    out
}
