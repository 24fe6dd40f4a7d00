//! Restore tests: prove that a backup restores, and how long that takes.
//!
//! Through the node-action seam (a region's agent when the service names
//! one, else [`LocalNode`] on this host): restore the backup into a private
//! scratch copy ([`NodeActions::restore_scratch`]: drctl's own
//! configuration only, never the backup's, reachable only by drctl, over a
//! private socket here or over TLS with drctl's client certificate on an
//! agent's host), start it, connect and wait until it answers (recovery
//! to the backup's consistent point is done by then), run the service's
//! validation queries, tear the copy down ([`NodeActions::teardown_scratch`])
//! — also when a step fails. Time to ready is the RTO evidence of a
//! cold-tier service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drctl_node::{
    BackupSource, LocalNode, NodeActions, NodeRef, ScratchRestoreRequest, StartRequest,
    TeardownRequest,
};
use serde::Serialize;
use sqlx::{Connection, Row};

use crate::{restore_backup, Expected, ObjectStore};

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
    /// Where the copy is made: on an agent's host, which restores the
    /// backup itself (verified against the state store's record, as here)
    /// and serves the copy over TLS. `None`: on this host, with `pg_bin`.
    pub on_agent: Option<AgentPlace>,
}

/// A restore test's copy on an agent's host.
#[derive(Clone)]
pub struct AgentPlace {
    /// The region whose agent makes the copy.
    pub region: String,
    pub node: Arc<dyn NodeActions>,
    /// drctl's client certificate (`[agents]`): the copy's only credential.
    pub tls: Option<drctl_config::AgentsTls>,
}

impl std::fmt::Debug for AgentPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPlace")
            .field("region", &self.region)
            .field("agent", &self.node.agent())
            .finish()
    }
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

/// The backup a restore test restores, as the node reads it: from the
/// request's store, verified against what the state store recorded before
/// a byte is unpacked.
struct VerifiedBackup {
    store: ObjectStore,
    service: String,
    expected: Expected,
}

#[async_trait::async_trait]
impl BackupSource for VerifiedBackup {
    async fn restore_verified(
        &self,
        backup_id: &str,
        target: &Path,
    ) -> Result<Option<String>, String> {
        restore_backup(
            &self.store,
            &self.service,
            backup_id,
            target,
            &self.expected,
        )
        .await
        .map(|manifest| manifest.stop_lsn)
        .map_err(|e| e.to_string())
    }
}

/// Runs one restore test. Never fails as a function: a failure is an
/// outcome, recorded with its reason; the scratch copy is always removed.
pub async fn run_restore_test(
    req: &RestoreTestRequest,
    mut phase: impl FnMut(RestorePhase),
) -> RestoreTestOutcome {
    let started = Instant::now();
    let node: Arc<dyn NodeActions> = match &req.on_agent {
        Some(place) => {
            tracing::info!(service = %req.service, backup = %req.backup_id, region = %place.region,
                agent = ?place.node.agent(), "restore test on the region's agent");
            place.node.clone()
        }
        None => Arc::new(
            LocalNode::new()
                .with_bin(req.pg_bin.clone())
                .with_backups(Arc::new(VerifiedBackup {
                    store: req.store.clone(),
                    service: req.service.clone(),
                    expected: Expected {
                        manifest: req.manifest.clone(),
                        key: req.key.clone(),
                    },
                })),
        ),
    };
    // Short: the copy's Unix socket lives below this directory, and a
    // socket path may not exceed 107 bytes.
    let dir = req.scratch_root.join(format!(
        "rt-{}-{}",
        req.service,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let mut outcome = RestoreTestOutcome {
        passed: false,
        time_to_ready: None,
        queries: Vec::new(),
        error: None,
    };
    // The copy's port, once the restore has chosen it.
    let mut port = 0;

    let result: Result<(), String> = async {
        phase(RestorePhase::Restoring);
        let copy = node
            .restore_scratch(&ScratchRestoreRequest {
                dir: dir.clone(),
                backup_id: req.backup_id.clone(),
                tls: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        port = copy.port;
        phase(RestorePhase::Starting);
        node.start(&StartRequest {
            // Named for what it is in errors (the copy's own name is a
            // drill's).
            node: NodeRef::new(
                format!("restore-test-{}", req.service),
                copy.data_dir.clone(),
                copy.port,
            ),
            wait_ready_ms: None,
            recovered: None,
            unfence: false,
        })
        .await
        .map_err(|e| e.to_string())?;
        let tls = req.on_agent.as_ref().and_then(|p| p.tls.as_ref());
        let dsn = copy
            .dsn("postgres", &req.database, tls)
            .map_err(|e| e.to_string())?;
        let mut conn = sqlx::PgConnection::connect(dsn.expose())
            .await
            .map_err(|e| format!("connecting to the restored cluster: {e}"))?;
        outcome.time_to_ready = Some(started.elapsed());
        phase(RestorePhase::Validating);
        for query in &req.validation_queries {
            outcome.queries.push(validate(&mut conn, query).await);
        }
        let _ = conn.close().await;
        Ok(())
    }
    .await;

    phase(RestorePhase::CleaningUp);
    if let Err(e) = node
        .teardown_scratch(&TeardownRequest {
            dir: dir.clone(),
            port,
        })
        .await
    {
        tracing::warn!(service = %req.service, dir = %dir.display(), error = %e, "could not remove a restore test's scratch copy");
    }
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

/// Runs one validation query: it must return one boolean, `true` passes.
async fn validate(conn: &mut sqlx::PgConnection, query: &str) -> QueryResult {
    match sqlx::query(query).fetch_one(conn).await {
        Ok(row) => match row.try_get::<Option<bool>, _>(0) {
            Ok(v) => QueryResult {
                query: query.to_string(),
                passed: v == Some(true),
                value: Some(v.map_or("null".to_string(), |b| b.to_string())),
                error: None,
            },
            Err(_) => QueryResult {
                query: query.to_string(),
                passed: false,
                value: None,
                error: Some(
                    "the query must return one boolean (e.g. SELECT count(*) > 0 FROM …)".into(),
                ),
            },
        },
        Err(e) => QueryResult {
            query: query.to_string(),
            passed: false,
            value: None,
            error: Some(e.to_string()),
        },
    }
}
