//! Replication-lag samples: append, read back, summarise, downsample.
//!
//! Raw samples are kept for the raw retention (24 h by default); older ones
//! are folded into per-minute rollups and deleted in the same transaction, so
//! a crash in between never loses or double-counts a minute. Rollups older
//! than their own retention are dropped: the store stays bounded.

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::states::MonitorStatus;
use crate::{query_error, ExposureStats, Result, Store};

/// One measurement of one service against one standby region.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LagSample {
    pub service: String,
    pub standby_region: String,
    /// When drctl took the sample (drctl's clock; for history queries only).
    pub sampled_at: DateTime<Utc>,
    /// The primary's clock at the sample: the clock exposure is measured on.
    pub primary_time: Option<DateTime<Utc>>,
    /// As decided by the monitor.
    pub status: MonitorStatus,
    pub rpo_exposure_us: Option<i64>,
    /// The standby is older than the oldest heartbeat known: exposure is at
    /// least the figure given.
    pub exposure_lower_bound: bool,
    pub replay_lag_us: Option<i64>,
    pub byte_lag: Option<i64>,
    pub replay_byte_lag: Option<i64>,
    pub primary_lsn: Option<i64>,
    pub standby_durable_lsn: Option<i64>,
    pub standby_replay_lsn: Option<i64>,
    pub naive_replay_delay_us: Option<i64>,
    pub wal_receiver: Option<String>,
    /// How long the probes of this sample took.
    pub probe_us: Option<i64>,
    pub error: Option<String>,
}

