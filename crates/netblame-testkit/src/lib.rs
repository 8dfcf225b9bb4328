//! Test helpers shared by netblame's crates. A dev-dependency only: nothing here ships.
//!
//! Tests that need root call [`require_root`]: without root they skip with a visible line,
//! unless `NETBLAME_REQUIRE_ROOT=1` (set by `.ci/run`), where a skip is a failure.

pub mod schema;

use std::sync::atomic::{AtomicU32, Ordering};

/// True when the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns true when the test may go on. Without root it prints a `SKIPPED (needs root)` line
/// and returns false, or panics when `NETBLAME_REQUIRE_ROOT=1` says skips are not allowed.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("NETBLAME_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: needs root, and NETBLAME_REQUIRE_ROOT=1 forbids skipping");
    }
    eprintln!("SKIPPED (needs root): {test}");
    false
}

/// A name unique to this process and call, for namespaces, interfaces and temp files
/// (`prefix` is kept short: interface names have at most 15 bytes).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Runs a program to completion and returns its exit code (-1 when killed by a signal),
/// stdout and stderr as text. CLI tests pass `env!("CARGO_BIN_EXE_netblame")`.
pub fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command and panics with its stderr when it fails; returns its stdout.
pub fn run_ok(cmd: &[&str]) -> String {
    let (code, out, err) = run(cmd[0], &cmd[1..]);
    assert_eq!(code, 0, "{cmd:?}: {err}");
    out
}

/// A named network namespace (`ip netns add`) with loopback up, deleted on drop even when the
/// test panics (veth ends and processes' sockets inside go with it).
pub struct Netns(pub String);

impl Netns {
    /// Creates `PREFIX<pid>x<n>` and brings its loopback up.
    pub fn new(prefix: &str) -> Netns {
        let ns = Netns(unique_name(prefix));
        run_ok(&["ip", "netns", "add", &ns.0]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Runs a command inside the namespace; panics when it fails. Returns its stdout.
    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.0];
        full.extend_from_slice(cmd);
        run_ok(&full)
    }

    /// Spawns a command inside the namespace with stdout and stderr piped.
    pub fn spawn(&self, cmd: &[&str]) -> std::process::Child {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn in netns")
    }

    /// Loads an nftables ruleset into the namespace; panics when nft rejects it.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write;
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run nft");
        child
            .stdin
            .take()
            .expect("nft stdin")
            .write_all(ruleset.as_bytes())
            .expect("write ruleset");
        assert!(
            child.wait().expect("nft").success(),
            "nft rejected:\n{ruleset}"
        );
    }

    /// Moves the calling thread (only) into the namespace.
    pub fn enter(&self) {
        enter_netns(&self.0);
    }

    /// Runs `f` on a new thread inside the namespace (its /proc/thread-self/net, sysctls and
    /// sockets are the namespace's; threads it starts stay inside too).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.thread(f).join().expect("namespace thread panicked")
    }

    /// Like [`Netns::run`], but returns the thread's handle instead of waiting for it.
    pub fn thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let name = self.0.clone();
        std::thread::spawn(move || {
            enter_netns(&name);
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Moves the calling thread into the named namespace (`/run/netns/NAME`).
fn enter_netns(name: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    // SAFETY: setns on a valid namespace fd changes only this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}
