//! `kvkeep verify` (quick / `--deep` / `--drill`) and `kvkeep index rebuild`: the commands that
//! prove backups restorable and recover the index from the store alone. Exit codes: 0 all good,
//! 3 some problems, 1 nothing usable or the command could not run, 2 usage or configuration.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::render::{bytes, Output, Table};
use super::restore::{
    load_identities, open_index, progress, resolve_or_fail, source, source_location, store_with,
    Opens,
};
use super::{
    exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE,
};
use crate::restore::rebuild::{rebuild, RebuildReport};
use crate::restore::verify::{drill, verify_blobs, VerifyReport};
use crate::restore::{location_of, same_vault, RestoreOptions, Restorer};

/// Arguments of `kvkeep verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Verify this vault (repeatable); default: every configured vault.
    #[arg(long = "vault", value_name = "NAME")]
    pub vaults: Vec<String>,
    /// Also open every blob and check its envelope (needs --identity).
    #[arg(long)]
    pub deep: bool,
    /// Restore the latest point into a scratch vault, compare, then delete and purge it
    /// (needs --scratch-vault and --identity).
    #[arg(long, requires = "scratch_vault")]
    pub drill: bool,
    /// The scratch vault for --drill: a configured name or a URL. It must not hold the names.
    #[arg(long, value_name = "NAME|URL")]
    pub scratch_vault: Option<String>,
    /// The age identity file (never logged).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `kvkeep index ...`
#[derive(Debug, clap::Subcommand)]
pub enum IndexAction {
    /// Recreate the index from the store's manifests alone (replaces the index file).
    Rebuild(RebuildArgs),
    /// Bring the index up to date with the runs other kvkeep instances committed to the store.
    Sync(super::sync::SyncArgs),
}

/// Arguments of `kvkeep index rebuild`.
#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The age identity file that opens the manifests, recovery or catalog (never logged).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs `kvkeep verify`.
pub fn run(args: VerifyArgs, config: &Path) -> u8 {
    exit_code_of(verify(args, config))
}

fn verify(args: VerifyArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    let names: Vec<String> = if args.vaults.is_empty() {
        config.vaults.iter().map(|v| v.name.to_string()).collect()
    } else {
        args.vaults.clone()
    };
    if names.is_empty() {
        return Err(Fail(
            EXIT_USAGE,
            "no vault to verify: configure one or pass --vault".into(),
        ));
    }
    let identities = if args.deep || args.drill {
        Some(load_identities(
            args.identity.as_deref(),
            "verify --deep/--drill",
            &config,
            Opens::Backups("verify --deep/--drill"),
        )?)
    } else {
        None
    };
    let scratch = match &args.scratch_vault {
        Some(spec) if args.drill => Some(resolve_or_fail(&config, spec)?),
        _ => None,
    };
    if let Some(scratch_cfg) = &scratch {
        refuse_source_as_scratch(&config, &names, scratch_cfg)?;
    }
    let index = open_index(&config)?;
    let rt = runtime()?;
    rt.block_on(async {
        let cancel =
            super::cancel_on_stop_signal("finishing the checks in flight, starting no more");
        let store = store_with(&config, &cancel).await?;
        let mut reports: Vec<VerifyReport> = Vec::new();
        let now = crate::clock::now_unix;
        for name in &names {
            let (location, _) = source_location(&config, name)?;
            let report = match (&scratch, &identities) {
                (Some(scratch_cfg), Some(ids)) => {
                    let restorer = Restorer {
                        store: store.clone(),
                        target: source(&config, scratch_cfg, &cancel)?,
                        identities: ids.clone(),
                        options: RestoreOptions {
                            concurrency: config.limits.concurrency,
                            ..RestoreOptions::default()
                        },
                        progress: progress(),
                        cancel: cancel.clone(),
                    };
                    drill(
                        index.clone(),
                        &restorer,
                        location,
                        location_of(scratch_cfg),
                        now(),
                    )
                    .await?
                }
                _ => {
                    verify_blobs(
                        index.clone(),
                        store.clone(),
                        &location.name,
                        identities.clone(),
                        config.limits.concurrency,
                        now(),
                        &cancel,
                    )
                    .await?
                }
            };
            reports.push(report);
        }
        print_verify(&reports, args.output);
        let bad = reports.iter().filter(|r| !r.ok()).count();
        Ok(
            if cancel.is_cancelled() || reports.iter().any(|r| r.interrupted()) {
                // Interrupted: what was not reached is unverified.
                EXIT_FAILED
            } else if bad == 0 {
                EXIT_OK
            } else if reports
                .iter()
                .all(|r| r.checked_blobs > 0 && r.problems.len() >= r.checked_blobs)
            {
                EXIT_FAILED
            } else {
                EXIT_PARTIAL
            },
        )
    })
}

