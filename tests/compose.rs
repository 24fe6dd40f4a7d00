//! Keeps `docker-compose.yml` (and the `Dockerfile` it builds) true to the
//! repository, without a Docker engine: the file parses, its services are
//! there, every host path it names exists, the drctl service's config is
//! valid and gets every DSN variable it names and its port published, and
//! the scripts it runs are scripts. And keeps what it says it does true:
//! MinIO is the config's backup store (reachable, credentials given, bucket
//! created before drctl starts, drctl's role allowed to replicate), the
//! image carries the programs the config's features look for, and what it
//! cannot do (no agent beside its databases: no real failover) is off in
//! the config and said in its header and the README.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use drctl_tests::drctl;
use serde_yaml::{Mapping, Value};

const SERVICES: [&str; 4] = ["pg-primary", "pg-standby", "minio", "drctl"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let path = repo().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut doc: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"));
    doc.apply_merge()
        .expect("docker-compose.yml: YAML merge keys (<<) apply");
    doc
}

fn services(doc: &Value) -> &Mapping {
    doc.get("services")
        .and_then(Value::as_mapping)
        .expect("docker-compose.yml has a `services` mapping")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

/// A scalar as text (Compose accepts numbers and booleans where it means strings).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A string or a list of strings (`command`, `entrypoint`, `env_file`…), as words.
fn words(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().filter_map(text).collect(),
        Some(v) => text(v)
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

/// One entry of a service's `volumes`, short or long syntax.
#[derive(Debug)]
struct Mount {
    source: Option<String>,
    target: String,
}

impl Mount {
    /// A path on the host (a bind mount), as opposed to a named volume.
    fn host_path(&self) -> Option<&str> {
        self.source
            .as_deref()
            .filter(|s| s.starts_with('.') || s.starts_with('/') || s.starts_with('~'))
    }

    fn named_volume(&self) -> Option<&str> {
        self.source
            .as_deref()
            .filter(|_| self.host_path().is_none())
    }
}

fn mounts(svc: &Value) -> Vec<Mount> {
    let Some(list) = svc.get("volumes").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    list.iter()
        .map(|v| match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [target] => Mount {
                        source: None,
                        target: target.to_string(),
                    },
                    [source, target, ..] => Mount {
                        source: Some(source.to_string()),
                        target: target.to_string(),
                    },
                    [] => unreachable!("split yields at least one part"),
                }
            }
            Value::Mapping(_) => Mount {
                source: v.get("source").and_then(text),
                target: v
                    .get("target")
                    .and_then(text)
                    .unwrap_or_else(|| panic!("a long-syntax volume without target: {v:?}")),
            },
            other => panic!("an unexpected volume entry: {other:?}"),
        })
        .collect()
}

/// The service's `environment`, mapping or `KEY=VALUE` list.
fn environment(svc: &Value) -> BTreeMap<String, Option<String>> {
    match svc.get("environment") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v))))
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(text)
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (s, None),
            })
            .collect(),
        Some(other) => panic!("an unexpected `environment`: {other:?}"),
    }
}

/// The container ports a service publishes.
fn published_container_ports(svc: &Value) -> Vec<u16> {
    let Some(list) = svc.get("ports").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|p| match p {
            Value::Mapping(_) => p.get("target").and_then(text),
            // [IP:][HOST:]CONTAINER[/PROTOCOL]; HOST may be ${VAR:-default}.
            _ => text(p).and_then(|s| {
                s.split('/')
                    .next()
                    .and_then(|s| s.rsplit(':').next())
                    .map(str::to_string)
            }),
        })
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// `(what, path relative to the repository)` for every host path the compose
/// file references: build contexts and Dockerfiles, bind-mounted sources,
/// `env_file`s, and top-level `configs` / `secrets` files.
fn referenced_paths(doc: &Value) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (name, svc) in services(doc) {
        let name = text(name).unwrap_or_default();
        match svc.get("build") {
            None => {}
            Some(Value::String(context)) => {
                out.push((format!("{name}: build context"), PathBuf::from(context)));
                out.push((
                    format!("{name}: Dockerfile"),
                    Path::new(context).join("Dockerfile"),
                ));
            }
            Some(build) => {
                let context = build
                    .get("context")
                    .and_then(text)
                    .unwrap_or_else(|| ".".into());
                let dockerfile = build
                    .get("dockerfile")
                    .and_then(text)
                    .unwrap_or_else(|| "Dockerfile".into());
                out.push((format!("{name}: build context"), PathBuf::from(&context)));
                out.push((
                    format!("{name}: build dockerfile"),
                    Path::new(&context).join(dockerfile),
                ));
            }
        }
        for m in mounts(svc) {
            if let Some(src) = m.host_path() {
                out.push((
                    format!("{name}: volume {src}:{}", m.target),
                    PathBuf::from(src),
                ));
            }
        }
        let env_files = match svc.get("env_file") {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(|i| text(i).or_else(|| i.get("path").and_then(text)))
                .collect(),
            other => words(other),
        };
        for f in env_files {
            out.push((format!("{name}: env_file"), PathBuf::from(f)));
        }
    }
    for section in ["configs", "secrets"] {
        if let Some(m) = doc.get(section).and_then(Value::as_mapping) {
            for (k, v) in m {
                if let Some(file) = v.get("file").and_then(text) {
                    out.push((
                        format!("{section}.{}", text(k).unwrap_or_default()),
                        PathBuf::from(file),
                    ));
                }
            }
        }
    }
    out
}

