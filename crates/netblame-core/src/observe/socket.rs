//! One TCP socket as a sock_diag dump sees it at one instant: addresses, state, queues,
//! `tcp_info`, congestion control, socket memory (`SKMEMINFO`), shutdown state and the
//! processes that hold it. Sources fill it; `diagnose::connection` judges two of them.

use super::tcp_info::TcpInfo;
use super::transfer::{
    PathFacts, ReceiverFacts, RecvQGrowth, Retransmissions, SenderFacts, Transfer,
};
use super::LimitShares;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The state with kernel number `n`.
    pub fn from_kernel(n: u8) -> Option<TcpState> {
        Self::ALL.into_iter().find(|s| *s as u8 == n)
    }

    /// The bit of this state in an `idiag_states` mask (`1 << state`).
    pub fn mask_bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The name `ss` prints (`ESTAB`, `LISTEN`, `TIME-WAIT`, ...), also accepted by
    /// [`TcpState::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn-sent",
            TcpState::SynRecv => "syn-recv",
            TcpState::FinWait1 => "fin-wait-1",
            TcpState::FinWait2 => "fin-wait-2",
            TcpState::TimeWait => "time-wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close-wait",
            TcpState::LastAck => "last-ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::NewSynRecv => "new-syn-recv",
        }
    }

    /// Parses a state name: `established`/`estab`, `listen`, `time-wait`, `syn-sent`, ...
    /// (case-insensitive, `_` or `-`).
    pub fn parse(name: &str) -> Option<TcpState> {
        let n = name.trim().to_ascii_lowercase().replace('_', "-");
        if n == "estab" {
            return Some(TcpState::Established);
        }
        if n == "listening" {
            return Some(TcpState::Listen);
        }
        Self::ALL.into_iter().find(|s| s.as_str() == n)
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `INET_DIAG_SKMEMINFO`: the socket's memory accounting (`ss -m` `skmem:(r,rb,t,tb,f,w,o,bl,d)`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct SkMemInfo {
    /// `sk_rmem_alloc` (`r`): memory held by received data, truesize.
    pub rmem_alloc_bytes: u32,
    /// `sk_rcvbuf` (`rb`).
    pub rcvbuf_bytes: u32,
    /// `sk_wmem_alloc` (`t`): memory in the qdisc/driver.
    pub wmem_alloc_bytes: u32,
    /// `sk_sndbuf` (`tb`).
    pub sndbuf_bytes: u32,
    /// `sk_forward_alloc` (`f`).
    pub fwd_alloc_bytes: u32,
    /// `sk_wmem_queued` (`w`): memory of the send queue.
    pub wmem_queued_bytes: u32,
    /// `sk_omem_alloc` (`o`).
    pub optmem_bytes: u32,
    /// Backlog length (`bl`); absent on kernels before 3.8.
    pub backlog_bytes: Option<u32>,
    /// Drops (`d`); absent on kernels before 4.7.
    pub drops: Option<u32>,
}

impl SkMemInfo {
    /// Builds from the kernel's u32 array (`SK_MEMINFO_*` order); `None` with fewer than 7.
    pub fn from_array(v: &[u32]) -> Option<SkMemInfo> {
        if v.len() < 7 {
            return None;
        }
        Some(SkMemInfo {
            rmem_alloc_bytes: v[0],
            rcvbuf_bytes: v[1],
            wmem_alloc_bytes: v[2],
            sndbuf_bytes: v[3],
            fwd_alloc_bytes: v[4],
            wmem_queued_bytes: v[5],
            optmem_bytes: v[6],
            backlog_bytes: v.get(7).copied(),
            drops: v.get(8).copied(),
        })
    }
}

/// A process holding the socket (through one of its file descriptors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SocketOwner {
    pub pid: u32,
    /// `comm` of the process (`/proc/PID/comm`).
    pub command: String,
    /// The file descriptor number in that process.
    pub fd: u32,
    /// The process's cgroup (v2 path, or the first line of `/proc/PID/cgroup`), if readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// A network namespace: its nsfs inode (what `ls -L -i /proc/PID/ns/net` shows) and its name
/// under `/run/netns` when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetnsRef {
    /// The namespace's inode: two sockets or processes share a namespace when it is equal.
    pub inode: u64,
    /// The name under `/run/netns` (`ip netns add NAME`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl NetnsRef {
    /// The name, else `net:[INODE]` as `/proc/PID/ns/net` links read.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("net:[{}]", self.inode),
        }
    }
}