/// A drill deletes and purges everything it restored into the scratch vault, so a scratch vault
/// that is one of the vaults being verified would lose its production objects. Checked before
/// the index, the store or any vault is touched.
fn refuse_source_as_scratch(
    config: &crate::config::Config,
    names: &[String],
    scratch: &crate::config::VaultConfig,
) -> Result<(), Fail> {
    for name in names {
        let (location, _) = source_location(config, name)?;
        if same_vault(&location.name, &location.url, &scratch.name, &scratch.url) {
            return Err(Fail(
                EXIT_USAGE,
                format!(
                    "verify --drill refused: the scratch vault {} ({}) is the source vault {}; a drill deletes and purges what it restores, so pass --scratch-vault an empty vault of its own",
                    scratch.name,
                    if scratch.url.is_empty() { "no url" } else { scratch.url.as_str() },
                    location.name
                ),
            ));
        }
    }
    Ok(())
}

fn print_verify(reports: &[VerifyReport], output: Output) {
    match output {
        Output::Json => println!("{}", json!({ "verify": reports })),
        Output::Table => {
            let mut table = Table::new([
                "VAULT",
                "DEPTH",
                "BLOBS",
                "MANIFESTS",
                "READ",
                "DRILLED",
                "PROBLEMS",
            ]);
            for r in reports {
                table.row(vec![
                    r.vault.to_string(),
                    r.depth.clone(),
                    r.checked_blobs.to_string(),
                    r.checked_manifests.to_string(),
                    bytes(r.read_bytes),
                    r.drilled_objects.to_string(),
                    r.problems.len().to_string(),
                ]);
            }
            print!("{}", table.render());
            for r in reports {
                for p in &r.problems {
                    println!("vault {}: {} ({}): {}", r.vault, p.object, p.blob, p.reason);
                }
            }
        }
    }
}

/// Runs `kvkeep index ...`.
pub fn run_index(action: IndexAction, config: &Path) -> u8 {
    match action {
        IndexAction::Rebuild(args) => exit_code_of(index_rebuild(args, config)),
        IndexAction::Sync(args) => super::sync::run(args, config),
    }
}

fn index_rebuild(args: RebuildArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    // Rebuild opens manifests (heads and parts) and only lists object blobs, so the catalog
    // identity will do: a DR host can rebuild before the offline key is fetched.
    let identities = load_identities(
        args.identity.as_deref(),
        "index rebuild",
        &config,
        Opens::Manifests,
    )?;
    let rt = runtime()?;
    rt.block_on(async {
        let cancel = super::cancel_on_stop_signal("stopping the rebuild; the old index stays");
        let store = store_with(&config, &cancel).await?;
        let report = rebuild(
            store,
            identities,
            &config.index_path,
            config.limits.concurrency.max(4),
            cancel,
            crate::clock::now_unix(),
        )
        .await
        .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?;
        print_rebuild(
            &report,
            &config.index_path.display().to_string(),
            args.output,
        );
        Ok(if report.problems.is_empty() {
            EXIT_OK
        } else if report.runs > 0 {
            EXIT_PARTIAL
        } else {
            EXIT_FAILED
        })
    })
}

fn print_rebuild(report: &RebuildReport, path: &str, output: Output) {
    match output {
        Output::Json => println!("{}", json!({ "rebuild": report, "index": path })),
        Output::Table => {
            println!(
                "index {path} rebuilt from the store: {} manifests, {} runs, {} captures, vaults: {}",
                report.manifests,
                report.runs,
                report.captures,
                report.vaults.join(", ")
            );
            for i in &report.incomplete {
                println!(
                    "incomplete run {} of vault {}: {} blob(s) without a manifest (not used)",
                    i.run, i.vault, i.blobs
                );
            }
            for n in &report.notes {
                println!("note: {n}");
            }
            for p in &report.problems {
                println!("problem: {p}");
            }
        }
    }
}
