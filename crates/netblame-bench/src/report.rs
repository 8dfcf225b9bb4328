//! Results: the verdict inputs for netblame-core (one per direction) and the iperf3 `-J` layout
//! (`start`, `intervals`, `end` with `sum_sent`, `sum_received`, `cpu_utilization_percent`)
//! with netblame's additions under `netblame`, filled into the types of [`crate::iperf3_json`].

use crate::client::{ClientOutcome, StreamInfo};
use crate::config::TestParams;
use crate::iperf3_json::{
    ClientDoc, Connected, CpuUtilization, End, EndSide, EndStream, EndSum, HostPort, Interval,
    IntervalSum, Netblame, Start, StreamInterval, TestStart, Timestamp,
};
use crate::sample::{IntervalSample, StreamSample};
use netblame_core::observe::transfer::{
    AppDeadline, BufferRequest, PathFacts, ReceiverFacts, Retransmissions, SenderFacts, Transfer,
};
use netblame_core::observe::LimitShares;
use netblame_core::Finding;
use std::time::Duration;

/// One stream's counted (not omitted) samples, summed: what the sender saw of its limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderStream {
    pub id: i64,
    pub shares: Option<LimitShares>,
    pub bytes: u64,
    pub seconds: f64,
    pub mean_rtt_us: f64,
    /// The receiver's window as the sender saw it (mean, weighted to rwnd-limited time when any).
    pub mean_snd_wnd_bytes: Option<f64>,
    pub retransmits: u64,
    pub data_segments: u64,
    pub dsack_dups: u64,
    pub window_scaling: Option<bool>,
}

