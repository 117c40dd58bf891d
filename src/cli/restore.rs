//! `kvkeep restore`: point-in-time restore of a vault (or selected objects) into the same or
//! another vault. Plan first (printed by `--dry-run`), then execute. Exit codes: 0 every object
//! restored or skipped, 3 some failed, 1 all failed or the restore was refused, 2 usage or
//! configuration error. Also the setup shared by `kvkeep verify` and `kvkeep index rebuild`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::render::{bytes, progress_bar, time, Output, Table};
use super::{
    exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE,
};
use crate::config::{Config, VaultConfig};
use crate::crypto::Identities;
use crate::index::Index;
use crate::restore::{
    location_of, plan_restore, resolve_target, when, ConflictPolicy, NoRestoreProgress,
    ObjectOutcome, ObjectRef, Outcome, Overall, PlanError, RestoreError, RestoreOptions,
    RestorePlan, RestoreProgress, RestoreReport, RestoreRequest, Restorer, VaultLocation,
};
use crate::source::{
    AzureSourceOptions, AzureVaultSource, RateLimitOptions, RateLimiter, VaultSource,
};
use crate::store::{open_store_cancellable, BlobStore};

/// Arguments of `kvkeep restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The vault whose backups to restore.
    #[arg(long, value_name = "NAME")]
    pub vault: String,
    /// The point in time: RFC 3339 (2026-11-28T19:05:00Z), relative ("2h ago", "3d ago") or "now".
    #[arg(long, value_name = "TIME", default_value = "now")]
    pub at: String,
    /// Restore into this vault instead: a configured vault name or a vault URL.
    #[arg(long, value_name = "NAME|URL")]
    pub to_vault: Option<String>,
    /// Restore only this object (repeatable), as KIND/NAME (secrets/db-password).
    #[arg(long, value_name = "KIND/NAME")]
    pub only: Vec<ObjectRef>,
    /// What to do when the target already holds a name.
    #[arg(long, value_name = "POLICY", default_value = "skip",
          value_parser = ["skip", "fail", "recover-then-skip", "purge-then-restore"])]
    pub on_conflict: String,
    /// With --on-conflict purge-then-restore: purge soft-deleted objects even where kvkeep cannot
    /// check that key vault will accept the backups (subscription or geography of a vault not
    /// configured, an unconfigured --to-vault URL, keys into a vault of unknown pricing tier).
    /// Without it such objects are reported failed and their soft-deleted copies left alone.
    #[arg(long)]
    pub assume_compatible: bool,
    /// The age identity file that opens the backups (never logged).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// After a purge, how long to retry a restore the service refuses because the name is still
    /// blocked (e.g. "60s", "2m"; at most 1h).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_purge_wait)]
    pub purge_wait: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// The longest `--purge-wait`. Key Vault frees a purged name within seconds to minutes; an hour
/// is generous, and a bound keeps the deadline `now + wait` from overflowing.
const MAX_PURGE_WAIT: Duration = Duration::from_secs(3_600);

fn parse_purge_wait(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration_within(text, Duration::ZERO, MAX_PURGE_WAIT)
}

impl From<RestoreError> for Fail {
    fn from(e: RestoreError) -> Self {
        let code = match &e {
            RestoreError::Plan(PlanError::UnknownObjects { .. }) => EXIT_USAGE,
            _ => EXIT_FAILED,
        };
        Fail(code, e.to_string())
    }
}

/// What a command opens with the identities it loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opens {
    /// Manifests only (`index rebuild`): a catalog identity will do.
    Manifests,
    /// Object blobs too (restore, deep verify, drills): a recovery identity is needed, and a
    /// file with only catalog identities is refused up front, naming what it is.
    Backups(&'static str),
}

