//! Capture verdicts a network engineer expects, from real traffic captured with tcpdump: a
//! refused connection, and a peer that stops answering while the sender's timeouts keep
//! reaching the capture point (not "find where packets drop").

mod common;

use common::{tshark_count, Netns, Tcpdump, TempDir};
use netblame_core::diagnose::capture as judge;
use netblame_core::Severity;
use netblame_pcap::{analyze_path, Config};
use std::io::Write;
use std::time::Duration;

#[test]
fn a_syn_answered_by_rst_is_a_refused_connection() {
    if !netblame_testkit::require_root("a_syn_answered_by_rst_is_a_refused_connection") {
        return;
    }
    let dir = TempDir::new("refused");
    let ns = Netns::new("nbrf");
    let cap = Tcpdump::start(Some(&ns.0), "lo", "tcp port 9", &dir.file("refused.pcap"));
    // Nothing listens on port 9 in the namespace: the kernel answers the SYN with a RST.
    let out = ns.exec(&[
        "sh",
        "-c",
        "python3 -c \"import socket; s=socket.socket(); s.settimeout(2); \
         print(s.connect_ex(('127.0.0.1', 9)))\"",
    ]);
    assert_eq!(out.trim(), "111", "ECONNREFUSED expected: {out}");
    let path = cap.stop();
    let a = analyze_path(&path, Config::default()).unwrap();
    assert_eq!(a.flows.len(), 1, "{:#?}", a.flows);
    let f = &a.flows[0];
    assert_eq!(f.conn_state, "REJ");
    if let Some(rst) = tshark_count(&path, "tcp.flags.reset == 1") {
        assert_eq!(rst, 1, "tshark sees one RST");
    }
    let findings = judge(f);
    let r = findings
        .iter()
        .find(|x| x.id == "connection-refused")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(r.severity, Severity::Warning);
    assert!(
        findings.iter().all(|x| x.id != "network-loss"),
        "{findings:#?}"
    );
}

#[test]
fn a_peer_that_stops_answering_is_silent_not_lossy() {
    if !netblame_testkit::require_root("a_peer_that_stops_answering_is_silent_not_lossy") {
        return;
    }
    let dir = TempDir::new("silent");
    let ns = Netns::new("nbsl");
    let port = 20000 + (std::process::id() % 20000) as u16;
    let cap = Tcpdump::start(
        Some(&ns.0),
        "lo",
        &format!("tcp port {port}"),
        &dir.file("silent.pcap"),
    );
    let sent = ns.run(move || {
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_s, _) = l.accept().unwrap();
        c.write_all(&[1u8; 4096]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // From now on the peer's packets vanish before they leave: it has gone silent.
        let rules = format!(
            "table inet nbsilent {{\n chain out {{\n type filter hook output priority 0;\n \
             tcp sport {port} drop\n }}\n}}\n"
        );
        let mut nft = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success());
        c.write_all(&[2u8; 4096]).unwrap();
        // RTOs at about 0.2, 0.6, 1.4 and 3 s after the data.
        std::thread::sleep(Duration::from_millis(3500));
        4096 * 2
    });
    let path = cap.stop();
    assert!(sent > 0);
    let a = analyze_path(&path, Config::default()).unwrap();
    let f = a
        .flows
        .iter()
        .find(|f| f.server.port == port)
        .expect("the connection");
    assert!(
        f.from_client.unanswered_retransmissions >= 2,
        "{:#?}",
        f.from_client
    );
    let findings = judge(f);
    let silent = findings
        .iter()
        .find(|x| x.id == "peer-silent")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert!(
        silent.value("peer_silent").unwrap() >= 2_000_000.0,
        "{silent:?}"
    );
    assert!(
        findings.iter().all(|x| x.id != "network-loss"),
        "a silent peer is not a lossy path: {findings:#?}"
    );
}
