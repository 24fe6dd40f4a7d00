//! Leases: at most one holder of a named piece of work at a time, across
//! every drctl process sharing the store, with a fencing token.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::{query_error, Result, Store};

/// A lease held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Grows with every new holder: the fencing token.
    pub token: i64,
    pub expires_at: DateTime<Utc>,
}

fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(ttl).unwrap_or(TimeDelta::days(1))
}

impl Store {
    /// Takes the lease `name` for `holder` if it is free or expired.
    /// `None`: someone else holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        let expires = until(now, ttl);
        sqlx::query(
            "INSERT INTO leases (name, holder, token, expires_at_us) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = leases.token + 1, \
                 expires_at_us = excluded.expires_at_us \
             WHERE leases.expires_at_us < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(to_us(expires))
        .bind(to_us(now))
        .execute(self.pool())
        .await
        .map_err(query_error("taking a lease"))?;
        let row = sqlx::query("SELECT holder, token, expires_at_us FROM leases WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await
            .map_err(query_error("reading a lease"))?;
        let (h, token, exp): (String, i64, i64) = (
            row.try_get(0).map_err(query_error("decoding a lease"))?,
            row.try_get(1).map_err(query_error("decoding a lease"))?,
            row.try_get(2).map_err(query_error("decoding a lease"))?,
        );
        Ok((h == holder && exp == to_us(expires)).then(|| Lease {
            name: name.to_string(),
            holder: h,
            token,
            expires_at: from_us(exp),
        }))
    }

    /// Extends a lease still held (same holder and token); `false` when it
    /// was lost (expired and taken by another).
    pub async fn renew_lease(
        &self,
        lease: &mut Lease,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let expires = until(now, ttl);
        let done = sqlx::query(
            "UPDATE leases SET expires_at_us = $4 WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .bind(to_us(expires))
        .execute(self.pool())
        .await
        .map_err(query_error("renewing a lease"))?;
        if done.rows_affected() == 1 {
            lease.expires_at = expires;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Gives a lease back (expires it now) if still held.
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        sqlx::query(
            "UPDATE leases SET expires_at_us = 0 WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .execute(self.pool())
        .await
        .map_err(query_error("releasing a lease"))?;
        Ok(())
    }

    /// Marks `running` backups of a service failed: called by the holder of
    /// the service's backup lease, so none of them can still be running.
    pub async fn fail_interrupted_backups(&self, service: &str, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE backups SET status = 'failed', ended_at_us = $2, \
             error = 'interrupted: the process taking it stopped before it completed' \
             WHERE service = $1 AND status = 'running'",
        )
        .bind(service)
        .bind(to_us(now))
        .execute(self.pool())
        .await
        .map_err(query_error("recording interrupted backups"))?;
        Ok(done.rows_affected())
    }
}