/// What the senders of one direction saw, summed over streams: the facts the core judges.
pub fn sender_facts(senders: &[SenderStream]) -> SenderFacts {
    let streams = senders.len().max(1);
    let bytes: u64 = senders.iter().map(|s| s.bytes).sum();
    let seconds = senders.iter().map(|s| s.seconds).fold(0.0, f64::max);
    let shares = LimitShares::sum(senders.iter().filter_map(|s| s.shares.as_ref()));
    SenderFacts {
        observed: shares.is_some(),
        shares,
        expected_busy: true,
        bytes,
        rate_bps: if seconds > 0.0 {
            bytes as f64 * 8.0 / seconds / streams as f64
        } else {
            0.0
        },
        streams,
        peer_window_bytes: senders
            .iter()
            .filter_map(|s| s.mean_snd_wnd_bytes)
            .fold(None, |a: Option<f64>, w| Some(a.map_or(w, |a| a.min(w))))
            .map(|w| w.round() as u64),
        window_scaling: if senders.iter().any(|s| s.window_scaling == Some(false)) {
            Some(false)
        } else {
            senders.iter().find_map(|s| s.window_scaling)
        },
        retrans: Retransmissions {
            segments: senders.iter().map(|s| s.retransmits).sum(),
            data_segments: senders.iter().map(|s| s.data_segments).sum(),
            spurious: senders.iter().map(|s| s.dsack_dups).sum(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The mean RTT over streams, when any stream measured one.
pub fn mean_rtt(senders: &[SenderStream]) -> Option<Duration> {
    let rtts: Vec<f64> = senders
        .iter()
        .map(|s| s.mean_rtt_us)
        .filter(|r| *r > 0.0)
        .collect();
    (!rtts.is_empty())
        .then(|| Duration::from_secs_f64(rtts.iter().sum::<f64>() / rtts.len() as f64 / 1e6))
}

/// Sums one stream's counted (not omitted) samples into the verdict's sender view.
pub fn sender_stream(id: i64, samples: &[&StreamSample]) -> SenderStream {
    let counted: Vec<&&StreamSample> = samples.iter().filter(|s| !s.omitted).collect();
    let use_all = counted.is_empty();
    let set: Vec<&StreamSample> = if use_all {
        samples.to_vec()
    } else {
        counted.into_iter().copied().collect()
    };
    let shares = LimitShares::sum(
        set.iter()
            .filter_map(|s| s.shares())
            .collect::<Vec<_>>()
            .iter(),
    );
    let rtts: Vec<f64> = set
        .iter()
        .filter(|s| s.rtt_us > 0)
        .map(|s| s.rtt_us as f64)
        .collect();
    let rwnd_weight: f64 = set
        .iter()
        .map(|s| s.rwnd_limited_us.unwrap_or(0) as f64)
        .sum();
    let wnd = {
        let with: Vec<(f64, f64)> = set
            .iter()
            .filter_map(|s| {
                s.snd_wnd_bytes
                    .map(|w| (w as f64, s.rwnd_limited_us.unwrap_or(0) as f64))
            })
            .collect();
        if with.is_empty() {
            None
        } else if rwnd_weight > 0.0 {
            Some(
                with.iter().map(|(w, k)| w * k).sum::<f64>()
                    / with.iter().map(|x| x.1).sum::<f64>().max(1.0),
            )
        } else {
            Some(with.iter().map(|x| x.0).sum::<f64>() / with.len() as f64)
        }
    };
    SenderStream {
        id,
        shares,
        bytes: set.iter().map(|s| s.bytes).sum(),
        seconds: set.iter().map(|s| s.seconds).sum(),
        mean_rtt_us: if rtts.is_empty() {
            0.0
        } else {
            rtts.iter().sum::<f64>() / rtts.len() as f64
        },
        mean_snd_wnd_bytes: wnd,
        retransmits: set.iter().map(|s| s.retransmits).sum(),
        data_segments: set.iter().map(|s| s.data_segments).sum(),
        dsack_dups: set.iter().map(|s| s.dsack_dups).sum(),
        window_scaling: set.iter().rev().find_map(|s| s.window_scaling),
    }
}

fn streams_of(intervals: &[IntervalSample], sender: bool) -> Vec<(i64, Vec<&StreamSample>)> {
    let mut out: Vec<(i64, Vec<&StreamSample>)> = Vec::new();
    for iv in intervals {
        for s in iv.streams.iter().filter(|s| s.sender == sender) {
            match out.iter_mut().find(|(id, _)| *id == s.id) {
                Some((_, v)) => v.push(s),
                None => out.push((s.id, vec![s])),
            }
        }
    }
    out
}

fn timeline(intervals: &[IntervalSample], ids: &[i64], sender: bool) -> Vec<(f64, u64)> {
    let mut acc = 0u64;
    intervals
        .iter()
        .map(|iv| {
            acc += iv
                .streams
                .iter()
                .filter(|s| s.sender == sender && ids.contains(&s.id))
                .map(|s| s.bytes)
                .sum::<u64>();
            (iv.end, acc)
        })
        .collect()
}

fn mean_recv_q(intervals: &[IntervalSample], ids: &[i64], sender: bool) -> Option<f64> {
    let v: Vec<f64> = intervals
        .iter()
        .flat_map(|iv| iv.streams.iter())
        .filter(|s| s.sender == sender && ids.contains(&s.id))
        .map(|s| s.recv_q_bytes as f64)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The verdict inputs of a client run: one observation per direction that carried data.
pub fn observations(o: &ClientOutcome, app_timeout: Option<Duration>) -> Vec<Transfer> {
    let p = &o.params;
    let server_iv: &[IntervalSample] = o
        .server
        .as_ref()
        .map(|s| s.intervals.as_slice())
        .unwrap_or(&[]);
    let mut out = Vec::new();
    for client_sends in [true, false] {
        let ids: Vec<i64> = o
            .streams
            .iter()
            .filter(|s| s.client_sends == client_sends)
            .map(|s| s.id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        // The sender's samples: ours when we send, the server's when it sends.
        let (sender_iv, receiver_iv, receiver_is_client) = if client_sends {
            (&o.intervals[..], server_iv, false)
        } else {
            (server_iv, &o.intervals[..], true)
        };
        let mut senders: Vec<SenderStream> = streams_of(sender_iv, true)
            .into_iter()
            .filter(|(id, _)| ids.contains(id))
            .map(|(id, v)| sender_stream(id, &v))
            .collect();
        if senders.is_empty() {
            // Only the receiver's view: bytes and time, no stopwatches.
            senders = streams_of(receiver_iv, false)
                .into_iter()
                .filter(|(id, _)| ids.contains(id))
                .map(|(id, v)| SenderStream {
                    shares: None,
                    ..sender_stream(id, &v)
                })
                .collect();
        }
        let mut buffers = Vec::new();
        let mut receiver_rcvbuf = None;
        let mut receiver_actual = None;
        for (i, s) in o.streams.iter().enumerate() {
            let srv = o.server.as_ref().and_then(|x| x.buffers.get(i));
            for (side, b, sends) in [
                ("client", Some(&s.buffers), s.client_sends),
                ("server", srv, !s.client_sends),
            ] {
                let Some(b) = b else { continue };
                if let Some(r) = b.requested_rcvbuf_bytes {
                    buffers.push(BufferRequest {
                        option: "SO_RCVBUF",
                        side: side.into(),
                        requested_bytes: r,
                        actual_bytes: b.actual_rcvbuf_bytes,
                        applied: true,
                    });
                }
                if let Some(r) = b.requested_sndbuf_bytes {
                    buffers.push(BufferRequest {
                        option: "SO_SNDBUF",
                        side: side.into(),
                        requested_bytes: r,
                        actual_bytes: b.actual_sndbuf_bytes,
                        applied: true,
                    });
                }
                if !sends && s.client_sends == client_sends {
                    receiver_rcvbuf = receiver_rcvbuf.or(b.requested_rcvbuf_bytes);
                    receiver_actual = receiver_actual.or(Some(b.actual_rcvbuf_bytes));
                }
            }
        }
        if receiver_rcvbuf.is_none() && !receiver_is_client && o.server.is_none() {
            receiver_rcvbuf = p.window;
        }
        let (tl_iv, tl_sender) = if receiver_iv.is_empty() {
            (sender_iv, true)
        } else {
            (receiver_iv, false)
        };
        // A plain iperf3 server never applies a client's receive-only or send-only request.
        if o.server.is_none() {
            for (opt, asked) in [("SO_RCVBUF", p.rcvbuf), ("SO_SNDBUF", p.sndbuf)] {
                if let Some(r) = asked {
                    let server_should = (opt == "SO_RCVBUF") == client_sends;
                    if server_should {
                        buffers.push(BufferRequest {
                            option: opt,
                            side: "server".into(),
                            requested_bytes: r,
                            actual_bytes: 0,
                            applied: false,
                        });
                    }
                }
            }
        }
        let (receiver_host, receiver_cpu) = if receiver_is_client {
            (o.local_host.receiver_host(), o.cpu_local.total)
        } else {
            (
                o.server.as_ref().and_then(|s| s.host.receiver_host()),
                o.cpu_remote.total,
            )
        };
        let ip = |a: &str| a.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
        let loopback = match (ip(&o.control_local), ip(&o.control_remote)) {
            (Some(l), Some(r)) => r.is_loopback() || l == r,
            _ => false,
        };
        out.push(Transfer {
            subject: if client_sends {
                "client -> server".into()
            } else {
                "server -> client".into()
            },
            sender: sender_facts(&senders),
            receiver: ReceiverFacts {
                so_rcvbuf: receiver_rcvbuf,
                // The size measured at setup is the buffer only when SO_RCVBUF fixed it; an
                // autotuned one grows during the test (its queue is judged by zero windows then).
                rcvbuf_bytes: receiver_rcvbuf.and(receiver_actual),
                recv_q_mean_bytes: mean_recv_q(receiver_iv, &ids, false),
                host: receiver_host,
                // iperf3's cpu_util_total: percent of one CPU over the test (the process).
                cpu_share: (receiver_cpu > 0.0).then_some(receiver_cpu / 100.0),
                ..Default::default()
            },
            path: PathFacts {
                rtt: mean_rtt(&senders),
                loopback,
                options_preserved: loopback,
                ..Default::default()
            },
            buffers,
            deadline: app_timeout.map(|timeout| AppDeadline {
                timeout,
                bytes_needed: (p.bytes > 0).then_some(p.bytes),
                timeline: timeline(tl_iv, &ids, tl_sender),
            }),
        });
    }
    // Capped-buffer findings once per test, not per direction.
    for later in out.iter_mut().skip(1) {
        later.buffers.clear();
    }
    out
}

fn iperf_stream_interval(s: &StreamSample, socket: i64) -> StreamInterval {
    let sender = |v: u64| s.sender.then_some(v);
    StreamInterval {
        socket,
        start: s.start,
        end: s.end,
        seconds: s.seconds,
        bytes: s.bytes,
        bits_per_second: s.bits_per_second,
        retransmits: sender(s.retransmits),
        snd_cwnd: sender(s.snd_cwnd_bytes),
        snd_wnd: sender(s.snd_wnd_bytes.unwrap_or(0)),
        rtt: sender(s.rtt_us),
        rttvar: sender(s.rttvar_us),
        pmtu: sender(s.pmtu),
        reorder: s.reorder.filter(|_| s.sender),
        omitted: s.omitted,
        sender: s.sender,
    }
}

fn sum_of(streams: &[&StreamSample], sender: bool) -> IntervalSum {
    let bytes: u64 = streams.iter().map(|s| s.bytes).sum();
    let first = streams.first();
    let (start, end, seconds) = first
        .map(|s| (s.start, s.end, s.seconds))
        .unwrap_or_default();
    IntervalSum {
        start,
        end,
        seconds,
        bytes,
        bits_per_second: bytes as f64 * 8.0 / seconds.max(1e-9),
        retransmits: sender.then(|| streams.iter().map(|s| s.retransmits).sum()),
        omitted: first.is_some_and(|s| s.omitted),
        sender,
    }
}

/// The iperf3 `-J` document for a client run, with netblame's samples and verdict under
/// `netblame`.
pub fn iperf3_json(o: &ClientOutcome, findings: &[Finding]) -> ClientDoc {
    ClientDoc {
        start: start_json(&o.host, o.port, &o.params, &o.cookie, &o.streams),
        intervals: o
            .intervals
            .iter()
            .map(|iv| interval_json(&o.params, iv))
            .collect(),
        end: end_json(o),
        netblame: netblame_json(o, findings),
    }
}

/// iperf3 prints file descriptors as stream sockets; any stable small number will do.
fn socket(id: i64) -> i64 {
    id + 4
}

/// One element of iperf3's `intervals` (and the data of a `--json-stream` `interval` event).
pub fn interval_json(p: &TestParams, iv: &IntervalSample) -> Interval {
    let fwd: Vec<&StreamSample> = iv.streams.iter().filter(|s| !p.bidir || s.sender).collect();
    let rev: Vec<&StreamSample> = iv.streams.iter().filter(|s| p.bidir && !s.sender).collect();
    Interval {
        streams: iv
            .streams
            .iter()
            .map(|s| iperf_stream_interval(s, socket(s.id)))
            .collect(),
        sum: sum_of(&fwd, fwd.first().is_some_and(|s| s.sender)),
        sum_bidir_reverse: p.bidir.then(|| sum_of(&rev, false)),
    }
}

/// netblame's additions to the `-J` document: both ends' samples and buffers, the server's
/// output, the findings (a `netblame` event in `--json-stream`).
pub fn netblame_json(o: &ClientOutcome, findings: &[Finding]) -> Netblame {
    Netblame {
        streams: o.streams.clone(),
        client_intervals: o.intervals.clone(),
        server: o.server.clone(),
        server_output: o.server_output.clone(),
        findings: findings.to_vec(),
    }
}

/// A test-long total of `bytes` over `seconds` (the rate 0 for an empty test).
fn end_sum(seconds: f64, bytes: u64, sender: bool, retransmits: Option<i64>) -> EndSum {
    EndSum {
        start: 0,
        end: seconds,
        seconds,
        bytes,
        bits_per_second: bytes as f64 * 8.0 / seconds.max(1e-9),
        retransmits,
        sender,
    }
}

/// One stream's end in `end.streams`, without the sender's sampled extremes.
fn end_side(seconds: f64, id: i64, bytes: u64, sender: bool, retr: Option<i64>) -> EndSide {
    EndSide {
        socket: socket(id),
        start: 0,
        end: seconds,
        seconds,
        bytes,
        bits_per_second: bytes as f64 * 8.0 / seconds.max(1e-9),
        retransmits: retr.map(|r| r.max(0)),
        max_snd_cwnd: None,
        max_snd_wnd: None,
        max_rtt: None,
        min_rtt: None,
        mean_rtt: None,
        reorder: None,
        sender,
    }
}

/// iperf3's `end` object for a client run (and the data of a `--json-stream` `end` event).
pub fn end_json(o: &ClientOutcome) -> End {
    let p = &o.params;
    let client_side = |id: i64, bytes: u64, sender: bool, retr: Option<i64>| {
        let mut v = end_side(o.seconds, id, bytes, sender, retr);
        if sender {
            let mine: Vec<&StreamSample> = o
                .intervals
                .iter()
                .flat_map(|iv| iv.streams.iter())
                .filter(|s| s.id == id && s.sender)
                .collect();
            if !mine.is_empty() {
                let rtts: Vec<u64> = mine.iter().map(|s| s.rtt_us).collect();
                v.reorder = mine.iter().rev().find_map(|s| s.reorder);
                v.max_snd_cwnd = mine.iter().map(|s| s.snd_cwnd_bytes).max();
                v.max_snd_wnd = Some(
                    mine.iter()
                        .filter_map(|s| s.snd_wnd_bytes)
                        .max()
                        .unwrap_or(0),
                );
                v.max_rtt = rtts.iter().max().copied();
                v.min_rtt = rtts.iter().min().copied();
                v.mean_rtt = Some(rtts.iter().sum::<u64>() / rtts.len() as u64);
            }
        }
        v
    };
    let mut streams = Vec::new();
    let mut sums = [[0u64; 2]; 2]; // [direction client->server?][sent, received]
    let mut retr = [0i64; 2];
    for t in &o.totals {
        let (sent, recvd) = if t.client_sends {
            (t.client_bytes, t.server_bytes.unwrap_or(0))
        } else {
            (t.server_bytes.unwrap_or(0), t.client_bytes)
        };
        let d = usize::from(t.client_sends);
        sums[d][0] += sent;
        sums[d][1] += recvd;
        retr[d] += t.retransmits.max(0);
        streams.push(EndStream {
            sender: client_side(t.id, sent, t.client_sends, Some(t.retransmits)),
            receiver: client_side(t.id, recvd, false, None),
        });
    }
    let fwd = if p.bidir { 1 } else { usize::from(!p.reverse) };
    let server_sends = p.reverse && !p.bidir;
    let remote_congestion = o.congestion_remote.clone().unwrap_or_default();
    let (sender_cc, receiver_cc) = if server_sends {
        (remote_congestion, o.congestion_local.clone())
    } else {
        (o.congestion_local.clone(), remote_congestion)
    };
    End {
        streams,
        sum_sent: end_sum(o.seconds, sums[fwd][0], true, Some(retr[fwd])),
        sum_received: end_sum(o.seconds, sums[fwd][1], false, None),
        sum_sent_bidir_reverse: p
            .bidir
            .then(|| end_sum(o.seconds, sums[0][0], true, Some(retr[0]))),
        sum_received_bidir_reverse: p.bidir.then(|| end_sum(o.seconds, sums[0][1], false, None)),
        cpu_utilization_percent: CpuUtilization {
            host_total: o.cpu_local.total,
            host_user: o.cpu_local.user,
            host_system: o.cpu_local.system,
            remote_total: o.cpu_remote.total,
            remote_user: o.cpu_remote.user,
            remote_system: o.cpu_remote.system,
        },
        sender_tcp_congestion: Some(sender_cc),
        receiver_tcp_congestion: Some(receiver_cc),
    }
}

/// iperf3's `start` object (and the data of a `--json-stream` `start` event).
pub fn start_json(
    host: &str,
    port: u16,
    p: &TestParams,
    cookie: &str,
    streams: &[StreamInfo],
) -> Start {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let first_buf = streams.first().map(|s| s.buffers).unwrap_or_default();
    Start {
        connected: streams
            .iter()
            .map(|s| {
                let (local_host, local_port) = split_addr(&s.local);
                let (remote_host, remote_port) = split_addr(&s.remote);
                Connected {
                    socket: socket(s.id),
                    local_host,
                    local_port,
                    remote_host,
                    remote_port,
                }
            })
            .collect(),
        version: format!("netblame {}", env!("CARGO_PKG_VERSION")),
        system_info: std::fs::read_to_string("/proc/version")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        timestamp: Timestamp { timesecs: now },
        connecting_to: Some(HostPort {
            host: host.to_string(),
            port,
        }),
        accepted_connection: None,
        cookie: cookie.to_string(),
        tcp_mss_default: streams.first().and_then(|s| s.mss_bytes).unwrap_or(0),
        target_bitrate: p.bandwidth,
        fq_rate: p.fqrate,
        sock_bufsize: p.window.unwrap_or(0),
        sndbuf_actual: first_buf.actual_sndbuf_bytes,
        rcvbuf_actual: first_buf.actual_rcvbuf_bytes,
        test_start: TestStart {
            protocol: "TCP".into(),
            num_streams: p.parallel,
            blksize: p.len,
            omit: p.omit_s,
            duration: if p.bytes > 0 { 0 } else { p.time_s },
            bytes: p.bytes,
            blocks: 0,
            reverse: i32::from(p.reverse),
            tos: 0,
            target_bitrate: p.bandwidth,
            bidir: i32::from(p.bidir),
            fqrate: p.fqrate,
            interval: p.interval_ms as f64 / 1000.0,
            gso: 0,
            gro: 0,
        },
    }
}

/// iperf3's server-side `start` object for `netblame bench server --json-stream`: like the
/// client's, with `accepted_connection` (the client's control connection) instead of
/// `connecting_to`.
pub fn server_start_json(
    peer: &str,
    p: &TestParams,
    cookie: &str,
    streams: &[StreamInfo],
) -> Start {
    let (host, port) = split_addr(peer);
    Start {
        connecting_to: None,
        accepted_connection: Some(HostPort { host, port }),
        ..start_json("", 0, p, cookie, streams)
    }
}

/// iperf3's server-side `end` object for a finished test (`--json-stream` on the server): per
/// stream the sending and receiving ends' bytes (the client's count from its results, where
/// iperf3's server prints 0), the sums of the client -> server direction (server -> client
/// with `-R`), and the server's CPU.
pub fn server_end_json(r: &crate::server::SessionReport) -> End {
    let mut sums = [[0u64; 2]; 2]; // [server sends?][sent, received]
    let streams: Vec<EndStream> = r
        .streams
        .iter()
        .map(|s| {
            let other = s.client_bytes.unwrap_or(0);
            let (sent, recvd) = if s.server_sends {
                (s.server_bytes, other)
            } else {
                (other, s.server_bytes)
            };
            let d = usize::from(s.server_sends);
            sums[d][0] += sent;
            sums[d][1] += recvd;
            // As in iperf3's output, `sender` says whether this host (the server) sends.
            EndStream {
                sender: end_side(r.seconds, s.id, sent, s.server_sends, None),
                receiver: end_side(r.seconds, s.id, recvd, s.server_sends, None),
            }
        })
        .collect();
    let reverse = r.streams.iter().all(|s| s.server_sends) && !r.streams.is_empty();
    let d = usize::from(reverse);
    End {
        streams,
        sum_sent: end_sum(r.seconds, sums[d][0], reverse, None),
        sum_received: end_sum(r.seconds, sums[d][1], reverse, None),
        sum_sent_bidir_reverse: None,
        sum_received_bidir_reverse: None,
        cpu_utilization_percent: CpuUtilization {
            host_total: r.cpu.total,
            host_user: r.cpu.user,
            host_system: r.cpu.system,
            // The client's CPU is not known to the server (iperf3 prints zeros too).
            remote_total: 0.0,
            remote_user: 0.0,
            remote_system: 0.0,
        },
        sender_tcp_congestion: reverse.then(|| r.congestion.clone()),
        receiver_tcp_congestion: (!reverse).then(|| r.congestion.clone()),
    }
}

fn split_addr(a: &str) -> (String, u16) {
    match a.parse::<std::net::SocketAddr>() {
        Ok(sa) => (sa.ip().to_string(), sa.port()),
        Err(_) => (a.to_string(), 0),
    }
}
