//! A lab: two namespaces (client, server) joined only through the emulator, its settings, its
//! state directory, and its teardown. Dropping a [`Lab`] removes everything it created; labs
//! whose process died are found and removed by [`gc`].

use crate::emulator::{default_queue_bytes, Forwarder, LinkConfig, LinkStats};
use crate::netns;
use crate::tun::{self, TunConfig, TunMode};
use netblame_linux::host::procfs::{parse_dev, read_proc_net};
use serde::{Deserialize, Serialize};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where labs keep their state (`/run/netblame/labs/NAME`).
pub const STATE_ROOT: &str = "/run/netblame/labs";
/// The client's address (benchmarking range, RFC 2544).
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The server's address.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The TUN device name on each side (each lives in its own namespace).
pub const TUN_NAME: &str = "nbtun0";
/// Prefix of every namespace a lab creates.
pub const NETNS_PREFIX: &str = "nbl-";

/// Errors of lab management.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab name '{0}' is invalid: use 1 to 24 letters, digits, '-' or '_'")]
    BadName(String),
    #[error("lab '{0}' is already running (pid {1}); `netblame lab down {0}` first")]
    Running(String, i32),
    #[error("no lab named '{0}' (see `netblame lab list`)")]
    NotFound(String),
    #[error(
        "lab '{0}' is not running: its process {1} died; `netblame lab gc` removes what it left"
    )]
    Dead(String, i32),
    #[error("the netem backend needs the kernel's sch_netem, which this kernel lacks ({0}); use the default userspace emulator (--backend tun)")]
    NoNetem(String),
    #[error("this kernel has sch_netem, but netblame's netem backend is not built yet; use the default userspace emulator (--backend tun)")]
    NetemNotBuilt,
    #[error("the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for namespaces and TUN devices); run with sudo")]
    NotRoot,
    #[error("{0}")]
    BadSysctl(String),
    #[error("the lab was cancelled (interrupted)")]
    Cancelled,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Which emulator joins the two namespaces.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// netblame's userspace emulator over two TUN devices (works everywhere TUN does).
    #[default]
    Tun,
    /// The kernel's netem qdisc (only where the kernel has it).
    Netem,
}

/// Everything that defines a lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LabConfig {
    pub name: String,
    /// Client -> server.
    pub uplink: LinkConfig,
    /// Server -> client.
    pub downlink: LinkConfig,
    /// Sysctls set inside the client namespace only.
    pub client_sysctls: Vec<(String, String)>,
    /// Sysctls set inside the server namespace only.
    pub server_sysctls: Vec<(String, String)>,
    pub mtu: u32,
    pub txqueuelen: u32,
    pub backend: Backend,
    /// Ask the kernel for TUN offload (TCP super-packets); the lab falls back to one packet per
    /// read when it is refused. `lab list --json` shows the mode in use (`counters.tun_mode`).
    #[serde(default = "default_offload")]
    pub offload: bool,
}

fn default_offload() -> bool {
    true
}

impl LabConfig {
    /// A symmetric lab: half the RTT each way, the same rate and loss both ways, a queue of one
    /// BDP (at least 100 packets).
    pub fn symmetric(name: &str, rtt: Duration, rate_bps: Option<f64>) -> LabConfig {
        let mut link = LinkConfig::delay(rtt / 2);
        link.rate_bps = rate_bps;
        link.queue_bytes = default_queue_bytes(rate_bps, rtt);
        let mut down = link.clone();
        down.seed = 2;
        LabConfig {
            name: name.to_string(),
            uplink: link,
            downlink: down,
            client_sysctls: Vec::new(),
            server_sysctls: Vec::new(),
            mtu: 1500,
            txqueuelen: 10_000,
            backend: Backend::Tun,
            offload: true,
        }
    }

    /// The configured round-trip time (both one-way delays).
    pub fn rtt(&self) -> Duration {
        self.uplink.delay + self.downlink.delay
    }
}

