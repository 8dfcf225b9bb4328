//! Scenarios in network namespaces the tests create: loss from an nftables rule, and one stream
//! captured on both sides of a NAT (masquerade with port translation) with loss between the two
//! capture points.

mod common;

use common::{tshark_count, wait_child, Netns, Tcpdump, TempDir};
use netblame_core::diagnose::capture as judge;
use netblame_pcap::correlate::correlate;
use netblame_pcap::{analyze_path, Config};
use std::time::Duration;

fn port() -> u16 {
    // Namespaces are private: any port works; vary it per process anyway.
    20000 + (std::process::id() % 20000) as u16
}

fn start_iperf_server(ns: &Netns, port: u16) -> std::process::Child {
    let c = ns.spawn(&["iperf3", "-s", "-1", "-p", &port.to_string()]);
    // Wait until it listens.
    for _ in 0..100 {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "ss",
                "-ltnH",
                &format!("sport = :{port}"),
            ])
            .output()
            .unwrap();
        if !out.stdout.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

#[test]
fn dropped_segments_are_network_loss() {
    if !netblame_testkit::require_root("dropped_segments_are_network_loss") {
        return;
    }
    let dir = TempDir::new("loss");
    let ns = Netns::new("nbpl");
    let p = port();
    // Dropped on input, after tcpdump saw the segment leave: the loss is after the capture
    // point, so the capture shows the original and its retransmission. (Dropped on output, the
    // kernel would just send the same segment again, unseen as loss.)
    ns.nft(&format!(
        "table inet nbloss {{\n chain inp {{\n type filter hook input priority 0;\n \
         tcp dport {p} meta length > 1000 numgen random mod 25 == 0 drop\n }}\n}}\n"
    ));
    let cap = Tcpdump::start(
        Some(&ns.0),
        "lo",
        &format!("tcp port {p}"),
        &dir.file("loss.pcap"),
    );
    let server = start_iperf_server(&ns, p);
    let client = ns.spawn(&[
        "iperf3",
        "-c",
        "127.0.0.1",
        "-p",
        &p.to_string(),
        "-n",
        "24M",
        "-b",
        "400M",
    ]);
    let out = wait_child(client, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "iperf3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_child(server, Duration::from_secs(10));
    let path = cap.stop();
    let a = analyze_path(&path, Config::default()).unwrap();
    let f = a
        .flows
        .iter()
        .max_by_key(|f| f.total_bytes())
        .expect("the data connection");
    let c = &f.from_client;
    assert!(c.retransmissions >= 3, "{c:#?}");
    assert!(c.retransmitted_bytes > 0);
    assert!(f.from_server.dup_acks >= 1, "{:#?}", f.from_server);
    let findings = judge(f);
    let loss = findings
        .iter()
        .find(|x| x.id == "network-loss")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert!(loss.summary.contains("client"), "{}", loss.summary);
    // tshark agreement on the whole capture (both iperf3 connections).
    if let Some(t) = tshark_count(
        &path,
        "tcp.analysis.retransmission || tcp.analysis.fast_retransmission || tcp.analysis.spurious_retransmission",
    ) {
        let ours: u64 = a
            .flows
            .iter()
            .map(|f| f.from_client.retransmissions + f.from_server.retransmissions)
            .sum();
        assert_eq!(ours, t, "retransmissions: ours vs tshark");
        let dup = tshark_count(&path, "tcp.analysis.duplicate_ack").unwrap();
        let ours: u64 = a
            .flows
            .iter()
            .map(|f| f.from_client.dup_acks + f.from_server.dup_acks)
            .sum();
        assert_eq!(ours, dup, "duplicate ACKs: ours vs tshark");
        let lost = tshark_count(&path, "tcp.analysis.lost_segment").unwrap();
        let ours: u64 = a
            .flows
            .iter()
            .map(|f| f.from_client.lost_segments + f.from_server.lost_segments)
            .sum();
        assert_eq!(ours, lost, "previous segment not captured: ours vs tshark");
    }
}

#[test]
fn one_stream_matched_across_a_nat() {
    if !netblame_testkit::require_root("one_stream_matched_across_a_nat") {
        return;
    }
    let dir = TempDir::new("nat");
    let c = Netns::new("nbpc");
    let r = Netns::new("nbpr");
    let s = Netns::new("nbps");
    c.exec(&[
        "ip", "link", "add", "vc0", "type", "veth", "peer", "name", "vrc0", "netns", &r.0,
    ]);
    s.exec(&[
        "ip", "link", "add", "vs0", "type", "veth", "peer", "name", "vrs0", "netns", &r.0,
    ]);
    c.exec(&["ip", "addr", "add", "198.18.1.2/24", "dev", "vc0"]);
    c.exec(&["ip", "link", "set", "vc0", "up"]);
    c.exec(&["ip", "route", "add", "default", "via", "198.18.1.1"]);
    r.exec(&["ip", "addr", "add", "198.18.1.1/24", "dev", "vrc0"]);
    r.exec(&["ip", "addr", "add", "198.19.2.1/24", "dev", "vrs0"]);
    r.exec(&["ip", "link", "set", "vrc0", "up"]);
    r.exec(&["ip", "link", "set", "vrs0", "up"]);
    r.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    s.exec(&["ip", "addr", "add", "198.19.2.2/24", "dev", "vs0"]);
    s.exec(&["ip", "link", "set", "vs0", "up"]);
    // Same segments at both capture points: no segmentation offloads on the path.
    for (ns, dev) in [(&c, "vc0"), (&r, "vrc0"), (&r, "vrs0"), (&s, "vs0")] {
        ns.exec(&[
            "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
        ]);
    }
    let p = port();
    r.nft(&format!(
        "table ip nbnat {{\n chain post {{\n type nat hook postrouting priority 100;\n \
         oifname \"vrs0\" ip protocol tcp masquerade to :50000-50999\n }}\n}}\n\
         table inet nbdrop {{\n chain fwdc {{\n type filter hook forward priority 0;\n \
         iifname \"vrc0\" tcp dport {p} meta length > 1000 numgen random mod 40 == 0 drop\n }}\n}}\n"
    ));
    let cap_a = Tcpdump::start(
        Some(&c.0),
        "vc0",
        &format!("tcp port {p}"),
        &dir.file("a.pcap"),
    );
    let cap_b = Tcpdump::start(
        Some(&s.0),
        "vs0",
        &format!("tcp port {p}"),
        &dir.file("b.pcap"),
    );
    let server = start_iperf_server(&s, p);
    let client = c.spawn(&[
        "iperf3",
        "-c",
        "198.19.2.2",
        "-p",
        &p.to_string(),
        "-n",
        "4M",
        "-b",
        "200M",
    ]);
    let out = wait_child(client, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "iperf3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_child(server, Duration::from_secs(10));
    let a_path = cap_a.stop();
    let b_path = cap_b.stop();
    let a = analyze_path(&a_path, Config::default()).unwrap();
    let b = analyze_path(&b_path, Config::default()).unwrap();
    assert_eq!(a.flows.len(), 2, "iperf3 control and data connections");
    let corr = correlate(&a_path, &a.flows, &b_path, &b.flows).unwrap();
    assert_eq!(corr.matches.len(), 2, "{corr:#?}");
    assert!(corr.unmatched_a.is_empty() && corr.unmatched_b.is_empty());
    let data_a = a.flows.iter().max_by_key(|f| f.total_bytes()).unwrap();
    let m = corr
        .matches
        .iter()
        .find(|m| m.a_id == data_a.id)
        .expect("the data stream is matched");
    assert_eq!(m.a_client.ip.to_string(), "198.18.1.2");
    assert_eq!(m.b_client.ip.to_string(), "198.19.2.1", "masqueraded");
    assert!(
        (50000..=50999).contains(&m.b_client.port),
        "port translated: {m:#?}"
    );
    assert_eq!(m.a_server, m.b_server);
    assert!(m.translation.iter().any(|t| t.contains("appears as")));
    assert!(m.confirmed_by.contains(&"segments"), "{m:#?}");
    assert!(m.confirmed_by.contains(&"tcp_timestamps"), "{m:#?}");
    assert!(
        m.only_in_a.client_to_server >= 1,
        "segments dropped between the capture points: {m:#?}"
    );
    assert_eq!(m.only_in_b.client_to_server, 0, "{m:#?}");
    let d = m.client_to_server_a_to_b.as_ref().unwrap();
    assert!(d.min_us >= 0, "same clock: A sees client data first: {d:?}");
    let d = m.server_to_client_b_to_a.as_ref().unwrap();
    assert!(d.min_us >= 0, "same clock: B sees server data first: {d:?}");
    assert!(m.note.starts_with("A is nearer the client"), "{}", m.note);
}
