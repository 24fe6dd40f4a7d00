-- Alerts: what is firing now (so a restarted daemon neither repeats a
-- "breach started" nor forgets to send "breach ended"), the events raised,
-- and their delivery to each webhook (an outbox: an event is stored before
-- it is sent, and sent until the webhook takes it or the attempts run out).
CREATE TABLE alert_state (
    key        TEXT    PRIMARY KEY,
    active     BIGINT  NOT NULL,
    since_us   BIGINT  NOT NULL
);

CREATE TABLE alert_events (
    id         TEXT    PRIMARY KEY,
    at_us      BIGINT  NOT NULL,
    -- breach, evidence, backup, operation
    kind       TEXT    NOT NULL,
    -- breach_started, breach_ended, evidence_stale, evidence_fresh,
    -- backup_failed, verify_failed, restore_test_failed,
    -- operation_started, operation_ended
    event      TEXT    NOT NULL,
    service    TEXT,
    -- critical, warning, info
    severity   TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    detail     TEXT    NOT NULL
);
CREATE INDEX alert_events_at ON alert_events (at_us);

CREATE TABLE alert_deliveries (
    event_id        TEXT    NOT NULL,
    webhook         TEXT    NOT NULL,
    -- pending, delivered, failed (gave up)
    status          TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_at_us      BIGINT  NOT NULL,
    last_error      TEXT,
    delivered_at_us BIGINT,
    PRIMARY KEY (event_id, webhook)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_at_us);
