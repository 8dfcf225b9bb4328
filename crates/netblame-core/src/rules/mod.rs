//! Diagnosis rules: observations in, findings out. One module per area; each exports the
//! `FINDINGS` it can produce, and [`crate::catalogue`] lists them all.

pub mod capture;
pub mod connection;
pub mod host;
pub mod kernel_events;
pub mod lab;
pub mod probe;
pub mod shared;
pub mod transfer;
pub mod verdict;
pub mod window;
