//! The CSV form of the report: one section per file, RFC 4180 (comma-separated, CRLF line
//! ends, fields quoted when they hold a comma, quote or line break), a header row first. Times
//! are RFC 3339 in UTC and sizes are bytes, as in the JSON form; an absent value is an empty
//! field. One row per vault, or per vault and item for the list-like sections (coverage,
//! expirations, storage, verification, key-vault-expiry), so a spreadsheet or `COPY` can take it
//! as it is.

use super::{Report, Section};
use crate::restore::plan::rfc3339;

/// The header row of each section.
pub fn header(section: Section) -> &'static [&'static str] {
    match section {
        Section::RestorePoints => &[
            "vault",
            "count",
            "oldest",
            "newest",
            "completed",
            "partially_failed",
            "failed",
            "interrupted",
            "policy",
        ],
        Section::Rpo => &[
            "vault",
            "status",
            "newest_point",
            "age_seconds",
            "schedule",
            "period_seconds",
            "late_after_seconds",
            "rpo_seconds",
            "reason",
        ],
        Section::Coverage => &[
            "vault",
            "kind",
            "name",
            "issue",
            "last_captured_at",
            "error_kind",
            "error",
            "failing_since",
            "failed_runs",
            "versions",
        ],
        Section::Expirations => &["vault", "run", "started_at", "status", "reason"],
        Section::Storage => &[
            "vault",
            "kind",
            "blobs",
            "stored_bytes",
            "plain_bytes",
            "growth_30d_captures",
            "growth_30d_stored_bytes",
            "growth_30d_plain_bytes",
        ],
        Section::Verification => &["vault", "depth", "at", "result", "detail"],
        Section::KeyVaultExpiry => &[
            "vault",
            "kind",
            "name",
            "state",
            "expires_at",
            "not_before",
            "within_seconds",
            "objects",
        ],
    }
}

fn time(at: Option<i64>) -> String {
    at.map(rfc3339).unwrap_or_default()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The rows of `section`, header excluded.
fn rows(report: &Report, section: Section) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for v in &report.vaults {
        let vault = v.vault.to_string();
        match section {
            Section::RestorePoints => {
                let p = &v.restore_points;
                rows.push(vec![
                    vault,
                    p.count.to_string(),
                    time(p.oldest),
                    time(p.newest),
                    p.by_status.completed.to_string(),
                    p.by_status.partially_failed.to_string(),
                    p.by_status.failed.to_string(),
                    p.by_status.interrupted.to_string(),
                    p.policy.clone(),
                ]);
            }
            Section::Rpo => {
                let r = &v.rpo;
                rows.push(vec![
                    vault,
                    r.status.as_str().to_string(),
                    time(r.newest_point),
                    opt(r.age_seconds),
                    r.schedule.clone().unwrap_or_default(),
                    opt(r.period_seconds),
                    opt(r.late_after_seconds),
                    opt(r.rpo_seconds),
                    r.reason.clone(),
                ]);
            }
            Section::Coverage => {
                for o in &v.coverage.objects {
                    rows.push(vec![
                        vault.clone(),
                        o.kind.as_str().to_string(),
                        o.name.to_string(),
                        o.state.to_string(),
                        time(o.last_captured_at),
                        o.error_kind.clone().unwrap_or_default(),
                        o.error.clone().unwrap_or_default(),
                        time(o.failing_since),
                        opt(o.failed_runs),
                        String::new(),
                    ]);
                }
                for o in &v.coverage.many_versions {
                    rows.push(vec![
                        vault.clone(),
                        o.kind.as_str().to_string(),
                        o.name.to_string(),
                        "many_versions".to_string(),
                        time(Some(o.captured_at)),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        o.versions.to_string(),
                    ]);
                }
            }
            Section::Expirations => {
                for p in &v.expirations.points {
                    rows.push(vec![
                        vault.clone(),
                        p.run.to_string(),
                        time(Some(p.started_at)),
                        p.status.clone(),
                        p.reason.clone(),
                    ]);
                }
            }
            Section::Storage => {
                for k in &v.storage.by_kind {
                    rows.push(vec![
                        vault.clone(),
                        k.kind.as_str().to_string(),
                        k.blobs.to_string(),
                        k.stored_bytes.to_string(),
                        k.plain_bytes.to_string(),
                        k.growth_30d.captures.to_string(),
                        k.growth_30d.stored_bytes.to_string(),
                        k.growth_30d.plain_bytes.to_string(),
                    ]);
                }
            }
            Section::Verification => {
                let ver = &v.verification;
                for (depth, last) in [
                    ("quick", &ver.quick),
                    ("deep", &ver.deep),
                    ("drill", &ver.drill),
                ] {
                    rows.push(vec![
                        vault.clone(),
                        depth.to_string(),
                        time(last.as_ref().map(|l| l.at)),
                        last.as_ref().map_or("never", |l| l.result).to_string(),
                        last.as_ref().map(|l| l.detail.clone()).unwrap_or_default(),
                    ]);
                }
            }
            // One row per listed object (`expired` or `expiring`), then one `unknown` row with
            // the count of objects whose expiry was never recorded, when there are any.
            Section::KeyVaultExpiry => {
                let e = &v.key_vault_expiry;
                for o in &e.objects {
                    rows.push(vec![
                        vault.clone(),
                        o.kind.as_str().to_string(),
                        o.name.to_string(),
                        if o.expired { "expired" } else { "expiring" }.to_string(),
                        time(Some(o.expires_at)),
                        time(o.not_before),
                        e.within_seconds.to_string(),
                        String::new(),
                    ]);
                }
                if e.unknown > 0 {
                    rows.push(vec![
                        vault.clone(),
                        String::new(),
                        String::new(),
                        "unknown".to_string(),
                        String::new(),
                        String::new(),
                        e.within_seconds.to_string(),
                        e.unknown.to_string(),
                    ]);
                }
            }
        }
    }
    rows
}

/// `section` of `report` as one CSV document.
pub fn render(report: &Report, section: Section) -> Result<String, ::csv::Error> {
    let mut out = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::new());
    out.write_record(header(section))?;
    for row in rows(report, section) {
        out.write_record(&row)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| ::csv::Error::from(e.into_error()))?;
    // Every field is a Rust `String`, so the document is UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
