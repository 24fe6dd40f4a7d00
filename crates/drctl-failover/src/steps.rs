//! The steps. Each reads the operation's parameters and the outputs of the
//! steps before it (nothing else crosses from one step to the next), acts
//! idempotently, and returns its output for the journal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use drctl_config::{Config, Service};
use drctl_dns::{DnsProvider, DnsRecord};
use drctl_pg::{FenceReport, HeartbeatPoint, Lsn, NodeState, PgEndpoint, PromoteReport};
use drctl_store::Store;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::drill;
use crate::hook::{self, HookRun};
use crate::measure::{loss_window, Measured};
use crate::plan::{self, Blocker, OperationParams, PlanReport};
use crate::{OperationKind, Step};

/// How long to try reaching a server before calling it unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to try a source the daemon has already seen lost (an automatic
/// failover's detection is the evidence; waiting longer only adds to the
/// outage).
const LOST_SOURCE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long to try reaching the source.
fn source_timeout(p: &OperationParams, normal: Duration) -> Duration {
    if p.detected_at_us.is_some() {
        LOST_SOURCE_TIMEOUT
    } else {
        normal
    }
}
/// A switchover waits this long for the target to catch up before it
/// gives the source back.
const SWITCHOVER_CATCH_UP: Duration = Duration::from_secs(60);
/// A failover with a reachable source waits this long for the last WAL.
const FAILOVER_CATCH_UP: Duration = Duration::from_secs(5);
const PROMOTE_WAIT: Duration = Duration::from_secs(60);
const DNS_CONFIRM: Duration = Duration::from_secs(30);

/// Why a step did not complete.
#[derive(Debug, Clone)]
pub(crate) struct StepError {
    pub message: String,
    /// Worth retrying in place (a timeout, a provider's 5xx).
    pub retryable: bool,
    /// The operation ends here without its goal (nothing was changed, or
    /// the step undid what it had done); otherwise it stops, resumable.
    pub abandon: bool,
    /// The plan's standing blockers (and whether `--accept-data-loss`
    /// overrides them all): the operation was refused, not attempted.
    pub refused: Option<(Vec<String>, bool)>,
}

impl StepError {
    pub fn stop(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            retryable: false,
            abandon: false,
            refused: None,
        }
    }
    pub fn retry(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            retryable: true,
            abandon: false,
            refused: None,
        }
    }
    pub fn abandon(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            retryable: false,
            abandon: true,
            refused: None,
        }
    }
    pub fn refused(blockers: Vec<String>, overridable: bool) -> Self {
        StepError {
            refused: Some((blockers.clone(), overridable)),
            ..StepError::abandon(format!(
                "refused: {}{}",
                blockers.join("; "),
                if overridable {
                    " (--accept-data-loss overrides)"
                } else {
                    ""
                }
            ))
        }
    }
}

pub(crate) type StepResult = Result<Value, StepError>;

/// Everything a step may read.
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub params: &'a OperationParams,
    pub op_id: &'a str,
    pub op_started: DateTime<Utc>,
    pub lease: &'a drctl_store::Lease,
    /// Outputs of the steps done so far, from the journal.
    pub outputs: &'a BTreeMap<Step, Value>,
    /// Step timings so far (ms), from the journal.
    pub timings: &'a BTreeMap<Step, (DateTime<Utc>, Option<DateTime<Utc>>)>,
}

impl Ctx<'_> {
    pub(crate) fn output<T: DeserializeOwned>(&self, step: Step) -> Result<T, StepError> {
        let v = self
            .outputs
            .get(&step)
            .ok_or_else(|| StepError::stop(format!("the journal has no output of step {step}")))?;
        serde_json::from_value(v.clone()).map_err(|e| {
            StepError::stop(format!(
                "the journal's output of step {step} is unreadable: {e}"
            ))
        })
    }

    pub(crate) fn service(&self) -> Result<&Service, StepError> {
        self.config.service(&self.params.service).ok_or_else(|| {
            StepError::abandon(format!(
                "service {} is no longer in the config",
                self.params.service
            ))
        })
    }

    pub(crate) fn endpoint(
        &self,
        region: &str,
        timeout: Duration,
    ) -> Result<PgEndpoint, StepError> {
        endpoint(self.service()?, region, timeout).map_err(StepError::stop)
    }

    /// The fenced check before an external action (`action` says which):
    /// this driver still holds the operation's lease with its token, and
    /// holds it for a whole lease term from now (a conditional renewal on
    /// the store's clock). Journal writes are fenced by the store; this
    /// fences the side effects, which the store cannot see. A driver that
    /// was paused past its lease (GC, frozen VM, SIGSTOP) fails here,
    /// before it touches a server or DNS: whoever took over owns the
    /// cluster now.
    pub(crate) async fn check_lease(&self, action: &str) -> Result<(), StepError> {
        let unreachable = |e: drctl_store::StoreError| {
            StepError::retry(format!(
                "cannot check the operation's lease before {action}: {e}"
            ))
        };
        let now = self.store.clock().await.map_err(unreachable)?;
        let mut lease = self.lease.clone();
        match self
            .store
            .renew_lease(&mut lease, self.config.failover.lease, now)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(StepError::stop(format!(
                "this driver no longer holds the lease {} (token {}): another driver took over; not {action}",
                lease.name, lease.token
            ))),
            Err(e) => Err(unreachable(e)),
        }
    }
}

