//! `--netns`, `--all-netns`, `--pod`, `--container`: real namespaces, real processes holding
//! real connections, placed in real cgroups laid out as kubelet (cgroupfs driver, v1 cpu
//! hierarchy), containerd under kubelet's systemd driver (cgroup v2) and Docker (v1) lay them
//! out, with kubelet's pod log directories naming one pod. Counts are checked against `ss` run
//! in each namespace. Everything created is removed on drop, also when a test fails.

use netblame_testkit::schema::assert_valid;
use netblame_testkit::{require_root, run, unique_name, Netns};
use serde_json::Value;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_netblame");
/// Connections per holder (each has two sockets: both ends live in its namespace).
const CONNS: usize = 5;

const HOLDER: &str = r#"
import os, socket, sys
n, ready = int(sys.argv[1]), sys.argv[2]
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(128)
held = []
for _ in range(n):
    held.append(socket.create_connection(l.getsockname())); held.append(l.accept()[0])
with open(ready + ".tmp", "w") as f: f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
sys.stdin.read()
"#;

fn random_hex(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(s.len());
        s += &format!("{:016x}", h.finish());
    }
    s.truncate(len);
    s
}

fn random_uid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A python process holding CONNS loopback connections inside a namespace; killed on drop.
struct Holder {
    child: Child,
    pid: u32,
    ready: PathBuf,
}

