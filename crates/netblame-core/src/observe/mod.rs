//! Observation types: what sources saw, in one vocabulary, before any rule judged it.

pub mod limits;
pub mod tcp_info;

pub use limits::LimitShares;
pub use tcp_info::TcpInfo;
