//! The datastore seam: what is specific to a database engine, behind
//! [`Datastore`]. One value is drctl's connection to one server (a region's
//! primary or standby, or a drill's clone); [`connect`] picks the engine a
//! service's configuration names. PostgreSQL is the one engine today
//! ([`crate::Postgres`]); MariaDB plugs in beside it here, and neither the
//! failover engine nor the monitor changes.
//!
//! Not here: anything that touches a database host's processes or files
//! (that is [`crate::NodeActions`]), and what the numbers mean (the
//! monitor's heartbeat map, the engine's plans).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{HeartbeatPoint, Position};

/// The database engines drctl drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
}

impl Engine {
    /// A position in the engine's own words, for people: an LSN (`1/A0`)
    /// for PostgreSQL.
    pub fn format_position(self, position: Position) -> String {
        match self {
            Engine::Postgres => drctl_pg::Lsn::from(position).to_string(),
        }
    }

    /// Reads a position written in the engine's own words
    /// ([`Self::format_position`]); `None` when it is not one.
    pub fn parse_position(self, text: &str) -> Option<Position> {
        match self {
            Engine::Postgres => text.parse::<drctl_pg::Lsn>().ok().map(Position::from),
        }
    }

    /// What the engine calls a position (`LSN`) and a history
    /// (`timeline`), for people.
    pub fn position_name(self) -> &'static str {
        match self {
            Engine::Postgres => "LSN",
        }
    }

    pub fn history_name(self) -> &'static str {
        match self {
            Engine::Postgres => "timeline",
        }
    }

    /// The unit of [`Position::distance_after`] (`bytes` of WAL for
    /// PostgreSQL).
    pub fn distance_unit(self) -> &'static str {
        match self {
            Engine::Postgres => "bytes",
        }
    }

    /// How far a primary moves by itself after a heartbeat, in the
    /// engine's unit: while it moved no further it is idle, and the
    /// monitor writes no new heartbeat (else each would provoke the next
    /// forever). PostgreSQL: a running-xacts record after the commit, a
    /// checkpoint; a few hundred bytes.
    pub fn idle_slack(self) -> u64 {
        match self {
            Engine::Postgres => 1024,
        }
    }

    /// The engine of `service`'s servers: the one place a service's
    /// engine is read (PostgreSQL is the only one yet).
    pub fn of(_service: &drctl_config::Service) -> Engine {
        Engine::Postgres
    }

    /// The engine's name, for people.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
        }
    }

    /// What [`Datastore::soft_fence`] does, in the engine's words (plans
    /// show it).
    pub fn soft_fence_description(self) -> &'static str {
        match self {
            Engine::Postgres => {
                "read-only (ALTER SYSTEM default_transaction_read_only) and terminate client sessions"
            }
        }
    }

    /// How an operator lifts the soft fence by hand, when drctl could not.
    pub fn unfence_by_hand(self) -> &'static str {
        match self {
            Engine::Postgres => {
                "run `ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();` on it"
            }
        }
    }

    /// What a rejoin does to the old primary, in the engine's words.
    pub fn resync_description(self) -> &'static str {
        match self {
            Engine::Postgres => "pg_rewind",
        }
    }

    /// The port, database and user a connection string names: a drill
    /// connects to its clone as the same user to the same database. The
    /// error never repeats the string (it may hold a password).
    pub fn login_of(self, dsn: &crate::Dsn) -> Result<Login, DatastoreError> {
        match self {
            Engine::Postgres => drctl_pg::dsn_login(dsn.expose())
                .map(|l| Login {
                    port: l.port,
                    database: l.database,
                    user: l.user,
                })
                .map_err(|e| DatastoreError::new(DatastoreErrorKind::Config, e)),
        }
    }

    /// The engine's default database and user when a connection string
    /// names none (PostgreSQL: `postgres` for both).
    pub fn default_login(self) -> (&'static str, &'static str) {
        match self {
            Engine::Postgres => ("postgres", "postgres"),
        }
    }

    /// How a standby named `standby` connects to the primary at `primary`
    /// (PostgreSQL `primary_conninfo`: the connection string with
    /// `application_name`, so `pg_stat_replication` on the primary says
    /// who streams).
    pub fn standby_conninfo(self, primary: &crate::Dsn, standby: &str) -> crate::Dsn {
        match self {
            Engine::Postgres => {
                let dsn = primary.expose();
                crate::Dsn::new(if dsn.contains("://") {
                    let sep = if dsn.contains('?') { '&' } else { '?' };
                    format!("{dsn}{sep}application_name={standby}")
                } else {
                    format!("{dsn} application_name={standby}")
                })
            }
        }
    }

    /// Connects (lazily) to a server of this engine by its connection
    /// string: a server no service names (a drill's scratch clone).
    /// `label` names it in errors: pass a redacted form.
    pub fn connect(
        self,
        label: impl Into<String>,
        dsn: &crate::Dsn,
        timeout: Duration,
    ) -> Result<Box<dyn Datastore>, DatastoreError> {
        match self {
            Engine::Postgres => Ok(Box::new(crate::Postgres::new(label, dsn.clone(), timeout)?)),
        }
    }
}

