//! The host audit's observations: the sysctls that bound TCP, the kernel version, and counters
//! read twice over a window — `/proc/net/{netstat,snmp,softnet_stat,dev,sockstat}`, qdisc
//! statistics (rtnetlink), NIC and per-queue statistics (ethtool), and cgroup CPU throttling of
//! the processes that own TCP sockets. Everything is read from the calling thread's network
//! namespace (`/proc/thread-self/net`, netlink and ioctl sockets opened by the thread), so a
//! thread that entered a namespace with `setns` audits that namespace.
//!
//! A section that cannot be read becomes a [`Skipped`] entry saying why; nothing fails the
//! whole collection.

pub mod apply;
pub mod cgroup;
pub mod ethtool;
pub mod procfs;
pub mod qdisc;

use netblame_core::observe::host::{
    HostCounters, HostSnapshot, QueueDir, QueueStats, Skipped, AUDITED_SYSCTLS,
};
use netblame_core::observe::SocketSnapshot;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use cgroup::CgroupTarget;

fn skip(out: &mut Vec<Skipped>, section: &str, reason: impl Into<String>) {
    let reason = reason.into();
    if !out
        .iter()
        .any(|s| s.section == section && s.reason == reason)
    {
        out.push(Skipped {
            section: section.to_string(),
            reason,
        });
    }
}

fn permission_hint(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("{e} (needs root or CAP_NET_ADMIN: run with sudo)")
        }
        _ => e.to_string(),
    }
}

/// Reads every counter now. `cgroups` are the cgroups to read `cpu.stat` from.
pub fn read_counters(cgroups: &[CgroupTarget], skipped: &mut Vec<Skipped>) -> HostCounters {
    read_scoped(cgroups, skipped, false)
}

/// Reads the counters a network namespace has of its own: `/proc/net/{netstat,snmp,dev,
/// sockstat}` and qdiscs. Host-wide ones (softnet, NIC statistics, cgroups) are left out: read
/// them once, with [`read_counters`].
pub fn read_netns_counters(skipped: &mut Vec<Skipped>) -> HostCounters {
    read_scoped(&[], skipped, true)
}

fn read_scoped(
    cgroups: &[CgroupTarget],
    skipped: &mut Vec<Skipped>,
    netns_only: bool,
) -> HostCounters {
    let mut c = HostCounters::default();
    for file in ["netstat", "snmp"] {
        match procfs::read_proc_net(file) {
            Ok(t) => c.proto.extend(procfs::parse_proto_counters(&t)),
            Err(e) => skip(skipped, &format!("/proc/net/{file}"), e.to_string()),
        }
    }
    if !netns_only {
        match procfs::read_proc_net("softnet_stat") {
            Ok(t) => c.softnet = procfs::parse_softnet(&t),
            Err(e) => skip(skipped, "/proc/net/softnet_stat", e.to_string()),
        }
    }
    match procfs::read_proc_net("dev") {
        Ok(t) => c.devices = procfs::parse_dev(&t),
        Err(e) => skip(skipped, "/proc/net/dev", e.to_string()),
    }
    match procfs::read_proc_net("sockstat") {
        Ok(t) => (c.tcp_inuse, c.tcp_mem_pages) = procfs::parse_sockstat_tcp(&t),
        Err(e) => skip(skipped, "/proc/net/sockstat", e.to_string()),
    }
    match qdisc::dump() {
        Ok(q) => c.qdiscs = q,
        Err(e) => skip(
            skipped,
            "qdisc",
            format!("rtnetlink RTM_GETQDISC: {}", permission_hint(&e)),
        ),
    }
    if netns_only {
        return c;
    }
    for dev in c
        .devices
        .iter()
        .map(|d| d.device.clone())
        .collect::<Vec<_>>()
    {
        match ethtool::nic_stats(&dev) {
            Ok(n) => {
                c.queues.extend(ethtool::queue_counters(&n));
                c.nic.push(n);
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENODEV)
                ) => {}
            Err(e) => skip(
                skipped,
                &format!("nic {dev}"),
                format!("ethtool statistics: {}", permission_hint(&e)),
            ),
        }
    }
    // Devices whose NIC statistics have no per-queue counters: the mq root's children, one per
    // TX queue (parent MAJ:N is queue N-1).
    let mut mq_children = mq_queue_counts(&c.qdiscs);
    mq_children.retain(|q| {
        !c.queues
            .iter()
            .any(|have| have.device == q.device && have.dir == QueueDir::Tx)
    });
    c.queues.extend(mq_children);
    for t in cgroups {
        match cgroup::read(t) {
            Ok(cpu) => c.cgroups.push(cpu),
            Err(e) => skip(
                skipped,
                &format!("cgroup {}", t.path),
                format!("reading {}/cpu.stat: {e}", t.dir.display()),
            ),
        }
    }
    c
}

