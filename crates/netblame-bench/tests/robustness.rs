//! Bad input on the wire: garbage instead of a cookie, an oversized parameter JSON, a bad state
//! byte, a client that vanishes mid-test, a control connection that sends nothing. The server
//! drops them, keeps serving others, and its memory stays bounded.

mod common;

use common::*;
use netblame_bench::config::{ClientConfig, TestParams};
use netblame_bench::proto::{self, state};
use netblame_bench::run_client;
use netblame_bench::server::ServerConfig;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn cfg() -> ServerConfig {
    ServerConfig {
        idle_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

/// A short real test against the server: it still serves.
fn still_serves(srv: &NbServer) {
    let c = ClientConfig {
        host: "127.0.0.1".into(),
        port: srv.addr.port(),
        params: TestParams {
            time_s: 1,
            ..TestParams::default()
        },
        ..ClientConfig::default()
    };
    let out = run_client(&c, &mut |_| {}).expect("server still serves");
    assert!(out.totals[0].client_bytes > 0);
}

/// Reads until EOF or error, bounded: true when the server closed the connection.
fn closed_within(mut s: &TcpStream, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn garbage_instead_of_a_cookie_is_dropped() {
    let srv = nb_server(cfg());
    let s = TcpStream::connect(srv.addr).unwrap();
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef")
        .unwrap();
    assert!(closed_within(&s, 10));
    assert!(srv.dropped(10).contains("garbage"));
    still_serves(&srv);
}

#[test]
fn oversized_parameter_json_gets_server_error() {
    let srv = nb_server(cfg());
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.write_all(&proto::make_cookie()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    proto::expect_state(&mut s, state::PARAM_EXCHANGE).unwrap();
    // Announce 1 GiB of JSON: refused before anything is allocated or read.
    s.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    match proto::read_state(&mut s) {
        Err(proto::ProtoError::ServerError { .. }) => {}
        other => panic!("expected SERVER_ERROR, got {other:?}"),
    }
    assert!(srv.dropped(10).contains("exceeds"));
    still_serves(&srv);
}

#[test]
fn bad_parameters_and_bad_state_byte_are_dropped() {
    let srv = nb_server(cfg());
    // Parameters that are not an object.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.write_all(&proto::make_cookie()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    proto::expect_state(&mut s, state::PARAM_EXCHANGE).unwrap();
    proto::write_json(&mut s, &serde_json::json!([1, 2, 3])).unwrap();
    assert!(matches!(
        proto::read_state(&mut s),
        Err(proto::ProtoError::ServerError { .. })
    ));
    let _ = srv.dropped(10);
    // Good parameters, then a state byte that makes no sense instead of streams.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.write_all(&proto::make_cookie()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    proto::expect_state(&mut s, state::PARAM_EXCHANGE).unwrap();
    proto::write_json(
        &mut s,
        &serde_json::json!({"tcp": true, "time": 2, "parallel": 1}),
    )
    .unwrap();
    proto::expect_state(&mut s, state::CREATE_STREAMS).unwrap();
    s.write_all(&[0x63]).unwrap();
    assert!(closed_within(&s, 10));
    assert!(srv.dropped(10).contains("state"));
    still_serves(&srv);
}

#[test]
fn client_vanishing_mid_test_returns_the_server_to_idle() {
    let srv = nb_server(cfg());
    let cookie = proto::make_cookie();
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.write_all(&cookie).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    proto::expect_state(&mut c, state::PARAM_EXCHANGE).unwrap();
    proto::write_json(
        &mut c,
        &serde_json::json!({"tcp": true, "time": 30, "parallel": 1}),
    )
    .unwrap();
    proto::expect_state(&mut c, state::CREATE_STREAMS).unwrap();
    let mut d = TcpStream::connect(srv.addr).unwrap();
    d.write_all(&cookie).unwrap();
    proto::expect_state(&mut c, state::TEST_START).unwrap();
    proto::expect_state(&mut c, state::TEST_RUNNING).unwrap();
    d.write_all(&vec![7u8; 1 << 20]).unwrap();
    // Vanish: close both without TEST_END.
    drop(d);
    drop(c);
    let reason = srv.dropped(15);
    assert!(reason.contains("closed"), "{reason}");
    still_serves(&srv);
}

#[test]
fn silent_control_connection_times_out_while_others_are_served() {
    let srv = nb_server(cfg());
    // Sends nothing at all.
    let silent = TcpStream::connect(srv.addr).unwrap();
    // Sends a cookie, then nothing (no parameters).
    let mut half = TcpStream::connect(srv.addr).unwrap();
    half.write_all(&proto::make_cookie()).unwrap();
    // Another client is served meanwhile.
    still_serves(&srv);
    assert!(
        closed_within(&silent, 20),
        "silent connection was not dropped"
    );
    half.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    proto::expect_state(&mut half, state::PARAM_EXCHANGE).unwrap();
    assert!(
        closed_within(&half, 20),
        "silent control connection was not dropped"
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn memory_stays_bounded_under_garbage() {
    let srv = nb_server(cfg());
    still_serves(&srv);
    let before = rss_kib();
    for i in 0..200 {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        if i % 2 == 0 {
            let _ = s.write_all(&[0xff; 64]);
        } else {
            let _ = s.write_all(&proto::make_cookie());
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = proto::read_state(&mut s);
            let _ = s.write_all(&u32::MAX.to_be_bytes());
            let _ = proto::read_state(&mut s);
        }
    }
    still_serves(&srv);
    let after = rss_kib();
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn two_clients_at_once_are_both_served() {
    let srv = nb_server(cfg());
    let port = srv.addr.port();
    let run = move |reverse: bool| {
        std::thread::spawn(move || {
            let c = ClientConfig {
                host: "127.0.0.1".into(),
                port,
                params: TestParams {
                    time_s: 2,
                    reverse,
                    ..TestParams::default()
                },
                ..ClientConfig::default()
            };
            run_client(&c, &mut |_| {}).map(|o| o.totals[0])
        })
    };
    let (a, b) = (run(false), run(true));
    let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
    assert!(a.client_bytes > 0 && b.client_bytes > 0);
    assert!(a.server_bytes.is_some() && b.server_bytes.is_some());
}

#[test]
fn max_duration_refuses_longer_tests() {
    let srv = nb_server(ServerConfig {
        max_duration: Some(Duration::from_secs(1)),
        ..cfg()
    });
    let c = ClientConfig {
        host: "127.0.0.1".into(),
        port: srv.addr.port(),
        params: TestParams {
            time_s: 5,
            ..TestParams::default()
        },
        ..ClientConfig::default()
    };
    let err = run_client(&c, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, proto::ProtoError::ServerError { .. }),
        "{err}"
    );
    assert!(srv.dropped(10).contains("max-duration"));
}
