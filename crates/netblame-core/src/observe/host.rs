//! A host's TCP-relevant state: the sysctls that bound TCP, the kernel version, and counters
//! read twice over a window (TcpExt, Tcp, softnet, interfaces, qdiscs, queues, NIC statistics,
//! cgroup CPU throttling). Serializable both ways so `netblame host --save` / `--load` can move
//! a snapshot to another machine and judge it there.

use crate::kernel::KernelVersion;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every sysctl netblame reads for the host audit, as dotted names.
pub const AUDITED_SYSCTLS: &[&str] = &[
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_mem",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.ipv4.tcp_window_scaling",
    "net.ipv4.tcp_adv_win_scale",
    "net.ipv4.tcp_moderate_rcvbuf",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_syn_linear_timeouts",
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.core.netdev_max_backlog",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.default_qdisc",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_sack",
    "net.ipv4.tcp_mtu_probing",
];

/// A section of the collection that could not be read, and why (missing privilege, a file
/// this kernel does not have, an interface without the ethtool statistics call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Skipped {
    /// Which section: `qdisc`, `nic`, `cgroup`, `sysctl net.core.netdev_budget`, ...
    pub section: String,
    /// Why, and how to get it.
    pub reason: String,
}

/// One row of `/proc/net/softnet_stat` (one CPU). Columns a kernel lacks are 0.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct SoftnetRow {
    /// The CPU (column 13 when present, else the row index).
    pub cpu: u32,
    pub processed: u64,
    /// Dropped because `netdev_max_backlog` was exceeded.
    pub dropped: u64,
    /// `net_rx_action` ran out of `netdev_budget` / `netdev_budget_usecs` with work left.
    pub time_squeeze: u64,
    pub received_rps: u64,
    pub flow_limit_count: u64,
}

/// One interface line of `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DevCounters {
    pub device: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Statistics of one qdisc (what `tc -s qdisc` prints).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QdiscStats {
    pub device: String,
    /// `pfifo_fast`, `fq`, `fq_codel`, `mq`, ...
    pub kind: String,
    /// `1:0` style handle.
    pub handle: String,
    /// `root` or the parent handle.
    pub parent: String,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub requeues: u64,
    pub overlimits: u64,
    /// Bytes queued at the time of reading.
    pub backlog_bytes: u64,
    /// Packets queued at the time of reading.
    pub qlen: u64,
}

/// Direction of a device queue.
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
pub enum QueueDir {
    Tx,
    Rx,
}

/// Packet counts of one device queue: from the NIC's per-queue statistics (`tx_queue_3_packets`,
/// `queue_3_tx_packets`, ...) or from `/sys/class/net/DEV/queues/tx-N/byte_queue_limits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueueStats {
    pub device: String,
    pub dir: QueueDir,
    pub index: u32,
    pub packets: u64,
    pub bytes: Option<u64>,
}

/// One interface's NIC statistics (`ethtool -S`), name to value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NicStats {
    pub device: String,
    pub driver: Option<String>,
    pub stats: BTreeMap<String, u64>,
}

/// A process in a cgroup that owns TCP sockets (per process; the socket-owner map gives the
/// per-socket [`crate::observe::socket::SocketOwner`]s it is built from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OwnerProcess {
    pub pid: u32,
    pub command: String,
    /// TCP sockets it owns.
    pub sockets: u64,
}

/// CPU accounting of one cgroup that holds processes owning TCP sockets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CgroupCpu {
    /// The cgroup path relative to its hierarchy (`/system.slice/nginx.service`).
    pub path: String,
    /// `v2` or `v1`.
    pub version: String,
    pub owners: Vec<OwnerProcess>,
    pub usage_usec: Option<u64>,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    /// v2 `throttled_usec` (v1 `throttled_time` is nanoseconds and converted).
    pub throttled_usec: u64,
    /// The container, pod or unit the path names, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::observe::socket::ContainerRef>,
    /// CPU quota per period (`cpu.max` / `cpu.cfs_quota_us`), microseconds; `None` = unlimited.
    pub quota_usec: Option<u64>,
    pub period_usec: Option<u64>,
}

