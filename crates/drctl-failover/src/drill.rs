//! The drill's own steps: a scratch clone of the standby (the DR copy) is
//! started isolated, then promoted, probed and announced under the drill
//! record by the shared steps, and [`teardown`] removes it all, also after
//! a failure. Production is only read: the primary keeps its writes, the
//! standby keeps streaming (a base backup is one more walsender client), the
//! production DNS record is never written.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drctl_pg::PgCluster;
use serde::{Deserialize, Serialize};

use crate::steps::{self, blocking, pg_bin, Ctx, StepError, StepResult};
use crate::Step;

const CLONE_READY: Duration = Duration::from_secs(120);

/// Where the clone lives: journaled, so a resumed driver (and the teardown)
/// finds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CloneOutput {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub bytes: u64,
    pub took_ms: u64,
}

impl CloneOutput {
    fn cluster(&self, bin: PathBuf) -> PgCluster {
        PgCluster::new("drill clone", self.data_dir.clone(), self.port, bin)
    }

    /// The clone's DSN: the production one's database and user, over the
    /// clone's private socket (a scratch cluster has no TCP listener and
    /// admits only drctl's own OS user).
    pub fn dsn(&self) -> String {
        PgCluster::new(
            "drill clone",
            self.data_dir.clone(),
            self.port,
            PathBuf::new(),
        )
        .scratch_dsn(&self.user, &self.database)
    }
}

/// The scratch directory of an operation (short: a Unix socket path may not
/// exceed 107 bytes).
fn clone_dir(config: &drctl_config::Config, op_id: &str) -> PathBuf {
    let short: String = op_id.trim_start_matches("op-").chars().take(12).collect();
    let root = config
        .scratch
        .root
        .clone()
        .unwrap_or_else(drctl_pg::os::scratch_root);
    root.join(format!("drill-{short}"))
}

pub(crate) async fn clone_standby(ctx: &Ctx<'_>) -> StepResult {
    let service = ctx.service()?;
    if !service.has_datastore() {
        return steps::skipped("no datastore: the drill rehearses DNS only");
    }
    let region = &ctx.params.target;
    let conn = service.postgres.get(region).ok_or_else(|| {
        StepError::stop(format!(
            "service {} has no connection in {region}",
            service.name
        ))
    })?;
    let dsn = conn
        .resolve()
        .map_err(|e| StepError::stop(e.to_string()))?
        .expose()
        .to_string();
    // A URL DSN names the database and user to use on the clone; otherwise
    // PostgreSQL's defaults.
    let database = url_part(&dsn, UrlPart::Database).unwrap_or_else(|| "postgres".into());
    let user = url_part(&dsn, UrlPart::User).unwrap_or_else(|| "postgres".into());
    let dir = clone_dir(ctx.config, ctx.op_id);
    let bin = pg_bin()?;
    // What a hot standby needs at least as high as its primary.
    let source = ctx.endpoint(region, Duration::from_secs(5))?;
    let parity = source.settings(drctl_pg::STANDBY_PARITY_SETTINGS).await;
    source.close().await;
    let parity = parity.map_err(|e| StepError::retry(e.to_string()))?;
    let started = Instant::now();
    let (data_dir, port) = (dir.join("data"), drctl_pg::os::free_port());
    let (d, dd, u) = (dir.clone(), data_dir.clone(), user.clone());
    let bytes = blocking(move || {
        // An earlier attempt that died half-way leaves a partial copy:
        // start over (a rerun of this step is a fresh clone).
        let old = PgCluster::new("drill clone", dd.clone(), port, bin.clone());
        let _ = old.stop("immediate");
        let _ = std::fs::remove_dir_all(&d);
        let root = d.parent().unwrap_or(std::path::Path::new("/"));
        drctl_pg::os::prepare_scratch_root(root).map_err(|e| e.to_string())?;
        drctl_pg::os::private_run_dir(&d).map_err(|e| e.to_string())?;
        let cluster = PgCluster::new("drill clone", dd.clone(), port, bin);
        cluster
            .clone_isolated(&dsn, &parity, &[u.as_str(), "postgres"])
            .map_err(|e| e.to_string())?;
        Ok(dir_size(&dd))
    })
    .await?;
    steps::to_value(&CloneOutput {
        dir,
        data_dir,
        port,
        database,
        user,
        bytes,
        took_ms: started.elapsed().as_millis() as u64,
    })
}

