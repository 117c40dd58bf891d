//! `kvkeep backup`: runs (or with `--dry-run` plans) a backup of the selected vaults and prints
//! one report per vault. Exit codes: 0 every vault completed, 3 some objects failed, 1 a vault
//! failed (or was interrupted), 2 usage or configuration error.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use indicatif::ProgressBar;
use serde_json::json;

use super::render::{bytes, progress_bar, Output, Table};
use super::{
    exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE,
};
use crate::backup::{system_clock, BackupPlan, BackupReport, Progress, Runner};
use crate::config::{Config, VaultConfig};
use crate::index::RunStatus;
use crate::model::{ObjectKind, ObjectName, VaultName};

/// Arguments of `kvkeep backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Back up this vault (repeatable); without --vault or --all, every configured vault.
    #[arg(long = "vault", value_name = "NAME", conflicts_with = "all")]
    pub vaults: Vec<String>,
    /// Back up every configured vault.
    #[arg(long)]
    pub all: bool,
    /// Print what would be captured, skipped and recorded as deleted; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// The configured vaults named on the command line (all when none is named), or the message
/// for an unknown name, listing the configured ones.
pub fn select_vaults(config: &Config, names: &[String]) -> Result<Vec<VaultConfig>, String> {
    if names.is_empty() {
        return Ok(config.vaults.clone());
    }
    let mut out: Vec<VaultConfig> = Vec::new();
    for name in names {
        let found = name
            .parse::<VaultName>()
            .ok()
            .and_then(|wanted| config.vault(&wanted))
            .ok_or_else(|| {
                format!(
                    "vault {name:?} is not in the configuration; configured vaults: {}",
                    config.vault_names()
                )
            })?;
        if !out.iter().any(|v| v.name == found.name) {
            out.push(found.clone());
        }
    }
    Ok(out)
}

/// Runs `kvkeep backup` and returns the exit code.
pub fn run(args: BackupArgs, config: &Path) -> u8 {
    exit_code_of(backup_command(args, config))
}

fn backup_command(args: BackupArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    let vaults = select_vaults(&config, &args.vaults).map_err(|e| Fail(EXIT_USAGE, e))?;
    let runtime = runtime()?;
    runtime.block_on(async {
        if args.dry_run {
            dry_run(&config, &vaults, args.output).await
        } else {
            backup(&config, &vaults, args.output).await
        }
    })
}

async fn dry_run(config: &Config, vaults: &[VaultConfig], output: Output) -> Result<u8, Fail> {
    let runner = open_runner(config, true).await?;
    let plans = runner.plan(vaults).await;
    let failed = plans.iter().any(|p| p.is_err());
    match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = vaults
                .iter()
                .zip(&plans)
                .map(|(v, p)| match p {
                    Ok(plan) => json!(plan),
                    Err(e) => json!({"vault": v.name, "error": e}),
                })
                .collect();
            println!("{}", json!({ "dry_run": true, "plans": items }));
        }
        Output::Table => {
            for (vault, plan) in vaults.iter().zip(&plans) {
                match plan {
                    Ok(plan) => print!("{}", plan_table(plan)),
                    Err(e) => println!("vault {}: cannot plan: {e}", vault.name),
                }
            }
            println!("dry run: nothing was written");
        }
    }
    Ok(if failed { EXIT_FAILED } else { EXIT_OK })
}

/// A plan as text: a summary line, then every object to capture, record as gone or skip.
pub fn plan_table(plan: &BackupPlan) -> String {
    let mut out = format!(
        "vault {}: {} to capture, {} unchanged, {} gone, {} skipped\n",
        plan.vault,
        plan.changed.len(),
        plan.unchanged.len(),
        plan.gone.len(),
        plan.skipped.len()
    );
    let mut table = Table::new(["ACTION", "KIND", "NAME", "WHY"]);
    for c in &plan.changed {
        table.row(vec![
            "capture".into(),
            c.object.kind.to_string(),
            c.object.name.to_string(),
            c.why.to_string(),
        ]);
    }
    for g in &plan.gone {
        table.row(vec![
            "deleted".into(),
            g.kind.to_string(),
            g.name.to_string(),
            "no longer listed".into(),
        ]);
    }
    for s in &plan.skipped {
        table.row(vec![
            "skip".into(),
            s.kind.to_string(),
            s.name.to_string(),
            s.why.to_string(),
        ]);
    }
    if !(plan.changed.is_empty() && plan.gone.is_empty() && plan.skipped.is_empty()) {
        out.push_str(&table.render());
    }
    out
}

async fn backup(config: &Config, vaults: &[VaultConfig], output: Output) -> Result<u8, Fail> {
    // Ctrl-C or SIGTERM: finish the objects in flight, start no more, commit what is done.
    let cancel = super::cancel_on_stop_signal("finishing the objects in flight, then stopping");
    let runner = Runner::open_cancellable(config, false, system_clock(), cancel.clone())
        .await
        .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?;
    let progress: Arc<dyn Progress> = if std::io::stderr().is_terminal() {
        Arc::new(BarProgress {
            bar: progress_bar(),
        })
    } else {
        // Not a terminal (a service, a pipe, CI): log lines instead of a bar.
        Arc::new(LogProgress::default())
    };
    let reports = runner.backup(vaults, cancel, progress.clone()).await;
    drop(progress);
    print_reports(&reports, output);
    Ok(exit_code(&reports))
}

async fn open_runner(config: &Config, dry_run: bool) -> Result<Runner, Fail> {
    Runner::open(config, dry_run, system_clock())
        .await
        .map_err(|e| Fail(EXIT_FAILED, e.to_string()))
}

