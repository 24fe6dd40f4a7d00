//! Keeps `docker-compose.yml` (and the `Dockerfile` it builds) true to the
//! repository, without a Docker engine: the file parses, its services are
//! there, every host path it names exists, the drctl service's config is
//! valid and gets every DSN variable it names and its port published, and
//! the scripts it runs are scripts.

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
