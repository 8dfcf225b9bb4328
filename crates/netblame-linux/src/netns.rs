//! Network namespaces: naming one (`--netns NAME|PATH|PID`), finding every distinct one on the
//! host (`/run/netns` and `/proc/*/ns/net`, each once by inode), and running code inside one.
//!
//! Code runs inside a namespace on a dedicated thread that entered it with `setns(2)`: sock_diag
//! and rtnetlink sockets, `/proc/thread-self/net` and `/proc/sys/net` opened by that thread are
//! the namespace's. The calling thread never moves, and no `ip netns exec` is spawned.
//!
//! ```no_run
//! use netblame_linux::netns::{discover, visit};
//! let found = discover();
//! for (ns, r) in found.namespaces.iter().zip(visit(&found.namespaces, |_| {
//!     std::fs::read_to_string("/proc/thread-self/net/sockstat")
//! })) {
//!     println!("{}: {:?}", ns.id.label(), r.map(|t| t.map(|t| t.len())));
//! }
//! ```

use netblame_core::observe::NetnsRef;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where `ip netns add` puts named namespaces.
pub const RUN_NETNS: &str = "/run/netns";
/// `statfs` magic of nsfs, the filesystem namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// How a user named a namespace on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsSpec {
    /// A name under `/run/netns`.
    Name(String),
    /// A path to a namespace file (`/proc/PID/ns/net`, a bind mount, `/var/run/docker/netns/X`).
    Path(PathBuf),
    /// A process whose network namespace to use.
    Pid(u32),
}

impl FromStr for NetnsSpec {
    type Err = String;

    /// Digits are a pid, anything with a `/` a path, the rest a name under `/run/netns`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("an empty namespace name".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(NetnsSpec::Pid)
                .map_err(|_| format!("'{s}' is not a process id"));
        }
        if s.contains('/') {
            return Ok(NetnsSpec::Path(PathBuf::from(s)));
        }
        Ok(NetnsSpec::Name(s.to_string()))
    }
}

/// Why a namespace could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name, path or process does not exist (any more).
    #[error("network namespace {0} not found ({1})")]
    NotFound(String, String),
    /// The file exists but is not a network namespace.
    #[error("{0} is not a network namespace file")]
    NotNetns(String),
    /// Opening or entering it needs privilege.
    #[error("entering network namespace {0} needs root (CAP_SYS_ADMIN): {1}")]
    Permission(String, io::Error),
    /// It was found, and was gone (or replaced) by the time it was visited.
    #[error("network namespace {0} vanished before it was visited")]
    Vanished(String),
    /// `setns` failed otherwise, or the worker thread died.
    #[error("entering network namespace {0}: {1}")]
    Enter(String, io::Error),
}

impl NetnsError {
    /// True for [`NetnsError::Permission`].
    pub fn is_permission(&self) -> bool {
        matches!(self, NetnsError::Permission(..))
    }
}

/// A network namespace and a file that opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    /// Inode and name.
    pub id: NetnsRef,
    /// The namespace file: `/run/netns/NAME`, a given path, or `/proc/PID/ns/net`.
    pub path: PathBuf,
    /// True for the namespace this process runs in.
    pub current: bool,
}

fn is_nsfs(path: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statfs reads a NUL-terminated path and writes into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string, st a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == NSFS_MAGIC)
}

/// The inode of the namespace a namespace file names, checking it is one.
fn ns_inode(path: &Path) -> Result<u64, NetnsError> {
    let label = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => NetnsError::Permission(label.clone(), e),
        _ => NetnsError::NotFound(label.clone(), e.to_string()),
    })?;
    if !is_nsfs(path).unwrap_or(false) {
        return Err(NetnsError::NotNetns(label));
    }
    Ok(meta.ino())
}

