//! `netblame serve` scraped by a real Prometheus (Debian's `prometheus`, started here on a
//! loopback port): `promtool check metrics` on the exposition, `promtool check rules` on the
//! alert rules, and every Grafana panel's PromQL returning data while two provoked incidents
//! are active in a namespace — a slow reader making zero windows and a listen-queue overflow —
//! with each finding's series at 1, then at 0 after the incidents end.

mod serve_common;

use netblame_testkit::schema::assert_valid;
use netblame_testkit::{require_root, Netns};
use serve_common::*;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill on the pid of our own child.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        if !wait_for(Duration::from_secs(20), || {
            matches!(self.0.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs an instant query; returns the `data.result` array.
fn query(prom: SocketAddr, q: &str) -> Vec<serde_json::Value> {
    let (status, body) =
        match http_get(prom, &format!("/api/v1/query?query={}", urlencode(q)), None) {
            Ok(r) => r,
            Err(_) => return Vec::new(),
        };
    if status == 503 {
        return Vec::new(); // Prometheus is still starting
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(status, 200, "query {q} failed: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of a one-series instant query, if any.
fn value(prom: SocketAddr, q: &str) -> Option<f64> {
    query(prom, q)
        .first()
        .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
}

/// Every panel query of the dashboard, with Grafana's variables replaced.
fn panel_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/netblame.json"))
        .expect("deploy/grafana/netblame.json");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"]
                .as_str()
                .expect("expr")
                .replace("$instance", ".+")
                .replace("$__rate_interval", "20s");
            out.push((p["title"].as_str().unwrap_or("?").to_string(), expr));
        }
    }
    out
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    if let Some(s) = stdin {
        c.stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write");
    }
    drop(c.stdin.take());
    let out = c.wait_with_output().expect("promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_checks_the_alert_rules_and_the_example_config() {
    let rules = repo().join("deploy/prometheus/netblame-rules.yml");
    let (ok, out) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "{out}");
    let config = repo().join("deploy/prometheus/prometheus.yml");
    let (ok, out) = promtool(&["check", "config", config.to_str().unwrap()], None);
    assert!(ok, "{out}");
}

/// A slow reader in `ns`: the client writes as fast as it can, the server never reads, so the
/// server's receive window closes. Returns the stop flag and the thread.
fn slow_reader(ns: &Netns) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = ns.thread(move || {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let client = TcpStream::connect(addr).expect("connect");
        let (_server, _) = l.accept().expect("accept");
        client.set_nonblocking(true).expect("nonblocking");
        let block = vec![0u8; 64 * 1024];
        let mut c = &client;
        while !s.load(Ordering::Relaxed) {
            match c.write(&block) {
                Ok(n) if n > 0 => {}
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    (stop, h)
}

/// A listener with a backlog of 1 that never accepts, and clients connecting every 50 ms: the
/// accept queue overflows.
fn listen_overflow(ns: &Netns) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = ns.thread(move || {
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        l.bind(&SockAddr::from(bind)).expect("bind");
        l.listen(1).expect("listen");
        let addr = l.local_addr().expect("addr");
        let mut clients = std::collections::VecDeque::new();
        while !s.load(Ordering::Relaxed) {
            let c = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            c.set_nonblocking(true).expect("nonblocking");
            let _ = c.connect(&addr);
            clients.push_back(c);
            if clients.len() > 200 {
                clients.pop_front();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (stop, h)
}

#[test]
fn prometheus_scrapes_serve_and_every_panel_follows_the_incidents() {
    if !require_root("prometheus_scrapes_serve_and_every_panel_follows_the_incidents") {
        return;
    }
    let dir = TempDir::new("serve-prom");
    let ns = Netns::new("srvp");
    let responder_port = 5201;
    std::fs::write(
        dir.join("serve.toml"),
        format!(
            "interval = \"1s\"\n[sources]\ntrace = true\n[[probe]]\ntarget = \"127.0.0.1:{responder_port}\"\nkind = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"2s\"\n"
        ),
    )
    .expect("config");
    let events = dir.join("events.jsonl");
    let config = dir.join("serve.toml");
    let agent = Agent::start(
        &events,
        &[
            "--config",
            config.to_str().unwrap(),
            "--netns",
            ns.name(),
            "--responder",
            &format!("127.0.0.1:{responder_port}"),
        ],
    );

    // A real Prometheus scraping the agent every second, with the alert rules loaded.
    let prom_port = free_port();
    let prom: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let rules = repo().join("deploy/prometheus/netblame-rules.yml");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: netblame\n    static_configs:\n      - targets: [\"{}\"]\n",
            rules.display(),
            agent.addr
        ),
    )
    .expect("prometheus.yml");
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package) must be installed"),
    );
    assert!(
        wait_for(Duration::from_secs(60), || {
            value(prom, "up{job=\"netblame\"}") == Some(1.0)
        }),
        "Prometheus never scraped the agent"
    );
    let rules_loaded = http_get(prom, "/api/v1/rules", None).expect("rules").1;
    assert!(
        rules_loaded.contains("NetblameCriticalFinding"),
        "{rules_loaded}"
    );

    // promtool check metrics on the exposition (Prometheus text format, as curl gets it).
    let (_, exposition) = agent.get("/metrics");
    let (ok, out) = promtool(&["check", "metrics"], Some(&exposition));
    assert!(ok, "promtool check metrics: {out}\n{exposition}");

    // Provoke both incidents.
    let (stop_reader, reader) = slow_reader(&ns);
    let (stop_overflow, overflow) = listen_overflow(&ns);
    for id in ["receiver-zero-window", "listen-overflows"] {
        let q = format!("max(netblame_finding_active{{id=\"{id}\"}})");
        assert!(
            wait_for(Duration::from_secs(90), || value(prom, &q) == Some(1.0)),
            "{id}: its series never reached 1 in Prometheus; findings: {}",
            agent.get("/findings").1
        );
    }
    // Give every rate() window enough samples, then every panel must return data.
    std::thread::sleep(Duration::from_secs(5));
    let mut empty = Vec::new();
    let panels = panel_queries();
    assert!(panels.len() >= 20, "{} panel queries", panels.len());
    for (title, q) in panels {
        let r = query(prom, &q);
        eprintln!("panel {title}: {} series", r.len());
        if r.is_empty() {
            empty.push(format!("{title}: {q}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data during the incidents:\n{}",
        empty.join("\n")
    );
    // The exposition during the incident passes promtool too; /findings shows both.
    let (_, exposition) = agent.get("/metrics");
    let (ok, out) = promtool(&["check", "metrics"], Some(&exposition));
    assert!(ok, "promtool check metrics during the incident: {out}");
    let findings = agent.get("/findings").1;
    let doc: serde_json::Value = serde_json::from_str(&findings).expect("/findings is JSON");
    assert_valid("serve-findings", &doc);
    let ids: Vec<&str> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert!(ids.contains(&"listen-overflows"), "{ids:?}");
    assert!(ids.contains(&"receiver-zero-window"), "{ids:?}");
    assert!(doc["findings"][0]["evidence"].is_array());

    // End the incidents: both series go back to 0.
    stop_reader.store(true, Ordering::Relaxed);
    stop_overflow.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    overflow.join().expect("overflow");
    for id in ["receiver-zero-window", "listen-overflows"] {
        let q = format!("max(netblame_finding_active{{id=\"{id}\"}})");
        assert!(
            wait_for(Duration::from_secs(90), || value(prom, &q) == Some(0.0)),
            "{id}: its series never went back to 0; findings: {}",
            agent.get("/findings").1
        );
    }
    // The event log recorded both, raised then cleared, with evidence.
    for id in ["receiver-zero-window", "listen-overflows"] {
        let raised = events_of(&events, "raised");
        let r = raised
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("no raised event for {id}"));
        assert!(r["finding"]["evidence"].is_array(), "{r}");
        assert!(r["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
        assert!(
            events_of(&events, "cleared").iter().any(|e| e["id"] == id),
            "no cleared event for {id}"
        );
    }
    let (status, err) = agent.stop();
    assert!(status.success(), "agent exit {status:?}: {err}");
    assert_eq!(events_of(&events, "stopped").len(), 1);
}
