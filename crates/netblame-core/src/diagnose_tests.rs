//! Tests of the diagnose step: host rules together, live connections, merging and the verdict.

use super::*;
use crate::finding::Finding;
use crate::observe::host::{CgroupCpu, NicStats, QueueStats, SoftnetRow};
use crate::observe::host::{HostSnapshot, QueueDir};

fn base() -> HostSnapshot {
    let mut s = HostSnapshot {
        kernel: Some("6.18.44".parse().unwrap()),
        window_us: 5_000_000,
        ..Default::default()
    };
    for (k, v) in [
        ("net.ipv4.tcp_rmem", "4096 131072 33554432"),
        ("net.ipv4.tcp_wmem", "4096 16384 4194304"),
        ("net.core.rmem_max", "212992"),
        ("net.core.wmem_max", "212992"),
        ("net.ipv4.tcp_window_scaling", "1"),
        ("net.ipv4.tcp_adv_win_scale", "1"),
        ("net.ipv4.tcp_mem", "100 200 300"),
        ("net.core.somaxconn", "4096"),
    ] {
        s.sysctls.insert(k.into(), v.into());
    }
    s
}

fn bump(s: &mut HostSnapshot, key: &str, by: i64) {
    s.before.proto.insert(key.into(), 100);
    s.after.proto.insert(key.into(), 100 + by);
}

fn judge(s: &HostSnapshot, path: Option<PathSpec>) -> Vec<Finding> {
    judge_host(s, path)
}

fn ids(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(|f| f.id).collect()
}

#[test]
fn quiet_host_has_only_kernel_notes() {
    let f = judge(&base(), None);
    assert!(f.iter().all(|f| f.layer == Layer::Kernel), "{:?}", ids(&f));
}

#[test]
fn google_cloud_path_needs_72_mib() {
    let f = judge(
        &base(),
        Some(PathSpec {
            rate_bps: 10e9,
            rtt: Duration::from_millis(30),
        }),
    );
    let rmem = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("net.ipv4.tcp_rmem[2]"))
        .expect("tcp_rmem finding");
    assert_eq!(rmem.value("bdp"), Some(37_500_000.0));
    assert_eq!(rmem.value("buffer_needed"), Some(75_000_000.0));
    assert_eq!(rmem.severity, Severity::Critical);
    assert!(
        rmem.explanation.contains("37500000"),
        "{}",
        rmem.explanation
    );
    assert!(rmem.fix.contains("netblame tune"));
    // rmem_max only matters for SO_RCVBUF users: info.
    let rmax = f
        .iter()
        .find(|f| f.subject.as_deref() == Some("net.core.rmem_max"))
        .unwrap();
    assert_eq!(rmax.severity, Severity::Info);
}

#[test]
fn small_path_fits() {
    // 100 Mbit/s x 10 ms = 125,000 B: tcp_rmem/tcp_wmem are ample; rmem_max/wmem_max
    // (212,992 < 250,000 needed) only matter for SO_RCVBUF users: info, not a warning.
    let f = judge(
        &base(),
        Some(PathSpec {
            rate_bps: 100e6,
            rtt: Duration::from_millis(10),
        }),
    );
    let buf: Vec<&Finding> = f
        .iter()
        .filter(|f| f.id == "buffer-max-below-bdp")
        .collect();
    assert_eq!(buf.len(), 2, "{buf:?}");
    assert!(buf.iter().all(|f| f.severity == Severity::Info));
    assert!(buf
        .iter()
        .any(|f| f.subject.as_deref() == Some("net.core.rmem_max")));
}

#[test]
fn scaling_off_and_adv_win_scale() {
    let mut s = base();
    s.sysctls
        .insert("net.ipv4.tcp_window_scaling".into(), "0".into());
    s.sysctls
        .insert("net.ipv4.tcp_adv_win_scale".into(), "2".into());
    let f = judge(
        &s,
        Some(PathSpec {
            rate_bps: 10e9,
            rtt: Duration::from_millis(30),
        }),
    );
    let ws = f.iter().find(|f| f.id == "window-scaling-off").unwrap();
    assert!((ws.value("ceiling").unwrap() / 1e6 - 17.476).abs() < 0.01);
    assert!(ids(&f).contains(&"adv-win-scale-ignored"));
    s.kernel = Some("6.1.0".parse().unwrap());
    assert!(!ids(&judge(&s, None)).contains(&"adv-win-scale-ignored"));
}

