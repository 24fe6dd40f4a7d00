//! Amazon Route 53 (and compatible APIs: moto, LocalStack) through
//! `aws-sdk-route53`.
//!
//! Owns [`Route53Provider`]. An upsert is one `ChangeResourceRecordSets`
//! UPSERT followed by `GetChange` until Route 53 reports the change
//! `INSYNC` on all its authoritative servers; a lookup reads the record set
//! back with `ListResourceRecordSets`. Credentials come from the standard
//! AWS chain unless the provider is given its own keys
//! ([`Route53Provider::with_credentials`]); the client is built on first
//! use, since loading that chain is asynchronous and [`crate::provider`]
//! is not.

use std::time::{Duration, Instant};

use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::config::{BehaviorVersion, Region};
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;
use tokio::sync::OnceCell;

use crate::wire::{self, record_label};
use crate::{Applied, DnsError, DnsProvider, DnsRecord, RecordType};

/// Route 53 is global; its API signs in us-east-1 whatever the zone.
const DEFAULT_REGION: &str = "us-east-1";
/// How long a change may stay PENDING. AWS documents "within 60 seconds"
/// for propagation to all its servers; twice that before giving up.
const INSYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// One API call's budget, connection and retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A hosted zone in Route 53.
pub struct Route53Provider {
    name: String,
    hosted_zone_id: String,
    zone: Option<String>,
    endpoint: Option<String>,
    region: String,
    credentials: Option<AwsCredentials>,
    client: OnceCell<Client>,
}

/// Static AWS keys for [`Route53Provider::with_credentials`]: the SDK's own
/// type (the same one drctl-backup's S3 store takes), whose `Debug`
/// redacts the secret.
pub use aws_sdk_route53::config::Credentials as AwsCredentials;

impl Route53Provider {
    /// `zone`, when known, is checked to contain every record before any
    /// call (Route 53 would refuse it, later and less clearly).
    pub fn new(
        name: impl Into<String>,
        hosted_zone_id: &str,
        zone: Option<&str>,
        endpoint: Option<&str>,
        region: Option<&str>,
    ) -> Self {
        Route53Provider {
            name: name.into(),
            hosted_zone_id: hosted_zone_id
                .strip_prefix("/hostedzone/")
                .unwrap_or(hosted_zone_id)
                .to_string(),
            zone: zone.map(str::to_string),
            endpoint: endpoint.map(str::to_string),
            region: region.unwrap_or(DEFAULT_REGION).to_string(),
            credentials: None,
            client: OnceCell::new(),
        }
    }

