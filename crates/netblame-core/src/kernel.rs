//! Linux kernel versions as `uname -r` prints them, and the caveat every version-based
//! statement carries.

use serde::{Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Appended to every statement netblame derives from a version number alone.
pub const BACKPORT_CAVEAT: &str =
    "version-based: distro kernels may carry backports (or miss fixes); check your vendor's changelog";

/// A kernel version: `major.minor.patch` plus whatever the distro appended (`-1051-aws`).
#[derive(Debug, Clone, Eq)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// Everything after the numeric part, e.g. `-amd64`, `-1051-aws`, `-rc2`.
    pub local: String,
}

/// Why a kernel version string was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a kernel version (expected e.g. 6.6.10 or 5.15.0-1051-aws)")]
pub struct KernelVersionError(pub String);

impl KernelVersion {
    /// A plain `major.minor.patch` version.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        KernelVersion {
            major,
            minor,
            patch,
            local: String::new(),
        }
    }

    /// The numeric triple, for comparisons.
    pub fn triple(&self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch)
    }

    /// True when `self` is at least `major.minor.patch`.
    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        self.triple() >= (major, minor, patch)
    }
}

impl FromStr for KernelVersion {
    type Err = KernelVersionError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let numeric_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (numeric, local) = s.split_at(numeric_end);
        let parts: Vec<&str> = numeric.trim_end_matches('.').split('.').collect();
        if parts.len() < 2 || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
            return Err(KernelVersionError(input.to_string()));
        }
        let num = |i: usize| -> Result<u32, KernelVersionError> {
            parts
                .get(i)
                .map(|p| {
                    p.parse::<u32>()
                        .map_err(|_| KernelVersionError(input.to_string()))
                })
                .unwrap_or(Ok(0))
        };
        Ok(KernelVersion {
            major: num(0)?,
            minor: num(1)?,
            patch: num(2)?,
            local: local.to_string(),
        })
    }
}

impl PartialEq for KernelVersion {
    fn eq(&self, other: &Self) -> bool {
        self.triple() == other.triple()
    }
}

impl std::hash::Hash for KernelVersion {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.triple().hash(h);
    }
}

impl PartialOrd for KernelVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KernelVersion {
    /// Orders by the numeric part only: `6.6.10-amd64` == `6.6.10`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.triple().cmp(&other.triple())
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}{}",
            self.major, self.minor, self.patch, self.local
        )
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Serialized as its display string (`6.6.10-amd64`).
impl schemars::JsonSchema for KernelVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KernelVersion".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[0-9]+\\.[0-9]+"})
    }
}

impl<'de> serde::Deserialize<'de> for KernelVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KernelVersion {
        s.parse().unwrap()
    }

    #[test]
    fn parses_real_uname_strings() {
        assert_eq!(v("6.6.10-amd64").triple(), (6, 6, 10));
        assert_eq!(v("6.6.10-amd64").local, "-amd64");
        assert_eq!(v("5.15.0-1051-aws").triple(), (5, 15, 0));
        assert_eq!(v("6.18.44-fc-v669").triple(), (6, 18, 44));
        assert_eq!(v("4.19.0").triple(), (4, 19, 0));
        assert_eq!(v("6.9").triple(), (6, 9, 0));
        assert_eq!(v("6.8.0-rc2").triple(), (6, 8, 0));
        assert_eq!(v("3.10.0-1160.el7.x86_64").triple(), (3, 10, 0));
        assert_eq!(v("6.6.10-amd64").to_string(), "6.6.10-amd64");
    }

    #[test]
    fn compares_numerically() {
        assert!(v("6.6.10") < v("6.6.33"));
        assert!(v("6.10.0") > v("6.9.3"));
        assert!(v("5.15.0-1051-aws") < v("6.1.0"));
        assert_eq!(v("6.6.10-amd64"), v("6.6.10"));
        assert!(v("6.6.33").at_least(6, 6, 33));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "linux", "6", "6..1", "x.y.z", "99999999999.1"] {
            assert!(bad.parse::<KernelVersion>().is_err(), "{bad}");
        }
    }
}
