//! `netblame pcap` end to end on a capture the test makes with tcpdump.

use netblame_testkit::schema::assert_valid;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The JSON document on `out`'s stdout, checked against its schema (`pcap A B` writes the
/// comparison, `pcap FILE` the capture).
fn json_of(out: &std::process::Output) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema = if v.get("a").is_some() {
        "pcap-compare"
    } else {
        "pcap"
    };
    assert_valid(schema, &v);
    v
}

fn netblame(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

struct Dump(Child);
impl Drop for Dump {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One exchange on loopback to `port`'s listener: request, `reply` bytes, close.
fn exchange(l: TcpListener, reply: usize) {
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 4];
        s.read_exact(&mut req).unwrap();
        s.write_all(&vec![9u8; reply]).unwrap();
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET ").unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert_eq!(got.len(), reply);
}

/// Reads a child's stderr until `line` appears (or the child closes it).
fn wait_for(err: &mut impl Read, line: &str) -> String {
    let mut seen = Vec::new();
    let mut b = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains(line) {
        if err.read(&mut b).unwrap_or(0) != 1 {
            break;
        }
        seen.push(b[0]);
    }
    String::from_utf8_lossy(&seen).to_string()
}

/// `tcpdump -w - | netblame pcap -`: a real tcpdump writing to a pipe netblame reads.
#[test]
fn pcap_reads_standard_input_from_a_tcpdump_pipe() {
    if !netblame_testkit::require_root("pcap_reads_standard_input_from_a_tcpdump_pipe") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut dump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "--immediate-mode", "-n", "-s", "200"])
        .args(["-Z", "root", "-w", "-"])
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let pipe = dump.stdout.take().unwrap();
    let mut err = dump.stderr.take().unwrap();
    let dump = Dump(dump);
    let nb = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(["pcap", "-", "--json"])
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = wait_for(&mut err, "listening on");
    assert!(seen.contains("listening on"), "tcpdump: {seen}");
    exchange(l, 100 * 1024);
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &dump.0.id().to_string()])
        .status();
    let out = nb.wait_with_output().unwrap();
    drop(dump);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["file"], "standard input");
    assert_eq!(v["connections_total"], 1);
    let c = &v["connections"][0];
    assert_eq!(c["server"]["port"], port);
    assert_eq!(c["from_server"]["unique_bytes"], 100 * 1024);
    assert_eq!(c["conn_state"], "SF");
    // Standard input cannot be one of two captures.
    let out = netblame(&["pcap", "-", "-", "--json"]);
    assert_eq!(out.status.code(), Some(1));
}

