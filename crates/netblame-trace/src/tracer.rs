//! Loading the programs, attaching what this kernel has, draining the ring buffer and reading
//! the in-kernel aggregates into a [`TraceSummary`].

use crate::btf::{self, EnumNames};
use crate::kallsyms::Kallsyms;
use crate::raw::{Decoder, RawEvent, KIND_NAMES};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{FEntry, FExit, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use netblame_core::observe::trace::{
    DropCount, FunctionTracing, LostEvents, NapiTotals, NetRxCpu, RmemLimits, TraceAccumulator,
    TraceCapabilities, TraceEvent, TraceSummary,
};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The compiled programs (built by `bpf/build.sh` from `bpf/netblame.bpf.c`, committed).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/netblame.bpf.o");

/// Every tracepoint program: (program name, category, event).
pub const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("nb_softirq_entry", "irq", "softirq_entry"),
    ("nb_softirq_exit", "irq", "softirq_exit"),
    ("nb_napi_poll", "napi", "napi_poll"),
    ("nb_kfree_skb", "skb", "kfree_skb"),
    ("nb_retransmit", "tcp", "tcp_retransmit_skb"),
    ("nb_send_reset", "tcp", "tcp_send_reset"),
    ("nb_receive_reset", "tcp", "tcp_receive_reset"),
    ("nb_set_state", "sock", "inet_sock_set_state"),
    ("nb_send_length", "sock", "sock_send_length"),
    ("nb_recv_length", "sock", "sock_recv_length"),
    ("nb_rcvbuf_grow", "tcp", "tcp_rcvbuf_grow"),
    ("nb_rcv_space", "tcp", "tcp_rcv_space_adjust"),
    ("nb_tcp_probe", "tcp", "tcp_probe"),
];

/// Functions timed where the kernel allows fentry: (function, entry program, exit program).
const FUNCTIONS: &[(&str, &str, &str)] = &[
    ("tcp_collapse", "nb_collapse_entry", "nb_collapse_exit"),
    ("tcp_prune_queue", "nb_prune_entry", "nb_prune_exit"),
];

/// Why tracing cannot run here. The cli maps every variant to one documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracing needs root (CAP_BPF and CAP_PERFMON to load eBPF programs): run netblame as root, e.g. with sudo")]
    NotRoot,
    #[error("this kernel publishes no BTF ({0} is missing; it needs CONFIG_DEBUG_INFO_BTF=y): netblame's CO-RE programs cannot be relocated without it")]
    NoBtf(String),
    #[error("cannot read the kernel's BTF: {0}")]
    Btf(String),
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
    Tracefs(std::io::Error),
    #[error("the kernel refused netblame's eBPF programs: {0}")]
    Load(String),
    #[error("no tracepoint could be attached: {0}")]
    NothingAttached(String),
}

/// Loader settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// NET_RX runs at least this long are reported one by one (all runs go into histograms).
    pub long_run: Duration,
    /// Per-socket sampling interval of tcp_probe and buffer heartbeats.
    pub sample_interval: Duration,
    /// Try fentry on tcp_collapse/tcp_prune_queue.
    pub function_tracing: bool,
    /// The kernel's BTF (`NETBLAME_BTF` overrides the default path).
    pub btf_path: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            long_run: Duration::from_micros(500),
            sample_interval: Duration::from_millis(100),
            function_tracing: true,
            btf_path: std::env::var_os("NETBLAME_BTF")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(btf::VMLINUX_BTF)),
        }
    }
}

/// A running trace: programs attached until it is dropped.
pub struct Tracer {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    decoder: Decoder,
    acc: TraceAccumulator,
    caps: TraceCapabilities,
    started: Instant,
    mounted_tracefs: bool,
}

const TRACEFS: &str = "/sys/kernel/tracing";

fn tracefs_root() -> Option<PathBuf> {
    [TRACEFS, "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// Mounts tracefs when no tracing directory is there; true when this call mounted it.
fn ensure_tracefs() -> Result<bool, TraceError> {
    if tracefs_root().is_some() {
        return Ok(false);
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, dst, fs) = (c("tracefs"), c(TRACEFS), c("tracefs"));
    // SAFETY: mount(2) with valid NUL-terminated strings and no data pointer.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(TraceError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(true)
}

/// Checks what tracing needs before loading anything: root and the kernel's BTF.
pub fn preflight(cfg: &Config) -> Result<(), TraceError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(TraceError::NotRoot);
    }
    if !cfg.btf_path.exists() {
        return Err(TraceError::NoBtf(cfg.btf_path.display().to_string()));
    }
    Ok(())
}

fn has_tracepoint(root: &Path, cat: &str, name: &str) -> bool {
    root.join("events").join(cat).join(name).is_dir()
}

/// An error and its causes on one line; a verifier log is cut to its last line (the reason).
fn err_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s += &format!(": {x}");
        src = x.source();
    }
    match s.split_once("Verifier output:") {
        Some((head, log)) if log.lines().count() > 1 => {
            let last = log.lines().rev().find(|l| l.trim().len() > 1).unwrap_or("");
            format!("{}verifier: {}", head, last.trim())
        }
        Some((head, _)) => head.trim_end().trim_end_matches('.').to_string(),
        None => s,
    }
}

