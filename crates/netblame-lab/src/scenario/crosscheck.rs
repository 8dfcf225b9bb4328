//! Cross-checks: the same workload run by netblame's own tools inside the lab — a transfer by
//! `netblame bench` (client and server, each in its side), connects by `netblame probe` (against
//! `netblame probe serve`) — whose findings are reported next to the scenario's verdict.
//!
//! The binary is passed in (the cli passes itself); the library never guesses it.

use crate::lab::{Lab, Side, SERVER_ADDR};
use crate::workload::TransferSpec;
use serde::Serialize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The port `netblame bench server` listens on inside the lab.
pub const BENCH_PORT: u16 = 5202;
/// The port `netblame probe serve` listens on inside the lab.
pub const PROBE_PORT: u16 = 5203;

/// One finding as the tool's `--json` reported it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BenchFinding {
    pub id: String,
    pub layer: String,
    pub severity: String,
    pub summary: String,
}

/// What `netblame bench` or `netblame probe` said about the same workload.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CrossCheck {
    /// `bench` or `probe`.
    pub tool: &'static str,
    /// The client command line, as run inside the client namespace.
    pub command: String,
    /// Goodput the bench receiver measured, bits per second (bench only).
    pub bits_per_second: Option<f64>,
    pub findings: Vec<BenchFinding>,
    /// Why the bench did not run or its output could not be read.
    pub error: Option<String>,
}

/// The `netblame bench client` arguments that reproduce `spec`.
pub fn client_args(spec: &TransferSpec) -> Vec<String> {
    let mut a: Vec<String> = vec!["bench".into(), "client".into(), SERVER_ADDR.to_string()];
    a.extend(["-p".into(), BENCH_PORT.to_string()]);
    match spec.size {
        Some(n) => a.extend(["-n".into(), n.to_string()]),
        None => a.extend(["-t".into(), spec.duration.as_secs().max(1).to_string()]),
    }
    if spec.sender == Side::Server {
        a.push("-R".into());
    }
    if let Some(b) = spec.receiver_rcvbuf {
        a.extend(["--rcvbuf".into(), b.to_string()]);
    }
    if let Some(cc) = &spec.congestion {
        a.extend(["-C".into(), cc.clone()]);
    }
    if spec.nodelay {
        a.push("-N".into());
    }
    if spec.write_chunk != 128 << 10 {
        a.extend(["-l".into(), spec.write_chunk.to_string()]);
    }
    if let Some(t) = spec.timeout {
        a.extend(["--app-timeout".into(), format!("{}ms", t.as_millis())]);
    }
    a.push("--json".into());
    a
}

/// Runs `netblame bench` through the lab and collects its findings. Never fails: problems are
/// reported in `error`.
pub fn bench(netblame: &Path, lab: &Lab, spec: &TransferSpec) -> CrossCheck {
    let server = [
        "bench",
        "server",
        "-1",
        "-B",
        &SERVER_ADDR.to_string(),
        "-p",
        &BENCH_PORT.to_string(),
    ]
    .map(String::from);
    let mut c = run("bench", netblame, lab, &server, &client_args(spec));
    if let Some(v) = c.json.take() {
        c.check.bits_per_second = v["end"]["sum_received"]["bits_per_second"].as_f64();
        c.check.findings = findings(&v["netblame"]["findings"]);
    }
    c.check
}

/// Runs `netblame probe --kind tcp` (`count` connects, 100 ms apart) against `netblame probe
/// serve` through the lab and collects its findings.
pub fn probe(netblame: &Path, lab: &Lab, count: usize) -> CrossCheck {
    let target = format!("{SERVER_ADDR}:{PROBE_PORT}");
    let server = ["probe", "serve", "--listen", &target].map(String::from);
    let client = [
        "probe",
        "--kind",
        "tcp",
        "--interval",
        "100ms",
        "--count",
        &count.to_string(),
        "--json",
        &target,
    ]
    .map(String::from);
    let mut c = run("probe", netblame, lab, &server, &client);
    if let Some(v) = c.json.take() {
        c.check.findings = findings(&v["findings"]);
    }
    c.check
}

fn findings(v: &serde_json::Value) -> Vec<BenchFinding> {
    let s = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_string();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|f| BenchFinding {
                    id: s(&f["id"]),
                    layer: s(&f["layer"]),
                    severity: s(&f["severity"]),
                    summary: s(&f["summary"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Ran {
    check: CrossCheck,
    json: Option<serde_json::Value>,
}

/// Starts `server_args` in the server namespace, runs `client_args` in the client namespace,
/// stops the server, and parses the client's JSON.
fn run(
    tool: &'static str,
    netblame: &Path,
    lab: &Lab,
    server_args: &[String],
    client_args: &[String],
) -> Ran {
    let mut check = CrossCheck {
        tool,
        command: format!("netblame {}", client_args.join(" ")),
        bits_per_second: None,
        findings: Vec::new(),
        error: None,
    };
    let server = Command::new("ip")
        .args(["netns", "exec", &lab.netns(Side::Server)])
        .arg(netblame)
        .args(server_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut server = match server {
        Ok(s) => s,
        Err(e) => {
            check.error = Some(format!("starting netblame {}: {e}", server_args.join(" ")));
            return Ran { check, json: None };
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.netns(Side::Client)])
        .arg(netblame)
        .args(client_args)
        .stdin(Stdio::null())
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            check.error = Some(format!("running {}: {e}", check.command));
            return Ran { check, json: None };
        }
    };
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => Ran {
            check,
            json: Some(v),
        },
        Err(_) => {
            check.error = Some(format!(
                "{} exited with {} and no JSON: {}",
                check.command,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            Ran { check, json: None }
        }
    }
}