/// Counters as read at one instant.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostCounters {
    /// `/proc/net/netstat` and `/proc/net/snmp`, keyed `Group.Name` (`TcpExt.PruneCalled`,
    /// `Tcp.RetransSegs`). Negative values (`Tcp.MaxConn` = -1) are kept as they are.
    pub proto: BTreeMap<String, i64>,
    pub softnet: Vec<SoftnetRow>,
    pub devices: Vec<DevCounters>,
    pub qdiscs: Vec<QdiscStats>,
    pub queues: Vec<QueueStats>,
    pub nic: Vec<NicStats>,
    pub cgroups: Vec<CgroupCpu>,
    /// `/proc/net/sockstat` TCP `mem`, in pages (compare with `tcp_mem`).
    pub tcp_mem_pages: Option<u64>,
    /// `/proc/net/sockstat` TCP `inuse`.
    pub tcp_inuse: Option<u64>,
}

/// Everything collected about a host over one window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostSnapshot {
    /// The netblame version that collected it.
    pub collector: String,
    pub hostname: Option<String>,
    pub kernel: Option<KernelVersion>,
    /// Raw sysctl values by dotted name, whitespace-normalized (`4096 131072 33554432`).
    pub sysctls: BTreeMap<String, String>,
    /// Time between the two counter reads, microseconds.
    pub window_us: u64,
    pub before: HostCounters,
    pub after: HostCounters,
    /// Sections that could not be read.
    pub skipped: Vec<Skipped>,
}

impl HostSnapshot {
    /// A sysctl as integers (`tcp_rmem` gives three), if present and numeric.
    pub fn sysctl_ints(&self, name: &str) -> Option<Vec<i64>> {
        let raw = self.sysctls.get(name)?;
        raw.split_whitespace().map(|t| t.parse().ok()).collect()
    }

    /// A single-integer sysctl.
    pub fn sysctl_int(&self, name: &str) -> Option<i64> {
        match self.sysctl_ints(name)?.as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }

    /// The window in seconds (at least one microsecond).
    pub fn window_secs(&self) -> f64 {
        self.window_us.max(1) as f64 / 1e6
    }

    /// Growth of a `Group.Name` protocol counter over the window (0 when it fell: a reset).
    pub fn proto_delta(&self, key: &str) -> Option<u64> {
        let a = *self.before.proto.get(key)?;
        let b = *self.after.proto.get(key)?;
        Some(b.saturating_sub(a).max(0) as u64)
    }

    /// Growth of a counter a rule reads over the window (0 when unread or reset).
    pub fn delta(&self, c: Counter) -> u64 {
        self.proto_delta(c.name()).unwrap_or(0)
    }

    /// Every protocol counter that moved, with its delta and rate per second.
    pub fn proto_deltas(&self) -> Vec<CounterDelta> {
        self.after
            .proto
            .keys()
            .filter_map(|k| {
                let d = self.proto_delta(k)?;
                (d > 0).then(|| CounterDelta {
                    name: k.clone(),
                    delta: d,
                    per_second: d as f64 / self.window_secs(),
                })
            })
            .collect()
    }

    /// Softnet totals over the window, per CPU present in both reads.
    pub fn softnet_deltas(&self) -> Vec<SoftnetRow> {
        self.after
            .softnet
            .iter()
            .filter_map(|a| {
                let b = self.before.softnet.iter().find(|b| b.cpu == a.cpu)?;
                Some(SoftnetRow {
                    cpu: a.cpu,
                    processed: a.processed.saturating_sub(b.processed),
                    dropped: a.dropped.saturating_sub(b.dropped),
                    time_squeeze: a.time_squeeze.saturating_sub(b.time_squeeze),
                    received_rps: a.received_rps.saturating_sub(b.received_rps),
                    flow_limit_count: a.flow_limit_count.saturating_sub(b.flow_limit_count),
                })
            })
            .collect()
    }

    /// Interface counters over the window.
    pub fn device_deltas(&self) -> Vec<DevCounters> {
        self.after
            .devices
            .iter()
            .filter_map(|a| {
                let b = self.before.devices.iter().find(|b| b.device == a.device)?;
                Some(DevCounters {
                    device: a.device.clone(),
                    rx_bytes: a.rx_bytes.saturating_sub(b.rx_bytes),
                    rx_packets: a.rx_packets.saturating_sub(b.rx_packets),
                    rx_errors: a.rx_errors.saturating_sub(b.rx_errors),
                    rx_dropped: a.rx_dropped.saturating_sub(b.rx_dropped),
                    tx_bytes: a.tx_bytes.saturating_sub(b.tx_bytes),
                    tx_packets: a.tx_packets.saturating_sub(b.tx_packets),
                    tx_errors: a.tx_errors.saturating_sub(b.tx_errors),
                    tx_dropped: a.tx_dropped.saturating_sub(b.tx_dropped),
                })
            })
            .collect()
    }

