//! `drctl failover`, `drctl switchover` and `drctl operations`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drctl_failover::{Engine, OperationKind, OperationSaga, PlanReport, Progress, Request};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::{FailoverArgs, OperationsArgs, OperationsCommand, OutputFormat};
use crate::config_cmd::open;
use crate::output::{bytes, out, outln, print_json, seconds, table};
use crate::Reported;

/// A figure in the store's microseconds as a table cell.
fn secs_us(us: Option<i64>) -> String {
    seconds(drctl_config::secs_from_us(us))
}

/// A figure in milliseconds (an RTO, a step's time) as a table cell.
fn secs_ms(ms: Option<u64>) -> String {
    seconds(drctl_config::secs_from_ms(ms))
}

pub async fn run(kind: OperationKind, args: FailoverArgs) -> anyhow::Result<()> {
    let kind = if args.rehearse {
        OperationKind::Drill
    } else {
        kind
    };
    let (config, store) = open(&args.config).await?;
    let engine = Engine::new(config, store.clone());
    let output = args.output;

    // The request is built once; the plan the operator confirms is the
    // plan the engine executes (`run_plan`), never a recomputed one.
    let req = args.service.clone().map(|s| request(kind, &args, s));
    if args.dry_run {
        let req = req.as_ref().expect("clap requires a service");
        let plan = engine.plan(req).await?;
        let blocked = !plan.standing(args.accept_data_loss).is_empty();
        match output {
            OutputFormat::Json => print_json(&json!({ "plan": plan, "blocked": blocked }))?,
            OutputFormat::Table => out!("{}", render_plan(&plan, args.accept_data_loss))?,
        }
        return if blocked {
            Err(Reported(1).into())
        } else {
            Ok(())
        };
    }

    let confirmed = match &req {
        Some(req) if kind != OperationKind::Drill && args.resume.is_none() && !args.yes => {
            Some(confirm(&engine, req, args.accept_data_loss).await?)
        }
        _ => None,
    };

    match (&args.resume, &args.service) {
        (Some(id), _) => {
            let detail = json!({ "operation_id": id });
            crate::audit_cmd::record(&store, "operation_resumed", None, detail).await?
        }
        (None, Some(service)) => {
            let detail = json!({
                "kind": kind.as_str(), "to": args.to, "accept_data_loss": args.accept_data_loss,
                "accept_unfenced": args.accept_unfenced, "reason": args.reason,
            });
            crate::audit_cmd::record(&store, "operation_requested", Some(service), detail).await?
        }
        (None, None) => {}
    }

    let bar = ProgressBar::new(kind.steps().len() as u64);
    if output == OutputFormat::Table {
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (b, l) = (bar.clone(), lines.clone());
    let progress = move |p: Progress| match p {
        Progress::Operation { id, resumed } => {
            b.set_message(format!(
                "{} {id}",
                if resumed { "resuming" } else { "operation" }
            ));
        }
        Progress::StepStarted { step, attempt } => {
            b.set_message(if attempt > 1 {
                format!("{step} (attempt {attempt})")
            } else {
                step.to_string()
            });
        }
        Progress::StepDone { step, took_ms } => {
            b.inc(1);
            l.lock()
                .unwrap()
                .push(format!("  ✓ {step:<15} {}", secs_ms(Some(took_ms))));
        }
        Progress::StepRetrying { step, error, in_ms } => {
            b.println(format!("  ! {step}: {error} (retrying in {in_ms} ms)"));
        }
        Progress::StepFailed { step, error } => {
            l.lock().unwrap().push(format!("  ✗ {step:<15} {error}"));
        }
    };
    let result = match (&args.resume, &req, confirmed) {
        (Some(id), _, _) => engine.resume(id, args.wait, &progress).await,
        (None, Some(req), Some(plan)) => engine.run_plan(req, plan, &progress).await,
        (None, Some(req), None) => engine.run(req, &progress).await,
        (None, None, _) => unreachable!("clap requires a service or --resume"),
    };
    bar.finish_and_clear();
    if output == OutputFormat::Table {
        for line in lines.lock().unwrap().iter() {
            eprintln!("{line}");
        }
    }
    match result {
        Ok(outcome) => {
            match output {
                OutputFormat::Json => print_json(&json!({ "operation": outcome }))?,
                OutputFormat::Table if outcome.kind == OperationKind::Rejoin => {
                    let how = outcome
                        .output::<drctl_failover::Rejoined>(drctl_failover::Step::Record)
                        .and_then(|r| r.method)
                        .map_or_else(|| "nothing to do".into(), |m| m.to_string());
                    outln!(
                        "rejoin {} succeeded: {} is a streaming standby again ({how})",
                        outcome.id,
                        outcome.target
                    )?;
                }
                OutputFormat::Table => {
                    let m = outcome.measured.as_ref();
                    let rpo = match m {
                        Some(m) if m.rpo_lower_bound => format!(
                            "at least {}{}",
                            secs_us(Some(m.rpo_us)),
                            m.rpo_upper_us.map_or(String::new(), |u| format!(
                                ", at most {}",
                                secs_us(Some(u))
                            ))
                        ),
                        _ => secs_us(m.map(|m| m.rpo_us)),
                    };
                    outln!(
                        "{} {} succeeded: measured RPO {} ({}, {}), RTO {} (target {}){}",
                        outcome.kind.as_str(),
                        outcome.id,
                        rpo,
                        bytes(m.map(|m| m.rpo_bytes as i64)),
                        m.map_or("-", |m| m.rpo_basis.as_str()),
                        secs_ms(m.map(|m| m.rto_ms)),
                        secs_ms(m.map(|m| m.rto_target_ms)),
                        m.and_then(|m| m.write_outage_ms)
                            .map_or(String::new(), |w| format!(
                                ", write outage {}",
                                secs_ms(Some(w))
                            )),
                    )?;
                    let plan = outcome.plan();
                    let (old, service) =
                        plan.as_ref().map_or(("the old primary", "SERVICE"), |p| {
                            (p.source.as_str(), p.service.as_str())
                        });
                    match &outcome.rejoin {
                        Some(r) if r.status == Some(drctl_failover::OpStatus::Succeeded) => outln!(
                            "rejoin {} succeeded: {} streams from {} again (automatic: [services.failover] rejoin = \"auto\")",
                            r.id.as_deref().unwrap_or("-"),
                            old,
                            outcome.target
                        )?,
                        Some(r) => outln!(
                            "the automatic rejoin of the old primary did not complete{}: it stays fenced; the daemon tries again, or run `drctl rejoin {} --region REGION`",
                            r.error.as_deref().map_or(String::new(), |e| format!(" ({e})")),
                            service
                        )?,
                        None => {}
                    }
                }
            }
            Ok(())
        }
        Err(e) => {
            if output == OutputFormat::Json {
                print_json(&json!({ "error": { "code": e.code(), "message": e.to_string() } }))?;
                return Err(Reported(1).into());
            }
            Err(e.into())
        }
    }
}

/// A failover or switchover changes production: on a terminal, show the
/// plan and ask; elsewhere, insist on `--yes` (a script that forgot it must
/// not fail a shop over).
/// Shows the plan and asks; the plan shown is returned, to be executed.
async fn confirm(engine: &Engine, req: &Request, accept: bool) -> anyhow::Result<PlanReport> {
    use std::io::{BufRead, IsTerminal, Write};
    let what = format!("{} of {}", req.kind.as_str(), req.service);
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "a {what} changes production: pass --yes to confirm when not on a terminal (--dry-run shows the plan)"
        );
    }
    let plan = engine.plan(req).await?;
    eprint!("{}", render_plan(&plan, accept));
    if !plan.standing(accept).is_empty() {
        // The run refuses anyway, and records why.
        return Ok(plan);
    }
    eprint!("Start the {what} now? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
        Ok(plan)
    } else {
        eprintln!("nothing done");
        Err(Reported(1).into())
    }
}

