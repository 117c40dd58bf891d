//! `kvkeep prune --dry-run`: per vault, which restore points the retention policy keeps and
//! which it would forget, each with its reasons, and what forgetting would free. Read from the
//! index only; nothing is deleted. Exit 0, 1 when the index cannot be read, 2 for a usage or
//! configuration error.

use std::path::Path;

use serde_json::json;

use super::backup::select_vaults;
use super::render::{bytes, time, Output, Table};
use super::restore::open_index;
use super::{exit_code_of, load_config, Fail, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::retention::{plan_prune, PrunePlan};

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
    if !args.dry_run {
        // Deleting comes with its crash-safe order (issue #9); until then, never half of it.
        return Err(Fail(
            EXIT_USAGE,
            "this version of kvkeep only plans a prune: run `kvkeep prune --dry-run` to see what the retention policy keeps and would forget; nothing was deleted".into(),
        ));
    }
    let config = load_config(config)?;
    let vaults = select_vaults(&config, &args.vaults).map_err(|e| Fail(EXIT_USAGE, e))?;
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
    Ok(EXIT_OK)
}

fn render_json(plans: &[PrunePlan]) -> serde_json::Value {
    let vaults: Vec<serde_json::Value> = plans
        .iter()
        .map(|plan| {
            let points: Vec<serde_json::Value> = plan
                .decision
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
                .collect();
            json!({
                "vault": plan.vault.as_str(),
                "policy": if plan.policy_empty { "none: keeping everything" } else { "set" },
                "points": points,
                "kept_points": plan.decision.kept().count(),
                "forgotten_points": plan.decision.forgotten().count(),
                "manifests_to_delete": plan.forget_manifests.len(),
                "blobs_to_delete": plan.freed_blobs.len(),
                "bytes_to_free": plan.freed_bytes,
            })
        })
        .collect();
    json!({ "dry_run": true, "vaults": vaults })
}

fn render_table(plans: &[PrunePlan]) -> String {
    let mut out = String::new();
    for plan in plans {
        out.push_str(&format!("vault {}", plan.vault));
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
        out.push_str(&format!(
            "{} restore points: {} kept, {} to forget; {} manifests and {} blobs ({}) would be deleted (dry run: nothing was)\n\n",
            plan.decision.points.len(),
            plan.decision.kept().count(),
            plan.decision.forgotten().count(),
            plan.forget_manifests.len(),
            plan.freed_blobs.len(),
            bytes(plan.freed_bytes),
        ));
    }
    out
}