/// Where and as whom a connection string connects ([`Engine::login_of`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The port clients connect to (the engine's default when unnamed).
    pub port: u16,
    pub database: Option<String>,
    pub user: Option<String>,
}

/// What kind of failure a datastore call met. The engine's decisions hang
/// on it: only [`DatastoreErrorKind::Unreachable`] lets a failover treat a
/// source as gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatastoreErrorKind {
    /// The configuration names no usable connection (missing, unparseable).
    Config,
    /// No connection could be made at all (refused, reset, no route, no
    /// answer to the attempt in time): the server may be down or cut off.
    Unreachable,
    /// The server answered and then did not finish in time: it is up.
    Timeout,
    /// The server is not in the role the call needs (a standby asked for a
    /// primary's position, a promotion that did not finish).
    WrongRole,
    /// The server answered and refused or failed the work.
    Failed,
}

/// A datastore call's failure. The message names the server by its
/// redacted label and never holds a password; it is the engine's own
/// message unchanged (the monitor stores it with its samples).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct DatastoreError {
    pub kind: DatastoreErrorKind,
    pub message: String,
}

impl DatastoreError {
    pub fn new(kind: DatastoreErrorKind, message: impl Into<String>) -> Self {
        DatastoreError {
            kind,
            message: message.into(),
        }
    }

    /// No connection to the server could be made at all: it may be down
    /// or cut off. A server that answered and then failed the work is up,
    /// and may still take writes.
    pub fn is_connection_failure(&self) -> bool {
        self.kind == DatastoreErrorKind::Unreachable
    }
}

impl From<drctl_pg::PgError> for DatastoreError {
    fn from(e: drctl_pg::PgError) -> Self {
        use drctl_pg::PgError;
        let kind = if e.is_connection_failure() {
            DatastoreErrorKind::Unreachable
        } else {
            match &e {
                PgError::InvalidDsn { .. } => DatastoreErrorKind::Config,
                PgError::Timeout { .. } => DatastoreErrorKind::Timeout,
                PgError::WrongRole { .. } => DatastoreErrorKind::WrongRole,
                PgError::Database { .. } => DatastoreErrorKind::Failed,
            }
        };
        DatastoreError::new(kind, e.to_string())
    }
}

/// A server's role, fence and positions, read at one moment.
///
/// The aliases read what the failover journal stored before the seam
/// (format version 2 held drctl-pg's `NodeState`), so an operation started
/// then still resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// A standby (replaying a primary's changes), not a primary.
    #[serde(alias = "in_recovery")]
    pub standby: bool,
    /// drctl's soft fence (or an operator's) is on: it refuses writes.
    #[serde(alias = "read_only")]
    pub fenced: bool,
    /// The history the server is on (PostgreSQL's timeline): a promotion
    /// starts a new one.
    #[serde(alias = "timeline")]
    pub history: i64,
    /// Primary: everything written. Standby: everything durable here
    /// (received and flushed, or applied).
    #[serde(alias = "lsn")]
    pub position: Position,
    /// Standby: applied (replayed) up to here; primary: `position`.
    #[serde(alias = "replay_lsn")]
    pub applied: Position,
    /// The server's clock, microseconds since the epoch.
    #[serde(alias = "now_us")]
    pub clock_us: i64,
}

