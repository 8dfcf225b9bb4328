//! Test helpers shared by netblame's crates. A dev-dependency only: nothing here ships.
//!
//! Tests that need root call [`require_root`]: without root they skip with a visible line,
//! unless `NETBLAME_REQUIRE_ROOT=1` (set by `.ci/run`), where a skip is a failure.

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
