//! `kvkeep report`: the retention report of the configured vaults (or those named with
//! `--vault`) from the index alone, as a terminal table, JSON (`report_format` 1) or one CSV
//! section, or one self-contained HTML page, on stdout or into a private file (`--out`). Exit 0;
//! 1 when the index cannot be read or the file cannot be written; 2 for a usage or configuration
//! error (also CSV without `--section`, JSON or HTML with it, or an `--expiring-within` that is
//! not a duration).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backup::select_vaults;
use super::render::{bytes, time, Table};
use super::restore::open_index;
use super::{exit_code_of, load_config, Fail, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::report::{
    build_report_with, csv, html, human_duration, Report, ReportOptions, Section, VaultReport,
    MAX_EXPIRING_WITHIN,
};

/// The forms of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned text for a terminal.
    Table,
    /// One JSON document, every section (`report_format` 1).
    Json,
    /// One section (`--section`) as RFC 4180 CSV.
    Csv,
    /// One self-contained HTML page, every section, with a timeline per vault.
    Html,
}

/// Arguments of `kvkeep report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Report on this vault (repeatable); without --vault, every configured vault.
    #[arg(long = "vault", value_name = "NAME")]
    pub vaults: Vec<String>,
    /// Output form.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Only this section: required with --format csv, narrows the table.
    #[arg(long, value_enum)]
    pub section: Option<Section>,
    /// Write the report to FILE (mode 0600, replaced whole) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// List objects whose Key Vault expiry (`exp`) is at most this far away, and those already
    /// expired (e.g. "30d", "12w"; at most 3660d).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_expiring_within)]
    pub expiring_within: Duration,
}

fn parse_expiring_within(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration_within(text, Duration::ZERO, MAX_EXPIRING_WITHIN)
}

/// Runs `kvkeep report` and returns the exit code.
pub fn run(args: ReportArgs, config: &Path) -> u8 {
    exit_code_of(report_command(args, config))
}