impl ServerState {
    /// A primary that takes writes: the one state two servers of a cluster
    /// must never be in at once.
    pub fn writable(&self) -> bool {
        !self.standby && !self.fenced
    }
}

impl From<drctl_pg::NodeState> for ServerState {
    fn from(s: drctl_pg::NodeState) -> Self {
        ServerState {
            standby: s.in_recovery,
            fenced: s.read_only,
            history: s.timeline,
            position: s.lsn.into(),
            applied: s.replay_lsn.into(),
            clock_us: s.now_us,
        }
    }
}

/// The primary's clock and durable position, read together, and how many
/// standbys stream from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryPosition {
    pub point: HeartbeatPoint,
    pub streaming_standbys: i64,
    /// drctl's WAL archivers streaming from this primary
    /// ([`archive_application_name`]) and how far each has made WAL
    /// durable on its own disk.
    pub archivers: Vec<(String, Position)>,
}

/// The name a service's WAL archiver streams under (PostgreSQL's
/// `application_name`; its replication slot has the same name).
pub fn archive_application_name(service: &str) -> String {
    format!("drctl_archive_{}", service.replace('-', "_"))
}

/// What a standby holds, read at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyPosition {
    /// Received and made durable here: what a promotion would keep. Falls
    /// back to `applied` when nothing was received since start-up.
    pub durable: Position,
    pub applied: Position,
    /// The standby's clock minus the commit time of the last change it
    /// applied: the figure most dashboards show, kept to show why it is
    /// not RPO (it grows on an idle primary).
    pub naive_replay_delay_us: Option<i64>,
    /// The replication receiver's state, `None` when none runs.
    pub receiver: Option<ReceiverStatus>,
}

/// Where a standby's replication receiver stands: PostgreSQL's fixed set
/// (`pg_stat_wal_receiver.status`), spelled as PostgreSQL spells it in
/// JSON and `Display`. A status outside the set is a probe error, not a
/// guess: only [`ReceiverStatus::Streaming`] counts as receiving.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ReceiverStatus {
    Stopped,
    Starting,
    /// Connected to its primary and receiving: the one healthy state.
    Streaming,
    /// Waiting to be told where to start streaming (e.g. after a
    /// timeline switch).
    Waiting,
    Restarting,
    Stopping,
}

/// The replication receiver of a standby.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverState {
    pub status: ReceiverStatus,
    /// How long ago, by the standby's clock, it last heard from the primary.
    pub last_message_ms: Option<i64>,
}

/// What a soft fence did. (Aliases: as [`ServerState`], the journal's
/// version 2 names.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftFence {
    /// It was fenced already (a re-run, or fenced by hand).
    #[serde(alias = "already_read_only")]
    pub already_fenced: bool,
    /// It is a standby: there is nothing to fence.
    pub was_standby: bool,
    /// Client sessions ended (an open read-write transaction could still
    /// have written).
    #[serde(alias = "sessions_terminated")]
    pub sessions_ended: i64,
}

impl From<drctl_pg::FenceReport> for SoftFence {
    fn from(r: drctl_pg::FenceReport) -> Self {
        SoftFence {
            already_fenced: r.already_read_only,
            was_standby: r.was_standby,
            sessions_ended: r.sessions_terminated,
        }
    }
}

/// What a promotion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub already_primary: bool,
    /// The history the server is on afterwards, as far as known now.
    #[serde(alias = "timeline")]
    pub history: i64,
    pub took_ms: u64,
}

impl From<drctl_pg::PromoteReport> for Promotion {
    fn from(r: drctl_pg::PromoteReport) -> Self {
        Promotion {
            already_primary: r.already_primary,
            history: r.timeline,
            took_ms: r.took_ms,
        }
    }
}

/// The proof that a server takes writes: the operation's row, committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteProbe {
    /// The server's commit time (µs since the epoch).
    pub written_at_us: i64,
    pub position: Position,
}