fn request(kind: OperationKind, args: &FailoverArgs, service: String) -> Request {
    Request {
        kind,
        service,
        to: args.to.clone(),
        accept_data_loss: args.accept_data_loss,
        accept_unfenced: args.accept_unfenced,
        requested_by: "cli".into(),
        reason: args.reason.clone(),
        detected_at: None,
    }
}

fn render_plan(p: &PlanReport, accept: bool) -> String {
    let mut out = format!(
        "{} of {} (cluster {}: {}): {} → {}\n",
        p.kind.as_str(),
        p.service,
        p.cluster,
        p.members.join(", "),
        p.source,
        p.target
    );
    let engine = p.engine;
    let node = |state: &Option<drctl_node::ServerState>, err: &Option<String>| match (state, err) {
        (Some(s), _) => format!(
            "{}{}, {} {}, {} {}",
            if s.standby { "standby" } else { "primary" },
            if s.fenced { " (fenced)" } else { "" },
            engine.history_name(),
            s.history,
            engine.position_name(),
            engine.format_position(s.position)
        ),
        (None, Some(e)) => format!("unreachable: {e}"),
        (None, None) => "no datastore".into(),
    };
    out += &format!(
        "  source         {}@{}: {}\n",
        p.cluster,
        p.source,
        node(&p.source_state, &p.source_error)
    );
    out += &format!(
        "  target         {}@{}: {}\n",
        p.cluster,
        p.target,
        node(&p.target_state, &p.target_error)
    );
    out += &format!(
        "  expected loss  {} ({}) — {}; RPO target {}\n",
        secs_us(p.expected_loss_us),
        bytes(p.expected_loss_bytes.map(|b| b as i64)),
        p.expected_loss_basis,
        secs_us(Some(p.rpo_target_us))
    );
    out += &format!(
        "  expected RTO   {} — {}; RTO target {}\n",
        secs_ms(p.expected_rto_ms),
        p.expected_rto_basis,
        secs_ms(Some(p.rto_target_ms))
    );
    out += &format!("  fence          {}\n", p.fence);
    if p.dns.is_empty() {
        out += "  DNS            no record to flip\n";
    }
    for d in &p.dns {
        out += &format!("  DNS            {d}\n");
    }
    out += &format!(
        "  steps          {}\n",
        p.steps
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    );
    let standing = p.standing(accept);
    if standing.is_empty() {
        out += "  blockers       none: the operation would run\n";
    } else {
        for b in &p.blockers {
            let state = if accept && b.overridable {
                "accepted"
            } else {
                "BLOCKS"
            };
            out += &format!("  {state:<14} {} [{}]\n", b.message, b.code);
        }
    }
    out
}

