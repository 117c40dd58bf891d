//! `kvkeep daemon`: runs the configured schedules in the foreground until SIGTERM or Ctrl-C.

use std::path::Path;
use std::sync::Arc;

use super::{exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK};
use crate::backup::{system_clock, Runner};

/// Runs `kvkeep daemon`.
pub fn run(config_path: &Path) -> u8 {
    exit_code_of(daemon(config_path))
}

fn daemon(config_path: &Path) -> Result<u8, Fail> {
    let config = load_config(config_path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let cancel = super::cancel_on_stop_signal("stopping: finishing the objects in flight");
        let runner = Runner::open_cancellable(&config, false, system_clock(), cancel.clone())
            .await
            .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?;
        let clock: crate::scheduler::WallClock = Arc::new(crate::clock::now);
        crate::daemon::run(Arc::new(runner), &config, clock, cancel).await;
        Ok(EXIT_OK)
    })
}
