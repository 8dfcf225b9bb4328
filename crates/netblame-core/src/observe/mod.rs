//! Observation types: what sources saw, in one vocabulary, before any rule judged it.

pub mod flow;
pub mod host;
pub mod latency;
pub mod limits;
pub mod socket;
pub mod tcp_info;
pub mod trace;
pub mod transfer;

pub use limits::LimitShares;
pub use socket::{ContainerRef, NetnsRef, SkMemInfo, SocketOwner, SocketSnapshot, TcpState};
pub use tcp_info::TcpInfo;
pub use transfer::Transfer;
