//! The backups a node restores from ([`drctl_node::BackupSource`]): those
//! the state store recorded, each verified against the manifest recorded
//! when it was taken before a byte lands ([`crate::jobs::restore_recorded_backup`]).
//! The failover engine's recover hands this to its node; the agent (issue
//! 17) will hold the same beside each database.

use std::path::Path;
use std::sync::Arc;

use drctl_config::Config;
use drctl_store::Store;

/// The recorded, verified backups of every service in `config`.
#[derive(Clone)]
pub struct RecordedBackups {
    config: Arc<Config>,
    store: Store,
}

impl RecordedBackups {
    pub fn new(config: Arc<Config>, store: Store) -> Self {
        RecordedBackups { config, store }
    }
}

#[async_trait::async_trait]
impl drctl_node::BackupSource for RecordedBackups {
    async fn restore_verified(
        &self,
        backup_id: &str,
        target: &Path,
    ) -> Result<Option<String>, String> {
        crate::jobs::restore_recorded_backup(&self.config, &self.store, backup_id, target)
            .await
            .map(|m| m.stop_lsn)
            .map_err(|e| e.to_string())
    }
}