/// Names of the namespaces under `/run/netns`, by inode.
pub fn names() -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(RUN_NETNS) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if let Ok(ino) = ns_inode(&p) {
            out.entry(ino)
                .or_insert_with(|| e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// The inode of this process's network namespace.
pub fn current_inode() -> io::Result<u64> {
    std::fs::metadata("/proc/self/ns/net").map(|m| m.ino())
}

impl Netns {
    /// Resolves a name, path or pid to a namespace (checking it exists and is one).
    pub fn resolve(spec: &NetnsSpec) -> Result<Netns, NetnsError> {
        let path = match spec {
            NetnsSpec::Name(n) => {
                if n.contains('/') || n == "." || n == ".." {
                    return Err(NetnsError::NotFound(n.clone(), "not a name".into()));
                }
                Path::new(RUN_NETNS).join(n)
            }
            NetnsSpec::Path(p) => p.clone(),
            NetnsSpec::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        };
        let inode = ns_inode(&path).map_err(|e| match (e, spec) {
            (NetnsError::NotFound(_, why), NetnsSpec::Name(n)) => {
                NetnsError::NotFound(n.clone(), format!("{why}; `ip netns list` shows the names"))
            }
            (NetnsError::NotFound(_, _), NetnsSpec::Pid(p)) => {
                NetnsError::NotFound(format!("of process {p}"), "no such process".into())
            }
            (e, _) => e,
        })?;
        let name = match spec {
            NetnsSpec::Name(n) => Some(n.clone()),
            _ => names().remove(&inode),
        };
        Ok(Netns {
            id: NetnsRef { inode, name },
            path,
            current: current_inode().ok() == Some(inode),
        })
    }

    /// This process's namespace.
    pub fn current() -> io::Result<Netns> {
        let inode = current_inode()?;
        Ok(Netns {
            id: NetnsRef {
                inode,
                name: names().remove(&inode),
            },
            path: PathBuf::from("/proc/self/ns/net"),
            current: true,
        })
    }

    /// Opens the namespace file, checking it still names the same namespace (a pid may have
    /// exited and been reused, a name deleted and re-created).
    pub fn open(&self) -> Result<File, NetnsError> {
        let f = File::open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => NetnsError::Permission(self.id.label(), e),
            _ => NetnsError::Vanished(self.id.label()),
        })?;
        match f.metadata() {
            Ok(m) if m.ino() == self.id.inode => Ok(f),
            _ => Err(NetnsError::Vanished(self.id.label())),
        }
    }

    /// Runs `f` on a new thread inside this namespace and returns its result. The namespace
    /// file is opened first, so a namespace that vanished is an error, never a crash.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        let file = self.open()?;
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&file, self)?;
                Ok(f())
            })
            .join()
            .map_err(|_| {
                NetnsError::Enter(self.id.label(), io::Error::other("worker thread panicked"))
            })?
        })
    }
}

/// Moves the calling thread into the namespace open as `file`.
fn enter(file: &File, ns: &Netns) -> Result<(), NetnsError> {
    if ns.current {
        return Ok(());
    }
    // SAFETY: setns on a valid namespace fd changes only the calling thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EPERM) => NetnsError::Permission(ns.id.label(), e),
        _ => NetnsError::Enter(ns.id.label(), e),
    })
}

/// Every distinct network namespace found.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Each once, this process's first, then by inode.
    pub namespaces: Vec<Netns>,
    /// Processes whose `ns/net` could not be read (other users' without root).
    pub unreadable_processes: usize,
}