/// Checks a lab name: it becomes part of namespace and directory names.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LabError::BadName(name.to_string()))
    }
}

/// Namespace of one side of lab `name`.
pub fn netns_name(name: &str, side: Side) -> String {
    format!("{NETNS_PREFIX}{name}-{}", side.letter())
}

/// One side of a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    fn letter(self) -> &'static str {
        match self {
            Side::Client => "c",
            Side::Server => "s",
        }
    }
    /// This side's address.
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Side::Client => CLIENT_ADDR,
            Side::Server => SERVER_ADDR,
        }
    }
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Side, String> {
        match s {
            "client" | "c" => Ok(Side::Client),
            "server" | "s" => Ok(Side::Server),
            _ => Err(format!("'{s}' is not a side: use client or server")),
        }
    }
}

/// What `/run/netblame/labs/NAME/state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LabState {
    pub name: String,
    /// The process that owns the lab (the forwarder).
    pub pid: i32,
    /// That process's start time (clock ticks since boot), to survive pid reuse.
    pub pid_start: u64,
    pub client_netns: String,
    pub server_netns: String,
    pub client_addr: Ipv4Addr,
    pub server_addr: Ipv4Addr,
    pub config: LabConfig,
    /// Seconds since the epoch.
    pub started_unix: u64,
    /// False while the lab is being built.
    pub ready: bool,
}

/// Emulator and kernel counters of a lab.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LabCounters {
    /// How the emulator exchanges packets with the two TUN devices: `offload` (GSO
    /// super-packets) or `plain` (one packet per read/write).
    #[serde(default)]
    pub tun_mode: TunMode,
    /// Client -> server.
    pub uplink: LinkStats,
    /// Server -> client.
    pub downlink: LinkStats,
    /// Packets the client's kernel dropped at the TUN device (its queue to the emulator full).
    pub client_tun_tx_dropped: u64,
    /// Packets the server's kernel dropped at the TUN device.
    pub server_tun_tx_dropped: u64,
}

