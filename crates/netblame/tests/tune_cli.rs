//! `netblame tune` end to end: the seed plan, --apply then --rollback inside a namespace
//! restoring every value exactly, refusals and bad input.

mod host_cli_common;

use host_cli_common::{netblame, netblame_as_nobody, Netns, NetnsCli, TempDir};
use netblame_testkit::schema::assert_valid;
use serde_json::Value;

#[test]
fn google_cloud_plan_dry_run() {
    let (code, out, err) = netblame(&["tune", "--rate", "10g", "--rtt", "30ms", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_valid("tune", &v);
    assert_eq!(v["mode"], "dry-run");
    assert_eq!(v["bdp_bytes"], 37_500_000);
    assert_eq!(v["buffer_bytes"], 72u64 << 20);
    for c in v["changes"].as_array().unwrap() {
        assert!(!c["reason"].as_str().unwrap().is_empty());
        assert_ne!(c["current"], c["proposed"]);
    }
    assert!(v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("receive.buffer.bytes=-1")));
    let (code, out, _) = netblame(&[
        "tune",
        "--rate",
        "10g",
        "--rtt",
        "30ms",
        "--sysctl-dir",
        "/nonexistent",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("Dry run: nothing changed"), "{out}");
    assert!(!std::path::Path::new("/nonexistent").exists());
}

#[test]
fn apply_then_rollback_in_a_namespace() {
    if !netblame_testkit::require_root("apply_then_rollback_in_a_namespace") {
        return;
    }
    let ns = Netns::new("nbct");
    let dir = TempDir::new();
    let names = [
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    ];
    ns.set_sysctl("net.ipv4.tcp_rmem", "4096 131072 1048576");
    ns.set_sysctl("net.ipv4.tcp_slow_start_after_idle", "1");
    let before: Vec<String> = names.iter().map(|n| ns.sysctl(n)).collect();
    let host_before: Vec<String> = names
        .iter()
        .map(|n| std::fs::read_to_string(format!("/proc/sys/{}", n.replace('.', "/"))).unwrap())
        .collect();
    let (sysctl_dir, backup) = (dir.path("sysctl.d"), dir.path("backup.json"));
    let args = [
        "tune",
        "--rate",
        "1g",
        "--rtt",
        "50ms",
        "--profile",
        "latency",
        "--apply",
        "--sysctl-dir",
        &sysctl_dir,
        "--backup",
        &backup,
        "--json",
    ];
    let (code, out, err) = ns.netblame(&args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_valid("tune", &v);
    assert_eq!(v["mode"], "apply");
    // 1 Gbit/s x 50 ms = 6.25 MB: 12.5 MB of buffer, 12 MiB rounded; never below the kernel's
    // own default maximum (32 MiB from 6.16 on, 6 MiB before).
    let want = (12u64 << 20).max(kernel_default_rmem_max());
    assert_eq!(
        ns.sysctl("net.ipv4.tcp_rmem")
            .split_whitespace()
            .last()
            .unwrap(),
        want.to_string()
    );
    assert_eq!(ns.sysctl("net.ipv4.tcp_slow_start_after_idle").trim(), "0");
    assert_eq!(ns.sysctl("net.ipv4.tcp_notsent_lowat").trim(), "131072");
    let conf = std::fs::read_to_string(format!("{sysctl_dir}/90-netblame.conf")).unwrap();
    assert!(
        conf.contains(&format!("net.ipv4.tcp_rmem = 4096 131072 {want}")),
        "{conf}"
    );
    // Global sysctls cannot be set from a namespace: reported, not in the file.
    for (name, _) in v["not_applicable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap()))
    {
        assert!(!conf.contains(name), "{name} in {conf}");
    }
    let (code, out, err) = ns.netblame(&["tune", "--rollback", "--backup", &backup, "--json"]);
    assert_eq!(code, 0, "{err}");
    let rolled: Value = serde_json::from_str(&out).unwrap();
    assert_valid("tune-rollback", &rolled);
    assert_eq!(rolled["mode"], "rollback", "{rolled}");
    assert!(
        rolled["restored"].as_array().is_some_and(|r| !r.is_empty()),
        "{rolled}"
    );
    let after: Vec<String> = names.iter().map(|n| ns.sysctl(n)).collect();
    assert_eq!(after, before, "rollback restores every value exactly");
    assert!(!std::path::Path::new(&format!("{sysctl_dir}/90-netblame.conf")).exists());
    assert!(!std::path::Path::new(&backup).exists());
    let host_after: Vec<String> = names
        .iter()
        .map(|n| std::fs::read_to_string(format!("/proc/sys/{}", n.replace('.', "/"))).unwrap())
        .collect();
    assert_eq!(host_after, host_before, "the host namespace did not change");
    let (code, _, err) = ns.netblame(&["tune", "--rollback", "--backup", &backup]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing to roll back"), "{err}");
}

/// `tcp_rmem[2]`'s upstream default on the running kernel.
fn kernel_default_rmem_max() -> u64 {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let v: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    if (v[0], v[1]) >= (6, 16) {
        32 << 20
    } else {
        6 << 20
    }
}

#[test]
fn apply_inside_a_namespace_writes_no_host_file_and_twice_changes_nothing() {
    if !netblame_testkit::require_root("apply_inside_a_namespace_writes_no_host_file") {
        return;
    }
    let host_file = std::path::Path::new("/etc/sysctl.d/90-netblame.conf");
    if host_file.exists() {
        eprintln!(
            "SKIPPED: {} exists (a real tune of this host)",
            host_file.display()
        );
        return;
    }
    /// Removes the host file if the code under test wrote it after all.
    struct RemoveIfWritten(&'static std::path::Path);
    impl Drop for RemoveIfWritten {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _cleanup = RemoveIfWritten(std::path::Path::new("/etc/sysctl.d/90-netblame.conf"));
    let ns = Netns::new("nbct");
    let dir = TempDir::new();
    let backup = dir.path("backup.json");
    ns.set_sysctl("net.ipv4.tcp_rmem", "4096 131072 1048576");
    let before = ns.sysctl("net.ipv4.tcp_rmem");
    let args = [
        "tune", "--rate", "1g", "--rtt", "50ms", "--apply", "--backup", &backup,
    ];
    let (code, out, err) = ns.netblame(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("live values only"), "{out}");
    assert!(
        !host_file.exists(),
        "--apply in a namespace wrote {}",
        host_file.display()
    );
    assert_ne!(ns.sysctl("net.ipv4.tcp_rmem"), before);
    // The same plan again: nothing to change, and no complaint about the backup.
    let (code, out, err) = ns.netblame(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.to_lowercase().contains("nothing to change"), "{out}");
    let (code, _, err) = ns.netblame(&["tune", "--rollback", "--backup", &backup]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ns.sysctl("net.ipv4.tcp_rmem"), before);
    assert!(!host_file.exists());
}

#[test]
fn refusals_and_bad_input() {
    let (code, _, err) = netblame(&["tune", "--rate", "100g", "--rtt", "10s"]);
    assert_eq!(code, 1);
    assert!(err.contains("kernel would reject"), "{err}");
    for args in [
        &["tune", "--rate", "1g"][..],
        &[
            "tune",
            "--rate",
            "1g",
            "--rtt",
            "10ms",
            "--profile",
            "fastest",
        ],
        &["tune", "--rollback", "--rate", "1g"],
        &["tune", "--apply", "--rollback"],
    ] {
        let (code, _, err) = netblame(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn apply_without_root_is_refused_and_changes_nothing() {
    if !netblame_testkit::require_root("apply_without_root_is_refused_and_changes_nothing") {
        return;
    }
    let dir = TempDir::new();
    let rmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap();
    let backup = dir.path("b.json");
    let (code, _, err) = netblame_as_nobody(
        &dir,
        &[
            "tune",
            "--rate",
            "40g",
            "--rtt",
            "200ms",
            "--apply",
            "--sysctl-dir",
            &dir.path("d"),
            "--backup",
            &backup,
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("root"), "{err}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap(),
        rmem
    );
    assert!(!std::path::Path::new(&backup).exists());
}
