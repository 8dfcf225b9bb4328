//! Socket inode -> owning processes (pid, command, fd, cgroup), from one pass over `/proc`:
//! `/proc/PID/fd/*` links read `socket:[INODE]`. Other users' processes are unreadable without
//! root; the map counts them so a command can say what it could not see. Each owner's container
//! or pod identity is parsed from the same `/proc/PID/cgroup` read (see [`crate::container`]).

use netblame_core::observe::{ContainerRef, SocketOwner};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Socket inodes and the processes holding them.
#[derive(Debug, Clone, Default)]
pub struct ProcMap {
    by_inode: HashMap<u64, Vec<SocketOwner>>,
    /// Container or pod identity of each socket-owning process that runs in one.
    pub containers: HashMap<u32, ContainerRef>,
    /// Processes whose fd table could not be read (permission).
    pub unreadable_processes: usize,
    /// Processes that exited while they were being read (their sockets may be unmapped).
    pub exited_processes: usize,
    /// Processes scanned.
    pub processes: usize,
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Calls `each(fd, link target)` for every entry of a `/proc/PID/fd` directory. Reads the links
/// relative to the open directory (`readlinkat`), so the kernel does not walk
/// `/proc/PID/fd/N` from the root for each of tens of thousands of descriptors.
fn for_each_fd_link(fd_dir: &Path, mut each: impl FnMut(u32, &[u8])) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(fd_dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c_path is a valid NUL-terminated string.
    let dir = unsafe { libc::opendir(c_path.as_ptr()) };
    if dir.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dir is a valid DIR* until closedir below.
    let dfd = unsafe { libc::dirfd(dir) };
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: dir is valid; readdir returns NULL at the end (or on error).
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is a NUL-terminated string inside the dirent readdir returned.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
        let Some(fd_num) = std::str::from_utf8(name.to_bytes())
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue; // "." and ".."
        };
        // SAFETY: dfd is open, name is NUL-terminated, buf is valid for buf.len() bytes.
        let n = unsafe { libc::readlinkat(dfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            each(fd_num, &buf[..n as usize]);
        }
    }
    // SAFETY: dir came from opendir and is closed once.
    unsafe { libc::closedir(dir) };
    Ok(())
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The cgroup v2 path (`0::/path`), else the first hierarchy's path, from `/proc/PID/cgroup`.
fn cgroup_of(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("0::"))
        .or_else(|| text.lines().next())?;
    line.splitn(3, ':').nth(2).map(str::to_string)
}

impl ProcMap {
    /// Scans every process under `/proc` once. With `wanted`, only those inodes are kept.
    pub fn scan(wanted: Option<&HashSet<u64>>) -> ProcMap {
        Self::scan_root(Path::new("/proc"), wanted)
    }

    fn scan_root(root: &Path, wanted: Option<&HashSet<u64>>) -> ProcMap {
        let mut map = ProcMap::default();
        let Ok(entries) = std::fs::read_dir(root) else {
            return map;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = std::str::from_utf8(name.as_bytes())
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            map.processes += 1;
            let dir = entry.path();
            match map.scan_process(pid, &dir, wanted) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    map.unreadable_processes += 1
                }
                Err(_) => map.exited_processes += 1,
            }
        }
        map
    }

    fn scan_process(
        &mut self,
        pid: u32,
        dir: &Path,
        wanted: Option<&HashSet<u64>>,
    ) -> io::Result<()> {
        let mut found: Vec<(u64, u32)> = Vec::new();
        for_each_fd_link(&dir.join("fd"), |fd_num, link| {
            let Some(inode) = socket_inode(link) else {
                return;
            };
            if wanted.is_some_and(|w| !w.contains(&inode)) {
                return;
            }
            found.push((inode, fd_num));
        })?;
        if found.is_empty() {
            return Ok(());
        }
        let (Some(command), Ok(cgroup_text)) = (
            read_trimmed(&dir.join("comm")),
            std::fs::read_to_string(dir.join("cgroup")),
        ) else {
            // Exited between reading its descriptors and its identity: skipped, counted.
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let cgroup = cgroup_of(&cgroup_text);
        if let Some(c) = crate::container::from_proc_cgroup(&cgroup_text) {
            self.containers.insert(pid, c);
        }
        for (inode, fd) in found {
            let owners = self.by_inode.entry(inode).or_default();
            if owners.iter().any(|o| o.pid == pid) {
                continue; // the same socket twice in one process (dup)
            }
            owners.push(SocketOwner {
                pid,
                command: command.clone(),
                fd,
                cgroup: cgroup.clone(),
            });
        }
        Ok(())
    }

    /// The processes holding socket `inode`, if any readable one does.
    pub fn owners(&self, inode: u64) -> Option<&[SocketOwner]> {
        self.by_inode.get(&inode).map(Vec::as_slice)
    }

    /// Takes the owners of socket `inode` out of the map (no copy), if any readable process holds it.
    pub fn take(&mut self, inode: u64) -> Option<Vec<SocketOwner>> {
        self.by_inode.remove(&inode)
    }

    /// How many socket inodes were found.
    pub fn len(&self) -> usize {
        self.by_inode.len()
    }

    /// True when no socket was found.
    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(socket_inode(b"socket:[4242]"), Some(4242));
        assert_eq!(socket_inode(b"pipe:[4242]"), None);
        assert_eq!(socket_inode(b"socket:[x]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[test]
    fn finds_this_process_as_owner_of_its_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let meta = std::fs::metadata(format!("/proc/self/fd/{}", l.as_raw_fd())).unwrap();
        use std::os::unix::fs::MetadataExt;
        let inode = meta.ino();
        let map = ProcMap::scan(Some(&HashSet::from([inode])));
        let owners = map.owners(inode).expect("own socket mapped");
        assert_eq!(owners[0].pid, std::process::id());
        assert_eq!(owners[0].fd, l.as_raw_fd() as u32);
        assert_eq!(map.len(), 1);
    }
}
