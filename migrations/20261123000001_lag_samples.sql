-- Replication-lag samples and their per-minute rollups.
--
-- Portable between SQLite and PostgreSQL: times are microseconds since the
-- Unix epoch (UTC) in BIGINT, positions are bytes since 0/0 in BIGINT.
-- `sampled_at_us` is drctl's clock (when the sample was taken, for history
-- queries); `primary_time_us` is the primary's clock, the only clock the
-- exposure figure is computed on.

CREATE TABLE lag_samples (
    service               TEXT    NOT NULL,
    standby_region        TEXT    NOT NULL,
    sampled_at_us         BIGINT  NOT NULL,
    primary_time_us       BIGINT,
    status                TEXT    NOT NULL,
    rpo_exposure_us       BIGINT,
    exposure_lower_bound  BIGINT  NOT NULL DEFAULT 0,
    replay_lag_us         BIGINT,
    byte_lag              BIGINT,
    replay_byte_lag       BIGINT,
    primary_lsn           BIGINT,
    standby_durable_lsn   BIGINT,
    standby_replay_lsn    BIGINT,
    naive_replay_delay_us BIGINT,
    wal_receiver          TEXT,
    probe_us              BIGINT,
    error                 TEXT
);

CREATE INDEX lag_samples_by_service_time ON lag_samples (service, sampled_at_us);
CREATE INDEX lag_samples_by_time ON lag_samples (sampled_at_us);

-- One row per service, standby region and minute for samples older than the
-- raw retention: bounded history for reports and long charts.
CREATE TABLE lag_rollups (
    service          TEXT   NOT NULL,
    standby_region   TEXT   NOT NULL,
    minute_us        BIGINT NOT NULL,
    samples          BIGINT NOT NULL,
    unknown_samples  BIGINT NOT NULL,
    exposure_min_us  BIGINT,
    exposure_avg_us  BIGINT,
    exposure_max_us  BIGINT,
    byte_lag_max     BIGINT,
    PRIMARY KEY (service, standby_region, minute_us)
);
