//! `kvkeep list runs|objects|versions`: what the index knows, read-only. Never touches a vault
//! or the store, and never creates an index that does not exist.

use std::path::Path;

use serde_json::json;

use super::render::{bytes, time, Output, Table};
use super::{exit_code_of, load_config, Fail, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::index::Index;
use crate::model::{IdError, ObjectKind, ObjectName, VaultName};

/// `kvkeep list ...`
#[derive(Debug, clap::Subcommand)]
pub enum ListAction {
    /// Backup runs, newest first.
    Runs(ListArgs),
    /// Objects seen by backups (deleted ones included).
    Objects(ListArgs),
    /// Restorable versions of one object, with the blob holding each.
    Versions(VersionsArgs),
}

/// Arguments of `list runs` and `list objects`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this vault.
    #[arg(long)]
    pub vault: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Arguments of `list versions`.
#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    /// The vault.
    #[arg(long)]
    pub vault: String,
    /// The object's kind (keys, secrets, certificates).
    #[arg(long)]
    pub kind: String,
    /// The object's name.
    #[arg(long)]
    pub name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs a `list` command and returns the exit code.
pub fn run(action: ListAction, config: &Path) -> u8 {
    exit_code_of(list(action, config))
}

fn list(action: ListAction, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    // A vault the configuration does not name may still be in the index (a decommissioned one),
    // so this is a note, not an error; it catches typos that would otherwise print nothing.
    let named = match &action {
        ListAction::Runs(a) | ListAction::Objects(a) => a.vault.as_deref(),
        ListAction::Versions(a) => Some(a.vault.as_str()),
    };
    if let Some(name) = named {
        let wanted = name.parse::<VaultName>().ok();
        if wanted.and_then(|v| config.vault(&v)).is_none() {
            eprintln!(
                "note: vault {name} is not in the configuration (configured: {}); showing what the index holds for it",
                config.vault_names()
            );
        }
    }
    let usage = |e: String| Fail(EXIT_USAGE, e);
    let failed = |e: String| Fail(EXIT_FAILED, e);
    let text = match &action {
        ListAction::Runs(a) | ListAction::Objects(a) => {
            let vault: Option<VaultName> = a
                .vault
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: IdError| usage(e.to_string()))?;
            match open_index(&config.index_path).map_err(failed)? {
                None => empty(a.output),
                Some(index) => match &action {
                    ListAction::Runs(_) => runs(&index, vault.as_ref(), a.output),
                    _ => objects(&index, vault.as_ref(), a.output),
                }
                .map_err(failed)?,
            }
        }
        ListAction::Versions(a) => {
            let vault: VaultName = a.vault.parse().map_err(|e: IdError| usage(e.to_string()))?;
            let kind: ObjectKind = a.kind.parse().map_err(|e: IdError| usage(e.to_string()))?;
            let name: ObjectName = a.name.parse().map_err(|e: IdError| usage(e.to_string()))?;
            match open_index(&config.index_path).map_err(failed)? {
                None => empty(a.output),
                Some(index) => versions(&index, &vault, kind, &name, a.output).map_err(failed)?,
            }
        }
    };
    print!("{text}");
    Ok(EXIT_OK)
}

/// The index, or `None` (with a note on stderr) when no backup has created it yet.
fn open_index(path: &Path) -> Result<Option<Index>, String> {
    if !path.exists() {
        eprintln!(
            "note: no index at {} yet: no backup has run with this configuration",
            path.display()
        );
        return Ok(None);
    }
    Index::open(path).map(Some).map_err(|e| e.to_string())
}

fn empty(output: Output) -> String {
    match output {
        Output::Json => "[]\n".into(),
        Output::Table => String::new(),
    }
}

