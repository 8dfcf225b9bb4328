//! Dumping TCP sockets through sock_diag netlink (`SOCK_DIAG_BY_FAMILY`, reference:
//! kernel-tcp.md section 3), as netblame-core [`SocketSnapshot`]s.
//!
//! The dump asks for `tcp_info`, congestion control, `SKMEMINFO` and shutdown state, filters by
//! state in the kernel, and is streamed: each netlink batch is parsed as it arrives, so memory
//! holds one batch plus what the caller keeps. Raw `INET_DIAG_INFO` bytes go through
//! netblame-core's length-aware [`netblame_core::observe::TcpInfo::parse`].
//!
//! ```no_run
//! use netblame_linux::diag::{dump, DumpRequest};
//! let d = dump(&DumpRequest::default()).unwrap();
//! for s in &d.sockets {
//!     println!("{} {:?}", s.label(), s.process_label());
//! }
//! ```

mod netlink;

use crate::container::PodNames;
use crate::netns::{Netns, NetnsError};
use crate::procmap::ProcMap;
use netblame_core::observe::{ContainerRef, NetnsRef, SocketSnapshot, TcpState};
use serde::Serialize;
use std::collections::HashMap;
use std::io;

/// What to dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpRequest {
    /// States to dump (filtered by the kernel); empty means every state.
    pub states: Vec<TcpState>,
    /// Dump IPv4 sockets.
    pub ipv4: bool,
    /// Dump IPv6 sockets (including v4-mapped ones on dual-stack sockets).
    pub ipv6: bool,
    /// Map sockets to processes (pid, command, cgroup) by reading `/proc` once.
    pub processes: bool,
}

impl Default for DumpRequest {
    /// Every state, both families, with processes.
    fn default() -> Self {
        DumpRequest {
            states: Vec::new(),
            ipv4: true,
            ipv6: true,
            processes: true,
        }
    }
}

impl DumpRequest {
    /// The kernel's `idiag_states` bitmask.
    pub fn state_mask(&self) -> u32 {
        if self.states.is_empty() {
            u32::MAX
        } else {
            self.states.iter().fold(0, |m, s| m | s.mask_bit())
        }
    }
}

/// What a dump could and could not see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DumpStats {
    /// Sockets returned.
    pub sockets: usize,
    /// Netlink messages that could not be decoded (skipped).
    pub undecodable: usize,
    /// True when process mapping ran.
    pub processes_mapped: bool,
    /// Sockets with an inode that no readable process holds: most likely other users' processes
    /// (without root), or sockets closed between the dump and the `/proc` scan.
    pub unmapped_sockets: usize,
    /// Processes whose file descriptors could not be read (permission).
    pub unreadable_processes: usize,
    /// Processes that exited while `/proc` was read: skipped (their sockets, if still in the
    /// dump, are unmapped).
    pub exited_processes: usize,
}

impl DumpStats {
    /// One line saying what could not be seen, or `None` when nothing was missed.
    pub fn limitation(&self) -> Option<String> {
        if !self.processes_mapped || self.unreadable_processes == 0 {
            return None;
        }
        Some(format!(
            "{} sockets not mapped to a process: {} processes of other users could not be read (run as root to see them)",
            self.unmapped_sockets, self.unreadable_processes
        ))
    }
}

/// A finished dump.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub sockets: Vec<SocketSnapshot>,
    pub stats: DumpStats,
    /// Container or pod of each owner pid that runs in one (named from the node's pod log
    /// directories where present).
    pub containers: HashMap<u32, ContainerRef>,
}

impl Dump {
    /// The container or pod of a socket's first owner that runs in one.
    pub fn container_of(&self, s: &SocketSnapshot) -> Option<&ContainerRef> {
        s.owners.iter().find_map(|o| self.containers.get(&o.pid))
    }
}

/// The sockets of one network namespace.
#[derive(Debug, Clone)]
pub struct NetnsDump {
    pub netns: NetnsRef,
    /// True for this process's own namespace.
    pub current: bool,
    pub sockets: Vec<SocketSnapshot>,
    /// Undecodable messages in this namespace's dump.
    pub undecodable: usize,
}

/// A dump across namespaces: one `/proc` scan maps the sockets of all of them (socket inodes
/// are unique host-wide).
#[derive(Debug, Default)]
pub struct MultiDump {
    /// The namespaces dumped, in the order asked.
    pub namespaces: Vec<NetnsDump>,
    /// Namespaces that could not be dumped (vanished, no permission, refused), with why.
    pub skipped: Vec<(NetnsRef, NetnsError)>,
    /// Totals over every namespace dumped.
    pub stats: DumpStats,
    /// Container or pod of each owner pid that runs in one.
    pub containers: HashMap<u32, ContainerRef>,
}

