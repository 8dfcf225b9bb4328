//! Verdicts on a transfer and on connects observed at both ends (what `netblame lab` scenarios
//! run), and the comparison of a verdict with the culprit a scenario expects.
//!
//! The sender's kernel stopwatches ([`LimitShares`]) say what bounded it; the receiver's
//! counters (zero windows advertised, Recv-Q, its buffer settings) say why the window was
//! small; retransmissions say whether the path lost packets. The receive-window arithmetic
//! comes from [`crate::window`] and [`crate::rules::window`].

use crate::finding::{Finding, Layer, Severity, Unit};
use crate::kernel::KernelVersion;
use crate::observe::{LimitShares, TcpInfo};
use crate::rules::window::{
    autotuning_ceiling, judge as judge_window, window_scaling_absent, AutotunedReceiver, Workload,
};
use crate::units::{format_duration, BitRate, Bytes};
use crate::window::{ceiling_bps, model, RcvSettings, SocketRequest};
use serde::Serialize;
use std::time::Duration;

use crate::catalogue::spec;
use crate::rules::shared::receiver_window_binds;

/// One bulk transfer seen at both ends.
#[derive(Debug, Clone)]
pub struct TransferObservation {
    /// Bytes the receiver got.
    pub bytes: u64,
    pub elapsed: Duration,
    /// False when the application gave up (its timeout) before the end.
    pub completed: bool,
    /// The application's timeout, if it has one.
    pub timeout: Option<Duration>,
    /// The planned size of a fixed-size transfer.
    pub planned_bytes: Option<u64>,
    /// The path's round-trip time without queueing (configured or minimum measured).
    pub path_rtt: Duration,
    /// The path's rate, bits per second, if known.
    pub link_bps: Option<f64>,
    /// Sender `tcp_info` when data started and at the end.
    pub sender_first: TcpInfo,
    pub sender_last: TcpInfo,
    /// Receiver `tcp_info` at the end.
    pub receiver_last: TcpInfo,
    /// SO_RCVBUF the receiving application set before connecting, if any.
    pub receiver_so_rcvbuf: Option<u64>,
    /// Largest Recv-Q seen at the receiver, bytes.
    pub receiver_recvq_max: u64,
    /// The receiver's `sk_rcvbuf` at the end, bytes.
    pub receiver_rcvbuf: u64,
    /// Zero windows the receiver advertised (TcpExt TCPToZeroWindowAdv delta).
    pub receiver_zero_windows: u64,
    /// Window probes the sender sent (TcpExt TCPWinProbe delta).
    pub sender_window_probes: u64,
    /// The receiver's kernel and receive settings (its namespace's sysctls).
    pub receiver_kernel: KernelVersion,
    pub receiver_settings: RcvSettings,
    /// Packets the path dropped, when the path can say (the lab's emulator can).
    pub path_drops: Option<u64>,
}

impl TransferObservation {
    /// Goodput over the transfer, bits per second.
    pub fn goodput_bps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-6)
    }

    /// The sender's limit shares over the transfer.
    pub fn shares(&self) -> Option<LimitShares> {
        LimitShares::between(
            &self.sender_first,
            &self.sender_last,
            self.elapsed.as_micros() as u64,
        )
    }

    fn retransmitted(&self) -> u64 {
        self.sender_last
            .total_retrans
            .saturating_sub(self.sender_first.total_retrans) as u64
    }

    fn data_segments(&self) -> u64 {
        match (
            self.sender_first.data_segs_out,
            self.sender_last.data_segs_out,
        ) {
            (Some(a), Some(b)) => b.saturating_sub(a) as u64,
            _ => 0,
        }
    }
}

/// Share of sender busy time on the window that, with a receive queue at half its buffer or
/// zero windows, makes the receiving application the culprit.
pub const RWND_SHARE: f64 = 0.3;
/// Retransmitted share of data segments above which the path is called lossy.
pub const LOSS_SHARE: f64 = 0.005;