/// What a standby must reach before [`Datastore::catch_up`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUpGoal {
    /// Everything up to the position is durable here: a promotion now
    /// loses nothing before it. A server already promoted (by an earlier
    /// attempt) counts as there. Polled every 10 ms.
    Durable(Position),
    /// The standby streams from its primary and has applied everything up
    /// to the position: a rejoined standby protects the pair again.
    /// Polled every 100 ms.
    StreamingApplied(Position),
}

/// How a catch-up ended. Not reaching the goal in time is an outcome, not
/// an error: the caller decides (a switchover gives the source back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpReport {
    pub reached: bool,
    /// The server was no longer a standby (promoted by an earlier attempt).
    pub promoted: bool,
    /// The last position read (durable or applied, as the goal counts).
    pub last: Option<Position>,
    /// The last receiver state read ([`CatchUpGoal::StreamingApplied`]).
    pub receiver: Option<ReceiverStatus>,
    pub waited_ms: u64,
}

/// Settings a copy of a server needs from it to start (PostgreSQL: those
/// a hot standby must have at least as high as its primary). Read with
/// [`Datastore::clone_settings`], handed to
/// [`crate::NodeActions::clone_scratch`]; a node only takes the names it
/// knows and only their digits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSettings(pub Vec<(String, String)>);

/// The positions a base backup's tool reported (PostgreSQL: pg_basebackup's
/// verbose output), in the engine's own words.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPositions {
    pub history: Option<u32>,
    pub start: Option<String>,
    pub stop: Option<String>,
}

/// One of the engine's client tools, ready to spawn, with what it needs
/// while it runs: the base backup tool (its stdout is one archive, a tar
/// with what it needs to be consistent; its stderr its progress words,
/// which [`Datastore::backup_positions`] reads) or the WAL receiver.
pub struct ToolCommand {
    pub command: std::process::Command,
    /// What the command needs while it runs (the passfile holding the
    /// password): drop it after the child has exited, not before.
    pub keep_alive: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for ToolCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCommand")
            .field("program", &self.command.get_program())
            .finish_non_exhaustive()
    }
}

/// One server of a datastore, as drctl talks to it: probes, positions and
/// the heartbeat map for the monitor; fence, catch-up, promotion and the
/// write probe for the failover engine; the base backup's tool for
/// backups.
///
/// Every call reaches the network and is bounded by the timeout the
/// server was connected with (except [`Datastore::catch_up`] and
/// [`Datastore::promote`], which take their own). An implementation keeps
/// at most one connection and reopens it after any failure, so a dead
/// server costs one failed call, not a pile of half-open sockets.
///
/// Every action is idempotent and safe to repeat after a crash: it reads
/// what it finds first and says so ("already fenced", "already primary"),
/// and a write probe rewrites the operation's own row instead of adding
/// one.
#[async_trait]
pub trait Datastore: Send + Sync + std::fmt::Debug {
    /// Which engine this server runs.
    fn engine(&self) -> Engine;

    /// The server's name in logs and errors (`cluster@region`, redacted).
    fn label(&self) -> &str;

    // ---------------------------------------------------------------- probes

    /// Role, fence and positions in one read.
    async fn probe(&self) -> Result<ServerState, DatastoreError>;

    /// A primary's clock, durable position and streaming standbys; a
    /// [`DatastoreErrorKind::WrongRole`] error on a standby.
    async fn probe_primary_position(&self) -> Result<PrimaryPosition, DatastoreError>;

    /// Only the primary's clock and durable position: a map point, as
    /// cheap as a query gets.
    async fn probe_primary_point(&self) -> Result<HeartbeatPoint, DatastoreError>;

    /// What a standby has made durable and applied; a
    /// [`DatastoreErrorKind::WrongRole`] error on a primary.
    async fn probe_standby_position(&self) -> Result<StandbyPosition, DatastoreError>;

    /// A standby's replication receiver, `None` when none runs.
    async fn probe_receiver(&self) -> Result<Option<ReceiverState>, DatastoreError>;

    /// The identity of the data set: the same on a primary and every
    /// physical copy of it, different for any other (PostgreSQL's system
    /// identifier).
    async fn dataset_id(&self) -> Result<String, DatastoreError>;

