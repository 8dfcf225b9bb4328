//! `struct tcp_info` (include/uapi/linux/tcp.h), parsed from the raw bytes the kernel returns
//! (sock_diag `INET_DIAG_INFO` or `getsockopt(TCP_INFO)`).
//!
//! Hand-rolled on purpose: the kernel returns its own `sizeof(tcp_info)` (104 to 280 bytes and
//! growing) and `libc`/`netlink-packet-sock-diag` only know one fixed layout. Fields the kernel
//! did not send are `None`, never zero. Pure byte parsing: no I/O.

use serde::{Deserialize, Serialize};

/// `tcpi_options` bits.
pub mod options {
    pub const TIMESTAMPS: u8 = 1;
    pub const SACK: u8 = 2;
    pub const WSCALE: u8 = 4;
    pub const ECN: u8 = 8;
    pub const ECN_SEEN: u8 = 16;
    pub const SYN_DATA: u8 = 32;
    pub const USEC_TS: u8 = 64;
}

/// Congestion-avoidance states (`tcpi_ca_state`).
pub mod ca_state {
    pub const OPEN: u8 = 0;
    pub const DISORDER: u8 = 1;
    pub const CWR: u8 = 2;
    pub const RECOVERY: u8 = 3;
    pub const LOSS: u8 = 4;
}

/// The smallest layout (Linux 2.6.12): everything before `tcpi_pacing_rate`.
pub const MIN_LEN: usize = 104;

/// A parsed `tcp_info`. Times are microseconds unless the name says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TcpInfo {
    /// How many bytes the kernel returned.
    pub len: usize,
    pub state: u8,
    pub ca_state: u8,
    pub retransmits: u8,
    pub probes: u8,
    pub backoff: u8,
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub rto_us: u32,
    pub ato_us: u32,
    pub snd_mss: u32,
    pub rcv_mss: u32,
    pub unacked: u32,
    pub sacked: u32,
    pub lost: u32,
    pub retrans: u32,
    pub fackets: u32,
    pub last_data_sent_ms: u32,
    pub last_ack_sent_ms: u32,
    pub last_data_recv_ms: u32,
    pub last_ack_recv_ms: u32,
    pub pmtu: u32,
    pub rcv_ssthresh: u32,
    pub rtt_us: u32,
    pub rttvar_us: u32,
    pub snd_ssthresh: u32,
    /// Congestion window in packets (segments of `snd_mss`).
    pub snd_cwnd: u32,
    pub advmss: u32,
    pub reordering: u32,
    pub rcv_rtt_us: u32,
    pub rcv_space: u32,
    pub total_retrans: u32,
    // 3.15
    pub pacing_rate: Option<u64>,
    pub max_pacing_rate: Option<u64>,
    // 4.1
    pub bytes_acked: Option<u64>,
    pub bytes_received: Option<u64>,
    // 4.2
    pub segs_out: Option<u32>,
    pub segs_in: Option<u32>,
    // 4.6
    pub notsent_bytes: Option<u32>,
    pub min_rtt_us: Option<u32>,
    pub data_segs_in: Option<u32>,
    pub data_segs_out: Option<u32>,
    // 4.9
    /// Bytes per second.
    pub delivery_rate: Option<u64>,
    pub delivery_rate_app_limited: Option<bool>,
    // 4.10
    pub busy_time_us: Option<u64>,
    pub rwnd_limited_us: Option<u64>,
    pub sndbuf_limited_us: Option<u64>,
    // 4.18
    pub delivered: Option<u32>,
    pub delivered_ce: Option<u32>,
    // 4.19
    pub bytes_sent: Option<u64>,
    pub bytes_retrans: Option<u64>,
    pub dsack_dups: Option<u32>,
    pub reord_seen: Option<u32>,
    // 5.4
    pub rcv_ooopack: Option<u32>,
    /// The peer's advertised window, bytes (already scaled).
    pub snd_wnd: Option<u32>,
    // 5.5 (bitfield in the byte after options; absent before 5.5 even though the byte exists)
    pub fastopen_client_fail: Option<u8>,
    // 6.2
    /// Our advertised window, bytes.
    pub rcv_wnd: Option<u32>,
    pub rehash: Option<u32>,
    // 6.7
    pub total_rto: Option<u16>,
    pub total_rto_recoveries: Option<u16>,
    pub total_rto_time_ms: Option<u32>,
    // 6.18 (AccECN)
    pub received_ce: Option<u32>,
    pub delivered_e1_bytes: Option<u32>,
    pub delivered_e0_bytes: Option<u32>,
    pub delivered_ce_bytes: Option<u32>,
    pub received_e1_bytes: Option<u32>,
    pub received_e0_bytes: Option<u32>,
    pub received_ce_bytes: Option<u32>,
}

