//! Which container or pod a process runs in, from its cgroup path (`/proc/PID/cgroup`), for
//! cgroup v1 and v2 and the layouts kubelet (cgroupfs and systemd drivers: QoS class, pod UID),
//! containerd, CRI-O, Docker, Podman and systemd units use:
//!
//! | layout | path |
//! |---|---|
//! | kubelet, cgroupfs driver | `/kubepods/burstable/pod<UID>/<ID>` |
//! | kubelet, systemd driver | `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<UID_>.slice/cri-containerd-<ID>.scope` |
//! | CRI-O | `.../crio-<ID>.scope` |
//! | Docker | `/docker/<ID>`, `/system.slice/docker-<ID>.scope` |
//! | Podman | `/machine.slice/libpod-<ID>.scope` |
//! | systemd unit | `/system.slice/nginx.service` |
//!
//! Names come from the node's log directories, which the kubelet keeps without an API server:
//! `/var/log/pods/<namespace>_<pod>_<UID>/<container>/` and
//! `/var/log/containers/<pod>_<namespace>_<container>-<ID>.log` (see [`PodNames`]).

use netblame_core::observe::ContainerRef;
use std::collections::HashMap;
use std::path::Path;

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `pod0123-...` (cgroupfs) or `kubepods-burstable-pod0123_....slice` (systemd) -> the UID with
/// dashes.
fn pod_uid(component: &str) -> Option<String> {
    let c = component.strip_suffix(".slice").unwrap_or(component);
    let uid = match c.rfind("-pod") {
        Some(i) if c.starts_with("kubepods") => &c[i + 4..],
        _ => c.strip_prefix("pod")?,
    };
    let ok = uid.len() >= 32
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    ok.then(|| uid.replace('_', "-"))
}

fn qos(component: &str) -> Option<&'static str> {
    let c = component.strip_suffix(".slice").unwrap_or(component);
    match c {
        "burstable" | "kubepods-burstable" => Some("burstable"),
        "besteffort" | "kubepods-besteffort" => Some("besteffort"),
        _ => None,
    }
}

/// A container component: `(runtime, id)`.
fn container_id(component: &str, parent: Option<&str>) -> Option<(Option<&'static str>, String)> {
    let c = component.strip_suffix(".scope").unwrap_or(component);
    const PREFIXES: [(&str, &str); 6] = [
        ("cri-containerd-", "containerd"),
        ("crio-conmon-", "cri-o"),
        ("crio-", "cri-o"),
        ("docker-", "docker"),
        ("libpod-conmon-", "podman"),
        ("libpod-", "podman"),
    ];
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = c.strip_prefix(prefix) {
            if is_hex_id(id) {
                return Some((Some(runtime), id.to_string()));
            }
        }
    }
    if is_hex_id(c) {
        let runtime = match parent {
            Some("docker") => Some("docker"),
            _ => None,
        };
        return Some((runtime, c.to_string()));
    }
    None
}

/// Parses one cgroup path. `None` for the root and for paths that name neither a container, a
/// pod nor a systemd service or scope.
pub fn parse_cgroup_path(path: &str) -> Option<ContainerRef> {
    let mut c = ContainerRef {
        cgroup: path.to_string(),
        ..Default::default()
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut kube = false;
    for (i, part) in parts.iter().enumerate() {
        let parent = i.checked_sub(1).map(|j| parts[j]);
        if *part == "kubepods" || *part == "kubepods.slice" {
            kube = true;
            continue;
        }
        if kube {
            if let Some(q) = qos(part) {
                c.qos = Some(q.into());
                continue;
            }
            if let Some(uid) = pod_uid(part) {
                c.pod_uid = Some(uid);
                if let Some(q) = ["burstable", "besteffort"]
                    .into_iter()
                    .find(|q| part.starts_with(&format!("kubepods-{q}-")))
                {
                    c.qos = Some(q.into());
                }
                continue;
            }
        }
        if let Some((runtime, id)) = container_id(part, parent) {
            c.runtime = runtime.map(str::to_string).or(c.runtime);
            c.id = Some(id);
            continue;
        }
        if part.ends_with(".service") || part.ends_with(".scope") {
            c.unit = Some(part.to_string());
        }
    }
    if kube && c.pod_uid.is_some() && c.qos.is_none() {
        c.qos = Some("guaranteed".into());
    }
    if c.id.is_some() || c.pod_uid.is_some() {
        c.unit = None;
    }
    (c.id.is_some() || c.pod_uid.is_some() || c.unit.is_some()).then_some(c)
}

/// How much a parsed identity says: a pod's container beats a bare container beats a unit.
fn rank(c: &ContainerRef) -> u8 {
    (c.pod_uid.is_some() as u8) * 4 + (c.id.is_some() as u8) * 2 + (c.unit.is_some() as u8)
}

/// The identity in a `/proc/PID/cgroup` text: every hierarchy's line (v1 `N:ctrl:/path`, v2
/// `0::/path`) is parsed and the one that says most wins (hybrid hosts put containers in the v1
/// hierarchies and leave the v2 path at `/`, or the reverse).
pub fn from_proc_cgroup(text: &str) -> Option<ContainerRef> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter_map(parse_cgroup_path)
        .max_by_key(rank)
}

