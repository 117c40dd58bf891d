//! `kvkeep doctor`: renders the preflight report of [`crate::doctor`] as a table or JSON.
//! Exit codes: 0 all good (warnings allowed), 3 some checks failed, 1 nothing reachable (the
//! store and every vault failed), 2 usage or configuration error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::backup::select_vaults;
use super::render::{Output, Table};
use super::{
    exit_code_of, load_config, runtime, Fail, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE,
};
use crate::crypto::Identities;
use crate::doctor::{DoctorOptions, DoctorOutcome, DoctorReport};

/// Arguments of `kvkeep doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Check this vault (repeatable); every configured vault when none is named.
    #[arg(long = "vault", value_name = "NAME")]
    pub vaults: Vec<String>,
    /// An age identity file, recovery or catalog: also open the newest manifest of each vault
    /// with it and say which role it has (never logged).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs `kvkeep doctor` and returns the exit code.
pub fn run(args: DoctorArgs, config: &Path) -> u8 {
    exit_code_of(doctor_command(args, config))
}

fn doctor_command(args: DoctorArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    let vaults = select_vaults(&config, &args.vaults).map_err(|e| Fail(EXIT_USAGE, e))?;
    // The identity file is checked (private, parsable) before anything is contacted.
    let identities = match &args.identity {
        Some(path) => Some(Arc::new(
            Identities::from_file(path)
                .map(|ids| {
                    ids.with_catalog_recipient(config.encryption.catalog_recipient.as_deref())
                })
                .map_err(|e| Fail(EXIT_USAGE, e.to_string()))?,
        )),
        None => None,
    };
    let runtime = runtime()?;
    let report = runtime.block_on(async {
        let cancel = super::cancel_on_stop_signal("stopping the checks");
        let options = DoctorOptions {
            vaults,
            identities,
            cancel,
        };
        crate::doctor::run(&config, &options).await
    });
    match args.output {
        Output::Json => println!("{}", report_json(&report)),
        Output::Table => print!("{}", report_table(&report)),
    }
    Ok(exit_code(report.outcome()))
}

/// The process exit code of an outcome.
pub fn exit_code(outcome: DoctorOutcome) -> u8 {
    match outcome {
        DoctorOutcome::Ok => EXIT_OK,
        DoctorOutcome::SomeFailed => EXIT_PARTIAL,
        DoctorOutcome::NothingReachable => EXIT_FAILED,
    }
}

/// The report as one JSON document: `{"outcome", "checks": [{"vault", "check", "status",
/// "detail", "fix"}]}`.
pub fn report_json(report: &DoctorReport) -> serde_json::Value {
    json!({ "outcome": report.outcome(), "checks": report.checks })
}

/// The report as text: one row per check, then what to do for each warning and failure.
pub fn report_table(report: &DoctorReport) -> String {
    let mut table = Table::new(["VAULT", "CHECK", "STATUS", "DETAIL"]);
    for c in &report.checks {
        table.row(vec![
            vault_cell(c),
            c.check.to_string(),
            c.status.to_string(),
            c.detail.clone(),
        ]);
    }
    let mut out = table.render();
    for c in &report.checks {
        if let Some(fix) = &c.fix {
            out.push_str(&format!(
                "{} {} {}: {fix}\n",
                c.status,
                vault_cell(c),
                c.check
            ));
        }
    }
    out.push_str(match report.outcome() {
        DoctorOutcome::Ok => "doctor: all checks passed\n",
        DoctorOutcome::SomeFailed => "doctor: some checks failed; each says what to do\n",
        DoctorOutcome::NothingReachable => {
            "doctor: nothing reachable: neither the store nor any vault answered\n"
        }
    });
    out
}

fn vault_cell(c: &crate::doctor::Check) -> String {
    c.vault
        .as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}