    /// Signs with these keys instead of the standard AWS chain. For
    /// callers that must not change the process environment to pass keys
    /// (tests run in parallel); production uses the chain.
    pub fn with_credentials(mut self, credentials: AwsCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(self.region.clone()))
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_timeout(CALL_TIMEOUT)
                            .build(),
                    );
                if let Some(credentials) = &self.credentials {
                    loader = loader.credentials_provider(credentials.clone());
                }
                let shared = loader.load().await;
                let mut conf = aws_sdk_route53::config::Builder::from(&shared);
                if let Some(endpoint) = &self.endpoint {
                    conf = conf.endpoint_url(endpoint);
                }
                Client::from_conf(conf.build())
            })
            .await
    }

    /// The record's name, absolute and lower case, checked against the zone.
    fn record_name(&self, name: &str, rtype: RecordType) -> Result<String, DnsError> {
        let invalid = |reason: String| DnsError::InvalidRecord {
            provider: self.name.clone(),
            record: record_label(name, rtype),
            reason,
        };
        let parsed = wire::name_text(&wire::parse_name(name).map_err(invalid)?);
        if let Some(zone) = &self.zone {
            let zone = wire::name_text(&wire::parse_name(zone).map_err(invalid)?);
            if parsed != zone && !parsed.ends_with(&format!(".{zone}")) {
                return Err(invalid(format!("not inside the zone {zone}")));
            }
        }
        Ok(parsed)
    }

    /// The record set `name` should hold: `values` (canonical) with the
    /// record's type and TTL.
    fn record_set(
        &self,
        name: &str,
        record: &DnsRecord,
        values: &[String],
        label: &str,
    ) -> Result<ResourceRecordSet, DnsError> {
        let invalid = |reason: String| DnsError::InvalidRecord {
            provider: self.name.clone(),
            record: label.to_string(),
            reason,
        };
        let records = values
            .iter()
            .map(|v| ResourceRecord::builder().value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        ResourceRecordSet::builder()
            .name(name)
            .r#type(rr_type(record.rtype))
            .ttl(i64::from(record.ttl))
            .set_resource_records(Some(records))
            .build()
            .map_err(|e| invalid(e.to_string()))
    }

    /// The record set as Route 53 holds it now, `None` when absent.
    async fn current(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<Option<ResourceRecordSet>, DnsError> {
        let label = record_label(name, rtype);
        let listed = self
            .client()
            .await
            .list_resource_record_sets()
            .hosted_zone_id(&self.hosted_zone_id)
            .start_record_name(name)
            .start_record_type(rr_type(rtype))
            .max_items(1)
            .send()
            .await
            .map_err(|e| self.api_error(e, &label))?;
        // The listing starts at the name and type asked, or at the next set
        // in Route 53's order when they do not exist.
        Ok(listed
            .resource_record_sets()
            .iter()
            .find(|set| same_name(set.name(), name) && *set.r#type() == rr_type(rtype))
            .cloned())
    }

    /// Submits one change and waits until Route 53 reports it INSYNC.
    async fn change(
        &self,
        action: ChangeAction,
        set: ResourceRecordSet,
        label: &str,
    ) -> Result<Option<String>, DnsError> {
        self.change_batch(vec![(action, set)], label).await
    }

    /// Submits changes as one batch (Route 53 applies a batch whole or not
    /// at all) and waits until Route 53 reports it INSYNC.
    async fn change_batch(
        &self,
        changes: Vec<(ChangeAction, ResourceRecordSet)>,
        label: &str,
    ) -> Result<Option<String>, DnsError> {
        let build = |e: aws_sdk_route53::error::BuildError| DnsError::InvalidRecord {
            provider: self.name.clone(),
            record: label.to_string(),
            reason: e.to_string(),
        };
        let changes = changes
            .into_iter()
            .map(|(action, set)| {
                Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()
                    .map_err(build)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = ChangeBatch::builder()
            .comment("drctl")
            .set_changes(Some(changes))
            .build()
            .map_err(build)?;
        let client = self.client().await;
        let submitted = client
            .change_resource_record_sets()
            .hosted_zone_id(&self.hosted_zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| self.api_error(e, label))?;
        let Some(info) = submitted.change_info() else {
            return Ok(None);
        };
        let id = info.id().to_string();
        let mut status = info.status().clone();
        let started = Instant::now();
        let mut pause = Duration::from_millis(250);
        while status != ChangeStatus::Insync {
            if started.elapsed() > INSYNC_TIMEOUT {
                return Err(DnsError::NotConfirmed {
                    provider: self.name.clone(),
                    record: label.to_string(),
                    expected: "INSYNC".into(),
                    found: format!("change {id} {}", status.as_str()),
                    after: started.elapsed(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
            let change = client
                .get_change()
                .id(&id)
                .send()
                .await
                .map_err(|e| self.api_error(e, label))?;
            if let Some(info) = change.change_info() {
                status = info.status().clone();
            }
        }
        Ok(Some(id))
    }

    /// The [`DnsError`] of a failed call: retryable for timeouts, network
    /// failures, throttling and 5xx; final for what Route 53 refused.
    fn api_error<E>(&self, error: SdkError<E, HttpResponse>, label: &str) -> DnsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let api = |code: &str, message: String, retryable: bool| DnsError::Api {
            provider: self.name.clone(),
            record: label.to_string(),
            code: code.to_string(),
            message,
            retryable,
        };
        let server = self
            .endpoint
            .clone()
            .unwrap_or_else(|| "route53.amazonaws.com".into());
        match &error {
            SdkError::TimeoutError(_) => DnsError::Timeout {
                provider: self.name.clone(),
                record: label.to_string(),
                server,
                after: CALL_TIMEOUT,
            },
            SdkError::DispatchFailure(failure) if failure.is_timeout() => DnsError::Timeout {
                provider: self.name.clone(),
                record: label.to_string(),
                server,
                after: CALL_TIMEOUT,
            },
            SdkError::DispatchFailure(failure) => DnsError::Unreachable {
                provider: self.name.clone(),
                record: label.to_string(),
                server,
                reason: format!("{:?}", failure.as_connector_error().map(|e| e.to_string())),
            },
            SdkError::ServiceError(context) => {
                let code = context.err().code().unwrap_or("error");
                let message = context.err().message().unwrap_or("no message").to_string();
                let status = context.raw().status().as_u16();
                let retryable = status >= 500
                    || matches!(
                        code,
                        "Throttling" | "ThrottlingException" | "PriorRequestNotComplete"
                    );
                api(code, message, retryable)
            }
            other => {
                let message = aws_sdk_route53::error::DisplayErrorContext(other).to_string();
                api("error", message, true)
            }
        }
    }
}

fn rr_type(rtype: RecordType) -> RrType {
    match rtype {
        RecordType::A => RrType::A,
        RecordType::Aaaa => RrType::Aaaa,
        RecordType::Cname => RrType::Cname,
    }
}

/// Route 53 writes names absolute, lower case, with `\052` for `*`.
fn same_name(listed: &str, asked: &str) -> bool {
    let normalize = |n: &str| {
        let n = n.replace("\\052", "*").to_ascii_lowercase();
        if n.ends_with('.') {
            n
        } else {
            format!("{n}.")
        }
    };
    normalize(listed) == normalize(asked)
}

#[async_trait::async_trait]
impl DnsProvider for Route53Provider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn upsert(&self, record: &DnsRecord) -> Result<Applied, DnsError> {
        let started = Instant::now();
        let label = record_label(&record.name, record.rtype);
        let name = self.record_name(&record.name, record.rtype)?;
        let values = crate::publishable_values(&self.name, record)?;
        let set = self.record_set(&name, record, &values, &label)?;
        let change_id = self.change(ChangeAction::Upsert, set, &label).await?;
        Ok(Applied {
            change_id,
            took: started.elapsed(),
        })
    }

    async fn upsert_if(
        &self,
        record: &DnsRecord,
        expected: Option<&[String]>,
    ) -> Result<Applied, DnsError> {
        let started = Instant::now();
        let label = record_label(&record.name, record.rtype);
        let name = self.record_name(&record.name, record.rtype)?;
        let values = crate::publishable_values(&self.name, record)?;
        let expected = crate::expected_values(&self.name, record, expected)?;
        let new_set = self.record_set(&name, record, &values, &label)?;
        let values_of = |set: &ResourceRecordSet| {
            let v: Vec<String> = set
                .resource_records()
                .iter()
                .map(|r| r.value().to_string())
                .collect();
            wire::normalize_values(record.rtype, &v).unwrap_or(v)
        };
        // Route 53 has no prerequisites; a DELETE must name the exact set
        // it holds (values and TTL), so the batch "delete what was read,
        // write the new one" fails whole if the set changed after the read.
        let current = self.current(&name, record.rtype).await?;
        let found = current.as_ref().map(values_of);
        if found.as_deref() == Some(values.as_slice()) {
            return Ok(Applied {
                change_id: None,
                took: started.elapsed(),
            });
        }
        if found != expected {
            return Err(crate::conflict(
                &self.name,
                record,
                expected.as_deref(),
                found.as_deref(),
            ));
        }
        // The delete is the condition; after it, an UPSERT is a create
        // (a CREATE here trips moto, which checks it against the zone's
        // history before applying the delete).
        let mut batch = Vec::new();
        let mut then = ChangeAction::Create;
        if let (Some(current), Some(found)) = (current, found) {
            then = ChangeAction::Upsert;
            // The set as read, its values in the canonical order drctl
            // writes them in (Route 53 compares them as a set; moto compares
            // them with what was written, in order).
            let ttl = current.ttl().unwrap_or(i64::from(record.ttl));
            let as_read = DnsRecord {
                ttl: u32::try_from(ttl).unwrap_or(record.ttl),
                ..record.clone()
            };
            batch.push((
                ChangeAction::Delete,
                self.record_set(&name, &as_read, &found, &label)?,
            ));
        }
        batch.push((then, new_set));
        match self.change_batch(batch, &label).await {
            Ok(change_id) => Ok(Applied {
                change_id,
                took: started.elapsed(),
            }),
            // Changed between the read and the batch: read again to tell a
            // concurrent identical flip from someone else's change.
            Err(DnsError::Api { code, .. })
                if matches!(code.as_str(), "InvalidChangeBatch" | "InvalidInput") =>
            {
                let found = self
                    .current(&name, record.rtype)
                    .await?
                    .map(|s| values_of(&s));
                crate::already_applied_or_conflict(
                    &self.name,
                    record,
                    expected.as_deref(),
                    found.as_deref(),
                    &values,
                    started,
                )
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, name: &str, rtype: RecordType) -> Result<(), DnsError> {
        let label = record_label(name, rtype);
        let name = self.record_name(name, rtype)?;
        // Route 53 deletes only the exact set it holds (values and TTL), so
        // read it first; absent is done.
        let Some(current) = self.current(&name, rtype).await? else {
            return Ok(());
        };
        match self.change(ChangeAction::Delete, current, &label).await {
            Ok(_) => Ok(()),
            // Deleted meanwhile (a concurrent cleanup): what was wanted.
            Err(DnsError::Api { code, message, .. })
                if code == "InvalidChangeBatch" && message.contains("not found") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Option<Vec<String>>, DnsError> {
        let name = self.record_name(name, rtype)?;
        let Some(set) = self.current(&name, rtype).await? else {
            return Ok(None);
        };
        let values: Vec<String> = set
            .resource_records()
            .iter()
            .map(|r| r.value().to_string())
            .collect();
        // Compared with what was written in one canonical form; a value
        // Route 53 holds that drctl cannot read is shown as written.
        Ok(Some(
            wire::normalize_values(rtype, &values).unwrap_or(values),
        ))
    }
}
