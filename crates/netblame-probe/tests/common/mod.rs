//! Shared by the netblame-probe integration tests: a network namespace removed on drop, code
//! run inside it, an nftables ruleset loaded into it, and a probe run.

#![allow(dead_code)]

use netblame_probe::report::TargetRun;
use netblame_probe::{ProbeConfig, ProbeKind, Target};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A named network namespace (`ip netns add`), deleted on drop even when the test panics.
pub struct Netns(pub String);

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = netblame_testkit::unique_name(prefix);
        run("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        run("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    /// Loads an nftables ruleset into the namespace.
    pub fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft rejected:\n{ruleset}");
    }

    /// Runs `f` on a thread inside the namespace (threads it starts stay inside too).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open netns");
            // SAFETY: setns on a valid namespace fd moves only this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread inside the namespace panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

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
    }
}

/// Runs a configuration to the end.
pub fn probe(cfg: ProbeConfig) -> Vec<TargetRun> {
    netblame_probe::start(cfg).expect("start probes").wait()
}