/// Why bytes were not a `tcp_info`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tcp_info too short: {0} bytes, the oldest layout has {MIN_LEN}")]
pub struct TcpInfoTooShort(pub usize);

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&self, off: usize) -> u8 {
        self.0[off]
    }
    fn u16(&self, off: usize) -> Option<u16> {
        self.0
            .get(off..off + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    }
    fn u32(&self, off: usize) -> Option<u32> {
        self.0
            .get(off..off + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&self, off: usize) -> Option<u64> {
        self.0.get(off..off + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_ne_bytes(a)
        })
    }
    /// A field of the fixed 104-byte head, always present once the length was checked.
    fn head(&self, off: usize) -> u32 {
        self.u32(off).unwrap_or(0)
    }
}

impl TcpInfo {
    /// Parses any layout from 104 bytes up; longer (future) layouts are accepted and their
    /// unknown tail ignored.
    pub fn parse(bytes: &[u8]) -> Result<TcpInfo, TcpInfoTooShort> {
        if bytes.len() < MIN_LEN {
            return Err(TcpInfoTooShort(bytes.len()));
        }
        let r = Reader(bytes);
        let wscale = r.u8(6);
        let flags = r.u8(7);
        let has = |end: usize| bytes.len() >= end;
        Ok(TcpInfo {
            len: bytes.len(),
            state: r.u8(0),
            ca_state: r.u8(1),
            retransmits: r.u8(2),
            probes: r.u8(3),
            backoff: r.u8(4),
            options: r.u8(5),
            snd_wscale: wscale & 0x0f,
            rcv_wscale: wscale >> 4,
            rto_us: r.head(8),
            ato_us: r.head(12),
            snd_mss: r.head(16),
            rcv_mss: r.head(20),
            unacked: r.head(24),
            sacked: r.head(28),
            lost: r.head(32),
            retrans: r.head(36),
            fackets: r.head(40),
            last_data_sent_ms: r.head(44),
            last_ack_sent_ms: r.head(48),
            last_data_recv_ms: r.head(52),
            last_ack_recv_ms: r.head(56),
            pmtu: r.head(60),
            rcv_ssthresh: r.head(64),
            rtt_us: r.head(68),
            rttvar_us: r.head(72),
            snd_ssthresh: r.head(76),
            snd_cwnd: r.head(80),
            advmss: r.head(84),
            reordering: r.head(88),
            rcv_rtt_us: r.head(92),
            rcv_space: r.head(96),
            total_retrans: r.head(100),
            pacing_rate: r.u64(104),
            max_pacing_rate: r.u64(112),
            bytes_acked: r.u64(120),
            bytes_received: r.u64(128),
            segs_out: r.u32(136),
            segs_in: r.u32(140),
            notsent_bytes: r.u32(144),
            min_rtt_us: r.u32(148),
            data_segs_in: r.u32(152),
            data_segs_out: r.u32(156),
            delivery_rate: r.u64(160),
            delivery_rate_app_limited: has(168).then_some(flags & 1 == 1),
            busy_time_us: r.u64(168),
            rwnd_limited_us: r.u64(176),
            sndbuf_limited_us: r.u64(184),
            delivered: r.u32(192),
            delivered_ce: r.u32(196),
            bytes_sent: r.u64(200),
            bytes_retrans: r.u64(208),
            dsack_dups: r.u32(216),
            reord_seen: r.u32(220),
            rcv_ooopack: r.u32(224),
            snd_wnd: r.u32(228),
            fastopen_client_fail: has(232).then_some((flags >> 1) & 3),
            rcv_wnd: r.u32(232),
            rehash: r.u32(236),
            total_rto: r.u16(240),
            total_rto_recoveries: r.u16(242),
            total_rto_time_ms: r.u32(244),
            received_ce: r.u32(248),
            delivered_e1_bytes: r.u32(252),
            delivered_e0_bytes: r.u32(256),
            delivered_ce_bytes: r.u32(260),
            received_e1_bytes: r.u32(264),
            received_e0_bytes: r.u32(268),
            received_ce_bytes: r.u32(272),
        })
    }

