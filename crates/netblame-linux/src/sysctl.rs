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
            t.parse::<i64>()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: '{raw}' is not a list of integers")))
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
        assert!(read("net.ipv4.no_such_sysctl").unwrap_err().to_string().contains("no_such_sysctl"));
    }
}
