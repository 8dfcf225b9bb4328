//! One incident, every source, one verdict: each test reproduces an incident in a lab (two
//! namespaces joined by netblame's WAN emulator) and checks that `netblame sockets` on the live
//! connection, `netblame bench` (when it runs the transfer) and `netblame pcap` of a capture
//! taken meanwhile all name the same finding id on the same layer (issue: one rule per question).

use netblame_testkit::schema::assert_valid;
use netblame_testkit::{require_root, unique_name};
use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_netblame");
const SERVER: &str = "198.19.0.1";

fn netblame(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run netblame")
}

/// A lab that goes down (with everything started in it) when the test ends, even on panic.
struct Lab(String);

impl Lab {
    fn up(args: &[&str]) -> Lab {
        let name = unique_name("oi");
        let mut a = vec!["lab", "up", name.as_str()];
        a.extend_from_slice(args);
        let o = netblame(&a);
        assert!(
            o.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Lab(name)
    }

    fn exec(&self, side: &str, cmd: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["lab", "exec", &self.0, side, "--"]).args(cmd);
        c
    }

    fn spawn(&self, side: &str, cmd: &[&str]) -> Child {
        self.exec(side, cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in the lab")
    }

    fn json(&self, side: &str, cmd: &[&str]) -> Value {
        let o = self.exec(side, cmd).output().unwrap();
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = netblame(&["lab", "down", &self.0]);
    }
}

/// A background process in the lab, stopped and reaped at the end (lab down kills it too).
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp directory removed at the end.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = std::env::temp_dir().join(unique_name("nboi"));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (id, layer, severity) of findings in a JSON array.
fn ids(findings: &Value) -> Vec<(String, String, String)> {
    findings
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
                    (s("id"), s("layer"), s("severity"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sockets_ids(doc: &Value) -> Vec<(String, String, String)> {
    doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| ids(&c["verdict"]["findings"]))
        .collect()
}

fn pcap_ids(doc: &Value) -> Vec<(String, String, String)> {
    doc["connections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| ids(&c["findings"]))
        .collect()
}

fn names(source: &str, got: &[(String, String, String)], id: &str, layer: &str) {
    assert!(
        got.iter()
            .any(|(i, l, s)| i == id && l == layer && (s == "warning" || s == "critical")),
        "{source} should name {id} ({layer}) at warning or above; it said {got:?}"
    );
}

/// Waits until something listens on `port` on `side` (a loaded machine starts servers slowly).
fn wait_listening(lab: &Lab, side: &str, port: u16) {
    let filter = format!("sport = :{port}");
    for _ in 0..100 {
        let o = lab.exec(side, &["ss", "-Hltn", &filter]).output().unwrap();
        if !String::from_utf8_lossy(&o.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on port {port} on the {side}");
}

/// tcpdump in the client namespace for `secs`, ending cleanly (SIGINT) so the file is whole.
fn capture(lab: &Lab, file: &str, secs: u32, port: u16) -> Child {
    let secs = secs.to_string();
    let filter = format!("tcp port {port}");
    let c = lab.spawn(
        "client",
        &[
            "timeout", "-s", "INT", &secs, "tcpdump", "-i", "any", "-n", "-U", "-s", "160", "-w",
            file, &filter,
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    c
}

fn bench_findings(child: Child) -> Vec<(String, String, String)> {
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "bench client: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("bench -J");
    ids(&v["netblame"]["findings"])
}

fn pcap(file: &str) -> Value {
    let o = netblame(&["pcap", file, "--json"]);
    assert!(
        o.status.success(),
        "pcap: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid("pcap", &v);
    v
}

/// What each source said of one bench transfer through a lab: `netblame bench` itself,
/// `netblame sockets` on the client's connections 2 s into it (when `sockets_interval` is
/// given), and `netblame pcap` of a capture taken at the client meanwhile.
struct Sources {
    bench: Vec<(String, String, String)>,
    sockets: Vec<(String, String, String)>,
    pcap: Vec<(String, String, String)>,
}

fn bench_incident(
    lab: &Lab,
    port: u16,
    client: &[&str],
    sockets_interval: Option<&str>,
) -> Sources {
    let dir = Dir::new();
    let file = dir.file("incident.pcap");
    let p = port.to_string();
    let _server = Bg(lab.spawn("server", &[BIN, "bench", "server", "-p", &p, "--one-off"]));
    wait_listening(lab, "server", port);
    let dump = capture(lab, &file, 9, port);
    let mut args = vec![BIN, "bench", "client", SERVER, "-p", &p, "-t", "5", "-J"];
    args.extend_from_slice(client);
    let bench = lab.spawn("client", &args);
    let sockets = sockets_interval.map(|iv| {
        std::thread::sleep(Duration::from_millis(2000));
        sockets_ids(&lab.json(
            "client",
            &[BIN, "sockets", "--json", "--interval", iv, "--port", &p],
        ))
    });
    let bench = bench_findings(bench);
    let _ = dump.wait_with_output();
    Sources {
        bench,
        sockets: sockets.unwrap_or_default(),
        pcap: pcap_ids(&pcap(&file)),
    }
}

/// A receiver that sets SO_RCVBUF=64 KiB on a 40 ms path: `rcvbuf-fixed-small` from the
/// receiving socket (its rcv_wscale), from the test (it asked for the buffer) and from the
/// capture (the window scale in its SYN).
#[test]
fn a_fixed_receive_buffer_is_rcvbuf_fixed_small_everywhere() {
    if !require_root("a_fixed_receive_buffer_is_rcvbuf_fixed_small_everywhere") {
        return;
    }
    let lab = Lab::up(&["--rtt", "40ms", "--rate", "100mbit"]);
    let said = bench_incident(&lab, 5301, &["-R", "--rcvbuf", "64k"], Some("1s"));
    for (source, got) in [
        ("bench", &said.bench),
        ("sockets", &said.sockets),
        ("pcap", &said.pcap),
    ] {
        names(source, got, "rcvbuf-fixed-small", "application");
    }
}

/// 2% loss on the path: `network-loss` on the network from the sending socket, the test and the
/// capture at the sender.
#[test]
fn a_lossy_path_is_network_loss_everywhere() {
    if !require_root("a_lossy_path_is_network_loss_everywhere") {
        return;
    }
    let lab = Lab::up(&["--rtt", "20ms", "--rate", "50mbit", "--loss", "2%"]);
    let said = bench_incident(&lab, 5302, &["-C", "cubic"], Some("1500ms"));
    for (source, got) in [
        ("bench", &said.bench),
        ("sockets", &said.sockets),
        ("pcap", &said.pcap),
    ] {
        names(source, got, "network-loss", "network");
    }
}

/// A reader that limits itself (`curl --limit-rate 2M`, autotuned buffers) from a fast web
/// server: the application's reading, named from the receiving socket and from the capture,
/// never "raise tcp_rmem".
#[test]
fn a_self_pacing_reader_is_the_application_everywhere() {
    if !require_root("a_self_pacing_reader_is_the_application_everywhere") {
        return;
    }
    let lab = Lab::up(&["--rtt", "20ms", "--rate", "200mbit"]);
    let dir = Dir::new();
    std::fs::write(dir.0.join("big"), vec![0x42u8; 64 << 20]).unwrap();
    let file = dir.file("slow.pcap");
    let root = dir.0.to_string_lossy().into_owned();
    let _web = Bg(lab.spawn(
        "server",
        &[
            "python3",
            "-m",
            "http.server",
            "5303",
            "--bind",
            SERVER,
            "--directory",
            &root,
        ],
    ));
    wait_listening(&lab, "server", 5303);
    let dump = capture(&lab, &file, 10, 5303);
    let url = format!("http://{SERVER}:5303/big");
    let curl = lab.spawn(
        "client",
        &[
            "curl",
            "-s",
            "--limit-rate",
            "2M",
            "--max-time",
            "8",
            "-o",
            "/dev/null",
            &url,
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    // A reader that pauses between bursts has a backlog at most instants, not every one: up to
    // three 1 s samples.
    let mut from_sockets = Vec::new();
    for _ in 0..3 {
        from_sockets = sockets_ids(&lab.json(
            "client",
            &[
                BIN,
                "sockets",
                "--json",
                "--interval",
                "1s",
                "--port",
                "5303",
            ],
        ));
        if !from_sockets.is_empty() {
            break;
        }
    }
    let _ = curl.wait_with_output();
    let _ = dump.wait_with_output();
    let from_pcap = pcap_ids(&pcap(&file));
    for (source, got) in [("sockets", &from_sockets), ("pcap", &from_pcap)] {
        assert!(
            got.iter().any(|(i, l, s)| {
                (i == "receiver-zero-window" || i == "receiver-app-slow")
                    && l == "application"
                    && s != "info"
            }),
            "{source} should blame the reading application: {got:?}"
        );
        assert!(
            got.iter().all(|(i, _, _)| i != "buffer-max-below-bdp"),
            "{source}: a slow reader is not a buffer maximum: {got:?}"
        );
    }
}

/// A deep queue at a 20 Mbit/s bottleneck: the capture at the sender shows RTT climbing with the
/// data in flight, `bufferbloat` on the network.
#[test]
fn a_deep_bottleneck_queue_is_bufferbloat_in_the_capture() {
    if !require_root("a_deep_bottleneck_queue_is_bufferbloat_in_the_capture") {
        return;
    }
    let lab = Lab::up(&["--rtt", "10ms", "--rate", "20mbit", "--queue", "2M"]);
    let said = bench_incident(&lab, 5304, &["-C", "cubic"], None);
    names("pcap", &said.pcap, "bufferbloat", "network");
}
