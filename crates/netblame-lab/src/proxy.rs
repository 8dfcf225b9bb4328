//! A small HTTP reverse proxy with its backends, inside the lab's server namespace, for the
//! Datadog-chain scenarios: a sidecar that spreads requests over backends round-robin, waits
//! `upstream_timeout` for each, and retries on the next backend when one does not answer (as
//! Envoy does), in front of backends of which one may be *terminating*: its listener stays open
//! and accepts, but it never answers — a terminating pod's.
//!
//! For `throttled-proxy`, the proxy can burn CPU per request inside a CPU-limited cgroup of its
//! own (the cgroup v1 `cpu` hierarchy: its threads are moved through `tasks`), as an Envoy
//! sidecar under a pod CPU limit does.
//!
//! Every thread polls a stop flag; [`Proxy::stop`] (or drop) ends them and closes every socket,
//! so a lab can be torn down right after.

use crate::lab::{Lab, Side};
use crate::netns;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The proxy's port on the server address.
pub const PROXY_PORT: u16 = 5280;
const POLL: Duration = Duration::from_millis(10);
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// What to build.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    /// Backends behind the proxy.
    pub backends: usize,
    /// The backend (index) that accepts and never answers, if any.
    pub terminating: Option<usize>,
    /// How long the proxy waits for a backend before it retries on the next one.
    pub upstream_timeout: Duration,
    /// CPU time the proxy spends on each request (parsing, TLS, filters...).
    pub work_per_request: Duration,
    /// Run the proxy in a cgroup of its own with this CPU quota per period (`cfs_quota_us`,
    /// `cfs_period_us`).
    pub cpu_limit: Option<(u64, u64)>,
}

/// A CPU-limited cgroup the proxy's threads run in, removed on drop.
#[derive(Debug)]
pub struct ProxyCgroup {
    /// Path below the hierarchy's root (`/netblame-lab-NAME`).
    pub path: String,
    /// The directory.
    pub dir: std::path::PathBuf,
}

impl Drop for ProxyCgroup {
    fn drop(&mut self) {
        // Threads that ended have left it; a few retries cover the last ones exiting.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(POLL);
        }
    }
}

fn cpu_cgroup(lab: &Lab, quota_us: u64, period_us: u64) -> io::Result<ProxyCgroup> {
    let root = netblame_linux::host::cgroup::mounts().v1_cpu.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "a CPU-limited proxy needs the cgroup v1 cpu hierarchy (its threads are moved through `tasks`)",
        )
    })?;
    let path = format!("/netblame-lab-{}", lab.name());
    let dir = root.join(path.trim_start_matches('/'));
    std::fs::create_dir(&dir)?;
    let cg = ProxyCgroup { path, dir };
    std::fs::write(cg.dir.join("cpu.cfs_period_us"), period_us.to_string())?;
    std::fs::write(cg.dir.join("cpu.cfs_quota_us"), quota_us.to_string())?;
    Ok(cg)
}

