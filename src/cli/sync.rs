//! `kvkeep index sync`: brings this host's index up to date with the runs other kvkeep
//! instances committed to the shared store, as the daemon does every `[daemon] sync_interval`
//! and before each backup and prune (`crate::restore::sync`). Exit codes: 0 synced, 3 some
//! manifests or vaults could not be synced (listed), 1 none could, 2 usage or configuration.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::render::Output;
use super::restore::{load_identities, Opens};
use super::{
    exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE,
};
use crate::backup::{system_clock, Runner};
use crate::model::VaultName;
use crate::restore::sync::SyncReport;

/// Arguments of `kvkeep index sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Sync this vault (repeatable); default: every configured vault.
    #[arg(long = "vault", value_name = "NAME")]
    pub vaults: Vec<String>,
    /// The age identity file that opens the manifests, recovery or catalog (never logged);
    /// default: `[encryption] catalog_identity_file`.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs `kvkeep index sync`.
pub fn run(args: SyncArgs, config: &Path) -> u8 {
    exit_code_of(index_sync(args, config))
}

fn index_sync(args: SyncArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    let names: Vec<VaultName> = if args.vaults.is_empty() {
        config.vaults.iter().map(|v| v.name.clone()).collect()
    } else {
        args.vaults
            .iter()
            .map(|n| {
                n.parse()
                    .map_err(|e| Fail(EXIT_USAGE, format!("--vault {n:?}: {e}")))
            })
            .collect::<Result<_, _>>()?
    };
    if names.is_empty() {
        return Err(Fail(
            EXIT_USAGE,
            "no vault to sync: configure one or pass --vault".into(),
        ));
    }
    let given = match args.identity.as_deref() {
        Some(path) => Some(load_identities(
            Some(path),
            "index sync",
            &config,
            Opens::Manifests,
        )?),
        None => None,
    };
    let rt = runtime()?;
    rt.block_on(async {
        let cancel = super::cancel_on_stop_signal("stopping the sync; the runs replayed stay");
        let runner = Runner::open_cancellable(&config, false, system_clock(), cancel.clone())
            .await
            .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?;
        let identities = given
            .or_else(|| runner.catalog_identity().cloned())
            .ok_or_else(|| {
                Fail(
                    EXIT_USAGE,
                    "index sync needs an identity that opens manifests: set [encryption] catalog_identity_file or pass --identity FILE".into(),
                )
            })?;
        let store = runner
            .store()
            .cloned()
            .ok_or_else(|| Fail(EXIT_FAILED, "the store is not open".into()))?;
        let mut reports: Vec<Result<SyncReport, String>> = Vec::new();
        for vault in &names {
            reports.push(
                runner
                    .sync_offline(vault, &store, &identities, &cancel)
                    .await,
            );
        }
        print(&reports, args.output);
        let synced = reports.iter().filter(|r| r.is_ok()).count();
        let clean = reports
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.problems.is_empty()));
        Ok(if clean {
            EXIT_OK
        } else if synced > 0 {
            EXIT_PARTIAL
        } else {
            EXIT_FAILED
        })
    })
}

fn print(reports: &[Result<SyncReport, String>], output: Output) {
    match output {
        Output::Json => {
            let vaults: Vec<_> = reports
                .iter()
                .map(|r| match r {
                    Ok(report) => json!(report),
                    Err(e) => json!({ "error": e }),
                })
                .collect();
            println!("{}", json!({ "sync": vaults }));
        }
        Output::Table => {
            for r in reports {
                match r {
                    Ok(r) => {
                        println!(
                            "vault {}: {} manifests in the store, {} runs replayed ({} captures), {} restore points forgotten",
                            r.vault, r.manifests, r.replayed_runs, r.captures, r.forgotten_points
                        );
                        for n in &r.notes {
                            println!("note: {n}");
                        }
                        for p in &r.problems {
                            println!("problem: {p}");
                        }
                    }
                    Err(e) => println!("error: {e}"),
                }
            }
        }
    }
}
