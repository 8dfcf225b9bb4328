//! Reading sysctls from `/proc/sys` and the running kernel's version.

use netblame_core::window::RcvSettings;
use netblame_core::KernelVersion;
use std::io;
use std::path::PathBuf;

/// `/proc/sys` path of a dotted sysctl name (`net.ipv4.tcp_rmem`).
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(name.replace('.', "/"))
}

/// The raw value of a sysctl, whitespace-trimmed.
pub fn read(name: &str) -> io::Result<String> {
    let p = path(name);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", p.display())))
}

/// A sysctl made of whitespace-separated integers (`tcp_rmem` gives three).
pub fn read_ints(name: &str) -> io::Result<Vec<i64>> {
    let raw = read(name)?;
    raw.split_whitespace()
        .map(|t| {
            t.parse::<i64>().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{name}: '{raw}' is not a list of integers"),
                )
            })
        })
        .collect()
}

/// The running kernel's version (`/proc/sys/kernel/osrelease`, what `uname -r` prints).
pub fn kernel_version() -> io::Result<KernelVersion> {
    let raw = read("kernel.osrelease")?;
    raw.parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}")))
}

/// This host's receive-window settings; a missing sysctl falls back to the kernel's default.
pub fn rcv_settings(kernel: &KernelVersion) -> RcvSettings {
    let mut s = RcvSettings::defaults_for(kernel);
    if let Ok(v) = read_ints("net.ipv4.tcp_rmem") {
        if let [a, b, c] = v[..] {
            s.tcp_rmem = [a.max(0) as u64, b.max(0) as u64, c.max(0) as u64];
        }
    }
    if let Ok([v]) = read_ints("net.core.rmem_max").as_deref() {
        s.rmem_max = (*v).max(0) as u64;
    }
    if let Ok([v]) = read_ints("net.ipv4.tcp_adv_win_scale").as_deref() {
        s.tcp_adv_win_scale = *v as i32;
    }
    if let Ok([v]) = read_ints("net.ipv4.tcp_window_scaling").as_deref() {
        s.window_scaling = *v != 0;
    }
    s
}

/// A sysctl's value with runs of whitespace (the tabs of `tcp_rmem`) turned into single spaces.
pub fn read_normalized(name: &str) -> io::Result<String> {
    read(name).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Reads each named sysctl: values by name, and the names that could not be read with why
/// (a sysctl this kernel lacks, or one hidden in this network namespace).
pub fn read_many(
    names: &[&str],
) -> (
    std::collections::BTreeMap<String, String>,
    Vec<(String, String)>,
) {
    let mut values = std::collections::BTreeMap::new();
    let mut missing = Vec::new();
    for name in names {
        match read_normalized(name) {
            Ok(v) => {
                values.insert(name.to_string(), v);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push((
                name.to_string(),
                "not present on this kernel or in this network namespace".to_string(),
            )),
            Err(e) => missing.push((name.to_string(), e.to_string())),
        }
    }
    (values, missing)
}

/// Writes a sysctl (what `sysctl -w` does). The kernel may reject the value (`EINVAL`) or the
/// sysctl may be read-only here (`EACCES`/`EPERM`: not root, or not per-network-namespace).
pub fn write(name: &str, value: &str) -> io::Result<()> {
    use std::io::Write;
    let p = path(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening {} for writing: {e}", p.display()),
            )
        })?;
    f.write_all(value.as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("writing '{value}' to {name}: {e}")))
}

/// True when this process may write the sysctl: it exists and `access(W_OK)` allows it (procfs
/// checks the mode bits even for root, so sysctls that are not per-network-namespace, shown
/// read-only inside a non-initial namespace, report false; so does any sysctl without root).
pub fn writable(name: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path(name).as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_hosts_kernel_and_rmem() {
        let k = kernel_version().unwrap();
        assert!(k.major >= 3);
        let s = rcv_settings(&k);
        assert_eq!(s.tcp_rmem.len(), 3);
        assert!(s.tcp_rmem[2] >= s.tcp_rmem[1]);
        assert!(read("net.ipv4.no_such_sysctl")
            .unwrap_err()
            .to_string()
            .contains("no_such_sysctl"));
    }
}
