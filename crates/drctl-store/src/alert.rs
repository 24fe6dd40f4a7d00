//! Alerts as stored: which conditions are firing, the events raised, and
//! their delivery to each webhook (an outbox, so an event raised just
//! before a crash is still sent after it).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::states::{AlertKind, AlertSeverity, DeliveryStatus};
use crate::{decode_rows, query_error, Result, Store};

/// One raised event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertEvent {
    pub id: String,
    pub at: DateTime<Utc>,
    pub kind: AlertKind,
    pub event: String,
    pub service: Option<String>,
    pub severity: AlertSeverity,
    pub summary: String,
    /// JSON object.
    pub detail: String,
}

/// A delivery that is due: the event, the webhook, attempts so far.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub event: AlertEvent,
    pub webhook: String,
    pub attempts: i64,
}

const EVENT_COLUMNS: &str =
    "e.id, e.at_us, e.kind, e.event, e.service, e.severity, e.summary, e.detail";

fn event_from_row(r: &AnyRow) -> std::result::Result<AlertEvent, sqlx::Error> {
    Ok(AlertEvent {
        id: r.try_get(0)?,
        at: from_us(r.try_get(1)?),
        kind: r.try_get(2)?,
        event: r.try_get(3)?,
        service: r.try_get(4)?,
        severity: r.try_get(5)?,
        summary: r.try_get(6)?,
        detail: r.try_get(7)?,
    })
}

impl Store {
    /// Every recorded alert state: key → (firing, since). Read once by the
    /// watcher, which then keeps it in step with what it records.
    pub async fn alert_states(
        &self,
    ) -> Result<std::collections::HashMap<String, (bool, DateTime<Utc>)>> {
        let rows = sqlx::query("SELECT key, active, since_us FROM alert_state")
            .fetch_all(self.pool())
            .await
            .map_err(query_error("reading alert states"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0)?,
                    (
                        r.try_get::<i64, _>(1)? != 0,
                        from_us(r.try_get::<i64, _>(2)?),
                    ),
                ))
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(query_error("decoding alert states"))
    }

    /// Records a change of `key`'s state and the event it raises (with a
    /// pending delivery to each of `webhooks`) in one transaction: a state
    /// change is never recorded without its event, nor the other way round.
    pub async fn raise_alert(
        &self,
        key: &str,
        active: bool,
        event: &AlertEvent,
        webhooks: &[String],
    ) -> Result<()> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(query_error("beginning a transaction"))?;
        let outcome = self.pool().within_limit(async {
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(query_error("beginning a transaction"))?;
        sqlx::query(
            "INSERT INTO alert_state (key, active, since_us) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET active = excluded.active, since_us = excluded.since_us",
        )
        .bind(key)
        .bind(active as i64)
        .bind(to_us(event.at))
        .execute(&mut *tx)
        .await
        .map_err(query_error("recording an alert's state"))?;
        sqlx::query(
            "INSERT INTO alert_events (id, at_us, kind, event, service, severity, summary, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&event.id)
        .bind(to_us(event.at))
        .bind(event.kind)
        .bind(&event.event)
        .bind(&event.service)
        .bind(event.severity)
        .bind(&event.summary)
        .bind(&event.detail)
        .execute(&mut *tx)
        .await
        .map_err(query_error("recording an alert event"))?;
        for webhook in webhooks {
            sqlx::query(
                "INSERT INTO alert_deliveries (event_id, webhook, status, attempts, next_at_us) \
                 VALUES ($1, $2, 'pending', 0, $3)",
            )
            .bind(&event.id)
            .bind(webhook)
            .bind(to_us(event.at))
            .execute(&mut *tx)
            .await
            .map_err(query_error("queueing an alert delivery"))?;
        }
        tx.commit()
            .await
            .map_err(query_error("committing an alert"))?;
        Ok(())
        }).await;
        self.pool()
            .settle(conn, outcome, query_error("recording an alert"))
    }

    /// Pending deliveries due by `now`, oldest event first.
    pub async fn due_deliveries(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<DueDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS}, d.webhook, d.attempts FROM alert_deliveries d \
             JOIN alert_events e ON e.id = d.event_id \
             WHERE d.status = 'pending' AND d.next_at_us <= $1 ORDER BY e.at_us LIMIT $2"
        ))
        .bind(to_us(now))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading due alert deliveries"))?;
        decode_rows(
            &rows,
            |r| {
                Ok(DueDelivery {
                    event: event_from_row(r)?,
                    webhook: r.try_get(8)?,
                    attempts: r.try_get(9)?,
                })
            },
            "decoding alert deliveries",
        )
    }

    /// Records one attempt: delivered, or failed with the time of the next
    /// attempt (`None`: give up).
    pub async fn delivery_attempted(
        &self,
        event_id: &str,
        webhook: &str,
        outcome: std::result::Result<DateTime<Utc>, (String, Option<DateTime<Utc>>)>,
    ) -> Result<()> {
        let (status, next, error, delivered) = match outcome {
            Ok(at) => (DeliveryStatus::Delivered, at, None, Some(to_us(at))),
            Err((e, Some(next))) => (DeliveryStatus::Pending, next, Some(e), None),
            Err((e, None)) => (DeliveryStatus::Failed, Utc::now(), Some(e), None),
        };
        sqlx::query(
            "UPDATE alert_deliveries SET status = $3, attempts = attempts + 1, next_at_us = $4, \
             last_error = $5, delivered_at_us = $6 WHERE event_id = $1 AND webhook = $2",
        )
        .bind(event_id)
        .bind(webhook)
        .bind(status)
        .bind(to_us(next))
        .bind(error)
        .bind(delivered)
        .execute(self.pool())
        .await
        .map_err(query_error("recording an alert delivery"))?;
        Ok(())
    }

    /// Raised events, newest first.
    pub async fn alert_events(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<AlertEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM alert_events e WHERE e.at_us >= $1 ORDER BY e.at_us DESC LIMIT $2"
        ))
        .bind(to_us(since))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("reading alert events"))?;
        decode_rows(&rows, event_from_row, "decoding alert events")
    }

    /// Deliveries per (webhook, status), for the metrics.
    pub async fn delivery_counts(&self) -> Result<Vec<(String, DeliveryStatus, i64)>> {
        let rows = sqlx::query(
            "SELECT webhook, status, count(*) FROM alert_deliveries GROUP BY webhook, status ORDER BY webhook, status",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_error("counting alert deliveries"))?;
        decode_rows(
            &rows,
            |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
            "decoding alert delivery counts",
        )
    }
}
