//! `kvkeep lock break --vault NAME ...`: ends whoever's lease on the named vaults at once, for an
//! operator whose instance hung while holding a vault (a dead one's lease ends by itself within
//! 60 s on Azure, and with its process on a local store). The holder, if it still runs, finds
//! its lease lost at its next renew and stops before it writes a manifest, so breaking costs at
//! most that run; it never loses a restore point. Exit 0 when every lease was broken (or there
//! was none), 1 when the store failed, 2 for a usage or configuration error (no vault named, or
//! one that is not configured).

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::backup::select_vaults;
use super::restore::store_with;
use super::{exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK, EXIT_USAGE};

/// `kvkeep lock ...`
#[derive(Debug, clap::Subcommand)]
pub enum LockAction {
    /// End the lease on each named vault at once (break period 0), whoever holds it.
    Break {
        /// The vault (repeatable; at least one: breaking every lease at once is never needed).
        #[arg(long = "vault", value_name = "NAME", required = true)]
        vaults: Vec<String>,
    },
}

/// Runs `kvkeep lock ...` and returns the exit code.
pub fn run(action: LockAction, config: &Path) -> u8 {
    exit_code_of(lock_command(action, config))
}

fn lock_command(action: LockAction, config: &Path) -> Result<u8, Fail> {
    let LockAction::Break { vaults } = action;
    let config = load_config(config)?;
    let vaults = select_vaults(&config, &vaults).map_err(|e| Fail(EXIT_USAGE, e))?;
    runtime()?.block_on(async {
        let store = store_with(&config, &CancellationToken::new()).await?;
        for vault in &vaults {
            store.break_lease(&vault.name).await.map_err(|e| {
                Fail(
                    EXIT_FAILED,
                    format!("cannot break the lease on vault {}: {e}", vault.name),
                )
            })?;
            println!(
                "vault {}: lease broken; a holder still running finds it lost at its next renew and stops before its manifest",
                vault.name
            );
        }
        Ok(EXIT_OK)
    })
}