/// The state directory of a lab.
pub fn state_dir(name: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(name)
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Start time of a running process (field 22 of /proc/PID/stat), `None` when it does not exist
/// or is a zombie (a killed lab process whose parent has not reaped it yet is dead).
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl LabState {
    /// True when the owning process still runs (same pid and start time).
    pub fn alive(&self) -> bool {
        process_start(self.pid) == Some(self.pid_start)
    }

    /// Reads a lab's state file.
    pub fn load(name: &str) -> Result<LabState, LabError> {
        validate_name(name)?;
        let p = state_dir(name).join("state.json");
        let text = std::fs::read_to_string(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                LabError::NotFound(name.to_string())
            } else {
                LabError::Io(io::Error::new(
                    e.kind(),
                    format!("reading {}: {e}", p.display()),
                ))
            }
        })?;
        serde_json::from_str(&text)
            .map_err(|e| LabError::Io(io::Error::other(format!("{} is corrupt: {e}", p.display()))))
    }

    fn save(&self) -> io::Result<()> {
        let dir = state_dir(&self.name);
        let tmp = dir.join("state.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(io::Error::other)?,
        )?;
        std::fs::rename(tmp, dir.join("state.json"))
    }

    /// The last counters the lab's process published, if any.
    pub fn counters(&self) -> Option<LabCounters> {
        let text = std::fs::read_to_string(state_dir(&self.name).join("counters.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Every lab with a state directory.
pub fn list() -> Vec<LabState> {
    let mut out: Vec<LabState> = std::fs::read_dir(STATE_ROOT)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| LabState::load(&n).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What [`gc`] removed.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct GcReport {
    /// Labs whose process had died.
    pub labs: Vec<String>,
    /// Namespaces removed.
    pub namespaces: Vec<String>,
    /// Processes killed because they ran in those namespaces.
    pub processes: Vec<i32>,
    /// Records of labs gone earlier (see [`gone_list`]) that this gc forgot.
    pub forgotten: Vec<String>,
}

/// What [`remove_leftovers`] removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Removed {
    pub namespaces: Vec<String>,
    /// Processes that still ran inside the lab's namespaces (killed).
    pub processes: Vec<i32>,
}

/// Removes a lab's processes, namespaces and state directory (its own process must be gone or
/// stopping): everything that runs in a lab's namespaces belongs to the lab and is killed.
pub fn remove_leftovers(name: &str) -> io::Result<Removed> {
    let mut removed = Removed::default();
    let mut first_err = None;
    for side in [Side::Client, Side::Server] {
        let ns = netns_name(name, side);
        if netns::exists(&ns) {
            removed.processes.extend(netns::kill_all(&ns));
            match netns::delete(&ns) {
                Ok(()) => removed.namespaces.push(ns),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
    }
    let dir = state_dir(name);
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            first_err = first_err.or(Some(e));
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Removes leftovers of labs whose process died: their namespaces and state directories, and
/// `nbl-*` namespaces that no live lab owns. A lab being built owns its namespaces from the
/// moment its state directory exists, so a concurrent `up` is never torn down.
pub fn gc() -> io::Result<GcReport> {
    let _lock = GcLock::take()?;
    let mut report = GcReport::default();
    let mut first_err: Option<io::Error> = None;
    if let Ok(rd) = std::fs::read_dir(STATE_ROOT) {
        for e in rd.filter_map(|e| e.ok()) {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let alive = match LabState::load(&name) {
                Ok(s) => s.alive(),
                // A directory without a readable state: being created right now (give it a
                // few seconds) or garbage.
                Err(_) => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age < Duration::from_secs(10)),
            };
            if !alive {
                let pid = LabState::load(&name).map(|s| s.pid).unwrap_or(0);
                match remove_leftovers(&name) {
                    Ok(r) => {
                        if gone(&name).is_none() {
                            record_gone(&Gone::new(
                                &name,
                                pid,
                                format!("its process {pid} died without tearing the lab down"),
                                &r,
                            ));
                        }
                        report.namespaces.extend(r.namespaces);
                        report.processes.extend(r.processes);
                    }
                    Err(e) => first_err = first_err.or(Some(e)),
                }
                report.labs.push(name);
            }
        }
    }
    let live: Vec<String> = list()
        .into_iter()
        .filter(|s| s.alive())
        .map(|s| s.name)
        .collect();
    for ns in netns::list() {
        let Some(rest) = ns.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(lab) = rest.strip_suffix("-c").or_else(|| rest.strip_suffix("-s")) else {
            continue;
        };
        if !live.iter().any(|l| l == lab) && !state_dir(lab).exists() {
            report.processes.extend(netns::kill_all(&ns));
            match netns::delete(&ns) {
                Ok(()) => report.namespaces.push(ns),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Where records of labs that went away without `lab down` are kept (one JSON file per lab).
pub const GONE_ROOT: &str = "/run/netblame/gone";

/// Why a lab went away without `lab down`, and what was removed after it: `lab list` shows it
/// until `lab gc` (or a new `lab up` of the same name) forgets it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Gone {
    pub name: String,
    /// The lab's process (the emulator).
    pub pid: i32,
    pub why: String,
    /// Seconds since the epoch.
    pub at_unix: u64,
    pub removed: Removed,
}

impl Gone {
    /// A record of lab `name` gone now.
    pub fn new(name: &str, pid: i32, why: String, removed: &Removed) -> Gone {
        Gone {
            name: name.to_string(),
            pid,
            why,
            at_unix: now_unix(),
            removed: removed.clone(),
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn gone_path(name: &str) -> PathBuf {
    Path::new(GONE_ROOT).join(format!("{name}.json"))
}

/// Records why a lab went away (best effort: a record is advice, not state).
pub fn record_gone(g: &Gone) {
    if std::fs::create_dir_all(GONE_ROOT).is_ok() {
        if let Ok(text) = serde_json::to_vec_pretty(g) {
            let _ = std::fs::write(gone_path(&g.name), text);
        }
    }
}

/// The record of lab `name`, if it went away without `lab down`.
pub fn gone(name: &str) -> Option<Gone> {
    validate_name(name).ok()?;
    serde_json::from_slice(&std::fs::read(gone_path(name)).ok()?).ok()
}

/// Every lab that went away without `lab down` and is not forgotten yet.
pub fn gone_list() -> Vec<Gone> {
    let mut out: Vec<Gone> = std::fs::read_dir(GONE_ROOT)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a: &Gone, b| a.name.cmp(&b.name));
    out
}

/// Forgets the record of lab `name`; true when there was one.
pub fn forget_gone(name: &str) -> bool {
    validate_name(name).is_ok() && std::fs::remove_file(gone_path(name)).is_ok()
}

/// An exclusive `flock` on `/run/netblame/labs.lock`: one gc at a time across processes.
pub(crate) struct GcLock {
    _file: std::fs::File,
}

impl GcLock {
    pub(crate) fn take() -> io::Result<GcLock> {
        use std::os::fd::AsRawFd;
        let root = Path::new(STATE_ROOT);
        let parent = root.parent().unwrap_or(root);
        std::fs::create_dir_all(parent)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(parent.join("labs.lock"))?;
        // SAFETY: flock on an fd we own; released when the file closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(GcLock { _file: f })
    }
}

static CANCELLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every later or in-progress [`Lab::up`] of this process fail before its next step (used
/// on Ctrl-C, before removing the labs).
pub fn cancel_all() {
    CANCELLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn check_cancelled() -> Result<(), LabError> {
    if CANCELLED.load(std::sync::atomic::Ordering::SeqCst) {
        Err(LabError::Cancelled)
    } else {
        Ok(())
    }
}

/// Removes every lab owned by process `pid` (used by a signal handler on Ctrl-C).
pub fn remove_labs_of(pid: i32) {
    for s in list() {
        if s.pid == pid {
            let _ = remove_leftovers(&s.name);
        }
    }
}

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    pub config: LabConfig,
    forwarder: Option<Forwarder>,
    owns_state: bool,
    torn_down: bool,
}

impl Lab {
    /// Builds a lab in this process: state directory, namespaces, sysctls, TUN devices and the
    /// emulator threads. On any error, what was built is removed again.
    pub fn up(config: LabConfig) -> Result<Lab, LabError> {
        validate_name(&config.name)?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        if config.backend == Backend::Netem {
            return Err(match netem_available() {
                Err(why) => LabError::NoNetem(why),
                Ok(()) => LabError::NetemNotBuilt,
            });
        }
        for (k, _) in config.client_sysctls.iter().chain(&config.server_sysctls) {
            netns::check_namespaced_sysctl(k).map_err(LabError::BadSysctl)?;
        }
        check_cancelled()?;
        let name = config.name.clone();
        if let Ok(existing) = LabState::load(&name) {
            if existing.alive() {
                return Err(LabError::Running(name, existing.pid));
            }
            remove_leftovers(&name)?;
        }
        forget_gone(&name);
        // The state directory comes first: from then on gc knows who owns the namespaces.
        let dir = state_dir(&name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
        let pid = std::process::id() as i32;
        let mut state = LabState {
            name: name.clone(),
            pid,
            pid_start: process_start(pid).unwrap_or(0),
            client_netns: netns_name(&name, Side::Client),
            server_netns: netns_name(&name, Side::Server),
            client_addr: CLIENT_ADDR,
            server_addr: SERVER_ADDR,
            config: config.clone(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ready: false,
        };
        state.save()?;
        let mut lab = Lab {
            config,
            forwarder: None,
            owns_state: true,
            torn_down: false,
        };
        lab.build()?;
        state.ready = true;
        state.save()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        let c = &self.config;
        let (cns, sns) = (self.netns(Side::Client), self.netns(Side::Server));
        check_cancelled()?;
        netns::create(&cns)?;
        check_cancelled()?;
        netns::create(&sns)?;
        for (ns, list) in [(&cns, &c.client_sysctls), (&sns, &c.server_sysctls)] {
            for (k, v) in list {
                netns::set_sysctl(ns, k, v)?;
            }
        }
        let tun_cfg = |side: Side, offload: bool| TunConfig {
            name: TUN_NAME.to_string(),
            local: side.addr(),
            peer: side.peer().addr(),
            mtu: c.mtu,
            txqueuelen: c.txqueuelen,
            offload,
        };
        check_cancelled()?;
        let mut ct = tun::open_in(&cns, &tun_cfg(Side::Client, c.offload))?;
        let mut st = tun::open_in(&sns, &tun_cfg(Side::Server, ct.mode == TunMode::Offload))?;
        if ct.mode != st.mode {
            // Offload granted on one side only: both plain (frames must match). Closing a
            // device removes it, with its address and route.
            drop(ct);
            ct = tun::open_in(&cns, &tun_cfg(Side::Client, false))?;
            drop(st);
            st = tun::open_in(&sns, &tun_cfg(Side::Server, false))?;
        }
        check_cancelled()?;
        self.forwarder = Some(Forwarder::start(ct, st, &c.uplink, &c.downlink)?);
        Ok(())
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Namespace of one side.
    pub fn netns(&self, side: Side) -> String {
        netns_name(&self.config.name, side)
    }

    /// Emulator counters, plus the kernel's drops at each TUN device.
    pub fn counters(&self) -> LabCounters {
        let (up, down) = match &self.forwarder {
            Some(f) => (f.uplink.snapshot(), f.downlink.snapshot()),
            None => Default::default(),
        };
        LabCounters {
            tun_mode: self.forwarder.as_ref().map(|f| f.mode).unwrap_or_default(),
            uplink: up,
            downlink: down,
            client_tun_tx_dropped: tun_tx_dropped(&self.netns(Side::Client)).unwrap_or(0),
            server_tun_tx_dropped: tun_tx_dropped(&self.netns(Side::Server)).unwrap_or(0),
        }
    }

    /// Writes the counters where `netblame lab list` finds them.
    pub fn publish_counters(&self) -> io::Result<()> {
        let dir = state_dir(&self.config.name);
        let tmp = dir.join("counters.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&self.counters()).map_err(io::Error::other)?,
        )?;
        std::fs::rename(tmp, dir.join("counters.json"))
    }

    /// Stops the emulator and removes namespaces and state. Also done on drop.
    pub fn down(mut self) -> io::Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> io::Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        if let Some(f) = self.forwarder.take() {
            f.stop();
        }
        if self.owns_state {
            remove_leftovers(&self.config.name)?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// `tx_dropped` of the lab's TUN device in namespace `ns` (packets the kernel could not queue
/// for the emulator), from that namespace's `/proc/net/dev`.
pub fn tun_tx_dropped(ns: &str) -> Option<u64> {
    let text = netns::run_in(ns, || read_proc_net("dev")).ok()?;
    parse_dev(&text)
        .into_iter()
        .find(|d| d.device == TUN_NAME)
        .map(|d| d.tx_dropped)
}

/// `Ok` when this kernel has sch_netem loaded; else why not, in words.
pub fn netem_available() -> Result<(), String> {
    if Path::new("/sys/module/sch_netem").exists() {
        return Ok(());
    }
    let release = netblame_linux::sysctl::read("kernel.osrelease").unwrap_or_default();
    let ko = Path::new("/lib/modules")
        .join(release.trim())
        .join("kernel/net/sched");
    let has_module_file = std::fs::read_dir(&ko)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("sch_netem"))
        })
        .unwrap_or(false);
    Err(if has_module_file {
        "sch_netem exists as a module but is not loaded: `modprobe sch_netem`".to_string()
    } else {
        format!(
            "no /sys/module/sch_netem and no sch_netem module under {}",
            ko.display()
        )
    })
}