/// Burns `d` of this thread's CPU time.
fn burn(d: Duration) {
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into a valid timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let start = cpu();
    let mut x = 0u64;
    while cpu() - start < d {
        for i in 0..1000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

/// A running proxy and its backends.
pub struct Proxy {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// Requests the proxy retried on another backend.
    pub retries: Arc<AtomicU64>,
    /// The proxy's address (the server side's address, [`PROXY_PORT`]).
    pub addr: SocketAddr,
    /// The proxy's cgroup, with a CPU limit.
    pub cgroup: Option<ProxyCgroup>,
}

fn read_head(s: &mut TcpStream, stop: &AtomicBool) -> io::Result<Vec<u8>> {
    s.set_read_timeout(Some(POLL))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if stop.load(Ordering::Relaxed) || head.len() > 64 * 1024 {
            return Err(io::Error::other("stopped"));
        }
        match s.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(head)
}

/// Accepts on `l` until `stop`, handing each connection to `each` on its own thread.
fn serve(
    l: TcpListener,
    stop: Arc<AtomicBool>,
    each: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static,
) -> io::Result<()> {
    l.set_nonblocking(true)?;
    let each = Arc::new(each);
    let mut handlers = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                let (each, stop) = (each.clone(), stop.clone());
                handlers.push(std::thread::spawn(move || each(s, &stop)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        handlers.retain(|h| !h.is_finished());
    }
    for h in handlers {
        let _ = h.join();
    }
    Ok(())
}

/// One request to `backend`: the response, or `None` when it did not answer in time.
fn ask(backend: SocketAddr, request: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&backend, timeout).ok()?;
    s.write_all(request).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

impl Proxy {
    /// Starts the backends (on the server side's loopback) and the proxy (on the server
    /// address) inside the lab's server namespace.
    pub fn start(lab: &Lab, spec: ProxySpec) -> io::Result<Proxy> {
        let stop = Arc::new(AtomicBool::new(false));
        let retries = Arc::new(AtomicU64::new(0));
        let ns = lab.netns(Side::Server);
        let (st, rt) = (stop.clone(), retries.clone());
        // Bind everything inside the namespace first, so errors surface here.
        let (backends, proxy) = netns::run_in(&ns, move || {
            let backends: Vec<TcpListener> = (0..spec.backends)
                .map(|_| TcpListener::bind("127.0.0.1:0"))
                .collect::<io::Result<_>>()?;
            let proxy = TcpListener::bind((Side::Server.addr(), PROXY_PORT))?;
            Ok((backends, proxy))
        })?;
        let addrs: Vec<SocketAddr> = backends
            .iter()
            .map(|b| b.local_addr())
            .collect::<io::Result<_>>()?;
        let mut threads = Vec::new();
        for (i, b) in backends.into_iter().enumerate() {
            let stop = st.clone();
            let terminating = spec.terminating == Some(i);
            threads.push(netns::spawn_in(&ns, move || {
                serve(b, stop, move |mut s, stop| {
                    if read_head(&mut s, stop).is_err() {
                        return;
                    }
                    if terminating {
                        // Listening, accepting, reading — and never answering.
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(POLL);
                        }
                        return;
                    }
                    let _ = s.write_all(RESPONSE);
                })
            })?);
        }
        let next = Arc::new(AtomicU64::new(0));
        let timeout = spec.upstream_timeout;
        let work = spec.work_per_request;
        let cgroup = match spec.cpu_limit {
            Some((q, p)) => Some(cpu_cgroup(lab, q, p)?),
            None => None,
        };
        let tasks = cgroup.as_ref().map(|c| c.dir.join("tasks"));
        threads.push(netns::spawn_in(&ns, move || {
            if let Some(tasks) = tasks {
                // This thread, and the handler threads it starts, run in the limited cgroup.
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                std::fs::write(tasks, tid.to_string())?;
            }
            serve(proxy, st, move |mut client, stop| {
                let Ok(request) = read_head(&mut client, stop) else {
                    return;
                };
                burn(work);
                let first = next.fetch_add(1, Ordering::Relaxed) as usize;
                for attempt in 0..addrs.len() {
                    let backend = addrs[(first + attempt) % addrs.len()];
                    if let Some(resp) = ask(backend, &request, timeout) {
                        let _ = client.write_all(&resp);
                        return;
                    }
                    rt.fetch_add(1, Ordering::Relaxed);
                }
                let _ = client.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            })
        })?);
        Ok(Proxy {
            stop,
            threads,
            retries,
            addr: SocketAddr::from((Side::Server.addr(), PROXY_PORT)),
            cgroup,
        })
    }

    /// Stops every thread and closes every socket (the cgroup goes with the value).
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// The proxy cgroup's CPU accounting now, as the host audit reads it.
    pub fn cpu(&self) -> Option<netblame_core::observe::host::CgroupCpu> {
        let cg = self.cgroup.as_ref()?;
        let target = netblame_linux::host::CgroupTarget {
            version: "v1",
            path: cg.path.clone(),
            dir: cg.dir.clone(),
            owners: vec![netblame_core::observe::host::OwnerProcess {
                pid: std::process::id(),
                command: "proxy".into(),
                sockets: 0,
            }],
            container: None,
        };
        netblame_linux::host::cgroup::read(&target).ok()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}
