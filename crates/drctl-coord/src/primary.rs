//! The primary key of a service: `drctl/primary/<service>`, naming the
//! region whose server is the writable primary and who holds it (the
//! region's agent, or an operation that claimed it for a promotion),
//! attached to an etcd lease so that it disappears when its holder stops
//! renewing it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::etcd::{Etcd, KeyValue, LeaseId};
use crate::{CoordError, Result};

/// Where the primary keys live.
pub const PRIMARY_PREFIX: &str = "drctl/primary/";

/// Who holds a primary key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HolderKind {
    /// The agent beside the region's primary, renewing it.
    Agent { host: String },
    /// An operation that claimed it for its target before promoting it;
    /// the target's agent takes it over once its server is the primary.
    Operation { id: String },
}

/// The value of a primary key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub region: String,
    pub by: HolderKind,
    pub since: DateTime<Utc>,
}

impl Holder {
    pub fn agent(region: &str, host: &str) -> Holder {
        Holder {
            region: region.to_string(),
            by: HolderKind::Agent {
                host: host.to_string(),
            },
            since: Utc::now(),
        }
    }

    pub fn operation(region: &str, id: &str) -> Holder {
        Holder {
            region: region.to_string(),
            by: HolderKind::Operation { id: id.to_string() },
            since: Utc::now(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A primary key as read, with its lease's time left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryLease {
    pub service: String,
    /// `None` when the value is not drctl's (written by hand): treated as
    /// held by nobody drctl knows, so never as a region's lease.
    pub holder: Option<Holder>,
    pub lease: Option<LeaseId>,
    /// The lease's time left when read (`None`: no lease, or gone).
    pub ttl_left: Option<Duration>,
    pub mod_revision: i64,
}

impl PrimaryLease {
    /// The region it names, if drctl wrote it.
    pub fn region(&self) -> Option<&str> {
        self.holder.as_ref().map(|h| h.region.as_str())
    }
}

/// What [`PrimaryLeases::claim`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key now names the target, held by the operation's lease.
    Claimed { lease: LeaseId },
    /// It already named the target (a resumed claim, or its agent).
    AlreadyTarget(PrimaryLease),
    /// Another holder still has it: its lease has not expired.
    HeldBy(PrimaryLease),
}

/// The primary keys of one etcd cluster.
#[derive(Clone, Debug)]
pub struct PrimaryLeases {
    etcd: Etcd,
}

impl PrimaryLeases {
    pub fn new(etcd: Etcd) -> PrimaryLeases {
        PrimaryLeases { etcd }
    }

    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// The key of `service`'s primary lease.
    pub fn key(service: &str) -> String {
        format!("{PRIMARY_PREFIX}{service}")
    }

    /// `service`'s primary key now (`None`: nobody holds it).
    pub async fn current(&self, service: &str) -> Result<Option<PrimaryLease>> {
        let Some(kv) = self.etcd.get(&Self::key(service)).await? else {
            return Ok(None);
        };
        self.read(service, kv).await.map(Some)
    }

    async fn read(&self, service: &str, kv: KeyValue) -> Result<PrimaryLease> {
        let ttl_left = match kv.lease {
            Some(l) => self.etcd.time_to_live(l).await?,
            None => None,
        };
        Ok(PrimaryLease {
            service: service.to_string(),
            holder: serde_json::from_slice(&kv.value).ok(),
            lease: kv.lease,
            ttl_left,
            mod_revision: kv.mod_revision,
        })
    }

    /// Claims `service`'s key for `target` on behalf of operation `op`:
    /// when nobody holds it, or when it names `fenced` (a source whose
    /// hard fence was confirmed, so its lease no longer means a live
    /// primary). The claim lives `ttl` unless the target's agent takes it
    /// over first.
    pub async fn claim(
        &self,
        service: &str,
        target: &str,
        op: &str,
        fenced: Option<&str>,
        ttl: Duration,
    ) -> Result<Claim> {
        let key = Self::key(service);
        let value = Holder::operation(target, op).encode();
        // A few rounds: the key may change between the read and the write
        // (a lease expiring, the target's agent taking it over).
        for _ in 0..5 {
            let current = self.current(service).await?;
            let outcome = match &current {
                None => {
                    let lease = self.etcd.grant(ttl).await?;
                    match self.etcd.create(&key, &value, Some(lease)).await? {
                        Ok(()) => return Ok(Claim::Claimed { lease }),
                        Err(_) => {
                            let _ = self.etcd.revoke(lease).await;
                            continue;
                        }
                    }
                }
                Some(c) if c.region() == Some(target) => Claim::AlreadyTarget(c.clone()),
                Some(c) if fenced.is_some() && c.region() == fenced => {
                    let lease = self.etcd.grant(ttl).await?;
                    match self
                        .etcd
                        .replace(&key, &value, Some(lease), c.mod_revision)
                        .await?
                    {
                        Ok(()) => return Ok(Claim::Claimed { lease }),
                        Err(_) => {
                            let _ = self.etcd.revoke(lease).await;
                            continue;
                        }
                    }
                }
                Some(c) => Claim::HeldBy(c.clone()),
            };
            return Ok(outcome);
        }
        Err(CoordError::Refused {
            call: "claim",
            message: format!("the primary key of {service} kept changing under the claim"),
        })
    }

    /// Waits until `service`'s key no longer names `region` (its lease
    /// expired or was handed over), at most `timeout`; returns what holds
    /// it then (`None`: nobody), or `Err(still)` when `region` still held
    /// it at the end.
    pub async fn wait_released(
        &self,
        service: &str,
        region: &str,
        timeout: Duration,
        poll: Duration,
    ) -> Result<std::result::Result<Option<PrimaryLease>, PrimaryLease>> {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.current(service).await?;
            match current {
                Some(c) if c.region() == Some(region) => {
                    if Instant::now() >= deadline {
                        return Ok(Err(c));
                    }
                }
                other => return Ok(Ok(other)),
            }
            tokio::time::sleep(poll).await;
        }
    }
}
