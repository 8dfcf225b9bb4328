//! `netblame lab` end to end: up, exec, list, down, gc after SIGKILL and SIGINT, scenarios.
//! Each test checks that nothing is left: no namespace (`ip netns list`), no process, no state.

use netblame_testkit::schema::assert_valid;
use netblame_testkit::{require_root, unique_name};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn netblame(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(args)
        .output()
        .expect("run netblame")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn netns_list() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string()
}

fn lab_pid(name: &str) -> i32 {
    let state = std::fs::read_to_string(format!("/run/netblame/labs/{name}/state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

fn process_exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn assert_nothing_left(name: &str, pid: Option<i32>) {
    let list = netns_list();
    assert!(
        !list.contains(&format!("nbl-{name}-")),
        "namespaces left: {list}"
    );
    assert!(
        !std::path::Path::new(&format!("/run/netblame/labs/{name}")).exists(),
        "state dir left"
    );
    if let Some(pid) = pid {
        let start = Instant::now();
        while process_exists(pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!process_exists(pid), "lab process {pid} still runs");
    }
}

/// Brings a lab down whatever happens in the test.
struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = netblame(&["lab", "down", &self.0]);
    }
}

#[test]
fn up_exec_list_down_leaves_nothing() {
    if !require_root("up_exec_list_down_leaves_nothing") {
        return;
    }
    let name = unique_name("cli");
    let _g = Guard(name.clone());
    let o = netblame(&[
        "lab",
        "up",
        &name,
        "--json",
        "--rtt",
        "20ms",
        "--rate",
        "100mbit",
        "--server-sysctl",
        "net.ipv4.tcp_rmem=4096 131072 1048576",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let up: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("lab-up", &up);
    assert_eq!(up["name"], name.as_str());
    assert_eq!(
        up["config"]["uplink"]["delay"]["nanos"], 10_000_000,
        "{up:#}"
    );
    let pid = lab_pid(&name);
    assert!(netns_list().contains(&format!("nbl-{name}-c")));

    // The peer's address, and a real round trip through the emulator.
    let o = netblame(&[
        "lab",
        "exec",
        &name,
        "client",
        "--",
        "sh",
        "-c",
        "echo $NETBLAME_PEER",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "198.19.0.1",
        "{}",
        text(&o)
    );
    let mut server = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args([
            "lab",
            "exec",
            &name,
            "server",
            "--",
            "iperf3",
            "-s",
            "-1",
            "-B",
            "198.19.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let o = netblame(&[
        "lab",
        "exec",
        &name,
        "client",
        "--",
        "sh",
        "-c",
        "iperf3 -c $NETBLAME_PEER -t 1 -J",
    ]);
    let _ = server.wait();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    // The lab's 100 Mbit/s bottleneck bounds iperf3's goodput.
    assert!(
        bps > 1e6 && bps < 100e6,
        "iperf3 through the lab: {bps} bit/s"
    );
    let o = netblame(&[
        "lab",
        "exec",
        &name,
        "server",
        "--",
        "sysctl",
        "-n",
        "net.ipv4.tcp_rmem",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["4096", "131072", "1048576"]
    );
    // Exit codes pass through.
    let o = netblame(&["lab", "exec", &name, "server", "--", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));

    let o = netblame(&["lab", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("lab-list", &v);
    let me = v["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["state"]["name"] == name.as_str())
        .expect("listed");
    assert_eq!(me["alive"], true);
    assert_eq!(me["counters"]["tun_mode"], "offload", "{me:#}");

    // A second lab of the same name is refused.
    let o = netblame(&["lab", "up", &name, "--rtt", "1ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already running"), "{}", text(&o));

    let o = netblame(&["lab", "down", &name]);
    assert!(o.status.success(), "{}", text(&o));
    assert_nothing_left(&name, Some(pid));
}

#[test]
fn no_offload_runs_the_plain_path() {
    if !require_root("no_offload_runs_the_plain_path") {
        return;
    }
    let name = unique_name("plain");
    let _g = Guard(name.clone());
    let o = netblame(&["lab", "up", &name, "--rtt", "2ms", "--no-offload"]);
    assert!(o.status.success(), "{}", text(&o));
    let pid = lab_pid(&name);
    // The counters reach the state file within a second or so.
    let mut mode = serde_json::Value::Null;
    for _ in 0..50 {
        let o = netblame(&["lab", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        mode = v["labs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["state"]["name"] == name.as_str())
            .map(|l| l["counters"]["tun_mode"].clone())
            .unwrap_or_default();
        if mode == "plain" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(mode, "plain");
    let o = netblame(&["lab", "down", &name]);
    assert!(o.status.success(), "{}", text(&o));
    assert_nothing_left(&name, Some(pid));
}

#[test]
fn sigkill_of_the_emulator_leaves_nothing_and_list_says_why() {
    if !require_root("sigkill_of_the_emulator_leaves_nothing_and_list_says_why") {
        return;
    }
    let name = unique_name("hardening-k");
    let _g = Guard(name.clone());
    let o = netblame(&["lab", "up", &name, "--rtt", "10ms"]);
    assert!(o.status.success(), "{}", text(&o));
    let pid = lab_pid(&name);
    let child = exec_background(&name, "client");
    // SAFETY: the pid is the lab process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Its supervisor removes everything at once: no `lab gc` needed.
    let start = Instant::now();
    while std::path::Path::new(&format!("/run/netblame/labs/{name}")).exists()
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_nothing_left(&name, Some(pid));
    assert_gone(child);
    // `lab list` says why the lab is gone (another test's gc may have seen it first; the
    // supervisor then still fills in the cause).
    let o = netblame(&["lab", "list"]);
    assert!(
        text(&o).contains(&format!("lab {name} is gone"))
            && text(&o).contains("killed by signal 9"),
        "{}",
        text(&o)
    );
    let o = netblame(&["lab", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("lab-list", &v);
    assert!(
        v["labs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["gone"]["name"] == name.as_str() && l["alive"] == false),
        "{v:#}"
    );
    let o = netblame(&["lab", "gc", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("lab-gc", &v);
    assert!(v["labs"].is_array() && v["namespaces"].is_array(), "{v}");
    assert!(!text(&netblame(&["lab", "list"])).contains(&name));

    // SIGINT: the lab process tears itself down.
    let o = netblame(&["lab", "up", &name, "--rtt", "10ms"]);
    assert!(o.status.success(), "{}", text(&o));
    let pid = lab_pid(&name);
    let child = exec_background(&name, "server");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let start = Instant::now();
    while std::path::Path::new(&format!("/run/netblame/labs/{name}")).exists()
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_nothing_left(&name, Some(pid));
    assert_gone(child);
}

/// Starts `sleep 300` in the background on one side of a lab (it outlives `lab exec`); returns
/// its pid.
fn exec_background(name: &str, side: &str) -> i32 {
    let o = netblame(&[
        "lab",
        "exec",
        name,
        side,
        "--",
        "sh",
        "-c",
        "sleep 300 >/dev/null 2>&1 & echo $!",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let pid: i32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(process_exists(pid));
    pid
}

fn assert_gone(pid: i32) {
    let start = Instant::now();
    while process_exists(pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !process_exists(pid),
        "process {pid} started in the lab still runs"
    );
}

#[test]
fn down_kills_what_exec_left_running() {
    if !require_root("down_kills_what_exec_left_running") {
        return;
    }
    let name = unique_name("hardening-d");
    let _g = Guard(name.clone());
    let o = netblame(&["lab", "up", &name, "--rtt", "1ms"]);
    assert!(o.status.success(), "{}", text(&o));
    let pid = lab_pid(&name);
    let kids = [
        exec_background(&name, "client"),
        exec_background(&name, "server"),
    ];
    let o = netblame(&["lab", "down", &name]);
    assert!(o.status.success(), "{}", text(&o));
    assert_nothing_left(&name, Some(pid));
    for k in kids {
        assert_gone(k);
    }
}

#[test]
fn lab_sysctls_outside_the_namespace_are_refused() {
    let before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let o = netblame(&[
        "lab",
        "up",
        "hardening-s",
        "--server-sysctl",
        "kernel.hostname=x",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not a per-namespace sysctl"),
        "{}",
        text(&o)
    );
    assert_eq!(text(&o).trim().lines().count(), 1, "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        before
    );
    let o = netblame(&["lab", "up", "hardening-s", "--client-sysctl", "net..ipv4=1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn bad_input_is_a_clear_error() {
    let o = netblame(&["lab", "up", "x", "--rtt", "100"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = netblame(&["lab", "up", "x", "--loss", "150%"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = netblame(&["lab", "scenario", "--list"]);
    assert!(o.status.success());
    for s in [
        "rcvbuf",
        "slow-reader",
        "bdp",
        "syn-loss",
        "lossy-path",
        "collapse",
        "healthy",
    ] {
        assert!(text(&o).contains(s), "{s} missing from --list");
    }
    let o = netblame(&["lab", "scenario", "--list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("lab-scenarios", &v);
    let listed: Vec<&str> = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        [
            "rcvbuf",
            "slow-reader",
            "bdp",
            "syn-loss",
            "lossy-path",
            "collapse",
            "healthy"
        ]
        .iter()
        .all(|s| listed.contains(s)),
        "{listed:?}"
    );
    if !require_root("bad_input_is_a_clear_error (root part)") {
        return;
    }
    let o = netblame(&["lab", "up", "bad name", "--rtt", "1ms"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("invalid"), "{}", text(&o));
    let o = netblame(&["lab", "up", "netemtest", "--backend", "netem"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("sch_netem"), "{}", text(&o));
    assert!(!netns_list().contains("nbl-netemtest"));
    let o = netblame(&["lab", "exec", "no-such-lab", "client", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no lab named"), "{}", text(&o));
    let o = netblame(&["lab", "scenario", "nope"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn scenario_syn_loss_names_the_network() {
    if !require_root("scenario_syn_loss_names_the_network") {
        return;
    }
    let o = netblame(&["lab", "scenario", "syn-loss", "--quick", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("lab-scenario", &doc);
    assert_eq!(doc["passed"], true);
    let v = &doc["reports"][0];
    assert_eq!(v["passed"], true);
    let f = &v["parts"][0]["findings"][0];
    assert_eq!(f["id"], "syn-retransmit");
    assert_eq!(f["layer"], "network");
    // netblame probe, run through the same lab, sees the SYN-retransmit signature too.
    let probe = &v["parts"][0]["crosscheck"];
    assert_eq!(probe["tool"], "probe");
    assert!(probe["error"].is_null(), "{probe}");
    assert!(
        probe["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["layer"] == "network" && f["severity"] != "info"),
        "{probe}"
    );
    assert!(
        !netns_list().contains("nbl-sc-syn-loss-"),
        "scenario left namespaces: {}",
        netns_list()
    );
}

#[test]
fn ctrl_c_during_a_scenario_leaves_nothing() {
    if !require_root("ctrl_c_during_a_scenario_leaves_nothing") {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(["lab", "scenario", "bdp"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("nbl-sc-bdp-{}-", child.id() % 100_000);
    let start = Instant::now();
    while !netns_list().contains(&prefix) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        netns_list().contains(&prefix),
        "the scenario never built its lab"
    );
    // SAFETY: the pid is the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(!netns_list().contains(&prefix), "left: {}", netns_list());
}

#[test]
fn scenario_cross_checks_with_netblame_bench_inside_the_lab() {
    if !require_root("scenario_cross_checks_with_netblame_bench_inside_the_lab") {
        return;
    }
    let o = netblame(&["lab", "scenario", "healthy", "--quick", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("lab-scenario", &doc);
    let v = &doc["reports"][0];
    let part = &v["parts"][0];
    assert_eq!(v["passed"], true, "{part}");
    let bench = &part["crosscheck"];
    assert_eq!(bench["tool"], "bench");
    assert!(
        bench["error"].is_null(),
        "netblame bench failed inside the lab: {bench}"
    );
    assert!(bench["command"]
        .as_str()
        .unwrap()
        .starts_with("netblame bench client 198.19.0.1"));
    assert!(bench["bits_per_second"].as_f64().unwrap() > 0.0, "{bench}");
    // Its findings are its own rules' (reported next to the verdict, not part of it).
    assert!(bench["findings"].is_array(), "{bench}");
}
