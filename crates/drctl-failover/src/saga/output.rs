//! What an action leaves in the journal: its typed output, or a typed
//! [`Skipped`], in a versioned envelope.
//!
//! Actions return [`Action<T>`] with `T` their own serde type; the driver
//! stores it as an [`Entry`] (`{"v":2,"done":…}` or
//! `{"v":2,"skipped":{"reason":…}}`), and later actions read it back by
//! type ([`crate::saga::ctx::Ctx::lookup`]), as steno's `ctx.lookup::<T>()`
//! does. Nothing else crosses from one action to the next.
//!
//! Journals written before the envelope (version 1: the bare output, and a
//! skipped step as `{"skipped": "reason"}`) are read as version 1 so an
//! operation started by an older drctl still resumes; a version newer than
//! [`JOURNAL_VERSION`] is refused by name.
//!
//! Version 3 (the datastore seam) stores engine-neutral outputs: server
//! states, fences, promotions and positions of `drctl-node` instead of
//! drctl-pg's. Its envelope is version 2's; version 2 outputs (PostgreSQL's
//! names: `in_recovery`, `lsn`, `sessions_terminated`…) are read through
//! serde aliases on the neutral types, so an operation begun by the
//! previous drctl resumes. An older drctl refuses a version 3 journal by
//! name rather than misread it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The journal format this drctl writes.
pub const JOURNAL_VERSION: u32 = 3;

/// The oldest envelope version read as such (older: version 1).
const FIRST_ENVELOPE_VERSION: u32 = 2;

/// An action that had nothing to do, and why (no datastore, no DNS, the
/// source already gone). Later actions see it as such, never as an output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub reason: String,
}

/// What an action did: its output, or skipped.
#[derive(Clone, Debug, PartialEq)]
pub enum Action<T> {
    Done(T),
    Skipped(Skipped),
}

impl<T> Action<T> {
    pub fn skipped(reason: impl Into<String>) -> Self {
        Action::Skipped(Skipped {
            reason: reason.into(),
        })
    }

    /// The output, `None` when the action was skipped.
    pub fn done(self) -> Option<T> {
        match self {
            Action::Done(t) => Some(t),
            Action::Skipped(_) => None,
        }
    }
}

/// One journaled action result, untyped until read back by type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    Done(Value),
    Skipped(Skipped),
}

/// The stored form: the journal format version beside the entry.
#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(flatten)]
    entry: Entry,
}

/// Why a journaled output cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("journal format version {found} is newer than this drctl understands (version {JOURNAL_VERSION}): drive this operation with the drctl that started it, or a newer one")]
    NewerVersion { found: u64 },
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a version {JOURNAL_VERSION} journal entry: {0}")]
    Malformed(String),
}

impl Entry {
    /// The entry of an action's result, ready to store.
    pub fn of<T: Serialize>(action: Action<T>) -> Result<Entry, serde_json::Error> {
        Ok(match action {
            Action::Done(t) => Entry::Done(serde_json::to_value(t)?),
            Action::Skipped(s) => Entry::Skipped(s),
        })
    }

    /// The text stored in the journal (current version).
    pub fn encode(&self) -> String {
        serde_json::to_string(&Envelope {
            v: JOURNAL_VERSION,
            entry: self.clone(),
        })
        .expect("journal entries encode")
    }

