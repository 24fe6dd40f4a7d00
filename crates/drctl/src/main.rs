//! `drctl`: the command-line interface and daemon of the drctl
//! disaster-recovery orchestrator.
//!
//! Exit codes, for scripts:
//! - 0: success;
//! - 1: the command failed (a server unreachable, a step failed…);
//! - 2: bad usage or an invalid configuration file (every error is printed);
//! - 0 too when stdout is closed by its reader (`drctl status | head -1`):
//!   the reader has what it wanted, as with ripgrep; nothing is printed;
//! - 141 (128 + SIGPIPE, as a shell reports a command a closed pipe ended)
//!   when a command that was still working is cut short by a closed stdout
//!   or stderr: quietly, with no panic and no backtrace.

mod agent_cmd;
mod audit_cmd;
mod backup_cmd;
mod bench_cmd;
mod config_cmd;
mod failover_cmd;
mod lab_cmd;
mod output;
mod report_cmd;
mod serve_cmd;
mod soak_cmd;
mod status_cmd;

use clap::Parser;
// The syntax lives in the library target (tests parse against it); the
// handlers name it `crate::cli`.
use drctl::cli;

use crate::cli::{Cli, Command};

/// A failure whose message was already printed in full (e.g. every config
/// error), carrying only the exit code.
#[derive(Debug)]
pub struct Reported(pub i32);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Reported {}

/// The exit status of a command cut short by a closed stdout or stderr.
const EXIT_OUTPUT_CLOSED: i32 = 141;

fn main() {
    exit_quietly_on_closed_output();
    let cli = Cli::parse();
    init_tracing(&cli);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(run(cli));
    // Background tasks (sockets to dead servers) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => {}
        Err(e) => {
            if let Some(Reported(code)) = e.downcast_ref::<Reported>() {
                std::process::exit(*code);
            }
            if e.downcast_ref::<output::StdoutClosed>().is_some() {
                return;
            }
            eprintln!("error: {e:#}");
            // A malformed --to-time or --to-lsn is bad usage, as clap's own
            // refusals are.
            let usage = e
                .downcast_ref::<drctl_backup::pitr::TargetError>()
                .is_some();
            std::process::exit(if usage { 2 } else { 1 });
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve_cmd::run(args).await,
        Command::Status(args) => status_cmd::run(args).await,
        Command::Config(args) => config_cmd::run(args),
        Command::Lab(args) => lab_cmd::run(args).await,
        Command::Backup(args) => backup_cmd::run(args).await,
        Command::Restore(args) => backup_cmd::restore_service(args).await,
        Command::RestoreTest(args) => backup_cmd::restore_test(args).await,
        Command::Failover(args) => {
            failover_cmd::run(drctl_failover::OperationKind::Failover, args).await
        }
        Command::Switchover(args) => {
            failover_cmd::run(drctl_failover::OperationKind::Switchover, args).await
        }
        Command::Drill(args) => failover_cmd::run(drctl_failover::OperationKind::Drill, args).await,
        Command::Recover(args) => {
            failover_cmd::run(drctl_failover::OperationKind::Recover, args).await
        }
        Command::Rejoin(args) => {
            failover_cmd::run(drctl_failover::OperationKind::Rejoin, args.into()).await
        }
        Command::Operations(args) => failover_cmd::operations(args).await,
        Command::Audit(args) => audit_cmd::run(args).await,
        Command::Report(args) => report_cmd::run(args).await,
        Command::Bench(args) => match args.command {
            cli::BenchCommand::Monitor(a) => bench_cmd::run(a).await,
            cli::BenchCommand::Soak(a) => soak_cmd::run(a).await,
        },
        Command::Agent(args) => agent_cmd::run(args).await,
    }
}

/// `println!`/`eprintln!` panic when their stream is a closed pipe (Rust
/// ignores SIGPIPE, so the write fails with EPIPE). The CLI's own output goes
/// through `output::write_stdout`, which returns an error instead; this hook
/// is the net for `eprintln!` (progress and errors on stderr) and for any
/// print in a dependency: it ends the process quietly instead of
/// printing a panic and a backtrace to a terminal. SIGPIPE is not reset to
/// its default instead, because a write to a database's Unix socket that
/// closed under a failover would then kill the process without a word.
fn exit_quietly_on_closed_output() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's wording: "failed printing to stdout: Broken pipe (os error 32)".
        let closed_output = (message.starts_with("failed printing to stdout")
            || message.starts_with("failed printing to stderr"))
            && message.contains("Broken pipe");
        if closed_output {
            std::process::exit(EXIT_OUTPUT_CLOSED);
        }
        default_hook(info)
    }));
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DRCTL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn", cli.log_level)));
    // Colours only for a person at a terminal: a log file, journald or a
    // pipe gets plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
