//! `netblame calc`: window, BDP, throughput ceiling and transfer time for any kernel version.

use crate::args;
use crate::render;
use netblame_core::diagnose::rank;
use netblame_core::json::JsonDoc;
use netblame_core::rules::buffers::{judge_model as judge, rule_text, Workload};
use netblame_core::rules::timeout::estimate;
use netblame_core::units::{format_duration, group_thousands};
use netblame_core::window::{self, RcvSettings, SocketRequest, WindowModel};
use netblame_core::{BitRate, Bytes, KernelVersion, BACKPORT_CAVEAT};
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Bandwidth-delay product of a path and the buffer sysctls that allow a window that large.
    Bdp {
        /// Path rate, decimal bits per second (100mbit, 10g).
        #[arg(long, value_parser = args::rate)]
        rate: BitRate,
        /// Round-trip time (30ms, 1.5s).
        #[arg(long, value_parser = args::rtt)]
        rtt: Duration,
        /// Kernel version whose window rule sizes the buffers (default: the running kernel).
        #[arg(long, value_parser = parse_kernel)]
        kernel: Option<KernelVersion>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Throughput ceiling of a window: window / RTT.
    Ceiling {
        /// Window in bytes (65535, 64k, 4MiB).
        #[arg(long, value_parser = args::size)]
        window: Bytes,
        /// Round-trip time (30ms).
        #[arg(long, value_parser = args::rtt)]
        rtt: Duration,
        #[arg(long)]
        json: bool,
    },
    /// The receive window a socket gets from SO_RCVBUF (or autotuning) on a kernel version,
    /// side by side with a comparison kernel.
    Window {
        /// SO_RCVBUF the application sets before connect; omit for an autotuned socket.
        #[arg(long, value_parser = args::size)]
        rcvbuf: Option<Bytes>,
        /// Kernel version (default: the running kernel, with this host's sysctls).
        #[arg(long, value_parser = parse_kernel)]
        kernel: Option<KernelVersion>,
        /// A second kernel version to compare with (upstream default sysctls).
        #[arg(long, value_parser = parse_kernel)]
        compare: Option<KernelVersion>,
        /// Round-trip time of the path, for the ceiling and the transfer time.
        #[arg(long, value_parser = args::rtt)]
        rtt: Option<Duration>,
        /// Transfer size, binary (10M = 10 MiB).
        #[arg(long, value_parser = args::size)]
        size: Option<Bytes>,
        /// The application's timeout for the transfer (30s).
        #[arg(long, value_parser = args::duration)]
        timeout: Option<Duration>,
        /// Link rate, if the path is slower than the window allows.
        #[arg(long, value_parser = args::rate)]
        rate: Option<BitRate>,
        /// MSS (bytes) for slow start and window quantization.
        #[arg(long, default_value_t = 1448)]
        mss: u64,
        /// Measured scaling ratio (skb len / truesize, 0..1), for kernels whose clamp follows it.
        #[arg(long)]
        ratio: Option<f64>,
        #[arg(long)]
        json: bool,
    },
}

fn parse_kernel(s: &str) -> Result<KernelVersion, String> {
    s.parse()
        .map_err(|e: netblame_core::kernel::KernelVersionError| e.to_string())
}

