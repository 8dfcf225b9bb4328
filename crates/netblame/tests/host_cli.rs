//! `netblame host` end to end: a namespace whose tcp_rmem[2] is below the BDP named on the
//! command line, --save/--load round trip, bad input, and what an unprivileged run skips.

mod host_cli_common;

use host_cli_common::{netblame, netblame_as_nobody, Netns, NetnsCli, TempDir};
use netblame_testkit::schema::assert_valid;
use serde_json::Value;

fn ids(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rmem_below_the_named_bdp_in_a_namespace() {
    if !netblame_testkit::require_root("rmem_below_the_named_bdp_in_a_namespace") {
        return;
    }
    let ns = Netns::new("nbch");
    ns.set_sysctl("net.ipv4.tcp_rmem", "4096 131072 2097152");
    let (code, out, err) = ns.netblame(&[
        "host",
        "--duration",
        "200ms",
        "--rate",
        "1g",
        "--rtt",
        "100ms",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_valid("host", &v);
    assert_eq!(
        v["snapshot"]["sysctls"]["net.ipv4.tcp_rmem"],
        "4096 131072 2097152"
    );
    assert!(v["snapshot"]["window_us"].as_u64().unwrap() >= 200_000);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "buffer-max-below-bdp" && f["subject"] == "net.ipv4.tcp_rmem[2]")
        .unwrap_or_else(|| panic!("no tcp_rmem finding in {:?}", ids(&v)));
    assert_eq!(f["severity"], "critical");
    let ev = |name: &str| {
        f["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(ev("bdp"), 12_500_000.0);
    assert_eq!(ev("buffer_max"), 2_097_152.0);
    assert!(f["fix"]
        .as_str()
        .unwrap()
        .contains("netblame tune --rate 1g --rtt 100ms"));
    // Text: the report and the finding with its arithmetic.
    let (code, out, _) = ns.netblame(&[
        "host",
        "--duration",
        "100ms",
        "--rate",
        "1g",
        "--rtt",
        "100ms",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("net.ipv4.tcp_rmem[2] = 2 MiB"), "{out}");
    assert!(
        out.contains("BDP = 1.00 Gbit/s x 100 ms / 8 = 12500000 B"),
        "{out}"
    );
}

#[test]
fn save_then_load_judges_the_same() {
    let dir = TempDir::new();
    let file = dir.path("snap.json");
    let (code, out, err) = netblame(&[
        "host",
        "--duration",
        "100ms",
        "--save",
        &file,
        "--json",
        "--rate",
        "10g",
        "--rtt",
        "30ms",
    ]);
    assert_eq!(code, 0, "{err}");
    let live: Value = serde_json::from_str(&out).unwrap();
    assert_valid("host", &live);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_valid("host-snapshot", &saved);
    let (code, out, err) = netblame(&[
        "host", "--load", &file, "--json", "--rate", "10g", "--rtt", "30ms",
    ]);
    assert_eq!(code, 0, "{err}");
    let loaded: Value = serde_json::from_str(&out).unwrap();
    assert_valid("host", &loaded);
    assert_eq!(loaded["source"], "loaded");
    assert_eq!(loaded["snapshot"], live["snapshot"]);
    assert_eq!(loaded["findings"], live["findings"]);
    let (code, out, _) = netblame(&["host", "--load", &file]);
    assert_eq!(code, 0);
    assert!(out.starts_with("snapshot "), "{out}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = TempDir::new();
    let garbage = dir.path("garbage.json");
    std::fs::write(&garbage, "{not json").unwrap();
    let (code, _, err) = netblame(&["host", "--load", &garbage]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not a snapshot written by netblame host --save"),
        "{err}"
    );
    let (code, _, err) = netblame(&["host", "--load", &dir.path("missing.json")]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.json"), "{err}");
    for args in [
        &["host", "--rate", "1g"][..],
        &["host", "--duration", "soon"],
        &["host", "--load", "x.json", "--duration", "1s"],
        &["host", "--rate", "0", "--rtt", "10ms"],
    ] {
        let (code, _, err) = netblame(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    // A zero RTT is a usage error too (exit 2).
    let (code, _, err) = netblame(&["host", "--rate", "1g", "--rtt", "0ms"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn unprivileged_run_says_what_it_skipped() {
    if !netblame_testkit::require_root("unprivileged_run_says_what_it_skipped") {
        return; // needs root to become nobody
    }
    let dir = TempDir::new();
    let (code, out, err) = netblame_as_nobody(&dir, &["host", "--duration", "100ms", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_valid("host", &v);
    let skipped = v["snapshot"]["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["reason"].as_str().unwrap().contains("root")),
        "{skipped:?}"
    );
    assert!(!v["snapshot"]["after"]["proto"]
        .as_object()
        .unwrap()
        .is_empty());
    let (code, out, _) = netblame_as_nobody(&dir, &["host", "--duration", "100ms"]);
    assert_eq!(code, 0);
    assert!(out.contains("skipped:") && out.contains("root"), "{out}");
}
