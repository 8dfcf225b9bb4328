//! `netblame serve` as a daemon meets it: SIGTERM (clean exit), SIGHUP (reload; a bad file is
//! reported and the running configuration kept), a bad configuration at start, many concurrent
//! scrapes while scans run, and sockets, processes and a namespace vanishing mid-scan.

mod serve_common;

use netblame_testkit::schema::assert_valid;
use netblame_testkit::{require_root, run, Netns};
use serve_common::*;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_netblame");

#[test]
fn sigterm_exits_cleanly_and_says_so() {
    let dir = TempDir::new("serve-term");
    let events = dir.join("events.jsonl");
    std::fs::write(dir.join("c.toml"), "interval = \"1s\"\n").unwrap();
    let agent = Agent::start(&events, &["--config", dir.join("c.toml").to_str().unwrap()]);
    assert!(wait_for(Duration::from_secs(30), || agent.scans() >= 2));
    let (code, body) = agent.get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    assert_eq!(agent.get("/nope").0, 404);
    let (status, err) = agent.stop();
    assert!(status.success(), "{status:?}: {err}");
    let stopped = events_of(&events, "stopped");
    assert_eq!(stopped.len(), 1, "{err}");
}

#[test]
fn a_bad_config_is_refused_at_start_with_its_line_and_reason() {
    let dir = TempDir::new("serve-bad");
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "interval = \"1s\"\n\n[limits]\ntop_processes = \"ten\"\n",
    )
    .unwrap();
    let (code, _, err) = run(
        BIN,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.toml:4:"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
    // --check-config says the same, and accepts a good file.
    let (code, _, err) = run(
        BIN,
        &["serve", "--config", cfg.to_str().unwrap(), "--check-config"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("bad.toml:4:"), "{err}");
    std::fs::write(&cfg, "interval = \"30s\"\n").unwrap();
    let (code, out, err) = run(
        BIN,
        &["serve", "--config", cfg.to_str().unwrap(), "--check-config"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok") && out.contains("series"), "{out}");
    // A missing file, an address in use.
    let (code, _, err) = run(BIN, &["serve", "--config", "/nonexistent/serve.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/serve.toml"), "{err}");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, _, err) = run(BIN, &["serve", "--listen", &addr]);
    assert_eq!(code, 1);
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn sighup_reloads_and_a_bad_file_keeps_the_running_config() {
    let dir = TempDir::new("serve-hup");
    let events = dir.join("events.jsonl");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "interval = \"1s\"\n").unwrap();
    let agent = Agent::start(&events, &["--config", cfg.to_str().unwrap()]);
    let (_, before) = agent.get("/metrics");
    assert!(!before.contains("netblame_probe_sent_total{"), "{before}");

    // A changed config takes effect: a probe target appears (a local listener to connect to).
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let t = target.local_addr().unwrap();
    std::fs::write(
        &cfg,
        format!("interval = \"1s\"\n[[probe]]\ntarget = \"{t}\"\ninterval = \"100ms\"\n"),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(30), || !events_of(&events, "reloaded")
            .is_empty()),
        "no reloaded event"
    );
    let series = format!("netblame_probe_sent_total{{target=\"{t}\",kind=\"tcp\"}}");
    assert!(
        wait_for(Duration::from_secs(30), || agent
            .get("/metrics")
            .1
            .contains(&series)),
        "the reloaded probe never showed"
    );

    // A bad file on reload: reported (event with line and reason), the running config kept.
    std::fs::write(
        &cfg,
        format!("interval = \"1s\"\n[[probe]]\ntarget = \"{t}\"\nkind = \"smtp\"\n"),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(30), || !events_of(
            &events,
            "config-rejected"
        )
        .is_empty()),
        "no config-rejected event"
    );
    let rejected = &events_of(&events, "config-rejected")[0];
    let reason = rejected["reason"].as_str().unwrap();
    assert!(
        reason.contains("c.toml:2:") && reason.contains("smtp"),
        "{reason}"
    );
    assert_eq!(events_of(&events, "reloaded").len(), 1);
    let scans = agent.scans();
    assert!(wait_for(Duration::from_secs(30), || agent.scans() > scans + 1));
    assert!(
        agent.get("/metrics").1.contains(&series),
        "the running probe was dropped"
    );
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");
    assert!(err.contains("reload refused"), "{err}");
}

