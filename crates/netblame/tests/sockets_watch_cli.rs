//! `sockets --watch --json --problems`: one small JSON line per refresh holding only the
//! connections with a problem (issue 18 item 10), with the namespace of each.

use netblame_testkit::schema::assert_valid_lines;
use serde_json::Value;
use std::process::Command;

#[test]
fn watch_problems_json_lines_hold_only_problem_connections() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let s = l.accept().unwrap().0;
    let p = port.to_string();
    let run = |problems: bool| -> Vec<Value> {
        let mut args = vec![
            "sockets", "--watch", "0.2", "--count", "2", "--json", "--port", &p,
        ];
        if problems {
            args.push("--problems");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_netblame"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_valid_lines("sockets", &String::from_utf8(out.stdout).unwrap())
    };
    // Idle, healthy loopback connections: listed without --problems, absent with it.
    let all = run(false);
    assert_eq!(all.len(), 2);
    for line in &all {
        let conns = line["connections"].as_array().unwrap();
        assert_eq!(conns.len(), 2);
        assert!(conns.iter().all(|c| c["netns"]["inode"].as_u64().is_some()));
        assert!(conns
            .iter()
            .all(|c| c["owners"][0]["pid"] == std::process::id()));
    }
    let problems = run(true);
    assert_eq!(problems.len(), 2);
    for line in &problems {
        assert!(line["connections"].as_array().unwrap().is_empty(), "{line}");
        assert!(line["interval_us"].as_u64().is_some());
    }
    drop((c, s));
}