/// The `COPY` sources of a Dockerfile that come from the build context (not
/// `--from` another stage), one instruction per entry.
fn dockerfile_copy_sources(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines().map(str::trim) {
        let Some(rest) = line
            .strip_prefix("COPY ")
            .or_else(|| line.strip_prefix("ADD "))
        else {
            continue;
        };
        let rest = rest.trim();
        let mut args: Vec<String> = if rest.starts_with('[') {
            serde_json::from_str(rest)
                .unwrap_or_else(|e| panic!("Dockerfile: bad JSON form {line:?}: {e}"))
        } else {
            rest.split_whitespace().map(str::to_string).collect()
        };
        if args.iter().any(|a| a.starts_with("--from")) {
            continue;
        }
        args.retain(|a| !a.starts_with("--"));
        args.pop(); // the destination
        out.extend(args);
    }
    out
}

/// Where the drctl container reads its config: `--config PATH` in the
/// service's `command`, else in the Dockerfile's `CMD`.
fn drctl_config_in_container(doc: &Value) -> String {
    fn after_config(args: &[String]) -> Option<String> {
        args.iter().enumerate().find_map(|(i, a)| {
            if a == "--config" || a == "-c" {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix("--config=").map(str::to_string)
            }
        })
    }
    let svc = service(doc, "drctl");
    if let Some(path) = after_config(&words(svc.get("command"))) {
        return path;
    }
    let dockerfile =
        std::fs::read_to_string(repo().join("Dockerfile")).expect("reading the Dockerfile");
    let cmd = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("CMD "))
        .expect("the Dockerfile has a CMD");
    let args: Vec<String> = serde_json::from_str(cmd.trim())
        .unwrap_or_else(|_| cmd.split_whitespace().map(str::to_string).collect());
    after_config(&args)
        .expect("neither the drctl service's `command` nor the Dockerfile's CMD passes --config")
}

/// The repository file mounted at `container_path` in `svc` (a bind mount
/// of the file itself or of a directory above it).
fn host_file_mounted_at(svc: &Value, container_path: &str) -> Option<PathBuf> {
    mounts(svc).iter().find_map(|m| {
        let src = m.host_path()?;
        if m.target == container_path {
            return Some(repo().join(src));
        }
        let below = Path::new(container_path).strip_prefix(&m.target).ok()?;
        Some(repo().join(src).join(below))
    })
}

fn drctl_config_path(doc: &Value) -> PathBuf {
    let in_container = drctl_config_in_container(doc);
    host_file_mounted_at(service(doc, "drctl"), &in_container)
        .unwrap_or_else(|| panic!("the drctl service reads {in_container}, but no bind mount from the repository provides it"))
}

#[test]
fn the_four_services_exist() {
    let doc = compose();
    let names: BTreeSet<String> = services(&doc).keys().filter_map(text).collect();
    for s in SERVICES {
        assert!(
            names.contains(s),
            "docker-compose.yml lacks the service `{s}` (it has {names:?})"
        );
        let svc = service(&doc, s);
        assert!(
            svc.get("image").is_some() || svc.get("build").is_some(),
            "service `{s}` has neither `image` nor `build`"
        );
    }
    assert!(
        service(&doc, "drctl").get("build").is_some(),
        "the drctl service is built from the repository"
    );
    for s in ["pg-primary", "pg-standby"] {
        let image = service(&doc, s)
            .get("image")
            .and_then(text)
            .unwrap_or_default();
        assert!(
            image.starts_with("postgres:15"),
            "{s} runs {image:?}, expected postgres:15"
        );
    }
}

