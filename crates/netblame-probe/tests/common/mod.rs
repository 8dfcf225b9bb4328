//! Shared by the netblame-probe integration tests: a network namespace removed on drop, code
//! run inside it, an nftables ruleset loaded into it, and a probe run.

#![allow(dead_code)]

use netblame_probe::report::TargetRun;
use netblame_probe::{ProbeConfig, ProbeKind, Target};
#[allow(unused_imports)]
pub use netblame_testkit::Netns;
use std::process::Command;
use std::time::Duration;

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().expect("spawn");
    assert!(st.success(), "{cmd} {args:?} failed");
}

/// A probe configuration with test defaults.
pub fn config(
    kind: ProbeKind,
    targets: &[String],
    interval_ms: u64,
    count: u64,
    timeout: Duration,
) -> ProbeConfig {
    ProbeConfig {
        kind,
        targets: targets
            .iter()
            .map(|t| Target::parse(t, kind).expect("target"))
            .collect(),
        interval: Duration::from_millis(interval_ms),
        count,
        timeout,
        size: 16,
        request: false,
        window: Duration::from_secs(1),
        tls: Default::default(),
    }
}

/// Runs a configuration to the end.
pub fn probe(cfg: ProbeConfig) -> Vec<TargetRun> {
    netblame_probe::start(cfg).expect("start probes").wait()
}