impl Tracer {
    /// Loads and attaches every program this kernel supports.
    pub fn start(cfg: &Config) -> Result<Tracer, TraceError> {
        preflight(cfg)?;
        let mounted_tracefs = ensure_tracefs()?;
        let root = tracefs_root().unwrap_or_else(|| PathBuf::from(TRACEFS));
        let kbtf = Btf::parse_file(&cfg.btf_path, aya::Endianness::default())
            .map_err(|e| TraceError::Btf(err_text(&e)))?;
        let long_run_ns = cfg.long_run.as_nanos() as u64;
        let sample_ns = cfg.sample_interval.as_nanos() as u64;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&kbtf))
            .override_global("long_run_ns", &long_run_ns, true)
            .override_global("sample_interval_ns", &sample_ns, true)
            .load(OBJECT)
            .map_err(|e| TraceError::Load(err_text(&e)))?;

        let mut caps = TraceCapabilities::default();
        for (prog, cat, name) in TRACEPOINTS {
            let id = format!("{cat}:{name}");
            if !has_tracepoint(&root, cat, name) {
                caps.missing.push(id);
                continue;
            }
            let attached = (|| -> Result<(), String> {
                let p: &mut TracePoint = ebpf
                    .program_mut(prog)
                    .ok_or("program missing from the object")?
                    .try_into()
                    .map_err(|e: aya::programs::ProgramError| err_text(&e))?;
                p.load().map_err(|e| err_text(&e))?;
                p.attach(cat, name).map_err(|e| err_text(&e))?;
                Ok(())
            })();
            match attached {
                Ok(()) => caps.attached.push(id),
                Err(e) => caps.missing.push(format!("{id} (refused: {e})")),
            }
        }
        if caps.attached.is_empty() {
            return Err(TraceError::NothingAttached(caps.missing.join("; ")));
        }
        caps.function_tracing = if cfg.function_tracing {
            attach_functions(&mut ebpf, &kbtf)
        } else {
            FunctionTracing {
                available: false,
                detail: "function tracing not requested".into(),
            }
        };

        let ring = RingBuf::try_from(
            ebpf.take_map("events")
                .ok_or_else(|| TraceError::Load("no events map".into()))?,
        )
        .map_err(|e| TraceError::Load(err_text(&e)))?;
        let names = btf::read_enums(&cfg.btf_path, &["skb_drop_reason", "sk_rst_reason"])
            .map_err(|e| TraceError::Btf(e.to_string()))?;
        let get = |n: &str| names.get(n).cloned().unwrap_or_else(EnumNames::default);
        let decoder = Decoder::new(
            get("skb_drop_reason"),
            get("sk_rst_reason"),
            Kallsyms::load(),
        );
        Ok(Tracer {
            ebpf,
            ring,
            decoder,
            acc: TraceAccumulator::default(),
            caps,
            started: Instant::now(),
            mounted_tracefs,
        })
    }

    /// What was attached, what is missing, and whether functions can be timed.
    pub fn capabilities(&self) -> &TraceCapabilities {
        &self.caps
    }

    /// Number of drop reasons the kernel's BTF names (0 when the enum was not found).
    pub fn drop_reason_names(&self) -> usize {
        self.decoder.drop_reasons.len()
    }

    /// Waits up to `timeout` for events, then hands each one (already added to the summary) to
    /// `f`. Returns how many were read.
    pub fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(&TraceEvent)) -> usize {
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the ring buffer's fd, which lives as long as self.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            let raw = RawEvent::from_bytes(&item);
            drop(item);
            if let Some(ev) = raw.and_then(|r| self.decoder.decode(&r)) {
                self.acc.add(&ev);
                f(&ev);
            }
            n += 1;
        }
        n
    }

    /// Runs until `duration` has passed, handing every event to `f`.
    pub fn run_for(&mut self, duration: Duration, f: &mut dyn FnMut(&TraceEvent)) {
        let end = Instant::now() + duration;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.poll(left.min(Duration::from_millis(100)), f);
        }
    }

    /// Drains what is left and reads the kernel's aggregates. `limits` are the receive-buffer
    /// limits in force (read by the caller, e.g. in the traced namespace).
    pub fn finish(mut self, limits: RmemLimits) -> TraceSummary {
        self.poll(Duration::ZERO, &mut |_| {});
        let mut s = TraceSummary {
            duration_us: self.started.elapsed().as_micros() as u64,
            capabilities: self.caps.clone(),
            limits,
            ..Default::default()
        };
        s.net_rx = self.net_rx();
        s.napi = self.napi();
        s.drops = self.drops();
        s.lost = self.lost();
        std::mem::take(&mut self.acc).finish(&mut s);
        s
    }

    fn net_rx(&self) -> Vec<NetRxCpu> {
        let (Some(hist), Some(stat)) = (self.ebpf.map("netrx_hist"), self.ebpf.map("netrx_stat"))
        else {
            return Vec::new();
        };
        let (Ok(hist), Ok(stat)) = (
            PerCpuArray::<_, u64>::try_from(hist),
            PerCpuArray::<_, NetRxRaw>::try_from(stat),
        ) else {
            return Vec::new();
        };
        let Ok(stats) = stat.get(&0, 0) else {
            return Vec::new();
        };
        let buckets: Vec<_> = hist.iter().filter_map(Result::ok).collect();
        stats
            .iter()
            .enumerate()
            .filter(|(_, st)| st.count > 0)
            .map(|(cpu, st)| {
                let mut c = NetRxCpu {
                    cpu: cpu as u32,
                    runs: st.count,
                    total_ns: st.sum_ns,
                    max_ns: st.max_ns,
                    max_at_wall_ns: self.decoder.wall(st.max_ts_ns),
                    ..Default::default()
                };
                for (i, per_cpu) in buckets.iter().enumerate() {
                    if let Some(n) = per_cpu.get(cpu).filter(|n| **n > 0) {
                        c.histogram.add(i, *n);
                    }
                }
                c
            })
            .collect()
    }

    fn napi(&self) -> NapiTotals {
        let mut t = NapiTotals::default();
        let Some(m) = self.ebpf.map("napi_stat") else {
            return t;
        };
        if let Ok(vals) = PerCpuArray::<_, NapiRaw>::try_from(m).and_then(|a| a.get(&0, 0)) {
            for v in vals.iter() {
                t.polls += v.polls;
                t.packets += v.work;
                t.budget_exhausted += v.budget_exhausted;
                t.max_work = t.max_work.max(v.max_work);
            }
        }
        t
    }

    fn drops(&self) -> Vec<DropCount> {
        let Some(m) = self.ebpf.map("drop_reasons") else {
            return Vec::new();
        };
        let Ok(h) = BpfHashMap::<_, u32, u64>::try_from(m) else {
            return Vec::new();
        };
        let mut v: Vec<DropCount> = h
            .iter()
            .filter_map(Result::ok)
            .map(|(code, count)| DropCount {
                reason: self.decoder.drop_reason(code),
                code,
                count,
                locations: Vec::new(),
            })
            .collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.count));
        v
    }

    fn lost(&self) -> Vec<LostEvents> {
        let sum = |name: &str| -> Vec<u64> {
            self.ebpf
                .map(name)
                .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
                .map(|a| {
                    (0..KIND_NAMES.len() as u32)
                        .map(|k| a.get(&k, 0).map(|v| v.iter().sum()).unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (seen, lost) = (sum("seen"), sum("lost"));
        (1..KIND_NAMES.len())
            .filter(|k| seen.get(*k).copied().unwrap_or(0) > 0)
            .map(|k| LostEvents {
                kind: KIND_NAMES[k].to_string(),
                seen: seen[k],
                lost: lost.get(k).copied().unwrap_or(0),
            })
            .collect()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.mounted_tracefs {
            let dst = std::ffi::CString::new(TRACEFS).expect("no NUL");
            // SAFETY: umount2 on the path we mounted; failure (busy) leaves it mounted, harmless.
            unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Tries fentry/fexit on the functions of [`FUNCTIONS`]; says plainly what the kernel refused.
fn attach_functions(ebpf: &mut Ebpf, btf: &Btf) -> FunctionTracing {
    let mut done = Vec::new();
    let mut refused = Vec::new();
    for (func, entry, exit) in FUNCTIONS {
        let r = (|| -> Result<(), String> {
            let p: &mut FEntry = ebpf
                .program_mut(entry)
                .ok_or("program missing")?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| err_text(&e))?;
            p.load(func, btf).map_err(|e| err_text(&e))?;
            p.attach().map_err(|e| err_text(&e))?;
            let p: &mut FExit = ebpf
                .program_mut(exit)
                .ok_or("program missing")?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| err_text(&e))?;
            p.load(func, btf).map_err(|e| err_text(&e))?;
            p.attach().map_err(|e| err_text(&e))?;
            Ok(())
        })();
        match r {
            Ok(()) => done.push(*func),
            Err(e) => refused.push(format!("{func}: {e}")),
        }
    }
    if done.is_empty() {
        FunctionTracing {
            available: false,
            detail: format!(
                "this kernel refuses function tracing (fentry), so tcp_collapse/tcp_prune_queue cannot be timed \
                 ({}); collapse and prune are judged from the TcpExt counters instead",
                refused.join("; ")
            ),
        }
    } else {
        let mut detail = format!("timing {}", done.join(", "));
        if !refused.is_empty() {
            detail += &format!(" (not {})", refused.join("; "));
        }
        FunctionTracing {
            available: true,
            detail,
        }
    }
}

/// `struct nb_netrx`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct NetRxRaw {
    count: u64,
    sum_ns: u64,
    max_ns: u64,
    max_ts_ns: u64,
}

/// `struct nb_napi`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct NapiRaw {
    polls: u64,
    work: u64,
    budget_exhausted: u64,
    max_work: u64,
}

// SAFETY: both are repr(C) structs of u64 with no padding; every bit pattern is valid.
unsafe impl aya::Pod for NetRxRaw {}
// SAFETY: as above.
unsafe impl aya::Pod for NapiRaw {}
