-- The failover engine's journal (failovers, switchovers, drills).
--
-- An operation row (in `operations`) carries the parameters a resuming
-- driver needs in `params`; every step's start, end, output and error is a
-- row here, written before the next step starts. Each write is conditional
-- on the writer still holding the cluster's lease with its fencing token,
-- so a driver that lost its lease (paused, partitioned) cannot add a step.
ALTER TABLE operations ADD COLUMN params TEXT;

CREATE TABLE operation_steps (
    operation_id   TEXT    NOT NULL,
    step           TEXT    NOT NULL,
    seq            BIGINT  NOT NULL,
    status         TEXT    NOT NULL,
    attempts       BIGINT  NOT NULL,
    started_at_us  BIGINT  NOT NULL,
    ended_at_us    BIGINT,
    output         TEXT,
    error          TEXT,
    driver         TEXT    NOT NULL,
    lease_token    BIGINT  NOT NULL,
    PRIMARY KEY (operation_id, step)
);

-- Which region holds a cluster's writable primary, when the config's
-- `primary` is no longer true (after a failover or switchover). The monitor,
-- the backup jobs and the CLI read it; the row is written by the step that
-- promotes, in the same lease-checked way as the journal.
CREATE TABLE cluster_roles (
    cluster         TEXT    PRIMARY KEY,
    primary_region  TEXT    NOT NULL,
    since_us        BIGINT  NOT NULL,
    operation_id    TEXT
);
