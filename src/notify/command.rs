//! `kind = "command"`: runs a program with the run summary on its standard input.
//!
//! No shell is involved — `argv[0]` is an absolute path and the arguments are passed as they
//! are — so nothing in a vault or object name can become shell syntax. The program gets the
//! JSON on stdin and `KVKEEP_VAULT` / `KVKEEP_OUTCOME` in its environment; its stdout is
//! discarded and the first line of its stderr explains a failure.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::summary::truncate;

/// stderr kept for the error message; the rest is read and dropped, so a chatty program never
/// blocks on a full pipe.
const STDERR_KEPT_BYTES: usize = 4_096;
/// The stderr line quoted in an error, in characters.
const STDERR_LINE_CHARS: usize = 200;

/// Runs `argv` with `input` on stdin; success is exit status 0 within `timeout`. On timeout the
/// program is killed.
pub(super) async fn run(
    argv: &[String],
    input: &[u8],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("argv is empty".into());
    };
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Should this future be dropped (the daemon shutting down), the program goes with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the command: {e}"))?;
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        let feed = async {
            if let Some(mut pipe) = stdin.take() {
                // A program that exits without reading its input has not failed for that; its
                // exit status says whether it did.
                let _ = pipe.write_all(input).await;
                // Dropping the pipe closes it: the program sees the end of its input.
            }
        };
        let drain = async {
            let mut kept = Vec::new();
            if let Some(pipe) = stderr.as_mut() {
                let mut buf = [0u8; 4_096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let room = STDERR_KEPT_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            kept
        };
        let ((), kept, status) = tokio::join!(feed, drain, child.wait());
        (kept, status)
    })
    .await;
    match finished {
        Err(_) => {
            // Killed and reaped here, so no zombie is left behind.
            let _ = child.kill().await;
            Err(format!(
                "timed out after {}; the command was killed",
                humantime::format_duration(timeout)
            ))
        }
        Ok((_, Err(e))) => Err(format!("cannot wait for the command: {e}")),
        Ok((_, Ok(status))) if status.success() => Ok(()),
        Ok((kept, Ok(status))) => {
            let text = String::from_utf8_lossy(&kept);
            match text.lines().map(str::trim).find(|l| !l.is_empty()) {
                Some(line) => Err(format!(
                    "the command failed ({status}): {}",
                    truncate(line, STDERR_LINE_CHARS)
                )),
                None => Err(format!(
                    "the command failed ({status}) and wrote nothing to stderr"
                )),
            }
        }
    }
}