    /// True when window scaling was negotiated (both SYNs carried the option).
    pub fn has_wscale(&self) -> bool {
        self.options & options::WSCALE != 0
    }

    /// Congestion window in bytes (`snd_cwnd * snd_mss`).
    pub fn cwnd_bytes(&self) -> u64 {
        self.snd_cwnd as u64 * self.snd_mss as u64
    }

    /// Smoothed RTT in microseconds, or `None` before any sample.
    pub fn srtt_us(&self) -> Option<u32> {
        (self.rtt_us > 0).then_some(self.rtt_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a synthetic 248-byte tcp_info with recognizable values at known offsets.
    fn sample(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; 280];
        b[0] = 1; // ESTABLISHED
        b[5] = options::WSCALE | options::SACK | options::TIMESTAMPS;
        b[6] = (7 << 4) | 9; // rcv_wscale 7, snd_wscale 9
        b[7] = 1; // app limited
        b[16..20].copy_from_slice(&1448u32.to_ne_bytes());
        b[68..72].copy_from_slice(&137_000u32.to_ne_bytes());
        b[80..84].copy_from_slice(&10u32.to_ne_bytes());
        b[160..168].copy_from_slice(&12_345u64.to_ne_bytes());
        b[168..176].copy_from_slice(&1_000_000u64.to_ne_bytes());
        b[176..184].copy_from_slice(&600_000u64.to_ne_bytes());
        b[228..232].copy_from_slice(&65_536u32.to_ne_bytes());
        b[232..236].copy_from_slice(&33_000u32.to_ne_bytes());
        b[240..242].copy_from_slice(&3u16.to_ne_bytes());
        b.truncate(len);
        b
    }

    #[test]
    fn full_layout() {
        let t = TcpInfo::parse(&sample(280)).unwrap();
        assert_eq!((t.snd_wscale, t.rcv_wscale), (9, 7));
        assert!(t.has_wscale());
        assert_eq!(t.snd_mss, 1448);
        assert_eq!(t.srtt_us(), Some(137_000));
        assert_eq!(t.cwnd_bytes(), 14_480);
        assert_eq!(t.delivery_rate, Some(12_345));
        assert_eq!(t.delivery_rate_app_limited, Some(true));
        assert_eq!(t.busy_time_us, Some(1_000_000));
        assert_eq!(t.rwnd_limited_us, Some(600_000));
        assert_eq!(t.snd_wnd, Some(65_536));
        assert_eq!(t.rcv_wnd, Some(33_000));
        assert_eq!(t.total_rto, Some(3));
        assert_eq!(t.received_ce_bytes, Some(0));
    }

    #[test]
    fn every_historic_length_parses_and_missing_fields_are_absent() {
        for len in [
            104, 120, 136, 144, 160, 168, 192, 200, 224, 232, 240, 248, 280, 300,
        ] {
            let mut bytes = sample(len.min(280));
            bytes.resize(len, 0);
            let t = TcpInfo::parse(&bytes).unwrap();
            assert_eq!(t.len, len);
            assert_eq!(t.rtt_us, 137_000);
            assert_eq!(t.pacing_rate.is_some(), len >= 120, "len {len}");
            assert_eq!(t.delivery_rate.is_some(), len >= 168, "len {len}");
            assert_eq!(
                t.delivery_rate_app_limited.is_some(),
                len >= 168,
                "len {len}"
            );
            assert_eq!(t.busy_time_us.is_some(), len >= 192, "len {len}");
            assert_eq!(t.snd_wnd.is_some(), len >= 232, "len {len}");
            assert_eq!(t.rcv_wnd.is_some(), len >= 240, "len {len}");
            assert_eq!(t.total_rto.is_some(), len >= 248, "len {len}");
            assert_eq!(t.received_ce_bytes.is_some(), len >= 276, "len {len}");
        }
    }

    #[test]
    fn too_short_is_an_error() {
        assert_eq!(TcpInfo::parse(&[0u8; 103]), Err(TcpInfoTooShort(103)));
        assert!(TcpInfo::parse(&[]).is_err());
    }
}
