//! Helpers for the `netblame serve` tests: the agent as a real process, a temp dir removed on
//! drop, a minimal HTTP GET.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(netblame_testkit::unique_name(prefix));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `ok` every 100 ms until it holds or `limit` passes (a generous limit: no timing is
/// asserted, it only bounds a hung test). Returns whether it held.
pub fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` over HTTP/1.0; returns (status, body).
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    Ok((status, body.to_string()))
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The event log's lines as JSON.
pub fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .inspect(|e| netblame_testkit::schema::assert_valid("serve-events", e))
        .collect()
}

/// A running `netblame serve`, killed on drop if still running.
pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    pub events: PathBuf,
}

impl Agent {
    /// Starts `netblame serve --listen 127.0.0.1:0 --events EVENTS extra...` and waits for its
    /// `started` event.
    pub fn start(events: &Path, extra: &[&str]) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netblame"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--events"])
            .arg(events)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn netblame serve");
        let mut addr = None;
        let started = wait_for(Duration::from_secs(60), || {
            if let Some(e) = events_of(events, "started").first() {
                addr = e["listen"].as_str().and_then(|a| a.parse().ok());
                return true;
            }
            matches!(child.try_wait(), Ok(Some(_)))
        });
        let Some(addr) = addr.filter(|_| started) else {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "netblame serve did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        Agent {
            child,
            addr,
            events: events.to_path_buf(),
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill on the pid of our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path, None).expect("GET from the agent")
    }

    /// `netblame_scans_total` in the current exposition.
    pub fn scans(&self) -> u64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("netblame_scans_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the exit status (the agent's stderr is returned).
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let mut status = None;
        wait_for(Duration::from_secs(30), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        let status = status.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("netblame serve did not exit on SIGTERM");
        });
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Events of one kind.
pub fn events_of(path: &Path, kind: &str) -> Vec<serde_json::Value> {
    events(path)
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}
