//! A reader that keeps the window small because it burns a whole core, through the real
//! emulator: its CPU, not "raise tcp_rmem" (netblame-core's `rules::receiver`). A reader that
//! paces itself is `tests/scenarios.rs`' slow-reader and `one_incident_cli.rs`' curl.

use netblame_core::diagnose;
use netblame_core::{Finding, Layer};
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
        "reader cpu {:?}, goodput {:.1} Mbit/s, window share {:?}, peer window {:?}, zero windows {}, \
         recv-q max {:?} of {:?}",
        t.receiver.cpu_share,
        t.sender.rate_bps / 1e6,
        t.window_share(),
        t.sender.peer_window_bytes,
        t.receiver.zero_windows,
        t.receiver.recv_q_max_bytes,
        t.receiver.rcvbuf_bytes
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
fn a_reader_at_a_whole_core_is_its_cpu() {
    if !require_root("a_reader_at_a_whole_core_is_its_cpu") {
        return;
    }
    // 2 us of work per byte read: at most 500 kB/s (4 Mbit/s) of reading at 100% of a core,
    // on a 200 Mbit/s path.
    let f = run(TransferSpec {
        read_chunk: 64 << 10,
        read_work_ns_per_byte: 2000,
        ..TransferSpec::timed(Side::Server, Duration::from_secs(3))
    });
    let cpu = f
        .iter()
        .find(|x| x.id == "receiver-cpu-bound")
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(cpu.layer, Layer::Host);
    assert!(cpu.value("receiver_cpu").unwrap() >= 40.0, "{cpu:?}");
    assert!(f.iter().all(|x| x.id != "buffer-max-below-bdp"), "{f:#?}");
}