#[test]
fn every_referenced_path_exists() {
    let doc = compose();
    let refs = referenced_paths(&doc);
    assert!(
        refs.iter()
            .any(|(what, _)| what.starts_with("drctl: build")),
        "the drctl service's build context was not found among {refs:?}"
    );
    let missing: Vec<String> = refs
        .iter()
        .filter(|(_, p)| !repo().join(p).exists())
        .map(|(what, p)| format!("{what}: {} does not exist", p.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "docker-compose.yml references missing paths:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_dockerfile_copies_only_what_exists() {
    let doc = compose();
    let build = service(&doc, "drctl")
        .get("build")
        .expect("drctl has a build");
    let context = repo().join(
        build
            .get("context")
            .and_then(text)
            .or_else(|| text(build))
            .unwrap_or_else(|| ".".into()),
    );
    let dockerfile = context.join(
        build
            .get("dockerfile")
            .and_then(text)
            .unwrap_or_else(|| "Dockerfile".into()),
    );
    let body = std::fs::read_to_string(&dockerfile)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dockerfile.display()));
    let sources = dockerfile_copy_sources(&body);
    assert!(
        !sources.is_empty(),
        "the Dockerfile copies nothing from the build context"
    );
    for src in sources {
        assert!(
            context.join(&src).exists(),
            "the Dockerfile copies {src}, which is not in the build context {}",
            context.display()
        );
    }
    assert!(
        body.contains("-p drctl"),
        "the Dockerfile builds the drctl package (`cargo build … -p drctl`)"
    );
    assert!(
        body.contains("postgresql-client-15"),
        "the runtime image carries the PostgreSQL 15 client tools"
    );
}

#[test]
fn scripts_exist_start_with_a_shebang_and_are_mounted_where_they_run() {
    let doc = compose();
    let mut scripts = 0;
    for (name, svc) in services(&doc) {
        let name = text(name).unwrap_or_default();
        let svc_mounts = mounts(svc);
        for m in &svc_mounts {
            let Some(src) = m.host_path() else { continue };
            if !src.ends_with(".sh") {
                continue;
            }
            scripts += 1;
            let path = repo().join(src);
            let body = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{name}: reading {src}: {e}"));
            assert!(
                body.starts_with("#!"),
                "{name}: {src} does not start with a shebang (#!)"
            );
        }
        // A script the container runs (entrypoint or command) must be
        // provided by a bind mount (or be in the image: not ours to check).
        for word in words(svc.get("entrypoint"))
            .iter()
            .chain(words(svc.get("command")).iter())
        {
            if word.starts_with('/') && word.ends_with(".sh") {
                assert!(
                    host_file_mounted_at(svc, word).is_some_and(|p| p.is_file()),
                    "{name} runs {word}, but no bind mount from the repository puts it there"
                );
            }
        }
    }
    assert!(scripts >= 2, "expected the primary's init script and the standby's entrypoint to be mounted, found {scripts} scripts");
}

#[test]
fn named_volumes_are_declared() {
    let doc = compose();
    let declared: BTreeSet<String> = doc
        .get("volumes")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(text).collect())
        .unwrap_or_default();
    for (name, svc) in services(&doc) {
        for m in mounts(svc) {
            if let Some(vol) = m.named_volume() {
                assert!(
                    declared.contains(vol),
                    "{name:?} mounts the volume `{vol}`, not declared under top-level `volumes`"
                );
            }
        }
    }
}

