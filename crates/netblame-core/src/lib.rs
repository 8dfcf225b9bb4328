//! netblame-core: the vocabulary, the window math and every diagnosis rule of netblame.
//!
//! Pure: no I/O, no unsafe. Sources (`netblame-linux`, `netblame-bench`, `netblame-pcap`,
//! `netblame-probe`, `netblame-lab`) turn what they see into the observation types of
//! [`observe`]; the rules in [`rules`] decide what they mean, and [`diagnose`] applies them all, merges,
//! ranks and names the verdict.
#![forbid(unsafe_code)]

pub mod catalogue;
pub mod diagnose;
pub mod finding;
pub mod json;
pub mod kernel;
pub mod known_issues;
pub mod observe;
pub mod rules;
pub mod tune;
pub mod units;
pub mod window;

pub use diagnose::{diagnose, rank, Diagnosis, Observations};
pub use finding::{Evidence, Finding, FindingSpec, Layer, Limit, Severity, Unit};
pub use kernel::{KernelVersion, BACKPORT_CAVEAT};
pub use units::{BitRate, Bytes};
