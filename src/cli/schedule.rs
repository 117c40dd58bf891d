//! `kvkeep schedule`: when each vault's next backups are due, in the vault's time zone and in UTC,
//! with its jitter offset applied, so an operator can check a schedule before the daemon runs it.
//! Exit 0, or 2 for a usage or configuration error.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use super::backup::select_vaults;
use super::render::{Output, Table};
use super::{exit_code_of, load_config, Fail, EXIT_OK, EXIT_USAGE};
use crate::config::VaultConfig;
use crate::scheduler::Timetable;

/// Arguments of `kvkeep schedule`.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Show this vault (repeatable); without --vault, every configured vault.
    #[arg(long = "vault", value_name = "NAME")]
    pub vaults: Vec<String>,
    /// How many fire times to show per vault.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs `kvkeep schedule` and returns the exit code.
pub fn run(args: ScheduleArgs, config: &Path) -> u8 {
    exit_code_of(schedule_command(args, config))
}

/// What a vault's schedule says, as of one instant.
enum Outlook {
    /// No schedule: backed up on demand only.
    OnDemand,
    /// `paused = true`: the daemon leaves it alone.
    Paused(Timetable),
    /// The next fire times.
    Due(Timetable, Vec<DateTime<Utc>>),
}

impl Outlook {
    fn of(vault: &VaultConfig, now: DateTime<Utc>, count: usize) -> Self {
        match Timetable::for_vault(vault) {
            None => Outlook::OnDemand,
            Some(t) if vault.paused => Outlook::Paused(t),
            Some(t) => {
                let times = t.upcoming(now, count);
                Outlook::Due(t, times)
            }
        }
    }

    fn status(&self) -> &'static str {
        match self {
            Outlook::OnDemand => "on-demand",
            Outlook::Paused(_) => "paused",
            Outlook::Due(..) => "scheduled",
        }
    }

    fn timetable(&self) -> Option<&Timetable> {
        match self {
            Outlook::OnDemand => None,
            Outlook::Paused(t) | Outlook::Due(t, _) => Some(t),
        }
    }
}

fn schedule_command(args: ScheduleArgs, config: &Path) -> Result<u8, Fail> {
    let config = load_config(config)?;
    let vaults = select_vaults(&config, &args.vaults).map_err(|e| Fail(EXIT_USAGE, e))?;
    let now = crate::clock::now();
    let outlooks: Vec<(VaultConfig, Outlook)> = vaults
        .into_iter()
        .map(|v| {
            let o = Outlook::of(&v, now, usize::from(args.count));
            (v, o)
        })
        .collect();
    match args.output {
        Output::Json => println!("{}", render_json(now, &outlooks)),
        Output::Table => print!("{}", render_table(&outlooks)),
    }
    Ok(EXIT_OK)
}

fn utc_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn render_json(now: DateTime<Utc>, outlooks: &[(VaultConfig, Outlook)]) -> serde_json::Value {
    let vaults: Vec<serde_json::Value> = outlooks
        .iter()
        .map(|(vault, outlook)| {
            let t = outlook.timetable();
            let next: Vec<serde_json::Value> = match outlook {
                Outlook::Due(t, times) => times
                    .iter()
                    .map(|at| {
                        let local = at.with_timezone(&t.schedule().tz());
                        json!({
                            "utc": utc_text(*at),
                            "local": local.to_rfc3339_opts(SecondsFormat::Secs, false),
                        })
                    })
                    .collect(),
                _ => Vec::new(),
            };
            json!({
                "vault": vault.name.as_str(),
                "status": outlook.status(),
                "paused": vault.paused,
                "schedule": t.map(|t| t.schedule().expr()),
                "time_zone": t.map(|t| t.schedule().time_zone()),
                "jitter_offset_seconds": t.map(|t| t.offset().as_secs()),
                "next": next,
            })
        })
        .collect();
    json!({ "now": utc_text(now), "vaults": vaults })
}

fn render_table(outlooks: &[(VaultConfig, Outlook)]) -> String {
    let mut table = Table::new(["VAULT", "SCHEDULE", "NEXT (LOCAL)", "NEXT (UTC)"]);
    for (vault, outlook) in outlooks {
        let name = vault.name.to_string();
        match outlook {
            Outlook::OnDemand => table.row(vec![
                name,
                "-".into(),
                "on demand (no schedule)".into(),
                "-".into(),
            ]),
            Outlook::Paused(t) => table.row(vec![
                name,
                t.schedule().to_string(),
                "paused".into(),
                "-".into(),
            ]),
            Outlook::Due(t, times) => {
                let schedule = match t.offset().as_secs() {
                    0 => t.schedule().to_string(),
                    s => format!("{} +{s}s jitter", t.schedule()),
                };
                for (i, at) in times.iter().enumerate() {
                    let local = at.with_timezone(&t.schedule().tz());
                    table.row(vec![
                        if i == 0 { name.clone() } else { String::new() },
                        if i == 0 {
                            schedule.clone()
                        } else {
                            String::new()
                        },
                        local.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
                        utc_text(*at),
                    ]);
                }
            }
        }
    }
    table.render()
}
