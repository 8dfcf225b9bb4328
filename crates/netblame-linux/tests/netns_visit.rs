//! Visiting network namespaces with real namespaces: each found once by inode, dumped from a
//! thread that entered it, and a namespace that vanishes or a process that exits between the
//! dump and the owner lookup is reported and skipped, never a crash.

use netblame_core::observe::TcpState;
use netblame_linux::diag::{dump_namespaces, DumpRequest, MultiDump};
use netblame_linux::netns::{discover, visit, Netns, NetnsError, NetnsSpec};
use netblame_testkit::{require_root, Netns as TestNetns};
use std::process::{Child, Command, Stdio};

const HOLDER: &str = r#"
import os, socket, sys
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(16)
held = []
for _ in range(3):
    held.append(socket.create_connection(l.getsockname())); held.append(l.accept()[0])
print("ready", flush=True)
sys.stdin.read()
"#;

/// Kills and reaps its child on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn holder(ns: &TestNetns) -> Reaped {
    use std::io::BufRead;
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns.name(), "python3", "-c", HOLDER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Reaped(c)
}

fn established() -> DumpRequest {
    DumpRequest {
        states: vec![TcpState::Established],
        processes: true,
        ..Default::default()
    }
}

#[test]
fn each_namespace_is_found_once_and_dumped_from_inside() {
    if !require_root("each_namespace_is_found_once_and_dumped_from_inside") {
        return;
    }
    let (a, b) = (TestNetns::new("nbva"), TestNetns::new("nbvb"));
    let _h = holder(&a);
    let found = discover();
    let mine: Vec<&Netns> = found
        .namespaces
        .iter()
        .filter(|n| {
            n.id.name.as_deref() == Some(a.name()) || n.id.name.as_deref() == Some(b.name())
        })
        .collect();
    // `a` is reachable as /run/netns/NAME and as the holder's /proc/PID/ns/net: listed once.
    assert_eq!(mine.len(), 2, "{:?}", found.namespaces);
    let d = dump_namespaces(&established(), &found.namespaces, |_| true);
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    let in_a = d
        .namespaces
        .iter()
        .find(|n| n.netns.name.as_deref() == Some(a.name()))
        .unwrap();
    assert_eq!(in_a.sockets.len(), 6);
    assert!(in_a.sockets.iter().all(|s| !s.owners.is_empty()));
    let in_b = d
        .namespaces
        .iter()
        .find(|n| n.netns.name.as_deref() == Some(b.name()))
        .unwrap();
    assert!(in_b.sockets.is_empty());
    // The same namespace by name, path and pid.
    let by_name = Netns::resolve(&NetnsSpec::Name(a.name().into())).unwrap();
    let by_path =
        Netns::resolve(&NetnsSpec::Path(format!("/run/netns/{}", a.name()).into())).unwrap();
    let pid = _h.0.id();
    let by_pid = Netns::resolve(&NetnsSpec::Pid(pid)).unwrap();
    assert_eq!(by_name.id, by_path.id);
    assert_eq!(by_name.id, by_pid.id);
    // Code runs inside: the namespace's own /proc/thread-self/net/dev lists only lo.
    let devs = by_name
        .run(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap())
        .unwrap();
    assert_eq!(devs.lines().count(), 3, "{devs}");
}

#[test]
fn a_namespace_that_vanishes_before_its_visit_is_skipped() {
    if !require_root("a_namespace_that_vanishes_before_its_visit_is_skipped") {
        return;
    }
    let keep = TestNetns::new("nbvk");
    let gone = TestNetns::new("nbvg");
    let named = [
        Netns::resolve(&NetnsSpec::Name(keep.name().into())).unwrap(),
        Netns::resolve(&NetnsSpec::Name(gone.name().into())).unwrap(),
    ];
    // A namespace only a process holds (no name): found through /proc/PID/ns/net.
    let mut lone = Reaped(
        Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .spawn()
            .expect("unshare"),
    );
    let lone_path = format!("/proc/{}/ns/net", lone.0.id());
    let lone_ns = loop {
        // unshare execs sleep once the namespace exists: wait until the pid's namespace differs.
        let ns = Netns::resolve(&NetnsSpec::Path(lone_path.clone().into())).unwrap();
        if !ns.current {
            break ns;
        }
        std::thread::yield_now();
    };
    assert!(discover()
        .namespaces
        .iter()
        .any(|n| n.id.inode == lone_ns.id.inode));

    drop(gone);
    let _ = lone.0.kill();
    let _ = lone.0.wait();
    let list = [named[0].clone(), named[1].clone(), lone_ns.clone()];
    let d = dump_namespaces(&established(), &list, |_| true);
    assert_eq!(d.namespaces.len(), 1);
    assert_eq!(d.namespaces[0].netns, named[0].id);
    assert_eq!(d.skipped.len(), 2, "{:?}", d.skipped);
    for (_, e) in &d.skipped {
        assert!(matches!(e, NetnsError::Vanished(_)), "{e}");
    }
    // `visit` reports the same per namespace and still runs the others.
    let r = visit(&list, |_| 1);
    assert!(r[0].is_ok() && r[1].is_err() && r[2].is_err());
}

#[test]
fn a_process_that_exits_between_dump_and_owner_lookup_is_counted_not_fatal() {
    if !require_root("a_process_that_exits_between_dump_and_owner_lookup_is_counted_not_fatal") {
        return;
    }
    let ns = TestNetns::new("nbvp");
    let h = holder(&ns);
    let target = [Netns::resolve(&NetnsSpec::Name(ns.name().into())).unwrap()];
    let mut req = established();
    req.processes = false;
    let mut d = dump_namespaces(&req, &target, |_| true);
    assert_eq!(d.stats.sockets, 6);
    drop(h); // the owner exits after the dump, before its owners are looked up
    d.inherit_owners(&mut MultiDump::default());
    assert_eq!(d.stats.unmapped_sockets, 6);
    assert!(d.iter().all(|(_, s)| s.owners.is_empty()));
}

#[test]
fn a_refresh_carries_owners_over_and_maps_only_new_sockets() {
    // --watch's refresh: the second dump (no /proc scan) takes the owners of sockets it already
    // knew from the first and scans /proc only for the new ones.
    let here = [Netns::current().unwrap()];
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mine = move |s: &netblame_core::observe::SocketSnapshot| {
        s.local.port() == port || s.peer.port() == port
    };
    let a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let a2 = l.accept().unwrap().0;
    let mut first = dump_namespaces(&established(), &here, mine);
    assert_eq!(first.stats.sockets, 2);
    let b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let b2 = l.accept().unwrap().0;
    let mut req = established();
    req.processes = false;
    let mut second = dump_namespaces(&req, &here, mine);
    assert_eq!(second.stats.sockets, 4);
    assert!(second.iter().all(|(_, s)| s.owners.is_empty()));
    second.inherit_owners(&mut first);
    assert_eq!(second.stats.unmapped_sockets, 0);
    for (_, s) in second.iter() {
        assert_eq!(s.owners[0].pid, std::process::id(), "{}", s.label());
    }
    drop((a, a2, b, b2));
}
