-- The audit log: every mutation (an operation started, a backup or restore
-- test triggered, a service's configuration changed, a token used) with who,
-- what, when and from where. Rows are hash-chained: `hash` is the SHA-256 of
-- the row's fields and the previous row's hash, so editing or deleting a
-- stored row breaks the chain at that row (`drctl audit verify`). `seq` is
-- gapless and unique, which is also what serialises concurrent writers: two
-- that read the same head collide on the key and one retries.
CREATE TABLE audit_log (
    seq        BIGINT  PRIMARY KEY,
    at_us      BIGINT  NOT NULL,
    -- token name, "anonymous", "cli:USER@HOST" or "daemon"
    actor      TEXT    NOT NULL,
    role       TEXT,
    -- the client's address, or the host for the CLI and the daemon
    source     TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT,
    -- JSON object: what was asked, with secrets redacted
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_us);

-- Each service's configuration as last seen by a daemon: a change resets the
-- service's evidence to "unverified" until the next drill or restore test,
-- because the old proof no longer covers what runs now.
CREATE TABLE service_configs (
    service      TEXT    PRIMARY KEY,
    fingerprint  TEXT    NOT NULL,
    first_seen_us BIGINT NOT NULL,
    -- when the fingerprint last changed; NULL while it never has
    changed_us   BIGINT
);
