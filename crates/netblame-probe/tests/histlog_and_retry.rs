//! Saved interval logs load back to the same distribution; an HTTP backend that answers 504
//! after a fixed delay, then recovers, gives the timeout-and-retry signature (Datadog's
//! requests to terminating pods).

mod common;

use common::{config, probe};
use netblame_core::rules::latency::{judge, ProbeContext, SynSchedule};
use netblame_probe::histlog;
use netblame_probe::responder::Responder;
use netblame_probe::ProbeKind;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn interval_log_round_trip() {
    let r = Responder::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut cfg = config(
        ProbeKind::Udp,
        &[r.local_addr().to_string()],
        10,
        60,
        Duration::from_secs(2),
    );
    cfg.window = Duration::from_millis(200);
    let runs = probe(cfg);
    let dir = std::env::temp_dir().join(netblame_testkit::unique_name("nbphlog"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.hlog");
    histlog::save(&path, &runs).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("#[StartTime: "), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("Tag=127.0.0.1:")),
        "{text}"
    );
    let loaded = histlog::load(&path, "run").unwrap();
    assert_eq!(loaded.len(), 1);
    let (a, b) = (&runs[0].latency.summary, &loaded[0].summary);
    assert_eq!((b.sent, b.received, b.lost), (a.sent, a.received, a.lost));
    assert_eq!(b.max_us, a.max_us);
    assert_eq!(b.p50_us, a.p50_us);
    assert_eq!(loaded[0].windows.len(), runs[0].latency.windows.len());
    assert_eq!(loaded[0].target, format!("run:{}", runs[0].latency.target));
    // Not a log: a clear error.
    std::fs::write(dir.join("bad.hlog"), "hello\n").unwrap();
    assert!(histlog::load(&dir.join("bad.hlog"), "bad").is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fixed_delay_failures_then_success_is_timeout_and_retry() {
    // The first 4 requests hang 300 ms and get a 504 (a proxy timing out on a dying backend);
    // later ones are answered at once.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let n = Arc::new(AtomicU32::new(0));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let i = n.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                if i < 4 {
                    std::thread::sleep(Duration::from_millis(300));
                    let _ = s.write_all(b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                } else {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                }
            });
        }
    });
    // One probe every 100 ms so the first four connections are the first four probes.
    let runs = probe(config(
        ProbeKind::Http,
        &[addr],
        100,
        12,
        Duration::from_secs(2),
    ));
    let t = &runs[0].latency;
    assert_eq!(
        (t.summary.sent, t.summary.received, t.summary.failed),
        (12, 8, 4)
    );
    let ctx = ProbeContext {
        kernel: None,
        syn: SynSchedule::CLASSIC,
    };
    let findings = judge(std::slice::from_ref(t), &ctx);
    let f = findings
        .iter()
        .find(|f| f.id == "timeout-and-retry")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(f.value("failures_at_delay"), Some(4.0));
    assert_eq!(f.value("later_successes"), Some(8.0));
    let delay = f.value("delay").unwrap();
    assert!((250_000.0..2_000_000.0).contains(&delay), "{delay}");
    assert!(findings.iter().any(|f| f.id == "probe-loss"));
}
