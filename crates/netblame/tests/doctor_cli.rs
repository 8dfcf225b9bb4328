//! `netblame doctor` (and plain `netblame`) end to end inside namespaces: a listen-queue
//! overflow during the window is blamed on the application with its fix; --fail-on sets the exit
//! code; a quiet namespace has no problem; many connections are all sampled.

mod host_cli_common;

use host_cli_common::{netblame, netblame_as_nobody, Netns, NetnsCli, TempDir};
use netblame_testkit::schema::assert_valid;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// In the namespace: a listener with a tiny accept queue that never accepts, and clients that
/// overflow it; kept open for `hold`.
fn overflow_listener(ns: &Netns, hold: Duration) -> std::thread::JoinHandle<()> {
    ns.thread(move || {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let l = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        l.bind(&SockAddr::from(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        ))
        .unwrap();
        l.listen(1).unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let c = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
            c.set_nonblocking(true).unwrap();
            let _ = c.connect(&addr);
            clients.push(c);
        }
        std::thread::sleep(hold);
    })
}

#[test]
fn listen_overflow_blames_the_application() {
    if !netblame_testkit::require_root("listen_overflow_blames_the_application") {
        return;
    }
    let ns = Netns::new("nbcd");
    let cause = overflow_listener(&ns, Duration::from_secs(3));
    let (code, out, err) = ns.netblame(&[
        "doctor",
        "--duration",
        "2s",
        "--json",
        "--fail-on",
        "warning",
    ]);
    cause.join().unwrap();
    assert_eq!(code, 3, "--fail-on warning must exit 3: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_valid("doctor", &v);
    assert_eq!(v["verdict"]["blame"], "application", "{}", v["verdict"]);
    assert!(v["verdict"]["headline"]
        .as_str()
        .unwrap()
        .starts_with("Blame the application: listen queues overflowed"));
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f[0]["id"], "listen-overflows");
    assert!(f[0]["fix"].as_str().unwrap().contains("somaxconn"));
    // Text: the verdict comes first, then the findings by layer.
    let cause = overflow_listener(&ns, Duration::from_secs(2));
    let (code, out, _) = ns.netblame(&["doctor", "--duration", "1500ms"]);
    cause.join().unwrap();
    assert_eq!(code, 0);
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("Blame the application"), "{out}");
    assert!(
        out.contains("== application ==") && out.contains("fix:"),
        "{out}"
    );
}

#[test]
fn plain_netblame_runs_doctor_and_a_quiet_namespace_is_fine() {
    if !netblame_testkit::require_root("plain_netblame_runs_doctor_and_a_quiet_namespace_is_fine") {
        return;
    }
    let ns = Netns::new("nbcq");
    let (code, out, err) = ns.netblame(&["--duration", "300ms", "--fail-on", "warning"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("No TCP problem found"),
        "{out}"
    );
    let (code, out, _) = ns.netblame(&["--duration", "300ms", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_valid("doctor", &v);
    assert!(v["verdict"]["blame"].is_null());
}

#[test]
fn many_connections_are_all_sampled() {
    if !netblame_testkit::require_root("many_connections_are_all_sampled") {
        return;
    }
    let ns = Netns::new("nbcm");
    const N: usize = 1000;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = ns.thread(move || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut keep = Vec::new();
        for _ in 0..N {
            keep.push(std::net::TcpStream::connect(addr).unwrap());
            keep.push(l.accept().unwrap().0);
        }
        ready_tx.send(()).unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let (code, out, err) = ns.netblame(&["doctor", "--duration", "1s", "--json"]);
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_valid("doctor", &v);
    assert_eq!(v["connections"]["sampled"], 2 * N as u64);
    assert_eq!(v["connections"]["judged_over_window"], 2 * N as u64);
}

#[test]
fn bad_flags_and_unprivileged_runs() {
    for args in [
        &["doctor", "--fail-on", "sometimes"][..],
        &["doctor", "--duration", "x"],
        &["--rate", "1g"],
    ] {
        let (code, _, err) = netblame(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    if !netblame_testkit::require_root("bad_flags_and_unprivileged_runs") {
        return;
    }
    let dir = TempDir::new();
    let (code, out, err) = netblame_as_nobody(&dir, &["doctor", "--duration", "300ms", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_valid("doctor", &v);
    assert!(
        v["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["reason"].as_str().unwrap().contains("root")),
        "{}",
        v["skipped"]
    );
}
