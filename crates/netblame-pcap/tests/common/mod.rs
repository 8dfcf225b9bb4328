//! Helpers for tests that capture real traffic with tcpdump, on loopback or in namespaces.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use netblame_testkit::Netns;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running tcpdump; `stop` sends SIGINT and waits so the file is complete.
pub struct Tcpdump {
    child: Option<Child>,
    pub path: PathBuf,
}

impl Tcpdump {
    /// Starts `tcpdump -i IFACE -U -w FILE FILTER` (inside `netns` if given) and waits for its
    /// "listening on" line.
    pub fn start(netns: Option<&str>, iface: &str, filter: &str, path: &Path) -> Tcpdump {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "tcpdump"]);
                c
            }
            None => Command::new("tcpdump"),
        };
        // -Z root: write the file as root (tcpdump drops to user tcpdump otherwise).
        // -s 200: headers only (payload lengths come from the IP header), so tcpdump keeps up.
        cmd.args([
            "-i",
            iface,
            "-U",
            "--immediate-mode",
            "-n",
            "-s",
            "200",
            "-B",
            "16384",
            "-Z",
            "root",
            "-w",
        ])
        .arg(path)
        .arg(filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("tcpdump runs (apt-get install tcpdump)");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(l) if l.contains("listening on") => break,
                Ok(l) => seen.push(l),
                Err(_) => {
                    let _ = child.kill();
                    panic!("tcpdump did not start: {seen:?}");
                }
            }
        }
        Tcpdump {
            child: Some(child),
            path: path.to_path_buf(),
        }
    }

    /// Stops the capture (SIGINT) and waits for tcpdump to flush and exit.
    pub fn stop(mut self) -> PathBuf {
        self.finish();
        self.path.clone()
    }

    fn finish(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Let the last packets reach the capture buffer.
            std::thread::sleep(Duration::from_millis(500));
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(netblame_testkit::unique_name(&format!("nbpcap-{tag}-")));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counts frames tshark flags with `filter` (e.g. `tcp.analysis.retransmission`).
pub fn tshark_count(path: &Path, filter: &str) -> Option<u64> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count() as u64,
    )
}

/// Waits for a child with a generous bound; kills it if it overruns.
pub fn wait_child(mut c: Child, bound: Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = c.try_wait() {
            return c.wait_with_output().unwrap();
        }
        if start.elapsed() > bound {
            let _ = c.kill();
            return c.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