/// A region's server's role and positions, or why it could not be read
/// (one connection, closed after).
pub(crate) async fn read_state(
    service: Option<&Service>,
    region: &str,
    timeout: Duration,
) -> Result<NodeState, String> {
    let ep = endpoint(service.ok_or("unknown service")?, region, timeout)?;
    let r = ep.node_state().await.map_err(|e| e.to_string());
    ep.close().await;
    r
}

pub(crate) fn endpoint(
    service: &Service,
    region: &str,
    timeout: Duration,
) -> Result<PgEndpoint, String> {
    let source = service.postgres.get(region).ok_or_else(|| {
        format!(
            "service {} has no PostgreSQL connection for region {region}",
            service.name
        )
    })?;
    let dsn = source.resolve().map_err(|e| e.to_string())?;
    PgEndpoint::new(
        format!("{}@{region}", service.cluster),
        dsn.expose(),
        timeout,
    )
    .map_err(|e| e.to_string())
}

/// The PostgreSQL binaries, for the steps that run them (drill, rejoin,
/// recover).
pub(crate) fn pg_bin() -> Result<std::path::PathBuf, StepError> {
    drctl_pg::find_pg_bin().map_err(|e| StepError::stop(e.to_string()))
}

/// Runs file and process work (pg_basebackup, pg_ctl, pg_rewind) off the
/// async runtime; its error stops the operation, resumable.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::stop(e.to_string()))?
        .map_err(StepError::stop)
}

pub(crate) fn to_value<T: Serialize>(v: &T) -> StepResult {
    serde_json::to_value(v)
        .map_err(|e| StepError::stop(format!("cannot encode a step output: {e}")))
}

pub(crate) fn skipped(reason: &str) -> StepResult {
    Ok(serde_json::json!({ "skipped": reason }))
}

pub(crate) fn is_skipped(v: Option<&Value>) -> bool {
    v.and_then(|v| v.get("skipped")).is_some()
}

/// Runs one step.
pub(crate) async fn run(step: Step, ctx: &Ctx<'_>) -> StepResult {
    if ctx.params.kind == OperationKind::Rejoin {
        return crate::rejoin::run(step, ctx).await;
    }
    if ctx.params.kind == OperationKind::Recover {
        match step {
            Step::Restore => return crate::recover::restore(ctx).await,
            Step::StartNode => return crate::recover::start(ctx).await,
            Step::Record => return crate::recover::record(ctx).await,
            _ => {}
        }
    }
    match step {
        Step::Plan => plan_step(ctx).await,
        Step::Lease => to_value(&serde_json::json!({
            "holder": ctx.lease.holder,
            "token": ctx.lease.token,
            "lease": ctx.lease.name,
        })),
        Step::FenceSource => fence_source(ctx).await,
        Step::SourcePosition => source_position(ctx).await,
        Step::CatchUp => catch_up(ctx).await,
        Step::PromoteTarget => promote_target(ctx).await,
        Step::WriteProbe => write_probe(ctx).await,
        Step::DnsFlip => dns_flip(ctx).await,
        Step::DnsConfirm => dns_confirm(ctx).await,
        Step::ServiceHealth => service_health(ctx).await,
        Step::Record => record(ctx).await,
        Step::CloneStandby => drill::clone_standby(ctx).await,
        Step::StartClone => drill::start_clone(ctx).await,
        Step::Teardown => drill::teardown(ctx).await,
        Step::StopNode
        | Step::Rewind
        | Step::ConfigureStandby
        | Step::StartNode
        | Step::Restore => Err(StepError::abandon(format!(
            "step {step} belongs to another kind of operation"
        ))),
    }
}

/// The server a step promotes and probes: the target, or a drill's clone.
fn promoted_endpoint(ctx: &Ctx<'_>, timeout: Duration) -> Result<PgEndpoint, StepError> {
    if ctx.params.kind == OperationKind::Drill {
        drill::clone_endpoint(ctx, timeout)
    } else {
        ctx.endpoint(&ctx.params.target, timeout)
    }
}

// ---------------------------------------------------------------- plan

pub(crate) async fn plan_step(ctx: &Ctx<'_>) -> StepResult {
    let report = make_plan(ctx.config, ctx.store, ctx.params).await;
    let standing = report.standing(ctx.params.accept_data_loss);
    if !standing.is_empty() {
        let overridable = standing.iter().all(|b| b.overridable);
        let text: Vec<String> = standing.iter().map(|b| b.message.clone()).collect();
        return Err(StepError::refused(text, overridable));
    }
    to_value(&report)
}

