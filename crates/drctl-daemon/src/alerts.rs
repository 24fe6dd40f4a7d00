//! Alerts to webhooks: an RPO breach started or ended, the tier's proof
//! went stale or fresh, a backup, verification or restore test failed, the
//! WAL archive stalled or resumed, an operation started or ended.
//!
//! Two loops. The **watcher** compares what is true now with what the
//! store says is firing (`alert_state`) and raises an event only on a
//! change — one "breach started" and one "breach ended" per breach, also
//! across a daemon restart. The event and its pending deliveries are
//! written in the same transaction as the state (an outbox). The
//! **sender** posts due deliveries to each webhook (generic JSON, or
//! Slack's `{"text": …}`), retries failures with exponential backoff (1 s,
//! 2 s, 4 s … up to 5 min, 12 attempts), and keeps to at most
//! [`MAX_PER_MINUTE`] posts per webhook, so a storm of events queues
//! instead of flooding a channel. Each post carries the event's id
//! (`X-Drctl-Event-Id`) for receivers that deduplicate.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use drctl_api::AlertCounters;
use drctl_config::{AlertKind, Config, Secret, WebhookFormat};
use drctl_monitor::{Monitor, Status};
use drctl_store::states::{
    AlertSeverity, BackupStatus, EvidenceStatus, RestoreTestStatus, VerificationStatus,
};
use drctl_store::{AlertEvent, Store};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Posts per webhook per minute, at most.
pub const MAX_PER_MINUTE: usize = 20;
/// Attempts before a delivery is given up (about 25 minutes of retries).
const MAX_ATTEMPTS: i64 = 12;
/// Failures and operations older than this when first seen are history,
/// not news: a daemon started on an old store does not page for them.
const NEWS_WINDOW: TimeDelta = TimeDelta::hours(1);

/// What may be firing, as the watcher sees it now.
struct Condition {
    key: String,
    active: bool,
    kind: AlertKind,
    service: Option<String>,
    /// Event name when it starts / when it ends (`None`: one-shot events
    /// such as a failed backup have no end).
    start: &'static str,
    end: Option<&'static str>,
    severity: AlertSeverity,
    summary: String,
    detail: Value,
}

fn event_id() -> String {
    format!("al-{}", uuid::Uuid::new_v4().simple())
}

/// The conditions of the services (breach, evidence) at `now`.
fn service_conditions(monitor: &Monitor, now: DateTime<Utc>) -> Vec<Condition> {
    let config = monitor.config();
    let mut out = Vec::new();
    for v in monitor.views() {
        let every = config
            .service(&v.service)
            .map(|s| s.targets.evidence_every)
            .unwrap_or_else(|| config.tiers.get(v.tier).evidence_every);
        let c = drctl_monitor::compliance::assess(&v, every, now);
        let exposure = v
            .exposure()
            .map(|d| drctl_config::format_secs(d.as_secs_f64()));
        out.push(Condition {
            key: format!("breach:{}", v.service),
            active: v.status == Status::Breach,
            kind: AlertKind::Breach,
            service: Some(v.service.clone()),
            start: "breach_started",
            end: Some("breach_ended"),
            severity: AlertSeverity::Critical,
            summary: format!(
                "{}: RPO exposure {} against a {} target",
                v.service,
                exposure.unwrap_or_else(|| "unknown".into()),
                drctl_config::format_secs(v.rpo_target.as_secs_f64())
            ),
            detail: json!({
                "tier": v.tier, "exposure_s": c.rpo.exposure_s, "target_s": c.rpo.target_s,
                "exposure_is_lower_bound": c.rpo.exposure_is_lower_bound,
                "above_target_since": v.above_target_since, "best_standby": v.best_standby,
            }),
        });
        out.push(Condition {
            key: format!("evidence:{}", v.service),
            active: c.evidence.status == EvidenceStatus::Stale,
            kind: AlertKind::Evidence,
            service: Some(v.service.clone()),
            start: "evidence_stale",
            end: Some("evidence_fresh"),
            severity: AlertSeverity::Warning,
            summary: format!(
                "{}: {}",
                v.service,
                c.reasons
                    .iter()
                    .find(|r| r.contains("old"))
                    .cloned()
                    .unwrap_or_else(|| format!(
                        "the last {} is recent again",
                        c.evidence.required.to_string().replace('_', " ")
                    ))
            ),
            detail: serde_json::to_value(&c.evidence).unwrap_or(Value::Null),
        });
        // Only where an archiver reports (the leader): elsewhere nothing
        // is known, which is not the end of a stall.
        if let Some(w) = &v.wal_archive {
            let stalled = archive_stalled(w);
            out.push(Condition {
                key: format!("wal_archive:{}", v.service),
                active: stalled.is_some(),
                kind: AlertKind::Backup,
                service: Some(v.service.clone()),
                start: "wal_archive_stalled",
                end: Some("wal_archive_resumed"),
                // A cold service's exposure is its archive's lag.
                severity: match v.tier.is_replicated() {
                    true => AlertSeverity::Warning,
                    false => AlertSeverity::Critical,
                },
                summary: match &stalled {
                    Some(why) => format!("{}: {why}", v.service),
                    None => format!("{}: the WAL archive is catching up again", v.service),
                },
                detail: json!({
                    "archive_lag_s": w.archive_lag_us.map(|us| us as f64 / 1e6),
                    "receiver": w.receiver, "receiver_error": w.receiver_error,
                    "last_error": w.last_error, "source": w.source,
                }),
            });
        }
    }
    out
}

