//! Keeps `deploy/` true: the systemd units pass `systemd-analyze verify`
//! (with the real drctl binary in their ExecStart) and keep their
//! hardening; every `drctl …` command of the units and of the guide
//! (`deploy/README.md`) parses with drctl's own CLI (`drctl::cli::Cli`,
//! as `drctl` itself would parse it); the guide's example config loads; its
//! certificate command writes the files the guide installs; the variables
//! of the example environment files are the ones the config and the CLI
//! read; and the ports, paths and hosts agree between the units, the
//! config and the certificates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use drctl::cli::Cli;

const UNITS: [&str; 2] = ["drctl.service", "drctl-agent.service"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn unit_text(name: &str) -> String {
    read(&format!("deploy/systemd/{name}"))
}

/// The `Key=value` settings of a unit file, continuation lines joined,
/// comments dropped, in order, with their section.
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        let line = std::mem::take(&mut pending) + line;
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// Every value of `key` in `section`, each split into words (systemd lists).
fn values(settings: &[(String, String, String)], section: &str, key: &str) -> Vec<String> {
    settings
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .flat_map(|(_, _, v)| v.split_whitespace().map(str::to_string))
        .collect()
}

fn single(settings: &[(String, String, String)], section: &str, key: &str) -> String {
    let all: Vec<&String> = settings
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(
        all.len(),
        1,
        "[{section}] {key}= is set {} times",
        all.len()
    );
    all[0].clone()
}

/// The words of a unit's ExecStart, the program first.
fn exec_start(unit: &str) -> Vec<String> {
    let settings = unit_settings(&unit_text(unit));
    let line = single(&settings, "Service", "ExecStart");
    let line = line.trim_start_matches(['-', '@', '+', '!', ':']);
    shell_words::split(line).unwrap_or_else(|e| panic!("{unit}: ExecStart does not split: {e}"))
}

/// The value after `flag` in a command's words.
fn flag_values(words: &[String], flag: &str) -> Vec<String> {
    words
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            if w == flag {
                words.get(i + 1).cloned()
            } else {
                w.strip_prefix(&format!("{flag}=")).map(str::to_string)
            }
        })
        .collect()
}

/// Parses `drctl ARGS…` with the real CLI; clap's first complaint line on
/// failure.
fn parse_with_cli(args: &[String]) -> Result<(), String> {
    let argv = std::iter::once("drctl").chain(args.iter().map(String::as_str));
    Cli::command()
        .try_get_matches_from(argv)
        .map(|_| ())
        .map_err(|e| {
            let text = e.render().to_string();
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string()
        })
}

/// The environment variables the arguments of a subcommand read (clap's
/// `env = …`), global arguments included.
fn cli_env_vars(path: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cmd = Cli::command();
    let mut chain = vec![cmd.clone()];
    for name in path {
        match cmd.find_subcommand(name) {
            Some(sub) => cmd = sub.clone(),
            None => break,
        }
        chain.push(cmd.clone());
    }
    for c in chain {
        for arg in c.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// The lines of the ```sh / ```bash blocks of a markdown text, continuation
/// lines joined, with their 1-based line numbers.
fn shell_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_shell: Option<bool> = None;
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in markdown.lines().enumerate() {
        let trimmed = raw.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match in_shell {
                None => in_shell = Some(matches!(info.trim(), "sh" | "bash" | "shell")),
                Some(_) => {
                    out.extend(pending.take());
                    in_shell = None;
                }
            }
            continue;
        }
        if in_shell != Some(true) {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((n + 1, String::new()));
        match raw.trim_end().strip_suffix('\\') {
            Some(body) => {
                text.push_str(body);
                text.push(' ');
                pending = Some((start, text));
            }
            None => {
                text.push_str(raw);
                out.push((start, text));
            }
        }
    }
    out
}

/// The fenced blocks of a markdown text with this info string.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Outside a block: None; inside: Some(the body, when it is `lang`).
    let mut inside: Option<Option<String>> = None;
    for line in markdown.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            match inside.take() {
                Some(body) => out.extend(body),
                None => inside = Some((info.trim() == lang).then(String::new)),
            }
            continue;
        }
        if let Some(Some(body)) = inside.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// The argument lists of the `drctl` commands on a shell line: segments
