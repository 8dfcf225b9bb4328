//! Shared by the host_* tests: the namespace guard and command runner from netblame-testkit.
#![allow(unused_imports)]

pub use netblame_testkit::{run_ok as run, Netns};