/// Who a socket's owner is, as its cgroup path tells: a Kubernetes pod's container, a
/// containerd, CRI-O, Docker or Podman container, or a systemd unit. Names (`namespace`, `pod`,
/// `container`) come from the node's pod log directories when present; ids from the path.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct ContainerRef {
    /// The cgroup path the identity was parsed from.
    pub cgroup: String,
    /// `containerd`, `cri-o`, `docker`, `podman`, or `None` when the path does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The container id (64 hex digits, as the runtime names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The Kubernetes pod UID (with dashes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The pod's QoS class: `guaranteed`, `burstable` or `besteffort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// The Kubernetes namespace of the pod, when the node names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's name, when the node names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The container's name, when the node names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The systemd unit (`nginx.service`, `session-3.scope`) when the owner is not in a container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl ContainerRef {
    /// The pod as `namespace/pod`, else `pod <uid>`; `None` outside Kubernetes.
    pub fn pod_label(&self) -> Option<String> {
        match (&self.namespace, &self.pod, &self.pod_uid) {
            (Some(ns), Some(p), _) => Some(format!("{ns}/{p}")),
            (_, _, Some(uid)) => Some(format!("pod {uid}")),
            _ => None,
        }
    }

    /// The container's name, else its runtime and short id (`docker 3f2a9c1b0d4e`).
    pub fn container_label(&self) -> Option<String> {
        if let Some(c) = &self.container {
            return Some(c.clone());
        }
        let id = self.id.as_ref()?;
        let short = &id[..id.len().min(12)];
        Some(match &self.runtime {
            Some(r) => format!("{r} {short}"),
            None => format!("container {short}"),
        })
    }

    /// One label: `namespace/pod/container`, `pod UID/containerd 0123abcd`, `docker 0123abcd`,
    /// or the systemd unit.
    pub fn label(&self) -> String {
        match (self.pod_label(), self.container_label()) {
            (Some(p), Some(c)) if self.namespace.is_some() && self.container.is_some() => {
                format!("{p}/{c}")
            }
            (Some(p), Some(c)) => format!("{p} / {c}"),
            (Some(p), None) => p,
            (None, Some(c)) => c,
            (None, None) => self.unit.clone().unwrap_or_else(|| self.cgroup.clone()),
        }
    }
}

/// One TCP socket at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SocketSnapshot {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub state: TcpState,
    /// Socket inode (0 for time-wait and request sockets); links the socket to processes.
    pub inode: u64,
    /// The kernel's socket cookie: identifies the same socket across two dumps.
    pub cookie: u64,
    pub uid: u32,
    /// Recv-Q: bytes received and not yet read by the application (for listeners: pending
    /// connections).
    pub recv_q_bytes: u32,
    /// Send-Q: bytes sent and not yet acknowledged, plus not yet sent (for listeners: backlog).
    pub send_q_bytes: u32,
    /// `tcp_info`, when requested and the socket has one (absent for time-wait sockets).
    pub tcp_info: Option<TcpInfo>,
    /// Congestion-control algorithm (`cubic`, `bbr`, ...).
    pub congestion: Option<String>,
    pub skmem: Option<SkMemInfo>,
    /// Shutdown bits: 1 = no more receives (SHUT_RD), 2 = no more sends (SHUT_WR).
    pub shutdown: Option<u8>,
    /// Processes holding it; empty when unknown (not mapped, or another user's process).
    pub owners: Vec<SocketOwner>,
}

impl SocketSnapshot {
    /// `local -> peer`, the way tables and finding subjects name a connection.
    pub fn label(&self) -> String {
        format!("{} -> {}", self.local, self.peer)
    }

    /// The first owner's `command[pid]`, or `None` when no owner is known.
    pub fn process_label(&self) -> Option<String> {
        let o = self.owners.first()?;
        let more = if self.owners.len() > 1 {
            format!(" +{}", self.owners.len() - 1)
        } else {
            String::new()
        };
        Some(format!("{}[{}]{more}", o.command, o.pid))
    }

    /// Both ends on this host.
    pub fn is_loopback(&self) -> bool {
        self.local.ip() == self.peer.ip() || self.peer.ip().is_loopback()
    }

