-- Backups and restore tests: the evidence behind the cold tier's RPO and RTO
-- (and beside the lag figures of the warm and hot tiers).
--
-- A backup row is written `running` before the first byte is uploaded and
-- finished `complete` (with its manifest) or `failed` after; verification and
-- deletion are recorded on the same row. Times: microseconds since the epoch.

CREATE TABLE backups (
    id                  TEXT    PRIMARY KEY,
    service             TEXT    NOT NULL,
    region              TEXT    NOT NULL,
    store               TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    started_at_us       BIGINT  NOT NULL,
    ended_at_us         BIGINT,
    timeline            BIGINT,
    start_lsn           TEXT,
    stop_lsn            TEXT,
    stored_bytes        BIGINT,
    uncompressed_bytes  BIGINT,
    manifest            TEXT,
    error               TEXT,
    verification        TEXT,
    verified_at_us      BIGINT,
    verification_error  TEXT,
    deleted_at_us       BIGINT
);

CREATE INDEX backups_by_service_time ON backups (service, started_at_us);

CREATE TABLE restore_tests (
    id                TEXT    PRIMARY KEY,
    service           TEXT    NOT NULL,
    backup_id         TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    started_at_us     BIGINT  NOT NULL,
    ended_at_us       BIGINT,
    time_to_ready_us  BIGINT,
    results           TEXT,
    error             TEXT
);

CREATE INDEX restore_tests_by_service_time ON restore_tests (service, started_at_us);
