//! Network namespaces: create, delete, list, run code or commands inside one, set its sysctls.
//!
//! Namespaces are named and bind-mounted under `/run/netns` by `ip netns add`, so `ip netns
//! list`, `ip netns exec` and every other tool see them; iproute2 is the one tool the lab needs
//! besides the kernel. Code runs inside a namespace on a dedicated thread that calls
//! `setns(CLONE_NEWNET)`: sockets and TUN devices opened there stay in that namespace after the
//! thread ends, and the rest of the process is never moved.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The path of a named namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// True when a named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Runs `ip ARGS...`, turning a failure into an error that carries `ip`'s own message.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("running `ip {}`: {e} (install iproute2)", args.join(" ")),
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Creates a named network namespace (needs root: CAP_SYS_ADMIN).
pub fn create(name: &str) -> io::Result<()> {
    ip(&["netns", "add", name])?;
    // Loopback up, so servers bound to 127.0.0.1 inside work too.
    ip(&["-n", name, "link", "set", "lo", "up"])
}

/// Processes whose network namespace is `name` (as `ip netns pids` finds them: by the
/// namespace's device and inode), this process excluded.
pub fn pids(name: &str) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata(path(name)) else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.dev() == ns.dev() && m.ino() == ns.ino())
        })
        .collect()
}

/// Kills (SIGKILL) every process in namespace `name` and waits up to 2 s for them to die; a
/// lab owns everything that runs in its namespaces. Returns the pids it killed.
pub fn kill_all(name: &str) -> Vec<i32> {
    let victims = pids(name);
    for pid in &victims {
        // SAFETY: kill has no memory effects; the pid was just seen inside the namespace.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
        }
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while victims.iter().any(|p| alive(*p)) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    victims
}

/// True while a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.get(s.rfind(')')? + 2..)?.chars().next()?;
            Some(!matches!(state, 'Z' | 'X' | 'x'))
        })
        .unwrap_or(false)
}

/// Deletes a named namespace after killing every process in it (else the namespace, its
/// interfaces and sockets would live on, unnamed); one that is already gone is not an error.
pub fn delete(name: &str) -> io::Result<()> {
    kill_all(name);
    let mut last = Ok(());
    for _ in 0..3 {
        if !exists(name) {
            return Ok(());
        }
        last = ip(&["netns", "del", name]);
        if last.is_ok() || !exists(name) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    last
}

/// Every named namespace.
pub fn list() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `f` on a new thread that entered namespace `name`; returns what `f` returned.
/// Sockets and devices `f` opens belong to that namespace for their whole life.
pub fn run_in<T, F>(name: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let ns = File::open(path(name))
        .map_err(|e| io::Error::new(e.kind(), format!("opening namespace {name}: {e}")))?;
    let name = name.to_string();
    std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || {
            enter(&ns)
                .map_err(|e| io::Error::new(e.kind(), format!("entering namespace {name}: {e}")))?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
}

/// Moves the calling thread into the network namespace behind `ns` (an open /run/netns file).
pub fn enter(ns: &File) -> io::Result<()> {
    // SAFETY: setns takes a valid open fd and a namespace type; it only affects this thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Spawns a long-lived thread inside namespace `name` running `f` (for servers and workloads).
pub fn spawn_in<T, F>(name: &str, f: F) -> io::Result<std::thread::JoinHandle<io::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let ns = File::open(path(name))
        .map_err(|e| io::Error::new(e.kind(), format!("opening namespace {name}: {e}")))?;
    std::thread::Builder::new()
        .name(format!("in-{name}"))
        .spawn(move || {
            enter(&ns)?;
            f()
        })
}

/// Checks that `key` can be scoped to a network namespace: only `net.*` sysctls are (and only
/// some of those; [`set_sysctl`] verifies the rest by watching the host's value).
pub fn check_namespaced_sysctl(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let well_formed = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if parts.first() != Some(&"net") || !well_formed {
        return Err(format!(
            "'{key}' is not a per-namespace sysctl: a lab sets only net.* keys (e.g. net.ipv4.tcp_rmem), \
             anything else would change the host"
        ));
    }
    Ok(())
}

/// Sets a sysctl inside namespace `name` only. `/proc/sys/net` shows the namespace of the
/// thread that opens it; per-namespace TCP sysctls exist since Linux 4.15. Refuses keys outside
/// `net.*`, and a `net.*` key the kernel keeps global (the host's value changed with it): the
/// host's value is put back and the error says so.
pub fn set_sysctl(ns: &str, key: &str, value: &str) -> io::Result<()> {
    check_namespaced_sysctl(key).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let host_before = netblame_linux::sysctl::read(key).ok();
    write_in(ns, key, value)?;
    let host_after = netblame_linux::sysctl::read(key).ok();
    if host_before != host_after {
        if let Some(old) = &host_before {
            let _ = netblame_linux::sysctl::write(key, old);
        }
        return Err(io::Error::other(format!(
            "{key} is not per-namespace on this kernel: setting it in the lab changed the host's \
             value (put back to {})",
            host_before.as_deref().unwrap_or("?").trim()
        )));
    }
    Ok(())
}

fn write_in(ns: &str, key: &str, value: &str) -> io::Result<()> {
    let (key, value) = (key.to_string(), value.to_string());
    run_in(ns, move || {
        netblame_linux::sysctl::write(&key, &value).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                " (this sysctl does not exist inside a network namespace on this kernel)"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("setting {key}={value}: {e}{hint}"))
        })
    })
}

/// Reads a sysctl as seen inside namespace `ns`.
pub fn get_sysctl(ns: &str, key: &str) -> io::Result<String> {
    let key = key.to_string();
    run_in(ns, move || netblame_linux::sysctl::read(&key))
}
