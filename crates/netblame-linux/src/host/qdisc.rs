//! Qdisc statistics over rtnetlink (`RTM_GETQDISC` dump): what `tc -s qdisc` prints — bytes,
//! packets, drops, requeues, overlimits, backlog. The socket is opened by the calling thread, so
//! it sees that thread's network namespace.

use netblame_core::observe::host::QdiscStats;
use std::io;

const RTM_NEWQDISC: u16 = 36;
const RTM_GETQDISC: u16 = 38;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const TCA_KIND: u16 = 1;
const TCA_STATS: u16 = 3;
const TCA_STATS2: u16 = 7;
const TCA_STATS_BASIC: u16 = 1;
const TCA_STATS_QUEUE: u16 = 3;
const TCA_STATS_PKT64: u16 = 8;
const NLMSG_HDRLEN: usize = 16;
const TCMSG_LEN: usize = 20;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes(s.try_into().unwrap_or_default()) as u64)
        .unwrap_or(0)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map(|s| u64::from_ne_bytes(s.try_into().unwrap_or_default()))
        .unwrap_or(0)
}

/// Iterates the `rtattr`s of a buffer: `(type, payload)`.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    out
}

/// `major:minor` in hex, as `tc` prints handles; `root`/`ingress` for the special parents.
pub fn handle_text(h: u32) -> String {
    match h {
        0xFFFF_FFFF => "root".to_string(),
        0xFFFF_FFF1 => "ingress".to_string(),
        0 => "0:".to_string(),
        _ => format!("{:x}:{:x}", h >> 16, h & 0xffff),
    }
}

/// Parses one `RTM_NEWQDISC` payload (tcmsg + attributes); `name_of` maps an ifindex to a name.
pub fn parse_qdisc(payload: &[u8], name_of: &dyn Fn(u32) -> String) -> Option<QdiscStats> {
    if payload.len() < TCMSG_LEN {
        return None;
    }
    let ifindex = u32_at(payload, 4) as u32;
    let handle = u32_at(payload, 8) as u32;
    let parent = u32_at(payload, 12) as u32;
    let mut q = QdiscStats {
        device: name_of(ifindex),
        handle: handle_text(handle),
        parent: handle_text(parent),
        ..Default::default()
    };
    let mut have_stats2 = false;
    for (ty, data) in attrs(&payload[TCMSG_LEN..]) {
        match ty {
            TCA_KIND => {
                q.kind = String::from_utf8_lossy(data)
                    .trim_end_matches('\0')
                    .to_string()
            }
            TCA_STATS2 => {
                have_stats2 = true;
                for (sty, s) in attrs(data) {
                    match sty {
                        TCA_STATS_BASIC => {
                            q.bytes = u64_at(s, 0);
                            q.packets = q.packets.max(u32_at(s, 8));
                        }
                        TCA_STATS_PKT64 => q.packets = u64_at(s, 0),
                        TCA_STATS_QUEUE => {
                            q.qlen = u32_at(s, 0);
                            q.backlog_bytes = u32_at(s, 4);
                            q.drops = u32_at(s, 8);
                            q.requeues = u32_at(s, 12);
                            q.overlimits = u32_at(s, 16);
                        }
                        _ => {}
                    }
                }
            }
            // struct tc_stats: bytes u64, packets, drops, overlimits, bps, pps, qlen, backlog.
            TCA_STATS if !have_stats2 => {
                q.bytes = u64_at(data, 0);
                q.packets = u32_at(data, 8);
                q.drops = u32_at(data, 12);
                q.overlimits = u32_at(data, 16);
                q.qlen = u32_at(data, 28);
                q.backlog_bytes = u32_at(data, 32);
            }
            _ => {}
        }
    }
    Some(q)
}