    /// Qdisc counters over the window (backlog and qlen are the later reading).
    pub fn qdisc_deltas(&self) -> Vec<QdiscStats> {
        self.after
            .qdiscs
            .iter()
            .filter_map(|a| {
                let b = self.before.qdiscs.iter().find(|b| {
                    b.device == a.device && b.handle == a.handle && b.parent == a.parent
                })?;
                Some(QdiscStats {
                    bytes: a.bytes.saturating_sub(b.bytes),
                    packets: a.packets.saturating_sub(b.packets),
                    drops: a.drops.saturating_sub(b.drops),
                    requeues: a.requeues.saturating_sub(b.requeues),
                    overlimits: a.overlimits.saturating_sub(b.overlimits),
                    ..a.clone()
                })
            })
            .collect()
    }

    /// Queue packet counts over the window.
    pub fn queue_deltas(&self) -> Vec<QueueStats> {
        self.after
            .queues
            .iter()
            .filter_map(|a| {
                let b = self
                    .before
                    .queues
                    .iter()
                    .find(|b| b.device == a.device && b.dir == a.dir && b.index == a.index)?;
                Some(QueueStats {
                    packets: a.packets.saturating_sub(b.packets),
                    bytes: match (a.bytes, b.bytes) {
                        (Some(x), Some(y)) => Some(x.saturating_sub(y)),
                        _ => None,
                    },
                    ..a.clone()
                })
            })
            .collect()
    }

    /// NIC statistics that moved over the window, per device.
    pub fn nic_deltas(&self) -> Vec<NicStats> {
        self.after
            .nic
            .iter()
            .filter_map(|a| {
                let b = self.before.nic.iter().find(|b| b.device == a.device)?;
                let stats = a
                    .stats
                    .iter()
                    .filter_map(|(k, v)| {
                        let d = v.saturating_sub(*b.stats.get(k)?);
                        (d > 0).then(|| (k.clone(), d))
                    })
                    .collect();
                Some(NicStats {
                    device: a.device.clone(),
                    driver: a.driver.clone(),
                    stats,
                })
            })
            .collect()
    }

    /// Cgroup CPU counters over the window (quota and owners from the later reading).
    pub fn cgroup_deltas(&self) -> Vec<CgroupCpu> {
        self.after
            .cgroups
            .iter()
            .filter_map(|a| {
                let b = self.before.cgroups.iter().find(|b| b.path == a.path)?;
                Some(CgroupCpu {
                    usage_usec: match (a.usage_usec, b.usage_usec) {
                        (Some(x), Some(y)) => Some(x.saturating_sub(y)),
                        _ => None,
                    },
                    nr_periods: a.nr_periods.saturating_sub(b.nr_periods),
                    nr_throttled: a.nr_throttled.saturating_sub(b.nr_throttled),
                    throttled_usec: a.throttled_usec.saturating_sub(b.throttled_usec),
                    ..a.clone()
                })
            })
            .collect()
    }
}

/// One counter that moved over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CounterDelta {
    pub name: String,
    pub delta: u64,
    pub per_second: f64,
}

/// Every protocol counter (`/proc/net/snmp` and `netstat`) a rule reads. Rules read counters
/// only through [`HostSnapshot::delta`], so this list is the whole set by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::enum_variant_names)]
pub enum Counter {
    OutSegs,
    RetransSegs,
    BeyondWindow,
    ListenDrops,
    ListenOverflows,
    OfoPruned,
    PruneCalled,
    RcvPruned,
    TCPAbortOnTimeout,
    TCPBacklogDrop,
    TCPDSACKRecv,
    TCPLossProbes,
    TCPLostRetransmit,
    TCPMemoryPressures,
    TCPMemoryPressuresChrono,
    TCPOFODrop,
    TCPRcvCollapsed,
    TCPRcvQDrop,
    TCPSpuriousRTOs,
    TCPSynRetrans,
    TCPTimeouts,
    TCPToZeroWindowAdv,
    TCPZeroWindowDrop,
}