#[test]
fn cloudflare_collapse_on_large_rmem() {
    let mut s = base();
    bump(&mut s, "TcpExt.PruneCalled", 50);
    bump(&mut s, "TcpExt.TCPRcvCollapsed", 1500);
    let f = judge(&s, None);
    let c = f.iter().find(|f| f.id == "rmem-collapse-spikes").unwrap();
    assert_eq!(c.severity, Severity::Warning);
    assert!(c.explanation.contains("32 MiB"));
    s.sysctls
        .insert("net.ipv4.tcp_rmem".into(), "4096 131072 2097152".into());
    let c = judge(&s, None)
        .into_iter()
        .find(|f| f.id == "rmem-collapse-spikes")
        .unwrap();
    assert_eq!(c.severity, Severity::Info);
}

#[test]
fn counters_rising() {
    let mut s = base();
    bump(&mut s, "TcpExt.TCPZeroWindowDrop", 3);
    bump(&mut s, "TcpExt.TCPBacklogDrop", 2);
    bump(&mut s, "TcpExt.ListenOverflows", 4);
    bump(&mut s, "TcpExt.TCPTimeouts", 9);
    bump(&mut s, "Tcp.OutSegs", 10_000);
    bump(&mut s, "Tcp.RetransSegs", 600);
    bump(&mut s, "TcpExt.TCPMemoryPressures", 1);
    s.before.softnet.push(SoftnetRow {
        cpu: 0,
        ..Default::default()
    });
    s.after.softnet.push(SoftnetRow {
        cpu: 0,
        time_squeeze: 5,
        dropped: 2,
        ..Default::default()
    });
    let f = judge(&s, None);
    for id in [
        "receiver-zero-window",
        "socket-backlog-drops",
        "listen-overflows",
        "rto-timeouts",
        "retransmit-rate",
        "tcp-memory-pressure",
        "softnet-squeeze",
        "softnet-drops",
    ] {
        assert!(ids(&f).contains(&id), "{id} missing from {:?}", ids(&f));
    }
    let r = f.iter().find(|f| f.id == "retransmit-rate").unwrap();
    assert_eq!(r.severity, Severity::Critical);
    assert_eq!(r.value("retransmit_share"), Some(6.0));
    let l = f.iter().find(|f| f.id == "listen-overflows").unwrap();
    assert!(l.explanation.contains("1 s"));
}

#[test]
fn datadog_chain() {
    let mut s = base();
    let mut nic = NicStats {
        device: "eth0".into(),
        driver: Some("ena".into()),
        ..Default::default()
    };
    nic.stats.insert("bw_out_allowance_exceeded".into(), 10);
    nic.stats.insert("tx_timeout".into(), 0);
    s.before.nic.push(nic.clone());
    nic.stats.insert("bw_out_allowance_exceeded".into(), 250);
    s.after.nic.push(nic);
    for (i, (a, b)) in [(0u64, 90_000u64), (0, 100), (0, 50), (0, 0)]
        .iter()
        .enumerate()
    {
        s.before.queues.push(QueueStats {
            device: "eth0".into(),
            dir: QueueDir::Tx,
            index: i as u32,
            packets: *a,
            bytes: None,
        });
        s.after.queues.push(QueueStats {
            device: "eth0".into(),
            dir: QueueDir::Tx,
            index: i as u32,
            packets: *b,
            bytes: None,
        });
    }
    let mut cg = CgroupCpu {
        path: "/envoy".into(),
        version: "v2".into(),
        nr_periods: 100,
        nr_throttled: 10,
        throttled_usec: 1000,
        ..Default::default()
    };
    s.before.cgroups.push(cg.clone());
    cg.nr_periods = 150;
    cg.nr_throttled = 40;
    cg.throttled_usec = 900_000;
    s.after.cgroups.push(cg);
    let f = judge(&s, None);
    let nic = f.iter().find(|f| f.id == "nic-allowance-exceeded").unwrap();
    assert_eq!(nic.value("bw_out_allowance_exceeded"), Some(240.0));
    let skew = f.iter().find(|f| f.id == "tx-queue-skew").unwrap();
    assert!(skew.value("top_queue_share").unwrap() > 99.0);
    let cpu = f.iter().find(|f| f.id == "cpu-throttled").unwrap();
    assert_eq!(cpu.value("nr_throttled"), Some(30.0));
    assert_eq!(cpu.severity, Severity::Critical);
}

#[test]
fn known_issue_kernel_is_named() {
    let mut s = base();
    s.kernel = Some("6.6.10-amd64".parse().unwrap());
    let f = judge(&s, None);
    // Issues of sockets with a fixed SO_RCVBUF are not the host's: they come with such a socket.
    assert!(
        !ids(&f).contains(&"kernel-scaling-ratio-6.6"),
        "{:?}",
        ids(&f)
    );
    let k = f
        .iter()
        .find(|f| f.id == "kernel-rcvq-space-stale")
        .unwrap();
    assert!(k.explanation.contains("backports"));
}