impl Holder {
    fn start(ns: &Netns) -> Holder {
        let ready = std::env::temp_dir().join(unique_name("nbready"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "python3", "-c", HOLDER])
            .arg(CONNS.to_string())
            .arg(&ready)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start holder");
        let pid;
        loop {
            if let Ok(t) = std::fs::read_to_string(&ready) {
                pid = t.trim().parse().unwrap();
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("holder exited early: {st}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Holder { child, pid, ready }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.ready);
    }
}

/// Directories this test created (cgroups, log dirs), removed deepest first on drop; a cgroup's
/// remaining processes go back to the hierarchy's root first.
#[derive(Default)]
struct Created(Vec<(PathBuf, Option<PathBuf>)>);

impl Created {
    /// Creates every missing directory of `dir`; `root` is the cgroup hierarchy's root for
    /// cgroups, `None` for plain directories.
    fn mkdirs(&mut self, dir: &Path, root: Option<&Path>) {
        let mut missing = Vec::new();
        let mut d = dir.to_path_buf();
        while !d.exists() {
            missing.push(d.clone());
            d = d.parent().unwrap().to_path_buf();
        }
        for m in missing.into_iter().rev() {
            std::fs::create_dir(&m).unwrap_or_else(|e| panic!("mkdir {}: {e}", m.display()));
            self.0.push((m, root.map(Path::to_path_buf)));
        }
    }

    /// Creates a cgroup and moves `pid` into it.
    fn cgroup(&mut self, root: &Path, path: &str, pid: u32) {
        let dir = root.join(path.trim_start_matches('/'));
        self.mkdirs(&dir, Some(root));
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", dir.display()));
    }

    fn file(&mut self, path: &Path) {
        self.mkdirs(path.parent().unwrap(), None);
        std::fs::File::create(path).unwrap();
        self.0.push((path.to_path_buf(), None));
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for (p, root) in self.0.iter().rev() {
            if let Some(root) = root {
                if let Ok(procs) = std::fs::read_to_string(p.join("cgroup.procs")) {
                    for pid in procs.split_whitespace() {
                        let _ = std::fs::write(root.join("cgroup.procs"), pid);
                    }
                }
                let _ = std::fs::remove_dir(p);
            } else if p.is_dir() {
                let _ = std::fs::remove_dir(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn json(args: &[&str]) -> Value {
    let (code, out, err) = run(BIN, args);
    assert_eq!(code, 0, "netblame {args:?}: {err}");
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_valid(args[0], &v);
    v
}

fn conns_in<'a>(doc: &'a Value, ns: &str) -> Vec<&'a Value> {
    doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["netns"]["name"] == ns)
        .collect()
}

fn ss_established(ns: &Netns) -> usize {
    ns.exec(&["ss", "-Htn", "state", "established"])
        .lines()
        .count()
}

#[test]
fn all_netns_finds_each_connection_once_with_its_pod_and_container() {
    if !require_root("all_netns_finds_each_connection_once_with_its_pod_and_container") {
        return;
    }
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    let v2 = Path::new("/sys/fs/cgroup/unified");
    assert!(
        v1.join("cgroup.procs").exists(),
        "needs the v1 cpu hierarchy"
    );
    assert!(v2.join("cgroup.procs").exists(), "needs a cgroup2 mount");

    let mut created = Created::default();
    let (kube_ns, ctrd_ns, dock_ns) = (Netns::new("nbk"), Netns::new("nbc"), Netns::new("nbd"));
    let (kube, ctrd, dock) = (
        Holder::start(&kube_ns),
        Holder::start(&ctrd_ns),
        Holder::start(&dock_ns),
    );

    // kubelet, cgroupfs driver, v1: /kubepods/burstable/pod<UID>/<ID>, named by /var/log/pods.
    let (kube_uid, kube_id) = (random_uid(), random_hex(64));
    let pod = unique_name("web-");
    created.cgroup(
        v1,
        &format!("/kubepods/burstable/pod{kube_uid}/{kube_id}"),
        kube.pid,
    );
    created.mkdirs(
        &Path::new("/var/log/pods").join(format!("default_{pod}_{kube_uid}/envoy")),
        None,
    );
    // containerd under kubelet's systemd driver, v2; the container named by its
    // /var/log/containers link (the pod has two containers).
    let (ctrd_uid, ctrd_id) = (random_uid(), random_hex(64));
    let ctrd_pod = unique_name("api-");
    let slice = format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
        ctrd_uid.replace('-', "_")
    );
    created.cgroup(
        v2,
        &format!("{slice}/cri-containerd-{ctrd_id}.scope"),
        ctrd.pid,
    );
    for c in ["app", "sidecar"] {
        created.mkdirs(
            &Path::new("/var/log/pods").join(format!("shop_{ctrd_pod}_{ctrd_uid}/{c}")),
            None,
        );
    }
    created
        .file(&Path::new("/var/log/containers").join(format!("{ctrd_pod}_shop_app-{ctrd_id}.log")));
    // Docker, cgroupfs driver, v1: /docker/<ID>.
    let dock_id = random_hex(64);
    created.cgroup(v1, &format!("/docker/{dock_id}"), dock.pid);

    let doc = json(&["sockets", "--all-netns", "--once", "--json"]);
    // Each connection once.
    let all = doc["connections"].as_array().unwrap();
    let keys: HashSet<(u64, u64)> = all
        .iter()
        .map(|c| {
            (
                c["netns"]["inode"].as_u64().unwrap(),
                c["cookie"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys.len(), all.len(), "a connection listed twice");

    let check = |ns: &Netns, pid: u32| -> Vec<Value> {
        let found: Vec<Value> = conns_in(&doc, ns.name()).into_iter().cloned().collect();
        assert_eq!(found.len(), 2 * CONNS, "{}: {found:?}", ns.name());
        assert_eq!(
            found.len(),
            ss_established(ns),
            "ss disagrees in {}",
            ns.name()
        );
        for c in &found {
            assert_eq!(c["owners"][0]["pid"], pid);
        }
        found
    };
    let k = check(&kube_ns, kube.pid);
    let c = &k[0]["container"];
    assert_eq!(c["pod_uid"], kube_uid.as_str());
    assert_eq!(c["qos"], "burstable");
    assert_eq!(c["id"], kube_id.as_str());
    assert_eq!(
        (&c["namespace"], &c["pod"], &c["container"]),
        (
            &Value::from("default"),
            &Value::from(pod.as_str()),
            &Value::from("envoy")
        )
    );
    let c2 = check(&ctrd_ns, ctrd.pid);
    let c = &c2[0]["container"];
    assert_eq!(c["runtime"], "containerd");
    assert_eq!(c["qos"], "besteffort");
    assert_eq!(c["pod_uid"], ctrd_uid.as_str());
    assert_eq!(c["container"], "app");
    assert_eq!(c["pod"], ctrd_pod.as_str());
    let d = check(&dock_ns, dock.pid);
    let c = &d[0]["container"];
    assert_eq!(
        (&c["runtime"], &c["id"]),
        (&Value::from("docker"), &Value::from(dock_id.as_str()))
    );
    assert!(c.get("pod_uid").is_none());
    // The namespaces are listed with their connection counts.
    let listed = doc["namespaces"].as_array().unwrap();
    for ns in [&kube_ns, &ctrd_ns, &dock_ns] {
        let row = listed.iter().find(|n| n["name"] == ns.name()).unwrap();
        assert_eq!(row["connections"], 2 * CONNS);
    }

    // --netns by name, by path and by pid: only that namespace.
    let by_path = format!("/run/netns/{}", ctrd_ns.name());
    let by_pid = dock.pid.to_string();
    for (arg, ns) in [
        (kube_ns.name(), &kube_ns),
        (by_path.as_str(), &ctrd_ns),
        (by_pid.as_str(), &dock_ns),
    ] {
        let doc = json(&["sockets", "--netns", arg, "--once", "--json"]);
        let all = doc["connections"].as_array().unwrap();
        assert_eq!(all.len(), 2 * CONNS, "--netns {arg}");
        assert!(
            all.iter().all(|c| c["netns"]["name"] == ns.name()),
            "--netns {arg}"
        );
    }

    // --pod and --container filters, across namespaces.
    let doc = json(&[
        "sockets",
        "--all-netns",
        "--once",
        "--json",
        "--pod",
        &format!("default/{pod}"),
    ]);
    assert_eq!(doc["connections"].as_array().unwrap().len(), 2 * CONNS);
    let doc = json(&[
        "sockets",
        "--all-netns",
        "--once",
        "--json",
        "--container",
        "app",
    ]);
    let only = doc["connections"].as_array().unwrap();
    assert_eq!(only.len(), 2 * CONNS);
    assert!(only.iter().all(|c| c["netns"]["name"] == ctrd_ns.name()));
    let doc = json(&[
        "sockets",
        "--all-netns",
        "--once",
        "--json",
        "--container",
        &dock_id[..12],
    ]);
    assert_eq!(doc["connections"].as_array().unwrap().len(), 2 * CONNS);

    // Text groups by namespace and pod/container.
    let (code, out, err) = run(BIN, &["sockets", "--all-netns", "--once"]);
    assert_eq!(code, 0, "{err}");
    let heading = format!(
        "== netns {}  pod default/{pod}  container envoy ({} connections) ==",
        kube_ns.name(),
        2 * CONNS
    );
    assert!(out.contains(&heading), "no '{heading}' in:\n{out}");
    assert!(
        out.contains(&format!("container docker {}", &dock_id[..12])),
        "{out}"
    );
    drop((kube, ctrd, dock));
    drop(created);
    // Nothing left behind: the log directories this test made are gone.
    assert!(!Path::new("/var/log/pods")
        .join(format!("default_{pod}_{kube_uid}"))
        .exists());
}

#[test]
fn without_root_says_other_namespaces_were_not_visited() {
    if !require_root("without_root_says_other_namespaces_were_not_visited") {
        return;
    }
    let ns = Netns::new("nbu");
    let h = Holder::start(&ns);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["sockets", "--all-netns", "--once", "--json"])
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_valid("sockets", &doc);
    let lims: Vec<&str> = doc["limitations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        lims.iter()
            .any(|l| l.starts_with("not root: ") && l.contains("not visited")),
        "{lims:?}"
    );
    assert!(conns_in(&doc, ns.name()).is_empty());
    // In text, the same line on stderr.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["sockets", "--all-netns", "--once"])
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not root: ") && err.contains("not visited"),
        "{err}"
    );
    drop(h);
}

#[test]
fn unknown_netns_is_a_usage_error() {
    let (code, _, err) = run(
        BIN,
        &["sockets", "--netns", "no-such-ns-netblame", "--once"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no-such-ns-netblame") && err.contains("ip netns list"),
        "{err}"
    );
    let (code, _, err) = run(BIN, &["sockets", "--netns", "/etc/hostname", "--once"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a network namespace"), "{err}");
    let _ = std::io::stderr().flush();
}

#[test]
fn host_and_doctor_read_each_namespace_on_its_own() {
    if !require_root("host_and_doctor_read_each_namespace_on_its_own") {
        return;
    }
    let ns = Netns::new("nbh");
    ns.exec(&[
        "ip", "link", "add", "nbv0", "type", "veth", "peer", "name", "nbv1",
    ]);
    ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 65536 1048576"]);
    let h = Holder::start(&ns);
    // Its owner in a cgroup of its own: cgroups are host-wide, watched once for every namespace.
    let mut created = Created::default();
    let cg = format!("/{}", unique_name("nbnscg"));
    created.cgroup(Path::new("/sys/fs/cgroup/cpu"), &cg, h.pid);

    // --netns alone: the whole audit runs inside; its sysctls and interfaces are the namespace's.
    let pid = h.pid.to_string();
    for arg in [ns.name(), pid.as_str()] {
        let doc = json(&["host", "--netns", arg, "--duration", "200ms", "--json"]);
        let snap = &doc["snapshot"];
        assert_eq!(snap["sysctls"]["net.ipv4.tcp_rmem"], "4096 65536 1048576");
        let devs: HashSet<&str> = snap["after"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device"].as_str().unwrap())
            .collect();
        assert_eq!(devs, HashSet::from(["lo", "nbv0", "nbv1"]), "--netns {arg}");
        assert_eq!(snap["after"]["tcp_inuse"], 2 * CONNS + 1, "--netns {arg}");
    }
    // --all-netns: this host's audit, and the namespace's own counters beside it, once.
    let doc = json(&["host", "--all-netns", "--duration", "200ms", "--json"]);
    let listed: Vec<&Value> = doc["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["netns"]["name"] == ns.name())
        .collect();
    assert_eq!(listed.len(), 1);
    let devs: Vec<&str> = listed[0]["deltas"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert!(devs.contains(&"nbv0"), "{devs:?}");
    // Host-wide counters are not repeated per namespace.
    assert!(listed[0]["deltas"]["softnet"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(listed[0]["deltas"]["cgroups"]
        .as_array()
        .unwrap()
        .is_empty());
    let cgroups = doc["deltas"]["cgroups"].as_array().unwrap();
    assert!(
        cgroups.iter().any(|c| c["path"] == cg.as_str()),
        "the namespace's socket owner's cgroup {cg} not watched: {cgroups:?}"
    );

    // doctor --netns: the namespace's connections are the ones judged.
    let doc = json(&[
        "doctor",
        "--netns",
        ns.name(),
        "--duration",
        "300ms",
        "--json",
    ]);
    assert_eq!(doc["connections"]["sampled"], 2 * CONNS);
    assert_eq!(doc["connections"]["judged_over_window"], 2 * CONNS);
    drop(h);
    drop(created);
}
