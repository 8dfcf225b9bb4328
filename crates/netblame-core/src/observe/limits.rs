//! What limited a sender between two `tcp_info` samples, from the kernel's own stopwatches
//! (`tcpi_busy_time`, `tcpi_rwnd_limited`, `tcpi_sndbuf_limited`, commit efd901741675).
//!
//! `busy_time` counts all time with data queued to send; `rwnd_limited` and `sndbuf_limited`
//! are parts of it. What is busy but neither is bounded by the congestion window (the network)
//! or pacing. Wall time not busy means the application had nothing to send.

use super::tcp_info::{ca_state, TcpInfo};
use crate::finding::Limit;
use serde::Serialize;

/// Shares of an interval, each in `0.0..=1.0`, plus the raw microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default, schemars::JsonSchema)]
pub struct LimitShares {
    pub interval_us: u64,
    pub busy_us: u64,
    pub rwnd_limited_us: u64,
    pub sndbuf_limited_us: u64,
    /// Busy time bounded by neither the receiver window nor the send buffer.
    pub cwnd_limited_us: u64,
    /// The part of `cwnd_limited_us` spent in loss recovery or RTO backoff (all of it when the
    /// connection was in recovery at the later sample, else none). Kept apart so that summing
    /// intervals keeps one interval's recovery from turning the others' time into loss.
    pub loss_recovery_us: u64,
    /// Wall time with nothing queued to send.
    pub idle_us: u64,
    /// Segments retransmitted in the interval.
    pub retransmitted_segments: u64,
    /// True when the connection was in loss recovery or RTO backoff at the later sample.
    pub in_loss_recovery: bool,
}

impl LimitShares {
    /// Computes the shares from two samples of the same connection taken `interval_us` apart.
    /// Returns `None` when the kernel lacks the stopwatches (before 4.10).
    pub fn between(prev: &TcpInfo, cur: &TcpInfo, interval_us: u64) -> Option<LimitShares> {
        let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        Some(LimitShares::from_deltas(
            delta(prev.busy_time_us, cur.busy_time_us)?,
            delta(prev.rwnd_limited_us, cur.rwnd_limited_us)?,
            delta(prev.sndbuf_limited_us, cur.sndbuf_limited_us)?,
            interval_us,
            cur.total_retrans.saturating_sub(prev.total_retrans) as u64,
            cur.ca_state >= ca_state::RECOVERY || cur.backoff > 0,
        ))
    }

    /// Builds the shares from stopwatch deltas already taken (microseconds); clamps rwnd and
    /// sndbuf into busy time and busy time into the interval.
    pub fn from_deltas(
        busy_us: u64,
        rwnd_us: u64,
        sndbuf_us: u64,
        interval_us: u64,
        retransmitted_segments: u64,
        in_loss_recovery: bool,
    ) -> LimitShares {
        let rwnd = rwnd_us.min(busy_us);
        let sndbuf = sndbuf_us.min(busy_us - rwnd);
        let interval_us = interval_us.max(busy_us).max(1);
        LimitShares {
            interval_us,
            busy_us,
            rwnd_limited_us: rwnd,
            sndbuf_limited_us: sndbuf,
            cwnd_limited_us: busy_us - rwnd - sndbuf,
            loss_recovery_us: if in_loss_recovery {
                busy_us - rwnd - sndbuf
            } else {
                0
            },
            idle_us: interval_us - busy_us,
            retransmitted_segments,
            in_loss_recovery,
        }
    }

    /// Share of the interval, `0.0..=1.0`.
    pub fn share(&self, limit: Limit) -> f64 {
        let us = match limit {
            Limit::ReceiverWindow => self.rwnd_limited_us,
            Limit::SendBuffer => self.sndbuf_limited_us,
            Limit::CongestionWindow => self.cwnd_limited_us.saturating_sub(self.loss_recovery_us),
            Limit::LossRecovery => self.loss_recovery_us.min(self.cwnd_limited_us),
            Limit::Application => self.idle_us,
        };
        us as f64 / self.interval_us as f64
    }

    /// Receiver-window-limited time over busy time (time with data to send), `0.0..=1.0`: the
    /// share the window rules ([`crate::rules::bound::receiver_window_binds`]) judge.
    pub fn rwnd_share_of_busy(&self) -> f64 {
        self.rwnd_limited_us as f64 / self.busy_us.max(1) as f64
    }

    /// Sums stopwatch totals over streams or intervals (shares become the average).
    pub fn sum<'a>(it: impl IntoIterator<Item = &'a LimitShares>) -> Option<LimitShares> {
        let mut acc: Option<LimitShares> = None;
        for s in it {
            let a = acc.get_or_insert_with(LimitShares::default);
            a.interval_us += s.interval_us;
            a.busy_us += s.busy_us;
            a.rwnd_limited_us += s.rwnd_limited_us;
            a.sndbuf_limited_us += s.sndbuf_limited_us;
            a.cwnd_limited_us += s.cwnd_limited_us;
            a.loss_recovery_us += s.loss_recovery_us;
            a.idle_us += s.idle_us;
            a.retransmitted_segments += s.retransmitted_segments;
            a.in_loss_recovery |= s.in_loss_recovery;
        }
        acc
    }

    /// Busy time over the interval, `0.0..=1.0`.
    pub fn busy_share(&self) -> f64 {
        self.busy_us as f64 / self.interval_us.max(1) as f64
    }

    /// The limit with the largest share, and that share.
    pub fn dominant(&self) -> (Limit, f64) {
        [
            Limit::ReceiverWindow,
            Limit::SendBuffer,
            Limit::CongestionWindow,
            Limit::LossRecovery,
            Limit::Application,
        ]
        .into_iter()
        .map(|l| (l, self.share(l)))
        .fold((Limit::Application, -1.0), |best, cur| {
            if cur.1 > best.1 {
                cur
            } else {
                best
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(busy: u64, rwnd: u64, sndbuf: u64) -> TcpInfo {
        TcpInfo {
            len: 248,
            busy_time_us: Some(busy),
            rwnd_limited_us: Some(rwnd),
            sndbuf_limited_us: Some(sndbuf),
            ..Default::default()
        }
    }

    #[test]
    fn receiver_window_dominates() {
        let s =
            LimitShares::between(&info(0, 0, 0), &info(900_000, 800_000, 0), 1_000_000).unwrap();
        assert_eq!(s.dominant().0, Limit::ReceiverWindow);
        assert!((s.share(Limit::ReceiverWindow) - 0.8).abs() < 1e-9);
        assert!((s.share(Limit::CongestionWindow) - 0.1).abs() < 1e-9);
        assert!((s.share(Limit::Application) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn idle_is_the_application() {
        let s = LimitShares::between(&info(5, 0, 0), &info(5, 0, 0), 1_000_000).unwrap();
        assert_eq!(s.dominant(), (Limit::Application, 1.0));
    }

    #[test]
    fn loss_state_moves_cwnd_time_to_loss() {
        let mut cur = info(1_000_000, 0, 0);
        cur.ca_state = ca_state::LOSS;
        let s = LimitShares::between(&info(0, 0, 0), &cur, 1_000_000).unwrap();
        assert_eq!(s.dominant().0, Limit::LossRecovery);
    }

    #[test]
    fn old_kernels_give_none() {
        let old = TcpInfo {
            len: 168,
            ..Default::default()
        };
        assert!(LimitShares::between(&old, &old, 1_000_000).is_none());
    }
}