fn section_names() -> String {
    Section::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses the combinations that cannot work before anything is read.
fn check_combination(format: ReportFormat, section: Option<Section>) -> Result<(), Fail> {
    match (format, section) {
        (ReportFormat::Csv, None) => Err(Fail(
            EXIT_USAGE,
            format!(
                "CSV holds one section per file: add --section with one of {} (e.g. `kvkeep report --format csv --section rpo`)",
                section_names()
            ),
        )),
        (ReportFormat::Json, Some(_)) => Err(Fail(
            EXIT_USAGE,
            "the JSON report always holds every section (report_format 1): drop --section, or use --format csv --section NAME for one section".into(),
        )),
        (ReportFormat::Html, Some(_)) => Err(Fail(
            EXIT_USAGE,
            "the HTML report always holds every section: drop --section, or use --format table --section NAME for one section".into(),
        )),
        _ => Ok(()),
    }
}

fn report_command(args: ReportArgs, config: &Path) -> Result<u8, Fail> {
    check_combination(args.format, args.section)?;
    let config = load_config(config)?;
    let vaults = select_vaults(&config, &args.vaults).map_err(|e| Fail(EXIT_USAGE, e))?;
    let index = open_index(&config)?;
    let now = crate::clock::now();
    let options = ReportOptions {
        expiring_within: args.expiring_within,
    };
    let report = || {
        build_report_with(&index, &vaults, now, &options)
            .map_err(|e| Fail(EXIT_FAILED, e.to_string()))
    };
    let text = match (args.format, args.section) {
        (ReportFormat::Json, _) => {
            let mut json = serde_json::to_string_pretty(&report()?)
                .map_err(|e| Fail(EXIT_FAILED, format!("cannot render the report: {e}")))?;
            json.push('\n');
            json
        }
        (ReportFormat::Csv, Some(section)) => csv::render(&report()?, section)
            .map_err(|e| Fail(EXIT_FAILED, format!("cannot render the report: {e}")))?,
        (ReportFormat::Csv, None) => unreachable!("refused by check_combination"),
        (ReportFormat::Table, section) => render_table(&report()?, section),
        (ReportFormat::Html, _) => html::build_html_with(&index, &vaults, now, &options)
            .map_err(|e| Fail(EXIT_FAILED, e.to_string()))?,
    };
    match &args.out {
        Some(path) => crate::fsutil::replace_private_file(path, text.as_bytes()).map_err(|e| {
            Fail(
                EXIT_FAILED,
                format!("cannot write the report to {}: {e}", path.display()),
            )
        })?,
        None => {
            // A closed pipe (`kvkeep report | head`) is not worth a panic.
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
    }
    Ok(EXIT_OK)
}

/// The report for a terminal: per vault one line per section, then the objects without a
/// fresh backup; with `--section`, that section alone with its details.
pub fn render_table(report: &Report, section: Option<Section>) -> String {
    let mut out = format!(
        "kvkeep report at {} (report_format {})\n",
        time(Some(report.generated_at)),
        report.report_format
    );
    for v in &report.vaults {
        out.push_str(&format!("\nvault {}\n", v.vault));
        let shown: Vec<Section> = match section {
            Some(s) => vec![s],
            None => Section::ALL.to_vec(),
        };
        for s in &shown {
            for (label, text) in summary(v, *s) {
                out.push_str(&format!("  {label:<15} {text}\n"));
            }
        }
        let details = details(v, section);
        if !details.is_empty() {
            out.push('\n');
            for line in details.lines() {
                // A blank line between two tables stays blank, without trailing spaces.
                out.push_str(format!("  {line}").trim_end());
                out.push('\n');
            }
        }
    }
    out
}

fn summary(v: &VaultReport, section: Section) -> Vec<(&'static str, String)> {
    match section {
        Section::RestorePoints => {
            let p = &v.restore_points;
            let s = &p.by_status;
            let mut statuses = Vec::new();
            for (n, word) in [
                (s.completed, "completed"),
                (s.partially_failed, "partially failed"),
                (s.failed, "failed"),
                (s.interrupted, "interrupted"),
            ] {
                if n > 0 {
                    statuses.push(format!("{n} {word}"));
                }
            }
            let points = if p.count == 0 {
                "none".to_string()
            } else {
                format!(
                    "{} from {} to {} ({})",
                    p.count,
                    time(p.oldest),
                    time(p.newest),
                    statuses.join(", ")
                )
            };
            vec![("restore points", points), ("retention", p.policy.clone())]
        }
        Section::Rpo => vec![(
            "rpo",
            format!("{}: {}", v.rpo.status.as_str(), v.rpo.reason),
        )],
        Section::Coverage => {
            let c = &v.coverage;
            vec![
                (
                    "coverage",
                    format!(
                        "{} never captured, {} failing, {} with {} or more versions (Key Vault's limit is {})",
                        c.never_captured,
                        c.failing,
                        c.many_versions.len(),
                        c.version_warning_at,
                        c.version_limit
                    ),
                ),
                ("skipped", crate::report::skipped_line(c.skipped.as_ref())),
            ]
        }
        Section::Expirations => {
            let e = &v.expirations;
            let text = if e.forgotten_points == 0 {
                "a prune now would forget nothing".to_string()
            } else {
                let reasons: Vec<String> = e
                    .by_reason
                    .iter()
                    .map(|r| format!("{}: {}", r.reason, r.points))
                    .collect();
                format!(
                    "a prune now would forget {} restore points ({}), deleting {} manifests and {} blobs ({})",
                    e.forgotten_points,
                    reasons.join("; "),
                    e.manifests,
                    e.blobs,
                    bytes(e.stored_bytes)
                )
            };
            vec![("expirations", text)]
        }
        Section::Storage => {
            let s = &v.storage;
            vec![(
                "storage",
                format!(
                    "{} blobs, {} stored ({} plain); last 30 days: {} captures, {} stored",
                    s.blobs,
                    bytes(s.stored_bytes),
                    bytes(s.plain_bytes),
                    s.growth_30d.captures,
                    bytes(s.growth_30d.stored_bytes)
                ),
            )]
        }
        Section::Verification => {
            let ver = &v.verification;
            let parts: Vec<String> = [
                ("quick", &ver.quick),
                ("deep", &ver.deep),
                ("drill", &ver.drill),
            ]
            .iter()
            .map(|(depth, last)| match last {
                Some(l) => format!("{depth} {} {}", l.result, time(Some(l.at))),
                None => format!("{depth} never"),
            })
            .collect();
            vec![("verification", parts.join("; "))]
        }
        Section::KeyVaultExpiry => {
            let e = &v.key_vault_expiry;
            let within = human_duration(Duration::from_secs(e.within_seconds));
            let mut text = match (e.objects.len(), e.expired) {
                (0, _) => format!("no object expires within {within}"),
                (n, 0) => format!("{n} expiring within {within}"),
                (n, expired) => {
                    format!("{n} expiring within {within}, {expired} of them already expired")
                }
            };
            if e.unknown > 0 {
                text.push_str(&format!(
                    "; {} not known (backed up before kvkeep recorded expiry; the next backup records it)",
                    e.unknown
                ));
            }
            vec![("kv expiry", text)]
        }
    }
}

/// The lists behind the summary lines: objects without a fresh backup always (they are what
/// an operator acts on), the rest only when their section is asked for.
fn details(v: &VaultReport, section: Option<Section>) -> String {
    let mut out = String::new();
    let wants = |s: Section| section.is_none_or(|only| only == s);
    if wants(Section::Coverage)
        && !(v.coverage.objects.is_empty() && v.coverage.many_versions.is_empty())
    {
        let mut t = Table::new(["KIND", "NAME", "ISSUE", "SINCE", "RUNS", "ERROR"]);
        for o in &v.coverage.objects {
            t.row(vec![
                o.kind.as_str().into(),
                o.name.to_string(),
                o.state.replace('_', " "),
                time(o.failing_since),
                o.failed_runs.map(|n| n.to_string()).unwrap_or_default(),
                match (&o.error_kind, &o.error) {
                    (Some(kind), Some(msg)) => format!("{kind}: {msg}"),
                    _ => String::new(),
                },
            ]);
        }
        for o in &v.coverage.many_versions {
            t.row(vec![
                o.kind.as_str().into(),
                o.name.to_string(),
                format!("{} versions", o.versions),
                time(Some(o.captured_at)),
                String::new(),
                String::new(),
            ]);
        }
        out.push_str(&t.render());
    }
    // Like coverage, always shown: an object about to expire is something to act on.
    if wants(Section::KeyVaultExpiry) && !v.key_vault_expiry.objects.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        let mut t = Table::new(["KIND", "NAME", "EXPIRES", "WHEN", "NOT BEFORE"]);
        for o in &v.key_vault_expiry.objects {
            let gap = Duration::from_secs(o.expires_in_seconds.unsigned_abs());
            t.row(vec![
                o.kind.as_str().into(),
                o.name.to_string(),
                time(Some(o.expires_at)),
                if o.expired {
                    format!("expired {} ago", human_duration(gap))
                } else {
                    format!("in {}", human_duration(gap))
                },
                time(o.not_before),
            ]);
        }
        out.push_str(&t.render());
    }
    if section == Some(Section::Expirations) && !v.expirations.points.is_empty() {
        let mut t = Table::new(["STARTED", "STATUS", "RUN", "REASON"]);
        for p in &v.expirations.points {
            t.row(vec![
                time(Some(p.started_at)),
                p.status.clone(),
                p.run.to_string(),
                p.reason.clone(),
            ]);
        }
        out.push_str(&t.render());
    }
    if section == Some(Section::Storage) && !v.storage.by_kind.is_empty() {
        let mut t = Table::new(["KIND", "BLOBS", "STORED", "PLAIN", "30 DAYS"]);
        for k in &v.storage.by_kind {
            t.row(vec![
                k.kind.as_str().into(),
                k.blobs.to_string(),
                bytes(k.stored_bytes),
                bytes(k.plain_bytes),
                format!(
                    "{} captures, {}",
                    k.growth_30d.captures,
                    bytes(k.growth_30d.stored_bytes)
                ),
            ]);
        }
        out.push_str(&t.render());
    }
    if section == Some(Section::Rpo) {
        let r = &v.rpo;
        let mut t = Table::new(["NEWEST POINT", "AGE", "PERIOD", "LATE AFTER", "RPO"]);
        let d = |s: Option<u64>| {
            s.map(|s| human_duration(std::time::Duration::from_secs(s)))
                .unwrap_or_else(|| "-".into())
        };
        t.row(vec![
            time(r.newest_point),
            d(r.age_seconds),
            d(r.period_seconds),
            d(r.late_after_seconds),
            d(r.rpo_seconds),
        ]);
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::build_report;
    use crate::report::tests::{config, fixture, now};

    fn report() -> Report {
        build_report(&fixture(), &config().vaults, now()).expect("report")
    }

    #[test]
    fn the_table_matches_its_golden_copy() {
        insta::assert_snapshot!("report_table", render_table(&report(), None));
    }

    #[test]
    fn a_section_narrows_the_table_and_shows_its_details() {
        let text = render_table(&report(), Some(Section::Expirations));
        insta::assert_snapshot!("report_table_expirations", text);
        assert!(!text.contains("storage"), "{text}");
    }

    #[test]
    fn csv_needs_a_section_and_json_refuses_one() {
        let Err(Fail(code, message)) = check_combination(ReportFormat::Csv, None) else {
            panic!("csv without a section was accepted");
        };
        assert_eq!(code, EXIT_USAGE);
        assert!(message.contains("--section"), "{message}");
        assert!(
            message.contains("restore-points, rpo, coverage"),
            "{message}"
        );
        assert!(check_combination(ReportFormat::Json, Some(Section::Rpo)).is_err());
        assert!(check_combination(ReportFormat::Csv, Some(Section::Rpo)).is_ok());
        assert!(check_combination(ReportFormat::Table, Some(Section::Rpo)).is_ok());
    }

    #[test]
    fn the_expiry_section_lists_each_object_with_how_long_is_left() {
        let text = render_table(&report(), Some(Section::KeyVaultExpiry));
        insta::assert_snapshot!("report_table_key_vault_expiry", text);
        assert!(text.contains("expired 2d ago"), "{text}");
        assert!(text.contains("in 10d"), "{text}");
        assert!(text.contains("1 not known"), "{text}");
    }

    #[test]
    fn expiring_within_takes_durations_and_refuses_anything_else() {
        let day = 86_400;
        for (text, secs) in [
            ("30d", 30 * day),
            ("12w", 84 * day),
            ("0s", 0),
            ("36h", 129_600),
        ] {
            assert_eq!(
                parse_expiring_within(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for text in ["soon", "30", "-1d", "3661d", ""] {
            assert!(parse_expiring_within(text).is_err(), "{text:?} accepted");
        }
    }
}