/// Reads both sides and the monitor's evidence; never fails (what cannot be
/// read becomes a blocker or an unknown).
pub(crate) async fn make_plan(config: &Config, store: &Store, p: &OperationParams) -> PlanReport {
    if p.kind == OperationKind::Rejoin {
        return crate::rejoin::make_plan(config, store, p).await;
    }
    if p.kind == OperationKind::Recover {
        return crate::recover::make_plan(config, store, p).await;
    }
    let service = config.service(&p.service);
    let targets = service
        .map(|s| s.targets)
        .unwrap_or_else(|| config.tiers.get(drctl_config::Tier::Hot));
    let mut blockers = Vec::new();
    let mut block = |code: &str, message: String, overridable: bool| {
        blockers.push(Blocker {
            code: code.into(),
            message,
            overridable,
        })
    };
    if p.source == p.target {
        block(
            "same_region",
            format!("source and target are both {}", p.source),
            false,
        );
    }
    let has_datastore = service.is_some_and(Service::has_datastore);
    let read = |region: String| async move {
        let timeout = if region == p.source {
            source_timeout(p, REACH_TIMEOUT)
        } else {
            REACH_TIMEOUT
        };
        read_state(service, &region, timeout).await
    };
    let (source_state, target_state) = if has_datastore {
        tokio::join!(read(p.source.clone()), read(p.target.clone()))
    } else {
        (Err("no datastore".into()), Err("no datastore".into()))
    };
    let mut expected_loss_us = None;
    let mut expected_loss_bytes = None;
    let mut basis = String::from("no datastore: nothing to lose");
    if has_datastore {
        match &target_state {
            Err(e) => block("target_unreachable", format!("target {}@{} is unreachable: {e}", p.cluster, p.target), false),
            Ok(t) if !t.in_recovery && source_state.as_ref().is_ok_and(|s| s.writable()) => block(
                "target_not_standby",
                format!("target {}@{} is already a writable primary while the source is too: two writable primaries, investigate before any failover", p.cluster, p.target),
                false,
            ),
            Ok(t) if !t.in_recovery => block(
                "target_not_standby",
                format!("target {}@{} is not a standby (it is already a primary)", p.cluster, p.target),
                false,
            ),
            Ok(_) => {}
        }
        if p.kind == OperationKind::Switchover {
            if let Err(e) = &source_state {
                block(
                    "source_unreachable",
                    format!(
                        "a switchover needs the source {}@{} reachable ({e}); use failover",
                        p.cluster, p.source
                    ),
                    false,
                );
            }
            basis = "switchover: the target catches up to the fenced source, zero loss".into();
            expected_loss_us = Some(0);
            expected_loss_bytes = Some(0);
        } else {
            // The monitor's latest reading for the target is the expected loss;
            // live positions give the bytes when both sides answer.
            let sample = store.latest_lag_samples().await.ok().and_then(|v| {
                v.into_iter()
                    .find(|s| s.service == p.service && s.standby_region == p.target)
            });
            if let (Ok(s), Ok(t)) = (&source_state, &target_state) {
                expected_loss_bytes = Some(s.lsn.bytes_after(t.lsn));
            } else if let Some(s) = &sample {
                expected_loss_bytes = s.byte_lag.map(|b| b.max(0) as u64);
            }
            let known = match (&source_state, &sample) {
                // The primary is gone: its last sighting bounds the loss.
                (Err(_), _) => lost_primary_bound(store, p, target_state.as_ref().ok()).await,
                (Ok(_), Some(s)) => s.rpo_exposure_us.map(|e| {
                    let age = (Utc::now() - s.sampled_at).num_milliseconds().max(0);
                    (
                        e,
                        format!(
                            "the monitor's exposure for {} {:.1} s ago",
                            p.target,
                            age as f64 / 1000.0
                        ),
                    )
                }),
                (Ok(_), None) => None,
            };
            match known {
                Some((e, why)) => {
                    expected_loss_us = Some(e);
                    basis = why;
                    if expected_loss_bytes == Some(0) {
                        expected_loss_us = Some(0);
                        basis = "live positions: the target has every byte the source wrote".into();
                    }
                    if let Some(loss) = expected_loss_us
                        .filter(|l| *l > plan::us(targets.rpo))
                        .filter(|_| p.kind == OperationKind::Failover)
                    {
                        block(
                            "data_loss",
                            format!(
                                "expected data loss {:.1} s exceeds the RPO target {:?}",
                                loss as f64 / 1e6,
                                targets.rpo
                            ),
                            true,
                        );
                    }
                }
                None => {
                    basis = "unknown: the monitor has no exposure figure for the target".into();
                    if source_state.is_err() && p.kind == OperationKind::Failover {
                        block(
                            "data_loss_unknown",
                            "the source is unreachable and the expected data loss is unknown"
                                .into(),
                            true,
                        );
                    }
                }
            }
        }
    }
    let hook = service.and_then(|s| s.failover.fence_hook.as_ref());
    if let (Err(e), None, true) = (&source_state, hook, has_datastore) {
        if p.kind == OperationKind::Failover && !p.accept_unfenced {
            block("unfenced_source", unfenced_message(p, e), false);
        }
    }
    let past = store.operations(500).await.unwrap_or_default();
    let fence = match (&source_state, hook) {
        _ if p.kind == OperationKind::Drill => {
            "none: a drill leaves production alone (a scratch clone of the target is promoted)"
                .to_string()
        }
        (Ok(_), _) if has_datastore => {
            "read-only (ALTER SYSTEM default_transaction_read_only) and terminate client sessions"
                .to_string()
        }
        (_, Some(h)) => format!("source unreachable: run the fence hook {}", h.join(" ")),
        _ if has_datastore && p.accept_unfenced => "none: the source is unreachable and has no fence hook; accepted by the operator (--accept-unfenced); drctl fences it if it returns"
            .to_string(),
        _ if has_datastore => "none: the source is unreachable and has no fence hook (only --accept-unfenced goes ahead)"
            .to_string(),
        _ => "none: no datastore to fence (DNS is the service's failover)".to_string(),
    };
    PlanReport {
        source_state: source_state.as_ref().ok().copied(),
        source_error: source_state.err().filter(|_| has_datastore),
        target_state: target_state.as_ref().ok().copied(),
        target_error: target_state.err().filter(|_| has_datastore),
        expected_loss_us,
        expected_loss_bytes,
        expected_loss_basis: basis,
        dns: plan::dns_flips(config, &p.members, &p.target, p.kind),
        fence,
        blockers,
        ..PlanReport::skeleton(p, targets, &past)
    }
}

