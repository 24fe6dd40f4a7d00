//! Primary leases through etcd on the namespaced lab (real etcd members in
//! region-a, region-b and the witness site; real PostgreSQL; agents that
//! hold the leases): the guarantees against split brain, checked against
//! what writers really saw acknowledged.

use std::time::Duration;

use drctl_lab::{Partition, Site, REGION_A};
use drctl_store::states::{GuardDecision, OperationKind};
use drctl_store::Store;
use drctl_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drctl_cut_off_from_a_primary_that_renews_its_lease_fails_nothing_over() {
    let (lab, _dir) = start_leased_lab(vec![orders()]).await;
    let config = lab_config(&lab);
    let store = Store::open(config.store.url.expose()).await.unwrap();
    // drctl's daemon in the control-plane site, cut off region-a only:
    // region-a still reaches the etcd quorum and renews its lease.
    let net = lab.network().expect("a namespaced lab").clone();
    let ctl = net
        .runtime_with_workers(Site::Ctl, 2)
        .expect("a runtime in ctl");
    let daemon = ctl
        .run(start_daemon_automatic(config))
        .await
        .expect("starting the daemon in ctl");
    lab.partition(Partition::Cut(Site::Ctl, Site::RegionA))
        .unwrap();
    let hold = wait_for("the guard holding", Duration::from_secs(40), || async {
        store
            .decisions(Some("orders"), 50)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.action == GuardDecision::Hold)
    })
    .await;
    assert!(
        matches!(
            hold.code.as_deref(),
            Some("primary_holds_lease") | Some("standby_sees_primary")
        ),
        "{hold:?}"
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        store
            .operations(10)
            .await
            .unwrap()
            .iter()
            .all(|o| o.kind != OperationKind::Failover),
        "no failover while the primary renews its lease"
    );
    lab.heal().unwrap();
    assert!(writable(&lab, REGION_A).await);
    daemon.stop().await;
}
