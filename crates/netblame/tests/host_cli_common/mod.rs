//! Shared by host_cli, tune_cli and doctor_cli: running the binary (optionally inside a network
//! namespace or as an unprivileged user) and a namespace that removes itself.
#![allow(dead_code)]

use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_netblame");

pub fn out(o: Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn netblame(args: &[&str]) -> (i32, String, String) {
    out(Command::new(BIN).args(args).output().unwrap())
}

pub fn run(cmd: &[&str]) -> String {
    let o = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub use netblame_testkit::Netns;

/// What the CLI tests do inside a namespace.
pub trait NetnsCli {
    /// `netblame ARGS` inside the namespace.
    fn netblame(&self, args: &[&str]) -> (i32, String, String);
    /// A sysctl's raw value inside the namespace.
    fn sysctl(&self, name: &str) -> String;
    /// Sets a sysctl inside the namespace.
    fn set_sysctl(&self, name: &str, value: &str);
}

impl NetnsCli for Netns {
    fn netblame(&self, args: &[&str]) -> (i32, String, String) {
        out(Command::new("ip")
            .args(["netns", "exec", &self.0, BIN])
            .args(args)
            .output()
            .unwrap())
    }

    fn sysctl(&self, name: &str) -> String {
        self.exec(&["cat", &format!("/proc/sys/{}", name.replace('.', "/"))])
    }

    fn set_sysctl(&self, name: &str, value: &str) {
        self.exec(&["sysctl", "-qw", &format!("{name}={value}")]);
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(netblame_testkit::unique_name("nbcli"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary as the unprivileged user `nobody` (copied where nobody can run it).
pub fn netblame_as_nobody(dir: &TempDir, args: &[&str]) -> (i32, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.0.join("netblame");
    if !bin.exists() {
        std::fs::copy(BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    out(Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(&bin)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap())
}
