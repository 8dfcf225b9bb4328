//! netblame-linux: what the live Linux kernel shows — sysctls, socket options, sock_diag dumps
//! with their owning processes, and host counters — turned into netblame-core's observation
//! types. Observes only;
//! decisions belong to netblame-core.

pub mod container;
pub mod diag;
pub mod host;
pub mod netns;
pub mod procmap;
pub mod sockopt;
pub mod sysctl;
