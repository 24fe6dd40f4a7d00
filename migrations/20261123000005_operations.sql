-- Operations started through the API (backup, verify, restore test; later
-- failovers, switchovers, drills): their state and progress, readable by any
-- drctl process while they run and after.
CREATE TABLE operations (
    id             TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL,
    service        TEXT,
    target         TEXT,
    status         TEXT    NOT NULL,
    started_at_us  BIGINT  NOT NULL,
    ended_at_us    BIGINT,
    progress       TEXT,
    result         TEXT,
    error          TEXT
);

CREATE INDEX operations_by_time ON operations (started_at_us);