#[test]
fn healthchecks_back_every_healthy_dependency() {
    let doc = compose();
    for s in SERVICES {
        let hc = service(&doc, s).get("healthcheck");
        assert!(
            hc.and_then(|h| h.get("test")).is_some()
                && hc.and_then(|h| h.get("disable")).and_then(Value::as_bool) != Some(true),
            "service `{s}` has no healthcheck"
        );
    }
    for (name, svc) in services(&doc) {
        let Some(deps) = svc.get("depends_on").and_then(Value::as_mapping) else {
            continue;
        };
        for (dep, how) in deps {
            let dep = text(dep).unwrap_or_default();
            let target = services(&doc)
                .get(dep.as_str())
                .unwrap_or_else(|| panic!("{name:?} depends on unknown service `{dep}`"));
            if how.get("condition").and_then(text).as_deref() == Some("service_healthy") {
                assert!(
                    target.get("healthcheck").is_some(),
                    "{name:?} waits for `{dep}` to be healthy, which has no healthcheck"
                );
            }
        }
    }
    let waits_for = |who: &str, dep: &str| {
        service(&doc, who)
            .get("depends_on")
            .and_then(|d| d.get(dep))
            .and_then(|d| d.get("condition"))
            .and_then(text)
            .as_deref()
            == Some("service_healthy")
    };
    assert!(
        waits_for("pg-standby", "pg-primary"),
        "pg-standby must wait for a healthy pg-primary (it clones it)"
    );
    assert!(
        waits_for("drctl", "pg-primary"),
        "drctl must wait for a healthy pg-primary"
    );
    assert!(
        waits_for("drctl", "pg-standby"),
        "drctl must wait for a healthy pg-standby"
    );
}

#[test]
fn the_drctl_config_loads_and_the_compose_file_provides_what_it_needs() {
    let doc = compose();
    let path = drctl_config_path(&doc);
    let config = drctl_config::load(&path)
        .unwrap_or_else(|e| panic!("{} is not a valid drctl config:\n{e}", path.display()));
    let svc = service(&doc, "drctl");
    let env = environment(svc);
    let service_names: BTreeSet<String> = services(&doc).keys().filter_map(text).collect();

    let mut dsn_vars = 0;
    for s in &config.services {
        for (region, source) in &s.postgres {
            let drctl_config::DsnSource::Env(var) = source else {
                continue;
            };
            dsn_vars += 1;
            let value = env.get(var).cloned().flatten().unwrap_or_else(|| {
                panic!("{}: service {} region {region} reads its DSN from ${var}, which the drctl service's `environment` does not set", path.display(), s.name)
            });
            assert!(
                value.starts_with("postgres://") || value.starts_with("postgresql://"),
                "${var} is not a PostgreSQL URL: {value}"
            );
            // postgres://USER:PASSWORD@HOST:PORT/DB: HOST must be a compose service.
            let host = value
                .rsplit_once('@')
                .map(|(_, rest)| rest)
                .and_then(|rest| rest.split([':', '/']).next())
                .unwrap_or_default();
            assert!(
                service_names.contains(host),
                "${var} connects to {host:?}, which is not a service of docker-compose.yml"
            );
        }
    }
    assert!(
        dsn_vars >= 2,
        "expected the config's DSNs to come from the environment (dsn_env), found {dsn_vars}"
    );

    let port = config.api.listen.port();
    assert!(
        config.api.listen.ip().is_unspecified(),
        "[api] listen = {} is not reachable from outside the container; use 0.0.0.0:{port}",
        config.api.listen
    );
    let published = published_container_ports(svc);
    assert!(
        published.contains(&port),
        "drctl listens on {port}, but the service publishes only {published:?}"
    );

    let mounts = mounts(svc);
    let store = config.store.url.expose().to_string();
    if let Some(db) = store.strip_prefix("sqlite://") {
        assert!(
            mounts.iter().any(|m| m.named_volume().is_some() && Path::new(db).starts_with(&m.target)),
            "the SQLite state store {db} is not on a volume of the drctl service: its history would die with the container"
        );
    }
}

#[test]
fn the_drctl_config_validates_with_the_binary() {
    let path = drctl_config_path(&compose());
    let path = path.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) = drctl(&["config", "validate", path]);
    assert_eq!(
        code, 0,
        "drctl config validate {path} failed:\n{stdout}{stderr}"
    );
}

