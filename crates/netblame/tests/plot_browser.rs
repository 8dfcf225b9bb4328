//! Every picture (`probe`, `bench client`, `pcap --conn`, `lab scenario` with `--plot`) and the
//! `doctor --report` page, made from real traffic and rendered by a real browser: headless
//! Chromium (Debian's `chromium` package) takes a screenshot, the PNG is decoded and must not be
//! blank, and the browser's DOM must hold the expected elements (svg text, finding ids).
//!
//! Without Chromium these tests say so and pass, unless NETBLAME_REQUIRE_ROOT=1 (CI), where a
//! missing browser fails them.

use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn netblame(args: &[&str]) -> (i32, String, String) {
    netblame_testkit::run(env!("CARGO_BIN_EXE_netblame"), args)
}

/// A directory removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(netblame_testkit::unique_name(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The browser, or `None` (after saying why) when it is not installed outside CI.
fn chromium(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("NETBLAME_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!(
            "{test}: {} is missing (apt-get install chromium)",
            path.display()
        );
    }
    eprintln!(
        "{test}: skipped: no browser at {} (apt-get install chromium)",
        path.display()
    );
    None
}

/// Runs headless Chromium with a fresh profile on `page` and returns its standard output; the
/// profile and any process still using it are gone when it returns.
fn browse(browser: &Path, page: &Path, extra: &[String]) -> String {
    let profile = TempDir::new("nb-chromium");
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.0.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let child = cmd.spawn().expect("start chromium");
    let pid = child.id();
    let out = wait_output(child, Duration::from_secs(120));
    // Helpers the browser started must not outlive it.
    let (_, left, _) = netblame_testkit::run("pgrep", &["-f", &profile.0.display().to_string()]);
    for p in left.split_whitespace() {
        let _ = Command::new("kill").args(["-9", p]).status();
    }
    assert!(
        left.trim().is_empty(),
        "chromium {pid} left processes behind: {left}"
    );
    out
}

