//! `netblame bench server` as a process under abuse (issue 18, items 2 and 5): a probe-magic
//! flood under a 200-descriptor limit, and large blocks. The server keeps running, real
//! `iperf3 -c` and `netblame bench client` are served, and memory is given back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Srv(Child, u16);

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `netblame bench server` on a free port with at most `nofile` descriptors.
fn server(nofile: u64) -> Srv {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netblame"));
    cmd.args([
        "bench",
        "server",
        "-B",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ])
    .args(["--idle-timeout", "5s"])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's limit.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let srv = Srv(cmd.spawn().unwrap(), port);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    srv
}

fn alive(s: &mut Srv) -> bool {
    s.0.try_wait().unwrap().is_none()
}

fn iperf3_served(port: u16) -> bool {
    Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn netblame_served(port: u16, extra: &[&str]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args([
            "bench",
            "client",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "1",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn probe_flood_under_a_descriptor_limit_does_not_end_the_server() {
    let mut srv = server(200);
    let port = srv.1;
    // 250 probe connections that say hello and then sit there.
    let flood: Vec<TcpStream> = (0..250)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            let _ = s.write_all(netblame_probe::responder::MAGIC);
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(&mut srv), "the server died under the flood");
    assert!(iperf3_served(port), "iperf3 -c not served during the flood");
    assert!(
        netblame_served(port, &[]),
        "netblame client not served during the flood"
    );
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(&mut srv));
    assert!(iperf3_served(port), "iperf3 -c not served after the flood");
    // A probe still gets its echo.
    let mut p = TcpStream::connect(("127.0.0.1", port)).unwrap();
    p.write_all(netblame_probe::responder::MAGIC).unwrap();
    p.write_all(&[9u8; 16]).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut echo = [0u8; 16];
    p.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [9u8; 16]);
}

#[test]
fn large_blocks_are_given_back_after_the_test() {
    let srv = server(1024);
    let pid = srv.0.id();
    assert!(netblame_served(srv.1, &[]));
    let before = status_kib(pid, "VmRSS:");
    // 8 streams x 16 MiB blocks, with zero copy and without.
    for extra in [
        &["-P", "8", "-l", "16M"][..],
        &["-P", "8", "-l", "16M", "-R", "-Z"][..],
    ] {
        assert!(netblame_served(srv.1, extra), "{extra:?} not served");
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = status_kib(pid, "VmRSS:");
    assert!(
        after < before + 10 * 1024,
        "RSS went from {before} KiB to {after} KiB"
    );
}
