//! Leases: at most one holder of a named piece of work at a time, across
//! every drctl process sharing the store, with a fencing token.
//!
//! Two ways to take one. [`Store::acquire_lease`] compares the stored
//! expiry with a wall-clock `now` (the store's clock): simple, and what
//! backup and operation leases use. [`Store::take_lease_seen`] with a
//! [`LeaseWatch`] never reads a wall clock: the contender takes a lease only
//! after seeing the same `(token, renewals)` unchanged for a whole lease
//! time on its own monotonic clock, while the holder steps down by its own
//! monotonic clock a margin before that. The leader election uses it, so a
//! clock step on the store host cannot make two leaders.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::Row;
use tokio::time::Instant;

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

/// A lease row as a contender read it: who holds it and how often it was
/// renewed, the version a [`LeaseWatch`] waits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSighting {
    pub name: String,
    pub holder: String,
    pub token: i64,
    /// Grows with every renewal of this token.
    pub renewals: i64,
    /// Given back by its holder: free to take at once.
    pub released: bool,
}

/// A contender's watch on one lease: when it first saw the row's current
/// version, on its own monotonic clock. A holder that renews changes the
/// version; one that stopped (dead, paused, cut off) leaves it alone, and
/// after a lease time unchanged it has provably stepped down (it steps
/// down by its own monotonic clock, counted from before its last renewal).
#[derive(Debug, Default)]
pub struct LeaseWatch {
    seen: Option<(LeaseSighting, Instant)>,
}

impl LeaseWatch {
    /// Notes what was read at `now`; true when the lease may be taken: free
    /// (no row, or given back), or the same version seen for `ttl`.
    pub fn may_take(&mut self, read: Option<&LeaseSighting>, ttl: Duration, now: Instant) -> bool {
        let Some(read) = read else {
            self.seen = None;
            return true;
        };
        if read.released {
            return true;
        }
        match &self.seen {
            Some((seen, since)) if seen == read => now.saturating_duration_since(*since) >= ttl,
            _ => {
                self.seen = Some((read.clone(), now));
                false
            }
        }
    }

    /// Forgets what was seen (after taking the lease, or losing track).
    pub fn reset(&mut self) {
        self.seen = None;
    }
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
            "INSERT INTO leases (name, holder, token, expires_at_us, renewals) VALUES ($1, $2, 1, $3, 0) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = leases.token + 1, \
                 expires_at_us = excluded.expires_at_us, renewals = 0 \
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

    /// The lease row as a contender sees it (no clock involved).
    pub async fn lease_sighting(&self, name: &str) -> Result<Option<LeaseSighting>> {
        let row = sqlx::query(
            "SELECT holder, token, renewals, expires_at_us FROM leases WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("reading a lease"))?;
        crate::decode_row(
            row,
            |r| {
                Ok(LeaseSighting {
                    name: String::new(),
                    holder: r.try_get(0)?,
                    token: r.try_get(1)?,
                    renewals: r.try_get(2)?,
                    released: r.try_get::<i64, _>(3)? == 0,
                })
            },
            "decoding a lease",
        )
        .map(|s| {
            s.map(|s| LeaseSighting {
                name: name.to_string(),
                ..s
            })
        })
    }

    /// Takes the lease `name` for `holder` if it is still exactly as
    /// `seen` (`None`: no row at all), in one conditional statement, so a
    /// renewal or another contender in between makes this a no-op (`None`).
    /// Whether `seen` is old enough is the caller's [`LeaseWatch`]'s call;
    /// `now` (any clock) only sets the expiry shown to operators.
    pub async fn take_lease_seen(
        &self,
        name: &str,
        holder: &str,
        seen: Option<&LeaseSighting>,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        let expires = until(now, ttl);
        let row = match seen {
            None => sqlx::query(
                "INSERT INTO leases (name, holder, token, expires_at_us, renewals) \
                 VALUES ($1, $2, 1, $3, 0) ON CONFLICT (name) DO NOTHING RETURNING token",
            )
            .bind(name)
            .bind(holder)
            .bind(to_us(expires))
            .fetch_optional(self.pool())
            .await,
            Some(seen) => sqlx::query(if seen.released {
                "UPDATE leases SET holder = $2, token = token + 1, expires_at_us = $3, renewals = 0 \
                 WHERE name = $1 AND holder = $4 AND token = $5 AND renewals = $6 \
                 AND expires_at_us = 0 RETURNING token"
            } else {
                "UPDATE leases SET holder = $2, token = token + 1, expires_at_us = $3, renewals = 0 \
                 WHERE name = $1 AND holder = $4 AND token = $5 AND renewals = $6 \
                 AND expires_at_us <> 0 RETURNING token"
            })
            .bind(name)
            .bind(holder)
            .bind(to_us(expires))
            .bind(&seen.holder)
            .bind(seen.token)
            .bind(seen.renewals)
            .fetch_optional(self.pool())
            .await,
        }
        .map_err(query_error("taking a lease"))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Lease {
            name: name.to_string(),
            holder: holder.to_string(),
            token: row.try_get(0).map_err(query_error("decoding a lease"))?,
            expires_at: from_us(to_us(expires)),
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
            "UPDATE leases SET expires_at_us = $4, renewals = renewals + 1 \
             WHERE name = $1 AND holder = $2 AND token = $3",
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