/// `netblame pcap --live lo --duration 3s tcp port P` on real traffic.
#[test]
fn pcap_live_capture_on_loopback() {
    if !netblame_testkit::require_root("pcap_live_capture_on_loopback") {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let filter = format!("tcp port {port}");
    let mut nb = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(["pcap", "--live", "lo", "--duration", "3s", "--json"])
        .args(filter.split(' '))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = nb.stderr.take().unwrap();
    let seen = wait_for(&mut err, "capturing on lo");
    assert!(seen.contains("capturing on lo"), "{seen}");
    // The capture is open once that line is printed; give libpcap's ring a moment.
    std::thread::sleep(Duration::from_millis(200));
    exchange(l, 300 * 1024);
    let out = nb.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = json_of(&out);
    assert_eq!(v["format"], "live");
    assert_eq!(v["connections_total"], 1, "{v}");
    let c = &v["connections"][0];
    assert_eq!(c["server"]["port"], port);
    assert_eq!(c["from_server"]["unique_bytes"], 300 * 1024);
    assert_eq!(c["handshake"]["syn_count"], 1);
    // A bad filter and a missing interface are clear errors.
    let out = netblame(&[
        "pcap",
        "--live",
        "lo",
        "--duration",
        "1s",
        "tcp",
        "port",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad capture filter"));
    let out = netblame(&["pcap", "--live", "nbpcap-none0", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot capture on nbpcap-none0"));
}

/// Captures one short exchange (request, 200 KiB reply, close) on loopback.
fn make_capture(path: &std::path::Path) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut child = Command::new("tcpdump")
        .args([
            "-i",
            "lo",
            "-U",
            "--immediate-mode",
            "-n",
            "-s",
            "200",
            "-Z",
            "root",
            "-w",
        ])
        .arg(path)
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut err = child.stderr.take().unwrap();
    let mut dump = Dump(child);
    // Wait for "listening on".
    let mut seen = Vec::new();
    let mut b = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("listening on") {
        assert_eq!(err.read(&mut b).unwrap(), 1, "tcpdump exited");
        seen.push(b[0]);
    }
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 4];
        s.read_exact(&mut req).unwrap();
        s.write_all(&vec![9u8; 200 * 1024]).unwrap();
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET ").unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &dump.0.id().to_string()])
        .status();
    let _ = dump.0.wait();
    port
}

#[test]
fn pcap_table_details_json_and_errors() {
    if !netblame_testkit::require_root("pcap_table_details_json_and_errors") {
        return;
    }
    let dir = std::env::temp_dir().join(netblame_testkit::unique_name("nbpcapcli"));
    std::fs::create_dir_all(&dir).unwrap();
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let cap = dir.join("cli.pcap");
    let port = make_capture(&cap);
    let capf = cap.to_str().unwrap();

    let out = netblame(&["pcap", capf]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("VERDICT"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("SF"), "{text}");
    assert!(text.contains("1 connection\n"), "singular: {text}");

    // Narrow terminal: the table fits (cut or wrapped cells), the words of the verdict remain.
    let narrow = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(["pcap", capf])
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    let narrow = String::from_utf8_lossy(&narrow.stdout);
    let table = narrow.lines().skip_while(|l| !l.starts_with("ID"));
    for line in table.take_while(|l| !l.is_empty()) {
        assert!(
            line.chars().count() <= 100,
            "wider than 100: {line:?}\n{narrow}"
        );
    }

    let out = netblame(&["pcap", capf, "--json"]);
    assert!(out.status.success());
    let v = json_of(&out);
    let c = &v["connections"][0];
    assert_eq!(c["server"]["port"], port);
    assert_eq!(c["from_server"]["unique_bytes"], 200 * 1024);
    assert_eq!(c["from_client"]["unique_bytes"], 4);
    assert_eq!(c["conn_state"], "SF");
    assert!(c["handshake"]["rtt_us"].is_u64());
    // A healthy exchange: at most informational findings (a brief zero window on loopback is real).
    for f in c["findings"].as_array().unwrap() {
        assert_eq!(f["severity"], "info", "{f}");
    }
    assert!(c["verdict"].is_string());

    let id = c["id"].as_u64().unwrap().to_string();
    let out = netblame(&["pcap", capf, "--conn", &id, "--interval", "100ms"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("time series (100 ms intervals)"), "{text}");
    assert!(text.contains("handshake:"), "{text}");
    let out = netblame(&["pcap", capf, "--port", &port.to_string(), "--json"]);
    let v = json_of(&out);
    assert!(!v["connections"][0]["series"].as_array().unwrap().is_empty());

    // The same file twice is refused; a copy of it matches itself, nothing one-sided.
    let out = netblame(&["pcap", capf, capf]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the same file"));
    let copy = dir.join("copy.pcap");
    std::fs::copy(&cap, &copy).unwrap();
    let out = netblame(&["pcap", capf, copy.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["matches"].as_array().unwrap().len(), 1);
    assert_eq!(v["matches"][0]["only_in_a"]["client_to_server"], 0);

    // Errors: no such connection, a truncated file (warning, results), garbage, no file.
    let out = netblame(&["pcap", capf, "--conn", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection"));
    let bytes = std::fs::read(&cap).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let out = netblame(&["pcap", cut.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, b"this is not a capture file at all, not even close").unwrap();
    let out = netblame(&["pcap", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap"));
    let out = netblame(&["pcap", dir.join("missing.pcap").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out = netblame(&["pcap"]);
    assert_eq!(out.status.code(), Some(2));
}
