//! CPU throttling of the cgroups that hold processes owning TCP sockets: `cpu.stat`
//! (`nr_periods`, `nr_throttled`, `throttled_usec`) and the quota (`cpu.max`) on cgroup v2, or
//! `cpu.stat` (`throttled_time` in ns) and `cpu.cfs_quota_us` on a v1 `cpu` hierarchy (hybrid
//! hosts keep the cpu controller on v1).

use netblame_core::observe::host::{CgroupCpu, OwnerProcess};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the cgroup hierarchies are mounted (from `/proc/self/mountinfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// The cgroup2 mount point.
    pub v2: Option<PathBuf>,
    /// The v1 hierarchy that carries the `cpu` controller.
    pub v1_cpu: Option<PathBuf>,
}

/// Finds the cgroup mounts in a `mountinfo` text.
pub fn parse_mounts(mountinfo: &str) -> Mounts {
    let mut m = Mounts::default();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split_whitespace().nth(4);
        let mut r = right.split_whitespace();
        let fstype = r.next();
        let super_opts = r.nth(1).unwrap_or("");
        match (fstype, mount_point) {
            (Some("cgroup2"), Some(mp)) if m.v2.is_none() => m.v2 = Some(PathBuf::from(mp)),
            (Some("cgroup"), Some(mp)) if super_opts.split(',').any(|o| o == "cpu") => {
                m.v1_cpu = Some(PathBuf::from(mp))
            }
            _ => {}
        }
    }
    m
}

/// This host's cgroup mounts.
pub fn mounts() -> Mounts {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mounts(&t))
        .unwrap_or_default()
}

/// The cgroup whose CPU accounting applies to a process, from its `/proc/PID/cgroup` text:
/// the v1 line carrying `cpu` when there is one (hybrid hosts), else the v2 `0::` line.
/// Returns `(version, path)`.
pub fn parse_proc_cgroup(text: &str) -> Option<(&'static str, String)> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(("v2", path.to_string()));
        } else if ctrls.split(',').any(|c| c == "cpu") {
            return Some(("v1", path.to_string()));
        }
    }
    v2
}

/// One cgroup to watch and the processes in it that own sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTarget {
    pub version: &'static str,
    pub path: String,
    pub dir: PathBuf,
    pub owners: Vec<OwnerProcess>,
    /// The container, pod or unit the path names (parsed once, when the target is made).
    pub container: Option<netblame_core::observe::socket::ContainerRef>,
}

/// Groups socket-owning processes `(pid, command, sockets)` by the cgroup that accounts their
/// CPU. Processes that vanished or whose hierarchy is not mounted are left out.
pub fn targets(owners: &[(u32, String, u64)], mounts: &Mounts) -> Vec<CgroupTarget> {
    let mut by_path: BTreeMap<(&'static str, String), Vec<OwnerProcess>> = BTreeMap::new();
    for (pid, command, sockets) in owners {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let Some(key) = parse_proc_cgroup(&text) else {
            continue;
        };
        by_path.entry(key).or_default().push(OwnerProcess {
            pid: *pid,
            command: command.clone(),
            sockets: *sockets,
        });
    }
    // One read of the node's pod log directories names every target's pod and container.
    let names = (!by_path.is_empty()).then(crate::container::PodNames::scan);
    by_path
        .into_iter()
        .filter_map(|((version, path), owners)| {
            let base = if version == "v2" {
                mounts.v2.as_ref()?
            } else {
                mounts.v1_cpu.as_ref()?
            };
            let dir = base.join(path.trim_start_matches('/'));
            let container = crate::container::parse_cgroup_path(&path).map(|mut r| {
                if let Some(n) = &names {
                    n.name(&mut r);
                }
                r
            });
            Some(CgroupTarget {
                version,
                path,
                dir,
                owners,
                container,
            })
        })
        .collect()
}

fn kv(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// Parses `cpu.stat` (v2 or v1) and the quota files' contents into a [`CgroupCpu`].
pub fn parse_cpu(
    version: &str,
    cpu_stat: &str,
    quota: Option<&str>,
    period: Option<&str>,
) -> CgroupCpu {
    let s = kv(cpu_stat);
    let mut c = CgroupCpu {
        version: version.to_string(),
        usage_usec: s.get("usage_usec").copied(),
        nr_periods: s.get("nr_periods").copied().unwrap_or(0),
        nr_throttled: s.get("nr_throttled").copied().unwrap_or(0),
        throttled_usec: s
            .get("throttled_usec")
            .copied()
            .or_else(|| s.get("throttled_time").map(|ns| ns / 1000))
            .unwrap_or(0),
        ..Default::default()
    };
    if version == "v2" {
        // cpu.max: "max 100000" or "50000 100000".
        if let Some(q) = quota {
            let mut it = q.split_whitespace();
            c.quota_usec = it.next().and_then(|v| v.parse().ok());
            c.period_usec = it.next().and_then(|v| v.parse().ok());
        }
    } else {
        c.quota_usec = quota
            .and_then(|q| q.trim().parse::<i64>().ok())
            .filter(|q| *q > 0)
            .map(|q| q as u64);
        c.period_usec = period.and_then(|p| p.trim().parse().ok());
    }
    if c.quota_usec.is_none() {
        c.period_usec = None;
    }
    c
}

/// Reads one target's CPU accounting now.
pub fn read(target: &CgroupTarget) -> std::io::Result<CgroupCpu> {
    let stat = std::fs::read_to_string(target.dir.join("cpu.stat"))?;
    let rd = |f: &str| std::fs::read_to_string(target.dir.join(f)).ok();
    let (quota, period) = if target.version == "v2" {
        (rd("cpu.max"), None)
    } else {
        (rd("cpu.cfs_quota_us"), rd("cpu.cfs_period_us"))
    };
    let mut c = parse_cpu(target.version, &stat, quota.as_deref(), period.as_deref());
    c.path = target.path.clone();
    c.owners = target.owners.clone();
    c.container = target.container.clone();
    Ok(c)
}

/// True when `dir` looks like a cgroup directory.
pub fn is_cgroup_dir(dir: &Path) -> bool {
    dir.join("cpu.stat").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_and_unified_layouts() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  32 30 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
                  40 30 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let m = parse_mounts(mi);
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1_cpu.as_deref(), Some(Path::new("/sys/fs/cgroup/cpu")));
        assert_eq!(
            parse_proc_cgroup("2:cpuacct:/\n1:cpu,cpuacct:/k8s/pod1\n0::/\n"),
            Some(("v1", "/k8s/pod1".into()))
        );
        assert_eq!(
            parse_proc_cgroup("0::/system.slice/envoy.service\n"),
            Some(("v2", "/system.slice/envoy.service".into()))
        );
        assert_eq!(parse_proc_cgroup("garbage"), None);
    }

    #[test]
    fn cpu_stat_v2_and_v1() {
        let v2 = "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\nnr_periods 100\nnr_throttled 25\nthrottled_usec 123456\n";
        let c = parse_cpu("v2", v2, Some("200000 100000\n"), None);
        assert_eq!(
            (c.nr_periods, c.nr_throttled, c.throttled_usec, c.usage_usec),
            (100, 25, 123456, Some(5000))
        );
        assert_eq!((c.quota_usec, c.period_usec), (Some(200000), Some(100000)));
        let c = parse_cpu("v2", "usage_usec 7\n", Some("max 100000\n"), None);
        assert_eq!((c.nr_periods, c.quota_usec, c.period_usec), (0, None, None));
        let v1 = "nr_periods 10\nnr_throttled 3\nthrottled_time 5000000\n";
        let c = parse_cpu("v1", v1, Some("-1\n"), Some("100000\n"));
        assert_eq!(
            (c.nr_throttled, c.throttled_usec, c.quota_usec),
            (3, 5000, None)
        );
        let c = parse_cpu("v1", v1, Some("50000\n"), Some("100000\n"));
        assert_eq!((c.quota_usec, c.period_usec), (Some(50000), Some(100000)));
    }

    #[test]
    fn this_process_has_a_readable_cgroup() {
        let m = mounts();
        let me = std::process::id();
        let t = targets(&[(me, "test".into(), 1)], &m);
        for target in &t {
            if is_cgroup_dir(&target.dir) {
                let c = read(target).unwrap();
                assert_eq!(c.owners[0].pid, me);
            }
        }
    }
}