    /// Reads a stored output: version 2 (the envelope) or version 1 (a bare
    /// output, `{"skipped": "reason"}` for a skipped step).
    pub fn decode(text: &str) -> Result<Entry, DecodeError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        match value.get("v").map(|v| v.as_u64()) {
            Some(Some(v))
                if (u64::from(FIRST_ENVELOPE_VERSION)..=u64::from(JOURNAL_VERSION))
                    .contains(&v) =>
            {
                let e: Envelope = serde_json::from_value(value)
                    .map_err(|e| DecodeError::Malformed(e.to_string()))?;
                Ok(e.entry)
            }
            Some(Some(found)) if found > u64::from(JOURNAL_VERSION) => {
                Err(DecodeError::NewerVersion { found })
            }
            Some(_) => Err(DecodeError::Malformed(format!("unknown version in {text}"))),
            None => Ok(Entry::from_v1(value)),
        }
    }

    /// A version 1 output. Its skipped sentinel was an object with the one
    /// key `skipped`; no version 1 output had a top-level `v`.
    fn from_v1(value: Value) -> Entry {
        match value.as_object() {
            Some(o) if o.len() == 1 => match o.get("skipped").and_then(Value::as_str) {
                Some(reason) => Entry::Skipped(Skipped {
                    reason: reason.to_string(),
                }),
                None => Entry::Done(value),
            },
            _ => Entry::Done(value),
        }
    }

    /// The output as `T`, or the typed skip.
    pub fn read<T: DeserializeOwned>(&self) -> Result<Action<T>, serde_json::Error> {
        Ok(match self {
            Entry::Done(v) => Action::Done(T::deserialize(v)?),
            Entry::Skipped(s) => Action::Skipped(s.clone()),
        })
    }

    /// The output as JSON, for people (the API and `--output json` show
    /// the action's own output, not the envelope); a skip shows as
    /// `{"skipped": reason}`.
    pub fn view(&self) -> Value {
        match self {
            Entry::Done(v) => v.clone(),
            Entry::Skipped(s) => serde_json::json!({ "skipped": s.reason }),
        }
    }
}

/// A stored output as people read it (see [`Entry::view`]); the stored
/// text as it is when it cannot be decoded.
pub fn view_output(text: &str) -> Value {
    match Entry::decode(text) {
        Ok(e) => e.view(),
        Err(_) => serde_json::from_str(text).unwrap_or(Value::String(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Fence {
        reachable: bool,
        method: String,
    }

    #[test]
    fn an_output_is_read_back_by_type() {
        let stored = Entry::of(Action::Done(Fence {
            reachable: true,
            method: "read_only".into(),
        }))
        .unwrap()
        .encode();
        assert!(stored.starts_with("{\"v\":3,"), "{stored}");
        let back: Action<Fence> = Entry::decode(&stored).unwrap().read().unwrap();
        assert_eq!(
            back,
            Action::Done(Fence {
                reachable: true,
                method: "read_only".into()
            })
        );
    }

    #[test]
    fn a_skipped_action_is_typed_not_an_output() {
        let stored = Entry::of(Action::<Fence>::skipped("no datastore"))
            .unwrap()
            .encode();
        let back: Action<Fence> = Entry::decode(&stored).unwrap().read().unwrap();
        assert_eq!(back, Action::skipped("no datastore"));
        // A skip is not mistaken for an output of a type with defaults.
        assert!(back.done().is_none());
    }

    #[test]
    fn version_1_journals_still_resume() {
        let out: Action<Fence> = Entry::decode(r#"{"reachable":false,"method":"hook"}"#)
            .unwrap()
            .read()
            .unwrap();
        assert_eq!(
            out,
            Action::Done(Fence {
                reachable: false,
                method: "hook".into()
            })
        );
        let skipped: Action<Fence> = Entry::decode(r#"{"skipped":"no datastore"}"#)
            .unwrap()
            .read()
            .unwrap();
        assert_eq!(skipped, Action::skipped("no datastore"));
        // Version 1 outputs that are lists or scalars stay outputs.
        assert_eq!(
            Entry::decode("[]").unwrap(),
            Entry::Done(serde_json::json!([]))
        );
    }

    #[test]
    fn a_newer_journal_version_is_refused_by_name() {
        let e = Entry::decode(r#"{"v":4,"done":{}}"#).unwrap_err();
        assert_eq!(e, DecodeError::NewerVersion { found: 4 });
        let text = e.to_string();
        assert!(text.contains("version 4"), "{text}");
        assert!(text.contains("version 3"), "{text}");
    }

    #[test]
    fn people_see_the_output_not_the_envelope() {
        let stored = Entry::of(Action::Done(Fence {
            reachable: true,
            method: "none".into(),
        }))
        .unwrap()
        .encode();
        assert_eq!(view_output(&stored)["method"], "none");
    }
}
