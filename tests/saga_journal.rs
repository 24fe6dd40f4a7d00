//! The journal's format version: operations journaled by an older drctl
//! (version 1: bare outputs, `{"skipped": …}` for a skipped step) still
//! resume; a newer version is refused by name. A stateless service needs
//! only the store, so these run on SQLite.

use std::time::Duration;

use chrono::Utc;
use drctl_failover::{Engine, FailoverError, OpStatus, OperationKind, OperationParams, Step};
use drctl_store::Store;
use drctl_tests::engine::{journaled_failover, request, stateless_engine, STATELESS_SERVICE};

/// A failover of the stateless service whose driver journaled `done`
/// (step, stored output) and died, its lease released.
async fn journaled_by_a_dead_driver(
    store: &Store,
    engine: &Engine,
    done: &[(&str, String)],
) -> String {
    let req = request(OperationKind::Failover, STATELESS_SERVICE);
    let params: OperationParams = engine.params(&req).await.unwrap();
    let id = "op-journal-version".to_string();
    let lease = journaled_failover(
        store,
        (
            &drctl_failover::lease_name(STATELESS_SERVICE),
            "old-drctl/1/dead",
            Duration::from_secs(30),
        ),
        &id,
        STATELESS_SERVICE,
        &serde_json::to_string(&params).unwrap(),
        store.clock().await.unwrap(),
    )
    .await;
    for (seq, (step, output)) in done.iter().enumerate() {
        store
            .journal_step_started(&lease, &id, step, seq as i64, Utc::now())
            .await
            .unwrap();
        store
            .journal_step_ended(&lease, &id, step, Utc::now(), Ok(output))
            .await
            .unwrap();
    }
    store.release_lease(&lease).await.unwrap();
    id
}

#[tokio::test]
async fn a_version_1_journal_still_resumes() {
    let (engine, store, _dir) = stateless_engine().await;
    let plan = engine
        .plan(&request(OperationKind::Failover, STATELESS_SERVICE))
        .await
        .unwrap();
    // Version 1 wrote the bare output, and skipped steps as a sentinel.
    let id = journaled_by_a_dead_driver(
        &store,
        &engine,
        &[
            ("plan", serde_json::to_string(&plan).unwrap()),
            (
                "lease",
                r#"{"holder":"old-drctl/1/dead","token":1,"lease":"operation:storefront"}"#.into(),
            ),
            (
                "fence_source",
                r#"{"reachable":false,"method":"none","report":null,"hook":null,"unreachable":"a service without a datastore has nothing to fence","fenced_at":"2026-12-06T23:00:00Z"}"#.into(),
            ),
            ("source_position", r#"{"skipped":"no datastore"}"#.into()),
        ],
    )
    .await;
    let outcome = engine
        .resume(&id, Duration::from_secs(5), &|_| {})
        .await
        .unwrap();
    assert_eq!(outcome.status, OpStatus::Succeeded);
    // The done steps were not run again; the rest ran after them.
    let steps = store.journal(&id).await.unwrap();
    let fence = steps.iter().find(|s| s.step == "fence_source").unwrap();
    assert_eq!(fence.attempts, 1, "{fence:?}");
    assert!(
        steps
            .iter()
            .all(|s| s.status == drctl_store::states::StepState::Done),
        "{steps:#?}"
    );
    assert!(outcome
        .output::<drctl_failover::Measured>(Step::Record)
        .is_some());
}

#[tokio::test]
async fn a_newer_journal_version_is_refused_naming_the_version() {
    let (engine, store, _dir) = stateless_engine().await;
    let id = journaled_by_a_dead_driver(
        &store,
        &engine,
        &[("plan", r#"{"v":4,"done":{"whatever":"comes next"}}"#.into())],
    )
    .await;
    let e = engine
        .resume(&id, Duration::from_secs(5), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, FailoverError::Journal { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("journal format version 4"), "{text}");
    assert!(text.contains("version 3"), "{text}");
    // Nothing ran: the operation is as the newer drctl left it.
    let steps = store.journal(&id).await.unwrap();
    assert_eq!(steps.len(), 1);
}
