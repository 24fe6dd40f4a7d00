#![allow(dead_code)]
use std::sync::Arc;
use std::time::Duration;
pub use drctl_config::RecordType;
pub struct DnsRecord { pub name: String, pub rtype: RecordType, pub ttl: u32, pub values: Vec<String> }
pub struct Applied { pub change_id: Option<String>, pub took: Duration }
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct DnsError;
impl DnsError { pub fn is_retryable(&self) -> bool { true } }
pub trait DnsProvider: Send + Sync {
    fn name(&self) -> &str;
    fn upsert<'a>(&'a self, record: &'a DnsRecord) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Applied, DnsError>> + Send + 'a>>;
}
pub fn provider(_c: &drctl_config::DnsProviderConfig) -> Result<Arc<dyn DnsProvider>, DnsError> { Err(DnsError) }
pub async fn confirm(_p: &dyn DnsProvider, _r: &DnsRecord, _t: Duration) -> Result<Duration, DnsError> { Err(DnsError) }