/// A minute of samples folded into one row.
impl LagSample {
    /// A sample with only its place, time and exposure: what a rollup or a
    /// bucket of samples keeps of them (its status `unknown` until the
    /// caller knows better).
    pub fn bare(
        service: &str,
        standby_region: &str,
        sampled_at: DateTime<Utc>,
        rpo_exposure_us: Option<i64>,
    ) -> LagSample {
        LagSample {
            service: service.to_string(),
            standby_region: standby_region.to_string(),
            sampled_at,
            primary_time: None,
            status: MonitorStatus::Unknown,
            rpo_exposure_us,
            exposure_lower_bound: false,
            replay_lag_us: None,
            byte_lag: None,
            replay_byte_lag: None,
            primary_lsn: None,
            standby_durable_lsn: None,
            standby_replay_lsn: None,
            naive_replay_delay_us: None,
            wal_receiver: None,
            probe_us: None,
            error: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LagRollup {
    pub service: String,
    pub standby_region: String,
    pub minute: DateTime<Utc>,
    pub samples: i64,
    pub unknown_samples: i64,
    pub exposure_min_us: Option<i64>,
    pub exposure_avg_us: Option<i64>,
    pub exposure_max_us: Option<i64>,
    pub byte_lag_max: Option<i64>,
}

/// What one downsampling pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownsampleReport {
    pub raw_deleted: u64,
    pub rollups_written: u64,
    pub rollups_deleted: u64,
}

pub(crate) fn to_us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_us(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

const SAMPLE_COLUMNS: &str = "service, standby_region, sampled_at_us, primary_time_us, status, \
    rpo_exposure_us, exposure_lower_bound, replay_lag_us, byte_lag, replay_byte_lag, primary_lsn, \
    standby_durable_lsn, standby_replay_lsn, naive_replay_delay_us, wal_receiver, probe_us, error";

fn sample_from_row(row: &AnyRow) -> std::result::Result<LagSample, sqlx::Error> {
    Ok(LagSample {
        service: row.try_get(0)?,
        standby_region: row.try_get(1)?,
        sampled_at: from_us(row.try_get(2)?),
        primary_time: row.try_get::<Option<i64>, _>(3)?.map(from_us),
        status: row.try_get(4)?,
        rpo_exposure_us: row.try_get(5)?,
        exposure_lower_bound: row.try_get::<i64, _>(6)? != 0,
        replay_lag_us: row.try_get(7)?,
        byte_lag: row.try_get(8)?,
        replay_byte_lag: row.try_get(9)?,
        primary_lsn: row.try_get(10)?,
        standby_durable_lsn: row.try_get(11)?,
        standby_replay_lsn: row.try_get(12)?,
        naive_replay_delay_us: row.try_get(13)?,
        wal_receiver: row.try_get(14)?,
        probe_us: row.try_get(15)?,
        error: row.try_get(16)?,
    })
}

fn rows_to_samples(rows: Vec<AnyRow>) -> Result<Vec<LagSample>> {
    crate::decode_rows(&rows, sample_from_row, "decoding lag samples")
}

impl Store {
    /// Appends samples in one transaction (the monitor batches a tick's worth).
    pub async fn insert_lag_samples(&self, samples: &[LagSample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO lag_samples ({SAMPLE_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        );
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(query_error("beginning a transaction"))?;
        let outcome = self
            .pool()
            .within_limit(async {
                let mut tx = sqlx::Connection::begin(&mut *conn)
                    .await
                    .map_err(query_error("beginning a transaction"))?;
                for s in samples {
                    sqlx::query(&sql)
                        .bind(&s.service)
                        .bind(&s.standby_region)
                        .bind(to_us(s.sampled_at))
                        .bind(s.primary_time.map(to_us))
                        .bind(s.status)
                        .bind(s.rpo_exposure_us)
                        .bind(s.exposure_lower_bound as i64)
                        .bind(s.replay_lag_us)
                        .bind(s.byte_lag)
                        .bind(s.replay_byte_lag)
                        .bind(s.primary_lsn)
                        .bind(s.standby_durable_lsn)
                        .bind(s.standby_replay_lsn)
                        .bind(s.naive_replay_delay_us)
                        .bind(&s.wal_receiver)
                        .bind(s.probe_us)
                        .bind(&s.error)
                        .execute(&mut *tx)
                        .await
                        .map_err(query_error("inserting lag samples"))?;
                }
                tx.commit()
                    .await
                    .map_err(query_error("committing lag samples"))?;
                Ok(())
            })
            .await;
        self.pool()
            .settle(conn, outcome, query_error("inserting lag samples"))
    }

    /// Raw samples of one service in `[since, until)`, oldest first, at most `limit`.
    pub async fn lag_samples(
        &self,
        service: &str,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<LagSample>> {
        let sql = format!(
            "SELECT {SAMPLE_COLUMNS} FROM lag_samples \
             WHERE service = $1 AND sampled_at_us >= $2 AND sampled_at_us < $3 \
             ORDER BY sampled_at_us, standby_region LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(service)
            .bind(to_us(since))
            .bind(until.map(to_us).unwrap_or(i64::MAX))
            .bind(limit as i64)
            .fetch_all(self.pool())
            .await
            .map_err(query_error("reading lag samples"))?;
        rows_to_samples(rows)
    }

    /// Samples of `service` folded into buckets of `bucket_us` per standby,
    /// oldest first: the worst of each (highest exposure, lags and byte lag,
    /// worst status) at the bucket's start, so a chart of a day shows every
    /// spike the raw samples had.
    pub async fn lag_buckets(
        &self,
        service: &str,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        bucket_us: i64,
        limit: u32,
    ) -> Result<Vec<LagSample>> {
        let rows = sqlx::query(
            "SELECT standby_region, (sampled_at_us / $4) * $4 AS bucket, \
                    max(CASE status WHEN 'breach' THEN 3 WHEN 'at_risk' THEN 2 WHEN 'unknown' THEN 1 ELSE 0 END), \
                    max(rpo_exposure_us), max(exposure_lower_bound), \
                    max(replay_lag_us), max(byte_lag), max(naive_replay_delay_us) \
             FROM lag_samples WHERE service = $1 AND sampled_at_us >= $2 AND sampled_at_us < $3 \
             GROUP BY standby_region, bucket ORDER BY bucket, standby_region LIMIT $5",
        )
        .bind(service)
        .bind(to_us(since))
        .bind(until.map(to_us).unwrap_or(i64::MAX))
        .bind(bucket_us.max(1))
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading lag buckets"))?;
        let decode = |r: &AnyRow| -> std::result::Result<LagSample, sqlx::Error> {
            let worst: i32 = r
                .try_get::<i64, _>(2)
                .map(|v| v as i32)
                .or_else(|_| r.try_get::<i32, _>(2))?;
            let lower: i32 = r
                .try_get::<i64, _>(4)
                .map(|v| v as i32)
                .or_else(|_| r.try_get::<i32, _>(4))?;
            let mut s = LagSample::bare(
                service,
                &r.try_get::<String, _>(0)?,
                from_us(r.try_get(1)?),
                r.try_get(3)?,
            );
            s.status = MonitorStatus::of_gravity(worst.clamp(0, 3) as u8);
            s.exposure_lower_bound = lower > 0;
            s.replay_lag_us = r.try_get(5)?;
            s.byte_lag = r.try_get(6)?;
            s.naive_replay_delay_us = r.try_get(7)?;
            Ok(s)
        };
        rows.iter()
            .map(decode)
            .collect::<std::result::Result<_, _>>()
            .map_err(query_error("decoding lag buckets"))
    }

    /// The primary's `(clock µs, flushed LSN)` read by samples of `service`
    /// since `since`, oldest first: points of the heartbeat map that outlive
    /// the primary (a failover measures its data loss on them after the
    /// primary is gone).
    pub async fn primary_points(
        &self,
        service: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(i64, i64)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT primary_time_us, primary_lsn FROM lag_samples \
             WHERE service = $1 AND sampled_at_us >= $2 \
               AND primary_time_us IS NOT NULL AND primary_lsn IS NOT NULL \
             ORDER BY primary_time_us",
        )
        .bind(service)
        .bind(to_us(since))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading the primary's sampled positions"))?;
        Ok(rows)
    }

    /// The newest sample of `service`'s standby in `region` that has an
    /// exposure figure: the last moment the monitor saw both sides (a
    /// failover plans on it once the primary is gone).
    pub async fn last_known_exposure(
        &self,
        service: &str,
        region: &str,
    ) -> Result<Option<LagSample>> {
        let sql = format!(
            "SELECT {SAMPLE_COLUMNS} FROM lag_samples \
             WHERE service = $1 AND standby_region = $2 AND rpo_exposure_us IS NOT NULL \
             ORDER BY sampled_at_us DESC LIMIT 1"
        );
        let rows = sqlx::query(&sql)
            .bind(service)
            .bind(region)
            .fetch_all(self.pool())
            .await
            .map_err(query_error("reading the last known exposure"))?;
        Ok(rows_to_samples(rows)?.into_iter().next())
    }

    /// The newest sample of every (service, standby region): what `drctl
    /// status` shows when the daemon is not running.
    pub async fn latest_lag_samples(&self) -> Result<Vec<LagSample>> {
        let sql = format!(
            "SELECT {SAMPLE_COLUMNS} FROM lag_samples s \
             WHERE sampled_at_us = (SELECT max(sampled_at_us) FROM lag_samples l \
                                    WHERE l.service = s.service AND l.standby_region = s.standby_region) \
             ORDER BY service, standby_region"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(self.pool())
            .await
            .map_err(query_error("reading latest lag samples"))?;
        rows_to_samples(rows)
    }

    /// Exposure percentiles of one service since `since`, over the samples of
    /// the standby region given (the service's best DR copy is chosen by the
    /// caller), or over all its standby regions when `None`.
    pub async fn exposure_stats(
        &self,
        service: &str,
        standby_region: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<ExposureStats> {
        let rows: Vec<(Option<i64>,)> = sqlx::query_as(
            "SELECT rpo_exposure_us FROM lag_samples \
             WHERE service = $1 AND sampled_at_us >= $2 AND ($3 = '' OR standby_region = $3)",
        )
        .bind(service)
        .bind(to_us(since))
        .bind(standby_region.unwrap_or(""))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading exposure values"))?;
        let unknown = rows.iter().filter(|(v,)| v.is_none()).count() as u64;
        Ok(ExposureStats::from_values(
            rows.into_iter().filter_map(|(v,)| v).collect(),
            unknown,
        ))
    }

    /// Folds raw samples older than `raw_before` into per-minute rollups and
    /// deletes rollups older than `rollups_before`. Only whole minutes are
    /// folded, in one transaction, so it is safe to run at any time and twice.
    pub async fn downsample_lag(
        &self,
        raw_before: DateTime<Utc>,
        rollups_before: DateTime<Utc>,
    ) -> Result<DownsampleReport> {
        const MINUTE_US: i64 = 60_000_000;
        let cutoff = to_us(raw_before).div_euclid(MINUTE_US) * MINUTE_US;
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(query_error("beginning a transaction"))?;
        let outcome = self.pool().within_limit(async {
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(query_error("beginning a transaction"))?;
        let written = sqlx::query(
            "INSERT INTO lag_rollups (service, standby_region, minute_us, samples, unknown_samples, \
                 exposure_min_us, exposure_avg_us, exposure_max_us, byte_lag_max) \
             SELECT service, standby_region, (sampled_at_us / 60000000) * 60000000, count(*), \
                 sum(CASE WHEN rpo_exposure_us IS NULL THEN 1 ELSE 0 END), \
                 min(rpo_exposure_us), CAST(avg(rpo_exposure_us) AS BIGINT), max(rpo_exposure_us), \
                 max(byte_lag) \
             FROM lag_samples WHERE sampled_at_us < $1 \
             GROUP BY service, standby_region, (sampled_at_us / 60000000) * 60000000 \
             ON CONFLICT (service, standby_region, minute_us) DO NOTHING",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(query_error("writing lag rollups"))?
        .rows_affected();
        let raw_deleted = sqlx::query("DELETE FROM lag_samples WHERE sampled_at_us < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(query_error("deleting rolled-up samples"))?
            .rows_affected();
        let rollups_deleted = sqlx::query("DELETE FROM lag_rollups WHERE minute_us < $1")
            .bind(to_us(rollups_before))
            .execute(&mut *tx)
            .await
            .map_err(query_error("deleting expired rollups"))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(query_error("committing a downsampling pass"))?;
        Ok(DownsampleReport {
            raw_deleted,
            rollups_written: written,
            rollups_deleted,
        })
        }).await;
        self.pool()
            .settle(conn, outcome, query_error("downsampling lag samples"))
    }

    /// Rollups of one service in `[since, until)`, oldest first.
    pub async fn lag_rollups(
        &self,
        service: &str,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<LagRollup>> {
        let rows = sqlx::query(
            "SELECT service, standby_region, minute_us, samples, unknown_samples, exposure_min_us, \
                    exposure_avg_us, exposure_max_us, byte_lag_max \
             FROM lag_rollups WHERE service = $1 AND minute_us >= $2 AND minute_us < $3 \
             ORDER BY minute_us, standby_region",
        )
        .bind(service)
        .bind(to_us(since))
        .bind(until.map(to_us).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading lag rollups"))?;
        rows.iter()
            .map(|r| {
                Ok(LagRollup {
                    service: r.try_get(0)?,
                    standby_region: r.try_get(1)?,
                    minute: from_us(r.try_get(2)?),
                    samples: r.try_get(3)?,
                    unknown_samples: r.try_get(4)?,
                    exposure_min_us: r.try_get(5)?,
                    exposure_avg_us: r.try_get(6)?,
                    exposure_max_us: r.try_get(7)?,
                    byte_lag_max: r.try_get(8)?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(query_error("decoding lag rollups"))
    }

    /// Rows and an estimate of bytes used by lag history (for the monitor
    /// benchmark's store-growth figure).
    pub async fn lag_row_counts(&self) -> Result<(i64, i64)> {
        let (raw,): (i64,) = sqlx::query_as("SELECT count(*) FROM lag_samples")
            .fetch_one(self.pool())
            .await
            .map_err(query_error("counting lag samples"))?;
        let (rollups,): (i64,) = sqlx::query_as("SELECT count(*) FROM lag_rollups")
            .fetch_one(self.pool())
            .await
            .map_err(query_error("counting lag rollups"))?;
        Ok((raw, rollups))
    }
}
