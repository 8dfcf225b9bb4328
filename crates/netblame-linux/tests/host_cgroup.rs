//! CPU throttling of a socket owner: a busy process in a cgroup with a small CPU quota is found
//! throttled (v1 `cpu` hierarchy on hybrid hosts, else cgroup v2 with the cpu controller).

use netblame_core::diagnose::judge_host as judge;
use netblame_linux::host::{self, cgroup};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

struct Guard {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn throttled_socket_owner_is_found() {
    if !netblame_testkit::require_root("throttled_socket_owner_is_found") {
        return;
    }
    let mounts = cgroup::mounts();
    let name = netblame_testkit::unique_name("nbcg");
    let (dir, v1) = if let Some(v1) = &mounts.v1_cpu {
        (v1.join(&name), true)
    } else {
        let root = mounts.v2.clone().expect("a cgroup v2 or v1 cpu hierarchy");
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        assert!(
            controllers.split_whitespace().any(|c| c == "cpu"),
            "cgroup v2 without the cpu controller"
        );
        let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
        (root.join(&name), false)
    };
    std::fs::create_dir(&dir).unwrap();
    let mut guard = Guard {
        dir: dir.clone(),
        child: None,
    };
    if v1 {
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").unwrap();
        std::fs::write(dir.join("cpu.cfs_quota_us"), "5000").unwrap();
    } else {
        std::fs::write(dir.join("cpu.max"), "5000 100000").unwrap();
    }
    // A busy process that owns a TCP socket (a listener), like a proxy under load.
    let child = Command::new("python3")
        .args(["-c", "import socket\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\nwhile True: pass"])
        .spawn()
        .unwrap();
    let pid = child.id();
    guard.child = Some(child);
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
    let targets = cgroup::targets(&[(pid, "python3".into(), 1)], &mounts);
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0].dir, dir);
    let snap = host::collect(Duration::from_millis(1500), targets);
    let cg = &snap.cgroup_deltas()[0];
    assert!(cg.nr_throttled > 0, "{cg:?}");
    assert_eq!(cg.quota_usec, Some(5000));
    let f = judge(&snap, None);
    let t = f
        .iter()
        .find(|f| f.id == "cpu-throttled")
        .expect("cpu-throttled finding");
    assert!(
        t.explanation.contains(&format!("pid {pid}")),
        "{}",
        t.explanation
    );
    assert_eq!(t.value("cpu_limit"), Some(0.05));
}
