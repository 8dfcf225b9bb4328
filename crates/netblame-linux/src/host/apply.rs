//! Writing sysctls for `netblame tune --apply`, with a backup of the previous values first and an
//! exact `--rollback`. A write the kernel rejects part-way puts back every value already written,
//! so a failed apply leaves the host as it was.

use crate::sysctl;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// What `--apply` saved before changing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Backup {
    /// Seconds since the epoch when the backup was taken.
    pub created_unix: u64,
    /// Each changed sysctl and its value before, exactly as the kernel printed it.
    pub values: Vec<(String, String)>,
    /// The sysctl.d file written; `None` when only live values were written (see
    /// [`apply_live`]).
    #[serde(default)]
    pub sysctl_file: Option<PathBuf>,
    /// That file's content before, if it existed.
    pub previous_file: Option<String>,
}

/// Why an apply or rollback failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("a backup from an earlier --apply exists at {0}: run --rollback first (or pass another --backup)")]
    BackupExists(PathBuf),
    #[error("no backup at {0}: nothing to roll back")]
    NoBackup(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the kernel refused {name} = {value} ({source}); the {restored} value(s) already written were put back, nothing changed")]
    Refused {
        name: String,
        value: String,
        restored: usize,
        #[source]
        source: io::Error,
    },
    #[error("the kernel refused {name} = {value} ({source}), and restoring failed for: {failed:?}; the backup stays at {backup}")]
    RestoreFailed {
        name: String,
        value: String,
        failed: Vec<String>,
        backup: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rollback could not restore {0:?}; the backup was kept")]
    RollbackIncomplete(Vec<String>),
    #[error("backup {path} is not readable JSON: {why}")]
    BadBackup { path: PathBuf, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `(sysctl, value)` pairs, or `(sysctl, why not)` for changes that cannot be applied.
pub type Changes = Vec<(String, String)>;

/// Splits changes into those writable here and those that are not, with why (absent, or
/// read-only: not root, or a sysctl that is not per-network-namespace seen from a namespace).
pub fn partition(changes: &[(String, String)]) -> (Changes, Changes) {
    let mut ok = Vec::new();
    let mut not = Vec::new();
    for (name, value) in changes {
        if !sysctl::path(name).exists() {
            not.push((name.clone(), "not present on this kernel".to_string()));
        } else if !sysctl::writable(name) && !is_root() {
            not.push((
                name.clone(),
                "not writable without root (run with sudo)".to_string(),
            ));
        } else if !sysctl::writable(name) {
            not.push((
                name.clone(),
                "read-only here (not per-network-namespace: set it in the host's initial namespace)".to_string(),
            ));
        } else {
            ok.push((name.clone(), value.clone()));
        }
    }
    (ok, not)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), ApplyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("netblame-tmp");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

/// Restores `values`; returns the names that could not be restored.
fn restore(values: &[(String, String)]) -> Vec<String> {
    values
        .iter()
        .filter(|(name, value)| sysctl::write(name, value).is_err())
        .map(|(name, _)| name.clone())
        .collect()
}

/// Applies `changes` (all must be writable: see [`partition`]): saves the current values to
/// `backup_path`, writes each live value, then writes `file_text` to `sysctl_file`. On any
/// failure every value already written is put back and the backup removed.
pub fn apply(
    changes: &[(String, String)],
    file_text: &str,
    sysctl_file: &Path,
    backup_path: &Path,
) -> Result<Backup, ApplyError> {
    apply_with(changes, Some((file_text, sysctl_file)), backup_path)
}

/// Like [`apply`], but writes only the live values, no sysctl.d file (inside a network
/// namespace, a file in the host's /etc/sysctl.d would apply at the host's next boot).
pub fn apply_live(changes: &[(String, String)], backup_path: &Path) -> Result<Backup, ApplyError> {
    apply_with(changes, None, backup_path)
}

/// True when this process runs in a network namespace other than the host's: one named under
/// /run/netns (`ip netns exec`), or one other than PID 1's (when that can be read). Its
/// sysctls are then not the host's.
pub fn in_child_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let Some(me) = id(Path::new("/proc/self/ns/net")) else {
        return false;
    };
    let named = std::fs::read_dir("/run/netns")
        .map(|rd| rd.filter_map(|e| e.ok()).any(|e| id(&e.path()) == Some(me)))
        .unwrap_or(false);
    named || id(Path::new("/proc/1/ns/net")).is_some_and(|init| init != me)
}

fn apply_with(
    changes: &[(String, String)],
    file: Option<(&str, &Path)>,
    backup_path: &Path,
) -> Result<Backup, ApplyError> {
    if backup_path.exists() {
        return Err(ApplyError::BackupExists(backup_path.to_path_buf()));
    }
    let mut values = Vec::new();
    for (name, _) in changes {
        let v = sysctl::read(name).map_err(io_err(&sysctl::path(name)))?;
        values.push((name.clone(), v));
    }
    let previous_file = match file.map(|(_, f)| (f, std::fs::read_to_string(f))) {
        None => None,
        Some((_, Ok(t))) => Some(t),
        Some((_, Err(e))) if e.kind() == io::ErrorKind::NotFound => None,
        Some((f, Err(e))) => return Err(io_err(f)(e)),
    };
    let backup = Backup {
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        values,
        sysctl_file: file.map(|(_, f)| f.to_path_buf()),
        previous_file,
    };
    let json = serde_json::to_string_pretty(&backup).map_err(|e| ApplyError::BadBackup {
        path: backup_path.to_path_buf(),
        why: e.to_string(),
    })?;
    write_atomic(backup_path, &json)?;
    for (i, (name, value)) in changes.iter().enumerate() {
        if let Err(source) = sysctl::write(name, value) {
            let failed = restore(&backup.values[..i]);
            if failed.is_empty() {
                let _ = std::fs::remove_file(backup_path);
                return Err(ApplyError::Refused {
                    name: name.clone(),
                    value: value.clone(),
                    restored: i,
                    source,
                });
            }
            return Err(ApplyError::RestoreFailed {
                name: name.clone(),
                value: value.clone(),
                failed,
                backup: backup_path.to_path_buf(),
                source,
            });
        }
    }
    if let Some(Err(e)) = file.map(|(text, f)| write_atomic(f, text)) {
        let failed = restore(&backup.values);
        if failed.is_empty() {
            let _ = std::fs::remove_file(backup_path);
        }
        return Err(e);
    }
    Ok(backup)
}

/// Reads a backup file.
pub fn read_backup(backup_path: &Path) -> Result<Backup, ApplyError> {
    let text = match std::fs::read_to_string(backup_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ApplyError::NoBackup(backup_path.to_path_buf()))
        }
        Err(e) => return Err(io_err(backup_path)(e)),
    };
    serde_json::from_str(&text).map_err(|e| ApplyError::BadBackup {
        path: backup_path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Restores every value of the backup, puts the sysctl.d file back as it was, checks each value
/// reads back as saved, then removes the backup. Returns the backup that was restored.
pub fn rollback(backup_path: &Path) -> Result<Backup, ApplyError> {
    let backup = read_backup(backup_path)?;
    let mut failed = restore(&backup.values);
    for (name, value) in &backup.values {
        let now = sysctl::read_normalized(name).unwrap_or_default();
        let want = value.split_whitespace().collect::<Vec<_>>().join(" ");
        if now != want && !failed.contains(name) {
            failed.push(name.clone());
        }
    }
    if !failed.is_empty() {
        return Err(ApplyError::RollbackIncomplete(failed));
    }
    match (&backup.sysctl_file, &backup.previous_file) {
        (None, _) => {}
        (Some(f), Some(text)) => write_atomic(f, text)?,
        (Some(f), None) => match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(f)(e)),
        },
    }
    std::fs::remove_file(backup_path).map_err(io_err(backup_path))?;
    Ok(backup)
}
