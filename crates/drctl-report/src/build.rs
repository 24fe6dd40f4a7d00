//! The report's computation: the period cut into time slots per service,
//! each judged against the RPO target, breaches and evidence gaps found
//! in them, and the records (operations, backups, restore tests) of the
//! period read from the store. How the figures are made is in the crate's
//! doc; the renderers are in [`crate::render`].

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use drctl_config::{Config, Service};
use drctl_store::states::{RestoreTestStatus, VerificationStatus};
use drctl_store::{LagSample, Store, StoreError};

use crate::*;

fn secs(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// One time slot of the exposure timeline: `[start, end)`, with the
/// exposure measured in it (`None`: unmeasured).
struct Slot {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    exposure_s: Option<f64>,
}

/// Breaches, compliance and `no_samples` gaps from a timeline of slots.
fn judge_slots(
    slots: &[Slot],
    target_s: f64,
    to: DateTime<Utc>,
    basis: String,
) -> (ReportRpo, Vec<Breach>) {
    let mut rpo = ReportRpo {
        basis,
        ..Default::default()
    };
    // Sums in whole microseconds: a percentage of sums of floats would
    // print 99.99999999999999 for a service never out of its target.
    let (mut measured, mut compliant, mut breaching, mut unmeasured) = (0i64, 0i64, 0i64, 0i64);
    let mut breaches: Vec<Breach> = Vec::new();
    let mut open: Option<Breach> = None;
    for s in slots {
        let len = (s.end - s.start).num_microseconds().unwrap_or(0);
        match s.exposure_s {
            None => {
                unmeasured += len;
                if let Some(b) = open.take() {
                    breaches.push(b);
                }
            }
            Some(e) => {
                measured += len;
                rpo.worst_exposure_s = Some(rpo.worst_exposure_s.map_or(e, |w: f64| w.max(e)));
                if e > target_s {
                    breaching += len;
                    let b = open.get_or_insert(Breach {
                        start: s.start,
                        end: Some(s.end),
                        duration_s: 0.0,
                        worst_exposure_s: Some(e),
                    });
                    b.end = Some(s.end);
                    b.duration_s = secs(s.end - b.start);
                    b.worst_exposure_s = Some(b.worst_exposure_s.unwrap_or(e).max(e));
                } else {
                    compliant += len;
                    if let Some(b) = open.take() {
                        breaches.push(b);
                    }
                }
            }
        }
    }
    if let Some(mut b) = open.take() {
        // Still breaching at the end of the period: it has not ended.
        if b.end.is_some_and(|e| e >= to) {
            b.end = None;
        }
        breaches.push(b);
    }
    rpo.measured_s = measured as f64 / 1e6;
    rpo.compliant_s = compliant as f64 / 1e6;
    rpo.breach_s = breaching as f64 / 1e6;
    rpo.unmeasured_s = unmeasured as f64 / 1e6;
    rpo.compliance_pct = (measured > 0).then(|| {
        // Rounded to a millionth of a percent, and 100 only when no
        // microsecond was out of target.
        let pct = (compliant as f64 * 1e8 / measured as f64).floor() / 1e6;
        if compliant == measured {
            100.0
        } else {
            pct.min(99.999999)
        }
    });
    (rpo, breaches)
}

/// Unmeasured stretches of slots, merged, as `no_samples` gaps.
fn sample_gaps(slots: &[Slot], min: Duration) -> Vec<EvidenceGap> {
    let mut gaps: Vec<EvidenceGap> = Vec::new();
    let mut open: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    let close = |g: Option<(DateTime<Utc>, DateTime<Utc>)>, gaps: &mut Vec<EvidenceGap>| {
        if let Some((start, end)) = g {
            let d = secs(end - start);
            if d >= min.as_secs_f64() {
                gaps.push(EvidenceGap {
                    kind: "no_samples".into(),
                    start,
                    end: Some(end),
                    duration_s: d,
                    detail: "no lag sample: the daemon was not running, could not reach the databases or could not store".into(),
                });
            }
        }
    };
    for s in slots {
        if s.exposure_s.is_none() {
            open = Some(match open {
                Some((start, _)) => (start, s.end),
                None => (s.start, s.end),
            });
        } else {
            close(open.take(), &mut gaps);
        }
    }
    close(open.take(), &mut gaps);
    gaps
}

/// The exposure timeline of a replicated service from its lag samples.
///
/// Samples taken within half an interval of each other are one tick (one
/// per standby); a tick's exposure is its best standby's. A tick covers the
/// time until the next one, unless that is more than three intervals away:
/// then it covers one interval and the rest is unmeasured.
///
/// The first breaching tick after a compliant one starts its slot earlier,
/// where the breach provably began: the oldest missing commit of a sample
/// with exposure `e` at `t` was already missing at every moment since
/// `t - e`, so exposure passed the target at `t - e + target` at the latest.
/// A breach's end is the first tick seen back inside the target (the
/// moment it really ended is somewhere before: the report errs long).
fn replicated_slots(
    samples: &[LagSample],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Duration,
    target_s: f64,
) -> Vec<Slot> {
    let step = TimeDelta::from_std(step).unwrap_or(TimeDelta::seconds(1));
    let mut sorted: Vec<&LagSample> = samples
        .iter()
        .filter(|s| s.sampled_at >= from && s.sampled_at < to)
        .collect();
    sorted.sort_by_key(|s| s.sampled_at);
    let mut ticks: Vec<(DateTime<Utc>, Option<f64>)> = Vec::new();
    for s in sorted {
        let e = s.rpo_exposure_us.map(|us| us as f64 / 1e6);
        match ticks.last_mut() {
            Some((t, best)) if s.sampled_at.signed_duration_since(*t) < step / 2 => {
                if let Some(e) = e {
                    *best = Some(best.map_or(e, |b: f64| b.min(e)));
                }
            }
            _ => ticks.push((s.sampled_at, e)),
        }
    }
    let mut slots = Vec::new();
    let mut cursor = from;
    let mut previous: Option<f64> = None;
    for (i, (t, e)) in ticks.iter().enumerate() {
        let mut start = *t;
        if let (Some(e), Some(prev)) = (e, previous) {
            if *e > target_s && prev <= target_s {
                // Checked: an absurd exposure read from the store must not panic the API.
                let began = t
                    .checked_sub_signed(TimeDelta::milliseconds(((e - target_s) * 1000.0) as i64))
                    .unwrap_or(from);
                // The compliant tick before was already breaching from `began`.
                if let Some(last) = slots
                    .last_mut()
                    .filter(|l: &&mut Slot| l.start < began && began < l.end)
                {
                    last.end = began;
                    cursor = began;
                }
                start = began.max(cursor);
            }
        }
        if start > cursor {
            slots.push(Slot {
                start: cursor,
                end: start,
                exposure_s: None,
            });
        }
        let next = ticks.get(i + 1).map(|(n, _)| *n).unwrap_or(to);
        let end = if next - *t > step * 3 {
            *t + step
        } else {
            next
        }
        .min(to);
        if end > start {
            slots.push(Slot {
                start,
                end,
                exposure_s: *e,
            });
        }
        cursor = end.max(cursor);
        previous = *e;
    }
    if cursor < to {
        slots.push(Slot {
            start: cursor,
            end: to,
            exposure_s: None,
        });
    }
    slots
}

/// The exposure timeline of a cold service from its verified backups: at
/// each moment, the age of the newest backup verified by then. Slots are
/// cut where the newest verified backup changes and where the age crosses
/// the target, so breaches start and end at the exact moment.
fn cold_slots(
    verified: &[(DateTime<Utc>, DateTime<Utc>)], // (ended_at, verified_at)
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    target: TimeDelta,
) -> Vec<Slot> {
    let mut cuts: Vec<DateTime<Utc>> = vec![from, to];
    for (ended, verified_at) in verified {
        cuts.push(*verified_at);
        cuts.push(
            ended
                .checked_add_signed(target)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        );
    }
    cuts.retain(|t| *t >= from && *t <= to);
    cuts.sort();
    cuts.dedup();
    let newest_end_by = |t: DateTime<Utc>| {
        verified
            .iter()
            .filter(|(_, v)| *v <= t)
            .map(|(e, _)| *e)
            .max()
    };
    cuts.windows(2)
        .map(|w| {
            let (start, end) = (w[0], w[1]);
            // The worst moment of a slot is its end (age only grows until
            // a new backup is verified, which starts a new slot).
            let probe = end - TimeDelta::microseconds(1);
            let exposure_s = newest_end_by(start).map(|e| secs(probe.max(start) - e).max(0.0));
            Slot {
                start,
                end,
                exposure_s,
            }
        })
        .collect()
}

/// Stretches with no fresh proof: from `proofs` (times), each proof
/// covering `every` after it.
fn proof_gaps(
    proofs: &[DateTime<Utc>],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    every: TimeDelta,
    what: &str,
) -> Vec<EvidenceGap> {
    let mut gaps = Vec::new();
    let mut sorted: Vec<DateTime<Utc>> = proofs.to_vec();
    sorted.sort();
    // Checked: a proof covers "for ever" rather than panicking at the end of time.
    let covered = |p: DateTime<Utc>| {
        p.checked_add_signed(every)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    let mut covered_until = sorted
        .iter()
        .filter(|p| **p <= from)
        .max()
        .map(|p| covered(*p))
        .unwrap_or(from);
    let mut push = |start: DateTime<Utc>, end: Option<DateTime<Utc>>| {
        let until = end.unwrap_or(to);
        if until > start {
            gaps.push(EvidenceGap {
                kind: "proof_overdue".into(),
                start,
                end,
                duration_s: secs(until - start),
                detail: format!(
                    "no {what} within the required {}",
                    drctl_config::format_secs(secs(every))
                ),
            });
        }
    };
    for p in sorted.iter().filter(|p| **p > from && **p <= to) {
        if *p > covered_until {
            push(covered_until, Some(*p));
        }
        covered_until = covered_until.max(covered(*p));
    }
    if covered_until < to {
        push(covered_until, None);
    }
    gaps
}

fn result_f64(result: &Option<String>, key: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(result.as_deref()?).ok()?;
    v.get(key)?.as_f64()
}

fn result_bool(result: &Option<String>, key: &str) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_str(result.as_deref()?).ok()?;
    v.get(key)?.as_bool()
}

/// Builds the report for `[from, to)` from the store.
pub async fn build(
    config: &Config,
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let operations = store.operations(100_000).await?;
    let mut services = Vec::new();
    for svc in &config.services {
        services.push(service_report(config, store, svc, &operations, from, to).await?);
    }
    let summary = ReportSummary {
        services: services.len(),
        without_findings: services
            .iter()
            .filter(|s| s.breaches.is_empty() && s.evidence_gaps.is_empty())
            .count(),
        breaches: services.iter().map(|s| s.breaches.len()).sum(),
        breach_s: services.iter().map(|s| s.rpo.breach_s).sum(),
        operations: services.iter().map(|s| s.operations.len()).sum(),
        evidence_gaps: services.iter().map(|s| s.evidence_gaps.len()).sum(),
    };
    Ok(Report {
        generated_at: Utc::now(),
        from,
        to,
        summary,
        services,
        note: None,
    })
}

async fn service_report(
    config: &Config,
    store: &Store,
    svc: &Service,
    operations: &[drctl_store::OperationRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<ServiceReport, StoreError> {
    let target_s = svc.targets.rpo.as_secs_f64();
    let every = TimeDelta::from_std(svc.targets.evidence_every).unwrap_or(TimeDelta::MAX);
    let rto_target_ms = svc.targets.rto.as_millis() as f64;
    let backups = store.backups(Some(&svc.name), 100_000).await?;
    let restore_tests = store.restore_tests(Some(&svc.name), 100_000).await?;
    let in_period = |t: DateTime<Utc>| t >= from && t < to;

    let interval = config.monitor.interval;
    let (rpo, breaches, mut gaps) = if !svc.has_datastore() {
        let rpo = ReportRpo {
            measured_s: secs(to - from),
            compliant_s: secs(to - from),
            compliance_pct: Some(100.0),
            worst_exposure_s: Some(0.0),
            basis: "no datastore: nothing to lose".into(),
            ..Default::default()
        };
        (rpo, Vec::new(), Vec::new())
    } else if svc.tier.is_replicated() {
        // Raw samples for the newest hour only; per-minute worst values
        // before it: rollups, then the raw samples not rolled up yet,
        // folded per minute by the store (one row a minute, not one a
        // sample, crosses to the API).
        let raw_window = TimeDelta::from_std(RAW_WINDOW).unwrap_or(TimeDelta::hours(1));
        let raw_from = to.checked_sub_signed(raw_window).unwrap_or(from).max(from);
        let raw = store
            .lag_samples(&svc.name, raw_from, Some(to), RAW_ROW_LIMIT)
            .await?;
        let mut slots = Vec::new();
        if raw_from > from {
            let rollups = store.lag_rollups(&svc.name, from, Some(raw_from)).await?;
            let mut minutes: Vec<LagSample> = rollups
                .iter()
                .map(|r| {
                    let mut s =
                        LagSample::bare(&r.service, &r.standby_region, r.minute, r.exposure_max_us);
                    s.byte_lag = r.byte_lag_max;
                    s
                })
                .collect();
            let folded_until = rollups
                .last()
                .map(|r| {
                    r.minute
                        .checked_add_signed(TimeDelta::minutes(1))
                        .unwrap_or(r.minute)
                })
                .unwrap_or(from)
                .max(from);
            if folded_until < raw_from {
                minutes.extend(
                    store
                        .lag_buckets(
                            &svc.name,
                            folded_until,
                            Some(raw_from),
                            60_000_000,
                            MINUTE_ROW_LIMIT,
                        )
                        .await?
                        .into_iter()
                        // A bucket starts on the minute, maybe before the stretch.
                        .map(|mut s| {
                            s.sampled_at = s.sampled_at.max(folded_until);
                            s
                        }),
                );
            }
            slots.extend(replicated_slots(
                &minutes,
                from,
                raw_from,
                Duration::from_secs(60),
                target_s,
            ));
        }
        slots.extend(replicated_slots(&raw, raw_from, to, interval, target_s));
        let basis = format!(
            "lag samples every {} (per-minute worst before {}), best standby; breaching while exposure is above the target, from the moment it provably passed it until a sample is back inside",
            drctl_config::format_secs(interval.as_secs_f64()),
            raw_from.format("%Y-%m-%d %H:%M:%SZ")
        );
        let (rpo, breaches) = judge_slots(&slots, target_s, to, basis);
        let gaps = sample_gaps(&slots, interval * 3);
        (rpo, breaches, gaps)
    } else {
        let verified: Vec<(DateTime<Utc>, DateTime<Utc>)> = backups
            .iter()
            .filter(|b| b.verification == Some(VerificationStatus::Verified))
            .filter_map(|b| Some((b.ended_at?, b.verified_at?)))
            .collect();
        let slots = cold_slots(
            &verified,
            from,
            to,
            TimeDelta::from_std(svc.targets.rpo).unwrap_or(TimeDelta::MAX),
        );
        let basis = "age of the newest verified backup at each moment".to_string();
        let (rpo, breaches) = judge_slots(&slots, target_s, to, basis);
        (rpo, breaches, Vec::new())
    };

    let ops: Vec<OperationEntry> = operations
        .iter()
        .filter(|o| {
            in_period(o.started_at)
                && (o.service.as_deref() == Some(svc.name.as_str())
                    || (o.target.as_deref() == Some(svc.cluster.as_str()) && o.kind.is_journaled()))
        })
        .map(|o| OperationEntry {
            id: o.id.clone(),
            kind: o.kind.to_string(),
            status: o.status.to_string(),
            started_at: o.started_at,
            ended_at: o.ended_at,
            rpo_s: result_f64(&o.result, "rpo_us").map(|u| u / 1e6),
            rpo_met: result_bool(&o.result, "rpo_met"),
            rto_s: result_f64(&o.result, "rto_ms").map(|m| m / 1e3),
            rto_met: result_bool(&o.result, "rto_met"),
            error: o.error.clone(),
        })
        .collect();

    let proofs: Vec<DateTime<Utc>> = if svc.tier.is_replicated() {
        operations
            .iter()
            .filter(|o| {
                o.status == drctl_store::states::OpStatus::Succeeded
                    && o.target.as_deref() == Some(svc.cluster.as_str())
                    && o.kind.moves_a_service()
            })
            .filter_map(|o| o.ended_at)
            .collect()
    } else {
        restore_tests
            .iter()
            .filter(|t| t.status == RestoreTestStatus::Passed)
            .filter_map(|t| t.ended_at)
            .collect()
    };
    if svc.has_datastore() {
        let what = if svc.tier.is_replicated() {
            "drill"
        } else {
            "passed restore test"
        };
        gaps.extend(proof_gaps(&proofs, from, to, every, what));
    }
    gaps.sort_by_key(|g| g.start);

    Ok(ServiceReport {
        service: svc.name.clone(),
        tier: svc.tier.to_string(),
        rpo_target_s: target_s,
        rto_target_s: svc.targets.rto.as_secs_f64(),
        evidence_every_s: svc.targets.evidence_every.as_secs_f64(),
        rpo,
        breaches,
        operations: ops,
        backups: backups
            .iter()
            .filter(|b| in_period(b.started_at))
            .map(|b| BackupEntry {
                id: b.id.clone(),
                status: b.status.to_string(),
                started_at: b.started_at,
                ended_at: b.ended_at,
                stored_bytes: b.stored_bytes,
                verification: b.verification.map(|v| v.to_string()),
                verified_at: b.verified_at,
            })
            .collect(),
        restore_tests: restore_tests
            .iter()
            .filter(|t| in_period(t.started_at))
            .map(|t| RestoreTestEntry {
                id: t.id.clone(),
                backup_id: t.backup_id.clone(),
                status: t.status.to_string(),
                ended_at: t.ended_at,
                time_to_ready_s: drctl_config::secs_from_us(t.time_to_ready_us),
                rto_met: t
                    .time_to_ready_us
                    .map(|us| (us as f64 / 1e3) <= rto_target_ms),
            })
            .collect(),
        evidence_gaps: gaps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_breach_in_the_samples_has_its_start_end_and_worst() {
        let slots: Vec<Slot> = [0.1, 0.2, 7.0, 9.0, 3.0, 0.1]
            .iter()
            .enumerate()
            .map(|(i, e)| Slot {
                start: at(i as i64),
                end: at(i as i64 + 1),
                exposure_s: Some(*e),
            })
            .collect();
        let (rpo, breaches) = judge_slots(&slots, 5.0, at(6), String::new());
        assert_eq!(breaches.len(), 1);
        assert_eq!((breaches[0].start, breaches[0].end), (at(2), Some(at(4))));
        assert_eq!(breaches[0].worst_exposure_s, Some(9.0));
        assert_eq!((rpo.breach_s, rpo.compliant_s), (2.0, 4.0));
        assert!((rpo.compliance_pct.unwrap() - 66.666).abs() < 0.01);
    }

    #[test]
    fn cold_exposure_breaches_exactly_when_the_backup_grows_too_old() {
        // Backup ended at 0, verified at 10; the next ended at 100,
        // verified at 110; target 50 s.
        let verified = [(at(0), at(10)), (at(100), at(110))];
        let slots = cold_slots(&verified, at(0), at(200), TimeDelta::seconds(50));
        let (rpo, breaches) = judge_slots(&slots, 50.0, at(200), String::new());
        assert_eq!(rpo.unmeasured_s, 10.0, "nothing verified before 10 s");
        assert_eq!(breaches.len(), 2, "{breaches:?}");
        assert_eq!(
            (breaches[0].start, breaches[0].end),
            (at(50), Some(at(110)))
        );
        assert_eq!(breaches[1].start, at(150));
        assert_eq!(
            breaches[1].end, None,
            "still breaching at the end of the period"
        );
    }

    #[test]
    fn proof_gaps_are_the_stretches_without_a_fresh_drill() {
        let gaps = proof_gaps(
            &[at(10), at(20)],
            at(0),
            at(100),
            TimeDelta::seconds(30),
            "drill",
        );
        let spans: Vec<_> = gaps.iter().map(|g| (g.start, g.end)).collect();
        assert_eq!(spans, vec![(at(0), Some(at(10))), (at(50), None)]);
    }

    fn sample(t: DateTime<Utc>, e: f64) -> LagSample {
        LagSample::bare("orders", "b", t, Some((e * 1e6) as i64))
    }

    #[test]
    fn a_breach_starts_where_it_provably_began_and_a_silence_is_unmeasured() {
        // Link cut at 10: exposure grows 1 s per second; 5 s target; the
        // link is back at 20 and the sample at 21 is inside again.
        let mut samples: Vec<LagSample> = (0..=9).map(|i| sample(at(i), 0.1)).collect();
        samples.extend((11..=20).map(|i| sample(at(i), (i - 10) as f64 + 0.5)));
        samples.push(sample(at(21), 0.1));
        // Then nothing for 10 s (daemon down), then one sample.
        samples.push(sample(at(31), 0.1));
        let slots = replicated_slots(&samples, at(0), at(33), Duration::from_secs(1), 5.0);
        let (rpo, breaches) = judge_slots(&slots, 5.0, at(33), String::new());
        assert_eq!(breaches.len(), 1, "{breaches:?}");
        assert_eq!(
            breaches[0].start,
            at(14) + TimeDelta::milliseconds(500),
            "exposure 5.5 s at 15 means above 5 s since 14.5"
        );
        assert_eq!(breaches[0].end, Some(at(21)));
        assert_eq!(breaches[0].worst_exposure_s, Some(10.5));
        assert_eq!(rpo.breach_s, 6.5);
        assert_eq!(rpo.unmeasured_s, 9.0, "22..31 had no sample");
    }

    #[test]
    fn missing_samples_are_a_gap() {
        let slots: Vec<Slot> = [Some(0.1), None, None, None, Some(0.2)]
            .iter()
            .enumerate()
            .map(|(i, e)| Slot {
                start: at(i as i64),
                end: at(i as i64 + 1),
                exposure_s: *e,
            })
            .collect();
        let gaps = sample_gaps(&slots, Duration::from_secs(3));
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].start, gaps[0].end), (at(1), Some(at(4))));
    }
}
