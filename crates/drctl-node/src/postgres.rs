//! [`Postgres`]: the [`Datastore`] of PostgreSQL, over drctl-pg's
//! [`PgEndpoint`] (the same queries the monitor and the engine ran
//! directly before the seam; this module only translates types).

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::datastore::{
    BackupPositions, CatchUpGoal, CatchUpReport, CloneSettings, Datastore, DatastoreError,
    DatastoreErrorKind, Engine, PrimaryPosition, Promotion, ReceiverState, ReceiverStatus,
    ServerState, SoftFence, StandbyPosition, ToolCommand, WriteProbe,
};
use crate::{Dsn, HeartbeatPoint, Position};

/// Poll intervals of [`Datastore::catch_up`] (see [`CatchUpGoal`]): a
/// switchover's outage waits on the first, so it is short.
const DURABLE_POLL: Duration = Duration::from_millis(10);
const STREAMING_POLL: Duration = Duration::from_millis(100);

/// One PostgreSQL server, through one [`PgEndpoint`] (at most one
/// connection, reopened after a failure).
pub struct Postgres {
    endpoint: drctl_pg::PgEndpoint,
    dsn: Dsn,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("label", &self.endpoint.label())
            .finish()
    }
}

impl Postgres {
    /// A server by its DSN; `label` names it in errors (pass a redacted
    /// form). Nothing is dialled until the first call.
    pub fn new(
        label: impl Into<String>,
        dsn: Dsn,
        timeout: Duration,
    ) -> Result<Self, DatastoreError> {
        let endpoint = drctl_pg::PgEndpoint::new(label, dsn.expose(), timeout)?;
        Ok(Postgres { endpoint, dsn })
    }

    /// The server of `service` in `region` (`[services.postgres] REGION`),
    /// labelled `cluster@region`.
    pub fn for_service(
        service: &drctl_config::Service,
        region: &str,
        timeout: Duration,
    ) -> Result<Self, DatastoreError> {
        Postgres::new(
            format!("{}@{region}", service.cluster),
            crate::datastore::service_dsn(service, region)?,
            timeout,
        )
    }