    // ------------------------------------------------------- heartbeat map

    /// Writes one heartbeat on the primary (creating where it lives on
    /// first use); returns its map point and the durable position right
    /// after it (so the caller can tell later whether anything else was
    /// written since). Never waits for a synchronous standby.
    async fn write_heartbeat(&self) -> Result<(HeartbeatPoint, Position), DatastoreError>;

    /// Heartbeats written within `window`, oldest first: the map read back
    /// after drctl restarts (also on a promoted standby, which carries the
    /// old primary's). Empty when none exist yet.
    async fn load_heartbeats(
        &self,
        window: Duration,
    ) -> Result<Vec<HeartbeatPoint>, DatastoreError>;

    /// Deletes heartbeats older than `keep`; returns how many went.
    async fn prune_heartbeats(&self, keep: Duration) -> Result<u64, DatastoreError>;

    // ------------------------------------------------------------- failover

    /// The soft fence: the server refuses new writes (and keeps refusing
    /// after a restart), and its client sessions are ended; replication
    /// goes on, so a standby still receives the last changes. A standby
    /// needs nothing. The hard fence (stop the server, cut it off) is a
    /// node action ([`crate::NodeActions::hard_fence`]).
    async fn soft_fence(&self) -> Result<SoftFence, DatastoreError>;

    /// Lifts the soft fence (a switchover that could not complete gives the
    /// source back).
    async fn unfence(&self) -> Result<(), DatastoreError>;

    /// Waits up to `limit` until the standby reaches `goal`. Read failures
    /// while waiting are retried, not returned.
    async fn catch_up(
        &self,
        goal: CatchUpGoal,
        limit: Duration,
    ) -> Result<CatchUpReport, DatastoreError>;

    /// Promotes a standby and waits up to `wait` until it takes writes; a
    /// no-op on a primary.
    async fn promote(&self, wait: Duration) -> Result<Promotion, DatastoreError>;

    /// Commits the operation's probe row (locally durable, never waiting
    /// for a standby): the proof the server takes writes.
    async fn write_probe(&self, operation_id: &str) -> Result<WriteProbe, DatastoreError>;

    /// Makes the server's durable state current for a node that will copy
    /// or rewind from it (PostgreSQL: a `CHECKPOINT`, without which a just
    /// promoted primary's control file still names the old timeline and
    /// pg_rewind finds nothing to do).
    async fn prepare_as_copy_source(&self) -> Result<(), DatastoreError>;

    /// What a copy of this server needs from it to start
    /// ([`crate::NodeActions::clone_scratch`]).
    async fn clone_settings(&self) -> Result<CloneSettings, DatastoreError>;

    // --------------------------------------------------------------- backup

    /// The engine's base backup tool, reading from this server: what
    /// drctl-backup streams into object storage (PostgreSQL:
    /// `pg_basebackup -D - -Ft -X fetch -c fast -v`, the password in a
    /// passfile). `tool_dir` holds the engine's client programs.
    fn base_backup_command(
        &self,
        tool_dir: &std::path::Path,
    ) -> Result<ToolCommand, DatastoreError>;

    /// Makes sure the archive's replication slot `slot` exists on this
    /// server (it must be a primary), reserving the change log from now;
    /// returns whether it was created.
    async fn ensure_archive_slot(&self, slot: &str) -> Result<bool, DatastoreError>;

    /// The engine's change-log receiver for the continuous archive:
    /// streams this server's log into `spool` through the replication slot
    /// `slot`, making every write durable before acknowledging it
    /// (PostgreSQL: `pg_receivewal --slot SLOT --synchronous --no-loop`,
    /// named `application_name` in `pg_stat_replication`, the password in
    /// a passfile). It exits when the connection ends; the archiver
    /// restarts it.
    fn wal_receiver_command(
        &self,
        tool_dir: &std::path::Path,
        spool: &std::path::Path,
        slot: &str,
        application_name: &str,
    ) -> Result<ToolCommand, DatastoreError>;

    /// The positions the base backup tool reported on its stderr.
    fn backup_positions(&self, tool_output: &str) -> BackupPositions;