/// Waits for a child (killing it after `limit`, a safety net for a hung browser) and returns
/// its standard output.
fn wait_output(mut child: Child, limit: Duration) -> String {
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// What a screenshot shows.
struct Shot {
    width: u32,
    height: u32,
    /// Distinct colours (each channel quantised to 32 levels).
    colours: usize,
    /// Share of pixels that are not (near) white.
    inked: f64,
}

/// Screenshots `page` at `size` and decodes the PNG.
fn screenshot(browser: &Path, page: &Path, size: (u32, u32), png: &Path) -> Shot {
    browse(
        browser,
        page,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={},{}", size.0, size.1),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png).expect("chromium wrote no screenshot"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0u64;
    let pixels = (info.width * info.height) as u64;
    for px in buf[..info.buffer_size()].chunks(channels) {
        let (r, g, b) = (px[0], px[1], px[2]);
        colours.insert((r >> 3, g >> 3, b >> 3));
        if r < 235 || g < 235 || b < 235 {
            inked += 1;
        }
    }
    Shot {
        width: info.width,
        height: info.height,
        colours: colours.len(),
        inked: inked as f64 / pixels as f64,
    }
}

/// Renders an SVG (or page) and checks it is a picture, not a blank or a broken image; returns
/// the DOM the browser built.
fn check_rendered(browser: &Path, dir: &TempDir, file: &Path, size: (u32, u32)) -> String {
    let png = dir.file(&format!(
        "{}.png",
        file.file_stem().unwrap().to_string_lossy()
    ));
    let shot = screenshot(browser, file, size, &png);
    assert_eq!((shot.width, shot.height), size);
    assert!(
        shot.colours >= 8,
        "{}: only {} colours: blank?",
        file.display(),
        shot.colours
    );
    assert!(
        shot.inked > 0.01 && shot.inked < 0.95,
        "{}: {:.1}% of the pixels are inked",
        file.display(),
        shot.inked * 100.0
    );
    let dom = browse(browser, file, &["--dump-dom".to_string()]);
    assert!(
        dom.contains("<svg"),
        "{}: no svg in the DOM",
        file.display()
    );
    assert!(
        dom.contains("<text"),
        "{}: no text in the DOM",
        file.display()
    );
    dom
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `netblame probe serve` on loopback and rr probes to it, plotted.
#[test]
fn probe_plot_renders_in_a_browser() {
    let Some(browser) = chromium("probe_plot_renders_in_a_browser") else {
        return;
    };
    let dir = TempDir::new("nb-plot-probe");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(["probe", "serve", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(serve.stderr.take().unwrap());
    let _serve = Proc(serve);
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("answering"), "{line}");
    let svg = dir.file("probe.svg");
    let (code, out, e) = netblame(&[
        "probe",
        "--kind",
        "rr",
        &listen,
        "-c",
        "40",
        "--interval",
        "10ms",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{e}");
    assert!(e.contains("plot written to"), "{e}");
    let dom = check_rendered(&browser, &dir, &svg, (1200, 360));
    assert!(
        dom.contains(&format!("{listen}: round trip over time (40 sent, 0 lost)")),
        "{dom}"
    );
    assert!(dom.contains("round trip histogram"));
    assert!(dom.contains("largest"));
}

/// Starts `netblame bench server --one-off` and waits for its "listening" line.
fn bench_server() -> (Proc, u16) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args([
            "bench",
            "server",
            "-B",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--one-off",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (Proc(child), port)
}

/// A reverse bench against a netblame server: both ends' samples, the server's stopwatches.
#[test]
fn bench_plot_shows_both_ends_in_a_browser() {
    let Some(browser) = chromium("bench_plot_shows_both_ends_in_a_browser") else {
        return;
    };
    let dir = TempDir::new("nb-plot-bench");
    let (_srv, port) = bench_server();
    let svg = dir.file("bench.svg");
    let (code, out, e) = netblame(&[
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
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{e}");
    let dom = check_rendered(&browser, &dir, &svg, (1100, 1070));
    for want in [
        "throughput (Mbit/s)",
        "congestion window (sender)",
        "smoothed RTT (ms)",
        "what limited the server while sending",
        "server #1 sending",
        "client #1 receiving",
        "receiver window",
    ] {
        assert!(dom.contains(want), "missing {want:?}");
    }
}

/// A capture by tcpdump of a transfer to a slow reader with a small receive buffer: the
/// time-sequence graph has its data, ACK and window lines and zero windows marked.
#[test]
fn pcap_time_sequence_graph_renders_in_a_browser() {
    let test = "pcap_time_sequence_graph_renders_in_a_browser";
    if !netblame_testkit::require_root(test) {
        return;
    }
    let Some(browser) = chromium(test) else {
        return;
    };
    let dir = TempDir::new("nb-plot-pcap");
    let pcap = dir.file("slow.pcap");
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.set_recv_buffer_size(64 * 1024).unwrap();
    l.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    l.listen(1).unwrap();
    let l: TcpListener = l.into();
    let port = l.local_addr().unwrap().port();
    let mut dump = Command::new("tcpdump")
        .args([
            "-i",
            "lo",
            "-U",
            "--immediate-mode",
            "-n",
            "-s",
            "128",
            "-Z",
            "root",
            "-w",
        ])
        .arg(&pcap)
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut err = std::io::BufReader::new(dump.stderr.take().unwrap());
    let dump = Proc(dump);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "tcpdump ended");
    }
    // The reader reads nothing until the sender's writes would block (its send buffer full
    // behind a receive window closed to zero), then drains everything.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        wait.recv().unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut got).unwrap();
        got.len()
    });
    let total = 1 << 20;
    {
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // A fixed send buffer, so that it fills instead of growing past the whole transfer.
        c.set_send_buffer_size(64 * 1024).unwrap();
        c.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
            .unwrap();
        let mut c: std::net::TcpStream = c.into();
        c.set_nonblocking(true).unwrap();
        let data = vec![7u8; total];
        let mut sent = 0;
        while sent < total {
            match std::io::Write::write(&mut c, &data[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        go.send(()).unwrap();
        c.set_nonblocking(false).unwrap();
        std::io::Write::write_all(&mut c, &data[sent..]).unwrap();
    }
    assert_eq!(reader.join().unwrap(), total);
    // tcpdump writes each packet as it reads it (-U): wait until both FINs are in the file
    // before stopping it, so no packet is still in its buffer.
    let closed = || {
        let (_, out, _) = netblame(&["pcap", pcap.to_str().unwrap(), "--json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .is_ok_and(|v| v["connections"][0]["conn_state"] == "SF")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !closed() {
        assert!(
            Instant::now() < deadline,
            "tcpdump wrote no complete connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-INT", &dump.0.id().to_string()])
        .status();
    let mut dump = dump;
    let _ = dump.0.wait();

    let (code, out, e) = netblame(&["pcap", pcap.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{e}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let conn = v["connections"]
        .get(0)
        .unwrap_or_else(|| panic!("no connection captured: {out}"));
    assert!(
        conn["from_server"]["zero_window_adverts"].as_u64().unwrap() > 0,
        "no zero window in the capture: {conn}"
    );
    let id = conn["id"].as_u64().unwrap().to_string();
    let svg = dir.file("timeseq.svg");
    let (code, out, e) = netblame(&[
        "pcap",
        pcap.to_str().unwrap(),
        "--conn",
        &id,
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{e}");
    let dom = check_rendered(&browser, &dir, &svg, (1200, 720));
    for want in [
        "time-sequence graph of 127.0.0.1:",
        "data sent",
        "ACK received",
        "receive window edge (ACK + window)",
        "zero window advertised",
        "SYN",
        "FIN",
    ] {
        assert!(dom.contains(want), "missing {want:?}");
    }
    // --plot needs a connection to draw.
    let (code, _, e) = netblame(&["pcap", pcap.to_str().unwrap(), "--plot", "x.svg"]);
    assert_eq!(code, 2, "{e}");
}

/// `doctor --report` while a connection is held by its receive window: the page opens with the
/// verdict, has every finding of the same run's JSON by id, and its pictures.
#[test]
fn doctor_report_renders_in_a_browser() {
    let Some(browser) = chromium("doctor_report_renders_in_a_browser") else {
        return;
    };
    let dir = TempDir::new("nb-report");
    let (_srv, port) = bench_server();
    let bench_svg = dir.file("bench.svg");
    let mut client = Command::new(env!("CARGO_BIN_EXE_netblame"))
        .args(["bench", "client", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "4", "--rcvbuf", "64k", "--plot"])
        .arg(&bench_svg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let html = dir.file("report.html");
    let (code, out, e) = netblame(&[
        "doctor",
        "--duration",
        "2s",
        "--json",
        "--report",
        html.to_str().unwrap(),
    ]);
    assert!(client.wait().unwrap().success());
    assert_eq!(code, 0, "{e}");
    assert!(e.contains("report written to"), "{e}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch, nothing to run.
    for bad in [
        "src=\"http",
        "href=\"http",
        "url(",
        "@import",
        "<script",
        "<link",
    ] {
        assert!(!text.contains(bad), "the report has {bad:?}");
    }
    let dom = check_rendered(&browser, &dir, &html, (1200, 1800));
    let verdict = dom.find("id=\"verdict\"").expect("verdict");
    let findings = dom.find("id=\"findings\"").expect("findings section");
    assert!(verdict < findings, "the verdict comes first");
    let headline = v["verdict"]["headline"].as_str().unwrap();
    assert!(
        dom.contains(
            &headline
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        ),
        "headline {headline:?} not on the page"
    );
    for f in v["findings"].as_array().unwrap() {
        let id = f["id"].as_str().unwrap();
        assert!(
            dom.contains(&format!("id=\"finding-{id}\"")),
            "finding {id} not on the page"
        );
    }
    assert!(dom.contains("id=\"plot-findings-by-layer\""));
    assert!(dom.contains("findings per layer"));

    // Another command's picture attached: an image inside the page.
    let html2 = dir.file("attached.html");
    let (code, _, e) = netblame(&[
        "doctor",
        "--duration",
        "1s",
        "--report",
        html2.to_str().unwrap(),
        "--attach",
        bench_svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{e}");
    let dom = check_rendered(&browser, &dir, &html2, (1200, 2400));
    assert!(dom.contains("id=\"attached-1\""));
    assert!(dom.contains("<img alt=") && dom.contains("src=\"data:image/svg+xml;base64,"));
    // Only SVG documents are attached.
    let (code, _, e) = netblame(&[
        "doctor",
        "--duration",
        "1s",
        "--report",
        html2.to_str().unwrap(),
        "--attach",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{e}");
    assert!(e.contains("not an SVG document"), "{e}");
}

/// A lab scenario's before/after picture (root: namespaces).
#[test]
fn lab_scenario_plot_renders_in_a_browser() {
    let test = "lab_scenario_plot_renders_in_a_browser";
    if !netblame_testkit::require_root(test) {
        return;
    }
    let Some(browser) = chromium(test) else {
        return;
    };
    let dir = TempDir::new("nb-plot-lab");
    let svg = dir.file("lab.svg");
    let (code, out, e) = netblame(&[
        "lab",
        "scenario",
        "rcvbuf",
        "--quick",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{e}");
    let dom = check_rendered(&browser, &dir, &svg, (1200, 380));
    for want in [
        "scenario rcvbuf: what limited the sender",
        "throughput per part",
        "part 1",
        "part 2",
        "rcvbuf-fixed-small",
        "verdict matched",
        "receiver window",
    ] {
        assert!(dom.contains(want), "missing {want:?}");
    }
}
