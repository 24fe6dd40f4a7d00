-- The drctl daemons sharing this store, for the leader election's view:
-- each daemon refreshes its row while it runs, so a follower can name the
-- leader's API to a client it refuses, and operators see who is there.
-- The election itself is the `daemon/leader` row of `leases`.
CREATE TABLE daemons (
    id             TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    api_url        TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    started_at_us  BIGINT  NOT NULL,
    seen_at_us     BIGINT  NOT NULL
);