/// Loads identities (exit 2 when the file is missing or invalid, or holds only catalog
/// identities where backups must be opened). Identities whose recipient is the configured
/// catalog recipient count as catalog identities whatever their file says. The message names
/// the option, never the file's content or its path.
pub(crate) fn load_identities(
    path: Option<&Path>,
    why: &str,
    config: &Config,
    opens: Opens,
) -> Result<Arc<Identities>, Fail> {
    let path = path.ok_or_else(|| {
        let which = match opens {
            Opens::Manifests => {
                "the age identity matching the configured recipients or catalog_recipient"
            }
            Opens::Backups(_) => "the age identity matching the configured recipients",
        };
        Fail(EXIT_USAGE, format!("{why} needs --identity FILE: {which}"))
    })?;
    // The path is not repeated: an identity pasted as the argument would be printed back.
    let shown = format!("identity file {}", path.display());
    let identities = Identities::from_file(path)
        .map(|ids| ids.with_catalog_recipient(config.encryption.catalog_recipient.as_deref()))
        .map_err(|e| {
            Fail(
                EXIT_USAGE,
                e.to_string()
                    .replace(&shown, "identity file given with --identity"),
            )
        })?;
    if let Opens::Backups(what) = opens {
        identities
            .require_recovery(what)
            .map_err(|e| Fail(EXIT_USAGE, e.to_string()))?;
    }
    Ok(Arc::new(identities))
}

/// Opens an existing index; a missing file is not created (restore would find nothing) but
/// reported with the remedy.
pub(crate) fn open_index(config: &Config) -> Result<Arc<Index>, Fail> {
    if !config.index_path.exists() {
        return Err(Fail(
            EXIT_FAILED,
            format!(
                "no index at {}: on a fresh host recreate it from the store with `kvkeep index rebuild --identity FILE`",
                config.index_path.display()
            ),
        ));
    }
    Index::open(&config.index_path)
        .map(Arc::new)
        .map_err(|e| Fail(EXIT_FAILED, RestoreError::from(e).to_string()))
}

/// Opens the configured store, its retry waits ending when `cancel` fires.
pub(crate) async fn store_with(
    config: &Config,
    cancel: &CancellationToken,
) -> Result<Arc<dyn BlobStore>, Fail> {
    open_store_cancellable(&config.store, &config.azure, cancel.clone())
        .await
        .map_err(|e| Fail(EXIT_FAILED, format!("cannot open the store: {e}")))
}

/// The Azure source of a vault behind the configured rate limits; every wait in the SDK retry
/// and the limiter ends when `cancel` fires.
pub(crate) fn source(
    config: &Config,
    vault: &VaultConfig,
    cancel: &CancellationToken,
) -> Result<Arc<dyn VaultSource>, Fail> {
    let limiter = RateLimiter::with_cancel(
        RateLimitOptions::from_limits(&config.limits),
        cancel.clone(),
    );
    let options = AzureSourceOptions {
        cancel: cancel.clone(),
        ..AzureSourceOptions::default()
    };
    let source = AzureVaultSource::from_config(vault, &config.azure, options).map_err(|e| {
        Fail(
            EXIT_USAGE,
            format!("cannot reach vault {}: {e}", vault.name),
        )
    })?;
    Ok(Arc::new(
        limiter.wrap(source, vault.subscription.as_deref()),
    ))
}

/// Resolves a `--to-vault` / `--scratch-vault` value (exit 2 when unusable).
pub(crate) fn resolve_or_fail(config: &Config, spec: &str) -> Result<VaultConfig, Fail> {
    resolve_target(config, spec).map_err(|e| Fail(EXIT_USAGE, e))
}

/// The source vault's location: its configuration, or (unconfigured, e.g. a decommissioned
/// vault on a fresh host) just its name.
pub(crate) fn source_location(
    config: &Config,
    name: &str,
) -> Result<(VaultLocation, Option<VaultConfig>), Fail> {
    let vault: crate::model::VaultName = name
        .parse()
        .map_err(|e| Fail(EXIT_USAGE, format!("--vault {name:?}: {e}")))?;
    match config.vault(&vault) {
        Some(v) => Ok((location_of(v), Some(v.clone()))),
        None => Ok((
            VaultLocation {
                name: vault,
                url: String::new(),
                subscription: None,
                geography: None,
            },
            None,
        )),
    }
}

