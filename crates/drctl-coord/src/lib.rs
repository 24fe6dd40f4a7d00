//! drctl's coordination through etcd: the **primary lease** of each
//! service, which only a quorum of the three sites' etcd members can grant
//! or renew, so that no partition can leave two writable primaries.
//!
//! **Why a lease in etcd**: with two regions nobody can tell "the other
//! side died" from "I am cut off". A primary's agent holds the key
//! `drctl/primary/<service>` (naming its region) attached to an etcd lease
//! and renews it; when it cannot, it hard-fences its own server *before*
//! the lease can expire (see `drctl-agent`'s lease holder). The engine
//! promotes a standby of an unreachable primary only once that lease has
//! expired in etcd (or a hard fence was confirmed), and it first claims the
//! key for the target, so the old primary, if it ever answers again, finds
//! the key naming another region and fences itself. etcd counts a lease's
//! time from when its leader *received* a renewal, on its own clock, and a
//! new leader restarts every lease's full time: so an expiry seen in etcd
//! always comes after the deadline the holder counted from the *sending*
//! of its last renewal.
//!
//! **Why etcd's JSON API** (its gRPC gateway, `POST /v3/...`) and not a
//! gRPC client crate: the maintained Rust clients generate their code from
//! etcd's `.proto` files at build time and need `protoc` installed, which
//! would break the README's first command (`cargo run -p drctl -- lab up`)
//! on a fresh machine, and add tonic and prost to every build. The gateway
//! is etcd's documented API for clients without gRPC, served by every
//! member on its client port; it keeps reads linearizable (a member cut
//! off from the quorum answers nothing, so it is skipped on a timeout) and
//! its lease calls are the same RPCs. This crate speaks the few calls drctl
//! needs: lease grant, keep-alive, time-to-live and revoke; get; the
//! compare-and-set transactions below; and each member's status.
//!
//! The crate owns the wire calls ([`Etcd`]) and the meaning of the primary
//! key ([`PrimaryLeases`]); the agent holds leases, the engine and the
//! guard read and claim them.

mod etcd;
mod primary;

pub use etcd::{Etcd, KeyValue, LeaseId, MemberStatus, Renewal};
pub use primary::{Claim, Holder, HolderKind, PrimaryLease, PrimaryLeases, PRIMARY_PREFIX};

/// Why a coordination call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// No member answered within the timeout: the quorum is out of reach
    /// (this side of a partition is the minority) or etcd is down.
    #[error("no etcd member answered ({0})")]
    Unreachable(String),
    /// A member answered with an error.
    #[error("etcd refused {call}: {message}")]
    Refused { call: &'static str, message: String },
    /// The answer could not be read.
    #[error("etcd answered {call} with something unreadable: {message}")]
    Malformed { call: &'static str, message: String },
    #[error("bad coordination settings: {0}")]
    Config(String),
}

pub type Result<T, E = CoordError> = std::result::Result<T, E>;