/// The S3 object stores of the compose config that are served by a
/// service of the compose file: (store name, bucket, compose service).
fn compose_object_stores(
    config: &drctl_config::Config,
    doc: &Value,
) -> Vec<(String, String, String)> {
    let service_names: BTreeSet<String> = services(doc).keys().filter_map(text).collect();
    config
        .object_stores
        .iter()
        .filter_map(|store| match &store.kind {
            drctl_config::ObjectStoreKind::S3 {
                bucket,
                endpoint: Some(endpoint),
                ..
            } => {
                let host = endpoint
                    .split_once("://")
                    .map_or(endpoint.as_str(), |(_, rest)| rest)
                    .split([':', '/'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                service_names
                    .contains(&host)
                    .then(|| (store.name.clone(), bucket.clone(), host))
            }
            _ => None,
        })
        .collect()
}

/// The value a service's `environment` gives `var`, as written (with its
/// `${…}` defaults).
fn env_value(svc: &Value, var: &str) -> Option<String> {
    environment(svc).get(var).cloned().flatten()
}

#[test]
fn minio_is_the_backup_store_and_drctl_can_reach_write_and_replicate() {
    let doc = compose();
    let path = drctl_config_path(&doc);
    let config = drctl_config::load(&path)
        .unwrap_or_else(|e| panic!("{} is not a valid drctl config:\n{e}", path.display()));
    let stores = compose_object_stores(&config, &doc);
    let Some((store, bucket, host)) = stores.first() else {
        panic!(
            "docker-compose.yml runs MinIO, but no [[object_stores]] of {} points at a service of it: either use it (kind = \"s3\", endpoint = \"http://minio:9000\") or remove it",
            path.display()
        )
    };
    assert_eq!(host, "minio", "the object store {store} points at {host}");
    let backed_up: Vec<&str> = config
        .services
        .iter()
        .filter(|s| s.backup.as_ref().is_some_and(|b| &b.store == store))
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        !backed_up.is_empty(),
        "no service's [services.backup] uses the object store {store}: MinIO would hold nothing"
    );
    let drctl_config::ObjectStoreKind::S3 {
        endpoint,
        path_style,
        ..
    } = &config.object_store(store).expect("the store exists").kind
    else {
        unreachable!("compose_object_stores keeps S3 stores only")
    };
    assert!(*path_style, "MinIO needs path_style = true");
    assert!(
        endpoint.as_deref() == Some("http://minio:9000"),
        "MinIO's S3 API listens on minio:9000 inside the Compose network, not {endpoint:?}"
    );

    // drctl signs with MinIO's own credentials (the AWS chain's variables).
    let minio = service(&doc, "minio");
    let drctl_svc = service(&doc, "drctl");
    for (aws, root) in [
        ("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"),
        ("AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD"),
    ] {
        let given = env_value(drctl_svc, aws)
            .unwrap_or_else(|| panic!("the drctl service does not set {aws} (MinIO's {root})"));
        assert_eq!(
            Some(given),
            env_value(minio, root),
            "the drctl service's {aws} is not MinIO's {root}"
        );
    }

    // The bucket exists before drctl starts: created by a one-shot service
    // drctl waits for.
    let creator = services(&doc)
        .iter()
        .find(|(_, svc)| env_value(svc, "BUCKET").as_deref() == Some(bucket.as_str()))
        .map(|(name, _)| text(name).unwrap_or_default())
        .unwrap_or_else(|| {
            panic!("no service of docker-compose.yml creates the bucket {bucket} (BUCKET={bucket})")
        });
    let condition = drctl_svc
        .get("depends_on")
        .and_then(|d| d.get(creator.as_str()))
        .and_then(|d| d.get("condition"))
        .and_then(text);
    assert_eq!(
        condition.as_deref(),
        Some("service_completed_successfully"),
        "drctl must wait for {creator} to have created the bucket"
    );
    let script = words(service(&doc, &creator).get("entrypoint"))
        .into_iter()
        .find(|w| w.ends_with(".sh"))
        .and_then(|w| host_file_mounted_at(service(&doc, &creator), &w))
        .unwrap_or_else(|| panic!("{creator} runs no mounted script"));
    let body = std::fs::read_to_string(&script).unwrap();
    assert!(
        body.contains("mc mb --ignore-existing") && body.contains("$BUCKET"),
        "{} does not create the bucket with `mc mb --ignore-existing`",
        script.display()
    );

    // pg_basebackup connects as drctl's role to the backed-up region: it
    // needs REPLICATION and a `replication` line in pg_hba.conf, which the
    // primary's init script gives it.
    let primary = service(&doc, "pg-primary");
    let role = env_value(primary, "DRCTL_DB_USER").expect("pg-primary sets DRCTL_DB_USER");
    for s in config.services.iter().filter(|s| s.backup.is_some()) {
        let region = &s.backup.as_ref().unwrap().from_region;
        let Some(drctl_config::DsnSource::Env(var)) = s.postgres.get(region) else {
            continue;
        };
        let dsn = env_value(drctl_svc, var).unwrap_or_default();
        assert!(
            dsn.starts_with(&format!("postgres://{role}:")),
            "service {}: backups connect with ${var} = {dsn}, not as the role {role} that the init script lets replicate",
            s.name
        );
    }
    let init = host_file_mounted_at(primary, "/docker-entrypoint-initdb.d/10-replication.sh")
        .expect("the primary's init script is mounted");
    let init = std::fs::read_to_string(init).unwrap();
    assert!(
        init.contains(r#"CREATE ROLE :"drctl_user" WITH LOGIN REPLICATION"#),
        "primary-init.sh does not give drctl's role REPLICATION (backups run pg_basebackup as it)"
    );
    assert!(
        init.contains("host replication ${DRCTL_DB_USER} all"),
        "primary-init.sh does not admit drctl's role to replication connections in pg_hba.conf"
    );
}

#[test]
fn the_image_carries_what_the_configs_backups_and_restore_tests_look_for() {
    let doc = compose();
    let path = drctl_config_path(&doc);
    let config = drctl_config::load(&path).expect("a valid config");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, last)| last)
        .expect("the Dockerfile has a runtime stage");
    if config.services.iter().any(|s| s.backup.is_some()) {
        // drctl_pg::find_pg_bin: pg_basebackup is looked for beside initdb
        // and pg_ctl, which are the server package's.
        for package in ["postgresql-client-15", "postgresql-15"] {
            assert!(
                runtime.split_whitespace().any(|w| w == package),
                "the config backs services up, but the runtime image does not install {package} (drctl looks for pg_basebackup beside initdb and pg_ctl)"
            );
        }
        assert!(
            runtime.contains("create_main_cluster = false"),
            "installing postgresql-15 creates a `main` cluster unless createcluster.conf says create_main_cluster = false"
        );
    }
    // Restore tests write whole databases under the scratch root: on the
    // state volume, not in the container's writable layer.
    if let Some(root) = &config.scratch.root {
        assert!(
            mounts(service(&doc, "drctl"))
                .iter()
                .any(|m| m.named_volume().is_some() && root.starts_with(&m.target)),
            "[scratch] root = {} is not on a volume of the drctl service",
            root.display()
        );
    }
}