/// Runs `kvkeep restore` and returns the exit code.
pub fn run(args: RestoreArgs, config: &Path) -> u8 {
    exit_code_of(restore(args, config))
}

fn restore(args: RestoreArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    let now = crate::clock::now_unix();
    let at = when::parse_at(&args.at, now).map_err(|e| Fail(EXIT_USAGE, format!("--at: {e}")))?;
    let policy: ConflictPolicy = args.on_conflict.parse().map_err(|e| Fail(EXIT_USAGE, e))?;
    let (source_loc, source_cfg) = source_location(&config, &args.vault)?;
    let target_cfg = match (&args.to_vault, source_cfg) {
        (Some(spec), _) => resolve_or_fail(&config, spec)?,
        (None, Some(cfg)) => cfg,
        (None, None) => {
            return Err(Fail(
                EXIT_USAGE,
                format!(
                    "vault {} is not configured, so restoring into it needs --to-vault NAME|URL",
                    args.vault
                ),
            ))
        }
    };
    let identities = if args.dry_run {
        None
    } else {
        Some(load_identities(
            args.identity.as_deref(),
            "restore",
            &config,
            Opens::Backups("restore"),
        )?)
    };
    let index = open_index(&config)?;
    let rt = runtime()?;
    rt.block_on(async {
        let cancel =
            super::cancel_on_stop_signal("finishing the objects in flight, starting no more");
        let job = RestoreJob {
            source: source_loc,
            target: target_cfg,
            at,
            only: args.only.clone(),
            policy,
            assume_compatible: args.assume_compatible,
            purge_wait: args.purge_wait,
        };
        let Some(identities) = identities else {
            let plan = job.plan(&config, index, &cancel).await?.0;
            print_plan(&plan, args.output);
            return Ok(EXIT_OK);
        };
        let (_, report) = job
            .run(&config, index, identities, progress(), cancel)
            .await?;
        print_report(&report, args.output);
        Ok(exit_code(report.overall()))
    })
}

/// One restore as `kvkeep restore` carries it out once its arguments are parsed: the target
/// behind the configured rate limits, the plan, then the executor with `limits.concurrency`
/// objects in flight. `kvkeep demo` runs its restore through this too.
pub(crate) struct RestoreJob {
    /// Whose backups.
    pub source: VaultLocation,
    /// Into which vault.
    pub target: VaultConfig,
    /// The point in time, Unix seconds.
    pub at: i64,
    /// `--only` filters.
    pub only: Vec<ObjectRef>,
    /// `--on-conflict`.
    pub policy: ConflictPolicy,
    /// `--assume-compatible`.
    pub assume_compatible: bool,
    /// `--purge-wait`.
    pub purge_wait: Duration,
}

impl RestoreJob {
    /// The plan (what `--dry-run` prints) and the rate-limited target it was surveyed through.
    pub async fn plan(
        &self,
        config: &Config,
        index: Arc<Index>,
        cancel: &CancellationToken,
    ) -> Result<(RestorePlan, Arc<dyn VaultSource>), Fail> {
        let target = source(config, &self.target, cancel)?;
        let request = RestoreRequest {
            source: self.source.clone(),
            target: location_of(&self.target),
            at: self.at,
            only: self.only.clone(),
            policy: self.policy,
            assume_compatible: self.assume_compatible,
        };
        let plan = plan_restore(index, target.as_ref(), request).await?;
        for w in &plan.warnings {
            tracing::warn!(warning = %w, "restore plan");
        }
        Ok((plan, target))
    }

    /// Plans, then restores.
    pub async fn run(
        &self,
        config: &Config,
        index: Arc<Index>,
        identities: Arc<Identities>,
        progress: Arc<dyn RestoreProgress>,
        cancel: CancellationToken,
    ) -> Result<(RestorePlan, RestoreReport), Fail> {
        let (plan, target) = self.plan(config, index, &cancel).await?;
        let restorer = Restorer {
            store: store_with(config, &cancel).await?,
            target,
            identities,
            options: RestoreOptions {
                concurrency: config.limits.concurrency,
                purge_wait: self.purge_wait,
                ..RestoreOptions::default()
            },
            progress,
            cancel,
        };
        let report = restorer.execute(&plan).await;
        Ok((plan, report))
    }
}

