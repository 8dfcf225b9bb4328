//! Readers that keep the window small, through the real emulator: a reader that paces itself
//! (autotuned buffers with room to grow) is the application, and a reader burning a whole core
//! is its CPU; neither is "raise tcp_rmem" (netblame-core's `rules::receiver`).

use netblame_core::diagnose;
use netblame_core::{Finding, Layer, Severity};
use netblame_lab::workload::{self, TransferSpec};
use netblame_lab::{Lab, LabConfig, Side};
use netblame_testkit::{require_root, unique_name};
use std::time::Duration;

/// One transfer at a time: a CPU-bound reader needs a core.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(spec: TransferSpec) -> Vec<Finding> {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique_name("rv");
    let lab = Lab::up(LabConfig::symmetric(
        &name,
        Duration::from_millis(20),
        Some(200e6),
    ))
    .expect("lab up");
    let t = workload::transfer(&lab, &spec).expect("transfer");
    lab.down().unwrap();
    eprintln!(
        "reader cpu {:?}, goodput {:.1} Mbit/s",
        t.receiver.cpu_share,
        t.sender.rate_bps / 1e6
    );
    let f = diagnose::diagnose(&diagnose::Observations {
        transfers: vec![t],
        ..Default::default()
    })
    .all;
    for x in &f {
        eprintln!(
            "{} {:?} {:?}: {} | {}",
            x.id, x.layer, x.severity, x.summary, x.explanation
        );
    }
    f
}

#[test]
fn a_reader_pacing_itself_is_the_application_not_tcp_rmem() {
    if !require_root("a_reader_pacing_itself_is_the_application_not_tcp_rmem") {
        return;
    }
    // 32 KiB every 10 ms: about 26 Mbit/s where the path carries 200 and a 6 MiB tcp_rmem[2]
    // allows over 2 Gbit/s at 20 ms.
    let f = run(TransferSpec {
        read_chunk: 32 << 10,
        read_pause: Some(Duration::from_millis(10)),
        ..TransferSpec::timed(Side::Server, Duration::from_secs(3))
    });
    assert!(
        f.iter().any(
            |x| (x.id == "receiver-app-slow" || x.id == "receiver-zero-window")
                && x.layer == Layer::Application
                && x.severity >= Severity::Warning
        ),
        "{f:#?}"
    );
    assert!(
        f.iter()
            .all(|x| x.id != "buffer-max-below-bdp" && x.id != "receiver-cpu-bound"),
        "{f:#?}"
    );
}

#[test]
fn a_reader_at_a_whole_core_is_its_cpu() {
    if !require_root("a_reader_at_a_whole_core_is_its_cpu") {
        return;
    }
    // 100 ns of work per byte read: at most 10 MB/s (80 Mbit/s) of reading at 100% of a core.
    let f = run(TransferSpec {
        read_chunk: 64 << 10,
        read_work_ns_per_byte: 100,
        ..TransferSpec::timed(Side::Server, Duration::from_secs(3))
    });
    let cpu = f
        .iter()
        .find(|x| x.id == "receiver-cpu-bound")
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(cpu.layer, Layer::Host);
    assert!(cpu.value("receiver_cpu").unwrap() >= 90.0, "{cpu:?}");
    assert!(f.iter().all(|x| x.id != "buffer-max-below-bdp"), "{f:#?}");
}