/// A WAL archive falling behind is a stall when something is wrong (the
/// receiver waits to start again, or shipping fails) and commits older
/// than this are not archived yet: a receiver restarting after a failover
/// catches up well before.
const ARCHIVE_STALLED_AFTER: Duration = Duration::from_secs(30);

/// Why the archive is stalled, or `None` when it is not.
fn archive_stalled(w: &drctl_monitor::WalArchiveView) -> Option<String> {
    let problem = w.last_error.clone().or_else(|| {
        w.receiver_error
            .clone()
            .filter(|_| w.receiver != drctl_monitor::ArchiveReceiver::Running)
    })?;
    let lag = Duration::from_micros(u64::try_from(w.archive_lag_us?).ok()?);
    (lag >= ARCHIVE_STALLED_AFTER).then(|| {
        format!(
            "the WAL archive is {} behind the primary: {problem}",
            drctl_config::format_secs(lag.as_secs_f64())
        )
    })
}

/// Failed backups, verifications and restore tests, and operations that
/// started or ended, as one-shot conditions keyed by their id.
async fn record_conditions(
    store: &Store,
    now: DateTime<Utc>,
) -> drctl_store::Result<Vec<Condition>> {
    let recent = |t: Option<DateTime<Utc>>| t.is_some_and(|t| now - t <= NEWS_WINDOW);
    let mut out = Vec::new();
    for b in store.backups(None, 200).await? {
        if b.status == BackupStatus::Failed && recent(b.ended_at.or(Some(b.started_at))) {
            out.push(Condition {
                key: format!("backup_failed:{}", b.id),
                active: true,
                kind: AlertKind::Backup,
                service: Some(b.service.clone()),
                start: "backup_failed",
                end: None,
                severity: AlertSeverity::Critical,
                summary: format!(
                    "{}: backup {} failed: {}",
                    b.service,
                    b.id,
                    b.error.clone().unwrap_or_default()
                ),
                detail: json!({ "backup_id": b.id, "error": b.error }),
            });
        }
        if b.verification == Some(VerificationStatus::Failed) && recent(b.verified_at) {
            out.push(Condition {
                key: format!("verify_failed:{}", b.id),
                active: true,
                kind: AlertKind::Backup,
                service: Some(b.service.clone()),
                start: "verify_failed",
                end: None,
                severity: AlertSeverity::Critical,
                summary: format!(
                    "{}: backup {} failed verification: {}",
                    b.service,
                    b.id,
                    b.verification_error.clone().unwrap_or_default()
                ),
                detail: json!({ "backup_id": b.id, "error": b.verification_error }),
            });
        }
    }
    for t in store.restore_tests(None, 200).await? {
        if t.status == RestoreTestStatus::Failed && recent(t.ended_at) {
            out.push(Condition {
                key: format!("restore_test_failed:{}", t.id),
                active: true,
                kind: AlertKind::Backup,
                service: Some(t.service.clone()),
                start: "restore_test_failed",
                end: None,
                severity: AlertSeverity::Critical,
                summary: format!("{}: restore test {} failed: {}", t.service, t.id, t.error.clone().unwrap_or_default()),
                detail: json!({ "restore_test_id": t.id, "backup_id": t.backup_id, "error": t.error }),
            });
        }
    }
    for o in store.operations(200).await? {
        if !o.kind.is_journaled() || !recent(Some(o.started_at)) {
            continue;
        }
        let what = format!(
            "{} {} of {}",
            o.kind,
            o.id,
            o.service.clone().unwrap_or_default()
        );
        out.push(Condition {
            key: format!("operation_started:{}", o.id),
            active: true,
            kind: AlertKind::Operation,
            service: o.service.clone(),
            start: "operation_started",
            end: None,
            severity: if o.kind == drctl_store::states::OperationKind::Failover {
                AlertSeverity::Critical
            } else {
                AlertSeverity::Info
            },
            summary: format!("{what} started"),
            detail: json!({ "operation_id": o.id, "kind": o.kind, "target": o.target }),
        });
        if o.status != drctl_store::states::OpStatus::Running {
            let result: Value = o
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or(Value::Null);
            out.push(Condition {
                key: format!("operation_ended:{}", o.id),
                active: true,
                kind: AlertKind::Operation,
                service: o.service.clone(),
                start: "operation_ended",
                end: None,
                severity: if o.status == drctl_store::states::OpStatus::Succeeded {
                    AlertSeverity::Info
                } else {
                    AlertSeverity::Critical
                },
                summary: format!("{what} {}{}", o.status, o.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()),
                detail: json!({
                    "operation_id": o.id, "kind": o.kind, "status": o.status,
                    "rpo_us": result.get("rpo_us"), "rpo_met": result.get("rpo_met"),
                    "rto_ms": result.get("rto_ms"), "rto_met": result.get("rto_met"), "error": o.error,
                }),
            });
        }
    }
    Ok(out)
}