/// 0 / 3 / 1.
pub(crate) fn exit_code(overall: Overall) -> u8 {
    match overall {
        Overall::Ok => EXIT_OK,
        Overall::Partial => EXIT_PARTIAL,
        Overall::Failed | Overall::Interrupted => EXIT_FAILED,
    }
}

/// A bar on a terminal, log lines otherwise.
pub(crate) fn progress() -> Arc<dyn RestoreProgress> {
    if std::io::stderr().is_terminal() {
        Arc::new(Bar(progress_bar()))
    } else {
        Arc::new(NoRestoreProgress)
    }
}

struct Bar(ProgressBar);

impl RestoreProgress for Bar {
    fn start(&self, total: usize) {
        self.0.set_length(total as u64);
    }
    fn done(&self, outcome: &ObjectOutcome) {
        self.0
            .set_message(format!("{}/{}", outcome.kind, outcome.name));
        self.0.inc(1);
        if self.0.position() >= self.0.length().unwrap_or(0) {
            self.0.finish_and_clear();
        }
    }
}

/// Prints a plan (`--dry-run`).
pub fn print_plan(plan: &RestorePlan, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            json!({ "dry_run": true, "plan": plan, "stats": plan.stats() })
        ),
        Output::Table => print!("{}", plan_table(plan)),
    }
}

/// A plan as text.
pub fn plan_table(plan: &RestorePlan) -> String {
    let s = plan.stats();
    let mut out = format!(
        "restore vault {} as of {} into {} (on conflict: {}): {} to restore, {} to recover, {} to skip, {} to fail\n",
        plan.source.name,
        time(Some(plan.at)),
        plan.target.name,
        plan.policy,
        s.restore_objects,
        s.recover_objects,
        s.skip_objects,
        s.fail_objects
    );
    let mut table = Table::new([
        "ACTION", "KIND", "NAME", "VERSION", "CAPTURED", "SIZE", "TARGET", "WHY",
    ]);
    for o in &plan.objects {
        let why = match &o.action {
            crate::restore::Action::Skip { reason } | crate::restore::Action::Fail { reason } => {
                reason.clone()
            }
            _ => String::new(),
        };
        table.row(vec![
            o.action.word().into(),
            o.kind.to_string(),
            o.name.to_string(),
            o.current_version.to_string(),
            time(Some(o.captured_at)),
            bytes(o.stored_bytes),
            o.target_state.to_string(),
            why,
        ]);
    }
    out.push_str(&table.render());
    for w in &plan.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out.push_str("dry run: nothing was written\n");
    out
}

/// Prints a report.
pub fn print_report(report: &RestoreReport, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            json!({ "restore": report, "overall": report.overall() })
        ),
        Output::Table => {
            let s = &report.stats;
            println!(
                "restore of vault {} as of {} into {}: {} restored, {} recovered, {} skipped, {} failed{}",
                report.vault,
                report.at,
                report.target,
                s.restored_objects,
                s.recovered_objects,
                s.skipped_objects,
                s.failed_objects,
                if s.interrupted_objects > 0 {
                    format!(", {} interrupted", s.interrupted_objects)
                } else {
                    String::new()
                }
            );
            let mut table = Table::new(["OUTCOME", "KIND", "NAME", "DETAIL"]);
            for o in &report.objects {
                let detail = match &o.outcome {
                    Outcome::Restored { version } => format!("version {version}"),
                    Outcome::Recovered => "recovered from soft-delete".into(),
                    Outcome::Skipped { reason }
                    | Outcome::Failed { reason }
                    | Outcome::Interrupted { reason } => reason.clone(),
                };
                table.row(vec![
                    o.outcome.word().into(),
                    o.kind.to_string(),
                    o.name.to_string(),
                    detail,
                ]);
            }
            print!("{}", table.render());
        }
    }
}