/// Judges one transfer: what limited it, on which side, and why.
pub fn judge_transfer(o: &TransferObservation) -> Vec<Finding> {
    let mut out = Vec::new();
    let shares = o.shares();
    // Share of the sender's busy time (time with data to send) spent waiting on the window.
    let rwnd = shares.map_or(0.0, |s| s.rwnd_share_of_busy());
    let goodput = o.goodput_bps();
    let rtt = o.path_rtt;
    let subject = format!("{} in {}", Bytes(o.bytes), format_duration(o.elapsed));
    let zero = o.receiver_zero_windows > 0 || o.sender_window_probes > 0;
    let recvq_full = o.receiver_recvq_max * 2 >= o.receiver_rcvbuf.max(1);
    if (zero && (rwnd >= RWND_SHARE || recvq_full)) || (rwnd >= RWND_SHARE && recvq_full) {
        out.push(
            Finding::new(
                spec("receiver-zero-window"),
                Severity::Critical,
                format!(
                    "the receiver's buffer filled ({} queued unread) and it advertised {} zero windows",
                    Bytes(o.receiver_recvq_max),
                    o.receiver_zero_windows
                ),
            )
            .subject(subject.clone())
            .evidence("zero_windows", o.receiver_zero_windows as f64, Unit::Count)
            .evidence("window_probes", o.sender_window_probes as f64, Unit::Count)
            .evidence("recvq_max", o.receiver_recvq_max as f64, Unit::Bytes)
            .evidence("rcvbuf", o.receiver_rcvbuf as f64, Unit::Bytes)
            .evidence("rwnd_limited", rwnd * 100.0, Unit::Percent)
            .evidence("goodput", goodput, Unit::BitsPerSecond)
            .explain(format!(
                "Recv-Q reached {} of a {} buffer: the application did not read; the sender was \
                 receiver-window limited {:.0}% of its busy time and probed the zero window {} times; \
                 goodput {} is the application's read rate, not the path's",
                Bytes(o.receiver_recvq_max),
                Bytes(o.receiver_rcvbuf),
                rwnd * 100.0,
                o.sender_window_probes,
                BitRate(goodput)
            ))
            .fix("make the receiving application read faster (or in another thread); a bigger buffer only delays the zero window"),
        );
        return out;
    }
    // Whether the window bound the sender: the rule shared with throughput tests, on the
    // window the sender saw last.
    let window = o.sender_last.snd_wnd.unwrap_or(0) as u64;
    let window_ceiling = ceiling_bps(window, rtt);
    let window_bound = receiver_window_binds(rwnd, goodput, (window > 0).then_some(window_ceiling));
    if window_bound {
        if !o.sender_last.has_wscale() {
            // In a lab the emulator never strips TCP options: an endpoint's tcp_window_scaling
            // sysctl turned it off.
            let f = window_scaling_absent(rtt, goodput, rwnd, Severity::Critical, true);
            out.push(f.subject(subject.clone()));
            return out;
        }
        if let Some(so) = o.receiver_so_rcvbuf {
            let m = model(
                &o.receiver_kernel,
                &o.receiver_settings,
                &SocketRequest {
                    so_rcvbuf: Some(so),
                    mss: o.receiver_last.rcv_mss.max(536) as u64,
                    measured_ratio: None,
                },
            );
            let w = Workload {
                rtt: Some(rtt),
                size: o.planned_bytes,
                timeout: o.timeout,
                link_bps: o.link_bps,
                mss: o.sender_last.snd_mss.max(536) as u64,
            };
            let mut found = judge_window(&o.receiver_kernel, &m, &w);
            for f in &mut found {
                f.subject = Some(subject.clone());
                if f.id == "rcvbuf-fixed-small" {
                    f.severity = Severity::Critical;
                    f.evidence.push(crate::finding::Evidence {
                        name: "rwnd_limited".into(),
                        value: rwnd * 100.0,
                        unit: Unit::Percent,
                    });
                    f.evidence.push(crate::finding::Evidence {
                        name: "goodput".into(),
                        value: goodput,
                        unit: Unit::BitsPerSecond,
                    });
                    if !o.completed {
                        f.summary += &format!(
                            "; the transfer hit its {} timeout after {}",
                            o.timeout.map(format_duration).unwrap_or_default(),
                            Bytes(o.bytes)
                        );
                    }
                }
            }
            out.extend(found);
            return out;
        }
        let autotuned = AutotunedReceiver {
            kernel: &o.receiver_kernel,
            settings: &o.receiver_settings,
            mss: o.receiver_last.rcv_mss.max(536) as u64,
            peer_window: window,
            rtt,
            goodput_bps: goodput,
            rwnd_share: rwnd,
            link_bps: o.link_bps,
        };
        if let Some(f) = autotuning_ceiling(&autotuned, Severity::Critical) {
            out.push(f.subject(subject.clone()));
            return out;
        }
        // Bound by the window, but not by SO_RCVBUF, window scaling or tcp_rmem[2]: something
        // at the receiving end kept its window small.
        out.push(
            Finding::new(
                spec("receiver-window-limited"),
                Severity::Warning,
                format!(
                    "the receiver's window held the sender {:.0}% of its busy time",
                    rwnd * 100.0
                ),
            )
            .subject(subject.clone())
            .evidence("window", window as f64, Unit::Bytes)
            .evidence("rtt", rtt.as_secs_f64() * 1e6, Unit::Microseconds)
            .evidence("ceiling", window_ceiling, Unit::BitsPerSecond)
            .evidence("goodput", goodput, Unit::BitsPerSecond)
            .evidence("rwnd_limited", rwnd * 100.0, Unit::Percent)
            .evidence("recvq_max", o.receiver_recvq_max as f64, Unit::Bytes)
            .explain(format!(
                "window {} / {} RTT = {} ceiling; goodput {}; the receiver set no SO_RCVBUF, \
                 scaled its window and its tcp_rmem[2] {} allows more, so something at the receiving \
                 end kept it small: most often an application that leaves data unread (largest \
                 Recv-Q {}), or autotuning that had not grown the buffer yet",
                Bytes(window),
                format_duration(rtt),
                BitRate(window_ceiling),
                BitRate(goodput),
                Bytes(o.receiver_settings.tcp_rmem[2]),
                Bytes(o.receiver_recvq_max)
            ))
            .fix("look at the receiving application: read sooner and in larger chunks (`netblame sockets --explain` on the receiver shows its Recv-Q)"),
        );
        return out;
    }
    let retrans = o.retransmitted();
    let segs = o.data_segments().max(1);
    let loss = retrans as f64 / segs as f64;
    if loss >= LOSS_SHARE {
        let mut f = Finding::new(
            spec("network-loss"),
            Severity::Warning,
            format!("{:.1}% of data segments were retransmitted: the path loses packets, the receiver kept up", loss * 100.0),
        )
        .subject(subject.clone())
        .evidence("retransmitted", retrans as f64, Unit::Count)
        .evidence("data_segments", segs as f64, Unit::Count)
        .evidence("retransmit_share", loss * 100.0, Unit::Percent)
        .evidence("rwnd_limited", rwnd * 100.0, Unit::Percent)
        .evidence("goodput", goodput, Unit::BitsPerSecond);
        if let Some(d) = o.path_drops {
            f = f.evidence("path_drops", d as f64, Unit::Count);
        }
        if let Some(s) = shares {
            f = f.evidence(
                "cwnd_or_loss_limited",
                s.cwnd_limited_us as f64 / s.interval_us as f64 * 100.0,
                Unit::Percent,
            );
        }
        out.push(
            f.explain(format!(
                "{retrans} of {segs} data segments retransmitted = {:.2}%; the receive window bounded the sender only {:.0}% \
                 of its busy time, so the congestion window (the network) set the pace: goodput {}",
                loss * 100.0,
                rwnd * 100.0,
                BitRate(goodput)
            ))
            .fix("find the lossy hop (interface and qdisc drop counters, `netblame probe` to each hop); host tuning will not help"),
        );
        return out;
    }
    let mut f = Finding::new(
        spec("congestion-window-limited"),
        Severity::Info,
        format!(
            "no host-side limit: {} at {} RTT",
            BitRate(goodput),
            format_duration(rtt)
        ),
    )
    .subject(subject)
    .evidence("goodput", goodput, Unit::BitsPerSecond)
    .evidence("rwnd_limited", rwnd * 100.0, Unit::Percent)
    .evidence("retransmitted", retrans as f64, Unit::Count);
    let mut why = format!(
        "receiver-window limited {:.0}% of its busy time, {retrans} retransmissions",
        rwnd * 100.0
    );
    if let Some(rate) = o.link_bps {
        f = f.evidence("link_rate", rate, Unit::BitsPerSecond);
        why += &format!(
            "; goodput {} of a {} link ({:.0}%)",
            BitRate(goodput),
            BitRate(rate),
            goodput / rate * 100.0
        );
    }
    out.push(f.explain(why));
    out
}

