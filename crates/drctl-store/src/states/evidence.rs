//! States of the evidence drctl records: backups, their verification and
//! off-site copy, restore tests, and scheduled runs.

state_enum! {
    /// Where a backup's run stands. Recorded `running` before its first byte
    /// goes to the object store, so a crash leaves a row the next run sees.
    pub enum BackupStatus {
        Running,
        Complete,
        Failed,
    }
}

state_enum! {
    /// The outcome of checking a backup against its manifest.
    pub enum VerificationStatus {
        Verified,
        Failed,
    }
}

state_enum! {
    /// Where a backup's copy to its second (off-site) store stands.
    pub enum OffsiteStatus {
        Copying,
        Verified,
        Failed,
    }
}

state_enum! {
    /// Where a restore test stands; `passed` is RTO evidence.
    pub enum RestoreTestStatus {
        Running,
        Passed,
        Failed,
    }
}

state_enum! {
    /// What became of one due run of a schedule.
    pub enum ScheduleRunStatus {
        Running,
        Ok,
        Failed,
        /// Its due time passed while no daemon could run it.
        Missed,
        /// Another holder ran it.
        Skipped,
    }
}

state_enum! {
    /// A job the daemon's scheduler runs on a service's schedule.
    pub enum ScheduledJob {
        Backup,
        Verify,
        RestoreTest,
    }
}

crate::stored_as_text!(
    ScheduledJob,
    BackupStatus,
    VerificationStatus,
    OffsiteStatus,
    RestoreTestStatus,
    ScheduleRunStatus
);

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use strum::VariantArray;

    use super::*;
    use crate::states::{
        AlertKind, AlertSeverity, ComplianceStatus, DeliveryStatus, EvidenceStatus, MonitorStatus,
        ProofRequired, RpoJudgement, RtoJudgement,
    };
    use crate::{ScheduleRun, Store};

    /// Each enum's spellings, as stored and served before states were
    /// enums: one `Display`, `FromStr` and serde spelling per variant.
    fn spelled<T>(expected: &[&str])
    where
        T: VariantArray
            + Copy
            + std::fmt::Display
            + std::str::FromStr
            + serde::Serialize
            + serde::de::DeserializeOwned
            + PartialEq
            + std::fmt::Debug,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        let spellings: Vec<String> = T::VARIANTS.iter().map(|v| v.to_string()).collect();
        assert_eq!(spellings, expected);
        for v in T::VARIANTS {
            let text = v.to_string();
            assert_eq!(text.parse::<T>().unwrap(), *v);
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{text}\"")).unwrap(),
                *v
            );
        }
    }

    #[test]
    fn every_state_keeps_the_spelling_the_database_and_the_api_have() {
        spelled::<BackupStatus>(&["running", "complete", "failed"]);
        spelled::<VerificationStatus>(&["verified", "failed"]);
        spelled::<OffsiteStatus>(&["copying", "verified", "failed"]);
        spelled::<RestoreTestStatus>(&["running", "passed", "failed"]);
        spelled::<ScheduledJob>(&["backup", "verify", "restore_test"]);
        spelled::<ScheduleRunStatus>(&["running", "ok", "failed", "missed", "skipped"]);
        spelled::<MonitorStatus>(&["ok", "at_risk", "breach", "unknown"]);
        spelled::<ComplianceStatus>(&[
            "compliant",
            "at_risk",
            "breach",
            "stale",
            "unverified",
            "unknown",
        ]);
        spelled::<RpoJudgement>(&["met", "at_risk", "breach", "unknown"]);
        spelled::<RtoJudgement>(&["met", "breach", "unknown"]);
        spelled::<EvidenceStatus>(&["fresh", "stale", "unverified", "missing"]);
        spelled::<ProofRequired>(&["drill", "restore_test"]);
        spelled::<AlertSeverity>(&["info", "warning", "critical"]);
        spelled::<DeliveryStatus>(&["pending", "delivered", "failed"]);
        spelled::<AlertKind>(&["breach", "evidence", "backup", "operation"]);
    }

    #[test]
    fn monitor_status_gravity_ranks_unknown_between_ok_and_at_risk() {
        let mut by_gravity = MonitorStatus::VARIANTS.to_vec();
        by_gravity.sort_by_key(|s| s.gravity());
        assert_eq!(
            by_gravity,
            [
                MonitorStatus::Ok,
                MonitorStatus::Unknown,
                MonitorStatus::AtRisk,
                MonitorStatus::Breach
            ]
        );
        for s in MonitorStatus::VARIANTS {
            assert_eq!(MonitorStatus::of_gravity(s.gravity()), *s);
        }
    }

    /// Through sqlx's `Any` driver (what the store uses): every variant is
    /// written and read back as its text, and a spelling the enum does not
    /// know fails to decode naming the type, instead of passing as a state.
    #[tokio::test]
    async fn states_round_trip_through_the_store_and_an_unknown_spelling_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let store = Store::open(&url).await.unwrap();
        let at = |s: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap();
        for (i, status) in ScheduleRunStatus::VARIANTS.iter().enumerate() {
            store
                .record_schedule_run(&ScheduleRun {
                    service: "orders".into(),
                    job: ScheduledJob::Backup,
                    due_at: at(i as i64),
                    started_at: None,
                    ended_at: None,
                    status: *status,
                    detail: None,
                })
                .await
                .unwrap();
        }
        let mut read: Vec<ScheduleRunStatus> = store
            .schedule_runs(Some("orders"), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.status)
            .collect();
        read.reverse();
        assert_eq!(read, ScheduleRunStatus::VARIANTS);
        let stored: Vec<(String,)> =
            sqlx::query_as("SELECT status FROM schedule_runs ORDER BY due_at_us")
                .fetch_all(&store.pool().pool)
                .await
                .unwrap();
        assert_eq!(
            stored.into_iter().map(|(s,)| s).collect::<Vec<_>>(),
            ["running", "ok", "failed", "missed", "skipped"]
        );

        sqlx::query("UPDATE schedule_runs SET status = 'done' WHERE due_at_us = $1")
            .bind(at(0).timestamp_micros())
            .execute(&store.pool().pool)
            .await
            .unwrap();
        let err = store.schedule_runs(Some("orders"), 100).await.unwrap_err();
        assert!(
            format!("{err}").contains("\"done\" is not a stored ScheduleRunStatus"),
            "{err}"
        );
        store.close().await;
    }
}
