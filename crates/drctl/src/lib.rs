//! The `drctl` library target: only the command-line syntax, so tests can
//! parse documented commands against the real [`cli::Cli`]
//! (`clap::CommandFactory`) without running the binary. The handlers stay in
//! the binary (`main.rs` and its `*_cmd` modules); nothing else belongs here.

pub mod cli;
