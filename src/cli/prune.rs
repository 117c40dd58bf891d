//! `kvkeep prune`: per vault, which restore points the retention policy keeps and which it
//! forgets, each with its reasons; then the forgotten points' manifests and the blobs nothing
//! kept refers to are deleted (`crate::retention::prune_vault`). `--dry-run` reads the index
//! only and deletes nothing. Exit 0 when everything was done, 3 when some deletes failed or
//! were postponed (immutability), 1 when a vault could not be pruned (its lock is held, the
//! index cannot be read) or the prune was stopped, 2 for a usage or configuration error.

use std::path::Path;

use serde_json::json;

use super::backup::select_vaults;
use super::render::{bytes, time, Output, Table};
use super::restore::open_index;
use super::{
    cancel_on_stop_signal, exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK,
    EXIT_PARTIAL, EXIT_USAGE,
};
use crate::backup::{system_clock, Runner};
use crate::config::VaultConfig;
use crate::retention::{plan_prune, PruneOutcome, PrunePlan};

/// Arguments of `kvkeep prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Prune this vault (repeatable); without --vault, every configured vault.
    #[arg(long = "vault", value_name = "NAME")]
    pub vaults: Vec<String>,
    /// Show the plan without deleting anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs `kvkeep prune` and returns the exit code.
pub fn run(args: PruneArgs, config: &Path) -> u8 {
    exit_code_of(prune_command(args, config))
}

fn prune_command(args: PruneArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    let vaults = select_vaults(&config, &args.vaults).map_err(|e| Fail(EXIT_USAGE, e))?;
    if args.dry_run {
        let index = open_index(&config)?;
        let now = crate::clock::now();
        let plans = vaults
            .iter()
            .map(|v| plan_prune(&index, v, now))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?;
        match args.output {
            Output::Json => println!("{}", render_json(&plans)),
            Output::Table => print!("{}", render_table(&plans)),
        }
        return Ok(EXIT_OK);
    }
    runtime()?.block_on(async {
        // Ctrl-C or SIGTERM: the deletes in flight finish, no more start; the next prune
        // completes what this one started.
        let cancel = cancel_on_stop_signal("finishing the deletes in flight, then stopping");
        let runner = Runner::open_cancellable(&config, false, system_clock(), cancel.clone())
            .await
            .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?;
        let mut outcomes = Vec::new();
        for vault in &vaults {
            let outcome = runner.prune(vault, None, &cancel).await;
            if let Err(e) = &outcome {
                // On stderr too, so a JSON consumer's log still says why.
                eprintln!("error: vault {} was not pruned: {e}", vault.name);
            }
            outcomes.push(outcome);
        }
        match args.output {
            Output::Json => println!("{}", outcomes_json(&vaults, &outcomes)),
            Output::Table => print!("{}", outcomes_table(&vaults, &outcomes)),
        }
        Ok(exit_code(&outcomes))
    })
}

/// The worst outcome wins: a vault not pruned or a prune stopped (1), then deletes left for
/// the next prune (3).
fn exit_code(outcomes: &[Result<PruneOutcome, String>]) -> u8 {
    if outcomes
        .iter()
        .any(|o| o.as_ref().map_or(true, |o| o.interrupted))
    {
        EXIT_FAILED
    } else if outcomes.iter().flatten().any(|o| !o.complete()) {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    }
}

fn outcomes_json(
    vaults: &[VaultConfig],
    outcomes: &[Result<PruneOutcome, String>],
) -> serde_json::Value {
    let items: Vec<serde_json::Value> = vaults
        .iter()
        .zip(outcomes)
        .map(|(vault, outcome)| match outcome {
            Err(e) => json!({ "vault": vault.name.as_str(), "error": e }),
            Ok(o) => json!({
                "vault": vault.name.as_str(),
                "policy": policy_word(&o.plan),
                "points": points_json(&o.plan),
                "kept_points": o.plan.decision.kept().count(),
                "forgotten_points": o.forgotten_points,
                "deleted_manifests": o.deleted_manifests,
                "deleted_blobs": o.deleted_blobs,
                "freed_bytes": o.freed_bytes,
                "swept_runs": o.swept_runs,
                "postponed": o.postponed,
                "failed": o.failed,
                "interrupted": o.interrupted,
            }),
        })
        .collect();
    let done: Vec<&PruneOutcome> = outcomes.iter().flatten().collect();
    let totals = json!({
        "forgotten_points": done.iter().map(|o| o.forgotten_points).sum::<usize>(),
        "deleted_manifests": done.iter().map(|o| o.deleted_manifests).sum::<usize>(),
        "deleted_blobs": done.iter().map(|o| o.deleted_blobs).sum::<usize>(),
        "freed_bytes": done.iter().map(|o| o.freed_bytes).sum::<u64>(),
        "postponed": done.iter().map(|o| o.postponed.len()).sum::<usize>(),
        "failed": done.iter().map(|o| o.failed.len()).sum::<usize>(),
        "vaults_not_pruned": outcomes.len() - done.len(),
    });
    json!({ "dry_run": false, "vaults": items, "totals": totals })
}