    // Restoring is not a datastore call: the bytes land in a data
    // directory on the database host ([`crate::NodeActions::restore_backup`]),
    // and the engine decides how a restored directory is started
    // ([`crate::StartRequest::recovered`]).

    /// Closes the connection, if any (the next call opens a new one).
    async fn close(&self);
}

/// [`connect`] under its own `application_name`, so each of drctl's roles
/// (monitor, guard) shows apart on the server (`pg_stat_activity`).
pub fn connect_as(
    service: &drctl_config::Service,
    region: &str,
    timeout: Duration,
    application_name: &str,
) -> Result<Box<dyn Datastore>, DatastoreError> {
    Ok(Box::new(
        crate::Postgres::for_service(service, region, timeout)?
            .with_application_name(application_name),
    ))
}

/// Connects (lazily: nothing is dialled until the first call) to the
/// server of `service` in `region`, with the engine the service's
/// configuration names ([`Engine::of`]). `timeout` bounds every call. The
/// one place a new engine is added.
pub fn connect(
    service: &drctl_config::Service,
    region: &str,
    timeout: Duration,
) -> Result<Box<dyn Datastore>, DatastoreError> {
    match Engine::of(service) {
        Engine::Postgres => Ok(Box::new(crate::Postgres::for_service(
            service, region, timeout,
        )?)),
    }
}

/// The connection string of `service`'s server in `region`, secrets
/// resolved: what a node copies or rewinds from.
pub fn service_dsn(
    service: &drctl_config::Service,
    region: &str,
) -> Result<crate::Dsn, DatastoreError> {
    let source = service.postgres.get(region).ok_or_else(|| {
        DatastoreError::new(
            DatastoreErrorKind::Config,
            format!(
                "service {} has no {} connection for region {region}",
                service.name,
                Engine::of(service).name()
            ),
        )
    })?;
    let secret = source
        .resolve()
        .map_err(|e| DatastoreError::new(DatastoreErrorKind::Config, e.to_string()))?;
    Ok(crate::Dsn::from(&secret))
}

/// How a copy of `service`'s server in `primary` streams from it, named
/// `standby` ([`Engine::standby_conninfo`]): the primary's
/// `replication_dsn` when it has one, else its connection string.
pub fn standby_source(
    service: &drctl_config::Service,
    primary: &str,
    standby: &str,
) -> Result<crate::Dsn, DatastoreError> {
    let dsn = match service
        .nodes
        .get(primary)
        .and_then(|n| n.replication_dsn.as_ref())
    {
        Some(s) => crate::Dsn::from(s),
        None => service_dsn(service, primary)?,
    };
    Ok(Engine::of(service).standby_conninfo(&dsn, standby))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dsn;

    #[test]
    fn a_standby_names_itself_in_either_form_of_connection_string() {
        let pg = Engine::Postgres;
        assert_eq!(
            pg.standby_conninfo(&Dsn::new("postgres://h:1/db"), "eu")
                .expose(),
            "postgres://h:1/db?application_name=eu"
        );
        assert_eq!(
            pg.standby_conninfo(&Dsn::new("postgres://h:1/db?sslmode=require"), "eu")
                .expose(),
            "postgres://h:1/db?sslmode=require&application_name=eu"
        );
        assert_eq!(
            pg.standby_conninfo(&Dsn::new("host=h port=1"), "eu")
                .expose(),
            "host=h port=1 application_name=eu"
        );
    }

    #[test]
    fn receiver_statuses_keep_postgresql_s_spelling() {
        for (text, status) in [
            ("stopped", ReceiverStatus::Stopped),
            ("starting", ReceiverStatus::Starting),
            ("streaming", ReceiverStatus::Streaming),
            ("waiting", ReceiverStatus::Waiting),
            ("restarting", ReceiverStatus::Restarting),
            ("stopping", ReceiverStatus::Stopping),
        ] {
            assert_eq!(text.parse::<ReceiverStatus>(), Ok(status));
            assert_eq!(status.to_string(), text);
        }
        assert!("Streaming".parse::<ReceiverStatus>().is_err());
    }
}
