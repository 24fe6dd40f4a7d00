//! The audit log: who changed what, when and from where, hash-chained so
//! that editing or deleting a stored row is detectable.
//!
//! Each row's `hash` covers its own fields and the previous row's hash (the
//! first row chains from [`GENESIS`]). With an audit key (`[audit]
//! key_file`/`key_env`, kept outside the store) it is an HMAC-SHA256,
//! stored as `hmac-sha256:HEX`: someone who can write to the store but
//! does not hold the key cannot edit a row and recompute the chain. Without
//! a key it is a plain SHA-256 (`HEX`), which only catches edits by someone
//! who does not recompute it. Chains written before a key was configured
//! stay valid: their plain rows verify as *legacy* up to the first HMAC
//! row; a plain row after it is a break (`downgraded`). [`Store::verify_audit`]
//! recomputes the chain and names the first row that does not match. The
//! chain proves the history was not edited in place; it cannot prove the
//! newest rows were not cut off, so `verify` reports the head (sequence and
//! hash) for operators to record elsewhere and pass back as
//! `expect_head` later.
//!
//! Appends are serialized: one at a time per process (a lock in the
//! [`Store`] handle), and across processes on PostgreSQL by a table lock
//! held for the read-head-and-insert transaction. Without that, a burst of
//! appends (a flood of refused requests) made writers collide on `seq`
//! until an operator's own audit row gave up, and the failover it recorded
//! with it. SQLite runs one writer at a time; two processes sharing the
//! file can still read the same head, so a collision on `seq` (the primary
//! key) re-reads it and retries, for a while rather than a number of times.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::states::AuditBreakKind;
use crate::{decode_row, decode_rows, query_error, Backend, Result, Store};

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an HMAC chain hash starts with.
const MAC_PREFIX: &str = "hmac-sha256:";

/// The audit chain's key; never printed.
#[derive(Clone)]
pub(crate) struct AuditKey(std::sync::Arc<Vec<u8>>);

impl AuditKey {
    pub(crate) fn new(key: &[u8]) -> AuditKey {
        AuditKey(std::sync::Arc::new(key.to_vec()))
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

/// How long an append keeps re-reading the head after losing a race to
/// another process (SQLite; PostgreSQL appends queue on a lock instead).
const APPEND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// One stored audit row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: Option<String>,
    pub source: String,
    pub action: String,
    pub target: Option<String>,
    /// A JSON object, secrets already redacted by the caller.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// What a caller records; the store adds the time, sequence and hashes.
#[derive(Clone, Debug)]
pub struct NewAudit {
    pub actor: String,
    pub role: Option<String>,
    pub source: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: serde_json::Value,
}

/// The result of [`Store::verify_audit`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditVerification {
    /// Rows checked.
    pub rows: i64,
    /// Rows chained with plain SHA-256 before HMAC-chained rows begin
    /// (written before an audit key was configured); all of them when no
    /// row is HMAC-chained.
    pub legacy_rows: i64,
    /// The newest row's sequence and hash (record them to detect truncation).
    pub head_seq: i64,
    pub head_hash: String,
    /// The first row that breaks the chain, and why; `None` when intact.
    pub broken: Option<AuditBreak>,
}

/// Where and how the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditBreak {
    pub seq: i64,
    pub kind: AuditBreakKind,
    pub message: String,
}

const COLUMNS: &str = "seq, at_us, actor, role, source, action, target, detail, prev_hash, hash";

fn from_row(r: &AnyRow) -> std::result::Result<AuditEntry, sqlx::Error> {
    let detail: String = r.try_get(7)?;
    Ok(AuditEntry {
        seq: r.try_get(0)?,
        at: from_us(r.try_get(1)?),
        actor: r.try_get(2)?,
        role: r.try_get(3)?,
        source: r.try_get(4)?,
        action: r.try_get(5)?,
        target: r.try_get(6)?,
        // A row edited into invalid JSON is still shown (as a string), and
        // `verify` will name it.
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        prev_hash: r.try_get(8)?,
        hash: r.try_get(9)?,
    })
}