impl Counter {
    /// Every counter, in name order.
    pub const ALL: [Counter; 23] = [
        Counter::OutSegs,
        Counter::RetransSegs,
        Counter::BeyondWindow,
        Counter::ListenDrops,
        Counter::ListenOverflows,
        Counter::OfoPruned,
        Counter::PruneCalled,
        Counter::RcvPruned,
        Counter::TCPAbortOnTimeout,
        Counter::TCPBacklogDrop,
        Counter::TCPDSACKRecv,
        Counter::TCPLossProbes,
        Counter::TCPLostRetransmit,
        Counter::TCPMemoryPressures,
        Counter::TCPMemoryPressuresChrono,
        Counter::TCPOFODrop,
        Counter::TCPRcvCollapsed,
        Counter::TCPRcvQDrop,
        Counter::TCPSpuriousRTOs,
        Counter::TCPSynRetrans,
        Counter::TCPTimeouts,
        Counter::TCPToZeroWindowAdv,
        Counter::TCPZeroWindowDrop,
    ];

    /// `Group.Name` as `/proc/net/snmp` and `netstat` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Counter::OutSegs => "Tcp.OutSegs",
            Counter::RetransSegs => "Tcp.RetransSegs",
            Counter::BeyondWindow => "TcpExt.BeyondWindow",
            Counter::ListenDrops => "TcpExt.ListenDrops",
            Counter::ListenOverflows => "TcpExt.ListenOverflows",
            Counter::OfoPruned => "TcpExt.OfoPruned",
            Counter::PruneCalled => "TcpExt.PruneCalled",
            Counter::RcvPruned => "TcpExt.RcvPruned",
            Counter::TCPAbortOnTimeout => "TcpExt.TCPAbortOnTimeout",
            Counter::TCPBacklogDrop => "TcpExt.TCPBacklogDrop",
            Counter::TCPDSACKRecv => "TcpExt.TCPDSACKRecv",
            Counter::TCPLossProbes => "TcpExt.TCPLossProbes",
            Counter::TCPLostRetransmit => "TcpExt.TCPLostRetransmit",
            Counter::TCPMemoryPressures => "TcpExt.TCPMemoryPressures",
            Counter::TCPMemoryPressuresChrono => "TcpExt.TCPMemoryPressuresChrono",
            Counter::TCPOFODrop => "TcpExt.TCPOFODrop",
            Counter::TCPRcvCollapsed => "TcpExt.TCPRcvCollapsed",
            Counter::TCPRcvQDrop => "TcpExt.TCPRcvQDrop",
            Counter::TCPSpuriousRTOs => "TcpExt.TCPSpuriousRTOs",
            Counter::TCPSynRetrans => "TcpExt.TCPSynRetrans",
            Counter::TCPTimeouts => "TcpExt.TCPTimeouts",
            Counter::TCPToZeroWindowAdv => "TcpExt.TCPToZeroWindowAdv",
            Counter::TCPZeroWindowDrop => "TcpExt.TCPZeroWindowDrop",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> HostSnapshot {
        let mut s = HostSnapshot {
            window_us: 2_000_000,
            ..Default::default()
        };
        s.sysctls
            .insert("net.ipv4.tcp_rmem".into(), "4096 131072 6291456".into());
        s.before.proto.insert("TcpExt.PruneCalled".into(), 10);
        s.after.proto.insert("TcpExt.PruneCalled".into(), 30);
        s.before.proto.insert("Tcp.MaxConn".into(), -1);
        s.after.proto.insert("Tcp.MaxConn".into(), -1);
        s
    }

    #[test]
    fn deltas_and_rates() {
        let s = snap();
        assert_eq!(s.sysctl_ints("net.ipv4.tcp_rmem").unwrap()[2], 6291456);
        assert_eq!(s.sysctl_int("net.ipv4.tcp_rmem"), None);
        assert_eq!(s.proto_delta("TcpExt.PruneCalled"), Some(20));
        let d = s.proto_deltas();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].per_second, 10.0);
    }

    #[test]
    fn round_trips_through_json() {
        let mut s = snap();
        s.kernel = Some("6.6.10-amd64".parse().unwrap());
        s.after.softnet.push(SoftnetRow {
            cpu: 3,
            time_squeeze: 7,
            ..Default::default()
        });
        let text = serde_json::to_string(&s).unwrap();
        let back: HostSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.kernel.unwrap().local, "-amd64");
    }
}