pub(crate) async fn start_clone(ctx: &Ctx<'_>) -> StepResult {
    if steps::is_skipped(ctx.outputs.get(&Step::CloneStandby)) {
        return steps::skipped("no clone");
    }
    let clone: CloneOutput = ctx.output(Step::CloneStandby)?;
    let cluster = clone.cluster(pg_bin()?);
    let started = Instant::now();
    let c = cluster.clone();
    blocking(move || {
        if !c.is_running() {
            c.start().map_err(|e| e.to_string())?;
        }
        c.wait_ready(CLONE_READY).map_err(|e| e.to_string())
    })
    .await?;
    // Consistent (a hot standby answers queries only then) and still a
    // standby of nothing.
    let ep = drctl_pg::PgEndpoint::new("drill clone", &clone.dsn(), Duration::from_secs(5))
        .map_err(|e| StepError::stop(e.to_string()))?;
    let state = ep.node_state().await;
    ep.close().await;
    let state = state.map_err(|e| StepError::retry(e.to_string()))?;
    steps::to_value(&serde_json::json!({
        "port": clone.port,
        "in_recovery": state.in_recovery,
        "lsn": state.lsn,
        "took_ms": started.elapsed().as_millis() as u64,
    }))
}

/// The endpoint the shared promote and probe steps use in a drill.
pub(crate) fn clone_endpoint(
    ctx: &Ctx<'_>,
    timeout: Duration,
) -> Result<drctl_pg::PgEndpoint, StepError> {
    let clone: CloneOutput = ctx.output(Step::CloneStandby)?;
    drctl_pg::PgEndpoint::new(
        format!("{}@drill-clone", ctx.params.cluster),
        &clone.dsn(),
        timeout,
    )
    .map_err(|e| StepError::stop(e.to_string()))
}

/// Stops and removes the clone and deletes the drill records. Reads the
/// clone's place from the journal when the clone step got that far, else
/// from the operation id (a clone that died before journaling).
pub(crate) async fn teardown(ctx: &Ctx<'_>) -> StepResult {
    let clone: Option<CloneOutput> = ctx.output(Step::CloneStandby).ok();
    let dir = clone
        .as_ref()
        .map_or_else(|| clone_dir(ctx.config, ctx.op_id), |c| c.dir.clone());
    let mut removed = Vec::new();
    if dir.exists() {
        let bin = pg_bin()?;
        let port = clone.as_ref().map_or(0, |c| c.port);
        let d = dir.clone();
        blocking(move || {
            let cluster = PgCluster::new("drill clone", d.join("data"), port, bin);
            cluster.stop("immediate").map_err(|e| e.to_string())?;
            std::fs::remove_dir_all(&d)
                .map_err(|e| format!("removing the drill clone {}: {e}", d.display()))
        })
        .await?;
        removed.push(format!("clone {}", dir.display()));
    }
    let mut records = Vec::new();
    for (service, provider, record) in steps::dns_records(ctx)? {
        provider
            .delete(&record.name, record.rtype)
            .await
            .map_err(steps::dns_error)?;
        records.push(serde_json::json!({ "service": service, "record": record.name }));
    }
    steps::to_value(&serde_json::json!({
        "removed": removed,
        "dns_deleted": records,
    }))
}

enum UrlPart {
    Database,
    User,
}

fn url_part(dsn: &str, part: UrlPart) -> Option<String> {
    let rest = dsn.split_once("://")?.1;
    let value = match part {
        UrlPart::Database => rest.split_once('/')?.1.split(['?', '#']).next()?,
        UrlPart::User => {
            let auth = rest.split(['/', '?']).next()?.rsplit_once('@')?.0;
            auth.split(':').next()?
        }
    };
    (!value.is_empty()).then(|| value.to_string())
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::{url_part, UrlPart};

    #[test]
    fn database_and_user_come_from_a_url_dsn() {
        let dsn = "postgres://app:secret@h:1/orders?sslmode=require";
        assert_eq!(url_part(dsn, UrlPart::Database).as_deref(), Some("orders"));
        assert_eq!(url_part(dsn, UrlPart::User).as_deref(), Some("app"));
        assert_eq!(url_part("postgres://h:1/", UrlPart::Database), None);
        assert_eq!(url_part("postgres://h:1/x", UrlPart::User), None);
        assert_eq!(url_part("host=h dbname=x", UrlPart::Database), None);
    }
}
