//! The fence hook: an operator's command that cuts an unreachable old
//! primary off (stop its VM, revoke its security group, pull its network)
//! before DNS announces the new one.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// What the hook did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    /// The last 2 KiB of its stdout and stderr.
    pub output: String,
    pub took_ms: u64,
}

/// Runs `argv` (no shell) with `{service}`, `{region}` and `{operation}`
/// replaced; an error when it cannot start, times out or exits non-zero.
pub async fn run(
    argv: &[String],
    service: &str,
    region: &str,
    operation: &str,
    timeout: Duration,
) -> Result<HookRun, String> {
    let argv: Vec<String> = argv
        .iter()
        .map(|a| {
            a.replace("{service}", service)
                .replace("{region}", region)
                .replace("{operation}", operation)
        })
        .collect();
    let Some((program, args)) = argv.split_first() else {
        return Err("the fence hook is empty".into());
    };
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start fence hook {program}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (a, b, status) = tokio::join!(
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err),
            child.wait()
        );
        a.and(b).and(status.map(|s| (s, out, err)))
    };
    let (status, out, err) = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(format!("fence hook {program}: {e}")),
        Err(_) => return Err(format!("fence hook {program} timed out after {timeout:?}")),
    };
    let mut output = String::from_utf8_lossy(&out).into_owned();
    output.push_str(&String::from_utf8_lossy(&err));
    if output.len() > 2048 {
        let cut = output.len() - 2048;
        let cut = (cut..output.len())
            .find(|i| output.is_char_boundary(*i))
            .unwrap_or(0);
        output = output[cut..].to_string();
    }
    let run = HookRun {
        argv: argv.clone(),
        exit_code: status.code(),
        output,
        took_ms: started.elapsed().as_millis() as u64,
    };
    if status.success() {
        Ok(run)
    } else {
        Err(format!(
            "fence hook {program} exited with {status}: {}",
            run.output.trim()
        ))
    }
}
