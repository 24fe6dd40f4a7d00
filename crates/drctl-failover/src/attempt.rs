//! Running one action: the host check, the fenced lease check, retries in
//! place with backoff for errors that say so, the progress reports, and the
//! test-only fault-injection hooks (feature `fault-injection`). The driver
//! (`engine.rs`) journals around it.

use std::time::Duration;

use serde::Serialize;

use crate::plan::OperationParams;
use crate::saga::ctx::{Ctx, StepError};
use crate::saga::output::Entry;
use crate::Step;

/// Retries of a retryable step error in place, before the operation stops.
const STEP_RETRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// What the driver reports while it works (the CLI draws it).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    Operation {
        id: String,
        resumed: bool,
    },
    StepStarted {
        step: Step,
        attempt: u32,
    },
    StepDone {
        step: Step,
        took_ms: u64,
    },
    StepRetrying {
        step: Step,
        error: String,
        in_ms: u64,
    },
    StepFailed {
        step: Step,
        error: String,
    },
}

/// Test-only fault injection: `DRCTL_FAULT_CRASH_AT=STEP:PHASE` aborts the
/// process (no clean-up, like kill -9) when `STEP` reaches `PHASE`:
/// `started` (journaled as started, nothing done), `applied` (its effect
/// done, not journaled) or `done` (journaled done, next not started).
///
/// `DRCTL_FAULT_PAUSE_AT=STEP:PHASE` stops the process there instead
/// (SIGSTOP to itself, as a long GC pause or a frozen VM would): it goes on
/// where it was once sent SIGCONT, possibly after its leases expired.
///
/// Compiled only with the `fault-injection` feature (the test build turns
/// it on): a release binary must not abort because of its environment.
#[cfg(feature = "fault-injection")]
pub(crate) fn crash_point(step: Step, phase: &str) {
    let here = format!("{}:{phase}", step.as_str());
    if std::env::var("DRCTL_FAULT_CRASH_AT").is_ok_and(|spec| spec == here) {
        eprintln!("DRCTL_FAULT_CRASH_AT: aborting at {here}");
        std::process::abort();
    }
    if std::env::var("DRCTL_FAULT_PAUSE_AT").is_ok_and(|spec| spec == here) {
        eprintln!("DRCTL_FAULT_PAUSE_AT: pausing at {here}");
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &std::process::id().to_string()])
            .status();
        eprintln!("DRCTL_FAULT_PAUSE_AT: continued after {here}");
    }
}

/// Test-only fault injection: `DRCTL_FAULT_FAIL_AT=STEP` makes `STEP` fail
/// (not retryable), as a lost server or a refused change would.
#[cfg(feature = "fault-injection")]
fn injected_failure(step: Step) -> Option<StepError> {
    let spec = std::env::var("DRCTL_FAULT_FAIL_AT").ok()?;
    (spec == step.as_str())
        .then(|| StepError::stop(format!("DRCTL_FAULT_FAIL_AT: {spec} made to fail")))
}

/// Without `fault-injection`, `DRCTL_FAULT_*` mean nothing.
#[cfg(not(feature = "fault-injection"))]
pub(crate) fn crash_point(_step: Step, _phase: &str) {}

#[cfg(not(feature = "fault-injection"))]
fn injected_failure(_step: Step) -> Option<StepError> {
    None
}

/// A host-local operation driven from another host than the one it was
/// started on: it would act on this host's files (another server's data
/// directory at the same path). Refused at every step, resumably there.
fn wrong_host(p: &OperationParams) -> Option<StepError> {
    let here = crate::this_host();
    match &p.host {
        Some(host) if *host != here => Some(StepError::stop(format!(
            "this {} acts on files of host {host}, and this is {here}: resume it on {host}",
            p.kind.as_str()
        ))),
        _ => None,
    }
}

pub(crate) async fn run_with_retries(
    step: Step,
    ctx: &Ctx<'_>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Entry, StepError> {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=STEP_RETRIES {
        progress(Progress::StepStarted { step, attempt });
        if let Some(e) = injected_failure(step) {
            return Err(e);
        }
        // Every attempt starts from a fenced check: a driver that woke up
        // after a takeover acts on nothing (the steps check again right
        // before each external action).
        let result = match wrong_host(ctx.params) {
            Some(e) => Err(e),
            None => ctx.check_lease("starting the step").await,
        };
        let result = match result {
            // Boxed: the steps' futures nest deeply, and every caller of the
            // engine would otherwise carry their whole layout.
            Ok(()) => Box::pin(crate::saga::run(step, ctx)).await,
            Err(e) => Err(e),
        };
        match result {
            Err(StepError::RetryInPlace(message)) if attempt < STEP_RETRIES => {
                progress(Progress::StepRetrying {
                    step,
                    error: message.clone(),
                    in_ms: backoff.as_millis() as u64,
                });
                tracing::warn!(%step, attempt, error = %message, "step failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the last attempt returns")
}