    /// What this socket sent since `prev` (the same socket `interval` earlier): the kernel's
    /// stopwatches, the peer's window, retransmissions. Without `prev`, only the instant facts.
    pub fn outbound(&self, prev: Option<&SocketSnapshot>, interval: Duration) -> Transfer {
        let info = self.tcp_info.clone().unwrap_or_default();
        let pi = prev.and_then(|p| p.tcp_info.as_ref());
        let interval_us = interval.as_micros().max(1) as u64;
        let delta = |f: fn(&TcpInfo) -> Option<u64>| Some(f(&info)?.saturating_sub(f(pi?)?));
        let full = |s: &SocketSnapshot| {
            s.skmem
                .is_some_and(|m| m.sndbuf_bytes > 0 && m.wmem_queued_bytes >= m.sndbuf_bytes)
        };
        let below_cwnd = |t: &TcpInfo| t.unacked < t.snd_cwnd;
        let shares = pi.and_then(|p| LimitShares::between(p, &info, interval_us));
        // A full send buffer at both samples (or at one, with the stopwatch confirming) while
        // fewer packets were in flight than cwnd allows.
        let sndbuf_full = match (prev, pi) {
            (Some(p), Some(pi)) => {
                let occupied = match (full(p), full(self)) {
                    (true, true) => true,
                    (true, false) | (false, true) => {
                        shares.is_some_and(|s| s.sndbuf_limited_us > 0)
                    }
                    (false, false) => false,
                };
                occupied && below_cwnd(pi) && below_cwnd(&info)
            }
            _ => false,
        };
        let acked = delta(|t| t.bytes_acked).unwrap_or(0);
        Transfer {
            subject: self.label(),
            sender: SenderFacts {
                shares,
                observed: shares.is_some(),
                rate_bps: acked as f64 * 8.0 / interval.as_secs_f64().max(1e-6),
                streams: 1,
                peer_window_bytes: info.snd_wnd.map(u64::from),
                window_scaling: Some(info.has_wscale()),
                sndbuf_full_below_cwnd: sndbuf_full,
                sndbuf_bytes: self.skmem.map(|m| m.sndbuf_bytes as u64),
                retrans: Retransmissions {
                    segments: pi.map_or(0, |p| {
                        info.total_retrans.saturating_sub(p.total_retrans) as u64
                    }),
                    data_segments: delta(|t| t.data_segs_out.map(u64::from)).unwrap_or(0),
                    spurious: delta(|t| t.dsack_dups.map(u64::from)).unwrap_or(0),
                    in_recovery: shares.is_some_and(|s| s.in_loss_recovery),
                    backoff: Some(info.backoff),
                    ..Default::default()
                },
                ..Default::default()
            },
            path: PathFacts {
                rtt: self.rtt_us().map(|r| Duration::from_micros(r as u64)),
                loopback: self.is_loopback(),
                options_preserved: self.is_loopback(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// What this socket received: its Recv-Q (and its growth since `prev`), its buffer and the
    /// window it advertises, and who reads it.
    pub fn inbound(&self, prev: Option<&SocketSnapshot>, interval: Duration) -> Transfer {
        let info = self.tcp_info.clone().unwrap_or_default();
        Transfer {
            subject: self.label(),
            receiver: ReceiverFacts {
                who: Some(
                    self.process_label().unwrap_or_else(|| {
                        "the receiving application (process unknown)".to_string()
                    }),
                ),
                rcvbuf_bytes: self.skmem.map(|m| m.rcvbuf_bytes as u64),
                rcv_wscale: info.has_wscale().then_some(info.rcv_wscale),
                recv_q_bytes: Some(self.recv_q_bytes as u64),
                recv_q_growth: prev.map(|p| RecvQGrowth {
                    before_bytes: p.recv_q_bytes as u64,
                    after_bytes: self.recv_q_bytes as u64,
                    interval,
                }),
                rmem_alloc_bytes: self.skmem.map(|m| m.rmem_alloc_bytes as u64),
                rcv_wnd_bytes: info.rcv_wnd.map(u64::from),
                last_data_recv_ms: Some(info.last_data_recv_ms as u64),
                ..Default::default()
            },
            sender: SenderFacts {
                window_scaling: Some(info.has_wscale()),
                ..Default::default()
            },
            path: PathFacts {
                rtt: self.rtt_us().map(|r| Duration::from_micros(r as u64)),
                loopback: self.is_loopback(),
                options_preserved: self.is_loopback(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Smoothed RTT in microseconds, falling back to the receiver-side estimate.
    pub fn rtt_us(&self) -> Option<u32> {
        let t = self.tcp_info.as_ref()?;
        t.srtt_us()
            .or_else(|| (t.rcv_rtt_us > 0).then_some(t.rcv_rtt_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_parse_like_ss() {
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_kernel(s as u8), Some(s));
            assert_eq!(TcpState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TcpState::parse("ESTAB"), Some(TcpState::Established));
        assert_eq!(TcpState::parse("time_wait"), Some(TcpState::TimeWait));
        assert_eq!(TcpState::parse("nonsense"), None);
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::Listen.mask_bit(), 1 << 10);
    }

    #[test]
    fn skmem_needs_seven_and_keeps_optional_tail_absent() {
        assert!(SkMemInfo::from_array(&[1, 2, 3]).is_none());
        let m = SkMemInfo::from_array(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!((m.rcvbuf_bytes, m.sndbuf_bytes), (2, 4));
        assert_eq!((m.backlog_bytes, m.drops), (None, None));
        let m = SkMemInfo::from_array(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        assert_eq!(m.drops, Some(9));
    }
}
