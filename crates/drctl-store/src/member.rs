//! The daemons sharing the store (for the leader election's view) and the
//! store's own clock, which every lease time is read from.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::{query_error, Backend, Result, Store};

/// One daemon as it last reported itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DaemonRecord {
    pub id: String,
    pub host: String,
    /// Where its API answers (`[api] advertise`, or its listen address).
    pub api_url: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// Its last refresh, on the store's clock.
    pub seen_at: DateTime<Utc>,
}

impl Store {
    /// The store's time. Lease expiries are written and compared on this one
    /// clock, so a daemon whose own clock runs ahead cannot take a lease
    /// early (with PostgreSQL; SQLite is on the daemon's host anyway).
    pub async fn clock(&self) -> Result<DateTime<Utc>> {
        if self.backend() == Backend::Sqlite {
            return Ok(Utc::now());
        }
        let row =
            sqlx::query("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)")
                .fetch_one(self.pool())
                .await
                .map_err(query_error("reading the store's clock"))?;
        Ok(from_us(
            row.try_get(0)
                .map_err(query_error("reading the store's clock"))?,
        ))
    }

    /// Records (or refreshes) a daemon's row.
    pub async fn note_daemon(&self, daemon: &DaemonRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO daemons (id, host, api_url, version, started_at_us, seen_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET api_url = excluded.api_url, seen_at_us = excluded.seen_at_us",
        )
        .bind(&daemon.id)
        .bind(&daemon.host)
        .bind(&daemon.api_url)
        .bind(&daemon.version)
        .bind(to_us(daemon.started_at))
        .bind(to_us(daemon.seen_at))
        .execute(self.pool())
        .await
        .map_err(query_error("recording a daemon"))?;
        Ok(())
    }

    /// Daemons seen since `since`, newest start first; older rows (daemons
    /// long gone) are deleted on the way.
    pub async fn daemons(
        &self,
        since: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<Vec<DaemonRecord>> {
        sqlx::query("DELETE FROM daemons WHERE seen_at_us < $1")
            .bind(to_us(forget_before))
            .execute(self.pool())
            .await
            .map_err(query_error("forgetting old daemons"))?;
        let rows = sqlx::query(
            "SELECT id, host, api_url, version, started_at_us, seen_at_us FROM daemons \
             WHERE seen_at_us >= $1 ORDER BY started_at_us DESC, id",
        )
        .bind(to_us(since))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading daemons"))?;
        rows.iter()
            .map(|r| {
                let decode =
                    |r: &sqlx::any::AnyRow| -> std::result::Result<DaemonRecord, sqlx::Error> {
                        Ok(DaemonRecord {
                            id: r.try_get(0)?,
                            host: r.try_get(1)?,
                            api_url: r.try_get(2)?,
                            version: r.try_get(3)?,
                            started_at: from_us(r.try_get(4)?),
                            seen_at: from_us(r.try_get(5)?),
                        })
                    };
                decode(r).map_err(query_error("decoding a daemon"))
            })
            .collect()
    }
}