/// What the compose file cannot do is off in its config and said in its
/// header and in the README, so nobody mistakes it for a DR setup.
#[test]
fn what_compose_cannot_do_is_off_and_said() {
    let doc = compose();
    let path = drctl_config_path(&doc);
    let config = drctl_config::load(&path).expect("a valid config");
    // No agent beside pg-primary (and drctl's role is no superuser): an
    // automatic failover could neither fence nor promote.
    for s in &config.services {
        assert!(
            !s.failover.automatic,
            "{}: service {} fails over automatically, which this Compose file cannot do (set [services.failover] automatic = false)",
            path.display(),
            s.name
        );
        // Nor can it rewind an old primary: no agent, no data directory.
        assert_eq!(
            s.failover.rejoin,
            drctl_config::RejoinPolicy::Manual,
            "{}: service {} rejoins automatically, which this Compose file cannot do (set [services.failover] rejoin = \"manual\")",
            path.display(),
            s.name
        );
    }
    let compose_text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let header: String = compose_text
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let (works, does_not) = header
        .split_once("WHAT DOES NOT")
        .expect("the header of docker-compose.yml has a WHAT DOES NOT part");
    assert!(
        works.contains("WHAT WORKS HERE"),
        "the header says what works"
    );
    for feature in ["backups", "restore tests", "dry run"] {
        assert!(
            works.contains(feature),
            "the header's WHAT WORKS HERE does not mention {feature}"
        );
    }
    for feature in [
        "failover",
        "switchover",
        "drills",
        "rejoin",
        "recover",
        "agent",
    ] {
        assert!(
            does_not.contains(feature),
            "the header's WHAT DOES NOT part does not mention {feature}"
        );
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let docker = readme
        .split_once("\n## Docker\n")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("README.md has a `## Docker` section");
    for feature in [
        "What works",
        "What does not",
        "MinIO",
        "restore tests",
        "drills",
        "rejoin",
        "recover",
        "agent",
    ] {
        assert!(
            docker.contains(feature),
            "README.md's Docker section does not say {feature:?}"
        );
    }
}
