-- Automatic failover's decisions and the watchdog's actions, with their
-- evidence: one row per change of verdict on a cluster (suspect, hold with
-- its reason, failover, fenced a returning old primary, healthy again), so
-- every automatic decision — also the decision not to act — can be audited.
CREATE TABLE failover_decisions (
    id            TEXT    PRIMARY KEY,
    cluster       TEXT    NOT NULL,
    service       TEXT    NOT NULL,
    decided_at_us BIGINT  NOT NULL,
    -- healthy, suspect, hold, failover, fenced
    action        TEXT    NOT NULL,
    -- hold: standby_sees_primary, cooldown, limit, automatic_off,
    -- operation_in_progress, refused; fenced: the region fenced
    code          TEXT,
    reason        TEXT    NOT NULL,
    evidence      TEXT    NOT NULL,
    operation_id  TEXT
);
CREATE INDEX failover_decisions_cluster ON failover_decisions (cluster, decided_at_us);