/// The exit code for a set of reports: the worst outcome wins.
pub fn exit_code(reports: &[BackupReport]) -> u8 {
    let worst = |s: RunStatus| reports.iter().any(|r| r.status == s);
    if worst(RunStatus::Failed) || worst(RunStatus::Interrupted) || worst(RunStatus::Running) {
        EXIT_FAILED
    } else if worst(RunStatus::PartiallyFailed) {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    }
}

/// Prints reports as a table (with every failed object and its reason) or as JSON.
pub fn print_reports(reports: &[BackupReport], output: Output) {
    match output {
        Output::Json => println!("{}", json!({ "vaults": reports })),
        Output::Table => print!("{}", reports_table(reports)),
    }
}

/// Reports as text.
pub fn reports_table(reports: &[BackupReport]) -> String {
    let mut table = Table::new([
        "VAULT",
        "RUN",
        "STATUS",
        "CAPTURED",
        "UNCHANGED",
        "DELETED",
        "SKIPPED",
        "FAILED",
        "UPLOADED",
        "BACKUP CALLS",
    ]);
    for r in reports {
        table.row(vec![
            r.vault.to_string(),
            r.run.to_string(),
            r.status.to_string(),
            r.stats.captured_objects.to_string(),
            r.stats.unchanged_objects.to_string(),
            r.stats.deleted_objects.to_string(),
            r.stats.skipped_objects.to_string(),
            r.stats.failed_objects.to_string(),
            bytes(r.stats.uploaded_bytes),
            r.stats.backup_calls.to_string(),
        ]);
    }
    let mut out = table.render();
    for r in reports {
        if let Some(e) = &r.error {
            out.push_str(&format!("vault {}: {e}\n", r.vault));
        }
        for f in &r.failures {
            out.push_str(&format!(
                "vault {}: {} {} failed ({}): {}\n",
                r.vault, f.kind, f.name, f.error_kind, f.message
            ));
        }
    }
    out
}

/// Progress as log lines: one every [`LOG_EVERY`] objects per vault, besides the executor's own
/// start and end lines.
#[derive(Default)]
struct LogProgress {
    counts: std::sync::Mutex<std::collections::HashMap<VaultName, (u64, u64, u64)>>,
}

/// Objects between two progress log lines.
const LOG_EVERY: u64 = 100;

impl Progress for LogProgress {
    fn planned(&self, plan: &BackupPlan) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.insert(plan.vault.clone(), (plan.changed.len() as u64, 0, 0));
    }
    fn object_done(&self, vault: &VaultName, _: ObjectKind, _: &ObjectName, ok: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (total, done, failed) = counts.entry(vault.clone()).or_default();
        *done += 1;
        if !ok {
            *failed += 1;
        }
        if *done % LOG_EVERY == 0 || *done == *total {
            tracing::info!(vault = %vault, done = *done, total = *total, failed = *failed,
                "backup progress");
        }
    }
}

/// A progress bar on stderr: one tick per object captured or failed, across all vaults.
struct BarProgress {
    bar: ProgressBar,
}

impl Progress for BarProgress {
    fn planned(&self, plan: &BackupPlan) {
        self.bar.inc_length(plan.changed.len() as u64);
    }
    fn object_done(&self, vault: &VaultName, kind: ObjectKind, name: &ObjectName, _ok: bool) {
        self.bar.set_message(format!("{vault} {kind} {name}"));
        self.bar.inc(1);
    }
    fn finished(&self, report: &BackupReport) {
        self.bar
            .println(format!("vault {}: {}", report.vault, report.status));
    }
}

impl Drop for BarProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::BackupStats;
    use crate::model::RunId;

    fn report(status: RunStatus) -> BackupReport {
        BackupReport {
            vault: "kv1".parse().expect("vault"),
            run: RunId::random(),
            status,
            started_at: 0,
            finished_at: 0,
            manifest: None,
            stats: BackupStats::default(),
            failures: Vec::new(),
            error: None,
            held_elsewhere: None,
        }
    }

    #[test]
    fn the_worst_vault_decides_the_exit_code() {
        use RunStatus::*;
        let cases: [(&[RunStatus], u8); 6] = [
            (&[], EXIT_OK),
            (&[Completed, Completed], EXIT_OK),
            (&[Completed, PartiallyFailed], EXIT_PARTIAL),
            (&[PartiallyFailed, Failed], EXIT_FAILED),
            (&[Completed, Interrupted], EXIT_FAILED),
            (&[Failed], EXIT_FAILED),
        ];
        for (statuses, code) in cases {
            let reports: Vec<BackupReport> = statuses.iter().map(|s| report(*s)).collect();
            assert_eq!(exit_code(&reports), code, "{statuses:?}");
        }
    }

    #[test]
    fn vaults_are_selected_by_name_case_insensitively_without_duplicates() {
        let identity = crate::crypto::Identity::generate();
        let text = format!(
            "[store]\ntype = \"local\"\npath = \"s\"\n[encryption]\nrecipients = [\"{}\"]\n[[vault]]\nname = \"kv-one\"\n[[vault]]\nname = \"kv-two\"\n",
            identity.recipient()
        );
        let config = Config::parse(&text, "t.toml", std::path::Path::new("/tmp"), &|p| {
            std::fs::read_to_string(p)
        })
        .expect("config");
        let names = |v: Vec<VaultConfig>| {
            v.into_iter()
                .map(|v| v.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(select_vaults(&config, &[]).expect("all")),
            ["kv-one", "kv-two"]
        );
        assert_eq!(
            names(select_vaults(&config, &["KV-Two".into(), "kv-two".into()]).expect("one")),
            ["kv-two"]
        );
        let err = select_vaults(&config, &["kv-3".into()]).expect_err("unknown");
        assert!(err.contains("kv-one, kv-two"), "{err}");
    }
}
