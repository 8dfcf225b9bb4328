//! The ring-buffer record of `bpf/netblame.h` and its decoding into core [`TraceEvent`]s.

use crate::btf::EnumNames;
use crate::kallsyms::Kallsyms;
use netblame_core::observe::trace::{Conn, EventKind, Owner, TraceEvent};
use netblame_core::observe::TcpState;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Kinds of `enum nb_kind`, index = value; the name is the one used for lost-event counts.
pub const KIND_NAMES: [&str; 12] = [
    "",
    "retransmit",
    "reset-sent",
    "reset-received",
    "drop",
    "state-change",
    "rcvbuf-grow",
    "rcv-space",
    "tcp-probe",
    "net-rx-long",
    "collapse",
    "prune",
];

/// `struct nb_conn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RawConn {
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub l4proto: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Network namespace inode, 0 when unknown.
    pub netns: u32,
    pub pad: u32,
}

/// `struct nb_event`. `v` per kind: retransmit [state, err]; reset-sent [state, sk_rst_reason];
/// reset-received [state]; drop [skb_drop_reason, location, ethertype]; state-change [old, new];
/// rcvbuf-grow [rtt_us, copied, inq, space, rcvbuf, window_clamp, scaling_ratio, calls];
/// rcv-space [rcvbuf, locked, space, window_clamp, .., calls]; tcp-probe [cwnd, ssthresh,
/// snd_wnd, srtt_us, rcv_wnd, data_len, .., calls]; net-rx-long, collapse, prune
/// [duration_ns].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEvent {
    pub ts_ns: u64,
    pub sk: u64,
    pub kind: u32,
    pub cpu: u32,
    pub tgid: u32,
    pub pad: u32,
    pub comm: [u8; 16],
    pub conn: RawConn,
    pub v: [u64; 8],
}

/// Size of `struct nb_event` in the BPF object.
pub const RAW_EVENT_SIZE: usize = 160;

impl RawEvent {
    /// Reads one record; `None` when it is too short.
    pub fn from_bytes(b: &[u8]) -> Option<RawEvent> {
        if b.len() < std::mem::size_of::<RawEvent>() {
            return None;
        }
        // SAFETY: the slice holds at least size_of::<RawEvent>() bytes, RawEvent is plain data
        // (integers and byte arrays, every bit pattern valid) and read_unaligned needs no alignment.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<RawEvent>()) })
    }
}

/// What decoding needs besides the record.
pub struct Decoder {
    pub drop_reasons: EnumNames,
    pub reset_reasons: EnumNames,
    pub kallsyms: Kallsyms,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, ns.
    pub wall_offset_ns: i128,
    containers: std::collections::HashMap<u32, Option<String>>,
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

fn ip(family: u16, a: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(*a);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

fn state(v: u64) -> Option<TcpState> {
    TcpState::from_kernel(v as u8)
}

/// The container-ish part of a process's cgroup (docker, containerd, kubepods, podman, lxc), if any.
fn container_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let (_, path) = netblame_linux::host::cgroup::parse_proc_cgroup(&text)?;
    const MARKS: [&str; 6] = ["docker", "containerd", "kubepods", "libpod", "lxc", "crio"];
    MARKS.iter().any(|m| path.contains(m)).then_some(path)
}

impl Decoder {
    /// A decoder with the kernel's enum names and symbols.
    pub fn new(drop_reasons: EnumNames, reset_reasons: EnumNames, kallsyms: Kallsyms) -> Self {
        Decoder {
            drop_reasons,
            reset_reasons,
            kallsyms,
            wall_offset_ns: wall_offset_ns(),
            containers: Default::default(),
        }
    }

    /// The kernel's name of a drop reason (prefix removed); subsystem reasons (upper 16 bits set)
    /// and unknown values are spelled out as numbers.
    pub fn drop_reason(&self, code: u32) -> String {
        if code >> 16 != 0 {
            return format!("SUBSYS_{}_{}", code >> 16, code & 0xffff);
        }
        self.drop_reasons
            .name(code as u64, "SKB_DROP_REASON_")
            .unwrap_or_else(|| format!("REASON_{code}"))
    }

    /// Monotonic kernel ns to wall-clock ns since the epoch.
    pub fn wall(&self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.wall_offset_ns).max(0) as u64
    }