/// Connects seen from the client.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectObservation {
    /// Time of each connect (SYN to established).
    pub times: Vec<Duration>,
    /// SYNs the client retransmitted (TcpExt TCPSynRetrans delta).
    pub syn_retransmits: u64,
    /// The path's round-trip time.
    pub path_rtt: Duration,
}

/// The initial retransmission timeout for a SYN (`TCP_TIMEOUT_INIT`).
pub const SYN_RTO: Duration = Duration::from_secs(1);

/// Judges connect times: clustered at one RTO above the RTT means lost SYNs.
pub fn judge_connects(o: &ConnectObservation) -> Vec<Finding> {
    let slow_threshold = o.path_rtt + SYN_RTO / 2;
    let slow: Vec<&Duration> = o.times.iter().filter(|t| **t >= slow_threshold).collect();
    if slow.is_empty() || o.times.is_empty() {
        return Vec::new();
    }
    let mut sorted = o.times.clone();
    sorted.sort();
    let p50 = sorted[sorted.len() / 2];
    let max = *sorted.last().expect("non-empty");
    vec![Finding::new(
        spec("syn-retransmit"),
        Severity::Warning,
        format!(
            "{} of {} connects took {} or more (median {}): their first SYN was lost",
            slow.len(),
            o.times.len(),
            format_duration(slow_threshold),
            format_duration(p50)
        ),
    )
    .evidence("slow_connects", slow.len() as f64, Unit::Count)
    .evidence("connects", o.times.len() as f64, Unit::Count)
    .evidence("connect_p50", p50.as_secs_f64() * 1e6, Unit::Microseconds)
    .evidence("connect_max", max.as_secs_f64() * 1e6, Unit::Microseconds)
    .evidence("syn_retransmits", o.syn_retransmits as f64, Unit::Count)
    .evidence("rtt", o.path_rtt.as_secs_f64() * 1e6, Unit::Microseconds)
    .explain(format!(
        "a connect normally takes one RTT ({}); a lost SYN is resent after the initial RTO of 1 s, so the slow \
         connects took 1 s + RTT; the client retransmitted {} SYNs",
        format_duration(o.path_rtt),
        o.syn_retransmits
    ))
    .fix("find where SYNs are lost (a lossy or policing hop, or the server's accept queue: ListenOverflows); \
          a client connect timeout below 1 s turns each into a failure")]
}

