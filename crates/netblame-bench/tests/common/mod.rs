//! Helpers shared by the bench integration tests: free ports, a real `iperf3` process (killed on
//! drop), an in-process netblame server.

#![allow(dead_code)]

use netblame_bench::server::{ServerConfig, ServerEvent};
use netblame_bench::Server;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True when something listens on 127.0.0.1:`port` (read from /proc, without connecting).
pub fn listening(port: u16) -> bool {
    let needle = format!(":{:04X} ", port);
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| format!("{a} ").ends_with(&needle))
                    && l.split_whitespace().nth(3) == Some("0A")
            })
    })
}

/// A real iperf3 process, killed when dropped.
pub struct Iperf3(pub Child);

impl Drop for Iperf3 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `iperf3 -s -1` on a free port and waits until it listens.
pub fn iperf3_server() -> (Iperf3, u16) {
    iperf3_server_with(&["-B", "127.0.0.1"])
}

/// Starts `iperf3 -s -1 ARGS` on a free port and waits until it listens.
pub fn iperf3_server_with(args: &[&str]) -> (Iperf3, u16) {
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new("iperf3")
            .args(["-s", "-1", "-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 is installed");
        let guard = Iperf3(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if listening(port) {
                return (guard, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("iperf3 -s did not start");
}

/// An in-process netblame server; events arrive on the channel. Shut down on drop.
pub struct NbServer {
    pub addr: SocketAddr,
    pub events: Receiver<ServerEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for NbServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a netblame server on a free loopback port.
pub fn nb_server(mut cfg: ServerConfig) -> NbServer {
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    nb_server_at(cfg)
}

/// Starts a netblame server on `cfg.bind` as given.
pub fn nb_server_at(cfg: ServerConfig) -> NbServer {
    let (tx, rx) = channel();
    let tx = std::sync::Mutex::new(tx);
    let srv = Server::bind(cfg, move |ev| {
        let _ = tx.lock().unwrap().send(ev);
    })
    .unwrap();
    let addr = srv.local_addr().unwrap();
    let stop = srv.shutdown_handle();
    let thread = std::thread::spawn(move || srv.serve().unwrap());
    NbServer {
        addr,
        events: rx,
        stop,
        thread: Some(thread),
    }
}

impl NbServer {
    /// The next finished-test report (skipping other events), waiting up to `secs`.
    pub fn finished(&self, secs: u64) -> Box<netblame_bench::server::SessionReport> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ServerEvent::Finished(r)) => return r,
                Ok(_) => continue,
                Err(e) => panic!("no finished test: {e}"),
            }
        }
    }

    /// The next `Dropped` event's reason, waiting up to `secs`.
    pub fn dropped(&self, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ServerEvent::Dropped { reason, .. }) => return reason,
                Ok(_) => continue,
                Err(e) => panic!("no dropped event: {e}"),
            }
        }
    }
}

/// Largest bytes moved in one interval by all streams of one direction (the tolerance).
pub fn max_interval_bytes(intervals: &[netblame_bench::sample::IntervalSample]) -> u64 {
    intervals
        .iter()
        .map(|iv| iv.streams.iter().map(|s| s.bytes).sum::<u64>())
        .max()
        .unwrap_or(0)
}
