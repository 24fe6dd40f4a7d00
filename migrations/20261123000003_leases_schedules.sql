-- Leases: one holder at a time for a named piece of work (a service's
-- backup now; failover operations later). The token grows with every new
-- holder, so a holder that lost its lease can be told apart from the next.
CREATE TABLE leases (
    name           TEXT    PRIMARY KEY,
    holder         TEXT    NOT NULL,
    token          BIGINT  NOT NULL,
    expires_at_us  BIGINT  NOT NULL
);

-- Every scheduled run, including the ones that never ran: a schedule missed
-- while the daemon was down is recorded `missed`, not silently skipped.
CREATE TABLE schedule_runs (
    service        TEXT    NOT NULL,
    job            TEXT    NOT NULL,
    due_at_us      BIGINT  NOT NULL,
    started_at_us  BIGINT,
    ended_at_us    BIGINT,
    status         TEXT    NOT NULL,
    detail         TEXT,
    PRIMARY KEY (service, job, due_at_us)
);