/// What is firing, as recorded: loaded from the store once, then kept in
/// step with every state this daemon records (a thousand services are two
/// thousand conditions a second; they are compared in memory, and only a
/// change touches the store).
type States = HashMap<String, (bool, DateTime<Utc>)>;

/// Raises an event for each condition whose state changed.
async fn watch_once(
    config: &Config,
    monitor: &Monitor,
    store: &Store,
    states: &mut States,
) -> drctl_store::Result<usize> {
    let now = Utc::now();
    let mut conditions = service_conditions(monitor, now);
    conditions.extend(record_conditions(store, now).await?);
    let mut raised = 0;
    for c in conditions {
        let recorded = states.get(&c.key).copied();
        let was_active = recorded.is_some_and(|(a, _)| a);
        let event = match (was_active, c.active) {
            (false, true) => c.start,
            (true, false) => match c.end {
                Some(end) => end,
                None => continue,
            },
            _ => continue,
        };
        // A condition first seen inactive (a service inside its target) is
        // recorded silently: there is nothing to end.
        let mut detail = c.detail.clone();
        if let (Some((_, since)), false) = (recorded, c.active) {
            detail["lasted_s"] = json!((now - since).num_milliseconds() as f64 / 1000.0);
        }
        let summary = if c.active {
            c.summary.clone()
        } else if c.kind == AlertKind::Breach {
            format!("{} (breach over)", c.summary)
        } else {
            c.summary.clone()
        };
        let alert = AlertEvent {
            id: event_id(),
            at: now,
            kind: stored_kind(c.kind),
            event: event.to_string(),
            service: c.service.clone(),
            severity: if c.active {
                c.severity
            } else {
                AlertSeverity::Info
            },
            summary,
            detail: detail.to_string(),
        };
        let webhooks: Vec<String> = config
            .webhooks
            .iter()
            .filter(|w| w.wants(c.kind))
            .map(|w| w.name.clone())
            .collect();
        store
            .raise_alert(&c.key, c.active, &alert, &webhooks)
            .await?;
        states.insert(c.key.clone(), (c.active, now));
        tracing::info!(event = %alert.event, service = ?alert.service, summary = %alert.summary, "alert raised");
        raised += 1;
    }
    Ok(raised)
}

/// The body posted for `event` in `format`.
pub fn payload(event: &AlertEvent, format: WebhookFormat) -> Value {
    let detail: Value = serde_json::from_str(&event.detail).unwrap_or(Value::Null);
    match format {
        WebhookFormat::Json => json!({
            "source": "drctl",
            "id": event.id,
            "at": event.at,
            "kind": event.kind,
            "event": event.event,
            "service": event.service,
            "severity": event.severity,
            "summary": event.summary,
            "detail": detail,
        }),
        WebhookFormat::Slack => {
            let icon = match (event.severity, event.event.as_str()) {
                (_, e) if e.ends_with("_ended") || e.ends_with("_fresh") => ":white_check_mark:",
                (AlertSeverity::Critical, _) => ":rotating_light:",
                (AlertSeverity::Warning, _) => ":warning:",
                _ => ":information_source:",
            };
            json!({ "text": format!("{icon} *drctl* {}: {}", event.event.replace('_', " "), event.summary) })
        }
    }
}