/// Finds every distinct network namespace: the names under `/run/netns` and the namespaces of
/// every process under `/proc` (each namespace once, by inode; a named one by its name).
pub fn discover() -> Discovery {
    let mut by_inode: BTreeMap<u64, Netns> = BTreeMap::new();
    let current = current_inode().ok();
    if let Ok(rd) = std::fs::read_dir(RUN_NETNS) {
        for e in rd.flatten() {
            let path = e.path();
            let Ok(inode) = ns_inode(&path) else { continue };
            by_inode.entry(inode).or_insert_with(|| Netns {
                id: NetnsRef {
                    inode,
                    name: Some(e.file_name().to_string_lossy().into_owned()),
                },
                path,
                current: current == Some(inode),
            });
        }
    }
    let mut unreadable = 0;
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            match std::fs::metadata(&path) {
                Ok(m) => {
                    by_inode.entry(m.ino()).or_insert_with(|| Netns {
                        id: NetnsRef {
                            inode: m.ino(),
                            name: None,
                        },
                        path,
                        current: current == Some(m.ino()),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => unreadable += 1,
                Err(_) => {} // exited, or a kernel thread
            }
        }
    }
    let mut namespaces: Vec<Netns> = by_inode.into_values().collect();
    namespaces.sort_by_key(|n| (!n.current, n.id.inode));
    Discovery {
        namespaces,
        unreadable_processes: unreadable,
    }
}

/// Runs `f` inside each namespace, on dedicated threads that enter them with `setns` (this
/// process's own namespace runs on such a thread too): one thread per CPU, at most four, each
/// visiting its share of the namespaces in turn. One result per namespace, in order: a
/// namespace that vanished or could not be entered is an error, and the rest still run.
pub fn visit<T: Send>(
    namespaces: &[Netns],
    f: impl Fn(&Netns) -> T + Sync,
) -> Vec<Result<T, NetnsError>> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A few namespaces are not worth a second thread.
    let workers = cpus.min(4).min(namespaces.len().div_ceil(16)).max(1);
    let chunk = namespaces.len().div_ceil(workers).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .chunks(chunk)
            .map(|part| (part, s.spawn(move || visit_in_turn(part, f))))
            .collect();
        handles
            .into_iter()
            .flat_map(|(part, h)| {
                h.join().unwrap_or_else(|_| {
                    part.iter()
                        .map(|ns| {
                            Err(NetnsError::Enter(
                                ns.id.label(),
                                io::Error::other("worker thread panicked"),
                            ))
                        })
                        .collect()
                })
            })
            .collect()
    })
}

/// Visits `namespaces` one after another on the calling thread (a dedicated one: it is left in
/// the last namespace entered).
fn visit_in_turn<T>(
    namespaces: &[Netns],
    f: &(impl Fn(&Netns) -> T + Sync),
) -> Vec<Result<T, NetnsError>> {
    let home = File::open("/proc/self/ns/net").ok();
    let mut out = Vec::with_capacity(namespaces.len());
    let mut away = false;
    for ns in namespaces {
        let r = (|| {
            if ns.current {
                if away {
                    // Back home: enter the process's own namespace again.
                    let home = home
                        .as_ref()
                        .ok_or_else(|| NetnsError::Vanished(ns.id.label()))?;
                    // SAFETY: as in `enter`.
                    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(NetnsError::Enter(ns.id.label(), io::Error::last_os_error()));
                    }
                    away = false;
                }
                return Ok(f(ns));
            }
            let file = ns.open()?;
            enter(&file, ns)?;
            away = true;
            Ok(f(ns))
        })();
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_pid_path_or_name() {
        assert_eq!("123".parse(), Ok(NetnsSpec::Pid(123)));
        assert_eq!(
            "/proc/1/ns/net".parse(),
            Ok(NetnsSpec::Path("/proc/1/ns/net".into()))
        );
        assert_eq!("blue".parse(), Ok(NetnsSpec::Name("blue".into())));
        assert!("".parse::<NetnsSpec>().is_err());
    }

    #[test]
    fn own_namespace_is_found_first_and_resolves_by_pid() {
        let d = discover();
        let me = current_inode().unwrap();
        assert_eq!(d.namespaces[0].id.inode, me);
        assert!(d.namespaces[0].current);
        let mut inodes: Vec<u64> = d.namespaces.iter().map(|n| n.id.inode).collect();
        inodes.dedup();
        assert_eq!(inodes.len(), d.namespaces.len());
        let ns = Netns::resolve(&NetnsSpec::Pid(std::process::id())).unwrap();
        assert_eq!(ns.id.inode, me);
        assert!(matches!(
            Netns::resolve(&NetnsSpec::Name("no-such-netblame-ns".into())),
            Err(NetnsError::NotFound(..))
        ));
        assert!(matches!(
            Netns::resolve(&NetnsSpec::Path("/etc/hostname".into())),
            Err(NetnsError::NotNetns(..))
        ));
    }
}
