//! A lab's background processes and their lifecycle. `netblame lab up` calls [`start`], which
//! runs a detached supervisor ([`supervise`]); the supervisor runs the emulator ([`serve`]): it
//! builds the lab, publishes its counters every second, and tears everything down on SIGTERM,
//! SIGINT or SIGHUP, or when the supervisor dies. When the emulator dies any other way (SIGKILL,
//! a crash), the supervisor kills what ran in the lab's namespaces, removes them and the state,
//! and records why ([`crate::lab::Gone`]). [`stop`] is `netblame lab down`.
//!
//! The library does not know the cli's arguments: callers pass the commands that run the
//! supervisor and the emulator (the netblame binary itself).

use crate::lab::{
    self, forget_gone, record_gone, remove_leftovers, GcLock, Gone, Lab, LabConfig, LabError,
    LabState, Removed, Side,
};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The line the emulator writes on its stdout once the lab is up.
pub const READY: &str = "ready";

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (threads spawned later inherit the
/// mask), so that only [`wait_for_signal`] sees them. Returns the set.
pub fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on a zeroed, owned set; pthread_sigmask on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits up to `timeout` for one of the signals in `set`; returns it, or `None` on timeout.
pub fn wait_for_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        // `as _`: time_t is a deprecated alias on musl (its width changes there).
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: set and ts are valid for the call; siginfo may be null.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Runs a lab until a stop signal arrives. `ready` is called once the lab is up (the cli uses
/// it to tell its parent). Returns the signal that stopped it.
pub fn serve(config: LabConfig, ready: impl FnOnce(&Lab)) -> Result<i32, LabError> {
    let set = block_stop_signals();
    let lab = Lab::up(config)?;
    lab.publish_counters()?;
    ready(&lab);
    let sig = loop {
        if let Some(sig) = wait_for_signal(&set, Duration::from_secs(1)) {
            break sig;
        }
        let _ = lab.publish_counters();
    };
    lab.down()?;
    Ok(sig)
}

/// Starts a lab in the background: runs `supervisor` (which must end up in [`supervise`]) in
/// its own session, waits for the emulator's [`READY`] line, and returns the lab's state. On
/// failure the error is the emulator's own message, and nothing is left behind.
pub fn start(mut supervisor: Command, name: &str) -> Result<LabState, LabError> {
    supervisor
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; the lab leaves the terminal's session so Ctrl-C in
    // the shell that ran `lab up` does not stop it.
    unsafe {
        supervisor.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = supervisor.spawn().map_err(|e| {
        LabError::Io(std::io::Error::new(
            e.kind(),
            format!("starting the lab process: {e}"),
        ))
    })?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    if line.trim() != READY {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = child.wait();
        let _ = lab::gc();
        forget_gone(name);
        let msg = err
            .trim()
            .trim_start_matches("netblame: error: ")
            .to_string();
        return Err(LabError::Io(std::io::Error::other(if msg.is_empty() {
            "the lab process ended before the lab was up".to_string()
        } else {
            msg
        })));
    }
    LabState::load(name)
}

/// Runs `emulator` (which must end up in [`serve`]) as a child and waits for it, forwarding
/// stop signals to it. When it ends without tearing its lab down, removes what it left and
/// records why (`lab list` shows it).
pub fn supervise(name: &str, mut emulator: Command) -> Result<(), LabError> {
    let set = block_stop_signals();
    // SAFETY: prctl in the child before exec (async-signal-safe): the emulator gets SIGTERM,
    // and tears its lab down, when the supervisor dies.
    unsafe {
        emulator.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = emulator.spawn()?;
    let pid = child.id() as i32;
    let status = loop {
        if let Some(sig) = wait_for_signal(&set, Duration::from_millis(200)) {
            // SAFETY: our own child, not yet reaped.
            unsafe {
                libc::kill(pid, sig);
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
    };
    if status.success() {
        return Ok(());
    }
    let _lock = GcLock::take()?;
    let why = format!("its emulator (pid {pid}) {}", describe(status));
    // Only a lab this emulator owned (a failed build removes its own state); a gc that came
    // first left a record without the cause, which we know.
    if LabState::load(name).is_ok_and(|s| s.pid == pid) {
        let removed = remove_leftovers(name)?;
        record_gone(&Gone::new(name, pid, why, &removed));
    } else if let Some(mut g) = lab::gone(name).filter(|g| g.pid == pid) {
        g.why = why;
        record_gone(&g);
    }
    Ok(())
}

/// "was killed by signal 9 (SIGKILL)", "exited with code 1".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => {
            // SAFETY: strsignal returns a static string (or null) for any number.
            let name = unsafe { libc::strsignal(sig) };
            let name = if name.is_null() {
                String::new()
            } else {
                // SAFETY: non-null strsignal results are NUL-terminated strings.
                unsafe { std::ffi::CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned()
            };
            format!("was killed by signal {sig} ({name})")
        }
        _ => "ended".to_string(),
    }
}

/// Stops a lab (`netblame lab down`): asks its emulator to tear down (SIGTERM), kills it after
/// 10 s, then removes whatever is left, including processes still running in its namespaces.
pub fn stop(name: &str) -> Result<Removed, LabError> {
    let state = LabState::load(name)?;
    if state.alive() {
        // SAFETY: kill with a pid verified by its start time.
        unsafe {
            libc::kill(state.pid, libc::SIGTERM);
        }
        let start = Instant::now();
        while state.alive() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if state.alive() {
            // SAFETY: as above.
            unsafe {
                libc::kill(state.pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let removed = {
        let _lock = GcLock::take()?;
        remove_leftovers(name)?
    };
    forget_gone(name);
    Ok(removed)
}

/// Runs `command` on one side of a running lab through `ip netns exec`, with `NETBLAME_PEER`
/// (the other side's address), `NETBLAME_LAB` and `NETBLAME_SIDE` set. Whatever it leaves
/// running belongs to the lab: `lab down` kills it.
pub fn exec(name: &str, side: Side, command: &[String]) -> Result<ExitStatus, LabError> {
    let state = LabState::load(name)?;
    if !state.alive() {
        return Err(LabError::Dead(name.to_string(), state.pid));
    }
    let ns = match side {
        Side::Client => &state.client_netns,
        Side::Server => &state.server_netns,
    };
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(command)
        .env("NETBLAME_PEER", side.peer().addr().to_string())
        .env("NETBLAME_LAB", name)
        .env(
            "NETBLAME_SIDE",
            if side == Side::Client {
                "client"
            } else {
                "server"
            },
        )
        .status()
        .map_err(|e| {
            LabError::Io(std::io::Error::new(
                e.kind(),
                format!("running `ip netns exec`: {e}"),
            ))
        })
}