/// (split at `|`, `&&`, `||`, `;`) that run drctl, directly, after
/// `VAR=value` assignments, or through `runuser … --` / `sudo …`.
fn drctl_commands(line: &str) -> Vec<Vec<String>> {
    let words =
        shell_words::split(line).unwrap_or_else(|e| panic!("not a shell line: {line}: {e}"));
    let mut segments: Vec<Vec<String>> = vec![Vec::new()];
    for w in words {
        if matches!(w.as_str(), "|" | "||" | "&&" | ";" | "&") {
            segments.push(Vec::new());
        } else if let Some(last) = w.strip_suffix(';') {
            segments.last_mut().unwrap().push(last.to_string());
            segments.push(Vec::new());
        } else {
            segments.last_mut().unwrap().push(w);
        }
    }
    segments
        .into_iter()
        .filter_map(|seg| {
            let mut rest = seg
                .iter()
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .cloned()
                .collect::<Vec<_>>();
            if matches!(rest.first().map(String::as_str), Some("runuser" | "sudo")) {
                let at = rest
                    .iter()
                    .position(|w| w == "drctl" || w.ends_with("/drctl"))?;
                rest.drain(..at);
            }
            let first = rest.first()?;
            (first == "drctl" || first == "/usr/local/bin/drctl").then(|| rest[1..].to_vec())
        })
        .collect()
}

fn guide() -> String {
    read("deploy/README.md")
}

/// The guide's example drctl config (its one ```toml block).
fn guide_config() -> String {
    let toml = blocks(&guide(), "toml");
    assert_eq!(
        toml.len(),
        1,
        "deploy/README.md has {} ```toml blocks, expected the one example config",
        toml.len()
    );
    toml.into_iter().next().unwrap()
}

/// `key = "value"` lines of a TOML text (top level of any table), as written.
fn toml_strings(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or_default().trim();
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .collect()
}

/// The variable names a TOML text names with `*_env = "NAME"`.
fn env_names_of_config(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or_default().trim();
            let (k, v) = l.split_once('=')?;
            k.trim()
                .ends_with("_env")
                .then(|| v.trim().trim_matches('"').to_string())
        })
        .collect()
}

/// The `VAR=value` lines of an environment file.
fn env_file(rel: &str) -> Vec<(String, String)> {
    read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{rel}: not VAR=value: {l}"));
            assert!(
                !k.starts_with("export "),
                "{rel}: systemd reads no `export`: {l}"
            );
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_units_pass_systemd_analyze_verify_and_stay_hardened() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("systemd-analyze is missing: install it with `apt-get install systemd` (bash tests/run.sh does not)");
    // verify checks that ExecStart's program exists: the units name
    // /usr/local/bin/drctl, where the guide installs it; here it is the
    // binary cargo built.
    let drctl = drctl_tests::drctl_bin();
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for unit in UNITS {
        let text = unit_text(unit).replace("/usr/local/bin/drctl", drctl.to_str().unwrap());
        let path = dir.path().join(unit);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out = Command::new(&analyze)
        .arg("verify")
        .arg("--man=no")
        .args(&paths)
        .output()
        .expect("running systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and unparsable values are only warnings on stderr (the
    // exit code stays 0): any line about our units fails the test.
    let about_ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(dir.path().to_str().unwrap()) || UNITS.iter().any(|u| l.contains(u)))
        .collect();
    assert!(
        out.status.success() && about_ours.is_empty(),
        "systemd-analyze verify {}:\n{stderr}",
        UNITS.join(" ")
    );

    // The sandbox as systemd scores it (0 safe … 10 unsafe).
    for path in &paths {
        let out = Command::new(&analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(path)
            .output()
            .expect("running systemd-analyze security");
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")
            })
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no exposure level from systemd-analyze security {}:\n{text}{}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(
            score < 2.5,
            "{}: systemd-analyze security scores it {score} (was 1.9); keep it hardened:\n{text}",
            path.display()
        );
    }

    for unit in UNITS {
        let s = unit_settings(&unit_text(unit));
        for (key, want) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("Restart", "on-failure"),
        ] {
            assert_eq!(single(&s, "Service", key), want, "{unit}: {key}=");
        }
        assert!(
            values(&s, "Unit", "After").contains(&"network-online.target".to_string())
                && values(&s, "Unit", "Wants").contains(&"network-online.target".to_string()),
            "{unit}: wants and comes after network-online.target"
        );
        assert_eq!(
            single(&s, "Install", "WantedBy"),
            "multi-user.target",
            "{unit}"
        );
    }
}