/// How long the monitor may have been blind before a lost primary's last
/// sighting no longer bounds anything useful.
const LAST_SIGHTING_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The expected loss when the primary is gone, as an upper bound: it was
/// last seen by the monitor's newest sample with a figure; whatever it wrote
/// after that, until it failed (the detection time, else now), may be lost,
/// plus what the target still lacked then — unless the target has since
/// received everything the primary had at that sample.
async fn lost_primary_bound(
    store: &Store,
    p: &OperationParams,
    target: Option<&NodeState>,
) -> Option<(i64, String)> {
    let s = store
        .last_known_exposure(&p.service, &p.target)
        .await
        .ok()??;
    let end = p
        .detected_at_us
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or_else(Utc::now);
    if end - s.sampled_at > LAST_SIGHTING_MAX_AGE {
        return None;
    }
    let blind_us = (end - s.sampled_at)
        .num_microseconds()
        .unwrap_or(i64::MAX)
        .max(0);
    let caught_up = match (target, s.primary_lsn) {
        (Some(t), Some(l)) => t.lsn.0 >= l.max(0) as u64,
        _ => false,
    };
    let exposure = s.rpo_exposure_us.unwrap_or(0);
    let bound = if caught_up {
        blind_us
    } else {
        exposure + blind_us
    };
    Some((
        bound,
        format!(
            "at most: the primary was last seen {:.1} s before {} with {}; what it wrote after that is unknown",
            blind_us as f64 / 1e6,
            if p.detected_at_us.is_some() { "it was detected lost" } else { "now" },
            if caught_up {
                "everything up to then now on the target".to_string()
            } else {
                format!("{:.1} s not yet on the target", exposure as f64 / 1e6)
            }
        ),
    ))
}

// ---------------------------------------------------------------- fence