/// The chain hash of a row: SHA-256 over an unambiguous encoding (a JSON
/// array) of every field and the previous hash, as lowercase hex.
pub fn chain_hash(
    seq: i64,
    at_us: i64,
    e: &NewAudit,
    detail_text: &str,
    prev_hash: &str,
) -> String {
    hex::encode(Sha256::digest(
        canonical_row(seq, at_us, e, detail_text, prev_hash).as_bytes(),
    ))
}

/// The HMAC chain hash of a row under `key`: HMAC-SHA256 over the same
/// encoding as [`chain_hash`], as `hmac-sha256:` and lowercase hex.
fn chain_mac(
    key: &AuditKey,
    seq: i64,
    at_us: i64,
    e: &NewAudit,
    detail_text: &str,
    prev_hash: &str,
) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC accepts any key length");
    mac.update(canonical_row(seq, at_us, e, detail_text, prev_hash).as_bytes());
    format!("{MAC_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// An unambiguous encoding (a JSON array) of a row's fields and the
/// previous hash.
fn canonical_row(seq: i64, at_us: i64, e: &NewAudit, detail_text: &str, prev_hash: &str) -> String {
    serde_json::json!([
        seq,
        at_us,
        e.actor,
        e.role,
        e.source,
        e.action,
        e.target,
        detail_text,
        prev_hash
    ])
    .to_string()
}

/// Reads the head and inserts the row after it on `conn`, chained under
/// `key` when there is one.
async fn append_on(
    conn: &mut sqlx::AnyConnection,
    key: Option<&AuditKey>,
    e: &NewAudit,
    detail_text: &str,
) -> std::result::Result<AuditEntry, sqlx::Error> {
    let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (seq, prev_hash) = match head {
        Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
        None => (1, GENESIS.to_string()),
    };
    let at_us = to_us(Utc::now());
    let hash = match key {
        Some(key) => chain_mac(key, seq, at_us, e, detail_text, &prev_hash),
        None => chain_hash(seq, at_us, e, detail_text, &prev_hash),
    };
    sqlx::query(&format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(seq)
    .bind(at_us)
    .bind(&e.actor)
    .bind(&e.role)
    .bind(&e.source)
    .bind(&e.action)
    .bind(&e.target)
    .bind(detail_text)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(AuditEntry {
        seq,
        at: from_us(at_us),
        actor: e.actor.clone(),
        role: e.role.clone(),
        source: e.source.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        detail: e.detail.clone(),
        prev_hash,
        hash,
    })
}

impl Store {
    /// Appends one row to the chain.
    pub async fn append_audit(&self, e: &NewAudit) -> Result<AuditEntry> {
        let detail_text = e.detail.to_string();
        // Queued behind this process's other appends: they cannot collide.
        let _turn = self.audit_writer.lock().await;
        let give_up = tokio::time::Instant::now() + APPEND_PATIENCE;
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match self.append_audit_once(e, &detail_text).await {
                Ok(entry) => return Ok(entry),
                // Another process took this sequence number: re-read the head.
                Err(sqlx::Error::Database(db))
                    if db.is_unique_violation() && tokio::time::Instant::now() < give_up =>
                {
                    // Staggered so racing writers do not collide again.
                    let ms = 1 + (attempt * 7 + std::process::id() as u64) % 13;
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                Err(err) => return Err(query_error("appending to the audit log")(err)),
            }
        }
    }

    /// One attempt: reads the head and inserts the next row, under the
    /// table lock on PostgreSQL.
    async fn append_audit_once(
        &self,
        e: &NewAudit,
        detail_text: &str,
    ) -> std::result::Result<AuditEntry, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        let outcome = self
            .pool()
            .within_limit(async {
                if self.backend() == Backend::Postgres {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    // Conflicts with itself, not with readers: appends from
                    // every process queue here, `verify` and the API read on.
                    sqlx::query("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
                        .execute(&mut *tx)
                        .await?;
                    let entry = append_on(&mut tx, self.audit_key.as_ref(), e, detail_text).await?;
                    tx.commit().await?;
                    Ok(entry)
                } else {
                    append_on(&mut conn, self.audit_key.as_ref(), e, detail_text).await
                }
            })
            .await;
        self.pool().settle(conn, outcome, |timed_out| timed_out)
    }

    /// Audit rows in `[since, until)`, newest first, at most `limit`, with
    /// `before_seq` for the next page.
    pub async fn audit_entries(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE at_us >= $1 AND at_us < $2 AND seq < $3 \
             ORDER BY seq DESC LIMIT $4"
        ))
        .bind(since.map(to_us).unwrap_or(i64::MIN))
        .bind(until.map(to_us).unwrap_or(i64::MAX))
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading the audit log"))?;
        decode_rows(&rows, from_row, "decoding audit rows")
    }

    /// One audit row.
    pub async fn audit_entry(&self, seq: i64) -> Result<Option<AuditEntry>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq = $1"))
            .bind(seq)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("reading an audit row"))?;
        decode_row(row, from_row, "decoding an audit row")
    }

    /// Recomputes the whole chain, oldest first, a page at a time. With
    /// `expect_head` (a sequence and hash recorded earlier), also checks
    /// that row is still there unchanged: rows cut off the end or a chain
    /// rebuilt from scratch fail that check.
    pub async fn verify_audit(
        &self,
        expect_head: Option<(i64, &str)>,
    ) -> Result<AuditVerification> {
        const PAGE: i64 = 1000;
        let mut prev_hash = GENESIS.to_string();
        let mut expected_seq = 1i64;
        let mut rows_checked = 0i64;
        let mut legacy_rows = 0i64;
        // The first HMAC-chained row: plain rows after it are forgeries.
        let mut hmac_from: Option<i64> = None;
        let mut broken = None;
        let mut head_seen = expect_head.is_none();
        'pages: loop {
            let rows = sqlx::query(
                "SELECT seq, at_us, actor, role, source, action, target, detail, prev_hash, hash \
                 FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2",
            )
            .bind(expected_seq)
            .bind(PAGE)
            .fetch_all(self.pool())
            .await
            .map_err(query_error("reading the audit log"))?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let read = |during| query_error(during);
                let seq: i64 = r.try_get(0).map_err(read("decoding audit rows"))?;
                let at_us: i64 = r.try_get(1).map_err(read("decoding audit rows"))?;
                let entry = NewAudit {
                    actor: r.try_get(2).map_err(read("decoding audit rows"))?,
                    role: r.try_get(3).map_err(read("decoding audit rows"))?,
                    source: r.try_get(4).map_err(read("decoding audit rows"))?,
                    action: r.try_get(5).map_err(read("decoding audit rows"))?,
                    target: r.try_get(6).map_err(read("decoding audit rows"))?,
                    detail: serde_json::Value::Null,
                };
                let detail: String = r.try_get(7).map_err(read("decoding audit rows"))?;
                let stored_prev: String = r.try_get(8).map_err(read("decoding audit rows"))?;
                let stored_hash: String = r.try_get(9).map_err(read("decoding audit rows"))?;
                rows_checked += 1;
                if seq != expected_seq {
                    broken = Some(AuditBreak {
                        seq: expected_seq,
                        kind: AuditBreakKind::Missing,
                        message: format!(
                            "rows {expected_seq}..{} are missing: deleted from the stored history",
                            seq - 1
                        ),
                    });
                    break 'pages;
                }
                if stored_prev != prev_hash {
                    broken = Some(AuditBreak {
                        seq,
                        kind: AuditBreakKind::Relinked,
                        message: format!(
                            "row {seq} does not chain from row {}: the history before it was changed",
                            seq - 1
                        ),
                    });
                    break 'pages;
                }
                let keyed = stored_hash.starts_with(MAC_PREFIX);
                if keyed && hmac_from.is_none() {
                    hmac_from = Some(seq);
                }
                if !keyed {
                    if let Some(from) = hmac_from {
                        broken = Some(AuditBreak {
                            seq,
                            kind: AuditBreakKind::Downgraded,
                            message: format!(
                                "row {seq} is chained with plain SHA-256 although rows are HMAC-chained from row {from} on: it was rewritten by someone without the audit key"
                            ),
                        });
                        break 'pages;
                    }
                    legacy_rows += 1;
                }
                let expected = match (&self.audit_key, keyed) {
                    (_, false) => chain_hash(seq, at_us, &entry, &detail, &prev_hash),
                    (Some(key), true) => chain_mac(key, seq, at_us, &entry, &detail, &prev_hash),
                    (None, true) => {
                        broken = Some(AuditBreak {
                            seq,
                            kind: AuditBreakKind::KeyMissing,
                            message: format!(
                                "row {seq} is HMAC-chained and no audit key is configured to check it: set [audit] key_file or key_env as the daemon has it"
                            ),
                        });
                        break 'pages;
                    }
                };
                if expected != stored_hash {
                    broken = Some(AuditBreak {
                        seq,
                        kind: AuditBreakKind::Edited,
                        message: format!(
                            "row {seq} ({} by {}) does not match its hash: it was edited after it was written",
                            entry.action, entry.actor
                        ),
                    });
                    break 'pages;
                }
                if let Some((head_seq, head_hash)) = expect_head {
                    if seq == head_seq {
                        head_seen = stored_hash == head_hash;
                    }
                }
                prev_hash = stored_hash;
                expected_seq = seq + 1;
            }
        }
        if broken.is_none() && self.audit_key.is_some() && rows_checked > 0 && hmac_from.is_none() {
            // Every row plain under a configured key: the HMAC rows were
            // rewritten or cut off by someone without the key (a keyed
            // writer, such as a daemon starting, ends the honest case).
            broken = Some(AuditBreak {
                seq: expected_seq - 1,
                kind: AuditBreakKind::Unkeyed,
                message: "no row is HMAC-chained although an audit key is configured: the chain was rewritten without the key, unless nothing was written since the key was configured (a daemon start writes a keyed row)".into(),
            });
        }
        if broken.is_none() && !head_seen {
            let (head_seq, _) = expect_head.unwrap_or_default();
            broken = Some(AuditBreak {
                seq: head_seq,
                kind: AuditBreakKind::HeadMismatch,
                message: format!(
                    "row {head_seq} no longer has the hash recorded for it: rows were cut off or the chain was rebuilt"
                ),
            });
        }
        Ok(AuditVerification {
            rows: rows_checked,
            legacy_rows,
            head_seq: expected_seq - 1,
            head_hash: prev_hash,
            broken,
        })
    }

    /// Records a service's configuration fingerprint; returns when it last
    /// changed (`None` while it never has since first seen) and whether it
    /// changed just now.
    pub async fn note_service_config(
        &self,
        service: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<(Option<DateTime<Utc>>, bool)> {
        let row =
            sqlx::query("SELECT fingerprint, changed_us FROM service_configs WHERE service = $1")
                .bind(service)
                .fetch_optional(self.pool())
                .await
                .map_err(query_error("reading a service's configuration fingerprint"))?;
        let Some(row) = row else {
            sqlx::query(
                "INSERT INTO service_configs (service, fingerprint, first_seen_us, changed_us) \
                 VALUES ($1, $2, $3, NULL) ON CONFLICT (service) DO NOTHING",
            )
            .bind(service)
            .bind(fingerprint)
            .bind(to_us(now))
            .execute(self.pool())
            .await
            .map_err(query_error(
                "recording a service's configuration fingerprint",
            ))?;
            return Ok((None, false));
        };
        let stored: String = row
            .try_get(0)
            .map_err(query_error("reading a service's configuration fingerprint"))?;
        let changed: Option<i64> = row
            .try_get(1)
            .map_err(query_error("reading a service's configuration fingerprint"))?;
        if stored == fingerprint {
            return Ok((changed.map(from_us), false));
        }
        sqlx::query(
            "UPDATE service_configs SET fingerprint = $2, changed_us = $3 WHERE service = $1",
        )
        .bind(service)
        .bind(fingerprint)
        .bind(to_us(now))
        .execute(self.pool())
        .await
        .map_err(query_error("recording a service's configuration change"))?;
        Ok((Some(from_us(to_us(now))), true))
    }
}
