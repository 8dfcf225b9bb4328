//! NIC statistics through the ethtool ioctl (`SIOCETHTOOL`: `ETHTOOL_GDRVINFO` for the driver and
//! the number of statistics, `ETHTOOL_GSTRINGS` for their names, `ETHTOOL_GSTATS` for the values)
//! — what `ethtool -S` prints, e.g. ENA's `bw_out_allowance_exceeded`. Devices without
//! statistics (loopback, most virtual devices) answer `EOPNOTSUPP`; callers skip them quietly.
//! Per-queue packet counts are picked out of the statistic names.

use netblame_core::observe::host::{NicStats, QueueDir, QueueStats};
use std::collections::BTreeMap;
use std::io;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
const DRVINFO_LEN: usize = 196;
const DRVINFO_N_STATS: usize = 4 + 32 * 5 + 12 + 4;
/// More statistics than any driver has; guards against a garbage count.
const MAX_STATS: usize = 1 << 16;

struct Sock(libc::c_int);

impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: the fd is owned here and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn ioctl(sock: &Sock, dev: &str, data: &mut [u8]) -> io::Result<()> {
    // struct ifreq: 16 bytes of name, then a union whose first member here is `ifr_data`.
    let mut ifr = [0u8; 40];
    let name = dev.as_bytes();
    if name.len() >= 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name '{dev}' too long"),
        ));
    }
    ifr[..name.len()].copy_from_slice(name);
    let ptr = data.as_mut_ptr() as usize;
    ifr[16..16 + std::mem::size_of::<usize>()].copy_from_slice(&ptr.to_ne_bytes());
    // SAFETY: ifr is a properly laid out struct ifreq whose ifr_data points at `data`, which
    // is large enough for the command it starts with (the caller sizes it per command).
    let rc = unsafe { libc::ioctl(sock.0, SIOCETHTOOL as _, ifr.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// `ethtool -S DEV` and the driver name, in the calling thread's network namespace.
pub fn nic_stats(dev: &str) -> io::Result<NicStats> {
    // SAFETY: plain socket(2); the guard owns the fd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let sock = Sock(fd);
    let mut info = vec![0u8; DRVINFO_LEN];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ioctl(&sock, dev, &mut info)?;
    let driver = cstr(&info[4..36]);
    let n = u32::from_ne_bytes(
        info[DRVINFO_N_STATS..DRVINFO_N_STATS + 4]
            .try_into()
            .unwrap_or_default(),
    ) as usize;
    if n == 0 || n > MAX_STATS {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    let mut strings = vec![0u8; 12 + n * ETH_GSTRING_LEN];
    strings[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    strings[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
    strings[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
    ioctl(&sock, dev, &mut strings)?;
    let mut values = vec![0u8; 8 + n * 8];
    values[..4].copy_from_slice(&ETHTOOL_GSTATS.to_ne_bytes());
    values[4..8].copy_from_slice(&(n as u32).to_ne_bytes());
    ioctl(&sock, dev, &mut values)?;
    let got = (u32::from_ne_bytes(values[4..8].try_into().unwrap_or_default()) as usize).min(n);
    let mut stats = BTreeMap::new();
    for i in 0..got {
        let name = cstr(&strings[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN]);
        let v = u64::from_ne_bytes(values[8 + i * 8..16 + i * 8].try_into().unwrap_or_default());
        if !name.is_empty() {
            stats.insert(name.trim().to_string(), v);
        }
    }
    Ok(NicStats {
        device: dev.to_string(),
        driver: (!driver.is_empty()).then_some(driver),
        stats,
    })
}

/// Picks per-queue packet counters out of NIC statistic names. Known spellings:
/// `tx_queue_3_packets` (virtio, ixgbe), `queue_3_tx_cnt` / `queue_3_tx_packets` (ENA),
/// `tx-3.tx_packets` / `tx-3.packets` (i40e, ice), `tx3_packets` (mlx5).
pub fn queue_counters(nic: &NicStats) -> Vec<QueueStats> {
    let mut out: BTreeMap<(QueueDir, u32), (Option<u64>, Option<u64>)> = BTreeMap::new();
    for (name, v) in &nic.stats {
        let Some((dir, idx, what)) = parse_queue_stat(name) else {
            continue;
        };
        let e = out.entry((dir, idx)).or_default();
        match what {
            QueueWhat::Packets => e.0 = Some(*v),
            QueueWhat::Bytes => e.1 = Some(*v),
        }
    }
    out.into_iter()
        .filter_map(|((dir, index), (p, b))| {
            Some(QueueStats {
                device: nic.device.clone(),
                dir,
                index,
                packets: p?,
                bytes: b,
            })
        })
        .collect()
}

#[derive(Debug, PartialEq)]
enum QueueWhat {
    Packets,
    Bytes,
}

fn parse_queue_stat(name: &str) -> Option<(QueueDir, u32, QueueWhat)> {
    let n = name.to_ascii_lowercase().replace(['-', '.'], "_");
    let what = if n.ends_with("_packets") || n.ends_with("_cnt") || n.ends_with("_pkts") {
        QueueWhat::Packets
    } else if n.ends_with("_bytes") {
        QueueWhat::Bytes
    } else {
        return None;
    };
    let toks: Vec<&str> = n.split('_').collect();
    let mut dir = None;
    let mut idx = None;
    for (i, t) in toks.iter().enumerate() {
        let (d, rest) = if let Some(r) = t.strip_prefix("tx") {
            (Some(QueueDir::Tx), r)
        } else if let Some(r) = t.strip_prefix("rx") {
            (Some(QueueDir::Rx), r)
        } else {
            (None, *t)
        };
        if let Some(d) = d {
            if dir.is_none() {
                dir = Some(d);
            }
            if rest.is_empty() {
                idx = idx.or(toks.get(i + 1).and_then(|n| n.parse().ok()));
            } else {
                match rest.parse::<u32>() {
                    Ok(v) => idx = idx.or(Some(v)),
                    Err(_) => return None, // e.g. "txq": not a plain direction token
                }
            }
        } else if *t == "queue" || *t == "q" {
            idx = idx.or(toks.get(i + 1).and_then(|n| n.parse().ok()));
        }
    }
    // Skip XDP and error/drop counters that also end in _packets.
    if n.contains("xdp") || n.contains("drop") || n.contains("err") || n.contains("csum") {
        return None;
    }
    Some((dir?, idx?, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_stat_spellings() {
        use QueueDir::*;
        assert_eq!(
            parse_queue_stat("tx_queue_3_packets"),
            Some((Tx, 3, QueueWhat::Packets))
        );
        assert_eq!(
            parse_queue_stat("rx_queue_0_bytes"),
            Some((Rx, 0, QueueWhat::Bytes))
        );
        assert_eq!(
            parse_queue_stat("queue_7_tx_cnt"),
            Some((Tx, 7, QueueWhat::Packets))
        );
        assert_eq!(
            parse_queue_stat("tx-2.tx_packets"),
            Some((Tx, 2, QueueWhat::Packets))
        );
        assert_eq!(
            parse_queue_stat("tx5_packets"),
            Some((Tx, 5, QueueWhat::Packets))
        );
        assert_eq!(parse_queue_stat("tx_packets"), None);
        assert_eq!(parse_queue_stat("rx_queue_0_xdp_packets"), None);
        assert_eq!(parse_queue_stat("bw_out_allowance_exceeded"), None);
        let mut nic = NicStats {
            device: "eth0".into(),
            ..Default::default()
        };
        nic.stats.insert("queue_0_tx_cnt".into(), 10);
        nic.stats.insert("queue_0_tx_bytes".into(), 1000);
        nic.stats.insert("queue_1_tx_cnt".into(), 20);
        let q = queue_counters(&nic);
        assert_eq!(q.len(), 2);
        assert_eq!((q[0].packets, q[0].bytes), (10, Some(1000)));
        assert_eq!((q[1].index, q[1].bytes), (1, None));
    }

    #[test]
    fn loopback_has_no_statistics_and_says_so() {
        let e = nic_stats("lo").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
        assert!(nic_stats("nonexistent0").is_err());
    }
}
