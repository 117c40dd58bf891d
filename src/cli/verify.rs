//! `kvkeep verify` (quick / `--deep` / `--drill`) and `kvkeep index rebuild`: the commands that
//! prove backups restorable and recover the index from the store alone. Exit codes: 0 all good,
//! 3 some problems, 1 nothing usable or the command could not run, 2 usage or configuration.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::render::{bytes, Output, Table};
use super::restore::{
    load_identities, open_index, progress, resolve_or_fail, source, source_location, store,
};
use super::{
    exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE,
};
use crate::restore::rebuild::{rebuild, RebuildReport};
use crate::restore::verify::{drill, verify_blobs, VerifyReport};
use crate::restore::{location_of, RestoreOptions, Restorer};

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
}

/// Arguments of `kvkeep index rebuild`.
#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The age identity file that opens the manifests (never logged).
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
        )?)
    } else {
        None
    };
    let scratch = match &args.scratch_vault {
        Some(spec) if args.drill => Some(resolve_or_fail(&config, spec)?),
        _ => None,
    };
    let index = open_index(&config)?;
    let rt = runtime()?;
    rt.block_on(async {
        let store = store(&config).await?;
        let mut reports: Vec<VerifyReport> = Vec::new();
        let now = crate::clock::now_unix;
        for name in &names {
            let (location, _) = source_location(&config, name)?;
            let report = match (&scratch, &identities) {
                (Some(scratch_cfg), Some(ids)) => {
                    let restorer = Restorer {
                        store: store.clone(),
                        target: source(&config, scratch_cfg)?,
                        identities: ids.clone(),
                        options: RestoreOptions {
                            concurrency: config.limits.concurrency,
                            ..RestoreOptions::default()
                        },
                        progress: progress(),
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
                    )
                    .await?
                }
            };
            reports.push(report);
        }
        print_verify(&reports, args.output);
        let bad = reports.iter().filter(|r| !r.ok()).count();
        Ok(if bad == 0 {
            EXIT_OK
        } else if reports
            .iter()
            .all(|r| r.checked_blobs > 0 && r.problems.len() >= r.checked_blobs)
        {
            EXIT_FAILED
        } else {
            EXIT_PARTIAL
        })
    })
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
    let IndexAction::Rebuild(args) = action;
    exit_code_of(index_rebuild(args, config))
}

fn index_rebuild(args: RebuildArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    let identities = load_identities(args.identity.as_deref(), "index rebuild")?;
    let rt = runtime()?;
    rt.block_on(async {
        let store = store(&config).await?;
        let report = rebuild(
            store,
            identities,
            &config.index_path,
            config.limits.concurrency.max(4),
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
            for p in &report.problems {
                println!("problem: {p}");
            }
        }
    }
}
