//! Shell completions, man pages and `--color`: generated for every shell and subcommand, and
//! colour decided by the flag, NO_COLOR (empty counts as unset) and CLICOLOR_FORCE.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_netblame");

fn netblame(args: &[&str]) -> (i32, String, String) {
    netblame_testkit::run(BIN, args)
}

/// Every subcommand path of netblame (`["bench", "client"]`, ...), read from its own --help.
fn subcommand_paths() -> Vec<Vec<String>> {
    fn walk(prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
        args.push("--help");
        let (_, help, _) = netblame(&args);
        let Some(section) = help.split("Commands:\n").nth(1) else {
            return;
        };
        for line in section.lines() {
            if !line.starts_with("  ") || line.starts_with("   ") {
                if line.trim().is_empty() || !line.starts_with(' ') {
                    break;
                }
                continue;
            }
            let name = line.split_whitespace().next().unwrap().to_string();
            if name == "help" {
                continue;
            }
            let mut path = prefix.to_vec();
            path.push(name);
            out.push(path.clone());
            walk(&path, out);
        }
    }
    let mut out = Vec::new();
    walk(&[], &mut out);
    out
}

#[test]
fn completions_generate_for_every_shell_and_name_every_subcommand() {
    let paths = subcommand_paths();
    assert!(paths.iter().any(|p| p == &["bench", "client"]), "{paths:?}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = netblame(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for path in &paths {
            let leaf = path.last().unwrap();
            assert!(
                out.contains(leaf.as_str()),
                "{shell} completion lacks {path:?}"
            );
        }
        // fish spells long flags `-l json`, the others `--json`.
        assert!(out.contains("json") && out.contains("color"), "{shell}");
    }
    let (code, _, err) = netblame(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("bash") && err.contains("powershell"), "{err}");
}

#[test]
fn bash_completion_script_loads_and_completes_subcommands() {
    let (_, script, _) = netblame(&["completions", "bash"]);
    let dir = std::env::temp_dir().join(netblame_testkit::unique_name("mature-compl"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("netblame.bash");
    std::fs::write(&file, script).unwrap();
    // Ask the real bash for the completions of `netblame be` and `netblame bench c`.
    let probe = format!(
        "source {}; COMP_WORDS=(netblame be); COMP_CWORD=1; _netblame netblame be netblame; \
         echo \"${{COMPREPLY[@]}}\"; COMP_WORDS=(netblame bench c); COMP_CWORD=2; \
         _netblame netblame c bench; echo \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines[0].trim(), "bench", "{text}");
    assert_eq!(lines[1].trim(), "client", "{text}");
}

#[test]
fn man_pages_one_per_subcommand_and_the_main_page_on_stdout() {
    let (code, page, err) = netblame(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH netblame 1"), "{page}");
    for cmd in ["doctor", "bench", "probe", "completions", "man"] {
        assert!(page.contains(cmd), "main page lacks {cmd}");
    }
    let (code, page, _) = netblame(&["man", "bench", "client"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH netblame-bench-client 1"), "{page}");
    assert!(
        page.contains("netblame 0.1") || page.contains("netblame 0."),
        "{page}"
    );

    let dir = std::env::temp_dir().join(netblame_testkit::unique_name("mature-man"));
    let (code, _, err) = netblame(&["man", "--out", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut expected = vec!["netblame.1".to_string()];
    expected.extend(
        subcommand_paths()
            .iter()
            .map(|p| format!("netblame-{}.1", p.join("-"))),
    );
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    expected.sort();
    assert_eq!(written, expected);
    assert!(
        err.contains(&format!("wrote {} man pages", expected.len())),
        "{err}"
    );
    // Each page is valid roff as far as man(1)'s formatter is concerned.
    if Command::new("groff").arg("--version").output().is_ok() {
        for name in &written {
            let out = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(dir.join(name))
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let (code, _, err) = netblame(&["man", "bench", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("server, client"), "{err}");
}

/// Runs `netblame calc window ...` (its findings' severity tags are coloured) with the given environment
/// and flags; stdout is a pipe, so `auto` means no colour unless forced.
fn coloured(env: &[(&str, &str)], flags: &[&str]) -> bool {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(flags)
        .args(["calc", "window", "--rcvbuf", "64k", "--kernel", "6.6.10"])
        .args(["--rtt", "137ms", "--size", "10M", "--timeout", "30s"]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).contains("\x1b[")
}

#[test]
fn colour_follows_flag_no_color_and_clicolor_force() {
    assert!(!coloured(&[], &[]), "auto on a pipe");
    assert!(coloured(&[], &["--color", "always"]));
    assert!(
        coloured(&[("NO_COLOR", "1")], &["--color", "always"]),
        "the flag wins"
    );
    assert!(!coloured(&[("CLICOLOR_FORCE", "1")], &["--color", "never"]));
    assert!(coloured(&[("CLICOLOR_FORCE", "1")], &[]));
    assert!(!coloured(
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
        &[]
    ));
    // An empty NO_COLOR is unset (no-color.org): CLICOLOR_FORCE still applies.
    assert!(coloured(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "")], &[]));
    let (code, _, err) = netblame(&[
        "--color",
        "sometimes",
        "calc",
        "bdp",
        "--rate",
        "1g",
        "--rtt",
        "1ms",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("auto") && err.contains("never"), "{err}");
    // Doctor's own options still refuse a subcommand after them; --color does not.
    let bdp = ["calc", "bdp", "--rate", "1g", "--rtt", "1ms"];
    let (code, _, err) = netblame(&[&["--duration", "1s"][..], &bdp].concat());
    assert_eq!(code, 2);
    assert!(err.contains("option of doctor"), "{err}");
    let (code, _, err) = netblame(&[&["--color", "never"][..], &bdp].concat());
    assert_eq!(code, 0, "{err}");
}