#[test]
fn many_concurrent_scrapes_while_scans_run() {
    if !require_root("many_concurrent_scrapes_while_scans_run") {
        return;
    }
    // A namespace with a few thousand connections, so scans take a while.
    let ns = Netns::new("srvc");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let holder = ns.thread(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let mut keep = Vec::new();
        for _ in 0..1500 {
            let c = TcpStream::connect(a).unwrap();
            let (sv, _) = l.accept().unwrap();
            keep.push((c, sv));
        }
        while !s.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let dir = TempDir::new("serve-conc");
    let events = dir.join("events.jsonl");
    std::fs::write(dir.join("c.toml"), "interval = \"1s\"\n").unwrap();
    let agent = Agent::start(
        &events,
        &[
            "--config",
            dir.join("c.toml").to_str().unwrap(),
            "--netns",
            ns.name(),
        ],
    );
    let addr = agent.addr;
    let scans_before = agent.scans();
    let threads: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let mut ok = 0;
                for n in 0..40 {
                    let accept =
                        (n % 2 == 0).then_some("application/openmetrics-text; version=1.0.0");
                    let path = if (i + n) % 5 == 0 {
                        "/findings"
                    } else {
                        "/metrics"
                    };
                    let (code, body) = http_get(addr, path, accept).expect("scrape");
                    assert_eq!(code, 200);
                    if path == "/findings" {
                        serde_json::from_str::<serde_json::Value>(&body).expect("complete JSON");
                    } else if accept.is_some() {
                        assert!(body.ends_with("# EOF\n"), "truncated exposition");
                    } else {
                        assert!(
                            body.contains("netblame_scans_total "),
                            "incomplete exposition"
                        );
                    }
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let total: usize = threads
        .into_iter()
        .map(|t| t.join().expect("scraper"))
        .sum();
    assert_eq!(total, 16 * 40);
    assert!(wait_for(Duration::from_secs(30), || agent.scans() > scans_before));
    let (_, m) = agent.get("/metrics");
    let established: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("netblame_connections{state=\"established\"} "))
        .and_then(|v| v.parse().ok())
        .expect("established series");
    assert!(established >= 3000.0, "{established}");
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");
    stop.store(true, Ordering::Relaxed);
    holder.join().unwrap();
}

#[test]
fn sockets_processes_and_the_namespace_vanishing_mid_scan() {
    if !require_root("sockets_processes_and_the_namespace_vanishing_mid_scan") {
        return;
    }
    let ns = Netns::new("srvv");
    let dir = TempDir::new("serve-vanish");
    let events = dir.join("events.jsonl");
    std::fs::write(dir.join("c.toml"), "interval = \"1s\"\n").unwrap();
    let agent = Agent::start(
        &events,
        &[
            "--config",
            dir.join("c.toml").to_str().unwrap(),
            "--netns",
            ns.name(),
        ],
    );
    // Churn: connections opened and closed as fast as possible, and short-lived processes
    // holding sockets (each `nc`-like child: a shell that opens a TCP socket and exits).
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let churn = ns.thread(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        while !s.load(Ordering::Relaxed) {
            let mut batch = Vec::new();
            for _ in 0..200 {
                if let Ok(c) = TcpStream::connect(a) {
                    batch.push(c);
                }
                while let Ok((sv, _)) = l.accept() {
                    batch.push(sv);
                }
            }
            drop(batch);
        }
    });
    let s2 = stop.clone();
    let port = 20000 + (std::process::id() % 10000) as u16;
    let ns_name = ns.name().to_string();
    let procs = std::thread::spawn(move || {
        let mut listener = std::process::Command::new("ip")
            .args(["netns", "exec", &ns_name, "python3", "-c"])
            .arg(format!(
                "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{port}))\ns.listen(1000)\ntime.sleep(600)"
            ))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        while !s2.load(Ordering::Relaxed) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "exec", &ns_name, "python3", "-c"])
                .arg(format!(
                    "import socket\nfor _ in range(50):\n  c=socket.create_connection(('127.0.0.1',{port}))\n"
                ))
                .status();
        }
        let _ = listener.kill();
        let _ = listener.wait();
    });
    let start = agent.scans();
    assert!(
        wait_for(Duration::from_secs(60), || agent.scans() >= start + 5),
        "scans stalled under churn"
    );
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    procs.join().unwrap();
    // The namespace's name goes away while the agent holds it open: scans go on.
    let n = agent.scans();
    run("ip", &["netns", "del", ns.name()]);
    assert!(
        wait_for(Duration::from_secs(30), || agent.scans() >= n + 2),
        "scans stopped after the namespace was deleted"
    );
    assert!(events_of(&events, "scan-failed").is_empty());
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");
}