/// The `unfenced_source` blocker: the source cannot be fenced, so it may
/// still take writes when a new primary is announced.
fn unfenced_message(p: &OperationParams, error: &str) -> String {
    format!(
        "the source {}@{} is unreachable ({error}) and has no fence hook: nothing would stop it taking writes beside the new primary; set [services.failover] fence_hook, or pass --accept-unfenced once you know it is down",
        p.cluster, p.source
    )
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FenceOutput {
    pub reachable: bool,
    /// `read_only`, `standby` (nothing to fence), `hook`, `none`.
    pub method: String,
    pub report: Option<FenceReport>,
    pub hook: Option<HookRun>,
    /// Why the source could not be reached.
    pub unreachable: Option<String>,
    pub fenced_at: DateTime<Utc>,
}

async fn fence_source(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    let p = ctx.params;
    let reached = if service.has_datastore() {
        let ep = ctx.endpoint(&p.source, source_timeout(p, Duration::from_secs(5)))?;
        ctx.check_lease("fencing the source").await?;
        let r = ep.fence_read_only().await;
        ep.close().await;
        match r {
            Ok(report) => Ok(report),
            // Only a server that cannot be connected to at all is
            // "unreachable". One that answered and refused or failed the
            // fence (permission denied, a statement timeout) is up and may
            // still take writes: never announce another primary beside it.
            Err(e) if e.is_connection_failure() => Err(e.to_string()),
            Err(e) => {
                return Err(StepError::stop(format!(
                    "cannot fence the source {}@{}: {e}; it answers, so it may still take writes: fix the cause (its role's privileges, its load) and resume",
                    p.cluster, p.source
                )))
            }
        }
    } else {
        Err("a service without a datastore has nothing to fence".to_string())
    };
    let mut out = FenceOutput {
        reachable: reached.is_ok(),
        method: String::new(),
        report: None,
        hook: None,
        unreachable: None,
        fenced_at: Utc::now(),
    };
    match reached {
        Ok(report) => {
            out.method = if report.was_standby {
                "standby"
            } else {
                "read_only"
            }
            .into();
            out.report = Some(report);
        }
        Err(e) => {
            if p.kind == OperationKind::Switchover && service.has_datastore() {
                return Err(StepError::abandon(format!(
                    "cannot fence the source for a switchover ({e}); nothing was changed. Use `drctl failover` if the source region is lost"
                )));
            }
            out.unreachable = Some(e.clone());
            match &service.failover.fence_hook {
                Some(argv) => {
                    ctx.check_lease("running the fence hook").await?;
                    let run = hook::run(
                        argv,
                        &service.name,
                        &p.source,
                        ctx.op_id,
                        service.failover.fence_hook_timeout,
                    )
                    .await
                    .map_err(StepError::stop)?;
                    out.method = "hook".into();
                    out.hook = Some(run);
                }
                // Nothing fences a server drctl cannot reach: only an
                // operator's explicit override goes on without a fence.
                // (A cold-tier recovery keeps its own plan for now.)
                None if service.has_datastore()
                    && p.kind == OperationKind::Failover
                    && !p.accept_unfenced =>
                {
                    return Err(StepError::refused(vec![unfenced_message(p, &e)], false));
                }
                None => out.method = "none".into(),
            }
        }
    }
    to_value(&out)
}

// ---------------------------------------------------------------- position

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SourcePosition {
    /// `fenced_source`, `last_sample`, `unknown`.
    pub basis: String,
    pub source_lsn: Option<Lsn>,
    /// The source's clock at that position (µs).
    pub source_time_us: Option<i64>,
    /// When the monitor took the sample (`last_sample` only).
    pub sampled_at: Option<DateTime<Utc>>,
    /// The target's durable position now.
    pub target_lsn: Option<Lsn>,
}

async fn source_position(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return skipped("no datastore");
    }
    let p = ctx.params;
    let fence: FenceOutput = ctx.output(Step::FenceSource)?;
    let target = ctx.endpoint(&p.target, REACH_TIMEOUT)?;
    let target_state = target.node_state().await.ok();
    target.close().await;
    let mut out = SourcePosition {
        basis: "unknown".into(),
        source_lsn: None,
        source_time_us: None,
        sampled_at: None,
        target_lsn: target_state.map(|t| t.lsn),
    };
    if fence.reachable {
        let ep = ctx.endpoint(&p.source, REACH_TIMEOUT)?;
        let state = ep.node_state().await;
        ep.close().await;
        match state {
            Ok(s) if !s.in_recovery => {
                out.basis = "fenced_source".into();
                out.source_lsn = Some(s.lsn);
                out.source_time_us = Some(s.now_us);
                return to_value(&out);
            }
            // Lost between the fence and now: fall back on the monitor.
            _ => {}
        }
    }
    let since = ctx.op_started - chrono::TimeDelta::hours(1);
    let points = ctx
        .store
        .primary_points(&p.service, since)
        .await
        .map_err(|e| StepError::retry(e.to_string()))?;
    if let Some((t, l)) = points.iter().max_by_key(|(t, l)| (*l, *t)) {
        out.basis = "last_sample".into();
        out.source_lsn = Some(Lsn(*l as u64));
        out.source_time_us = Some(*t);
        out.sampled_at = DateTime::from_timestamp_micros(*t);
    }
    to_value(&out)
}

// ---------------------------------------------------------------- catch up

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CatchUp {
    pub required: bool,
    pub reached: bool,
    pub waited_ms: u64,
    pub target_lsn: Option<Lsn>,
    pub source_lsn: Option<Lsn>,
}

