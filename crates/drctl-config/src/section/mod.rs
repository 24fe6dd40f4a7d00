//! What the configuration means, and every check on it.
//!
//! Owns the schema (which tables and keys exist, their defaults) and the
//! rules that tie values together: names are unique and well-formed, services
//! name declared regions, replicated tiers have a standby, datastores cover
//! the regions that need them, services sharing a cluster agree on where it
//! lives, object stores are well-formed and hold no credentials, backups name
//! a declared store and a region they can be taken from, run on 5-field cron
//! schedules, keep at least their newest copy, copy offsite to another store
//! and name their encryption key without holding it; DNS providers are
//! reachable without DNS and sign with a key they only name (or a lab's
//! inline one); service records sit inside their provider's zone, have a
//! target of their type in every region and a drill record of their own;
//! fence hooks are argv arrays with known placeholders. It reads through
//! `reader` (which owns shapes and positions) and builds the `model` types
//! only when nothing is wrong.
//!
//! Every check runs even after an earlier one failed, so the operator sees
//! the whole list; a check is skipped only when its input is itself wrong
//! (no "primary not among regions" for a service whose regions did not
//! parse), to avoid reporting one mistake several times.
//!
//! One module per section of the file; each owns its keys (with their types,
//! defaults and docs, from which `docs/config.md` is generated), its
//! defaults (defined once) and its checks. `common` holds what they share;
//! `root` reads the whole document.

pub(crate) mod agents;
pub(crate) mod alerts;
pub(crate) mod api;
pub(crate) mod audit;
pub(crate) mod backup;
pub(crate) mod common;
pub(crate) mod coordination;
pub(crate) mod dns_providers;
pub(crate) mod failover;
pub(crate) mod health;
pub(crate) mod monitor;
pub(crate) mod object_stores;
pub(crate) mod postgres;
pub(crate) mod regions;
pub(crate) mod root;
pub(crate) mod schedule;
pub(crate) mod scratch;
pub(crate) mod service_dns;
pub(crate) mod services;
pub(crate) mod store;
pub(crate) mod tiers;