// ---- live connections ----

use crate::observe::socket::SkMemInfo;
use crate::observe::tcp_info::{options, TcpInfo};

fn snap(info: TcpInfo, recv_q: u32, rb: u32, rmem: u32) -> SocketSnapshot {
    SocketSnapshot {
        local: "10.0.0.1:5001".parse().unwrap(),
        peer: "10.0.0.2:40000".parse().unwrap(),
        state: TcpState::Established,
        inode: 7,
        cookie: 9,
        uid: 0,
        recv_q_bytes: recv_q,
        send_q_bytes: 0,
        tcp_info: Some(info),
        congestion: Some("cubic".into()),
        skmem: Some(SkMemInfo {
            rmem_alloc_bytes: rmem,
            rcvbuf_bytes: rb,
            sndbuf_bytes: 16384,
            ..Default::default()
        }),
        shutdown: Some(0),
        owners: vec![],
    }
}

fn info(busy: u64, rwnd: u64, sndbuf: u64) -> TcpInfo {
    TcpInfo {
        len: 280,
        state: 1,
        options: options::WSCALE | options::SACK,
        rcv_wscale: 10,
        snd_wscale: 10,
        rtt_us: 137_000,
        snd_mss: 1448,
        advmss: 1448,
        busy_time_us: Some(busy),
        rwnd_limited_us: Some(rwnd),
        sndbuf_limited_us: Some(sndbuf),
        snd_wnd: Some(65536),
        rcv_wnd: Some(65536),
        notsent_bytes: Some(0),
        delivery_rate_app_limited: Some(false),
        ..Default::default()
    }
}

