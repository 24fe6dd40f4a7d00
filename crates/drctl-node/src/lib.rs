//! The two seams between drctl's decisions and the databases it acts on,
//! each with its one implementation today.
//!
//! **Node actions** ([`NodeActions`], implemented by [`LocalNode`]):
//! everything that touches a database host's processes or files — node
//! status, stop, start, rewind or re-clone as a standby of a given primary,
//! configure as a standby, restore a verified backup into a data
//! directory, a scratch copy for a drill (a clone) or a restore test (a
//! restored backup) and its teardown, the hard fence. Every action is idempotent and safe to repeat after a crash.
//! Inputs and outputs are serde types: the agent (`drctl agent`, issue 17)
//! implements the same trait beside each database and the orchestrator
//! reaches it over HTTP, so the orchestrator's host needs no database
//! server binaries. [`LocalNode`] does it all on drctl's own host, as drctl
//! always has; its hard fence is what exists today (stop a local server,
//! else the operator's fence hook) — the hard fence proper comes with the
//! agent.
//!
//! **Datastore** ([`Datastore`], implemented by [`Postgres`]): what is
//! specific to a database engine — probe (role, writability,
//! reachability), replication positions and the heartbeat map the lag
//! monitor keeps, soft fence and unfence, catch-up, promotion, the write
//! probe, and the base backup tool drctl-backup streams. One value is
//! drctl's connection to one server; [`connect`] picks the engine a
//! service names, so MariaDB plugs in there without editing the failover
//! engine or the monitor. Positions are engine-neutral ([`Position`]: an
//! ordered number in the engine's unit, PostgreSQL's LSN today, a GTID
//! sequence number for MariaDB), and so are the map's points
//! ([`HeartbeatPoint`]).
//!
//! Dependencies: drctl-config (a service's connections) and drctl-pg (the
//! PostgreSQL work itself); never the state store, the monitor or the
//! engine, which sit above.

mod datastore;
mod hook;
mod local;
mod node;
mod nodes;
mod position;
mod postgres;

pub use datastore::{
    archive_application_name, connect, connect_as, service_dsn, standby_source, BackupPositions,
    CatchUpGoal, CatchUpReport, CloneSettings, Datastore, DatastoreError, DatastoreErrorKind,
    Engine, Login, PrimaryPosition, Promotion, ReceiverState, ReceiverStatus, ServerState,
    SoftFence, StandbyPosition, ToolCommand, WriteProbe,
};
/// How an agent's scratch copy is reached over TCP with TLS (set by the
/// agent on clone and scratch-restore requests).
pub use drctl_pg::ScratchTls;
pub use local::{
    beside_data_dir, default_scratch_root, fence_mark_path, local_system_identifier,
    restore_claim_path, resync_mark_path, rewind_diverged, this_host, BackupSource, LocalNode,
    CLONE_READY,
};
pub use node::{
    CloneRequest, Dsn, HardFenceMethod, HardFenceRequest, HardFenced, HookRun, NodeActions,
    NodeError, NodeErrorKind, NodeRef, NodeStatus, RecoveredServer, RestoreRequest, Restored,
    ResyncMethod, ResyncRequest, Resynced, ScratchClone, ScratchRestoreRequest, StandbyConfigured,
    StandbyRequest, StartRequest, Started, StopMode, Stopped, TeardownRequest, TornDown,
};
pub use nodes::Nodes;
pub use position::{HeartbeatPoint, Position};
pub use postgres::{pg_basebackup_positions, Postgres};
