//! `tune --apply` machinery inside a network namespace (only per-namespace sysctls are touched):
//! apply then rollback restores every value exactly; a write the kernel refuses part-way leaves
//! the previous values; sysctls that are not per-namespace are reported read-only there.

mod host_common;

use host_common::Netns;
use netblame_linux::host::apply::{self, ApplyError};
use netblame_linux::sysctl;
use std::path::PathBuf;

const NAMES: [&str; 4] = [
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

fn raw_values() -> Vec<String> {
    NAMES.iter().map(|n| sysctl::read(n).unwrap()).collect()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(netblame_testkit::unique_name("nbtune"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn apply_then_rollback_restores_exactly() {
    if !netblame_testkit::require_root("apply_then_rollback_restores_exactly") {
        return;
    }
    let host_before: Vec<String> = raw_values();
    let ns = Netns::new("nbap");
    let dir = TempDir::new();
    let (conf, backup) = (
        dir.0.join("sysctl.d/90-netblame.conf"),
        dir.0.join("state/backup.json"),
    );
    let (c2, b2) = (conf.clone(), backup.clone());
    ns.run(move || {
        let before = raw_values();
        let flipped_idle = if before[2] == "1" { "0" } else { "1" };
        let changes: Vec<(String, String)> = vec![
            (NAMES[0].into(), "4096 131072 9437184".into()),
            (NAMES[1].into(), "4096 16384 9437184".into()),
            (NAMES[2].into(), flipped_idle.into()),
            (NAMES[3].into(), "131072".into()),
        ];
        let (ok, not) = apply::partition(&changes);
        assert_eq!(ok.len(), 4, "not writable: {not:?}");
        let saved =
            apply::apply(&ok, "net.ipv4.tcp_rmem = 4096 131072 9437184\n", &c2, &b2).unwrap();
        assert_eq!(
            saved.values.iter().map(|v| v.1.clone()).collect::<Vec<_>>(),
            before
        );
        for (name, value) in &changes {
            assert_eq!(&sysctl::read_normalized(name).unwrap(), value);
        }
        assert!(c2.exists() && b2.exists());
        // A second apply refuses to overwrite the backup of the first.
        assert!(matches!(
            apply::apply(&ok, "", &c2, &b2),
            Err(ApplyError::BackupExists(_))
        ));
        apply::rollback(&b2).unwrap();
        assert_eq!(raw_values(), before, "rollback must restore the exact text");
        assert!(!c2.exists() && !b2.exists());
        assert!(matches!(apply::rollback(&b2), Err(ApplyError::NoBackup(_))));
    });
    assert_eq!(
        raw_values(),
        host_before,
        "the host namespace must not change"
    );
}

#[test]
fn refused_write_part_way_restores_previous_values() {
    if !netblame_testkit::require_root("refused_write_part_way_restores_previous_values") {
        return;
    }
    let ns = Netns::new("nbaf");
    let dir = TempDir::new();
    let (conf, backup) = (dir.0.join("90-netblame.conf"), dir.0.join("backup.json"));
    ns.run(move || {
        let before = raw_values();
        let syn_before = sysctl::read("net.ipv4.tcp_syn_retries").unwrap();
        let changes: Vec<(String, String)> = vec![
            (NAMES[0].into(), "4096 131072 7340032".into()),
            (NAMES[3].into(), "65536".into()),
            // The kernel accepts 1..=127 here: 1000 is refused with EINVAL, after two writes.
            ("net.ipv4.tcp_syn_retries".into(), "1000".into()),
        ];
        let err = apply::apply(&changes, "x\n", &conf, &backup).unwrap_err();
        match &err {
            ApplyError::Refused { name, restored, .. } => {
                assert_eq!(name, "net.ipv4.tcp_syn_retries");
                assert_eq!(*restored, 2);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("put back"), "{err}");
        assert_eq!(raw_values(), before);
        assert_eq!(
            sysctl::read("net.ipv4.tcp_syn_retries").unwrap(),
            syn_before
        );
        assert!(!conf.exists() && !backup.exists(), "nothing left behind");
    });
}

#[test]
fn global_sysctls_are_read_only_inside_a_namespace() {
    if !netblame_testkit::require_root("global_sysctls_are_read_only_inside_a_namespace") {
        return;
    }
    let ns = Netns::new("nbag");
    let (ok, not) = ns.run(|| {
        apply::partition(&[
            ("net.core.rmem_max".into(), "8388608".into()),
            ("net.ipv4.tcp_rmem".into(), "4096 131072 8388608".into()),
            ("net.ipv4.no_such_sysctl".into(), "1".into()),
        ])
    });
    assert!(ok.iter().any(|(n, _)| n == "net.ipv4.tcp_rmem"));
    assert!(not
        .iter()
        .any(|(n, w)| n == "net.ipv4.no_such_sysctl" && w.contains("not present")));
    // Whether rmem_max is per-namespace depends on the kernel; partition follows the file mode.
    let rmem_max_writable_in_ns = ns.run(|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(sysctl::path("net.core.rmem_max"))
            .unwrap()
            .permissions()
            .mode()
            & 0o200
            != 0
    });
    assert_eq!(
        ok.iter().any(|(n, _)| n == "net.core.rmem_max"),
        rmem_max_writable_in_ns
    );
    if !rmem_max_writable_in_ns {
        let why = &not
            .iter()
            .find(|(n, _)| n == "net.core.rmem_max")
            .unwrap()
            .1;
        assert!(why.contains("read-only"), "{why}");
    }
}
