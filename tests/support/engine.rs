//! Setups of the failover engine and its journal that tests share: an
//! engine over one stateless service on SQLite (no datastore, no DNS: only
//! the store), a request for it, and a failover journaled part-way by a
//! driver that holds (or held) the lease, as a crash leaves it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drctl_failover::{Engine, OperationKind, Request};
use drctl_store::{Lease, Store};

use crate::config::{Service, TestConfig};

/// The stateless service of [`stateless_engine`].
pub const STATELESS_SERVICE: &str = "storefront";

/// An engine over one stateless hot service ([`STATELESS_SERVICE`]) and
/// its SQLite store, in a directory that lives as long as the guard.
pub async fn stateless_engine() -> (Engine, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .service(Service::hot(STATELESS_SERVICE))
        .parse(dir.path());
    let store = Store::open(config.store.url.expose())
        .await
        .expect("the test's state store opens");
    (Engine::new(Arc::new(config), store.clone()), store, dir)
}

/// An operator's request of `kind` for `service`, with no target region
/// and nothing accepted.
pub fn request(kind: OperationKind, service: &str) -> Request {
    Request {
        kind,
        service: service.into(),
        to: None,
        accept_data_loss: false,
        accept_unfenced: false,
        requested_by: "cli".into(),
        reason: None,
        detected_at: None,
    }
}

/// Takes the lease `lease` for `holder` (which must be free) and journals
/// operation `id`, a failover of `service` with `params`, under it: the
/// first writes of a driver.
pub async fn journaled_failover(
    store: &Store,
    (lease, holder, ttl): (&str, &str, Duration),
    id: &str,
    service: &str,
    params: &str,
    now: DateTime<Utc>,
) -> Lease {
    let lease = store
        .acquire_lease(lease, holder, ttl, now)
        .await
        .unwrap()
        .expect("the lease is free");
    store
        .journal_operation_created(
            &lease,
            id,
            OperationKind::Failover,
            service,
            service,
            params,
            now,
        )
        .await
        .unwrap();
    lease
}
