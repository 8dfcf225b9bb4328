//! netblame-lab: two network namespaces (client, server) joined only through a userspace WAN
//! emulator on two TUN devices, so TCP runs end to end between two kernels over a path with the
//! delay, rate, queue and loss you ask for; and scenarios that reproduce each seed incident and
//! check that netblame-core's rules blame the right layer.
//!
//! Library only: nothing here prints. The cli (`netblame lab`) renders.

pub mod daemon;
pub mod emulator;
pub mod lab;
pub mod netns;
pub mod proxy;
pub mod scenario;
pub mod tun;
pub mod vnet;
pub mod workload;

pub use emulator::{LinkConfig, LinkStats, LossModel};
pub use lab::{Backend, Lab, LabConfig, LabCounters, LabError, LabState, Side};
