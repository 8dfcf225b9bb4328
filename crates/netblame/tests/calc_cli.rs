//! `netblame calc` end to end: the seed figures, JSON keys with units, and bad input.

use netblame_testkit::schema::assert_valid;

fn netblame(args: &[&str]) -> (i32, String, String) {
    netblame_testkit::run(env!("CARGO_BIN_EXE_netblame"), args)
}

fn json(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = netblame(args);
    assert_eq!(code, 0, "{err}");
    let v = serde_json::from_str(&out).unwrap();
    assert_valid(&format!("calc-{}", args[1]), &v);
    v
}

#[test]
fn ceiling_seed_figure() {
    let (code, out, _) = netblame(&["calc", "ceiling", "--window", "65535", "--rtt", "30ms"]);
    assert_eq!(code, 0);
    assert!(out.contains("17.48 Mbit/s"), "{out}");
    let v = json(&[
        "calc", "ceiling", "--window", "65535", "--rtt", "30ms", "--json",
    ]);
    assert!((v["bits_per_second"].as_f64().unwrap() - 17_476_000.0).abs() < 1.0);
}

#[test]
fn bdp_seed_figure() {
    let (code, out, _) = netblame(&[
        "calc", "bdp", "--rate", "10gbit", "--rtt", "30ms", "--kernel", "6.6.33",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("37,500,000"), "{out}");
    assert!(out.contains("net.ipv4.tcp_rmem"), "{out}");
    let v = json(&[
        "calc", "bdp", "--rate", "10gbit", "--rtt", "30ms", "--kernel", "6.6.33", "--json",
    ]);
    assert_eq!(v["bdp_bytes"], 37_500_000);
    assert!(v["buffer_bytes"].as_u64().unwrap() >= 75_000_000);
}

#[test]
fn window_netflix_side_by_side() {
    let v = json(&[
        "calc",
        "window",
        "--rcvbuf",
        "64k",
        "--kernel",
        "6.6.10",
        "--compare",
        "6.5.13",
        "--rtt",
        "137ms",
        "--size",
        "10M",
        "--timeout",
        "30s",
        "--json",
    ]);
    let k = &v["kernels"];
    assert_eq!(k[0]["sk_rcvbuf_bytes"], 131_072);
    assert_eq!(k[0]["window_clamp_bytes"], 33_280);
    assert_eq!(k[0]["rcv_wscale"], 0);
    assert_eq!(k[0]["misses_timeout"], true);
    assert_eq!(k[1]["window_clamp_bytes"], 65_536);
    assert_eq!(k[1]["rcv_wscale"], 1);
    assert_eq!(k[1]["misses_timeout"], false);
    let t_new = k[0]["transfer_time_s"].as_f64().unwrap();
    let t_old = k[1]["transfer_time_s"].as_f64().unwrap();
    assert!(
        (21.0..23.5).contains(&t_old) && t_new > 1.9 * t_old,
        "{t_old} {t_new}"
    );
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"kernel-scaling-ratio-6.6") && ids.contains(&"transfer-misses-timeout"),
        "{ids:?}"
    );
    let fixed = json(&[
        "calc", "window", "--rcvbuf", "64k", "--kernel", "6.6.33", "--json",
    ]);
    assert_eq!(fixed["kernels"][0]["initial_window_bytes"], 65_536);
}

#[test]
fn window_defaults_to_the_running_kernel() {
    let v = json(&["calc", "window", "--json"]);
    assert_eq!(v["kernels"][0]["settings"], "this host's sysctls");
    assert_eq!(v["kernels"][0]["rcvbuf_locked"], false);
}

#[test]
fn bad_input_is_one_clear_line_and_exit_2() {
    for args in [
        &["calc", "ceiling", "--window", "12x", "--rtt", "30ms"][..],
        &["calc", "ceiling", "--window", "-5", "--rtt", "30ms"],
        &["calc", "ceiling", "--window", "64k", "--rtt", "30"],
        &["calc", "bdp", "--rate", "fast", "--rtt", "30ms"],
        &["calc", "window", "--kernel", "banana"],
        &["calc", "nope"],
    ] {
        let (code, out, err) = netblame(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty());
        assert!(err.starts_with("error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
    // A zero RTT is a usage error too (exit 2, one line).
    let (code, _, err) = netblame(&["calc", "ceiling", "--window", "64k", "--rtt", "0ms"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("more than zero"), "{err}");
}