/// The culprit a scenario expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Expected {
    /// The finding id that must appear at warning or above; `None` = nothing above info.
    pub finding: Option<&'static str>,
    pub layer: Option<Layer>,
}

/// True when the findings name the expected culprit (the finding id, at warning or above, on
/// the expected layer), or, when nothing is expected, when no finding is above info.
pub fn verdict_matches(expected: &Expected, findings: &[Finding]) -> bool {
    match expected.finding {
        None => findings.iter().all(|f| f.severity <= Severity::Info),
        Some(id) => findings.iter().any(|f| {
            f.id == id
                && f.severity >= Severity::Warning
                && expected.layer.is_none_or(|l| l == f.layer)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(busy: u64, rwnd: u64, retrans: u32, segs: u32, wscale: bool) -> TcpInfo {
        TcpInfo {
            len: 248,
            options: if wscale {
                crate::observe::tcp_info::options::WSCALE
            } else {
                0
            },
            busy_time_us: Some(busy),
            rwnd_limited_us: Some(rwnd),
            sndbuf_limited_us: Some(0),
            total_retrans: retrans,
            data_segs_out: Some(segs),
            snd_mss: 1448,
            rcv_mss: 1448,
            snd_wnd: Some(65_535),
            ..Default::default()
        }
    }

    fn obs(last: TcpInfo) -> TransferObservation {
        let kernel: KernelVersion = "6.18.0".parse().unwrap();
        TransferObservation {
            bytes: 10 << 20,
            elapsed: Duration::from_secs(2),
            completed: true,
            path_rtt: Duration::from_millis(50),
            link_bps: Some(100e6),
            sender_first: sample(0, 0, 0, 0, true),
            receiver_last: sample(0, 0, 0, 0, true),
            receiver_settings: RcvSettings::defaults_for(&kernel),
            receiver_kernel: kernel,
            sender_last: last,
            timeout: None,
            planned_bytes: None,
            receiver_so_rcvbuf: None,
            receiver_recvq_max: 0,
            receiver_rcvbuf: 0,
            receiver_zero_windows: 0,
            sender_window_probes: 0,
            path_drops: None,
        }
    }

    #[test]
    fn rwnd_without_wscale_blames_window_scaling() {
        let f = judge_transfer(&obs(sample(2_000_000, 1_800_000, 0, 1000, false)));
        assert_eq!(f[0].id, "window-scaling-absent");
        let e = Expected {
            finding: Some("window-scaling-absent"),
            layer: Some(Layer::Host),
        };
        assert!(verdict_matches(&e, &f));
    }

    #[test]
    fn rwnd_with_small_rmem_blames_the_sysctl() {
        let mut o = obs(sample(2_000_000, 1_800_000, 0, 1000, true));
        o.receiver_settings.tcp_rmem[2] = 262_144;
        let f = judge_transfer(&o);
        assert_eq!(f[0].id, "buffer-max-below-bdp");
        assert_eq!(f[0].value("tcp_rmem_max"), Some(262_144.0));
        assert!(f[0].fix.contains("tcp_rmem"), "{}", f[0].fix);
    }

    #[test]
    fn window_bound_without_a_host_cause_is_still_the_receiver_window() {
        // 90% of busy time on the window, scaling on, no SO_RCVBUF, a 32 MiB tcp_rmem[2]:
        // not "no host-side limit".
        let f = judge_transfer(&obs(sample(2_000_000, 1_800_000, 0, 1000, true)));
        assert_eq!(f[0].id, "receiver-window-limited", "{f:#?}");
        assert_eq!(f[0].layer, Layer::Application);
        assert_eq!(f[0].value("rwnd_limited"), Some(90.0));
        assert!(f.iter().all(|x| x.id != "congestion-window-limited"));
    }

    #[test]
    fn zero_windows_blame_the_reader() {
        let mut o = obs(sample(2_000_000, 1_800_000, 0, 1000, true));
        o.receiver_zero_windows = 12;
        o.receiver_recvq_max = 100_000;
        o.receiver_rcvbuf = 131_072;
        assert_eq!(judge_transfer(&o)[0].id, "receiver-zero-window");
    }

    #[test]
    fn retransmits_without_rwnd_blame_the_network() {
        let f = judge_transfer(&obs(sample(2_000_000, 10_000, 50, 2000, true)));
        assert_eq!(f[0].id, "network-loss");
        assert_eq!(f[0].layer, Layer::Network);
        let healthy = judge_transfer(&obs(sample(2_000_000, 10_000, 0, 2000, true)));
        assert!(verdict_matches(
            &Expected {
                finding: None,
                layer: None
            },
            &healthy
        ));
        assert!(!verdict_matches(
            &Expected {
                finding: None,
                layer: None
            },
            &f
        ));
    }

    #[test]
    fn slow_connects_cluster_at_one_rto() {
        let ms = Duration::from_millis;
        let o = ConnectObservation {
            times: vec![ms(21), ms(20), ms(1021), ms(22), ms(1020), ms(20)],
            syn_retransmits: 2,
            path_rtt: ms(20),
        };
        let f = judge_connects(&o);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].value("slow_connects"), Some(2.0));
        let fast = ConnectObservation {
            times: vec![ms(21); 5],
            syn_retransmits: 0,
            path_rtt: ms(20),
        };
        assert!(judge_connects(&fast).is_empty());
    }
}
