//! One module per subcommand: each has an `Args` (clap) and a `run` that returns the exit code.

pub mod calc;
