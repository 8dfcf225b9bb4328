//! A hostile peer against the server (issue 18, items 2-5): idle connections, drip senders,
//! probe connections, requests for more memory than allowed. Each test reproduces what used to
//! lock clients out or keep the server from ending, and checks real clients are still served.

mod common;

use common::*;
use netblame_bench::config::{ClientConfig, TestParams};
use netblame_bench::proto::{self, state, ProtoError};
use netblame_bench::server::{ServerConfig, ServerEvent};
use netblame_bench::{run_client, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn cfg() -> ServerConfig {
    ServerConfig {
        idle_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

fn client(port: u16, params: TestParams) -> Result<netblame_bench::client::ClientOutcome, String> {
    let c = ClientConfig {
        host: "127.0.0.1".into(),
        port,
        params,
        ..ClientConfig::default()
    };
    run_client(&c, &mut |_| {}).map_err(|e| e.to_string())
}

fn one_second() -> TestParams {
    TestParams {
        time_s: 1,
        ..TestParams::default()
    }
}

/// True when the server closed `s` within `secs` (EOF or reset), reading what it sends.
fn closed_within(mut s: &TcpStream, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => {}
        }
    }
    false
}

fn iperf3_client(port: u16) -> std::process::Output {
    std::process::Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
        .output()
        .expect("iperf3 is installed")
}

#[test]
fn idle_connections_do_not_lock_clients_out() {
    let srv = nb_server(cfg());
    // More idle connections than the pending limit (64): they used to make the server drop
    // every new connection, real clients included.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    client(srv.addr.port(), one_second()).expect("netblame client served");
    let o = iperf3_client(srv.addr.port());
    assert!(
        o.status.success(),
        "iperf3 -c: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The oldest idle ones were evicted, the rest time out as a whole stage.
    assert!(closed_within(&idle[0], 5));
    assert!(closed_within(&idle[99], 5));
}

#[test]
fn a_drip_sender_cannot_hold_the_only_test_slot() {
    let srv = nb_server(ServerConfig {
        max_sessions: 1,
        ..cfg()
    });
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.write_all(&proto::make_cookie()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    proto::expect_state(&mut c, state::PARAM_EXCHANGE).unwrap();
    // A parameter JSON of 200 bytes, one byte every 0.5 s: each read is within the 2 s idle
    // timeout, the stage as a whole is not.
    c.write_all(&200u32.to_be_bytes()).unwrap();
    let dripper = std::thread::spawn(move || {
        for _ in 0..20 {
            if c.write_all(b" ").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        closed_within(&c, 1)
    });
    std::thread::sleep(Duration::from_secs(3));
    client(srv.addr.port(), one_second()).expect("the slot was freed for a real client");
    assert!(dripper.join().unwrap(), "the drip sender was not dropped");
}

#[test]
fn a_drip_data_stream_cannot_hold_a_test() {
    let srv = nb_server(ServerConfig {
        max_sessions: 1,
        ..cfg()
    });
    let cookie = proto::make_cookie();
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.write_all(&cookie).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    proto::expect_state(&mut c, state::PARAM_EXCHANGE).unwrap();
    // A test by byte count: no time bound, only progress keeps it alive.
    proto::write_json(
        &mut c,
        &serde_json::json!({"tcp": true, "num": 1u64 << 30, "parallel": 1}),
    )
    .unwrap();
    proto::expect_state(&mut c, state::CREATE_STREAMS).unwrap();
    let mut d = TcpStream::connect(srv.addr).unwrap();
    d.write_all(&cookie).unwrap();
    proto::expect_state(&mut c, state::TEST_START).unwrap();
    proto::expect_state(&mut c, state::TEST_RUNNING).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        if d.write_all(b"x").is_err() {
            break;
        }
        if closed_within(&c, 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "a test moving one byte per 0.5 s was kept"
    );
    client(srv.addr.port(), one_second()).expect("served after the drip test");
}

#[test]
fn one_off_returns_with_a_probe_connection_open() {
    let mut cfg = cfg();
    cfg.one_off = true;
    cfg.idle_timeout = Duration::from_secs(30);
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    let srv = Server::bind(cfg, |_| {}).unwrap();
    let port = srv.local_addr().unwrap().port();
    let serving = std::thread::spawn(move || srv.serve());
    let mut probe = TcpStream::connect(("127.0.0.1", port)).unwrap();
    probe.write_all(netblame_probe::responder::MAGIC).unwrap();
    probe.write_all(&[1u8; 16]).unwrap();
    let mut echo = [0u8; 16];
    probe.read_exact(&mut echo).unwrap();
    client(port, one_second()).expect("served");
    let start = Instant::now();
    while !serving.is_finished() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        serving.is_finished(),
        "--one-off kept running with a probe connection open"
    );
    serving.join().unwrap().unwrap();
}

#[test]
fn silent_probe_connections_are_closed() {
    let srv = nb_server(cfg());
    let mut probe = TcpStream::connect(srv.addr).unwrap();
    probe.write_all(netblame_probe::responder::MAGIC).unwrap();
    assert!(
        closed_within(&probe, 6),
        "a silent probe connection stayed open"
    );
}

#[test]
fn requests_beyond_the_memory_budget_get_iperf3s_error() {
    let srv = nb_server(ServerConfig {
        max_memory: 64 << 20,
        ..cfg()
    });
    // 8 streams x 16 MiB blocks = 128 MiB of receive buffers.
    let big = TestParams {
        time_s: 1,
        parallel: 8,
        len: 16 << 20,
        ..TestParams::default()
    };
    let e = client(srv.addr.port(), big).unwrap_err();
    assert!(e.contains("i_errno 100") && e.contains("memory"), "{e}");
    let reason = loop {
        match srv.events.recv_timeout(Duration::from_secs(5)).unwrap() {
            ServerEvent::Dropped { reason, .. } => break reason,
            _ => continue,
        }
    };
    assert!(reason.contains("--max-memory"), "{reason}");
    // iperf3 (blocks of at most 1 MiB) gets the same refusal, in its own words: 100 streams x
    // 1 MiB.
    let o = std::process::Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &srv.addr.port().to_string()])
        .args(["-t", "1", "-P", "100", "-l", "1M"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && text.contains("Cannot allocate memory"),
        "{text}"
    );
    // Within the budget it is served.
    let fits = TestParams {
        time_s: 1,
        parallel: 2,
        len: 16 << 20,
        ..TestParams::default()
    };
    client(srv.addr.port(), fits).expect("a test within the budget is served");
}

#[test]
fn the_cookie_stage_has_one_deadline() {
    let srv = nb_server(cfg());
    let mut s = TcpStream::connect(srv.addr).unwrap();
    let cookie = proto::make_cookie();
    let start = Instant::now();
    // One cookie byte every 0.5 s: 37 bytes would take 18 s.
    for b in cookie.iter() {
        if s.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(8) {
            break;
        }
        if closed_within(&s, 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a cookie dripped over {:?} was waited for",
        start.elapsed()
    );
    match proto::read_state(&mut s) {
        Err(ProtoError::Closed) | Err(_) => {}
        Ok(st) => panic!("got state {st}"),
    }
}
