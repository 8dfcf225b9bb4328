//! Socket options netblame reads and sets on its own sockets: `TCP_INFO`, buffer sizes,
//! the receive low-water mark.
//!
//! Thin safe wrappers over `getsockopt`/`setsockopt`; `TCP_INFO` bytes go through the
//! length-aware parser in netblame-core.

use netblame_core::observe::TcpInfo;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

fn getsockopt_bytes(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for len bytes and len is passed by pointer as the API requires.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
    let mut buf = [0u8; 4];
    getsockopt_bytes(fd, level, name, &mut buf)?;
    Ok(i32::from_ne_bytes(buf))
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: i32) -> io::Result<()> {
    // SAFETY: value lives for the call; the length matches its type.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads and parses `TCP_INFO` of a connected TCP socket, whatever length the kernel returns.
pub fn tcp_info(sock: &impl AsRawFd) -> io::Result<TcpInfo> {
    let mut buf = [0u8; 512];
    let len = getsockopt_bytes(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        &mut buf,
    )?;
    TcpInfo::parse(&buf[..len])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// `SO_RCVBUF` as the kernel reports it (`sk_rcvbuf`: twice what was set, capped by rmem_max).
pub fn rcvbuf(sock: &impl AsRawFd) -> io::Result<u64> {
    getsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF).map(|v| v.max(0) as u64)
}

/// `SO_SNDBUF` as the kernel reports it.
pub fn sndbuf(sock: &impl AsRawFd) -> io::Result<u64> {
    getsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF).map(|v| v.max(0) as u64)
}

/// Sets `SO_RCVBUF` (before connect/listen to affect the window scale). Values above
/// `i32::MAX` are rejected.
pub fn set_rcvbuf(sock: &impl AsRawFd, bytes: u64) -> io::Result<()> {
    let v = i32::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "SO_RCVBUF too large"))?;
    setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, v)
}

/// Sets `SO_SNDBUF`.
pub fn set_sndbuf(sock: &impl AsRawFd, bytes: u64) -> io::Result<()> {
    let v = i32::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "SO_SNDBUF too large"))?;
    setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, v)
}

/// Sets `SO_MAX_PACING_RATE` in bytes per second: the most the kernel lets the socket send
/// per second, paced by the fq qdisc or, where there is none, by TCP's own pacing (Linux 4.13+).
/// Passed as 64 bits (Linux 4.20+ reads all of them; older kernels read the low 32, enough up
/// to 34 Gbit/s). socket2 has no setter for it.
pub fn set_max_pacing_rate(sock: &impl AsRawFd, bytes_per_second: u64) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live u64 for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&bytes_per_second as *const u64).cast(),
            std::mem::size_of::<u64>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `SO_MAX_PACING_RATE` of a socket, bytes per second (`u64::MAX`: unlimited).
pub fn max_pacing_rate(sock: &impl AsRawFd) -> io::Result<u64> {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: v and len are live and len gives v's size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // A 4-byte answer (older kernels): ~0U means unlimited.
    Ok(if len == 4 {
        let low = v as u32;
        if low == u32::MAX {
            u64::MAX
        } else {
            u64::from(low)
        }
    } else {
        v
    })
}

/// Sets `SO_RCVLOWAT`: the kernel wakes a reader only once this many bytes are queued (it
/// caps the value at half of a locked receive buffer, so a small buffer cannot stall the
/// reader). socket2 has no setter for it.
pub fn set_rcvlowat(sock: &impl AsRawFd, bytes: u64) -> io::Result<()> {
    let v = i32::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "SO_RCVLOWAT too large"))?;
    setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, v)
}

/// The congestion-control algorithm of a TCP socket (`TCP_CONGESTION`).
pub fn congestion(sock: &impl AsRawFd) -> io::Result<String> {
    let mut buf = [0u8; 32];
    let len = getsockopt_bytes(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_CONGESTION,
        &mut buf,
    )?;
    Ok(String::from_utf8_lossy(&buf[..len])
        .trim_end_matches('\0')
        .to_string())
}

/// Bytes queued for reading on a socket (Recv-Q: `SIOCINQ`, alias `FIONREAD`).
pub fn recv_queue(sock: &impl AsRawFd) -> io::Result<u64> {
    let mut v: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut v) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.max(0) as u64)
}