#[test]
fn the_orchestrator_runs_as_its_own_user_and_writes_only_its_state_directory() {
    let s = unit_settings(&unit_text("drctl.service"));
    assert_eq!(single(&s, "Service", "User"), "drctl");
    let state = PathBuf::from("/var/lib").join(single(&s, "Service", "StateDirectory"));
    // The guide's config keeps the SQLite store and the scratch root there:
    // the only place ProtectSystem=strict leaves writable for it.
    let config = guide_config();
    for url in toml_strings(&config, "url") {
        if let Some(db) = url.strip_prefix("sqlite://") {
            assert!(
                Path::new(db).starts_with(&state),
                "the guide's store {db} is outside the unit's StateDirectory {}",
                state.display()
            );
        }
    }
    for root in toml_strings(&config, "root") {
        assert!(
            Path::new(&root).starts_with(&state),
            "the guide's [scratch] root {root} is outside the unit's StateDirectory {}",
            state.display()
        );
    }
    // Its API port is the one the guide's firewall table opens.
    let listen = toml_strings(&config, "listen");
    let port = listen
        .first()
        .and_then(|l| l.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .expect("the guide's config has [api] listen");
    assert!(
        guide().contains(&format!("| {port}/tcp (`[api] listen`)")),
        "the guide's firewall table does not open the API's port {port}"
    );
}

#[test]
fn the_agent_runs_as_postgres_owns_the_server_and_may_write_where_it_must() {
    let s = unit_settings(&unit_text("drctl-agent.service"));
    assert_eq!(single(&s, "Service", "User"), "postgres");
    // Stopping or restarting the agent must not take the database down.
    assert_eq!(single(&s, "Service", "KillMode"), "process");
    // One owner: the distribution's unit is stopped first and never runs beside it.
    assert!(values(&s, "Unit", "Conflicts").contains(&"postgresql.service".to_string()));
    assert!(values(&s, "Unit", "After").contains(&"postgresql.service".to_string()));
    // Not RemoveIPC: it would pull the running server's shared memory.
    assert!(values(&s, "Service", "RemoveIPC")
        .iter()
        .all(|v| v != "yes"));

    let argv = exec_start("drctl-agent.service");
    let writable: Vec<PathBuf> = values(&s, "Service", "ReadWritePaths")
        .iter()
        .map(|p| PathBuf::from(p.trim_start_matches('-')))
        .collect();
    let data_dirs = flag_values(&argv, "--data-dir");
    assert!(
        !data_dirs.is_empty(),
        "the agent's unit serves no --data-dir"
    );
    for dir in &data_dirs {
        // The fence mark, the server log and a re-clone's old directory go
        // beside the data directory: its parent must be writable.
        let parent = Path::new(dir).parent().unwrap();
        assert!(
            writable.iter().any(|w| parent.starts_with(w)),
            "--data-dir {dir}: its parent {} is not in ReadWritePaths {writable:?} (the fence mark goes there)",
            parent.display()
        );
    }
    let state = PathBuf::from("/var/lib").join(single(&s, "Service", "StateDirectory"));
    for root in flag_values(&argv, "--scratch-root") {
        assert!(
            Path::new(&root).starts_with(&state)
                || writable.iter().any(|w| Path::new(&root).starts_with(w)),
            "--scratch-root {root} is not writable under ProtectSystem=strict"
        );
    }
    // The server's socket directory survives agent restarts.
    assert_eq!(single(&s, "Service", "RuntimeDirectory"), "postgresql");
    assert_eq!(single(&s, "Service", "RuntimeDirectoryPreserve"), "yes");

    // The guide's config reaches the agents on the port they listen on, at
    // hosts their certificates name, with the data directories they serve.
    let port = flag_values(&argv, "--listen")
        .first()
        .and_then(|l| l.rsplit_once(':').map(|(_, p)| p.to_string()))
        .expect("the agent's unit passes --listen");
    let config = guide_config();
    let urls = toml_strings(&config, "agent");
    assert!(!urls.is_empty(), "the guide's config names no agent");
    let cert_hosts: BTreeSet<String> = shell_lines(&guide())
        .into_iter()
        .flat_map(|(_, l)| {
            drctl_commands(&l)
                .into_iter()
                .filter(|c| c.starts_with(&["agent".to_string(), "certs".to_string()]))
                .flat_map(|c| flag_values(&c, "--agent"))
                .collect::<Vec<_>>()
        })
        .flat_map(|a| {
            a.split_once('=')
                .map(|(_, hosts)| hosts.split(',').map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    for url in &urls {
        let rest = url
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("agent URL {url} is not https://"));
        let (host, url_port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("agent URL {url} has no port"));
        assert_eq!(url_port, port, "{url}: the agents listen on {port}");
        assert!(
            cert_hosts.contains(host),
            "{url}: the guide's `drctl agent certs` issues no certificate naming {host} ({cert_hosts:?})"
        );
    }
    for dir in toml_strings(&config, "data_dir") {
        assert!(
            data_dirs.contains(&dir),
            "the guide's data_dir {dir} is not a --data-dir of the agent's unit ({data_dirs:?})"
        );
    }
    assert!(
        guide().contains(&format!("| {port}/tcp | the agent")),
        "the guide's firewall table does not open the agent's port {port}"
    );
}

/// Passes once `drctl agent` is merged: until then the CLI has no `agent`
/// subcommand and the agent's unit and the guide's agent commands fail.
#[test]
fn every_drctl_command_of_the_units_and_the_guide_parses_with_the_cli() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for unit in UNITS {
        let argv = exec_start(unit);
        assert_eq!(
            argv[0], "/usr/local/bin/drctl",
            "{unit} runs drctl from where the guide installs it"
        );
        checked += 1;
        if let Err(e) = parse_with_cli(&argv[1..]) {
            failures.push(format!(
                "deploy/systemd/{unit}: `drctl {}`: {e}",
                argv[1..].join(" ")
            ));
        }
    }
    for (n, line) in shell_lines(&guide()) {
        for args in drctl_commands(&line) {
            checked += 1;
            if let Err(e) = parse_with_cli(&args) {
                failures.push(format!(
                    "deploy/README.md:{n}: `drctl {}`: {e}",
                    args.join(" ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} command(s) do not parse with drctl's CLI:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 8, "only {checked} drctl commands found");
}

/// Passes once the config keys of the agents are merged (`[agents]`,
/// `[services.postgres.REGION] agent`, `[services.failover] rejoin`).
#[test]
fn the_guides_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drctl.toml");
    std::fs::write(&path, guide_config()).unwrap();
    if let Err(e) = drctl_config::load(&path) {
        panic!("the example config of deploy/README.md does not load:\n{e}");
    }
}

#[test]
fn the_environment_files_hold_what_the_config_and_the_cli_read() {
    let config = guide_config();
    let named = env_names_of_config(&config);
    let serve_env = cli_env_vars(&["serve"]);
    let drctl_env = env_file("deploy/systemd/drctl.env");
    let set: BTreeSet<String> = drctl_env.iter().map(|(k, _)| k.clone()).collect();
    for var in &named {
        assert!(
            set.contains(var),
            "the guide's config names ${var}, which deploy/systemd/drctl.env does not set"
        );
    }
    // The state store's password, for a URL without one (sqlx reads it).
    let store_password = |var: &str| {
        var == "PGPASSWORD"
            && toml_strings(&config, "url")
                .iter()
                .filter_map(|u| u.strip_prefix("postgres://"))
                .any(|rest| {
                    rest.split_once('@')
                        .is_some_and(|(user, _)| !user.contains(':'))
                })
    };
    for (var, _) in &drctl_env {
        assert!(
            named.contains(var)
                || serve_env.contains(var)
                || var.starts_with("AWS_")
                || store_password(var),
            "deploy/systemd/drctl.env sets {var}, which neither the guide's config nor `drctl serve` reads"
        );
    }
    for (var, _) in env_file("deploy/systemd/drctl-agent.env") {
        assert!(
            named.contains(&var)
                || var.starts_with("AWS_")
                || var.starts_with("DRCTL_AGENT_")
                || store_password(&var),
            "deploy/systemd/drctl-agent.env sets {var}, which the agent does not read"
        );
    }
    // The units read them from where the guide installs them.
    let s = unit_settings(&unit_text("drctl.service"));
    assert_eq!(
        single(&s, "Service", "EnvironmentFile"),
        "-/etc/drctl/drctl.env"
    );
    assert!(guide().contains("deploy/systemd/drctl.env /etc/drctl/drctl.env"));
    let s = unit_settings(&unit_text("drctl-agent.service"));
    assert_eq!(
        single(&s, "Service", "EnvironmentFile"),
        "-/etc/drctl/agent.env"
    );
    assert!(guide().contains("deploy/systemd/drctl-agent.env /etc/drctl/agent.env"));
}

/// The guide's hand-over request is a start the agent understands: the
/// body of `POST /v1/node/start` is the seam's `StartRequest`, and it does
/// not lift a fence.
#[test]
fn the_guides_start_request_is_a_start_request_that_lifts_no_fence() {
    let line = shell_lines(&guide())
        .into_iter()
        .map(|(_, l)| l)
        .find(|l| l.contains("/v1/node/start"))
        .expect("the guide starts a server through the agent");
    let words = shell_words::split(&line).unwrap();
    let body = flag_values(&words, "-d")
        .into_iter()
        .next()
        .expect("the request has a -d body");
    let req: drctl_node::StartRequest = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("the guide's start body is not a StartRequest: {e}\n{body}"));
    assert!(!req.unfence, "the guide's start must not lift a hard fence");
    let config = guide_config();
    assert!(
        toml_strings(&config, "data_dir").contains(&req.node.data_dir.display().to_string()),
        "the guide starts {}, which its config does not serve",
        req.node.data_dir.display()
    );
}

/// Passes once `drctl agent certs` is merged (it runs the binary).
#[test]
fn the_guides_certificate_command_writes_the_files_it_installs() {
    let line = shell_lines(&guide())
        .into_iter()
        .map(|(_, l)| l)
        .find(|l| l.contains("drctl agent certs"))
        .expect("the guide issues certificates with `drctl agent certs`");
    let mut args = drctl_commands(&line).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let out_at = args
        .iter()
        .position(|a| a == "--out")
        .expect("the command has --out");
    let out_name = args[out_at + 1].clone();
    let out = dir.path().join(&out_name);
    args[out_at + 1] = out.display().to_string();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = drctl_tests::drctl(&argv);
    assert_eq!(code, 0, "drctl {}:\n{stdout}{stderr}", args.join(" "));
    // Every `pki/FILE` the guide mentions was written; keys are private.
    let guide = guide();
    let prefix = format!("`{out_name}/");
    let mut mentioned = 0;
    for piece in guide.split(&prefix).skip(1) {
        let file = piece.split('`').next().unwrap();
        if file.is_empty() || file.contains(' ') {
            continue;
        }
        mentioned += 1;
        let path = out.join(file);
        assert!(
            path.is_file(),
            "the guide installs {out_name}/{file}, which `drctl agent certs` did not write"
        );
        if file.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{out_name}/{file} has mode {mode:o}");
        }
    }
    assert!(
        mentioned >= 7,
        "the guide names only {mentioned} files of {out_name}/"
    );
}