fn ctx() -> HostContext {
    let k: KernelVersion = "6.18.0".parse().unwrap();
    let s = RcvSettings::defaults_for(&k);
    HostContext::new(k, s)
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn rwnd_limited_socket_gets_the_ceiling_arithmetic() {
    let a = snap(info(0, 0, 0), 0, 131072, 0);
    let b = snap(info(950_000, 900_000, 0), 0, 131072, 0);
    let v = connection(Some(&a), &b, SEC, &ctx());
    assert_eq!(v.limit, Some(Limit::ReceiverWindow));
    let f = &v.findings[0];
    assert_eq!(f.id, "receiver-window-limited");
    assert!(
        f.explanation
            .contains("64 KiB / RTT 137 ms = 3.83 Mbit/s ceiling"),
        "{}",
        f.explanation
    );
}

#[test]
fn zero_window_names_the_reader() {
    let mut i = info(0, 0, 0);
    i.rcv_wnd = Some(0);
    let mut s = snap(i, 60_000, 131072, 130_000);
    s.owners.push(crate::observe::socket::SocketOwner {
        pid: 42,
        command: "slowpoke".into(),
        fd: 3,
        cgroup: None,
    });
    let v = connection(None, &s, SEC, &ctx());
    assert_eq!(v.findings[0].id, "receiver-zero-window");
    assert_eq!(v.findings[0].severity, Severity::Critical);
    assert!(v.findings[0].summary.contains("slowpoke[42]"));
    assert!(v.is_problem());
}

#[test]
fn fixed_rcvbuf_shows_the_wscale_gap_and_its_kernel_issues() {
    let mut i = info(0, 0, 0);
    i.rcv_wscale = 1;
    let s = snap(i, 0, 131072, 0);
    let k: KernelVersion = "6.6.10".parse().unwrap();
    let mut settings = RcvSettings::defaults_for(&k);
    settings.tcp_rmem[2] = 6 << 20;
    let v = connection(None, &s, SEC, &HostContext::new(k, settings));
    let ids: Vec<_> = v.findings.iter().map(|f| f.id).collect();
    assert!(ids.contains(&"rcvbuf-fixed-small"), "{ids:?}");
    assert!(ids.contains(&"kernel-scaling-ratio-6.6"), "{ids:?}");
    let f = v
        .findings
        .iter()
        .find(|f| f.id == "rcvbuf-fixed-small")
        .unwrap();
    assert!(f.summary.contains("rcv_wscale 1"), "{}", f.summary);
}

#[test]
fn no_wscale_caps_at_64k() {
    let mut i = info(0, 0, 0);
    i.options = options::SACK;
    let v = connection(None, &snap(i, 0, 131072, 0), SEC, &ctx());
    assert_eq!(v.findings[0].id, "window-scaling-absent");
    assert!(v.findings[0].explanation.contains("3.83 Mbit/s"));
}

#[test]
fn growing_recv_q_is_a_slow_reader() {
    let a = snap(info(0, 0, 0), 10_000, 131072, 20_000);
    let b = snap(info(0, 0, 0), 50_000, 131072, 90_000);
    let v = connection(Some(&a), &b, SEC, &ctx());
    assert_eq!(v.findings[0].id, "receiver-app-slow");
}

#[test]
fn an_idle_connection_gets_no_blame() {
    let a = snap(info(5000, 0, 0), 0, 131072, 0);
    let b = snap(info(5000, 0, 0), 0, 131072, 0);
    let v = connection(Some(&a), &b, SEC, &ctx());
    assert_eq!(v.limit, Some(Limit::Application));
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    assert_eq!(v.headline(), "idle");
}

// ---- merging and the verdict ----

#[test]
fn duplicates_merge_into_their_most_severe_instance() {
    let a = snap(info(0, 0, 0), 0, 131072, 0);
    let mut z = info(0, 0, 0);
    z.rcv_wnd = Some(0);
    let mut b = snap(z.clone(), 60_000, 131072, 130_000);
    b.cookie = 10;
    let mut c = snap(z, 60_000, 131072, 130_000);
    c.cookie = 11;
    let d = diagnose(&Observations {
        sockets: vec![
            SocketPair {
                prev: None,
                cur: &a,
            },
            SocketPair {
                prev: None,
                cur: &b,
            },
            SocketPair {
                prev: None,
                cur: &c,
            },
        ],
        socket_host: ctx(),
        socket_interval: SEC,
        ..Default::default()
    });
    assert_eq!(d.connections.len(), 3);
    let zw: Vec<_> = d
        .findings
        .iter()
        .filter(|r| r.finding.id == "receiver-zero-window")
        .collect();
    assert_eq!(zw.len(), 1);
    assert_eq!(zw[0].seen, 2);
    assert_eq!(d.verdict().blame, Some(Layer::Application));
    assert!(
        d.verdict().headline.starts_with("Blame the application"),
        "{}",
        d.verdict().headline
    );
}

#[test]
fn nothing_or_notes_is_no_problem() {
    assert_eq!(verdict(&[]).headline, "No TCP problem found");
}

#[test]
fn a_throttled_pod_is_named_with_what_its_connections_suffered() {
    use crate::observe::host::{CgroupCpu, OwnerProcess};
    use crate::observe::socket::{ContainerRef, SocketOwner};
    let mut s = base();
    let mut cg = CgroupCpu {
        path: "/kubepods/burstable/pod1234/cafe".into(),
        version: "v2".into(),
        owners: vec![OwnerProcess {
            pid: 42,
            command: "envoy".into(),
            sockets: 1,
        }],
        container: Some(ContainerRef {
            cgroup: "/kubepods/burstable/pod1234/cafe".into(),
            namespace: Some("default".into()),
            pod: Some("web-7f9c".into()),
            container: Some("envoy".into()),
            ..Default::default()
        }),
        nr_periods: 2,
        nr_throttled: 1,
        ..Default::default()
    };
    s.before.cgroups.push(cg.clone());
    cg.nr_periods = 42;
    cg.nr_throttled = 39;
    cg.throttled_usec = 2_000_000;
    s.after.cgroups.push(cg);
    let mut z = info(0, 0, 0);
    z.rcv_wnd = Some(0);
    let mut sock = snap(z, 60_000, 131072, 130_000);
    sock.owners.push(SocketOwner {
        pid: 42,
        command: "envoy".into(),
        fd: 9,
        cgroup: None,
    });
    let d = diagnose(&Observations {
        host: Some(&s),
        sockets: vec![SocketPair {
            prev: None,
            cur: &sock,
        }],
        socket_host: ctx(),
        socket_interval: SEC,
        ..Default::default()
    });
    let cpu = d
        .findings
        .iter()
        .find(|r| r.finding.id == "cpu-throttled")
        .unwrap();
    assert!(
        cpu.finding
            .summary
            .starts_with("default/web-7f9c/envoy was CPU-throttled in 38 of 40 periods"),
        "{}",
        cpu.finding.summary
    );
    assert!(
        cpu.finding
            .summary
            .contains("its 1 connection shows receiver-zero-window on 1"),
        "{}",
        cpu.finding.summary
    );
    assert_eq!(
        cpu.finding.value("owner_connections_with_problems"),
        Some(1.0)
    );
    assert!(
        d.verdict().headline.contains("default/web-7f9c/envoy"),
        "{}",
        d.verdict().headline
    );
}
