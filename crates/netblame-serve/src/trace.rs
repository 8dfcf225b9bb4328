//! Trace histograms, when tracing is available and asked for (`[sources] trace = true`):
//! netblame-trace's eBPF programs run in rounds of one scan interval on their own thread, and
//! each round's kernel aggregates are added to running totals — the NET_RX softirq time
//! histogram (all CPUs), drops by the kernel's reason names, NAPI polls and budget exhaustion,
//! resets. Tracepoints see the whole host, whatever `--netns` says.
//!
//! Where tracing is unavailable (not root, no BTF, a kernel that refuses the programs) the
//! thread records why once (`netblame_trace_available 0`, the reason in `/findings`' `skipped`)
//! and retries every minute.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Log2 buckets of the NET_RX histogram kept (bucket i < 2^i us; 2^25 us = 33 s).
pub const NET_RX_BUCKETS: usize = 26;
/// Most drop reasons labelled (the kernel's enum has about 100; the rest are `other`).
pub const MAX_REASONS: usize = 64;

/// Totals since the agent started.
#[derive(Debug, Default, Clone)]
pub struct TraceTotals {
    /// The `trace` source is on (nothing is exported when off).
    pub enabled: bool,
    /// `Some(reason)` while tracing is unavailable.
    pub unavailable: Option<String>,
    pub rounds: u64,
    pub net_rx_buckets: Vec<u64>,
    pub net_rx_runs: u64,
    pub net_rx_ns: u64,
    pub drops: BTreeMap<String, u64>,
    pub napi_polls: u64,
    pub napi_budget_exhausted: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
}

impl TraceTotals {
    fn add(&mut self, s: &netblame_core::observe::trace::TraceSummary) {
        self.unavailable = None;
        self.rounds += 1;
        if self.net_rx_buckets.len() < NET_RX_BUCKETS {
            self.net_rx_buckets.resize(NET_RX_BUCKETS, 0);
        }
        for c in &s.net_rx {
            self.net_rx_runs += c.runs;
            self.net_rx_ns += c.total_ns;
            for (i, n) in c.histogram.buckets.iter().enumerate() {
                self.net_rx_buckets[i.min(NET_RX_BUCKETS - 1)] += n;
            }
        }
        for d in &s.drops {
            let reason = if self.drops.contains_key(&d.reason) || self.drops.len() < MAX_REASONS {
                d.reason.clone()
            } else {
                "other".to_string()
            };
            *self.drops.entry(reason).or_default() += d.count;
        }
        self.napi_polls += s.napi.polls;
        self.napi_budget_exhausted += s.napi.budget_exhausted;
        self.resets_sent += s.resets_sent;
        self.resets_received += s.resets_received;
    }
}

/// The shared totals.
pub type Shared = Arc<Mutex<TraceTotals>>;

/// The tracing thread; stopped and joined on drop.
pub struct Tracing {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tracing {
    /// Starts tracing in rounds of `round` (at least 1 s), adding each round to `totals`.
    pub fn start(totals: Shared, round: Duration) -> Tracing {
        totals.lock().unwrap_or_else(|e| e.into_inner()).enabled = true;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let round = round.max(Duration::from_secs(1));
        let thread = std::thread::Builder::new()
            .name("serve-trace".into())
            .spawn(move || run(totals, round, s))
            .ok();
        Tracing { stop, thread }
    }
}

impl Tracing {
    /// Stops the thread (the round in progress is dropped) and stops exporting.
    pub fn stop(mut self, totals: &Shared) {
        self.halt();
        totals.lock().unwrap_or_else(|e| e.into_inner()).enabled = false;
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(totals: Shared, round: Duration, stop: Arc<AtomicBool>) {
    let cfg = netblame_trace::Config {
        // fentry on tcp_collapse is not needed for the histograms.
        function_tracing: false,
        ..Default::default()
    };
    while !stop.load(Ordering::Relaxed) {
        let mut tracer = match netblame_trace::Tracer::start(&cfg) {
            Ok(t) => t,
            Err(e) => {
                totals.lock().unwrap_or_else(|e| e.into_inner()).unavailable = Some(e.to_string());
                let end = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        let end = Instant::now() + round;
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            tracer.poll(Duration::from_millis(200), &mut |_| {});
        }
        let summary = tracer.finish(netblame_trace::rmem_limits());
        totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&summary);
    }
}

/// Encodes the totals (registered only when the `trace` source is on).
#[derive(Debug)]
pub struct TraceCollector(pub Shared);

impl Collector for TraceCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !t.enabled {
            return Ok(());
        }
        let g = ConstGauge::new(t.unavailable.is_none() as i64);
        g.encode(enc.encode_descriptor(
            "netblame_trace_available",
            "1 when the eBPF tracer runs, 0 when tracing is unavailable here (the reason is in /findings)",
            None,
            MetricType::Gauge,
        )?)?;
        if t.rounds == 0 {
            return Ok(());
        }
        // Log2 buckets: bucket i holds runs shorter than 2^i us (bucket 0: under 1 us).
        let mut buckets: Vec<(f64, u64)> = t
            .net_rx_buckets
            .iter()
            .enumerate()
            .map(|(i, n)| ((1u64 << i) as f64 / 1e6, *n))
            .collect();
        if let Some(last) = buckets.last_mut() {
            last.0 = f64::MAX;
        }
        let mut m = enc.encode_descriptor(
            "netblame_trace_net_rx_softirq",
            "Duration of NET_RX softirq runs, all CPUs (irq:softirq_entry/exit), log2 buckets",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            t.net_rx_ns as f64 / 1e9,
            t.net_rx_runs,
            &buckets,
            None,
        )?;
        let mut m = enc.encode_descriptor(
            "netblame_trace_drops",
            "Packets freed as drops (skb:kfree_skb) by the kernel's drop reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in &t.drops {
            ConstCounter::new(*n).encode(m.encode_family(&vec![("reason", reason.as_str())])?)?;
        }
        for (name, help, v) in [
            (
                "netblame_trace_napi_polls",
                "NAPI polls (napi:napi_poll)",
                t.napi_polls,
            ),
            (
                "netblame_trace_napi_budget_exhausted",
                "NAPI polls that used their whole budget (more work was waiting)",
                t.napi_budget_exhausted,
            ),
            (
                "netblame_trace_resets_sent",
                "TCP resets sent (tcp:tcp_send_reset)",
                t.resets_sent,
            ),
            (
                "netblame_trace_resets_received",
                "TCP resets received (tcp:tcp_receive_reset)",
                t.resets_received,
            ),
        ] {
            ConstCounter::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        Ok(())
    }
}
