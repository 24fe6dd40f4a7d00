//! The shipped Prometheus alert rules and Grafana dashboard
//! (`config/prometheus/drctl-rules.yml`, `config/grafana/drctl-dashboard.json`)
//! parse, are complete (every alert has a duration, a severity, a summary,
//! a description and a runbook that exists), and name only metrics the
//! daemon serves: a renamed metric breaks this test, not someone's pager.

use drctl_tests::{in_process_router, ApiClient, Service, TestConfig};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Every metric name the daemon's `/metrics` declares (counters with and
/// without `_total`, as PromQL may name either the family or the sample).
async fn served_metrics() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .service(Service::hot("orders").unreachable_postgres(1, 2))
        .parse(dir.path());
    let (app, _store) = in_process_router(config).await;
    let text = ApiClient::router(app).get("/metrics").await.body;
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            names.insert(name.to_string());
            if kind == "counter" {
                names.insert(format!("{name}_total"));
            }
        }
    }
    assert!(names.contains("drctl_rpo_exposure_seconds"), "{text}");
    names
}

/// The `drctl_…` names an expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("drctl_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.push(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn the_alert_rules_are_complete_and_name_only_served_metrics() {
    let served = served_metrics().await;
    let text = std::fs::read_to_string(repo().join("config/prometheus/drctl-rules.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("the rules are YAML");
    let mut alerts = 0;
    for group in doc["groups"].as_sequence().expect("groups:") {
        for rule in group["rules"].as_sequence().expect("rules:") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("expr");
            assert!(
                rule["for"].as_str().is_some(),
                "{name}: no `for`: one bad sample must not page"
            );
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["page", "ticket"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            for key in ["summary", "description", "runbook_url"] {
                assert!(
                    rule["annotations"][key]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{name}: no {key}"
                );
            }
            let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
            assert!(
                repo().join(runbook.split('#').next().unwrap()).is_file(),
                "{name}: {runbook} does not exist"
            );
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{name}: no drctl metric in {expr}");
            for m in names {
                assert!(served.contains(&m), "{name}: {m} is not served by /metrics");
            }
            alerts += 1;
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
}

#[tokio::test]
async fn the_grafana_dashboard_parses_and_names_only_served_metrics() {
    let served = served_metrics().await;
    let text = std::fs::read_to_string(repo().join("config/grafana/drctl-dashboard.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(doc["uid"], "drctl-overview");
    let mut exprs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if (k == "expr" || k == "query" || k == "definition") && v.is_string() {
                        out.push(v.as_str().unwrap().to_string());
                    } else {
                        walk(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&doc, &mut exprs);
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    for expr in &exprs {
        for m in metric_names(expr) {
            assert!(
                served.contains(&m),
                "the dashboard queries {m}, which /metrics does not serve ({expr})"
            );
        }
    }
}