#[test]
fn unprivileged_with_proc_unreadable_it_scans_what_it_can_and_says_what_it_skipped() {
    if !require_root(
        "unprivileged_with_proc_unreadable_it_scans_what_it_can_and_says_what_it_skipped",
    ) {
        return;
    }
    // As nobody: other users' /proc/PID/fd, cgroup files, qdisc and NIC statistics of a
    // privileged view are unreadable. The agent must start, scan, and say what it skipped.
    let dir = TempDir::new("serve-nobody");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let events = dir.join("events.jsonl");
    std::fs::write(dir.join("c.toml"), "interval = \"1s\"\n").unwrap();
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "serve",
        ])
        .args(["--listen", "127.0.0.1:0", "--events"])
        .arg(&events)
        .arg("--config")
        .arg(dir.join("c.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("setpriv (util-linux)");
    let started = wait_for(Duration::from_secs(60), || {
        !events_of(&events, "started").is_empty()
    });
    if !started {
        let _ = child.kill();
        let _ = child.wait();
        panic!("netblame serve did not start as nobody");
    }
    let addr: std::net::SocketAddr = events_of(&events, "started")[0]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let scans = |a| {
        http_get(a, "/metrics", None)
            .map(|(_, b)| {
                b.lines()
                    .find_map(|l| l.strip_prefix("netblame_scans_total "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    assert!(wait_for(Duration::from_secs(30), || scans(addr) >= 3));
    let (_, findings) = http_get(addr, "/findings", None).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&findings).unwrap();
    assert_valid("serve-findings", &doc);
    let skipped = doc["skipped"].as_array().expect("skipped");
    assert!(
        skipped.iter().any(|s| s["section"] == "processes"),
        "no note about unreadable processes: {findings}"
    );
    let (_, m) = http_get(addr, "/metrics", None).unwrap();
    assert!(m.contains("netblame_connections{state=\"listen\"}"), "{m}");
    // SAFETY: kill on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let mut status = None;
    wait_for(Duration::from_secs(30), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no exit on SIGTERM");
    };
    assert!(status.success(), "{status:?}");
    assert!(events_of(&events, "scan-failed").is_empty());
}

#[test]
fn the_responder_serves_bench_clients_and_probes() {
    let dir = TempDir::new("serve-resp");
    let events = dir.join("events.jsonl");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let responder = format!("127.0.0.1:{port}");
    let agent = Agent::start(&events, &["--responder", &responder]);
    assert_eq!(
        events_of(&events, "started")[0]["responder"].as_str(),
        Some(responder.as_str())
    );
    // A real throughput test against the agent's bench server.
    let (code, out, err) = run(
        BIN,
        &[
            "bench",
            "client",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "1",
            "-J",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("bench JSON");
    assert!(v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0) > 0.0);
    // Request/response probes and UDP echo on the same port.
    for kind in ["rr", "udp"] {
        let (code, out, err) = run(
            BIN,
            &[
                "probe",
                "--kind",
                kind,
                "--count",
                "5",
                "--interval",
                "50ms",
                &responder,
                "--json",
            ],
        );
        assert_eq!(code, 0, "{kind}: {err}");
        assert!(
            out.contains("\"received\": 5") || out.contains("\"received\":5"),
            "{kind}: {out}"
        );
    }
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");
    // The port is free again.
    assert!(TcpListener::bind(&responder).is_ok());
}
