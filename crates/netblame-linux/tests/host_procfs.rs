//! The host parsers on this kernel's real files (older layouts are tested beside the parsers).

use netblame_linux::host::{self, procfs};

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) as usize }
}

#[test]
fn netstat_and_snmp_of_this_kernel() {
    let netstat = procfs::parse_proto_counters(&procfs::read_proc_net("netstat").unwrap());
    for key in [
        "TcpExt.PruneCalled",
        "TcpExt.TCPRcvCollapsed",
        "TcpExt.ListenOverflows",
        "TcpExt.TCPTimeouts",
        "TcpExt.TCPZeroWindowDrop",
        "IpExt.InOctets",
    ] {
        assert!(netstat.contains_key(key), "{key} missing");
    }
    let snmp = procfs::parse_proto_counters(&procfs::read_proc_net("snmp").unwrap());
    assert_eq!(snmp["Tcp.MaxConn"], -1);
    assert!(snmp["Tcp.OutSegs"] >= snmp["Tcp.RetransSegs"]);
}

#[test]
fn softnet_dev_sockstat_of_this_kernel() {
    let text = procfs::read_proc_net("softnet_stat").unwrap();
    let cols = text.lines().next().unwrap().split_whitespace().count();
    assert!([9, 10, 11, 13, 15].contains(&cols), "{cols} columns");
    let rows = procfs::parse_softnet(&text);
    assert_eq!(rows.len(), online_cpus());
    let mut cpus: Vec<u32> = rows.iter().map(|r| r.cpu).collect();
    cpus.dedup();
    assert_eq!(cpus.len(), rows.len(), "CPU column must be distinct");
    let dev = procfs::parse_dev(&procfs::read_proc_net("dev").unwrap());
    assert!(dev.iter().any(|d| d.device == "lo"));
    let (inuse, mem) = procfs::parse_sockstat_tcp(&procfs::read_proc_net("sockstat").unwrap());
    assert!(inuse.is_some() && mem.is_some());
}

#[test]
fn a_whole_collection_reads_everything_or_says_why() {
    let snap = host::collect(std::time::Duration::from_millis(50), Vec::new());
    assert!(snap.kernel.is_some());
    assert!(snap.sysctls.contains_key("net.ipv4.tcp_rmem"));
    assert!(
        !snap.after.proto.is_empty()
            && !snap.after.softnet.is_empty()
            && !snap.after.devices.is_empty()
    );
    assert!(snap.window_us >= 50_000);
    let qdisc_skipped = snap.skipped.iter().any(|s| s.section == "qdisc");
    assert!(qdisc_skipped || !snap.after.qdiscs.is_empty());
    // JSON round trip: what --save writes, --load reads.
    let back: netblame_core::observe::host::HostSnapshot =
        serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
    assert_eq!(back, snap);
}