/// Pod and container names from a node's kubelet log directories.
#[derive(Debug, Clone, Default)]
pub struct PodNames {
    /// Pod UID -> (namespace, pod, container directory names).
    pods: HashMap<String, (String, String, Vec<String>)>,
    /// Container id -> container name.
    containers: HashMap<String, String>,
}

impl PodNames {
    /// Reads `/var/log/pods` and `/var/log/containers`; empty when they do not exist.
    pub fn scan() -> PodNames {
        Self::scan_dir(Path::new("/var/log"))
    }

    /// Reads `LOG_DIR/pods` and `LOG_DIR/containers`.
    pub fn scan_dir(log_dir: &Path) -> PodNames {
        let mut n = PodNames::default();
        if let Ok(rd) = std::fs::read_dir(log_dir.join("pods")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // <namespace>_<pod>_<uid>: namespaces and pods cannot contain '_'.
                let mut it = name.splitn(3, '_');
                let (Some(ns), Some(pod), Some(uid)) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                let mut containers: Vec<String> = std::fs::read_dir(e.path())
                    .map(|rd| {
                        rd.flatten()
                            .filter(|c| c.path().is_dir())
                            .map(|c| c.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                containers.sort();
                n.pods
                    .insert(uid.to_string(), (ns.into(), pod.into(), containers));
            }
        }
        if let Ok(rd) = std::fs::read_dir(log_dir.join("containers")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // <pod>_<namespace>_<container>-<id>.log
                let Some(stem) = name.strip_suffix(".log") else {
                    continue;
                };
                let Some((rest, id)) = stem.rsplit_once('-') else {
                    continue;
                };
                let Some(container) = rest.splitn(3, '_').nth(2) else {
                    continue;
                };
                if is_hex_id(id) {
                    n.containers.insert(id.to_string(), container.to_string());
                }
            }
        }
        n
    }

    /// True when no pod or container was found.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.containers.is_empty()
    }

    /// Fills `namespace`, `pod` and `container` where the log directories name them (a pod's
    /// only container is named even without a `/var/log/containers` link).
    pub fn name(&self, c: &mut ContainerRef) {
        if let Some(id) = &c.id {
            if let Some(name) = self.containers.get(id) {
                c.container = Some(name.clone());
            }
        }
        if let Some((ns, pod, containers)) = c.pod_uid.as_ref().and_then(|u| self.pods.get(u)) {
            c.namespace = Some(ns.clone());
            c.pod = Some(pod.clone());
            if c.container.is_none() && containers.len() == 1 {
                c.container = Some(containers[0].clone());
            }
        }
    }
}