fn runs(index: &Index, vault: Option<&VaultName>, output: Output) -> Result<String, String> {
    let runs = index.list_runs(vault).map_err(|e| e.to_string())?;
    Ok(match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = runs
                .iter()
                .map(|r| {
                    json!({
                        "run": r.run, "vault": r.vault, "status": r.status.as_str(),
                        "started_at": r.started_at, "finished_at": r.finished_at,
                        "committed": r.is_committed(), "manifest": r.manifest,
                        "forgotten_at": r.forgotten_at,
                        "abandoned_by": r.abandoned_by,
                        "captured_objects": r.stats.captured_objects,
                        "unchanged_objects": r.stats.unchanged_objects,
                        "deleted_objects": r.stats.deleted_objects,
                        "failed_objects": r.stats.failed_objects,
                        "uploaded_bytes": r.stats.uploaded_bytes,
                    })
                })
                .collect();
            format!("{}\n", json!(items))
        }
        Output::Table => {
            let mut t = Table::new([
                "VAULT",
                "RUN",
                "STARTED",
                "STATUS",
                "CAPTURED",
                "UNCHANGED",
                "DELETED",
                "FAILED",
                "UPLOADED",
                "MANIFEST",
            ]);
            for r in &runs {
                t.row(vec![
                    r.vault.to_string(),
                    r.run.to_string(),
                    time(Some(r.started_at)),
                    match &r.abandoned_by {
                        Some(by) => format!("{} (left by {by})", r.status),
                        None => r.status.to_string(),
                    },
                    r.stats.captured_objects.to_string(),
                    r.stats.unchanged_objects.to_string(),
                    r.stats.deleted_objects.to_string(),
                    r.stats.failed_objects.to_string(),
                    bytes(r.stats.uploaded_bytes),
                    match (&r.manifest, r.forgotten_at) {
                        (Some(m), _) => m.to_string(),
                        (None, Some(at)) => format!("(forgotten {})", time(Some(at))),
                        (None, None) => "(none: incomplete)".into(),
                    },
                ]);
            }
            t.render()
        }
    })
}

fn objects(index: &Index, vault: Option<&VaultName>, output: Output) -> Result<String, String> {
    let objects = index.list_objects(vault).map_err(|e| e.to_string())?;
    Ok(match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = objects
                .iter()
                .map(|o| {
                    json!({
                        "vault": o.vault, "kind": o.kind, "name": o.name,
                        "current_version": o.current_version, "updated": o.updated,
                        "first_seen": o.first_seen, "last_seen": o.last_seen,
                        "deleted_at": o.deleted_at, "last_deep_scan": o.last_deep_scan,
                    })
                })
                .collect();
            format!("{}\n", json!(items))
        }
        Output::Table => {
            let mut t = Table::new([
                "VAULT",
                "KIND",
                "NAME",
                "CURRENT VERSION",
                "UPDATED",
                "LAST SEEN",
                "DELETED",
            ]);
            for o in &objects {
                t.row(vec![
                    o.vault.to_string(),
                    o.kind.to_string(),
                    o.name.to_string(),
                    o.current_version.to_string(),
                    time(Some(o.updated)),
                    time(Some(o.last_seen)),
                    time(o.deleted_at),
                ]);
            }
            t.render()
        }
    })
}

fn versions(
    index: &Index,
    vault: &VaultName,
    kind: ObjectKind,
    name: &ObjectName,
    output: Output,
) -> Result<String, String> {
    let versions = index
        .list_versions(vault, kind, name)
        .map_err(|e| e.to_string())?;
    Ok(match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version, "created": v.created, "updated": v.updated,
                        "enabled": v.enabled, "first_captured_at": v.first_captured_at,
                        "last_captured_at": v.last_captured_at, "blob": v.newest_blob,
                    })
                })
                .collect();
            format!("{}\n", json!(items))
        }
        Output::Table => {
            let mut t = Table::new(["VERSION", "CREATED", "ENABLED", "LAST CAPTURED", "BLOB"]);
            for v in &versions {
                t.row(vec![
                    v.version.to_string(),
                    time(v.created),
                    v.enabled.to_string(),
                    time(Some(v.last_captured_at)),
                    v.newest_blob.to_string(),
                ]);
            }
            t.render()
        }
    })
}
