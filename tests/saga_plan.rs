//! Plan once: the plan an operator confirms is the plan the engine
//! executes, journaled as the Plan action's output, and a confirmed plan
//! that went stale in a way that matters is refused. A stateless service
//! (no datastore, no DNS) needs only the store, so these run on SQLite.

use drctl_failover::{FailoverError, OpStatus, OperationKind, OperationSaga, PlanReport, Request};
use drctl_store::Store;
use drctl_tests::engine::{request, stateless_engine, STATELESS_SERVICE};

fn failover() -> Request {
    request(OperationKind::Failover, STATELESS_SERVICE)
}

/// The Plan action's journaled output, read back as a plan.
async fn journaled_plan(store: &Store, id: &str) -> PlanReport {
    let steps = store.journal(id).await.unwrap();
    let plan = steps
        .iter()
        .find(|s| s.step == "plan")
        .expect("a plan step");
    serde_json::from_value(drctl_failover::view_output(plan.output.as_deref().unwrap())).unwrap()
}

#[tokio::test]
async fn the_executed_plan_is_the_confirmed_one() {
    let (engine, store, _dir) = stateless_engine().await;
    let confirmed = engine.plan(&failover()).await.unwrap();
    assert!(confirmed.standing(false).is_empty(), "{confirmed:#?}");
    // Time passes between the prompt and the answer: a recomputed plan
    // would carry another planned_at.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let outcome = engine
        .run_plan(&failover(), confirmed.clone(), &|_| {})
        .await
        .unwrap();
    assert_eq!(outcome.status, OpStatus::Succeeded);
    let executed = journaled_plan(&store, &outcome.id).await;
    assert_eq!(executed, confirmed, "the journal holds the confirmed plan");
}

#[tokio::test]
async fn a_confirmed_plan_whose_roles_changed_is_refused() {
    let (engine, store, _dir) = stateless_engine().await;
    let mut confirmed = engine.plan(&failover()).await.unwrap();
    // As if the cluster had failed over since the operator looked: the
    // confirmed plan moves the other way.
    std::mem::swap(&mut confirmed.source, &mut confirmed.target);
    let e = engine
        .run_plan(&failover(), confirmed, &|_| {})
        .await
        .unwrap_err();
    match &e {
        FailoverError::Refused { blockers, .. } => {
            assert!(
                blockers.iter().any(|b| b.contains("the roles changed")),
                "{blockers:?}"
            )
        }
        other => panic!("not refused: {other}"),
    }
    // Refused at its Plan action, recorded as failed.
    let ops = store.operations(10).await.unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].status, drctl_store::states::OpStatus::Failed);
}

#[tokio::test]
async fn a_plan_for_another_operation_is_refused_before_anything_starts() {
    let (engine, store, _dir) = stateless_engine().await;
    let confirmed = engine.plan(&failover()).await.unwrap();
    let switchover = Request {
        kind: OperationKind::Switchover,
        ..failover()
    };
    let e = engine
        .run_plan(&switchover, confirmed, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, FailoverError::Refused { .. }), "{e}");
    assert!(store.operations(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn without_a_confirmed_plan_the_run_plans_once_and_executes_that() {
    let (engine, store, _dir) = stateless_engine().await;
    let outcome = engine.run(&failover(), &|_| {}).await.unwrap();
    assert_eq!(outcome.status, OpStatus::Succeeded);
    let executed = journaled_plan(&store, &outcome.id).await;
    assert_eq!(executed.steps, OperationKind::Failover.steps());
}