/// Reads `/proc/PID/cgroup` and parses it: `None` when the process is gone or runs in no
/// container, pod or unit.
pub fn of_pid(pid: u32) -> Option<ContainerRef> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    from_proc_cgroup(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    #[test]
    fn kubelet_cgroupfs_layouts() {
        let c = parse_cgroup_path(&format!("/kubepods/burstable/pod{UID}/{ID}")).unwrap();
        assert_eq!(c.pod_uid.as_deref(), Some(UID));
        assert_eq!(c.qos.as_deref(), Some("burstable"));
        assert_eq!(c.id.as_deref(), Some(ID));
        assert_eq!(c.runtime, None);
        let c = parse_cgroup_path(&format!("/kubepods/pod{UID}/crio-{ID}")).unwrap();
        assert_eq!(c.qos.as_deref(), Some("guaranteed"));
        assert_eq!(c.runtime.as_deref(), Some("cri-o"));
        // The pod's own cgroup (no container yet).
        let c = parse_cgroup_path(&format!("/kubepods/besteffort/pod{UID}")).unwrap();
        assert_eq!((c.id, c.qos.as_deref()), (None, Some("besteffort")));
    }

    #[test]
    fn kubelet_systemd_layouts() {
        let u = UID.replace('-', "_");
        let p = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope"
        );
        let c = parse_cgroup_path(&p).unwrap();
        assert_eq!(c.pod_uid.as_deref(), Some(UID));
        assert_eq!(c.qos.as_deref(), Some("besteffort"));
        assert_eq!(c.runtime.as_deref(), Some("containerd"));
        assert_eq!(c.id.as_deref(), Some(ID));
        let p = format!("/kubepods.slice/kubepods-pod{u}.slice/crio-{ID}.scope");
        let c = parse_cgroup_path(&p).unwrap();
        assert_eq!(
            (c.qos.as_deref(), c.runtime.as_deref()),
            (Some("guaranteed"), Some("cri-o"))
        );
    }

    #[test]
    fn docker_podman_and_units() {
        let c = parse_cgroup_path(&format!("/docker/{ID}")).unwrap();
        assert_eq!(
            (c.runtime.as_deref(), c.id.as_deref()),
            (Some("docker"), Some(ID))
        );
        assert_eq!(c.label(), "docker 3f2a9c1b0d4e");
        let c = parse_cgroup_path(&format!("/system.slice/docker-{ID}.scope")).unwrap();
        assert_eq!((c.runtime.as_deref(), c.unit), (Some("docker"), None));
        let c = parse_cgroup_path(&format!("/machine.slice/libpod-{ID}.scope")).unwrap();
        assert_eq!(c.runtime.as_deref(), Some("podman"));
        let c = parse_cgroup_path("/system.slice/nginx.service").unwrap();
        assert_eq!(c.unit.as_deref(), Some("nginx.service"));
        assert_eq!(c.label(), "nginx.service");
        assert_eq!(parse_cgroup_path("/"), None);
        assert_eq!(parse_cgroup_path("/user.slice"), None);
        assert_eq!(parse_cgroup_path("/kubepods/podnot-a-uid"), None);
    }

    #[test]
    fn hybrid_proc_cgroup_picks_the_line_that_says_most() {
        let text = format!(
            "9:name=systemd:/system.slice/containerd.service\n4:memory:/kubepods/pod{UID}/{ID}\n1:cpu:/\n0::/\n"
        );
        let c = from_proc_cgroup(&text).unwrap();
        assert_eq!(c.pod_uid.as_deref(), Some(UID));
        assert_eq!(from_proc_cgroup("1:cpu:/\n0::/\n"), None);
    }

    #[test]
    fn names_from_log_dirs() {
        let dir = std::env::temp_dir().join(format!("nb-podnames-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(format!("pods/default_web-7f9c_{UID}/envoy"))).unwrap();
        std::fs::create_dir_all(dir.join(format!("pods/default_web-7f9c_{UID}/app"))).unwrap();
        std::fs::create_dir_all(dir.join("containers")).unwrap();
        std::fs::write(
            dir.join(format!("containers/web-7f9c_default_envoy-{ID}.log")),
            "",
        )
        .unwrap();
        let names = PodNames::scan_dir(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let mut c = parse_cgroup_path(&format!("/kubepods/burstable/pod{UID}/{ID}")).unwrap();
        names.name(&mut c);
        assert_eq!(c.label(), "default/web-7f9c/envoy");
        // Another container of the same pod, no link: the pod is named, the container is not.
        let other = ID.replace('3', "4");
        let mut c = parse_cgroup_path(&format!("/kubepods/burstable/pod{UID}/{other}")).unwrap();
        names.name(&mut c);
        assert_eq!(c.pod_label().as_deref(), Some("default/web-7f9c"));
        assert_eq!(c.container, None);
    }
}
