//! netblame-linux: what the live Linux kernel shows — sysctls, and (in later modules) sock_diag
//! dumps and host counters — turned into netblame-core's observation types. Observes only;
//! decisions belong to netblame-core.

pub mod diag;
pub mod host;
pub mod procmap;
pub mod sockopt;
pub mod sysctl;