/// Per-TX-queue packet counts from the children of `mq` root qdiscs.
pub fn mq_queue_counts(qdiscs: &[netblame_core::observe::host::QdiscStats]) -> Vec<QueueStats> {
    let mut out = Vec::new();
    for root in qdiscs
        .iter()
        .filter(|q| q.kind == "mq" && q.parent == "root")
    {
        let major = root.handle.split(':').next().unwrap_or("");
        for child in qdiscs.iter().filter(|q| q.device == root.device) {
            let Some((maj, min)) = child.parent.split_once(':') else {
                continue;
            };
            if maj != major {
                continue;
            }
            let Ok(n) = u32::from_str_radix(min, 16) else {
                continue;
            };
            if n == 0 {
                continue;
            }
            out.push(QueueStats {
                device: child.device.clone(),
                dir: QueueDir::Tx,
                index: n - 1,
                packets: child.packets,
                bytes: Some(child.bytes),
            });
        }
    }
    out
}

/// The audited sysctls, their values, and the ones that could not be read.
pub fn read_sysctls(skipped: &mut Vec<Skipped>) -> BTreeMap<String, String> {
    let (values, missing) = crate::sysctl::read_many(AUDITED_SYSCTLS);
    for (name, why) in missing {
        skip(skipped, &format!("sysctl {name}"), why);
    }
    values
}

/// Processes owning TCP sockets, `(pid, command, sockets)`, from a socket dump with owners.
pub fn socket_owners<'a>(
    sockets: impl IntoIterator<Item = &'a SocketSnapshot>,
) -> Vec<(u32, String, u64)> {
    let mut by_pid: BTreeMap<u32, (String, u64)> = BTreeMap::new();
    for s in sockets {
        for o in &s.owners {
            let e = by_pid
                .entry(o.pid)
                .or_insert_with(|| (o.command.clone(), 0));
            e.1 += 1;
        }
    }
    by_pid
        .into_iter()
        .map(|(pid, (c, n))| (pid, c, n))
        .collect()
}

/// The cgroups of the processes that own `sockets` (see [`socket_owners`]).
pub fn cgroup_targets(sockets: &[SocketSnapshot], skipped: &mut Vec<Skipped>) -> Vec<CgroupTarget> {
    cgroup_targets_of(sockets, skipped)
}

/// Like [`cgroup_targets`], for sockets from anywhere (e.g. every namespace of a
/// [`crate::diag::MultiDump`]), without collecting them first.
pub fn cgroup_targets_of<'a>(
    sockets: impl IntoIterator<Item = &'a SocketSnapshot>,
    skipped: &mut Vec<Skipped>,
) -> Vec<CgroupTarget> {
    let owners = socket_owners(sockets);
    if owners.is_empty() {
        return Vec::new();
    }
    let mounts = cgroup::mounts();
    if mounts.v2.is_none() && mounts.v1_cpu.is_none() {
        skip(
            skipped,
            "cgroup",
            "no cgroup v2 or v1 cpu hierarchy is mounted",
        );
        return Vec::new();
    }
    cgroup::targets(&owners, &mounts)
        .into_iter()
        .filter(|t| cgroup::is_cgroup_dir(&t.dir))
        .collect()
}

/// A collection in progress: the first counter read is done, the second waits for
/// [`Pending::finish`]. Lets a caller sample sockets over the same window.
#[derive(Debug)]
pub struct Pending {
    started: Instant,
    snapshot: HostSnapshot,
    cgroups: Vec<CgroupTarget>,
    netns_only: bool,
}

/// Reads the sysctls, the kernel version and the first counters.
pub fn begin(cgroups: Vec<CgroupTarget>) -> Pending {
    begin_scoped(cgroups, false)
}

