//! TUN devices opened inside a namespace: raw IPv4 packets in and out, no packet-info header,
//! with TCP segmentation offload when the kernel grants it.
//!
//! Raw `ioctl(TUNSETIFF)` on `/dev/net/tun` instead of a crate: the lab needs a non-blocking
//! `IFF_TUN | IFF_NO_PI` fd opened by a thread that sits inside the namespace (the device lands
//! in the namespace of the thread that opened `/dev/net/tun`), plus three more ioctls for
//! offload, and keeps the GSO frames whole (see [`crate::vnet`] for why not tun-rs).
//! Addresses, routes, MTU and txqueuelen are set with iproute2. The device is not persistent:
//! it disappears when the fd closes, so a forwarder that dies takes its devices with it.
//!
//! Offload ([`TunMode::Offload`]): `IFF_VNET_HDR`, `TUNSETVNETHDRSZ(10)` and
//! `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)`. Every frame read or written then starts with a
//! `virtio_net_hdr`, and TCP/IPv4 arrives as super-packets of up to 64 KiB. The lab routes only
//! IPv4, so TSO6 is not asked for; UDP segmentation offload is not either (the lab's UDP is
//! small datagrams, and the kernel segments UDP GSO itself when the device lacks USO). When
//! any of this fails, the device is reopened plain ([`TunMode::Plain`]: one packet per read).

use crate::netns;
use crate::vnet::VNET_HDR_LEN;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IOW('T', 216, int)`.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;

/// How a TUN device exchanges packets with the emulator.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TunMode {
    /// One IP packet per read/write, at most the MTU.
    #[default]
    Plain,
    /// A `virtio_net_hdr` before every packet; TCP/IPv4 comes and goes as GSO super-packets.
    Offload,
}

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
    /// Whether frames carry a `virtio_net_hdr` (offload granted).
    pub mode: TunMode,
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
    /// Ask for TCP segmentation offload (falls back to plain when the kernel refuses).
    pub offload: bool,
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
    let offload = cfg.offload;
    let (fd, mode) = netns::run_in(ns, move || {
        if offload {
            // A kernel without offload support for TUN refuses one of the ioctls: the fd is
            // closed (the device vanishes with it) and the device opened again, plain.
            if let Ok(fd) = open_here(&name, true) {
                return Ok((fd, TunMode::Offload));
            }
        }
        Ok((open_here(&name, false)?, TunMode::Plain))
    })?;
    let tun = Tun {
        fd,
        mode,
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

/// Opens `/dev/net/tun` in the calling thread's namespace and attaches device `name`, with
/// a virtio header and TCP/IPv4 segmentation offload when `offload`.
fn open_here(name: &str, offload: bool) -> io::Result<OwnedFd> {
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
        flags: IFF_TUN | IFF_NO_PI | if offload { IFF_VNET_HDR } else { 0 },
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the fd is open; req is a properly sized, initialized ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
    }
    if offload {
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ as _, &hdr_len) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("TUNSETVNETHDRSZ {name}: {e}"),
            ));
        }
        // SAFETY: TUNSETOFFLOAD takes the flags as the argument value itself.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                TUNSETOFFLOAD as _,
                (TUN_F_CSUM | TUN_F_TSO4) as libc::c_ulong,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("TUNSETOFFLOAD {name}: {e}"),
            ));
        }
    }
    // SAFETY: into_raw_fd hands over ownership of a valid fd exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(file.into_raw_fd()) })
}

impl Tun {
    /// Reads one frame (header included in offload mode); `Ok(None)` when none is waiting.
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

    /// Reads one frame into `buf`, replacing its contents (up to its capacity); `Ok(None)`
    /// when none is waiting. Saves zeroing a fresh buffer per read.
    pub fn recv_vec(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        buf.clear();
        let room = buf.spare_capacity_mut();
        // SAFETY: the spare capacity is valid for room.len() bytes of writes; read(2) writes
        // at most that many.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), room.as_mut_ptr().cast(), room.len()) };
        if n >= 0 {
            // SAFETY: read(2) initialized the first n bytes of the spare capacity.
            unsafe { buf.set_len(n as usize) };
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        }
    }

    /// Writes one frame (header included in offload mode) into the kernel of this device's
    /// namespace.
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