/// The kernel to model and its settings: the running one with this host's sysctls, or a named
/// version with upstream defaults.
fn kernel_and_settings(
    kernel: Option<KernelVersion>,
) -> anyhow::Result<(KernelVersion, RcvSettings, &'static str)> {
    let running = netblame_linux::sysctl::kernel_version();
    match (kernel, running) {
        (Some(k), Ok(r)) if k == r => {
            let s = netblame_linux::sysctl::rcv_settings(&r);
            Ok((r, s, "this host's sysctls"))
        }
        (Some(k), _) => {
            let s = RcvSettings::defaults_for(&k);
            Ok((k, s, "upstream default sysctls"))
        }
        (None, Ok(r)) => {
            let s = netblame_linux::sysctl::rcv_settings(&r);
            Ok((r, s, "this host's sysctls"))
        }
        (None, Err(e)) => {
            anyhow::bail!("cannot read the running kernel's version ({e}); name one with --kernel")
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Bdp {
            rate,
            rtt,
            kernel,
            json,
        } => bdp(rate, rtt, kernel, json),
        What::Ceiling { window, rtt, json } => ceiling(window, rtt, json),
        What::Window {
            rcvbuf,
            kernel,
            compare,
            rtt,
            size,
            timeout,
            rate,
            mss,
            ratio,
            json,
        } => {
            if let Some(r) = ratio {
                anyhow::ensure!(
                    r > 0.0 && r < 1.0,
                    "--ratio must be between 0 and 1 (got {r})"
                );
            }
            let workload = Workload {
                rtt,
                size: size.map(Bytes::get),
                timeout,
                link_bps: rate.map(BitRate::bits_per_second),
                mss,
            };
            window_cmd(rcvbuf, kernel, compare, &workload, ratio, json)
        }
    }
}

/// The JSON documents `calc` writes.
pub const JSON_DOCS: &[JsonDoc] = &[
    JsonDoc::of::<BdpOut>("calc-bdp", "netblame calc bdp --json"),
    JsonDoc::of::<CeilingOut>("calc-ceiling", "netblame calc ceiling --json"),
    JsonDoc::of::<WindowOut>("calc-window", "netblame calc window --json"),
];

#[derive(Serialize, schemars::JsonSchema)]
struct BdpOut {
    rate_bits_per_second: f64,
    rtt_us: u64,
    bdp_bytes: u64,
    window_needed_bytes: u64,
    kernel: String,
    window_fraction: f64,
    buffer_bytes: u64,
    sysctls: Vec<(String, String)>,
}

fn bdp(
    rate: BitRate,
    rtt: Duration,
    kernel: Option<KernelVersion>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (k, _, _) = kernel_and_settings(kernel)?;
    let bdp = window::bdp_bytes(rate.bits_per_second(), rtt);
    let plan = window::buffers_for_window(&k, bdp);
    let triple = |t: [u64; 3]| format!("{} {} {}", t[0], t[1], t[2]);
    let sysctls = vec![
        ("net.core.rmem_max".to_string(), plan.rmem_max.to_string()),
        ("net.core.wmem_max".to_string(), plan.wmem_max.to_string()),
        ("net.ipv4.tcp_rmem".to_string(), triple(plan.tcp_rmem)),
        ("net.ipv4.tcp_wmem".to_string(), triple(plan.tcp_wmem)),
    ];
    if json {
        render::print_json(&BdpOut {
            rate_bits_per_second: rate.bits_per_second(),
            rtt_us: rtt.as_micros() as u64,
            bdp_bytes: bdp,
            window_needed_bytes: bdp,
            kernel: k.to_string(),
            window_fraction: plan.window_fraction,
            buffer_bytes: plan.buffer_bytes,
            sysctls,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "BDP = {} x {} / 8 = {} bytes ({})",
        rate,
        format_duration(rtt),
        group_thousands(bdp),
        Bytes(bdp)
    );
    println!(
        "window needed: {} bytes to keep the path full",
        group_thousands(bdp)
    );
    println!(
        "buffer needed on {k}: window / {:.2} (the share of buffer that becomes window) = {} bytes, rounded up to {}",
        plan.window_fraction,
        group_thousands((bdp as f64 / plan.window_fraction).ceil() as u64),
        Bytes(plan.buffer_bytes)
    );
    println!("\nsysctls that allow it (both ends; the receiver's rmem matters most):");
    for (name, value) in &sysctls {
        println!("  {name} = {value}");
    }
    println!("\nApplications must not set SO_RCVBUF/SO_SNDBUF, or autotuning stops short of this.");
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize, schemars::JsonSchema)]
struct CeilingOut {
    window_bytes: u64,
    rtt_us: u64,
    bits_per_second: f64,
}

fn ceiling(window: Bytes, rtt: Duration, json: bool) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!rtt.is_zero(), "--rtt must be more than zero");
    let bps = window::ceiling_bps(window.get(), rtt);
    if json {
        render::print_json(&CeilingOut {
            window_bytes: window.get(),
            rtt_us: rtt.as_micros() as u64,
            bits_per_second: bps,
        })?;
    } else {
        println!(
            "{} bytes x 8 / {} = {} ceiling (one connection, whatever the link rate)",
            group_thousands(window.get()),
            format_duration(rtt),
            BitRate(bps)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize, schemars::JsonSchema)]
struct KernelColumn {
    settings: &'static str,
    #[serde(flatten)]
    model: WindowModel,
    #[serde(skip_serializing_if = "Option::is_none")]
    ceiling_bits_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_time_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    misses_timeout: Option<bool>,
    known_issues: Vec<&'static str>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct WindowOut {
    so_rcvbuf_bytes: Option<u64>,
    kernels: Vec<KernelColumn>,
    findings: Vec<netblame_core::Finding>,
    caveat: &'static str,
}

fn column(
    k: &KernelVersion,
    s: &RcvSettings,
    source: &'static str,
    rcvbuf: Option<Bytes>,
    w: &Workload,
    ratio: Option<f64>,
) -> KernelColumn {
    let model = window::model(
        k,
        s,
        &SocketRequest {
            so_rcvbuf: rcvbuf.map(Bytes::get),
            mss: w.mss,
            measured_ratio: ratio,
        },
    );
    let est = estimate(&model, w);
    KernelColumn {
        settings: source,
        ceiling_bits_per_second: w
            .rtt
            .map(|r| window::ceiling_bps(model.window_clamp_bytes, r)),
        transfer_time_s: est.as_ref().map(|e| e.total.as_secs_f64()),
        misses_timeout: est.as_ref().and_then(|e| w.timeout.map(|t| e.total > t)),
        known_issues: netblame_core::known_issues::affecting(k)
            .map(|i| i.spec.id)
            .collect(),
        model,
    }
}

fn window_cmd(
    rcvbuf: Option<Bytes>,
    kernel: Option<KernelVersion>,
    compare: Option<KernelVersion>,
    w: &Workload,
    ratio: Option<f64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (k, s, source) = kernel_and_settings(kernel)?;
    let mut columns = vec![(k.clone(), column(&k, &s, source, rcvbuf, w, ratio))];
    if let Some(c) = compare {
        let cs = RcvSettings::defaults_for(&c);
        columns.push((
            c.clone(),
            column(&c, &cs, "upstream default sysctls", rcvbuf, w, ratio),
        ));
    }
    let mut findings = judge(&k, &columns[0].1.model, w);
    rank(&mut findings);
    if json {
        render::print_json(&WindowOut {
            so_rcvbuf_bytes: rcvbuf.map(Bytes::get),
            kernels: columns.into_iter().map(|(_, c)| c).collect(),
            findings,
            caveat: BACKPORT_CAVEAT,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    match rcvbuf {
        Some(v) => println!(
            "SO_RCVBUF = {} set before connect (autotuning off)\n",
            Bytes(v.get())
        ),
        None => println!("no SO_RCVBUF: autotuned socket\n"),
    }
    let mut header = vec!["".to_string()];
    header.extend(columns.iter().map(|(k, _)| format!("kernel {k}")));
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&KernelColumn) -> String| {
        let mut r = vec![label.to_string()];
        r.extend(columns.iter().map(|(_, c)| f(c)));
        rows.push(r);
    };
    row("settings", &|c| c.settings.to_string());
    row("sk_rcvbuf", &|c| {
        format!("{} B", group_thousands(c.model.sk_rcvbuf_bytes))
    });
    row("window rule", &|c| rule_text(&c.model));
    row("initial window", &|c| {
        format!("{} B", group_thousands(c.model.initial_window_bytes))
    });
    row("window clamp (life)", &|c| {
        let suffix = if c.model.clamp_fixed_at_initial {
            " (stuck at initial ratio)"
        } else {
            ""
        };
        format!("{} B{suffix}", group_thousands(c.model.window_clamp_bytes))
    });
    row("rcv_wscale", &|c| c.model.rcv_wscale.to_string());
    if w.rtt.is_some() {
        row("ceiling", &|c| {
            c.ceiling_bits_per_second
                .map(|b| BitRate(b).to_string())
                .unwrap_or_default()
        });
    }
    if w.size.is_some() && w.rtt.is_some() {
        row("transfer time", &|c| {
            c.transfer_time_s
                .map(|t| format_duration(Duration::from_secs_f64(t)))
                .unwrap_or_default()
        });
    }
    if w.timeout.is_some() && w.size.is_some() && w.rtt.is_some() {
        row("timeout", &|c| match c.misses_timeout {
            Some(true) => "MISSED".to_string(),
            Some(false) => "made".to_string(),
            None => String::new(),
        });
    }
    row("known issues", &|c| {
        if c.known_issues.is_empty() {
            "none".into()
        } else {
            c.known_issues.join(", ")
        }
    });
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    print!("{}", render::table(&header_refs, &rows));
    println!("\n({BACKPORT_CAVEAT})");
    if !findings.is_empty() {
        println!("\nFindings for kernel {k}:\n");
        print!("{}", render::findings(&findings));
    }
    Ok(ExitCode::SUCCESS)
}
