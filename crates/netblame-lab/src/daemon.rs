//! The lab's own process (`netblame lab up` starts it detached): builds the lab, publishes its
//! counters every second, and tears everything down on SIGTERM, SIGINT or SIGHUP.

use crate::lab::{Lab, LabConfig, LabError};
use std::time::Duration;

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
        tv_sec: timeout.as_secs() as libc::time_t,
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
