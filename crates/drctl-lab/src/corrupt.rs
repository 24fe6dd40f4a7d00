//! `drctl lab corrupt`: the "bad data" drill. Replicas copy a bad `DELETE`
//! or a ransomware rewrite within a second, so no failover undoes it; a
//! restore to a point just before it does. This deletes the newest rows of
//! a service's workload table and rewrites the ones before them, in one
//! transaction on the current primary, and says the last moment the data
//! was still whole (on the primary's clock): the point to restore to.

use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::{LabError, LabRecord, Result};

/// What the corruption did, and where to restore to.
#[derive(Clone, Debug, Serialize)]
pub struct Corruption {
    pub service: String,
    /// The region whose (writable) primary took the damage.
    pub region: String,
    pub table: String,
    /// The primary's clock just before the damaging transaction began,
    /// UTC (`YYYY-MM-DDTHH:MM:SS.ffffffZ`): a restore to it holds every
    /// row as it was.
    pub intact_at: String,
    /// Ids of the rows deleted (the newest) and rewritten (the ones before
    /// them: `amount_cents` negated).
    pub deleted: Vec<i64>,
    pub rewritten: Vec<i64>,
}

/// Deletes the newest `rows` rows of `service`'s workload table and
/// rewrites the `rows` before them, on its writable primary.
pub async fn corrupt(record: &LabRecord, service: &str, rows: u32) -> Result<Corruption> {
    let svc = record
        .services
        .iter()
        .find(|s| s.name == service)
        .ok_or_else(|| {
            let known: Vec<&str> = record.services.iter().map(|s| s.name.as_str()).collect();
            LabError::Other(format!(
                "the lab has no service {service:?} (services: {})",
                known.join(", ")
            ))
        })?;
    let sql = |what: &'static str| {
        move |source| LabError::Sql {
            what: what.into(),
            source,
        }
    };
    // The writable primary: wherever the last failover left it.
    let mut primary = None;
    for c in record.clusters.iter().filter(|c| c.service == service) {
        let Some(dsn) = record.dsn(service, &c.region, service) else {
            continue;
        };
        let Ok(mut conn) = PgConnection::connect(&dsn).await else {
            continue;
        };
        let (recovering,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await
            .map_err(sql("asking whether the server is a standby"))?;
        if !recovering {
            primary = Some((c.region.clone(), conn));
            break;
        }
    }
    let (region, mut conn) = primary.ok_or_else(|| {
        LabError::Other(format!(
            "no writable primary of {service} answers: nothing to corrupt"
        ))
    })?;
    let n = i64::from(rows.max(1));
    let mut tx = conn
        .begin()
        .await
        .map_err(sql("beginning the transaction"))?;
    // clock_timestamp(), not now(): the moment the damage begins, after
    // every transaction that committed before this one.
    let (intact_at,): (String,) = sqlx::query_as(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(sql("reading the primary's clock"))?;
    let deleted: Vec<(i64,)> = sqlx::query_as(&format!(
        "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} ORDER BY id DESC LIMIT $1) RETURNING id",
        t = svc.table
    ))
    .bind(n)
    .fetch_all(&mut *tx)
    .await
    .map_err(sql("deleting the newest rows"))?;
    let rewritten: Vec<(i64,)> = sqlx::query_as(&format!(
        "UPDATE {t} SET amount_cents = -amount_cents \
         WHERE id IN (SELECT id FROM {t} ORDER BY id DESC LIMIT $1) RETURNING id",
        t = svc.table
    ))
    .bind(n)
    .fetch_all(&mut *tx)
    .await
    .map_err(sql("rewriting the rows before them"))?;
    tx.commit().await.map_err(sql("committing the damage"))?;
    let ids = |rows: Vec<(i64,)>| {
        let mut ids: Vec<i64> = rows.into_iter().map(|(id,)| id).collect();
        ids.sort_unstable();
        ids
    };
    Ok(Corruption {
        service: service.to_string(),
        region,
        table: svc.table.clone(),
        intact_at,
        deleted: ids(deleted),
        rewritten: ids(rewritten),
    })
}
