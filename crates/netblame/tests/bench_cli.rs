//! `netblame bench` end to end: a one-off server and a client as processes, iperf3's `-J`
//! layout with the `netblame` key, the live text lines, and bad input. Every JSON document and
//! line is checked against its schema in `docs/schema/` (`bench`, `bench-stream`,
//! `bench-server`).

use netblame_testkit::schema::{assert_valid, assert_valid_lines};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn netblame(args: &[&str]) -> (i32, String, String) {
    netblame_testkit::run(env!("CARGO_BIN_EXE_netblame"), args)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `netblame bench server --one-off` and waits for its "listening" line.
fn server(extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let mut args = vec!["bench", "server", "-B", "127.0.0.1", "-p"];
    let p = port.to_string();
    args.push(&p);
    args.push("--one-off");
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    // Keep draining the server's output so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (Proc(child), port)
}

fn wait_exit(p: &mut Proc, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = p.0.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn json_follows_iperf3_layout_with_netblame_key() {
    let (mut srv, port) = server(&[]);
    let (code, out, err) = netblame(&[
        "bench",
        "client",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "2",
        "-i",
        "0.5",
        "-R",
        "--rcvbuf",
        "64k",
        "-J",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_valid("bench", &v);
    for key in ["start", "intervals", "end"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let end = &v["end"];
    assert!(end["sum_sent"]["bytes"].as_u64().unwrap() > 0);
    assert!(end["sum_received"]["bytes"].as_u64().unwrap() > 0);
    assert!(end["cpu_utilization_percent"]["host_total"]
        .as_f64()
        .is_some());
    assert!(end["cpu_utilization_percent"]["remote_total"]
        .as_f64()
        .is_some());
    assert_eq!(v["start"]["test_start"]["reverse"], 1);
    let iv = v["intervals"].as_array().unwrap();
    assert!(iv.len() >= 3, "{} intervals", iv.len());
    assert!(iv[0]["streams"][0]["bits_per_second"].as_f64().unwrap() > 0.0);
    let nb = &v["netblame"];
    assert_eq!(nb["streams"][0]["buffers"]["requested_rcvbuf_bytes"], 65536);
    assert!(
        nb["streams"][0]["buffers"]["actual_rcvbuf_bytes"]
            .as_u64()
            .unwrap()
            >= 65536
    );
    // The server's samples came back: it was the sender, so they carry its stopwatches.
    let srv_iv = nb["server"]["intervals"].as_array().unwrap();
    assert!(srv_iv.iter().any(|i| i["streams"][0]["busy_us"].is_u64()));
    let findings = nb["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    assert!(findings
        .iter()
        .all(|f| f["id"].is_string() && f["fix"].is_string()));
    assert_eq!(
        wait_exit(&mut srv, 20),
        Some(0),
        "one-off server exits after the test"
    );
}

#[test]
fn text_mode_prints_live_lines_and_a_verdict() {
    let (_srv, port) = server(&[]);
    let (code, out, err) = netblame(&[
        "bench",
        "client",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "2",
        "-i",
        "0.5",
        "--app-timeout",
        "30s",
    ]);
    assert_eq!(code, 0, "{err}");
    let live = out.lines().filter(|l| l.starts_with("[   1]")).count();
    assert!(live >= 3, "{out}");
    assert!(out.contains("Socket buffers"), "{out}");
    assert!(out.contains("-limited)"), "a limit verdict: {out}");
    assert!(out.contains("application-timeout"), "{out}");
}

#[test]
fn bad_input_exits_cleanly() {
    // Usage errors: 2.
    assert_eq!(netblame(&["bench", "client"]).0, 2);
    assert_eq!(netblame(&["bench", "client", "127.0.0.1", "-P", "0"]).0, 2);
    assert_eq!(
        netblame(&["bench", "client", "127.0.0.1", "-w", "lots"]).0,
        2
    );
    assert_eq!(
        netblame(&["bench", "client", "127.0.0.1", "-R", "--bidir"]).0,
        2
    );
    // Nobody listening: a runtime error, 1, with a message.
    let port = free_port().to_string();
    let (code, _, err) = netblame(&["bench", "client", "127.0.0.1", "-p", &port, "-t", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect"), "{err}");
    // A server refusing the duration: 1, with the server's reason.
    let (_srv, port) = server(&["--max-duration", "1s"]);
    let (code, _, err) = netblame(&[
        "bench",
        "client",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "5",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("server reported an error"), "{err}");
}

#[test]
fn sendfile_client_survives_the_server_closing_mid_block() {
    // `-Z` sends with sendfile, which has no MSG_NOSIGNAL: when the server closes the data
    // connection at the end of the test while a 1 MiB block is still being sent, the client
    // used to die of SIGPIPE (no exit code). Several short runs make the race likely.
    for round in 0..4 {
        let (mut srv, port) = server(&[]);
        let port = port.to_string();
        let args = ["bench", "client", "127.0.0.1", "-p", &port, "-t", "1"];
        let zerocopy = ["-Z", "--skip-rx-copy", "-l", "1M", "-J"];
        let (code, out, err) = netblame(&[&args[..], &zerocopy[..]].concat());
        // -1: killed by a signal.
        assert_eq!(code, 0, "round {round}: {err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_valid("bench", &doc);
        assert!(doc["end"]["sum_received"]["bytes"].as_u64().unwrap() > 0);
        assert!(wait_exit(&mut srv, 10).is_some());
    }
}

/// The events of a `--json-stream` run, checking each line has iperf3's framing (with
/// `schema_version` in front) and matches the `bench-stream` schema.
fn stream_events(out: &str) -> Vec<(String, serde_json::Value)> {
    for l in out.lines() {
        assert!(
            l.starts_with("{\"schema_version\":1,\"event\":\""),
            "not an iperf3 event line: {l}"
        );
    }
    assert_valid_lines("bench-stream", out)
        .into_iter()
        .map(|v| {
            assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
            (v["event"].as_str().unwrap().to_string(), v["data"].clone())
        })
        .collect()
}

#[test]
fn json_stream_writes_iperf3_event_lines() {
    let (_s, port) = server(&[]);
    let p = port.to_string();
    let (code, out, err) = netblame(&[
        "bench",
        "client",
        "127.0.0.1",
        "-p",
        &p,
        "-t",
        "2",
        "-i",
        "0.5",
        "--json-stream",
    ]);
    assert_eq!(code, 0, "{err}");
    let events = stream_events(&out);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"start"), "{names:?}");
    assert_eq!(&names[names.len() - 2..], ["netblame", "end"], "{names:?}");
    assert!(
        names.iter().filter(|n| **n == "interval").count() >= 3,
        "{names:?}"
    );
    let start = &events[0].1;
    assert_eq!(start["test_start"]["num_streams"], 1);
    assert_eq!(start["connected"][0]["remote_port"], port);
    let iv = &events[1].1;
    assert!(
        iv["streams"][0]["bits_per_second"].as_f64().unwrap() > 0.0,
        "{iv}"
    );
    assert!(iv["sum"]["bytes"].as_u64().unwrap() > 0, "{iv}");
    let end = &events.last().unwrap().1;
    assert!(end["sum_sent"]["bytes"].as_u64().unwrap() > 0, "{end}");
    assert!(events[names.len() - 2].1["findings"].is_array());

    // A failure is an `error` event, exit 1.
    let (code, out, _) = netblame(&[
        "bench",
        "client",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-t",
        "1",
        "--json-stream",
        "--connect-timeout",
        "1s",
    ]);
    assert_eq!(code, 1);
    let events = stream_events(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "error");
    assert!(
        events[0].1.as_str().unwrap().contains("cannot connect"),
        "{out}"
    );
}

#[test]
fn logfile_appends_client_and_server_output() {
    let dir = std::env::temp_dir().join(netblame_testkit::unique_name("bench-log"));
    std::fs::create_dir_all(&dir).unwrap();
    let client_log = dir.join("client.log");
    let server_log = dir.join("server.log");
    let port = free_port().to_string();
    let srv = Proc(
        Command::new(env!("CARGO_BIN_EXE_netblame"))
            .args([
                "bench",
                "server",
                "-B",
                "127.0.0.1",
                "-p",
                &port,
                "--logfile",
            ])
            .arg(&server_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&server_log)
        .unwrap_or_default()
        .contains("listening")
    {
        assert!(
            Instant::now() < deadline,
            "server never logged that it listens"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = client_log.to_string_lossy().into_owned();
    for _ in 0..2 {
        let (code, out, err) = netblame(&[
            "bench",
            "client",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "1",
            "--logfile",
            &log,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(out.is_empty(), "stdout went to the log: {out}");
    }
    let text = std::fs::read_to_string(&client_log).unwrap();
    assert_eq!(text.matches("Totals over").count(), 2, "{text}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&server_log)
        .unwrap_or_default()
        .matches("Test from")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "server log lacks the tests");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ip_version_and_bitrate_flags() {
    // An IPv6-only server on ::1, a -6 client with -b.
    let port = free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args([
            "bench",
            "server",
            "-6",
            "-B",
            "::1",
            "-p",
            &port,
            "--one-off",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let _srv = Proc(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.contains("listening on [::1]:"), "{line}");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let (code, out, err) = netblame(&[
        "bench", "client", "::1", "-6", "-p", &port, "-t", "1", "-b", "50m", "-J",
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_valid("bench", &doc);
    assert_eq!(doc["start"]["connected"][0]["remote_host"], "::1");
    assert_eq!(doc["start"]["test_start"]["target_bitrate"], 50_000_000);

    let (code, _, err) = netblame(&["bench", "client", "::1", "-4", "-t", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("no IPv4 address (-4)"), "{err}");
    let (code, _, err) = netblame(&["bench", "server", "-6", "-B", "127.0.0.1"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an IPv6 (-6) address"), "{err}");
    let (code, _, err) = netblame(&["bench", "client", "127.0.0.1", "-b", "100m/10"]);
    assert_eq!(code, 2);
    assert!(err.contains("burst"), "{err}");
    let (code, _, err) = netblame(&["bench", "client", "127.0.0.1", "-4", "-6"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn server_json_stream_writes_iperf3_event_lines_for_a_real_iperf3_client() {
    let (port, mut srv) = one_off_server("--json-stream");
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port, "-t", "2", "-J"])
        .output()
        .expect("iperf3 is installed");
    let iperf: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{iperf}");
    assert_eq!(
        wait_exit(&mut srv, 10),
        Some(0),
        "one-off server did not exit"
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut srv.0.stdout.take().unwrap(), &mut text).unwrap();
    let events = stream_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"start"), "{names:?}");
    assert_eq!(names.last(), Some(&"end"), "{names:?}");
    assert!(
        names.iter().filter(|n| **n == "interval").count() >= 2,
        "{names:?}"
    );
    let start = &events[0].1;
    assert_eq!(start["accepted_connection"]["host"], "127.0.0.1");
    assert_eq!(start["test_start"]["num_streams"], 1);
    let end = &events.last().unwrap().1;
    let got = end["sum_received"]["bytes"].as_u64().unwrap();
    let sent = iperf["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    // Within one second's worth of the transfer.
    assert!(
        got > 0 && got.abs_diff(sent) <= sent / 2,
        "server received {got}, iperf3 sent {sent}"
    );
    assert!(end["receiver_tcp_congestion"].is_string(), "{end}");
}

/// A one-off netblame server on 127.0.0.1 writing `output` (`-J` or `--json-stream`) to a
/// pipe, listening when this returns.
fn one_off_server(output: &str) -> (String, Proc) {
    let port = free_port().to_string();
    let srv = Proc(
        Command::new(env!("CARGO_BIN_EXE_netblame"))
            .args([
                "bench",
                "server",
                "-B",
                "127.0.0.1",
                "-p",
                &port,
                "-1",
                output,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Nothing is printed before a test: wait for the socket instead.
    wait_listening(&port);
    (port, srv)
}

/// Waits until something listens on TCP `port` (a server that prints nothing before a test).
fn wait_listening(port: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while netblame_testkit::run_ok(&["ss", "-Hltn", &format!("sport = :{port}")])
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A one-off `iperf3 -s` (with `extra` flags) on a free port.
fn iperf3_server(extra: &[&str]) -> (Proc, String) {
    let port = free_port().to_string();
    let srv = Proc(
        Command::new("iperf3")
            .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 is installed"),
    );
    wait_listening(&port);
    (srv, port)
}

#[test]
fn json_against_a_real_iperf3_server_matches_the_schemas() {
    // -J with --bidir against `iperf3 -s -J`: both directions' sums, the server's JSON output.
    let (_iperf, port) = iperf3_server(&["-J"]);
    let (code, out, err) = netblame(&[
        "bench",
        "client",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "1",
        "--bidir",
        "--get-server-output",
        "-J",
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_valid("bench", &doc);
    assert!(
        doc["end"]["sum_sent_bidir_reverse"]["bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        doc["netblame"]["server"].is_null(),
        "iperf3 is not netblame"
    );
    assert!(doc["netblame"]["server_output"].is_object(), "{doc}");

    // --json-stream with -R against a text `iperf3 -s`: a server_output_text event.
    let (_iperf, port) = iperf3_server(&[]);
    let (code, out, err) = netblame(&[
        "bench",
        "client",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "1",
        "-R",
        "--get-server-output",
        "--json-stream",
    ]);
    assert_eq!(code, 0, "{err}");
    let events = stream_events(&out);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"server_output_text"), "{names:?}");
    assert_eq!(&names[names.len() - 2..], ["netblame", "end"], "{names:?}");
}

#[test]
fn server_json_lines_match_the_schema() {
    let (port, mut srv) = one_off_server("-J");
    // Garbage instead of a cookie: a `dropped` line (it does not end a one-off server).
    {
        let mut junk = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        std::io::Write::write_all(&mut junk, &[b'x'; 64]).unwrap();
        junk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut junk, &mut rest);
    }
    // A test in which the server sends: a `test` line with the server's findings.
    let (code, _, err) = netblame(&["bench", "client", "127.0.0.1", "-p", &port, "-t", "1", "-R"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        wait_exit(&mut srv, 10),
        Some(0),
        "one-off server did not exit"
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut srv.0.stdout.take().unwrap(), &mut text).unwrap();
    let lines = assert_valid_lines("bench-server", &text);
    assert!(
        lines
            .iter()
            .any(|l| l["dropped"].is_string() && l["reason"].is_string()),
        "{text}"
    );
    let test = lines.iter().find(|l| l["test"].is_object()).expect(&text);
    assert!(test["test"]["streams"][0]["server_sends"] == true, "{test}");
    assert!(test["findings"].is_array(), "{test}");
}