fn outcomes_table(vaults: &[VaultConfig], outcomes: &[Result<PruneOutcome, String>]) -> String {
    let mut out = String::new();
    for (vault, outcome) in vaults.iter().zip(outcomes) {
        let o = match outcome {
            Err(e) => {
                out.push_str(&format!("vault {}: not pruned: {e}\n\n", vault.name));
                continue;
            }
            Ok(o) => o,
        };
        out.push_str(&points_table(&o.plan));
        out.push_str(&format!(
            "{} restore points: {} kept, {} forgotten; deleted {} manifests and {} blobs ({} freed)",
            o.plan.decision.points.len(),
            o.plan.decision.kept().count(),
            o.forgotten_points,
            o.deleted_manifests,
            o.deleted_blobs,
            bytes(o.freed_bytes),
        ));
        if o.swept_runs > 0 {
            out.push_str(&format!(
                "; gave up the blobs of {} runs that never finished",
                o.swept_runs
            ));
        }
        out.push('\n');
        for (what, list) in [("postponed", &o.postponed), ("failed", &o.failed)] {
            for d in list {
                out.push_str(&format!("  {what}: {}: {}\n", d.blob, d.reason));
            }
        }
        if !o.postponed.is_empty() || !o.failed.is_empty() {
            out.push_str("  the next prune retries what was left\n");
        }
        if o.interrupted {
            out.push_str("  stopped before the end: run kvkeep prune again to complete it\n");
        }
        out.push('\n');
    }
    out
}

fn policy_word(plan: &PrunePlan) -> &'static str {
    if plan.policy_empty {
        "none: keeping everything"
    } else {
        "set"
    }
}

fn points_json(plan: &PrunePlan) -> Vec<serde_json::Value> {
    plan.decision
        .points
        .iter()
        .map(|p| {
            json!({
                "run": p.run.as_str(),
                "started_at": time(Some(p.started_at.timestamp())),
                "status": p.status.as_str(),
                "keep": p.keep,
                "reasons": p.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The vault line and every point with its verdict and reasons.
fn points_table(plan: &PrunePlan) -> String {
    let mut out = format!("vault {}", plan.vault);
    if plan.policy_empty {
        out.push_str(": no retention policy, keeping everything");
    }
    out.push('\n');
    let mut table = Table::new(["STARTED", "STATUS", "VERDICT", "REASONS"]);
    for p in &plan.decision.points {
        table.row(vec![
            time(Some(p.started_at.timestamp())),
            p.status.as_str().to_string(),
            if p.keep { "keep" } else { "forget" }.to_string(),
            p.reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    out.push_str(&table.render());
    out
}

fn render_json(plans: &[PrunePlan]) -> serde_json::Value {
    let vaults: Vec<serde_json::Value> = plans
        .iter()
        .map(|plan| {
            json!({
                "vault": plan.vault.as_str(),
                "policy": policy_word(plan),
                "points": points_json(plan),
                "kept_points": plan.decision.kept().count(),
                "forgotten_points": plan.decision.forgotten().count(),
                "manifests_to_delete": plan.forget_manifests.len(),
                "blobs_to_delete": plan.freed_blobs,
                "bytes_to_free": plan.freed_bytes,
            })
        })
        .collect();
    json!({ "dry_run": true, "vaults": vaults })
}

fn render_table(plans: &[PrunePlan]) -> String {
    let mut out = String::new();
    for plan in plans {
        out.push_str(&points_table(plan));
        out.push_str(&format!(
            "{} restore points: {} kept, {} to forget; {} manifests and {} blobs ({}) would be deleted (dry run: nothing was)\n\n",
            plan.decision.points.len(),
            plan.decision.kept().count(),
            plan.decision.forgotten().count(),
            plan.forget_manifests.len(),
            plan.freed_blobs,
            bytes(plan.freed_bytes),
        ));
    }
    out
}
