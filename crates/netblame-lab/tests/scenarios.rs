//! Every scenario, in its quick form, must blame the culprit of its seed incident (finding id and
//! layer), its controls must come out clean, and nothing may be left behind.

use netblame_lab::lab::NETNS_PREFIX;
use netblame_lab::netns;
use netblame_lab::scenario::{self, RunOptions};
use netblame_testkit::require_root;

/// Scenarios run one at a time: each measures a path, and two at once share two CPUs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(name: &str) {
    run_as(name, true)
}

/// Runs scenario `name` in its quick form or its full length, and checks its verdicts.
fn run_as(name: &str, quick: bool) {
    if !require_root(&format!("scenario {name}")) {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let report = scenario::run(
        name,
        &RunOptions {
            quick,
            ..Default::default()
        },
    )
    .unwrap();
    for p in &report.parts {
        let seen: Vec<_> = p
            .findings
            .iter()
            .map(|f| (f.id, f.layer, f.severity))
            .collect();
        eprintln!(
            "{name} / {}: expected {:?}, observed {seen:?}",
            p.label, p.expected.finding
        );
        assert!(
            p.matched,
            "{name} / {}: expected {:?} ({:?}), observed {seen:?}",
            p.label, p.expected.finding, p.expected.layer
        );
        if p.expected.finding.is_none() {
            assert!(p
                .findings
                .iter()
                .all(|f| f.severity == netblame_core::Severity::Info));
        }
    }
    assert!(report.passed);
    let me = format!("{NETNS_PREFIX}sc-");
    let pid = format!("-{}-", std::process::id() % 100_000);
    let left: Vec<_> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&me) && n.contains(&pid))
        .collect();
    assert!(left.is_empty(), "scenario {name} left namespaces {left:?}");
}

#[test]
fn rcvbuf_blames_the_application_and_the_control_is_clean() {
    run("rcvbuf");
}

#[test]
fn slow_reader_blames_the_receiving_application() {
    run("slow-reader");
}

/// The full 3 s run, as `netblame lab scenario slow-reader` does it: its reader drains at the
/// end, so its final window says nothing of the closed one (it was once called
/// congestion-window-limited).
#[test]
fn slow_reader_at_full_length_blames_the_receiving_application() {
    run_as("slow-reader", false);
}

#[test]
fn bdp_blames_the_buffer_sysctls_then_window_scaling_and_tuned_is_clean() {
    run("bdp");
}

#[test]
fn syn_loss_blames_the_network() {
    run("syn-loss");
}

#[test]
fn lossy_path_blames_the_network_not_the_receiver() {
    run("lossy-path");
}

#[test]
fn throttled_proxy_blames_the_proxys_cgroup() {
    run("throttled-proxy");
    // Its cgroup is gone with the lab.
    let left: Vec<String> = std::fs::read_dir("/sys/fs/cgroup/cpu")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with("netblame-lab-sc-throttled-")
                        && n.contains(&format!("-{}-", std::process::id() % 100_000))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left cgroups {left:?}");
}

#[test]
fn terminating_backend_blames_a_timeout_and_retry() {
    run("terminating-backend");
}

#[test]
fn healthy_finds_nothing_above_info() {
    run("healthy");
}

#[test]
fn unknown_scenarios_are_an_error() {
    assert!(scenario::info("nope").is_none());
    assert!(scenario::run("nope", &RunOptions::default()).is_err());
}

#[test]
fn collapse_blames_the_huge_receive_buffer() {
    run("collapse");
}
