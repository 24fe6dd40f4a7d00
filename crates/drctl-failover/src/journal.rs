//! The operation state machine, as a pure function.
//!
//! The driver never writes the journal without asking [`apply`] first, so an
//! illegal sequence (a step started before the previous one is done, a step
//! ended twice, anything after the end) is refused before it reaches the
//! store. Rebuilding the state from stored records ([`JournalState::from_records`])
//! is what a resuming driver does.

use crate::Step;

pub use drctl_store::states::{OpStatus, StepState};

/// What happens to an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Start(Step),
    Done(Step),
    Fail(Step),
    /// A step failed and the operation waits for a resume.
    Stop,
    /// A step failed in a plan with a finally step: every step before it
    /// that is not done is skipped, and the finally step runs next.
    Unwind,
    /// A driver takes the operation over (after a crash or a stop).
    Resume,
    /// Every step is done.
    Succeed,
    /// The operation ends without its goal (refused plan, undone switchover,
    /// abandoned by an operator).
    Abandon,
}

/// An operation's status and the state of each of its planned steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalState {
    pub status: OpStatus,
    pub steps: Vec<(Step, StepState)>,
}

/// An event that the state does not allow, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal journal event {event:?} while the operation is {status:?}: {reason}")]
pub struct IllegalTransition {
    pub event: String,
    pub status: OpStatus,
    pub reason: &'static str,
}

impl JournalState {
    /// A new operation with `plan` all pending.
    pub fn new(plan: &[Step]) -> JournalState {
        JournalState {
            status: OpStatus::Running,
            steps: plan.iter().map(|s| (*s, StepState::Pending)).collect(),
        }
    }

    /// The state as stored: the operation's status and its step rows
    /// (`(step name, status)`); steps not journaled yet are pending.
    pub fn from_records(
        plan: &[Step],
        status: OpStatus,
        records: &[(String, StepState)],
    ) -> JournalState {
        let mut state = JournalState::new(plan);
        state.status = status;
        for (step, st) in &mut state.steps {
            if let Some((_, s)) = records.iter().find(|(name, _)| name == step.as_str()) {
                *st = match s {
                    StepState::Started | StepState::Done | StepState::Failed => *s,
                    StepState::Pending | StepState::Skipped => StepState::Pending,
                };
            }
        }
        // A failed step before a finally step means the operation was
        // unwinding (it never stops there for a resume): skipped steps are
        // not journaled, so they are inferred.
        if state
            .steps
            .iter()
            .any(|(step, st)| *st == StepState::Failed && !step.is_finally())
        {
            state.skip_to_finally();
        }
        state
    }

    fn skip_to_finally(&mut self) -> bool {
        let Some(at) = self.steps.iter().position(|(s, _)| s.is_finally()) else {
            return false;
        };
        for (_, st) in &mut self.steps[..at] {
            if *st != StepState::Done {
                *st = StepState::Skipped;
            }
        }
        true
    }

    /// Whether the operation unwinds to its finally step after a failure.
    pub fn unwinding(&self) -> bool {
        self.steps.iter().any(|(_, s)| *s == StepState::Skipped)
    }

    /// The step to run next: the first one neither done nor skipped.
    pub fn next_step(&self) -> Option<Step> {
        self.steps
            .iter()
            .find(|(_, s)| !matches!(s, StepState::Done | StepState::Skipped))
            .map(|(step, _)| *step)
    }

    pub fn state_of(&self, step: Step) -> Option<StepState> {
        self.steps
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, st)| *st)
    }
}

/// The transition function: the new state after `event`, or why not.
pub fn apply(state: &JournalState, event: Event) -> Result<JournalState, IllegalTransition> {
    let illegal = |reason| IllegalTransition {
        event: format!("{event:?}"),
        status: state.status,
        reason,
    };
    if state.status.is_final() {
        return Err(illegal("the operation has ended"));
    }
    let mut next = state.clone();
    match event {
        Event::Start(step) => {
            if state.status != OpStatus::Running {
                return Err(illegal("steps start only while the operation runs"));
            }
            if state.next_step() != Some(step) {
                return Err(illegal("only the first step not done may start"));
            }
            set(&mut next, step, StepState::Started);
        }
        Event::Done(step) | Event::Fail(step) => {
            if state.state_of(step) != Some(StepState::Started) {
                return Err(illegal("only a started step can end"));
            }
            let to = if matches!(event, Event::Done(_)) {
                StepState::Done
            } else {
                StepState::Failed
            };
            set(&mut next, step, to);
        }
        Event::Stop => {
            if state.status != OpStatus::Running {
                return Err(illegal("only a running operation stops"));
            }
            if !state.steps.iter().any(|(_, s)| *s == StepState::Failed) {
                return Err(illegal("an operation stops only on a failed step"));
            }
            next.status = OpStatus::Stopped;
        }
        Event::Unwind => {
            if state.status != OpStatus::Running {
                return Err(illegal("only a running operation unwinds"));
            }
            if !state
                .steps
                .iter()
                .any(|(step, s)| *s == StepState::Failed && !step.is_finally())
            {
                return Err(illegal("an operation unwinds only on a failed step"));
            }
            if !next.skip_to_finally() {
                return Err(illegal("the plan has no finally step to unwind to"));
            }
        }
        Event::Resume => next.status = OpStatus::Running,
        Event::Succeed => {
            if state.steps.iter().any(|(_, s)| *s != StepState::Done) {
                return Err(illegal(
                    "an operation succeeds only when every step is done",
                ));
            }
            next.status = OpStatus::Succeeded;
        }
        Event::Abandon => next.status = OpStatus::Failed,
    }
    Ok(next)
}

