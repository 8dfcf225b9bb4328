//! TUN devices opened inside a namespace: raw IPv4 packets in and out, no packet-info header.
//!
//! Raw `ioctl(TUNSETIFF)` on `/dev/net/tun` instead of a crate: the lab needs exactly one thing
//! (a non-blocking `IFF_TUN | IFF_NO_PI` fd opened by a thread that sits inside the namespace,
//! because the device lands in the namespace of the thread that opened `/dev/net/tun`), and
//! the ioctl is a dozen lines. Addresses, routes, MTU and txqueuelen are set with iproute2.
//! The device is not persistent: it disappears when the fd closes, so a forwarder that dies
//! takes its devices with it.

use crate::netns;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags, padded to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TUN device (non-blocking fd).
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    /// Interface name inside its namespace.
    pub name: String,
    /// The namespace it lives in.
    pub netns: String,
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// How one end of the emulated link is addressed.
#[derive(Debug, Clone)]
pub struct TunConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// This side's address (a /32).
    pub local: Ipv4Addr,
    /// The other side's address, routed through the device.
    pub peer: Ipv4Addr,
    pub mtu: u32,
    /// Kernel queue in front of the device (default 500 is far too short for a long fat path).
    pub txqueuelen: u32,
}

/// Opens a TUN device inside namespace `ns` and gives it its address and route.
pub fn open_in(ns: &str, cfg: &TunConfig) -> io::Result<Tun> {
    if cfg.name.is_empty() || cfg.name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name '{}' must have 1 to 15 bytes", cfg.name),
        ));
    }
    let name = cfg.name.clone();
    let fd = netns::run_in(ns, move || open_here(&name))?;
    let tun = Tun {
        fd,
        name: cfg.name.clone(),
        netns: ns.to_string(),
    };
    let (mtu, qlen) = (cfg.mtu.to_string(), cfg.txqueuelen.to_string());
    netns::ip(&[
        "-n",
        ns,
        "link",
        "set",
        &cfg.name,
        "mtu",
        &mtu,
        "txqueuelen",
        &qlen,
    ])?;
    netns::ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/32", cfg.local),
        "dev",
        &cfg.name,
    ])?;
    netns::ip(&["-n", ns, "link", "set", &cfg.name, "up"])?;
    netns::ip(&[
        "-n",
        ns,
        "route",
        "add",
        &format!("{}/32", cfg.peer),
        "dev",
        &cfg.name,
    ])?;
    Ok(tun)
}

/// Opens `/dev/net/tun` in the calling thread's namespace and attaches device `name`.
fn open_here(name: &str) -> io::Result<OwnedFd> {
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening /dev/net/tun: {e} (is the tun module loaded? are you root?)"),
            )
        })?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the fd is open; req is a properly sized, initialized ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
    }
    // SAFETY: into_raw_fd hands over ownership of a valid fd exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(file.into_raw_fd()) })
}

impl Tun {
    /// Reads one packet; `Ok(None)` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        }
    }

    /// Writes one packet into the kernel of this device's namespace.
    pub fn send(&self, pkt: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: pkt is valid for pkt.len() bytes.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits up to `timeout_ms` for a packet to read; true when one is ready.
    pub fn wait_readable(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        rc > 0 && p.revents & libc::POLLIN != 0
    }
}