/// One webhook as the sender holds it.
struct Sink {
    url: Secret,
    host: String,
    format: WebhookFormat,
    sent: VecDeque<Instant>,
}

fn host_of(url: &str) -> String {
    // Parsed by the `url` crate (through reqwest): user info, path, query
    // and fragment never reach a log line or a metric label.
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => "?".into(),
        },
        Err(_) => "?".into(),
    }
}

/// Delay before attempt `attempts + 1`.
fn backoff(attempts: i64) -> TimeDelta {
    TimeDelta::seconds(1i64 << attempts.clamp(0, 8)).min(TimeDelta::minutes(5))
}

async fn send_once(
    client: &reqwest::Client,
    sinks: &mut BTreeMap<String, Sink>,
    store: &Store,
    counters: &AlertCounters,
) -> drctl_store::Result<()> {
    let now = Utc::now();
    for due in store.due_deliveries(now, 100).await? {
        let Some(sink) = sinks.get_mut(&due.webhook) else {
            // The webhook left the config: nothing will ever take it.
            let e = "the webhook is no longer configured".to_string();
            store
                .delivery_attempted(&due.event.id, &due.webhook, Err((e, None)))
                .await?;
            continue;
        };
        while sink
            .sent
            .front()
            .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
        {
            sink.sent.pop_front();
        }
        if sink.sent.len() >= MAX_PER_MINUTE {
            counters.bump(&due.webhook, "deferred");
            continue; // stays pending: sent once the minute frees up
        }
        sink.sent.push_back(Instant::now());
        let body = payload(&due.event, sink.format);
        let result = client
            .post(sink.url.expose())
            .header("X-Drctl-Event-Id", &due.event.id)
            .json(&body)
            .send()
            .await;
        let outcome = match result {
            Ok(r) if r.status().is_success() => Ok(Utc::now()),
            Ok(r) => Err(format!("{} answered {}", sink.host, r.status())),
            // reqwest's error names the URL: say only the host.
            Err(e) => Err(format!(
                "{} unreachable ({})",
                sink.host,
                if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connection refused or reset"
                } else {
                    "request failed"
                }
            )),
        };
        match outcome {
            Ok(at) => {
                counters.bump(&due.webhook, "delivered");
                store
                    .delivery_attempted(&due.event.id, &due.webhook, Ok(at))
                    .await?;
            }
            Err(e) => {
                let next =
                    (due.attempts + 1 < MAX_ATTEMPTS).then(|| Utc::now() + backoff(due.attempts));
                if next.is_none() {
                    tracing::error!(webhook = %due.webhook, event = %due.event.id, error = %e, "giving up on an alert delivery");
                    counters.bump(&due.webhook, "failed");
                } else {
                    tracing::warn!(webhook = %due.webhook, event = %due.event.id, error = %e, "alert delivery failed; retrying");
                    counters.bump(&due.webhook, "retried");
                }
                store
                    .delivery_attempted(&due.event.id, &due.webhook, Err((e, next)))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Why the webhooks could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("webhook {name:?}: {source}")]
pub struct WebhookError {
    pub name: String,
    #[source]
    pub source: drctl_config::DsnError,
}

/// Reads every webhook's URL now, so a daemon with a missing one fails at
/// start.
pub fn check_webhooks(config: &Config) -> Result<(), WebhookError> {
    for w in &config.webhooks {
        w.resolve_url().map_err(|source| WebhookError {
            name: w.name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The watcher and the sender, until `shutdown`.
pub async fn run(
    config: Arc<Config>,
    monitor: Monitor,
    counters: Arc<AlertCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let store = monitor.store().clone();
    let mut sinks: BTreeMap<String, Sink> = BTreeMap::new();
    for w in &config.webhooks {
        match w.resolve_url() {
            Ok(url) => {
                let host = host_of(url.expose());
                sinks.insert(
                    w.name.clone(),
                    Sink {
                        url,
                        host,
                        format: w.format,
                        sent: VecDeque::new(),
                    },
                );
            }
            Err(e) => {
                tracing::error!(webhook = %w.name, error = %e, "webhook URL unreadable; its alerts stay queued")
            }
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    // Let the monitor take its first samples before judging anything.
    let first_look = config.monitor.interval * 3;
    tokio::select! {
        _ = tokio::time::sleep(first_look) => {}
        _ = shutdown.wait_for(|s| *s) => return,
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut errors: HashMap<&'static str, Instant> = HashMap::new();
    let mut states: Option<States> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // Samples need time to show a breach; looking every second keeps the
        // alert within a second of the monitor's verdict.
        if states.is_none() {
            match store.alert_states().await {
                Ok(s) => states = Some(s),
                Err(e) => tracing::error!(error = %e, "cannot read alert states"),
            }
        }
        let watched = match states.as_mut() {
            Some(states) => watch_once(&config, &monitor, &store, states).await,
            None => Ok(0),
        };
        if let Err(e) = watched {
            // The store may hold changes this daemon did not see: re-read.
            states = None;
            if errors
                .get("watch")
                .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                tracing::error!(error = %e, "cannot evaluate alerts");
                errors.insert("watch", Instant::now());
            }
        }
        if let Err(e) = send_once(&client, &mut sinks, &store, &counters).await {
            if errors
                .get("send")
                .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                tracing::error!(error = %e, "cannot send alerts");
                errors.insert("send", Instant::now());
            }
        }
    }
}

/// What a webhook subscribes to (the config's kinds), as the event is
/// stored and sent: the same four, one to one.
fn stored_kind(kind: AlertKind) -> drctl_store::states::AlertKind {
    use drctl_store::states::AlertKind as Stored;
    match kind {
        AlertKind::Breach => Stored::Breach,
        AlertKind::Evidence => Stored::Evidence,
        AlertKind::Backup => Stored::Backup,
        AlertKind::Operation => Stored::Operation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wal_archive_stalls_when_something_is_wrong_and_it_falls_behind() {
        use drctl_monitor::ArchiveReceiver::{Running, Waiting};
        let view =
            |receiver, error: Option<&str>, lag_s: Option<i64>| drctl_monitor::WalArchiveView {
                source: None,
                receiver,
                receiver_error: error.map(str::to_string),
                receive_lag_us: None,
                archive_lag_us: lag_s.map(|s| s * 1_000_000),
                lag_lower_bound: false,
                received_lsn: None,
                archived_lsn: None,
                last_error: None,
                sampled_at: None,
                restorable_from: None,
                restorable_from_backup: None,
                restorable_to: None,
            };
        let full = "pg_receivewal: error: could not write: No space left on device";
        let why = archive_stalled(&view(Waiting, Some(full), Some(45))).unwrap();
        assert!(
            why.contains("45s behind") && why.contains("No space left"),
            "{why}"
        );
        // Restarting after a failover, not behind yet; behind but healthy
        // (a burst of writes); behind with the primary unreadable.
        assert_eq!(archive_stalled(&view(Waiting, Some(full), Some(5))), None);
        assert_eq!(archive_stalled(&view(Running, None, Some(45))), None);
        assert_eq!(archive_stalled(&view(Waiting, Some(full), None)), None);
    }

    #[test]
    fn backoff_doubles_and_stops_at_five_minutes() {
        let secs: Vec<i64> = (0..12).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(
            secs,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256, 256].map(|s: i64| s.min(300))
        );
    }

    #[test]
    fn a_slack_url_shows_only_its_host() {
        assert_eq!(
            host_of("https://hooks.slack.com/services/T000/B000/XXXX"),
            "hooks.slack.com"
        );
        assert_eq!(host_of("http://user:pw@127.0.0.1:9/x"), "127.0.0.1:9");
    }

    #[test]
    fn slack_payload_is_text_and_json_payload_keeps_the_event() {
        let e = AlertEvent {
            id: "al-1".into(),
            at: Utc::now(),
            kind: drctl_store::states::AlertKind::Breach,
            event: "breach_started".into(),
            service: Some("orders".into()),
            severity: AlertSeverity::Critical,
            summary: "orders: RPO exposure 12 s against a 5 s target".into(),
            detail: "{\"exposure_s\":12.0}".into(),
        };
        let slack = payload(&e, WebhookFormat::Slack);
        assert!(slack["text"].as_str().unwrap().contains("breach started"));
        let generic = payload(&e, WebhookFormat::Json);
        assert_eq!(generic["detail"]["exposure_s"], 12.0);
        assert_eq!(generic["event"], "breach_started");
    }
}