/// Like [`begin`], for a network namespace other than the host's: its own sysctls (`net.*` are
/// per namespace) and only its own counters ([`read_netns_counters`]).
pub fn begin_netns() -> Pending {
    begin_scoped(Vec::new(), true)
}

fn begin_scoped(cgroups: Vec<CgroupTarget>, netns_only: bool) -> Pending {
    let mut skipped = Vec::new();
    let sysctls = read_sysctls(&mut skipped);
    let kernel = match crate::sysctl::kernel_version() {
        Ok(k) => Some(k),
        Err(e) => {
            skip(&mut skipped, "kernel version", e.to_string());
            None
        }
    };
    let hostname = crate::sysctl::read("kernel.hostname").ok();
    let started = Instant::now();
    let before = read_scoped(&cgroups, &mut skipped, netns_only);
    Pending {
        started,
        snapshot: HostSnapshot {
            collector: format!("netblame {}", env!("CARGO_PKG_VERSION")),
            hostname,
            kernel,
            sysctls,
            before,
            skipped,
            ..Default::default()
        },
        cgroups,
        netns_only,
    }
}

impl Pending {
    /// Time since the first read.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Adds a skipped section (e.g. the socket-owner scan) to the snapshot.
    pub fn skipped(&mut self, section: &str, reason: impl Into<String>) {
        skip(&mut self.snapshot.skipped, section, reason);
    }

    /// Reads the counters a second time and returns the snapshot.
    pub fn finish(mut self) -> HostSnapshot {
        let mut skipped = std::mem::take(&mut self.snapshot.skipped);
        self.snapshot.after = read_scoped(&self.cgroups, &mut skipped, self.netns_only);
        self.snapshot.window_us = self.started.elapsed().as_micros() as u64;
        self.snapshot.skipped = skipped;
        self.snapshot
    }
}

/// Collects a whole snapshot over `window` (sleeps in between).
pub fn collect(window: Duration, cgroups: Vec<CgroupTarget>) -> HostSnapshot {
    let p = begin(cgroups);
    std::thread::sleep(window.saturating_sub(p.elapsed()));
    p.finish()
}

/// Collections in progress in several network namespaces (see [`begin_namespaces`]).
#[derive(Debug)]
pub struct NetnsPending(
    Vec<(
        crate::netns::Netns,
        Result<Pending, crate::netns::NetnsError>,
    )>,
);

/// Starts a per-namespace collection ([`begin_netns`]) inside each of `namespaces`, entered in
/// turn on one dedicated thread. A namespace that cannot be entered is kept as its error.
pub fn begin_namespaces(namespaces: &[crate::netns::Netns]) -> NetnsPending {
    let started = crate::netns::visit(namespaces, |_| begin_netns());
    NetnsPending(namespaces.iter().cloned().zip(started).collect())
}

impl NetnsPending {
    /// Reads each namespace's counters a second time: one snapshot per namespace, or why it
    /// could not be read (it vanished meanwhile, no permission).
    pub fn finish(
        self,
    ) -> Vec<(
        netblame_core::observe::NetnsRef,
        Result<HostSnapshot, crate::netns::NetnsError>,
    )> {
        let mut ok = Vec::new();
        let mut slots = Vec::new();
        let mut out: Vec<(_, Option<Result<HostSnapshot, _>>)> = Vec::new();
        for (ns, p) in self.0 {
            match p {
                Ok(p) => {
                    slots.push(std::sync::Mutex::new(Some(p)));
                    ok.push(ns.clone());
                    out.push((ns.id, None));
                }
                Err(e) => out.push((ns.id, Some(Err(e)))),
            }
        }
        let done = crate::netns::visit(&ok, |ns| {
            let i = ok.iter().position(|n| std::ptr::eq(n, ns)).unwrap_or(0);
            let pending = slots[i].lock().ok().and_then(|mut s| s.take());
            pending.map(Pending::finish)
        });
        let mut done = done.into_iter();
        out.into_iter()
            .map(|(id, r)| {
                let r = r.unwrap_or_else(|| match done.next() {
                    Some(Ok(Some(snap))) => Ok(snap),
                    Some(Err(e)) => Err(e),
                    _ => Err(crate::netns::NetnsError::Vanished(id.label())),
                });
                (id, r)
            })
            .collect()
    }
}
