//! `netblame probe` end to end: a responder started by `netblame probe serve`, every output
//! section, JSON keys with units, save/load, bad input, and the SYN signature inside a
//! namespace whose nftables drops the first SYN of each connection.

use netblame_testkit::schema::assert_valid;
use netblame_testkit::Netns;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

fn netblame(args: &[&str]) -> (i32, String, String) {
    netblame_testkit::run(env!("CARGO_BIN_EXE_netblame"), args)
}

/// `netblame probe serve` on a free loopback port; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(prefix: &[&str], listen: &str) -> Server {
        let mut cmd = if prefix.is_empty() {
            Command::new(env!("CARGO_BIN_EXE_netblame"))
        } else {
            let mut c = Command::new(prefix[0]);
            c.args(&prefix[1..]).arg(env!("CARGO_BIN_EXE_netblame"));
            c
        };
        let mut child = cmd
            .args(["probe", "serve", "--listen", listen])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split(" on ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in: {line}"))
            .to_string();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rr_probes_json_has_every_section_with_units() {
    let s = Server::start(&[], "127.0.0.1:0");
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "rr",
        "--interval",
        "5ms",
        "--count",
        "60",
        "--window",
        "100ms",
        "--json",
        &s.addr,
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_valid("probe", &v);
    assert_eq!(v["kind"], "rr");
    assert_eq!(v["interval_us"], 5000);
    let t = &v["targets"][0];
    assert_eq!(t["target"], s.addr.as_str());
    assert_eq!(t["summary"]["sent"], 60);
    assert_eq!(t["summary"]["received"], 60);
    for key in [
        "min_us",
        "avg_us",
        "max_us",
        "mdev_us",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "loss_percent",
    ] {
        assert!(t["summary"][key].is_number(), "summary.{key}");
    }
    assert_eq!(t["samples"].as_array().unwrap().len(), 60);
    assert!(t["samples"][0]["latency_us"].is_number());
    let hist = t["histogram_log2_us"].as_array().unwrap();
    assert_eq!(
        hist.iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum::<u64>(),
        60
    );
    assert!(t["windows"].as_array().unwrap().len() >= 2);
    assert_eq!(t["spikes"].as_array().unwrap().len(), 5);
    assert!(t["schedule"]["late_p99_ns"].is_number());
    assert!(t["started_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(v["findings"].is_array());
    assert!(v["syn_retry_schedule_s"][0].as_f64().unwrap() >= 1.0);
}

#[test]
fn text_output_save_and_load() {
    let s = Server::start(&[], "127.0.0.1:0");
    let dir = std::env::temp_dir().join(netblame_testkit::unique_name("nbpcli"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("udp.hlog");
    let log_s = log.to_str().unwrap();
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "udp",
        "--interval",
        "5ms",
        "--duration",
        "300ms",
        "--save",
        log_s,
        &s.addr,
        &s.addr,
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "sent",
        "recv",
        "loss",
        "mdev",
        "p99.9",
        "latency histogram (us)",
        "value |",
        "largest:",
        "schedule ",
        "saved: ",
    ] {
        assert!(out.contains(needle), "missing '{needle}' in:\n{out}");
    }
    // Two targets side by side: two rows with 60 probes each.
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with(&s.addr) && l.contains(" 60 "))
            .count(),
        2,
        "{out}"
    );
    let (code, out, err) = netblame(&["probe", "--load", log_s, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_valid("probe", &v);
    let loaded = v["loaded"].as_array().unwrap();
    // Same tag twice: the two targets' histograms are summed under one tag.
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0]["summary"]["received"], 120);
    assert_eq!(loaded[0]["kind"], "udp");
    // Loaded next to a live run.
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "udp",
        "--interval",
        "5ms",
        "-c",
        "20",
        "--load",
        log_s,
        &s.addr,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("udp:{}", s.addr)), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_gets_clear_errors() {
    let (code, _, err) = netblame(&["probe", "--kind", "bogus", "127.0.0.1:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown probe kind"), "{err}");
    let (code, _, err) = netblame(&["probe"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least one target"), "{err}");
    let (code, _, err) = netblame(&["probe", "--kind", "rr", "127.0.0.1"]);
    assert_eq!(code, 1);
    assert!(err.contains("needs a port"), "{err}");
    let (code, _, err) = netblame(&["probe", "--interval", "30", "127.0.0.1:1"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = netblame(&["probe", "--count", "0", "127.0.0.1:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("more than zero"), "{err}");
    let (code, _, err) = netblame(&["probe", "--kind", "rr", "--size", "4", "127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("--size"), "{err}");
    let (code, _, err) = netblame(&[
        "probe",
        "--interval",
        "1ms",
        "--count",
        "3000000",
        "127.0.0.1:1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("keeps in memory"), "{err}");
    let (code, _, err) = netblame(&["probe", "--load", "/nonexistent/x.hlog"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/x.hlog"), "{err}");
    // Nothing listens: rr cannot connect (exit 1), tcp probes are refused (exit 1: no reply).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let (code, _, err) = netblame(&["probe", "--kind", "rr", &addr]);
    assert_eq!(code, 1);
    assert!(err.contains("refused") && err.contains(&addr), "{err}");
    let (code, out, err) = netblame(&["probe", "--interval", "5ms", "-c", "3", &addr]);
    assert_eq!(code, 1);
    assert!(
        out.contains("connection refused") && err.contains("no reply"),
        "{out}\n{err}"
    );
}

#[test]
fn icmp_without_privilege_says_what_to_do() {
    if !netblame_testkit::require_root("icmp_without_privilege_says_what_to_do") {
        return;
    }
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let nobody_allowed = {
        let v: Vec<u64> = range
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        v.len() == 2 && v[0] <= 65534 && 65534 <= v[1]
    };
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_netblame"))
        .args([
            "probe",
            "--kind",
            "icmp",
            "--interval",
            "10ms",
            "-c",
            "3",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if nobody_allowed {
        assert_eq!(
            out.status.code(),
            Some(0),
            "unprivileged ping sockets are allowed: {err}"
        );
    } else {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("privilege") && err.contains("ping_group_range"),
            "{err}"
        );
    }
    // As root it works.
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "icmp",
        "--interval",
        "10ms",
        "-c",
        "5",
        "127.0.0.1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("127.0.0.1"), "{out}");
}

#[test]
fn syn_signature_in_a_namespace_end_to_end() {
    if !netblame_testkit::require_root("syn_signature_in_a_namespace_end_to_end") {
        return;
    }
    let ns = Netns(netblame_testkit::unique_name("nbpcsyn"));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("ip")
        .args(["-n", &ns.0, "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin
        .take()
        .unwrap()
        .write_all(
            b"table inet nbprobe {
  set seen { type inet_service; flags timeout; timeout 60s; }
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 5202 tcp flags & (syn | ack) == syn tcp sport @seen accept
    tcp dport 5202 tcp flags & (syn | ack) == syn add @seen { tcp sport } drop
  }
}
",
        )
        .unwrap();
    assert!(nft.wait().unwrap().success());
    let server = Server::start(&["ip", "netns", "exec", &ns.0], "127.0.0.1:5202");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(env!("CARGO_BIN_EXE_netblame"))
        .args([
            "probe",
            "--kind",
            "tcp",
            "--interval",
            "100ms",
            "-c",
            "6",
            "--timeout",
            "4s",
            "--json",
            "127.0.0.1:5202",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid("probe", &v);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "syn-retransmit")
        .unwrap_or_else(|| panic!("no SYN finding: {}", v["findings"]));
    let ev = |name: &str| {
        f["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_f64().unwrap())
    };
    assert_eq!(ev("syn_retransmit_connects"), Some(6.0), "{f}");
    assert_eq!(ev("after_retry_1"), Some(6.0), "{f}");
    assert_eq!(v["targets"][0]["summary"]["received"], 6);
    drop(server);
    drop(ns);
}

/// `netblame bench server` killed on drop.
struct BenchServer(Child);

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bench_server_answers_rr_and_udp_probes_and_still_serves_iperf3() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port().to_string();
    drop(free);
    let _server = BenchServer(
        Command::new(env!("CARGO_BIN_EXE_netblame"))
            .args(["bench", "server", "-B", "127.0.0.1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}");
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "bench server did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for kind in ["rr", "udp"] {
        let (code, out, err) = netblame(&[
            "probe",
            "--kind",
            kind,
            "--interval",
            "5ms",
            "-c",
            "30",
            "--json",
            &addr,
        ]);
        assert_eq!(code, 0, "{kind}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_valid("probe", &v);
        assert_eq!(v["targets"][0]["summary"]["received"], 30, "{kind}");
    }
    // The probe hook does not disturb the iperf3 protocol on the same port.
    if Command::new("iperf3").arg("--version").output().is_ok() {
        let out = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port, "-t", "1", "-J"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "iperf3 against the bench server: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn a_target_with_no_replies_shows_no_latency_figures() {
    // A port nothing listens on: every probe is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let live = Server::start(&[], "127.0.0.1:0");
    let (_, out, err) = netblame(&[
        "probe",
        "--count",
        "3",
        "--interval",
        "20ms",
        "--timeout",
        "200ms",
        &addr,
        &live.addr,
    ]);
    let row = |target: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(target))
            .unwrap_or_else(|| panic!("no row for {target}: {out} {err}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let dead = row(&addr);
    assert_eq!(&dead[1..4], ["3", "0", "100.0%"], "{out}");
    // min, avg, max, mdev and the four percentiles: dashes, not zeros that read as latency.
    assert_eq!(&dead[4..], ["-"; 8], "{out}");
    let ok = row(&live.addr);
    assert!(!ok[4..].iter().any(|c| c == "-"), "{out}");
    assert!(out.contains("3 probes per target"), "{out}");
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it, made with the openssl CLI
/// in a directory removed on drop.
struct OpensslPki {
    dir: std::path::PathBuf,
}

impl OpensslPki {
    fn new() -> OpensslPki {
        let dir = std::env::temp_dir().join(netblame_testkit::unique_name("probe-tls"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["openssl", "req", "-x509"];
        ca.extend(ec);
        let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
        ca.extend([
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-days",
            "2",
            "-subj",
            "/CN=netblame test CA",
        ]);
        netblame_testkit::run_ok(&ca);
        let (key, csr) = (p("key.pem"), p("req.csr"));
        let mut req = vec!["openssl", "req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        netblame_testkit::run_ok(&req);
        let ext = p("ext.cnf");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let cert = p("cert.pem");
        netblame_testkit::run_ok(&[
            "openssl",
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        OpensslPki { dir }
    }
    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_string_lossy().into_owned()
    }
}

impl Drop for OpensslPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server process killed on drop; `port` parsed from the first output line naming one.
struct Proc {
    child: Child,
    port: u16,
}

impl Proc {
    /// Starts `cmd` and reads its stdout until a line holds `marker` followed by the port.
    fn start(cmd: &[&str], marker: &str) -> Proc {
        let mut child = Command::new(cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "{cmd:?} ended");
            if let Some(rest) = line.split(marker).nth(1) {
                let digits: String = rest
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                break digits.parse().unwrap();
            }
        };
        // Keep the pipe drained so the server never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Proc { child, port }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_probes_against_openssl_s_server_with_a_ca_file_and_insecure() {
    let pki = OpensslPki::new();
    let (cert, key, ca) = (
        pki.path("cert.pem"),
        pki.path("key.pem"),
        pki.path("ca.pem"),
    );
    let server = Proc::start(
        &[
            "openssl",
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            &cert,
            "-key",
            &key,
            "-www",
        ],
        "ACCEPT 127.0.0.1:",
    );
    let url = format!("https://localhost:{}/", server.port);
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "http",
        "--count",
        "3",
        "--interval",
        "100ms",
        "--cacert",
        &ca,
        &url,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for phase in [
        "name lookup",
        "TCP connect",
        "TLS handshake",
        "first byte",
        "transfer",
        "total",
    ] {
        assert!(out.contains(phase), "no {phase} row:\n{out}");
    }
    assert!(out.contains("status 3 x 200; TLSv1."), "{out}");

    let url = format!("https://127.0.0.1:{}/", server.port);
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "http",
        "--count",
        "2",
        "--interval",
        "100ms",
        "--insecure",
        "--json",
        &url,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_valid("probe", &doc);
    let http = &doc["targets"][0]["http"];
    let phases: Vec<&str> = http["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["connect", "tls", "first_byte", "transfer", "total"],
        "{http}"
    );
    for p in http["probes"].as_array().unwrap() {
        assert!(
            p["tls_us"].as_u64().unwrap() > 0 && p["status"] == 200,
            "{p}"
        );
        assert!(p["body_bytes"].as_u64().unwrap() > 0, "{p}");
    }

    // Without --cacert the host's trust store does not know the test CA.
    let (code, _, err) = netblame(&["probe", "--kind", "http", "--count", "1", &url]);
    assert_eq!(code, 1);
    assert!(err.contains("no reply from"), "{err}");

    // --insecure without an https:// target is refused (like a bad --size: exit 1).
    let (code, _, err) = netblame(&["probe", "--kind", "tcp", "--insecure", "127.0.0.1:9"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("https:// targets only"), "{err}");
}

#[test]
fn https_to_a_plain_http_server_says_so() {
    let server = Proc::start(
        &[
            "python3",
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
        ],
        " port ",
    );
    let url = format!("https://127.0.0.1:{}/", server.port);
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "http",
        "--count",
        "2",
        "--interval",
        "100ms",
        &url,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("2 x the server answered in plain HTTP, not TLS: use http:// for this target"),
        "{out}"
    );
    // And over plain HTTP the same server answers.
    let url = format!("http://127.0.0.1:{}/", server.port);
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "http",
        "--count",
        "2",
        "--interval",
        "100ms",
        &url,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("status 2 x 200"), "{out}");
}

/// An HTTP/1.1 server on 127.0.0.1 (port printed as `port N`) whose every `every`-th answer
/// waits before its first byte, for the next of `delays` (seconds, in turn).
fn slow_http_server(every: u32, delays: &[f64]) -> String {
    let delays: Vec<String> = delays.iter().map(f64::to_string).collect();
    let delays = delays.join(", ");
    format!(
        r#"
import http.server, time
n = [0]
delays = [{delays}]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        n[0] += 1
        if n[0] % {every} == 0:
            time.sleep(delays[(n[0] // {every} - 1) % len(delays)])
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("port", s.server_address[1], flush=True)
s.serve_forever()
"#
    )
}

/// The finding `id` in a probe JSON document.
fn finding_of<'a>(doc: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
}

/// The value of a finding's evidence `name`.
fn evidence(f: &serde_json::Value, key: &str) -> f64 {
    f["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == key)
        .and_then(|e| e["value"].as_f64())
        .unwrap_or_else(|| panic!("no {key} in {f}"))
}

/// Thirty http probes 50 ms apart to `url`, each given `timeout`: the JSON document, checked
/// against its schema.
fn probe_http(url: &str, timeout: &str) -> serde_json::Value {
    let (code, out, err) = netblame(&[
        "probe",
        "--kind",
        "http",
        "--count",
        "30",
        "--interval",
        "50ms",
        "--timeout",
        timeout,
        "--json",
        url,
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_valid("probe", &doc);
    doc
}

/// A server whose every fifth answer starts late by a different delay each time (120 ms to
/// 1 s): the tail is `server-slow`, held by the first-byte phase, and no network finding. The
/// same server late by one fixed delay is a timer: `timeout-and-retry`, not `server-slow`.
#[test]
fn a_slow_server_tail_is_the_servers_time_to_first_byte() {
    let server = Proc::start(
        &[
            "python3",
            "-u",
            "-c",
            &slow_http_server(5, &[0.12, 0.25, 0.5, 1.0]),
        ],
        "port ",
    );
    let doc = probe_http(&format!("http://127.0.0.1:{}/", server.port), "2s");
    let f = finding_of(&doc, "server-slow").unwrap_or_else(|| panic!("{}", doc["findings"]));
    assert_eq!(f["layer"], "application");
    assert_eq!(f["severity"], "warning");
    // Six late answers of thirty (0.12, 0.25, 0.5, 1, 0.12, 0.25 s): 373 ms late on average,
    // all of it in the first-byte phase.
    assert_eq!(evidence(f, "tail_probes"), 6.0, "{f}");
    let extra = evidence(f, "phase_tail_mean") - evidence(f, "phase_median");
    assert!((340_000.0..480_000.0).contains(&extra), "{f}");
    assert!(evidence(f, "share_of_excess") > 0.9, "{f}");
    for id in [
        "probe-loss",
        "latency-tail-one-target",
        "dns-slow",
        "timeout-and-retry",
    ] {
        assert!(finding_of(&doc, id).is_none(), "{id}: {}", doc["findings"]);
    }

    let fixed = Proc::start(
        &["python3", "-u", "-c", &slow_http_server(5, &[0.3])],
        "port ",
    );
    let doc = probe_http(&format!("http://127.0.0.1:{}/", fixed.port), "2s");
    assert!(
        finding_of(&doc, "timeout-and-retry").is_some(),
        "{}",
        doc["findings"]
    );
    assert!(
        finding_of(&doc, "server-slow").is_none(),
        "{}",
        doc["findings"]
    );
}

/// A resolver (a small DNS server in a namespace, named by the namespace's own resolv.conf)
/// whose every fourth answer is 250 ms late: the tail is `dns-slow`, not the server's.
#[test]
fn a_slow_resolver_tail_is_dns() {
    if !netblame_testkit::require_root("a_slow_resolver_tail_is_dns") {
        return;
    }
    let ns = Netns::new("nbdns");
    // `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
    struct EtcNetns(std::path::PathBuf);
    impl Drop for EtcNetns {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let etc = EtcNetns(std::path::PathBuf::from(format!(
        "/etc/netns/{}",
        ns.name()
    )));
    std::fs::create_dir_all(&etc.0).unwrap();
    std::fs::write(
        etc.0.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n",
    )
    .unwrap();
    let dns = r#"
import socket, struct, threading
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("port 53", flush=True)
n = 0
while True:
    q, peer = s.recvfrom(512)
    i = 12
    while q[i]:
        i += q[i] + 1
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    ans = b""
    delay = 0
    if qtype == 1:
        n += 1
        delay = 0.25 if n % 4 == 0 else 0
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4) + bytes([127, 0, 0, 1])
    hdr = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1 if ans else 0, 0, 0)
    # A late answer waits on a timer, not in the loop: the other lookups stay prompt.
    threading.Timer(delay, s.sendto, (hdr + q[12:i + 5] + ans, peer)).start()
"#;
    let in_ns = |cmd: &[&str]| -> Vec<String> {
        ["ip", "netns", "exec", ns.name()]
            .iter()
            .chain(cmd)
            .map(|s| s.to_string())
            .collect()
    };
    let argv = in_ns(&["python3", "-u", "-c", dns]);
    let _resolver = Proc::start(
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
        "port ",
    );
    let http = slow_http_server(1_000_000, &[0.0]);
    let argv = in_ns(&["python3", "-u", "-c", &http]);
    let server = Proc::start(
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
        "port ",
    );
    // The reference resolver path (glibc's getaddrinfo through nsswitch) finds the name there.
    let getent = ns.exec(&["getent", "ahosts", "slow.test"]);
    assert!(getent.contains("127.0.0.1"), "{getent}");

    let url = format!("http://slow.test:{}/", server.port);
    let o = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_netblame")])
        .args([
            "probe",
            "--kind",
            "http",
            "--count",
            "30",
            "--interval",
            "50ms",
        ])
        .args(["--timeout", "3s", "--json", &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("probe", &doc);
    let f = finding_of(&doc, "dns-slow").unwrap_or_else(|| panic!("{}", doc["findings"]));
    assert_eq!(f["layer"], "host");
    assert_eq!(f["severity"], "warning");
    // Every fourth lookup of thirty: seven or eight (getent's own lookup moved the count).
    assert!((7.0..=8.0).contains(&evidence(f, "tail_probes")), "{f}");
    let extra = evidence(f, "phase_tail_mean") - evidence(f, "phase_median");
    assert!((230_000.0..400_000.0).contains(&extra), "{f}");
    // A fixed 250 ms in the lookup is the resolver's delay, not an application's retry.
    assert!(
        finding_of(&doc, "timeout-and-retry").is_none(),
        "{}",
        doc["findings"]
    );
    assert!(
        finding_of(&doc, "server-slow").is_none(),
        "{}",
        doc["findings"]
    );
    // The per-probe phases are in the document too: the slow lookups are there.
    let slow_lookups = doc["targets"][0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["phases"]["dns_us"].as_u64().unwrap_or(0) >= 200_000)
        .count();
    assert!(
        (6..=9).contains(&slow_lookups),
        "{slow_lookups} slow lookups"
    );
}

/// A server that accepts every connection but leaves every third request unanswered: the lost
/// probes had connected promptly and sent their request, so the loss is the server's
/// (application), not the network's.
#[test]
fn connected_then_unanswered_probes_are_the_servers_loss() {
    let server = Proc::start(
        &["python3", "-u", "-c", &slow_http_server(3, &[5.0])],
        "port ",
    );
    let doc = probe_http(&format!("http://127.0.0.1:{}/", server.port), "500ms");
    let f = finding_of(&doc, "probe-loss").unwrap_or_else(|| panic!("{}", doc["findings"]));
    assert_eq!(f["layer"], "application", "{f}");
    assert_eq!(evidence(f, "lost"), 10.0, "{f}");
    // The last one may end with the run, before its own timeout records how far it got.
    assert!(
        (9.0..=10.0).contains(&evidence(f, "lost_after_connect")),
        "{f}"
    );
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .ends_with("connected, then no answer"),
        "{f}"
    );
}
