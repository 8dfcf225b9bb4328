//! netblame-trace: kernel evidence from eBPF programs on tracepoints.
//!
//! NET_RX softirq time per CPU (`irq:softirq_entry/exit`, the log2 histogram of seed 001),
//! NAPI work against budget (`napi:napi_poll`), drops by reason with the kernel's own reason
//! names (`skb:kfree_skb`, names read from `enum skb_drop_reason` in the kernel's BTF),
//! retransmissions and resets per connection, state changes (connect times), receive-buffer
//! autotuning steps (`tcp:tcp_rcvbuf_grow`, `tcp:tcp_rcv_space_adjust` where present), sampled
//! `tcp:tcp_probe`, and — where the kernel allows function tracing — the duration of
//! `tcp_collapse`/`tcp_prune_queue` (fentry). What is absent on the running kernel is listed in
//! [`TraceCapabilities`](netblame_core::observe::trace::TraceCapabilities), never silently
//! skipped. The events become core observation types; the core decides what they mean
//! (`netblame_core::rules::kernel_events`).
//!
//! # Why aya, and why the object is committed
//!
//! The loader is [aya](https://aya-rs.dev), pure Rust: no libbpf, libelf or zlib to build or link,
//! so `cargo build` on a fresh machine needs nothing beyond Rust (libbpf-rs would build
//! libbpf-sys from C and need a C toolchain and libelf headers). aya does CO-RE relocation against
//! `/sys/kernel/btf/vmlinux` itself.
//!
//! The programs are C (`bpf/netblame.bpf.c`), compiled by clang into one CO-RE object that is
//! committed next to its source (`bpf/netblame.bpf.o`), the way Cilium's bpf2go projects do: the
//! README's `cargo run` and `.ci/run` need no clang. `bpf/build.sh` rebuilds it; `.ci/run` runs
//! `bpf/build.sh --check`, which rebuilds into a temp dir and fails when the committed object
//! differs. The build is reproducible byte for byte for one clang version (no absolute paths:
//! `-fdebug-prefix-map`, DWARF stripped, `.BTF` kept); `bpf/clang.version` pins the version
//! that built the committed object, and the check compares only with that version.
//!
//! Kernel structs are declared locally as CO-RE "flavors" (`sock___nb`, ...) instead of a
//! generated `vmlinux.h`, so the source does not depend on the build machine's kernel.

pub mod btf;
pub mod kallsyms;
pub mod raw;
pub mod tracer;

pub use tracer::{preflight, Config, TraceError, Tracer};

use netblame_core::observe::trace::RmemLimits;

/// The receive-buffer limits of the calling thread's network namespace (0 where unreadable).
pub fn rmem_limits() -> RmemLimits {
    let ints = |name| netblame_linux::sysctl::read_ints(name).unwrap_or_default();
    let rmem = ints("net.ipv4.tcp_rmem");
    let get = |i: usize| rmem.get(i).copied().unwrap_or(0).max(0) as u64;
    RmemLimits {
        tcp_rmem: [get(0), get(1), get(2)],
        rmem_max: ints("net.core.rmem_max")
            .first()
            .copied()
            .unwrap_or(0)
            .max(0) as u64,
    }
}

/// The receive-buffer limits of the network namespace at `netns` (a `/run/netns/NAME` or
/// `/proc/PID/ns/net` path), read from a thread that joins it.
pub fn rmem_limits_of(netns: &std::path::Path) -> std::io::Result<RmemLimits> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(netns)?;
    std::thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd moves only this short-lived thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(rmem_limits())
    })
    .join()
    .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}