impl MultiDump {
    /// The container or pod of a socket's first owner that runs in one.
    pub fn container_of(&self, s: &SocketSnapshot) -> Option<&ContainerRef> {
        s.owners.iter().find_map(|o| self.containers.get(&o.pid))
    }

    /// Every socket with its namespace.
    pub fn iter(&self) -> impl Iterator<Item = (&NetnsRef, &SocketSnapshot)> {
        self.namespaces
            .iter()
            .flat_map(|n| n.sockets.iter().map(move |s| (&n.netns, s)))
    }

    /// For a dump made without processes: moves the owners of sockets already in `prev` (same
    /// namespace and cookie) over, and scans `/proc` only when sockets new since `prev` need
    /// owners, recording only those. A refresh of an unchanged socket table then costs no
    /// `/proc` scan at all.
    pub fn inherit_owners(&mut self, prev: &mut MultiDump) {
        let mut old: HashMap<(u64, u64), Vec<netblame_core::observe::SocketOwner>> = HashMap::new();
        for n in prev.namespaces.iter_mut() {
            for s in n.sockets.iter_mut().filter(|s| !s.owners.is_empty()) {
                old.insert((n.netns.inode, s.cookie), std::mem::take(&mut s.owners));
            }
        }
        let mut wanted = std::collections::HashSet::new();
        for n in self.namespaces.iter_mut() {
            for s in n.sockets.iter_mut() {
                match old.remove(&(n.netns.inode, s.cookie)) {
                    Some(o) => s.owners = o,
                    None if s.inode != 0 => {
                        wanted.insert(s.inode);
                    }
                    None => {}
                }
            }
        }
        let mut containers = std::mem::take(&mut prev.containers);
        let mut stats = std::mem::take(&mut self.stats);
        stats.processes_mapped = true;
        stats.unreadable_processes = prev.stats.unreadable_processes;
        if !wanted.is_empty() {
            let mut map = ProcMap::scan(Some(&wanted));
            stats.unreadable_processes = map.unreadable_processes;
            stats.exited_processes = map.exited_processes;
            for n in self.namespaces.iter_mut() {
                for s in n.sockets.iter_mut().filter(|s| wanted.contains(&s.inode)) {
                    if let Some(o) = map.take(s.inode) {
                        s.owners = o;
                    }
                }
            }
            containers.extend(named_containers(&mut map));
        }
        stats.unmapped_sockets = self
            .iter()
            .filter(|(_, s)| s.inode != 0 && s.owners.is_empty())
            .count();
        self.stats = stats;
        self.containers = containers;
    }
}

/// Names every container found in a scan from the node's pod log directories.
fn named_containers(map: &mut ProcMap) -> HashMap<u32, ContainerRef> {
    let mut containers = std::mem::take(&mut map.containers);
    if containers
        .values()
        .any(|c| c.pod_uid.is_some() || c.id.is_some())
    {
        let names = PodNames::scan();
        if !names.is_empty() {
            containers.values_mut().for_each(|c| names.name(c));
        }
    }
    containers
}

/// Gives each socket its owners from `map`, counting those left unmapped.
fn attach_owners<'a>(
    map: &mut ProcMap,
    sockets: impl Iterator<Item = &'a mut SocketSnapshot>,
    stats: &mut DumpStats,
) {
    stats.processes_mapped = true;
    stats.unreadable_processes = map.unreadable_processes;
    stats.exited_processes = map.exited_processes;
    for s in sockets {
        if s.inode == 0 {
            continue;
        }
        match map.take(s.inode) {
            Some(o) => s.owners = o,
            None => stats.unmapped_sockets += 1,
        }
    }
}

/// True when the calling thread's network namespace has no TCP socket at all, by
/// `/proc/thread-self/net/sockstat{,6}` (`TCP: inuse 0 ... tw 0`, `TCP6: inuse 0`). False when
/// unsure.
fn has_no_tcp_sockets() -> bool {
    let field = |text: &str, line: &str, key: &str| -> Option<u64> {
        let l = text.lines().find(|l| l.starts_with(line))?;
        let toks: Vec<&str> = l[line.len()..].split_whitespace().collect();
        toks.windows(2)
            .find(|w| w[0] == key)
            .and_then(|w| w[1].parse().ok())
    };
    let (Ok(v4), Ok(v6)) = (
        std::fs::read_to_string("/proc/thread-self/net/sockstat"),
        std::fs::read_to_string("/proc/thread-self/net/sockstat6"),
    ) else {
        return false;
    };
    field(&v4, "TCP:", "inuse") == Some(0)
        && field(&v4, "TCP:", "tw") == Some(0)
        && field(&v6, "TCP6:", "inuse") == Some(0)
}

