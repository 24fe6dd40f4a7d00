//! Restore tests: prove that a backup restores, and how long that takes.
//!
//! Restore the backup into a private scratch directory, start PostgreSQL
//! with drctl's own configuration only (never the backup's: see
//! [`PgCluster::isolate_scratch`]), reachable only by drctl over a private
//! socket, wait until it answers (recovery to the backup's consistent point is
//! done by then), run the service's validation queries, stop and remove
//! everything — also when a step fails. Time to ready is the RTO evidence of
//! a cold-tier service.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drctl_pg::os::free_port;
use drctl_pg::PgCluster;
use serde::Serialize;
use sqlx::{Connection, Row};

use crate::{restore_backup, ObjectStore};

/// What to restore and check.
#[derive(Clone, Debug)]
pub struct RestoreTestRequest {
    pub service: String,
    pub backup_id: String,
    pub store: ObjectStore,
    pub pg_bin: PathBuf,
    /// Scratch space; the test works in a fresh private directory below
    /// it. Its owner and mode are checked first
    /// ([`drctl_pg::os::prepare_scratch_root`]).
    pub scratch_root: PathBuf,
    /// The database the validation queries run in.
    pub database: String,
    /// Each must return one boolean: `true` passes.
    pub validation_queries: Vec<String>,
    /// The key of an encrypted backup.
    pub key: Option<crate::BackupKey>,
    /// The manifest the state store recorded for the backup: the bucket's
    /// must match it.
    pub manifest: Option<crate::Manifest>,
}

/// The phases a restore test goes through, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePhase {
    Restoring,
    Starting,
    Validating,
    CleaningUp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueryResult {
    pub query: String,
    pub passed: bool,
    /// The value returned, as text (`true`, `false`, …).
    pub value: Option<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreTestOutcome {
    pub passed: bool,
    /// From the start of the restore until PostgreSQL answered.
    #[serde(serialize_with = "secs")]
    pub time_to_ready: Option<Duration>,
    pub queries: Vec<QueryResult>,
    pub error: Option<String>,
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Runs one restore test. Never fails as a function: a failure is an
/// outcome, recorded with its reason; the scratch cluster is always removed.
pub async fn run_restore_test(
    req: &RestoreTestRequest,
    mut phase: impl FnMut(RestorePhase),
) -> RestoreTestOutcome {
    let started = Instant::now();
    // Short: the cluster's Unix socket lives below this directory, and a
    // socket path may not exceed 107 bytes.
    let work = req.scratch_root.join(format!(
        "rt-{}-{}",
        req.service,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let cluster = PgCluster::new(
        format!("restore-test-{}", req.service),
        work.join("data"),
        free_port(),
        req.pg_bin.clone(),
    );
    let mut outcome = RestoreTestOutcome {
        passed: false,
        time_to_ready: None,
        queries: Vec::new(),
        error: None,
    };

    let result: Result<(), String> = async {
        phase(RestorePhase::Restoring);
        let (root, w) = (req.scratch_root.clone(), work.clone());
        tokio::task::spawn_blocking(move || {
            drctl_pg::os::prepare_scratch_root(&root)?;
            drctl_pg::os::private_run_dir(&w)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        restore_backup(
            &req.store,
            &req.service,
            &req.backup_id,
            &cluster.data_dir,
            &crate::Expected {
                manifest: req.manifest.clone(),
                key: req.key.clone(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        phase(RestorePhase::Starting);
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || {
            c.adopt_restored()?;
            c.start()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let dsn = cluster.scratch_dsn("postgres", &req.database);
        let mut conn = sqlx::PgConnection::connect(&dsn)
            .await
            .map_err(|e| format!("connecting to the restored cluster: {e}"))?;
        outcome.time_to_ready = Some(started.elapsed());
        phase(RestorePhase::Validating);
        for query in &req.validation_queries {
            let result = match sqlx::query(query).fetch_one(&mut conn).await {
                Ok(row) => match row.try_get::<Option<bool>, _>(0) {
                    Ok(v) => QueryResult {
                        query: query.clone(),
                        passed: v == Some(true),
                        value: Some(v.map_or("null".to_string(), |b| b.to_string())),
                        error: None,
                    },
                    Err(_) => QueryResult {
                        query: query.clone(),
                        passed: false,
                        value: None,
                        error: Some(
                            "the query must return one boolean (e.g. SELECT count(*) > 0 FROM …)"
                                .into(),
                        ),
                    },
                },
                Err(e) => QueryResult {
                    query: query.clone(),
                    passed: false,
                    value: None,
                    error: Some(e.to_string()),
                },
            };
            outcome.queries.push(result);
        }
        let _ = conn.close().await;
        Ok(())
    }
    .await;

    phase(RestorePhase::CleaningUp);
    let c = cluster.clone();
    let w = work.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = c.stop("immediate");
        let _ = std::fs::remove_dir_all(&w);
    })
    .await;
    match result {
        Ok(()) => {
            outcome.passed = outcome.queries.iter().all(|q| q.passed);
            if !outcome.passed {
                outcome.error = Some(format!(
                    "{} of {} validation queries failed",
                    outcome.queries.iter().filter(|q| !q.passed).count(),
                    outcome.queries.len()
                ));
            }
        }
        Err(e) => outcome.error = Some(e),
    }
    outcome
}
