//! Parsers for the text files under `/proc/net` that hold host counters: `netstat` and `snmp`
//! (header line / value line pairs), `softnet_stat` (hex columns, 9 to 15 of them by kernel
//! version), `dev` and `sockstat`. Each tolerates older layouts: missing columns read as 0,
//! unknown ones are ignored.

use netblame_core::observe::host::{DevCounters, SoftnetRow};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

/// The `/proc/net` of the calling thread: `/proc/thread-self/net` follows the thread's network
/// namespace (after `setns`), `/proc/net` (= `/proc/self/net`) the main thread's. Falls back to
/// `/proc/net` on kernels before 3.17 that lack `thread-self`.
pub fn proc_net(file: &str) -> PathBuf {
    let ts = PathBuf::from("/proc/thread-self/net");
    if ts.exists() {
        ts.join(file)
    } else {
        PathBuf::from("/proc/net").join(file)
    }
}

/// Reads one `/proc/net` file of the calling thread's namespace.
pub fn read_proc_net(file: &str) -> io::Result<String> {
    let p = proc_net(file);
    std::fs::read_to_string(&p)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", p.display())))
}

/// Parses `/proc/net/netstat` or `/proc/net/snmp`: pairs of `Group: Name Name ...` /
/// `Group: 1 2 ...` lines into `Group.Name -> value`. Values that do not parse are skipped;
/// a value line shorter than its header keeps the names it has values for.
pub fn parse_proto_counters(text: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let Some((group, names)) = header.split_once(':') else {
            continue;
        };
        let Some(values) = lines.next() else { break };
        let Some((vgroup, values)) = values.split_once(':') else {
            continue;
        };
        if vgroup.trim() != group.trim() {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            let v = value.parse::<i64>().ok().or_else(|| {
                value
                    .parse::<u64>()
                    .ok()
                    .map(|u| u.min(i64::MAX as u64) as i64)
            });
            if let Some(v) = v {
                out.insert(format!("{}.{}", group.trim(), name), v);
            }
        }
    }
    out
}

/// Parses `/proc/net/softnet_stat`: one row per online CPU of hex columns. Column 1 processed,
/// 2 dropped, 3 time_squeeze, 10 received_rps, 11 flow_limit_count, 13 the CPU index (kernels
/// since 5.10 print 13 columns, 6.x 15 with backlog lengths; older ones 9 or 11). Without the
/// CPU column the row index is used.
pub fn parse_softnet(text: &str) -> Vec<SoftnetRow> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .filter_map(|(i, line)| {
            let cols: Vec<u64> = line
                .split_whitespace()
                .map(|c| u64::from_str_radix(c, 16))
                .collect::<Result<_, _>>()
                .ok()?;
            if cols.len() < 3 {
                return None;
            }
            let col = |n: usize| cols.get(n - 1).copied().unwrap_or(0);
            Some(SoftnetRow {
                cpu: if cols.len() >= 13 {
                    col(13) as u32
                } else {
                    i as u32
                },
                processed: col(1),
                dropped: col(2),
                time_squeeze: col(3),
                received_rps: col(10),
                flow_limit_count: col(11),
            })
        })
        .collect()
}

/// Parses `/proc/net/dev`: two header lines, then `name: 16 numbers` (8 receive, 8 transmit).
pub fn parse_dev(text: &str) -> Vec<DevCounters> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|t| t.parse().ok())
                .collect::<Option<_>>()?;
            if v.len() < 12 {
                return None;
            }
            Some(DevCounters {
                device: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// From `/proc/net/sockstat`, the `TCP:` line's `inuse` and `mem` (pages).
pub fn parse_sockstat_tcp(text: &str) -> (Option<u64>, Option<u64>) {
    let Some(line) = text.lines().find(|l| l.starts_with("TCP:")) else {
        return (None, None);
    };
    let toks: Vec<&str> = line["TCP:".len()..].split_whitespace().collect();
    let get = |key: &str| {
        toks.windows(2)
            .find(|w| w[0] == key)
            .and_then(|w| w[1].parse().ok())
    };
    (get("inuse"), get("mem"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_pairs_and_short_lines() {
        let text = "TcpExt: SyncookiesSent PruneCalled TCPRcvCollapsed\nTcpExt: 0 12 345\n\
                    IpExt: InNoRoutes InOctets\nIpExt: 1\nTcp: RtoAlgorithm MaxConn\nTcp: 1 -1\n";
        let m = parse_proto_counters(text);
        assert_eq!(m["TcpExt.PruneCalled"], 12);
        assert_eq!(m["TcpExt.TCPRcvCollapsed"], 345);
        assert_eq!(m["IpExt.InNoRoutes"], 1);
        assert!(!m.contains_key("IpExt.InOctets"));
        assert_eq!(m["Tcp.MaxConn"], -1);
    }

    #[test]
    fn softnet_layouts() {
        // 9 columns (2.6-era), 11 (4.x), 13 (5.10+), 15 (6.x) — older ones number rows.
        let nine = "0000abcd 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000000\n\
                    00000010 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000000\n";
        let r = parse_softnet(nine);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].cpu, r[0].processed, r[0].dropped, r[0].time_squeeze),
            (0, 0xabcd, 1, 2)
        );
        assert_eq!((r[1].cpu, r[1].time_squeeze), (1, 3));
        let eleven = "00000005 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000007 00000009\n";
        let r = parse_softnet(eleven);
        assert_eq!((r[0].received_rps, r[0].flow_limit_count), (7, 9));
        let thirteen = "00000005 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000004\n";
        assert_eq!(parse_softnet(thirteen)[0].cpu, 4);
        let fifteen = "0000000e 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000006 00000000 00000000\n";
        assert_eq!(parse_softnet(fifteen)[0].cpu, 6);
        assert!(parse_softnet("zz yy\n\n").is_empty());
    }

    #[test]
    fn dev_and_sockstat() {
        let dev = "Inter-|   Receive                                                |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                   lo:    4089      45    0    0    0     0          0         0     4089      45    0    0    0     0       0          0\n  \
                   eth0: 10 2 0 1 0 0 0 0 20 3 0 4 0 0 0 0\n";
        let d = parse_dev(dev);
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].device, "eth0");
        assert_eq!(
            (d[1].rx_dropped, d[1].tx_packets, d[1].tx_dropped),
            (1, 3, 4)
        );
        let s =
            "sockets: used 15\nTCP: inuse 1 orphan 0 tw 0 alloc 1 mem 353\nUDP: inuse 0 mem 0\n";
        assert_eq!(parse_sockstat_tcp(s), (Some(1), Some(353)));
        // 2.6-era sockstat without mem.
        assert_eq!(
            parse_sockstat_tcp("TCP: inuse 3 orphan 0 tw 0 alloc 4\n"),
            (Some(3), None)
        );
    }
}
