//! Journals of version 2 (drctl-pg's types in the outputs, before the
//! datastore seam) read into today's engine-neutral outputs: an operation
//! begun by the previous drctl resumes with the new one. Each sample is an
//! output as version 2 stored it.

use super::actions::{FenceMethod, FenceOutput, Probe};
use super::drill::{ClonePromoted, CloneStarted};
use super::failover::{CatchUp, Promoted, SourcePosition};
use super::output::{Action, Entry};
use super::rejoin::{RejoinMethod, Streaming};
use crate::plan::PlanReport;
use drctl_node::Position;

fn v2<T: serde::de::DeserializeOwned>(done: &str) -> T {
    let stored = format!(r#"{{"v":2,"done":{done}}}"#);
    match Entry::decode(&stored).unwrap().read::<T>().unwrap() {
        Action::Done(t) => t,
        Action::Skipped(s) => panic!("read as skipped: {}", s.reason),
    }
}

#[test]
fn a_version_2_fence_reads_as_the_soft_fence() {
    let f: FenceOutput = v2(
        r#"{"reachable":true,"method":"read_only","report":{"already_read_only":false,"was_standby":false,"sessions_terminated":3},"hook":null,"unreachable":null,"fenced_at":"2026-12-01T10:00:00Z"}"#,
    );
    assert_eq!(f.method, FenceMethod::SoftFence);
    let r = f.report.unwrap();
    assert!(!r.already_fenced && !r.was_standby);
    assert_eq!(r.sessions_ended, 3);
    // Written back in version 3's own names.
    let now = serde_json::to_value(&f).unwrap();
    assert_eq!(now["method"], "soft_fence");
    assert_eq!(now["report"]["sessions_ended"], 3);
}

#[test]
fn version_2_positions_promotions_and_probes_keep_their_numbers() {
    let pos: SourcePosition = v2(
        r#"{"basis":"fenced_source","source_lsn":50331744,"source_time_us":1,"sampled_at":null,"target_lsn":50331648}"#,
    );
    assert_eq!(pos.source_position, Some(Position::from_ordinal(50331744)));
    assert_eq!(pos.target_position, Some(Position::from_ordinal(50331648)));
    let c: CatchUp =
        v2(r#"{"required":true,"reached":true,"waited_ms":12,"target_lsn":7,"source_lsn":7}"#);
    assert_eq!(c.source_position, c.target_position);
    let p: Promoted = v2(
        r#"{"report":{"already_primary":false,"timeline":2,"took_ms":40},"final_lsn":50331744}"#,
    );
    assert_eq!(p.report.history, 2);
    assert_eq!(p.final_position, Some(Position::from_ordinal(50331744)));
    let probe: Probe = v2(r#"{"written_at_us":5,"lsn":9}"#);
    assert_eq!(probe.position, Position::from_ordinal(9));
    let started: CloneStarted = v2(r#"{"port":5999,"in_recovery":true,"lsn":9,"took_ms":3}"#);
    assert!(started.standby);
    let cp: ClonePromoted =
        v2(r#"{"report":{"already_primary":false,"timeline":3,"took_ms":40},"final_lsn":9}"#);
    assert_eq!(cp.report.history, 3);
    let s: Streaming = v2(r#"{"goal":9,"replayed":9,"waited_ms":100}"#);
    assert_eq!(s.replayed, Some(s.goal));
    let m: RejoinMethod = serde_json::from_str(r#""rewind""#).unwrap();
    assert_eq!(m, RejoinMethod::Rewind);
}

#[test]
fn a_version_2_plan_reads_its_server_states() {
    let plan: PlanReport = v2(
        r#"{"kind":"switchover","service":"orders","cluster":"orders","members":["orders"],"source":"a","target":"b","steps":["plan"],
            "source_state":{"in_recovery":false,"read_only":false,"timeline":1,"lsn":100,"replay_lsn":100,"now_us":5},
            "source_error":null,
            "target_state":{"in_recovery":true,"read_only":false,"timeline":1,"lsn":90,"replay_lsn":80,"now_us":5},
            "target_error":null,"expected_loss_us":0,"expected_loss_bytes":0,"expected_loss_basis":"","rpo_target_us":0,
            "rto_target_ms":0,"expected_rto_ms":null,"expected_rto_basis":"","dns":[],"fence":"","blockers":[],
            "planned_at":"2026-12-01T10:00:00Z"}"#,
    );
    let (s, t) = (plan.source_state.unwrap(), plan.target_state.unwrap());
    assert!(s.writable() && t.standby);
    assert_eq!(t.applied, Position::from_ordinal(80));
    assert_eq!(s.position.distance_after(t.position), 10);
}