async fn catch_up(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return skipped("no datastore");
    }
    let p = ctx.params;
    let pos: SourcePosition = ctx.output(Step::SourcePosition)?;
    let (required, limit) = match (p.kind, pos.basis.as_str()) {
        (OperationKind::Switchover, _) => (true, SWITCHOVER_CATCH_UP),
        (OperationKind::Failover, "fenced_source") => (false, FAILOVER_CATCH_UP),
        _ => return skipped("the source is gone: nothing more can arrive"),
    };
    let Some(goal) = pos.source_lsn else {
        return skipped("the source's position is unknown");
    };
    let target = ctx.endpoint(&p.target, REACH_TIMEOUT)?;
    let started = Instant::now();
    let mut last = None;
    let reached = loop {
        match target.node_state().await {
            Ok(s) if !s.in_recovery => break true, // promoted by an earlier attempt
            Ok(s) => {
                last = Some(s.lsn);
                if s.lsn >= goal {
                    break true;
                }
            }
            Err(_) => {}
        }
        if started.elapsed() > limit {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    target.close().await;
    if !reached && required {
        // Give the source back rather than leave the service without a
        // writable primary: the switchover is abandoned, nothing changed.
        let source = ctx.endpoint(&p.source, REACH_TIMEOUT)?;
        ctx.check_lease("lifting the source's fence").await?;
        let undo = source.unfence().await;
        source.close().await;
        return Err(StepError::abandon(format!(
            "the target did not receive the source's final position {goal} within {limit:?} (it has {}); {}",
            last.map_or("nothing readable".to_string(), |l| l.to_string()),
            match undo {
                Ok(()) => "the source's fence was lifted and it is writable again".to_string(),
                Err(e) => format!("lifting the source's fence FAILED ({e}): run `ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();` on it"),
            }
        )));
    }
    to_value(&CatchUp {
        required,
        reached,
        waited_ms: started.elapsed().as_millis() as u64,
        target_lsn: last,
        source_lsn: Some(goal),
    })
}

// ---------------------------------------------------------------- promote

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Promoted {
    pub report: PromoteReport,
    /// What the target had when it stopped replaying: the last WAL the new
    /// history keeps from the old one.
    pub final_lsn: Option<Lsn>,
}

async fn promote_target(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    let p = ctx.params;
    if !service.has_datastore() {
        return skipped("no datastore");
    }
    let target = promoted_endpoint(ctx, PROMOTE_WAIT + Duration::from_secs(5))?;
    let before = target
        .node_state()
        .await
        .map_err(|e| StepError::retry(e.to_string()))?;
    ctx.check_lease("promoting the target").await?;
    let report = target.promote(PROMOTE_WAIT).await;
    target.close().await;
    let report = report.map_err(|e| StepError::retry(e.to_string()))?;
    if p.kind == OperationKind::Drill {
        return to_value(&Promoted {
            report,
            final_lsn: Some(before.lsn),
        });
    }
    ctx.store
        .set_cluster_primary(ctx.lease, &p.cluster, &p.target, ctx.op_id, Utc::now())
        .await
        .map_err(|e| StepError::stop(e.to_string()))?;
    let final_lsn = if before.in_recovery {
        Some(before.lsn)
    } else {
        // Promoted by an attempt that died before journaling: the position
        // read before the catch-up is the best record of what it had.
        ctx.output::<SourcePosition>(Step::SourcePosition)
            .ok()
            .and_then(|s| s.target_lsn)
    };
    to_value(&Promoted { report, final_lsn })
}

// ---------------------------------------------------------------- probe

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Probe {
    pub written_at_us: i64,
    pub lsn: Lsn,
}

async fn write_probe(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return skipped("no datastore");
    }
    let target = promoted_endpoint(ctx, REACH_TIMEOUT)?;
    ctx.check_lease("writing the probe").await?;
    let r = target.write_probe(ctx.op_id).await;
    target.close().await;
    let (at, lsn) = r.map_err(|e| StepError::retry(e.to_string()))?;
    to_value(&Probe {
        written_at_us: at,
        lsn,
    })
}

// ---------------------------------------------------------------- DNS

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Flip {
    pub service: String,
    pub provider: String,
    pub record: String,
    pub rtype: String,
    pub value: String,
    pub change_id: Option<String>,
    pub took_ms: u64,
}

/// The DNS records an operation flips: one per member with `[services.dns]`.
/// A member service, its DNS provider and the record as the target wants it.
type Flipped = (String, Arc<dyn DnsProvider>, DnsRecord);

pub(crate) fn dns_records(ctx: &Ctx<'_>) -> Result<Vec<Flipped>, StepError> {
    let mut out = Vec::new();
    for member in &ctx.params.members {
        let Some(service) = ctx.config.service(member) else {
            continue;
        };
        let Some(dns) = &service.dns else { continue };
        let value = dns.target(&ctx.params.target).ok_or_else(|| {
            StepError::abandon(format!(
                "service {member} has no DNS target for region {}",
                ctx.params.target
            ))
        })?;
        let provider_config = ctx.config.dns_provider(&dns.provider).ok_or_else(|| {
            StepError::abandon(format!(
                "DNS provider {} is no longer in the config",
                dns.provider
            ))
        })?;
        let provider =
            drctl_dns::provider(provider_config).map_err(|e| StepError::stop(e.to_string()))?;
        out.push((
            member.clone(),
            provider,
            DnsRecord {
                name: if ctx.params.kind == OperationKind::Drill {
                    dns.drill_record.clone()
                } else {
                    dns.record.clone()
                },
                rtype: dns.rtype,
                ttl: dns.ttl.as_secs().max(1) as u32,
                values: vec![value.to_string()],
            },
        ));
    }
    Ok(out)
}

