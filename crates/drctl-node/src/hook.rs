//! The fence hook: an operator's command that cuts an unreachable old
//! primary off (stop its VM, revoke its security group, pull its network)
//! before DNS announces the new one. [`crate::LocalNode`]'s hard fence runs
//! it; this is drctl-failover's `hook.rs` moved below the seam unchanged
//! (the engine's copy goes when its fence step calls
//! [`crate::NodeActions::hard_fence`]).
//!
//! The hook runs with an empty environment but for `PATH`, `HOME`, `LANG`
//! and the `DRCTL_FENCE_*` variables naming what to fence: drctl's own
//! environment holds API token secrets, DSN passwords and AWS keys the hook
//! has no business with (it reads its own credentials, e.g. `~/.aws`). What
//! it prints is kept only as a bounded tail ([`OUTPUT_KEPT`]), however much
//! it writes; its argv and output are shown to operators and admins only
//! (the API redacts them for viewers).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::HookRun;

/// How much of the hook's stdout and of its stderr is kept (each; the
/// journaled output is the last [`OUTPUT_KEPT`] bytes of both together).
pub const OUTPUT_KEPT: usize = 2048;

/// Reads `reader` to its end keeping only the last `cap` bytes: a hook that
/// prints without end costs drctl no more memory than that.
async fn read_tail(mut reader: impl AsyncRead + Unpin, cap: usize) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::with_capacity(cap * 2);
    let mut buf = [0u8; 8192];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > cap * 2 {
            kept.drain(..kept.len() - cap);
        }
    }
}

/// The last `cap` bytes of `text`, cut at a character boundary.
fn tail(text: String, cap: usize) -> String {
    if text.len() <= cap {
        return text;
    }
    let cut = text.len() - cap;
    let cut = (cut..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[cut..].to_string()
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
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear();
    for name in ["PATH", "HOME", "LANG"] {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    let mut child = cmd
        .env("DRCTL_FENCE_SERVICE", service)
        .env("DRCTL_FENCE_REGION", region)
        .env("DRCTL_FENCE_OPERATION", operation)
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
        let (out, err, status) = tokio::join!(
            read_tail(&mut stdout, OUTPUT_KEPT),
            read_tail(&mut stderr, OUTPUT_KEPT),
            child.wait()
        );
        status.and_then(|s| Ok((s, out?, err?)))
    };
    let (status, out, err) = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(format!("fence hook {program}: {e}")),
        Err(_) => return Err(format!("fence hook {program} timed out after {timeout:?}")),
    };
    let mut output = String::from_utf8_lossy(&out).into_owned();
    output.push_str(&String::from_utf8_lossy(&err));
    let output = tail(output, OUTPUT_KEPT);
    let run = HookRun {
        argv: argv.clone(),
        exit_code: status.code(),
        output,
        took_ms: started.elapsed().as_millis() as u64,
    };
    if status.success() {
        Ok(run)
    } else {
        // The error is journaled and shown to every viewer of the
        // operation: it names the program and its status, not its output
        // (which goes to drctl's log, for whoever runs it).
        tracing::warn!(program = %program, %status, output = %run.output.trim(), "the fence hook failed");
        Err(format!(
            "fence hook {program} exited with {status}; its output is in drctl's log"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    /// The process's peak resident memory so far (`VmHWM`), in KiB.
    fn peak_rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/self/status")
    }

    #[tokio::test]
    async fn a_hook_that_prints_without_end_costs_only_the_tail_that_is_kept() {
        let before = peak_rss_kib();
        let run = run(
            &argv("head -c 536870912 /dev/zero; echo the-end"),
            "orders",
            "eu-west",
            "op-1",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
        let grown = peak_rss_kib().saturating_sub(before);
        assert!(run.output.len() <= OUTPUT_KEPT && run.output.ends_with("the-end\n"));
        assert!(
            grown < 128 * 1024,
            "peak memory grew by {grown} KiB while the hook printed 512 MiB"
        );
    }

    #[tokio::test]
    async fn a_hook_gets_what_to_fence_but_not_drctls_environment() {
        // cargo gives the test process CARGO_PKG_NAME; the hook must not see it.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let run = run(
            &argv("env"),
            "orders",
            "eu-west",
            "op-2",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(!run.output.contains("CARGO_PKG_NAME"), "{}", run.output);
        assert!(
            run.output.contains("DRCTL_FENCE_SERVICE=orders"),
            "{}",
            run.output
        );
        assert!(
            run.output.contains("DRCTL_FENCE_REGION=eu-west"),
            "{}",
            run.output
        );
    }

    #[tokio::test]
    async fn a_failing_hooks_error_does_not_repeat_its_output() {
        let e = run(
            &argv("echo planted-hook-error-output; exit 3"),
            "s",
            "r",
            "op",
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
        assert!(!e.contains("planted-hook-error-output"), "{e}");
        assert!(e.contains("/bin/sh") && e.contains('3'), "{e}");
    }

    #[test]
    fn only_the_tail_is_kept() {
        assert_eq!(tail("abcdef".into(), 3), "def");
        assert_eq!(tail("ab".into(), 3), "ab");
    }
}