pub async fn operations(args: OperationsArgs) -> anyhow::Result<()> {
    let (_config, store) = open(&args.config).await?;
    let command = args.command.unwrap_or(match args.id {
        Some(id) => OperationsCommand::Show {
            id,
            output: args.output,
        },
        None => OperationsCommand::List {
            output: args.output,
        },
    });
    match command {
        OperationsCommand::List { output } => {
            let ops = store.operations(200).await?;
            match output {
                OutputFormat::Json => print_json(&json!({ "operations": ops }))?,
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = ops
                        .iter()
                        .map(|o| {
                            vec![
                                o.id.clone(),
                                o.kind.to_string(),
                                o.service.clone().unwrap_or_default(),
                                o.status.to_string(),
                                o.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                                o.ended_at.map_or("-".into(), |e| {
                                    secs_ms(Some(
                                        (e - o.started_at).num_milliseconds().max(0) as u64
                                    ))
                                }),
                                o.error.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    out!(
                        "{}",
                        table(
                            &["ID", "KIND", "SERVICE", "STATUS", "STARTED", "TOOK", "ERROR"],
                            &rows
                        )
                    )?;
                }
            }
        }
        OperationsCommand::Show { id, output } => {
            let op = store.operation(&id).await?.ok_or_else(|| {
                anyhow::anyhow!("no operation {id} (see `drctl operations list`)")
            })?;
            let mut steps = store.journal(&id).await?;
            // Each action's own output, not the journal's envelope.
            for s in &mut steps {
                s.output = s
                    .output
                    .as_deref()
                    .map(|t| drctl_failover::view_output(t).to_string());
            }
            match output {
                OutputFormat::Json => print_json(&json!({ "operation": op, "steps": steps }))?,
                OutputFormat::Table => {
                    outln!(
                        "{} {} of {}: {}{}",
                        op.kind,
                        op.id,
                        op.service.clone().unwrap_or_default(),
                        op.status,
                        op.error
                            .as_deref()
                            .map_or(String::new(), |e| format!(" ({e})"))
                    )?;
                    let rows: Vec<Vec<String>> = steps
                        .iter()
                        .map(|s| {
                            vec![
                                s.step.clone(),
                                s.status.to_string(),
                                s.attempts.to_string(),
                                format!(
                                    "+{}",
                                    secs_ms(Some(
                                        (s.started_at - op.started_at).num_milliseconds().max(0)
                                            as u64
                                    ))
                                ),
                                s.ended_at.map_or("-".into(), |e| {
                                    secs_ms(Some(
                                        (e - s.started_at).num_milliseconds().max(0) as u64
                                    ))
                                }),
                                s.error.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    out!(
                        "{}",
                        table(
                            &["STEP", "STATUS", "ATTEMPTS", "AT", "TOOK", "ERROR"],
                            &rows
                        )
                    )?;
                    if let Some(r) = &op.result {
                        outln!("result: {r}")?;
                    }
                }
            }
        }
    }
    Ok(())
}