    /// Decodes one record; `None` for an unknown kind.
    pub fn decode(&mut self, r: &RawEvent) -> Option<TraceEvent> {
        let v = r.v;
        let kind = match r.kind {
            1 => EventKind::Retransmit {
                state: state(v[0]),
                err: v[1] as i64,
            },
            2 => EventKind::ResetSent {
                state: state(v[0]),
                reason: self.reset_reasons.name(v[1], "SK_RST_REASON_"),
            },
            3 => EventKind::ResetReceived { state: state(v[0]) },
            4 => EventKind::Drop {
                reason: self.drop_reason(v[0] as u32),
                reason_code: v[0] as u32,
                location: (v[1] != 0).then(|| self.kallsyms.resolve(v[1])),
                protocol: v[2] as u16,
                l4proto: r.conn.l4proto as u8,
            },
            5 => EventKind::StateChange {
                old: state(v[0]),
                new: state(v[1]),
            },
            6 => EventKind::RcvbufGrow {
                rtt_us: v[0],
                copied: v[1],
                inq: v[2],
                space: v[3],
                rcvbuf: v[4],
                window_clamp: v[5],
                scaling_ratio: v[6],
                calls: v[7],
            },
            7 => EventKind::RcvSpace {
                rcvbuf: v[0],
                locked: v[1] != 0,
                space: v[2],
                window_clamp: v[3],
                calls: v[7],
            },
            8 => EventKind::TcpProbe {
                snd_cwnd: v[0],
                ssthresh: v[1],
                snd_wnd: v[2],
                srtt_us: v[3],
                rcv_wnd: v[4],
                data_len: v[5],
            },
            9 => EventKind::NetRxLong { duration_ns: v[0] },
            10 => EventKind::Collapse { duration_ns: v[0] },
            11 => EventKind::Prune { duration_ns: v[0] },
            _ => return None,
        };
        let c = &r.conn;
        let conn = match (ip(c.family, &c.saddr), ip(c.family, &c.daddr)) {
            (Some(src), Some(dst)) => Some(Conn {
                src,
                sport: c.sport,
                dst,
                dport: c.dport,
            }),
            _ => None,
        };
        let owner = (r.tgid != 0).then(|| {
            let end = r.comm.iter().position(|b| *b == 0).unwrap_or(16);
            let container = self
                .containers
                .entry(r.tgid)
                .or_insert_with(|| container_of(r.tgid))
                .clone();
            Owner {
                pid: r.tgid,
                comm: String::from_utf8_lossy(&r.comm[..end]).into_owned(),
                container,
            }
        });
        Some(TraceEvent {
            wall_ns: self.wall(r.ts_ns),
            cpu: r.cpu,
            sock: r.sk,
            netns: r.conn.netns,
            conn,
            owner,
            kind,
        })
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC now (bpf_ktime_get_ns is CLOCK_MONOTONIC).
pub fn wall_offset_ns() -> i128 {
    let m1 = clock_ns(libc::CLOCK_MONOTONIC);
    let r = clock_ns(libc::CLOCK_REALTIME);
    let m2 = clock_ns(libc::CLOCK_MONOTONIC);
    r - (m1 + m2) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_c_header() {
        assert_eq!(std::mem::size_of::<RawEvent>(), RAW_EVENT_SIZE);
        assert_eq!(std::mem::size_of::<RawConn>(), 48);
    }

    #[test]
    fn decodes_a_retransmit_with_owner() {
        let mut r = RawEvent {
            kind: 1,
            tgid: 42,
            v: [1, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        r.comm[..4].copy_from_slice(b"curl");
        r.conn = RawConn {
            family: AF_INET,
            sport: 40000,
            dport: 80,
            l4proto: 6,
            saddr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        let mut d = Decoder::new(
            EnumNames::default(),
            EnumNames::default(),
            Kallsyms::default(),
        );
        let e = d.decode(&r).unwrap();
        assert_eq!(e.conn.unwrap().to_string(), "10.0.0.1:40000 -> 10.0.0.2:80");
        assert_eq!(e.owner.unwrap().comm, "curl");
        assert!(matches!(
            e.kind,
            EventKind::Retransmit {
                state: Some(TcpState::Established),
                ..
            }
        ));
        assert!(d.decode(&RawEvent::default()).is_none());
        assert!(RawEvent::from_bytes(&[0u8; 10]).is_none());
    }
}