pub(crate) fn dns_error(e: drctl_dns::DnsError) -> StepError {
    if e.is_retryable() {
        StepError::retry(e.to_string())
    } else {
        StepError::stop(e.to_string())
    }
}

async fn dns_flip(ctx: &Ctx<'_>) -> StepResult {
    let records = dns_records(ctx)?;
    if records.is_empty() {
        return skipped("no service of the cluster has [services.dns]");
    }
    let mut flips = Vec::new();
    for (service, provider, record) in records {
        let expected = expected_dns_value(ctx, &service)?;
        ctx.check_lease("flipping DNS").await?;
        let applied = match &expected {
            // Conditional: only from the source's value (or already the
            // target's). A driver that slept through a takeover and a
            // switchback finds the record changed and writes nothing.
            Some(old) => match provider.upsert_if(&record, Some(old)).await {
                // A record that does not exist yet (a new zone, a provider
                // rebuilt empty) names no newer primary: create it, again
                // only if it is still absent.
                Err(conflict @ drctl_dns::DnsError::Conflict { .. }) => provider
                    .upsert_if(&record, None)
                    .await
                    .map_err(|e| match e {
                        drctl_dns::DnsError::Conflict { .. } => conflict,
                        other => other,
                    }),
                other => other,
            },
            None => provider.upsert(&record).await,
        }
        .map_err(dns_error)?;
        flips.push(Flip {
            service,
            provider: provider.name().to_string(),
            record: record.name.clone(),
            rtype: record.rtype.as_str().to_string(),
            value: record.values.join(","),
            change_id: applied.change_id,
            took_ms: applied.took.as_millis() as u64,
        });
    }
    to_value(&flips)
}

/// The value a flip expects the record to hold now: the source region's
/// target. A drill's record is its own (no condition); so is a recovery's,
/// whose record may hold anything after a long outage.
fn expected_dns_value(ctx: &Ctx<'_>, member: &str) -> Result<Option<Vec<String>>, StepError> {
    if !matches!(
        ctx.params.kind,
        OperationKind::Failover | OperationKind::Switchover
    ) {
        return Ok(None);
    }
    let dns = ctx.config.service(member).and_then(|s| s.dns.as_ref());
    let value = dns
        .and_then(|d| d.target(&ctx.params.source))
        .ok_or_else(|| {
            StepError::abandon(format!(
                "service {member} has no DNS target for the source region {}",
                ctx.params.source
            ))
        })?;
    Ok(Some(vec![value.to_string()]))
}

async fn dns_confirm(ctx: &Ctx<'_>) -> StepResult {
    if is_skipped(ctx.outputs.get(&Step::DnsFlip)) {
        return skipped("no DNS flip");
    }
    let mut confirmed = Vec::new();
    for (service, provider, record) in dns_records(ctx)? {
        let took = drctl_dns::confirm(provider.as_ref(), &record, DNS_CONFIRM)
            .await
            .map_err(dns_error)?;
        confirmed.push(serde_json::json!({
            "service": service,
            "record": record.name,
            "values": record.values,
            "took_ms": took.as_millis() as u64,
        }));
    }
    to_value(&confirmed)
}

// ---------------------------------------------------------------- health

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Health {
    pub target: Option<NodeState>,
    pub source: Option<NodeState>,
    pub source_error: Option<String>,
    /// The source was writable again and was fenced once more.
    pub refenced_source: bool,
}

async fn service_health(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return skipped("no datastore: DNS is the service's failover");
    }
    let p = ctx.params;
    let target = ctx.endpoint(&p.target, REACH_TIMEOUT)?;
    let t = target.node_state().await;
    target.close().await;
    let t = t.map_err(|e| StepError::retry(e.to_string()))?;
    if !t.writable() {
        return Err(StepError::retry(format!(
            "the target {}@{} is not a writable primary (in recovery: {}, read-only: {})",
            p.cluster, p.target, t.in_recovery, t.read_only
        )));
    }
    // Exactly one writable primary: if the source answers and takes writes
    // (restarted, or unfenced by hand), fence it now.
    let source = ctx.endpoint(&p.source, REACH_TIMEOUT)?;
    let mut out = Health {
        target: Some(t),
        source: None,
        source_error: None,
        refenced_source: false,
    };
    match source.node_state().await {
        Ok(s) if s.writable() => {
            ctx.check_lease("fencing the old primary again").await?;
            source.fence_read_only().await.map_err(|e| {
                StepError::retry(format!(
                    "the old primary is writable and fencing it failed: {e}"
                ))
            })?;
            out.refenced_source = true;
            out.source = source.node_state().await.ok();
        }
        Ok(s) => out.source = Some(s),
        Err(e) => out.source_error = Some(e.to_string()),
    }
    source.close().await;
    to_value(&out)
}