fn set(state: &mut JournalState, step: Step, to: StepState) {
    if let Some((_, st)) = state.steps.iter_mut().find(|(s, _)| *s == step) {
        *st = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OperationKind, OperationSaga};

    fn plan() -> Vec<Step> {
        OperationKind::Failover.steps().to_vec()
    }

    fn run_all(mut state: JournalState) -> JournalState {
        while let Some(step) = state.next_step() {
            state = apply(&state, Event::Start(step)).unwrap();
            state = apply(&state, Event::Done(step)).unwrap();
        }
        state
    }

    #[test]
    fn a_full_run_succeeds_and_then_nothing_more_happens() {
        let state = run_all(JournalState::new(&plan()));
        let done = apply(&state, Event::Succeed).unwrap();
        assert_eq!(done.status, OpStatus::Succeeded);
        for event in [
            Event::Start(Step::Plan),
            Event::Resume,
            Event::Abandon,
            Event::Succeed,
        ] {
            assert!(apply(&done, event).is_err(), "{event:?} after the end");
        }
    }

    #[test]
    fn steps_run_in_order_only() {
        let s = JournalState::new(&plan());
        assert!(apply(&s, Event::Start(Step::PromoteTarget)).is_err());
        assert!(
            apply(&s, Event::Done(Step::Plan)).is_err(),
            "done before start"
        );
        let s = apply(&s, Event::Start(Step::Plan)).unwrap();
        assert!(
            apply(&s, Event::Start(Step::Lease)).is_err(),
            "next before done"
        );
        let s = apply(&s, Event::Done(Step::Plan)).unwrap();
        assert!(apply(&s, Event::Done(Step::Plan)).is_err(), "done twice");
        assert!(
            apply(&s, Event::Succeed).is_err(),
            "success with steps left"
        );
    }

    #[test]
    fn a_failed_step_stops_and_a_resume_reruns_it() {
        let s = JournalState::new(&plan());
        let s = apply(&s, Event::Start(Step::Plan)).unwrap();
        assert!(
            apply(&s, Event::Stop).is_err(),
            "stop without a failed step"
        );
        let s = apply(&s, Event::Fail(Step::Plan)).unwrap();
        let s = apply(&s, Event::Stop).unwrap();
        assert!(
            apply(&s, Event::Start(Step::Plan)).is_err(),
            "no step while stopped"
        );
        let s = apply(&s, Event::Resume).unwrap();
        let s = apply(&s, Event::Start(Step::Plan)).unwrap();
        assert_eq!(s.state_of(Step::Plan), Some(StepState::Started));
    }

    #[test]
    fn a_drill_that_fails_unwinds_to_its_teardown_and_can_only_fail() {
        let drill = OperationKind::Drill.steps();
        let s = JournalState::new(drill);
        assert!(
            apply(&s, Event::Unwind).is_err(),
            "unwind without a failure"
        );
        let mut s = s;
        for step in [Step::Plan, Step::Lease, Step::CloneStandby] {
            s = apply(&s, Event::Start(step)).unwrap();
            s = apply(&s, Event::Done(step)).unwrap();
        }
        let s = apply(&s, Event::Start(Step::StartClone)).unwrap();
        let s = apply(&s, Event::Fail(Step::StartClone)).unwrap();
        let s = apply(&s, Event::Unwind).unwrap();
        assert!(s.unwinding());
        assert_eq!(s.next_step(), Some(Step::Teardown));
        assert_eq!(s.state_of(Step::DnsFlip), Some(StepState::Skipped));
        assert!(apply(&s, Event::Start(Step::PromoteTarget)).is_err());
        let s = apply(&s, Event::Start(Step::Teardown)).unwrap();
        let s = apply(&s, Event::Done(Step::Teardown)).unwrap();
        assert_eq!(s.next_step(), None);
        assert!(
            apply(&s, Event::Succeed).is_err(),
            "skipped steps never succeed"
        );
        assert_eq!(apply(&s, Event::Abandon).unwrap().status, OpStatus::Failed);
        // A failover has no finally step to unwind to.
        let f = JournalState::new(&plan());
        let f = apply(&f, Event::Start(Step::Plan)).unwrap();
        let f = apply(&f, Event::Fail(Step::Plan)).unwrap();
        assert!(apply(&f, Event::Unwind).is_err());
    }

    #[test]
    fn a_drill_driver_dying_in_its_teardown_resumes_the_teardown() {
        let records = vec![
            ("plan".to_string(), StepState::Done),
            ("lease".to_string(), StepState::Done),
            ("clone_standby".to_string(), StepState::Failed),
            ("teardown".to_string(), StepState::Started),
        ];
        let s =
            JournalState::from_records(OperationKind::Drill.steps(), OpStatus::Running, &records);
        assert!(s.unwinding());
        assert_eq!(s.next_step(), Some(Step::Teardown));
    }

    #[test]
    fn a_crashed_step_is_rerun_after_rebuilding_from_records() {
        let records = vec![
            ("plan".to_string(), StepState::Done),
            ("lease".to_string(), StepState::Done),
            ("fence_source".to_string(), StepState::Started),
        ];
        let s = JournalState::from_records(&plan(), OpStatus::Running, &records);
        assert_eq!(s.next_step(), Some(Step::FenceSource));
        let s = apply(&s, Event::Resume).unwrap();
        apply(&s, Event::Start(Step::FenceSource)).unwrap();
    }
}
