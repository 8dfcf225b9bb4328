//! One module per subcommand: each has an `Args` (clap) and a `run` that returns the exit code.

pub mod bench;
pub mod calc;
pub mod completions;
pub mod doctor;
pub mod host;
pub mod lab;
pub mod man;
pub mod netns;
pub mod pcap;
pub mod probe;
pub mod schema;
pub mod serve;
pub mod sockets;
pub mod trace;
pub mod tune;
