//! `icmp`: echo requests. Tries an unprivileged ping socket first (allowed when the user's group
//! is in `net.ipv4.ping_group_range`), then a raw socket (root or CAP_NET_RAW).

use super::describe;
use crate::config::ProbeConfig;
use crate::state::{ProbeResult, Prober, TargetState};
use crate::target::Target;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) struct IcmpProber {
    sock: UdpSocket,
    addr: SocketAddr,
    packet: Vec<u8>,
    done: Arc<AtomicBool>,
    state: Arc<TargetState>,
    receiver: Option<JoinHandle<()>>,
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn open_socket() -> io::Result<(Socket, bool)> {
    match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
        Ok(s) => Ok((s, false)),
        Err(dgram) => match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
            Ok(s) => Ok((s, true)),
            Err(raw)
                if matches!(raw.kind(), io::ErrorKind::PermissionDenied)
                    || raw.raw_os_error() == Some(libc::EPERM) =>
            {
                let range = netblame_linux::sysctl::read("net.ipv4.ping_group_range")
                    .unwrap_or_else(|_| "?".into());
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "icmp probes need privilege: a raw socket needs root or CAP_NET_RAW ({raw}), and unprivileged \
                         ping sockets are not allowed for this group (net.ipv4.ping_group_range = {range}; {dgram}). \
                         Run as root, `setcap cap_net_raw+ep` the binary, or `sysctl -w net.ipv4.ping_group_range='0 2147483647'`; \
                         or probe with --kind tcp / udp instead"
                    ),
                ))
            }
            Err(raw) => Err(raw),
        },
    }
}

impl IcmpProber {
    pub fn open(cfg: &ProbeConfig, t: &Target, state: Arc<TargetState>) -> io::Result<Self> {
        let (sock, raw) = open_socket()?;
        let sock: UdpSocket = sock.into();
        let rx = sock.try_clone()?;
        rx.set_read_timeout(Some(Duration::from_millis(100)))?;
        let token = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((std::process::id() as u64) << 32);
        let done = Arc::new(AtomicBool::new(false));
        let (st, dn, size) = (state.clone(), done.clone(), cfg.size);
        let receiver = std::thread::Builder::new()
            .name("probe-icmp-rx".into())
            .spawn(move || {
                let mut buf = vec![0u8; size + 128];
                while !dn.load(Ordering::Relaxed) && !st.stop.load(Ordering::Relaxed) {
                    let Ok(n) = rx.recv(&mut buf) else { continue };
                    let mut p = &buf[..n];
                    if raw {
                        let ihl = ((p.first().copied().unwrap_or(0) & 0x0f) as usize) * 4;
                        if ihl < 20 || p.len() < ihl {
                            continue;
                        }
                        p = &p[ihl..];
                    }
                    // Echo reply (type 0) carrying our token.
                    if p.len() >= 24 && p[0] == 0 && p[8..16] == token.to_le_bytes() {
                        let seq = u64::from_le_bytes(p[16..24].try_into().unwrap_or_default());
                        let ns = st.since_scheduled(seq);
                        st.record(seq, ProbeResult::reply(ns));
                    }
                }
            })?;
        let mut packet = vec![0u8; 8 + cfg.size];
        packet[0] = 8; // echo request
        let id = (std::process::id() & 0xffff) as u16;
        packet[4..6].copy_from_slice(&id.to_be_bytes());
        packet[8..16].copy_from_slice(&token.to_le_bytes());
        Ok(IcmpProber {
            sock,
            addr: SocketAddr::new(t.addr.ip(), 0),
            packet,
            done,
            state,
            receiver: Some(receiver),
        })
    }
}

impl Prober for IcmpProber {
    fn fire(&mut self, seq: u64) {
        self.packet[6..8].copy_from_slice(&((seq & 0xffff) as u16).to_be_bytes());
        self.packet[16..24].copy_from_slice(&seq.to_le_bytes());
        self.packet[2..4].copy_from_slice(&[0, 0]);
        let c = checksum(&self.packet);
        self.packet[2..4].copy_from_slice(&c.to_be_bytes());
        if let Err(e) = self.sock.send_to(&self.packet, self.addr) {
            self.state.record(seq, ProbeResult::failed(0, describe(&e)));
        }
    }

    fn finish(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.receiver.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::checksum;

    #[test]
    fn checksum_of_an_echo_request() {
        // type 8, code 0, checksum 0, id 1, seq 1: sum 0x0802 -> !0x0802 = 0xf7fd.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
    }
}