/// The interface name of an index in the calling thread's namespace (`if<N>` when unknown).
pub fn ifname(index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{index}");
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the fd is owned by this guard and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Dumps every qdisc of the calling thread's network namespace.
pub fn dump() -> io::Result<Vec<QdiscStats>> {
    // SAFETY: plain socket(2) call; the fd is owned by the guard.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = Fd(fd);
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: tv lives for the call and its size is passed.
    unsafe {
        libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let mut req = [0u8; NLMSG_HDRLEN + TCMSG_LEN];
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + TCMSG_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETQDISC.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[NLMSG_HDRLEN] = libc::AF_UNSPEC as u8;
    // SAFETY: req is a valid buffer of its length; a zeroed sockaddr_nl addresses the kernel.
    let sent = unsafe {
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            fd.0,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut b = &buf[..n as usize];
        if b.is_empty() {
            return Ok(out);
        }
        while b.len() >= NLMSG_HDRLEN {
            let len = u32_at(b, 0) as usize;
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            if len < NLMSG_HDRLEN || len > b.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated rtnetlink message",
                ));
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(b[16..20].try_into().unwrap_or_default());
                    if errno == 0 {
                        return Ok(out);
                    }
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                RTM_NEWQDISC => {
                    if let Some(q) = parse_qdisc(&b[NLMSG_HDRLEN..len], &ifname) {
                        out.push(q);
                    }
                }
                _ => {}
            }
            b = &b[align4(len).min(b.len())..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        v.extend(ty.to_ne_bytes());
        v.extend(data);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_stats2_and_old_stats() {
        let mut tcmsg = vec![0u8; TCMSG_LEN];
        tcmsg[4..8].copy_from_slice(&2u32.to_ne_bytes());
        tcmsg[8..12].copy_from_slice(&0x0001_0000u32.to_ne_bytes());
        tcmsg[12..16].copy_from_slice(&0xFFFF_FFFFu32.to_ne_bytes());
        let mut basic = 1000u64.to_ne_bytes().to_vec();
        basic.extend(10u32.to_ne_bytes());
        basic.extend([0u8; 4]);
        let queue: Vec<u8> = [1u32, 2, 3, 4, 5]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let mut nested = attr(TCA_STATS_BASIC, &basic);
        nested.extend(attr(TCA_STATS_QUEUE, &queue));
        let mut msg = tcmsg.clone();
        msg.extend(attr(TCA_KIND, b"fq_codel\0"));
        msg.extend(attr(TCA_STATS2, &nested));
        let q = parse_qdisc(&msg, &|i| format!("dev{i}")).unwrap();
        assert_eq!(
            (
                q.device.as_str(),
                q.kind.as_str(),
                q.handle.as_str(),
                q.parent.as_str()
            ),
            ("dev2", "fq_codel", "1:0", "root")
        );
        assert_eq!(
            (
                q.bytes,
                q.packets,
                q.qlen,
                q.backlog_bytes,
                q.drops,
                q.requeues,
                q.overlimits
            ),
            (1000, 10, 1, 2, 3, 4, 5)
        );
        // A kernel that only sends TCA_STATS (struct tc_stats).
        let mut old = 500u64.to_ne_bytes().to_vec();
        old.extend(
            [7u32, 8, 9, 0, 0, 11, 12]
                .iter()
                .flat_map(|v| v.to_ne_bytes()),
        );
        let mut msg = tcmsg;
        msg.extend(attr(TCA_KIND, b"pfifo_fast\0"));
        msg.extend(attr(TCA_STATS, &old));
        let q = parse_qdisc(&msg, &|i| format!("dev{i}")).unwrap();
        assert_eq!(
            (
                q.bytes,
                q.packets,
                q.drops,
                q.overlimits,
                q.qlen,
                q.backlog_bytes
            ),
            (500, 7, 8, 9, 11, 12)
        );
        assert!(parse_qdisc(&[0u8; 3], &|_| String::new()).is_none());
    }

    #[test]
    fn dumps_this_hosts_qdiscs() {
        let qs = dump().unwrap();
        // Every interface has a root qdisc (noqueue at least) on any kernel that runs this.
        assert!(qs.iter().any(|q| q.parent == "root"), "{qs:?}");
        assert!(qs.iter().all(|q| !q.kind.is_empty()));
    }
}