/// Dumps TCP sockets in each of `namespaces` (entered in turn on one dedicated thread), while
/// one `/proc` scan maps them all to processes when asked. A namespace that vanished or cannot
/// be entered is listed in [`MultiDump::skipped`], never an error; `keep` filters as in
/// [`dump_filtered`].
pub fn dump_namespaces(
    req: &DumpRequest,
    namespaces: &[Netns],
    keep: impl Fn(&SocketSnapshot) -> bool + Sync,
) -> MultiDump {
    let scan = req
        .processes
        .then(|| std::thread::spawn(|| ProcMap::scan(None)));
    let results = crate::netns::visit(namespaces, |_| {
        let mut sockets = Vec::new();
        if has_no_tcp_sockets() {
            // Every dump walks the kernel's host-wide tables: skip namespaces with nothing in
            // them (most of a node's pod namespaces hold a few sockets, many none).
            return Ok((sockets, 0));
        }
        dump_each(req, |s| {
            if keep(&s) {
                sockets.push(s)
            }
        })
        .map(|undecodable| (sockets, undecodable))
    });
    let mut out = MultiDump::default();
    for (ns, r) in namespaces.iter().zip(results) {
        match r {
            Ok(Ok((sockets, undecodable))) => {
                out.stats.undecodable += undecodable;
                out.namespaces.push(NetnsDump {
                    netns: ns.id.clone(),
                    current: ns.current,
                    sockets,
                    undecodable,
                });
            }
            Ok(Err(e)) => out.skipped.push((
                ns.id.clone(),
                NetnsError::Enter(ns.id.label(), io::Error::other(e.to_string())),
            )),
            Err(e) => out.skipped.push((ns.id.clone(), e)),
        }
    }
    if let Some(h) = scan {
        if let Ok(mut map) = h.join() {
            let mut stats = std::mem::take(&mut out.stats);
            attach_owners(
                &mut map,
                out.namespaces.iter_mut().flat_map(|n| n.sockets.iter_mut()),
                &mut stats,
            );
            out.stats = stats;
            out.containers = named_containers(&mut map);
        }
    }
    out.stats.sockets = out.namespaces.iter().map(|n| n.sockets.len()).sum();
    out
}

/// Why a dump failed.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("sock_diag netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("sock_diag dump refused by the kernel: {0}")]
    Kernel(#[source] io::Error),
    #[error("sock_diag reply malformed: {0}")]
    Decode(String),
}

/// Dumps TCP sockets and, if asked, maps them to processes (the `/proc` scan runs on a second
/// thread while the dump streams in).
pub fn dump(req: &DumpRequest) -> Result<Dump, DiagError> {
    dump_filtered(req, |_| true)
}

/// Like [`dump`], keeping only sockets for which `keep` returns true (applied as each batch
/// arrives, before process mapping).
pub fn dump_filtered(
    req: &DumpRequest,
    mut keep: impl FnMut(&SocketSnapshot) -> bool,
) -> Result<Dump, DiagError> {
    let scan = req
        .processes
        .then(|| std::thread::spawn(|| ProcMap::scan(None)));
    let mut sockets = Vec::new();
    let undecodable = dump_each(req, |s| {
        if keep(&s) {
            sockets.push(s);
        }
    });
    let mut stats = DumpStats::default();
    let undecodable = match undecodable {
        Ok(n) => n,
        Err(e) => {
            if let Some(h) = scan {
                let _ = h.join();
            }
            return Err(e);
        }
    };
    stats.undecodable = undecodable;
    let mut containers = HashMap::new();
    if let Some(h) = scan {
        let mut map = h
            .join()
            .map_err(|_| DiagError::Decode("process scan thread panicked".into()))?;
        attach_owners(&mut map, sockets.iter_mut(), &mut stats);
        containers = named_containers(&mut map);
    }
    stats.sockets = sockets.len();
    Ok(Dump {
        sockets,
        stats,
        containers,
    })
}

/// Streams the dump: calls `each` for every socket as its netlink batch arrives, without process
/// mapping (use [`ProcMap`] for that). Returns how many messages could not be decoded.
pub fn dump_each(
    req: &DumpRequest,
    mut each: impl FnMut(SocketSnapshot),
) -> Result<usize, DiagError> {
    let mut undecodable = 0;
    let mask = req.state_mask();
    let families = [
        (req.ipv4, libc::AF_INET as u8),
        (req.ipv6, libc::AF_INET6 as u8),
    ];
    let mut sock = netlink::DiagSocket::open()?;
    if req.ipv4 && req.ipv6 {
        // One walk of the kernel's tables for both families; per family if refused.
        let mut seen = 0usize;
        match sock.dump_both(mask, &mut |s| {
            seen += 1;
            each(s)
        }) {
            Ok(n) => return Ok(n),
            Err(DiagError::Kernel(_)) if seen == 0 => {}
            Err(e) => return Err(e),
        }
    }
    for (_, family) in families.into_iter().filter(|(on, _)| *on) {
        undecodable += sock.dump_family(family, mask, &mut each)?;
    }
    Ok(undecodable)
}