    /// The same server under another `application_name`, so each of
    /// drctl's roles (monitor, guard) shows apart in `pg_stat_activity`.
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.endpoint = self.endpoint.with_application_name(name);
        self
    }

    /// The drctl-pg endpoint underneath, for what the seam does not carry
    /// (yet): code that needs it is PostgreSQL-specific by definition.
    pub fn endpoint(&self) -> &drctl_pg::PgEndpoint {
        &self.endpoint
    }

    async fn catch_up_durable(&self, goal: Position, limit: Duration) -> CatchUpReport {
        let started = Instant::now();
        let mut last = None;
        let (reached, promoted) = loop {
            match self.endpoint.node_state().await {
                // Promoted by an earlier attempt.
                Ok(s) if !s.in_recovery => break (true, true),
                Ok(s) => {
                    last = Some(Position::from(s.lsn));
                    if s.lsn >= goal.into() {
                        break (true, false);
                    }
                }
                Err(_) => {}
            }
            if started.elapsed() > limit {
                break (false, false);
            }
            tokio::time::sleep(DURABLE_POLL).await;
        };
        CatchUpReport {
            reached,
            promoted,
            last,
            receiver: None,
            waited_ms: started.elapsed().as_millis() as u64,
        }
    }

    async fn catch_up_streaming(&self, goal: Position, limit: Duration) -> CatchUpReport {
        let started = Instant::now();
        let mut last: Option<(ReceiverStatus, Position)> = None;
        let reached = loop {
            let receiver = self.probe_receiver().await.ok().flatten();
            if let (Ok(s), Some(ReceiverState { status, .. })) =
                (self.endpoint.node_state().await, receiver)
            {
                let done = s.in_recovery
                    && status == ReceiverStatus::Streaming
                    && s.replay_lsn >= goal.into();
                last = Some((status, s.replay_lsn.into()));
                if done {
                    break true;
                }
            }
            if started.elapsed() > limit {
                break false;
            }
            tokio::time::sleep(STREAMING_POLL).await;
        };
        CatchUpReport {
            reached,
            promoted: false,
            last: last.as_ref().map(|l| l.1),
            receiver: last.map(|l| l.0),
            waited_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// `pg_stat_wal_receiver.status` read into its enum; a status this drctl
/// does not know (a newer PostgreSQL) is an error naming it.
fn receiver_status(text: &str) -> Result<ReceiverStatus, DatastoreError> {
    text.parse().map_err(|_| {
        DatastoreError::new(
            DatastoreErrorKind::Failed,
            format!("pg_stat_wal_receiver.status {text:?} is not one drctl knows"),
        )
    })
}

#[async_trait]
impl Datastore for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn label(&self) -> &str {
        self.endpoint.label()
    }

    async fn probe(&self) -> Result<ServerState, DatastoreError> {
        Ok(self.endpoint.node_state().await?.into())
    }

    async fn probe_primary_position(&self) -> Result<PrimaryPosition, DatastoreError> {
        let p = self.endpoint.probe_primary_position().await?;
        Ok(PrimaryPosition {
            point: p.point.into(),
            streaming_standbys: p.streaming_standbys,
            archivers: p
                .archivers
                .into_iter()
                .map(|(name, lsn)| (name, lsn.into()))
                .collect(),
        })
    }

    async fn probe_primary_point(&self) -> Result<HeartbeatPoint, DatastoreError> {
        Ok(self.endpoint.probe_primary_point().await?.into())
    }

    async fn probe_standby_position(&self) -> Result<StandbyPosition, DatastoreError> {
        let s = self.endpoint.probe_standby_position().await?;
        Ok(StandbyPosition {
            durable: s.durable_lsn.into(),
            applied: s.replay_lsn.into(),
            naive_replay_delay_us: s.naive_replay_delay_us,
            receiver: s.wal_receiver.as_deref().map(receiver_status).transpose()?,
        })
    }

    async fn probe_receiver(&self) -> Result<Option<ReceiverState>, DatastoreError> {
        Ok(self
            .endpoint
            .wal_receiver()
            .await?
            .map(|(status, last_message_ms)| {
                Ok::<_, DatastoreError>(ReceiverState {
                    status: receiver_status(&status)?,
                    last_message_ms,
                })
            })
            .transpose()?)
    }

    async fn dataset_id(&self) -> Result<String, DatastoreError> {
        Ok(self.endpoint.system_identifier().await?.to_string())
    }

    async fn write_heartbeat(&self) -> Result<(HeartbeatPoint, Position), DatastoreError> {
        let (point, end) = self.endpoint.write_heartbeat().await?;
        Ok((point.into(), end.into()))
    }

    async fn load_heartbeats(
        &self,
        window: Duration,
    ) -> Result<Vec<HeartbeatPoint>, DatastoreError> {
        Ok(self
            .endpoint
            .load_heartbeats(window)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn prune_heartbeats(&self, keep: Duration) -> Result<u64, DatastoreError> {
        Ok(self.endpoint.prune_heartbeats(keep).await?)
    }

    async fn soft_fence(&self) -> Result<SoftFence, DatastoreError> {
        Ok(self.endpoint.fence_read_only().await?.into())
    }

    async fn unfence(&self) -> Result<(), DatastoreError> {
        Ok(self.endpoint.unfence().await?)
    }

    async fn catch_up(
        &self,
        goal: CatchUpGoal,
        limit: Duration,
    ) -> Result<CatchUpReport, DatastoreError> {
        Ok(match goal {
            CatchUpGoal::Durable(p) => self.catch_up_durable(p, limit).await,
            CatchUpGoal::StreamingApplied(p) => self.catch_up_streaming(p, limit).await,
        })
    }

    async fn promote(&self, wait: Duration) -> Result<Promotion, DatastoreError> {
        Ok(self.endpoint.promote(wait).await?.into())
    }

    async fn write_probe(&self, operation_id: &str) -> Result<WriteProbe, DatastoreError> {
        let (written_at_us, lsn) = self.endpoint.write_probe(operation_id).await?;
        Ok(WriteProbe {
            written_at_us,
            position: lsn.into(),
        })
    }

    async fn prepare_as_copy_source(&self) -> Result<(), DatastoreError> {
        Ok(self.endpoint.checkpoint().await?)
    }

    async fn clone_settings(&self) -> Result<CloneSettings, DatastoreError> {
        Ok(CloneSettings(
            self.endpoint
                .settings(drctl_pg::STANDBY_PARITY_SETTINGS)
                .await?,
        ))
    }

    fn base_backup_command(
        &self,
        tool_dir: &std::path::Path,
    ) -> Result<ToolCommand, DatastoreError> {
        let conn = drctl_pg::ChildConnection::from_dsn(self.dsn.expose(), false).map_err(|e| {
            DatastoreError::new(
                DatastoreErrorKind::Config,
                format!("{}: {e}", self.endpoint.label()),
            )
        })?;
        let mut command = drctl_pg::os::clean_command(tool_dir.join("pg_basebackup"));
        conn.apply(&mut command);
        command
            .arg("-d")
            .arg(conn.conninfo())
            .args(["-D", "-", "-Ft", "-X", "fetch", "-c", "fast", "-v"]);
        Ok(ToolCommand {
            command,
            keep_alive: Box::new(conn),
        })
    }

    async fn ensure_archive_slot(&self, slot: &str) -> Result<bool, DatastoreError> {
        Ok(self.endpoint.ensure_physical_slot(slot).await?)
    }

    fn wal_receiver_command(
        &self,
        tool_dir: &std::path::Path,
        spool: &std::path::Path,
        slot: &str,
        application_name: &str,
    ) -> Result<ToolCommand, DatastoreError> {
        let conn = drctl_pg::ChildConnection::from_dsn(self.dsn.expose(), false).map_err(|e| {
            DatastoreError::new(
                DatastoreErrorKind::Config,
                format!("{}: {e}", self.endpoint.label()),
            )
        })?;
        // Names go into the conninfo and onto the command line: plain
        // identifiers only.
        for (what, name) in [("slot", slot), ("application name", application_name)] {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(DatastoreError::new(
                    DatastoreErrorKind::Config,
                    format!("{what} {name:?}: use a-z, 0-9 and '_'"),
                ));
            }
        }
        let mut command = drctl_pg::os::clean_command(tool_dir.join("pg_receivewal"));
        conn.apply(&mut command);
        command
            .arg("-d")
            .arg(format!(
                "{} application_name={application_name}",
                conn.conninfo()
            ))
            .arg("-D")
            .arg(spool)
            .args([
                "--slot",
                slot,
                "--synchronous",
                "--no-loop",
                "--no-password",
            ]);
        Ok(ToolCommand {
            command,
            keep_alive: Box::new(conn),
        })
    }

    fn backup_positions(&self, tool_output: &str) -> BackupPositions {
        pg_basebackup_positions(tool_output)
    }

    async fn close(&self) {
        self.endpoint.close().await
    }
}

/// Reads `write-ahead log start point: X/Y on timeline N` and `end point:
/// X/Y` in pg_basebackup's verbose output (as drctl-backup does).
pub fn pg_basebackup_positions(stderr: &str) -> BackupPositions {
    let after = |label: &str| {
        let at = stderr.find(label)? + label.len();
        stderr[at..].split_whitespace().next().map(str::to_string)
    };
    let history = stderr.find("on timeline ").and_then(|at| {
        stderr[at + "on timeline ".len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    });
    BackupPositions {
        history,
        start: after("write-ahead log start point: "),
        stop: after("write-ahead log end point: "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_positions_come_from_pg_basebackup_output() {
        let out = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
            pg_basebackup: checkpoint completed\n\
            pg_basebackup: write-ahead log start point: 0/5000028 on timeline 1\n\
            pg_basebackup: write-ahead log end point: 0/5000100\n\
            pg_basebackup: base backup completed\n";
        assert_eq!(
            pg_basebackup_positions(out),
            BackupPositions {
                history: Some(1),
                start: Some("0/5000028".into()),
                stop: Some("0/5000100".into()),
            }
        );
    }

    #[test]
    fn the_dsn_is_never_in_debug_output() {
        let pg = Postgres::new(
            "orders@eu",
            Dsn::new("postgres://app:hunter2@127.0.0.1:1/x"),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{pg:?}").contains("hunter2"));
    }
}
