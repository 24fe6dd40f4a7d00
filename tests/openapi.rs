//! The served OpenAPI document against the running daemon on the real lab:
//! schemathesis (PyPI) generates requests from the document — valid ones
//! and invalid ones — and checks every answer: no 5xx, every status code
//! documented, every body valid against its schema, invalid input refused.
//! Twice: as admin with every read (the audit log included), and as a
//! viewer with every endpoint (the ones that start work must answer 403,
//! as documented, and start nothing).

use std::path::PathBuf;
use std::process::Command;

use drctl_tests::*;

/// tests/run.sh installs schemathesis into .venv-test and exports its path.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/schemathesis")
        });
    assert!(
        path.is_file(),
        "{} is missing: install it with `python3 -m venv .venv-test && .venv-test/bin/pip install \
         'schemathesis>=4,<5'` (bash tests/run.sh does) or set SCHEMATHESIS",
        path.display()
    );
    path
}

fn run(api: &str, token: &str, extra: &[&str]) -> String {
    let out = Command::new(schemathesis())
        .args(["run", &format!("{api}/api/v1/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--seed",
            "20261124",
        ])
        .args(["--no-color"])
        .args(extra)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(
        !text.contains("Unresolvable references"),
        "the document has dangling references:\n{text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_holds_for_every_generated_request() {
    let (lab, _dir) = start_lab(vec![orders(), catalog()]).await;
    let daemon = start_daemon(&lab).await;
    let api = daemon.api_url();
    // Some evidence for the lists to hold.
    let config = lab.config_path().to_str().unwrap().to_string();
    let (code, _, err) = drctl(&["backup", "run", "catalog", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    wait_for("samples", std::time::Duration::from_secs(20), || async {
        let v: serde_json::Value = reqwest::get(format!("{api}/api/v1/rpo-rto"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["services"][0]["rpo"]["exposure_s"].is_number()).then_some(())
    })
    .await;

    let admin = lab_token(&lab, "admin");
    let out = run(&api, &admin, &["--include-method", "GET"]);
    assert!(out.contains("passed"), "{out}");
    let viewer = lab_token(&lab, "viewer");
    run(&api, &viewer, &[]);
    // The viewer's POSTs were all refused: nothing was started.
    let (code, out, _) = drctl(&["operations", "--config", &config, "--output", "json"]);
    assert_eq!(code, 0);
    let ops: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ops["operations"].as_array().map(Vec::len), Some(0), "{ops}");
    daemon.stop().await;
    lab.teardown().unwrap();
}
