//! `kvkeep daemon`: runs the configured schedules in the foreground until SIGTERM or Ctrl-C;
//! SIGHUP reloads the configuration.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK};
use crate::backup::{system_clock, Runner};
use crate::daemon::{DaemonOptions, Stopped};

/// Runs `kvkeep daemon`.
pub fn run(config_path: &Path) -> u8 {
    exit_code_of(daemon(config_path))
}

fn daemon(config_path: &Path) -> Result<u8, Fail> {
    let config = load_config(config_path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let cancel = super::cancel_on_stop_signal("stopping: finishing the objects in flight");
        let hangups = hangups()?;
        // Bound before anything else: a port in use stops the start with a clear error, not
        // a daemon that runs while its monitoring says it is down.
        let listen = config
            .daemon
            .listen
            .map(|a| a.to_string())
            .unwrap_or_default();
        let listener = crate::daemon::http::bind(&listen)
            .await
            .map_err(|e| Fail(EXIT_FAILED, e))?;
        let runner = Runner::open_cancellable(&config, false, system_clock(), cancel.clone())
            .await
            .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?;
        let options = DaemonOptions {
            config_path: config_path.to_path_buf(),
            clock: Arc::new(crate::clock::now),
            run_clock: system_clock(),
            listener,
        };
        match crate::daemon::run(Arc::new(runner), options, hangups, cancel).await {
            Stopped::Cleanly => Ok(EXIT_OK),
            Stopped::TimedOut => Err(Fail(
                EXIT_FAILED,
                "stopped before the runs in flight ended ([daemon] shutdown_timeout)".into(),
            )),
        }
    })
}

/// A channel that yields once per SIGHUP. Installed before the daemon reports ready, so a
/// reload sent right after READY=1 is never taken for the default action (termination).
fn hangups() -> Result<mpsc::UnboundedReceiver<()>, Fail> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())
            .map_err(|e| Fail(EXIT_FAILED, format!("cannot handle SIGHUP: {e}")))?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(tx);
    Ok(rx)
}
