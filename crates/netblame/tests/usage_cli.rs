//! Usage errors (issue 18 item 8, issue 12 "no dangerous plans from ambiguous input"): every
//! one exits 2 with a single line that names the problem, before anything runs; `--load` of a
//! device is refused instead of read forever (item 7).

use netblame_testkit::run;

fn nb(args: &[&str]) -> (i32, String) {
    let (code, out, err) = run(env!("CARGO_BIN_EXE_netblame"), args);
    (code, format!("{out}{err}"))
}

fn usage_error(args: &[&str], says: &str) {
    let (code, text) = nb(args);
    assert_eq!(code, 2, "{args:?}: {text}");
    assert_eq!(
        text.trim().lines().count(),
        1,
        "{args:?}: not one line: {text}"
    );
    assert!(text.contains(says), "{args:?}: {text} lacks '{says}'");
}

#[test]
fn bare_rates_and_rtts_are_refused_with_a_hint_everywhere() {
    usage_error(
        &["tune", "--rate", "1g", "--rtt", "30"],
        "give a unit, e.g. 30ms",
    );
    usage_error(
        &["tune", "--rate", "100", "--rtt", "30ms"],
        "give a unit, e.g. 100mbit",
    );
    usage_error(&["host", "--rate", "10g", "--rtt", "30"], "--rtt");
    usage_error(&["doctor", "--rate", "10", "--rtt", "30ms"], "--rate");
    usage_error(
        &["calc", "bdp", "--rate", "10g", "--rtt", "30"],
        "e.g. 30ms",
    );
    usage_error(&["lab", "up", "x", "--rate", "100"], "e.g. 100mbit");
}

#[test]
fn zero_rates_are_refused() {
    usage_error(
        &["tune", "--rate", "0mbit", "--rtt", "30ms"],
        "more than zero",
    );
    usage_error(
        &["calc", "bdp", "--rate", "0g", "--rtt", "30ms"],
        "more than zero",
    );
    usage_error(&["tune", "--rate", "0", "--rtt", "30ms"], "--rate");
}

#[test]
fn zero_negative_and_absurd_values_exit_2() {
    usage_error(&["tune", "--rate", "1g", "--rtt", "0ms"], "more than zero");
    usage_error(&["lab", "up", "x", "--rtt", "99999h"], "too long");
    usage_error(&["bench", "client", "h", "-t", "86401"], "86400");
    usage_error(&["bench", "client", "h", "-t", "0"], "out of range");
    usage_error(&["bench", "client", "h", "-M", "1"], "MSS");
    usage_error(&["bench", "client", "h", "-n", "0"], "more than zero");
    usage_error(&["bench", "client", "h", "-l=-5"], "negative");
    usage_error(&["bench", "client", "h", "-p", "0"], "port");
    usage_error(&["bench", "client", "h", "-p", "70000"], "port");
    usage_error(
        &["bench", "server", "--idle-timeout", "0s"],
        "more than zero",
    );
    usage_error(&["bench", "server", "--max-clients", "0"], "more than zero");
    usage_error(&["probe", "127.0.0.1:1", "--count", "0"], "more than zero");
    usage_error(&["probe", "127.0.0.1:1", "--interval=-1s"], "negative");
    usage_error(&["sockets", "--watch", "0"], "more than zero");
    usage_error(&["host", "--duration", "0"], "more than zero");
    usage_error(&["lab", "up", "x", "--mtu", "0"], "576");
    usage_error(&["lab", "up", "bad/name"], "invalid");
    usage_error(&["lab", "down", "bad name"], "invalid");
    usage_error(
        &["lab", "up", "x", "--drop-first-syn", "0"],
        "--drop-first-syn",
    );
    usage_error(&["probe"], "name at least one target");
    usage_error(&["no-such-command"], "unrecognized subcommand");
}

#[test]
fn load_refuses_devices_instead_of_reading_forever() {
    usage_error(&["host", "--load", "/dev/zero"], "not a regular file");
    usage_error(&["probe", "--load", "/dev/zero"], "not a regular file");
    // A file larger than the bound is refused without being read.
    let path = std::env::temp_dir().join(format!("hardening-big-{}.json", std::process::id()));
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(65 << 20).unwrap();
    let (code, text) = nb(&["host", "--load", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("more than the"), "{text}");
}

#[test]
fn error_causes_are_printed_once() {
    let path = std::env::temp_dir().join(format!("hardening-notlog-{}.hlog", std::process::id()));
    std::fs::write(&path, "not a histogram log\n").unwrap();
    let p = path.to_str().unwrap();
    let (code, text) = nb(&["probe", "--load", p]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 1, "{text}");
    assert_eq!(text.matches(p).count(), 1, "{text}");
    let (code, text) = nb(&["probe", "--load", "/nonexistent-hardening"]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(text.matches("/nonexistent-hardening").count(), 1, "{text}");
}

#[test]
fn help_and_version_still_exit_0() {
    assert_eq!(nb(&["--version"]).0, 0);
    assert_eq!(nb(&["tune", "--help"]).0, 0);
}
