//! Automatic failover's recorded decisions (and the watchdog's fences):
//! what was decided, why, and on what evidence.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::lag::{from_us, to_us};
use crate::{query_error, Result, Store};

/// One recorded decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    pub id: String,
    pub cluster: String,
    pub service: String,
    pub decided_at: DateTime<Utc>,
    pub action: crate::states::GuardDecision,
    pub code: Option<String>,
    pub reason: String,
    /// JSON: the observation the decision rests on.
    pub evidence: String,
    pub operation_id: Option<String>,
}

const COLUMNS: &str =
    "id, cluster, service, decided_at_us, action, code, reason, evidence, operation_id";

fn from_row(r: &AnyRow) -> std::result::Result<DecisionRecord, sqlx::Error> {
    Ok(DecisionRecord {
        id: r.try_get(0)?,
        cluster: r.try_get(1)?,
        service: r.try_get(2)?,
        decided_at: from_us(r.try_get(3)?),
        action: r.try_get(4)?,
        code: r.try_get(5)?,
        reason: r.try_get(6)?,
        evidence: r.try_get(7)?,
        operation_id: r.try_get(8)?,
    })
}

impl Store {
    pub async fn record_decision(&self, d: &DecisionRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO failover_decisions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&d.id)
        .bind(&d.cluster)
        .bind(&d.service)
        .bind(to_us(d.decided_at))
        .bind(d.action)
        .bind(&d.code)
        .bind(&d.reason)
        .bind(&d.evidence)
        .bind(&d.operation_id)
        .execute(self.pool())
        .await
        .map_err(query_error("recording a failover decision"))?;
        Ok(())
    }

    /// Decisions, newest first; `cluster` narrows to one.
    pub async fn decisions(
        &self,
        cluster: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DecisionRecord>> {
        // No `$1 IS NULL`: PostgreSQL cannot type an untyped NULL parameter.
        let sql = match cluster {
            Some(_) => format!(
                "SELECT {COLUMNS} FROM failover_decisions WHERE cluster = $2 \
                 ORDER BY decided_at_us DESC LIMIT $1"
            ),
            None => format!(
                "SELECT {COLUMNS} FROM failover_decisions ORDER BY decided_at_us DESC LIMIT $1"
            ),
        };
        let mut query = sqlx::query(&sql).bind(limit);
        if let Some(c) = cluster {
            query = query.bind(c);
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .map_err(query_error("reading failover decisions"))?;
        crate::decode_rows(&rows, from_row, "decoding failover decisions")
    }

    /// Automatic failovers decided since `since`: of `cluster`, or of all.
    pub async fn automatic_failovers_since(
        &self,
        cluster: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let sql = format!(
            "SELECT decided_at_us FROM failover_decisions WHERE action = 'failover' \
             AND decided_at_us >= $1{} ORDER BY decided_at_us",
            if cluster.is_some() {
                " AND cluster = $2"
            } else {
                ""
            }
        );
        let mut query = sqlx::query(&sql).bind(to_us(since));
        if let Some(c) = cluster {
            query = query.bind(c);
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .map_err(query_error("reading automatic failovers"))?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map(from_us))
            .collect::<std::result::Result<_, _>>()
            .map_err(query_error("decoding automatic failovers"))
    }
}
