//! Diagnosis rules: observations in, findings out. One module per area; each exports the
//! `FINDINGS` it can produce, and [`crate::catalogue`] lists them all.

pub mod window;