// ---------------------------------------------------------------- record

async fn record(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    let p = ctx.params;
    let targets = service.targets;
    let (mut rpo_bytes, mut rpo_us, mut lower, mut basis) = (0u64, 0i64, false, "none".to_string());
    let mut rpo_heartbeats = 0u64;
    if p.kind == OperationKind::Drill {
        // Nothing was lost; what a real failover would have lost at that
        // moment is the monitor's exposure the plan read.
        let plan: PlanReport = ctx.output(Step::Plan)?;
        rpo_us = plan.expected_loss_us.unwrap_or(0);
        rpo_bytes = plan.expected_loss_bytes.unwrap_or(0);
        lower = plan.expected_loss_us.is_none();
        basis = format!("drill: {}", plan.expected_loss_basis);
    } else if service.has_datastore() {
        let pos: SourcePosition = ctx.output(Step::SourcePosition)?;
        let promoted: Promoted = ctx.output(Step::PromoteTarget)?;
        basis = pos.basis.clone();
        if let (Some(src), Some(t), Some(fin)) =
            (pos.source_lsn, pos.source_time_us, promoted.final_lsn)
        {
            rpo_bytes = src.bytes_after(fin);
            if rpo_bytes > 0 {
                let mut points: Vec<HeartbeatPoint> = ctx
                    .store
                    .primary_points(&p.service, ctx.op_started - chrono::TimeDelta::hours(1))
                    .await
                    .map_err(|e| StepError::retry(e.to_string()))?
                    .into_iter()
                    .map(|(t, l)| HeartbeatPoint {
                        primary_time_us: t,
                        lsn: Lsn(l.max(0) as u64),
                    })
                    .collect();
                // The primary's sampled positions past the target's final
                // one: each was a heartbeat row the target never received.
                rpo_heartbeats = points
                    .iter()
                    .filter(|pt| pt.lsn > fin && pt.lsn <= src)
                    .count() as u64;
                // The replicated heartbeat rows the new primary carries.
                let target = ctx.endpoint(&p.target, REACH_TIMEOUT)?;
                if let Ok(hb) = target.load_heartbeats(Duration::from_secs(3600)).await {
                    points.extend(hb);
                }
                target.close().await;
                let last = HeartbeatPoint {
                    primary_time_us: t,
                    lsn: src,
                };
                (rpo_us, lower) = loss_window(&points, fin, last);
            }
        } else {
            lower = true;
            basis = format!("{basis} (positions unknown: no figure)");
        }
    }
    let end = |s: Step| ctx.timings.get(&s).and_then(|(_, e)| *e);
    let start = |s: Step| ctx.timings.get(&s).map(|(b, _)| *b);
    let trigger = p
        .detected_at_us
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or(ctx.op_started);
    let available = end(Step::ServiceHealth)
        .into_iter()
        .chain(end(Step::DnsConfirm))
        .chain(end(Step::WriteProbe))
        .max()
        .unwrap_or_else(Utc::now);
    let rto_ms = (available - trigger).num_milliseconds().max(0) as u64;
    let write_outage_ms = start(Step::FenceSource)
        .filter(|_| {
            ctx.output::<FenceOutput>(Step::FenceSource)
                .is_ok_and(|f| f.reachable)
        })
        .map(|f| (available - f).num_milliseconds().max(0) as u64);
    let steps_ms = ctx
        .timings
        .iter()
        .filter_map(|(s, (b, e))| {
            e.map(|e| {
                (
                    s.as_str().to_string(),
                    (e - *b).num_milliseconds().max(0) as u64,
                )
            })
        })
        .collect();
    let rpo_target_us = plan::us(targets.rpo);
    let rto_target_ms = targets.rto.as_millis() as u64;
    // The source was lost: its writes after the monitor's last sample are
    // unknowable, so the figure is a minimum; the plan's bound (last
    // sighting until detection) is the maximum.
    let mut rpo_upper_us = None;
    if basis == "last_sample" {
        lower = true;
        rpo_upper_us = ctx
            .output::<PlanReport>(Step::Plan)
            .ok()
            .and_then(|p| p.expected_loss_us)
            .map(|u| u.max(rpo_us));
    }
    let rpo_met = match rpo_upper_us {
        Some(upper) => upper <= rpo_target_us,
        None => rpo_us <= rpo_target_us && !lower,
    };
    to_value(&Measured {
        rpo_bytes,
        rpo_us,
        rpo_heartbeats,
        rpo_lower_bound: lower,
        rpo_upper_us,
        rpo_basis: basis,
        rto_ms,
        rto_from: if p.detected_at_us.is_some() {
            "detection"
        } else {
            "request"
        }
        .into(),
        write_outage_ms,
        rpo_target_us,
        rto_target_ms,
        rpo_met,
        rto_met: rto_ms <= rto_target_ms,
        steps_ms,
    })
}
