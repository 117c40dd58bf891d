//! `kvkeep report --format html`: the report as one self-contained HTML page a person opens in
//! a browser or attaches to an audit (issue #10). Inline CSS and inline SVG, no script, no font
//! or image to fetch, so it reads the same offline, with JavaScript off, on a phone (the layout
//! reflows and wide tables scroll) and on paper (`@media print` puts each vault on its pages).
//!
//! Per vault: a timeline with every restore point coloured by status and the retention rules
//! that keep each one ([`svg`]), then the facts of the [`Report`] (RPO, coverage, expirations,
//! storage, verification), the restore points in a table, and the objects with the restore
//! points that hold them. Every chart has a text alternative: a `<desc>`, a `<title>` on each
//! mark, and tables that give the same figures. A page of more than [`FULL_DETAIL_VAULTS`]
//! vaults shows each in [`Detail::Summary`] (facts and marks; the tables are on the vault's own
//! page), so that a fleet's page stays a few megabytes.
//!
//! Every text that reaches the page goes through [`Esc`]: error messages and verification
//! details quote Key Vault and the store, and must never become markup. The long tables are
//! cut at [`rows_per_vault`] rows with a line saying how many were left out and which command
//! lists them all; the timeline always shows every point.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::timeline::{rows_per_vault, Timeline, TimelinePoint, VaultTimeline};
use super::{human_duration, Report, VaultReport};
use crate::cli::render::bytes;
use crate::config::VaultConfig;
use crate::index::{Index, IndexError};
use crate::restore::plan::rfc3339;
pub use svg::Detail;

/// `write!` into a `String`, which cannot fail, so its `fmt::Result` is dropped here once.
/// Defined before the submodules so they see it too (a `macro_rules!` is in scope textually).
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        use ::std::fmt::Write as _;
        let _ = $out.write_fmt(format_args!($($arg)*));
    }};
}

pub mod svg;
#[cfg(test)]
mod tests;

/// Text escaped for HTML and SVG, in element content and in quoted attribute values alike.
#[derive(Debug, Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Builds the report and its timeline from `index` at `now` and renders the page: what
/// `kvkeep report --format html` writes and what a daemon serves.
pub fn build_html(
    index: &Index,
    vaults: &[VaultConfig],
    now: DateTime<Utc>,
) -> Result<String, IndexError> {
    build_html_with(index, vaults, now, &super::ReportOptions::default())
}

/// [`build_html`] with the report's options (`--expiring-within`).
pub fn build_html_with(
    index: &Index,
    vaults: &[VaultConfig],
    now: DateTime<Utc>,
    options: &super::ReportOptions,
) -> Result<String, IndexError> {
    // One prune plan per vault serves both its report and its timeline.
    let mut report_vaults = Vec::with_capacity(vaults.len());
    let mut timelines = Vec::with_capacity(vaults.len());
    for vault in vaults {
        let plan = crate::retention::plan_prune(index, vault, now)?;
        report_vaults.push(super::vault_report(index, vault, now, options, &plan)?);
        timelines.push(super::timeline::vault_timeline(
            index,
            vault,
            &plan,
            vaults.len(),
        )?);
    }
    let report = Report {
        report_format: super::REPORT_FORMAT,
        generated_at: now.timestamp(),
        vaults: report_vaults,
    };
    let timeline = Timeline {
        generated_at: now.timestamp(),
        vaults: timelines,
    };
    Ok(render(&report, &timeline))
}

/// The page for `report` and its `timeline` (built for the same vaults and time). A vault of
/// the report missing from the timeline is drawn without points.
pub fn render(report: &Report, timeline: &Timeline) -> String {
    let rows = rows_per_vault(report.vaults.len());
    let detail = detail_for(report.vaults.len());
    let by_name: HashMap<&str, &VaultTimeline> = timeline
        .vaults
        .iter()
        .map(|v| (v.vault.as_str(), v))
        .collect();
    let generated = rfc3339(report.generated_at);
    let points: usize = timeline.vaults.iter().map(|v| v.points.len()).sum();
    let mut out = String::with_capacity(16_384 + points * 200 + report.vaults.len() * 4_096);
    w!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="generator" content="kvkeep {version}"><title>kvkeep report {generated}</title><style>{CSS}</style></head>
<body><header><h1>kvkeep retention report</h1><p>Generated at {generated} for {n} vault{s} (report_format {format}): what can be restored and from when, whether each vault meets its RPO, what is not covered, what the next prune would forget, what the backups weigh and when they were last verified. Times are UTC.</p>"#,
        version = env!("CARGO_PKG_VERSION"),
        n = report.vaults.len(),
        s = if report.vaults.len() == 1 { "" } else { "s" },
        format = report.report_format,
    );
    overview(&mut out, report);
    legend(&mut out);
    out.push_str("</header>\n<main>");
    for vault in &report.vaults {
        let empty;
        let tl = match by_name.get(vault.vault.as_str()) {
            Some(tl) => *tl,
            None => {
                empty = VaultTimeline {
                    vault: vault.vault.clone(),
                    points: Vec::new(),
                    objects: Vec::new(),
                    total_objects: 0,
                };
                &empty
            }
        };
        vault_section(&mut out, vault, tl, report.generated_at, rows, detail);
    }
    out.push_str("</main>\n</body></html>\n");
    out
}

/// Laid out for a phone first (one column, wide tables scroll in their box), widened on a
/// screen, and flattened for print (no scroll boxes, a page per vault, colours kept).
const CSS: &str = "\
:root{--fg:#1a1a1a;--muted:#555;--line:#d5d5d5;--head:#f2f2f2;--ok:#1b7f3b;--late:#a35200;--breach:#b3261e;--never:#5f5f5f}\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);background:#fff}\
header,main{max-width:75rem;margin:0 auto;padding:0 .9rem}\
h1{font-size:1.45rem;margin:1rem 0 .4rem}\
h2{font-size:1.3rem;margin:2rem 0 .6rem;padding-top:1rem;border-top:3px solid var(--line)}\
h3{font-size:1.05rem;margin:1.2rem 0 .4rem}\
p{margin:.4rem 0}\
.badge{display:inline-block;white-space:nowrap;padding:.05rem .55rem;border-radius:1rem;font-size:.8rem;font-weight:600;color:#fff;vertical-align:middle;-webkit-print-color-adjust:exact;print-color-adjust:exact}\
.rpo-ok{background:var(--ok)}.rpo-late{background:var(--late)}.rpo-breach{background:var(--breach)}.rpo-never{background:var(--never)}\
.bad{color:var(--breach);font-weight:600}.muted,.more{color:var(--muted)}.more{font-style:italic}\
dl.facts{display:grid;grid-template-columns:1fr;gap:.1rem 1rem;margin:.5rem 0}\
dl.facts dt{font-weight:600;color:var(--muted)}dl.facts dd{margin:0 0 .45rem}\
@media (min-width:42rem){dl.facts{grid-template-columns:11rem 1fr}dl.facts dd{margin:0}}\
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}\
table{border-collapse:collapse;width:100%;font-size:.88rem;margin:.3rem 0}\
th,td{text-align:left;padding:.28rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}\
th{background:var(--head);font-weight:600}tbody th{background:none}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
caption{text-align:left;font-weight:600;padding:.2rem 0}\
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;overflow-wrap:break-word}.t{white-space:nowrap}\
figure{margin:.5rem 0}\
.timeline svg{display:block;width:100%;min-width:40rem;height:auto}\
ul.legend{display:flex;flex-wrap:wrap;gap:.2rem 1.1rem;list-style:none;padding:0;margin:.5rem 0;font-size:.85rem}\
.swatch{display:inline-block;width:.75rem;height:.75rem;margin-right:.35rem;vertical-align:-.05rem;border-radius:2px;-webkit-print-color-adjust:exact;print-color-adjust:exact}\
a{color:#1f5fa8}table.overview a{white-space:nowrap}\
@media print{body{font-size:9.5pt}header,main{max-width:none;padding:0}.scroll{overflow:visible}\
.timeline svg{min-width:0}section.vault{break-before:page}h2,h3{break-after:avoid}tr,figure,dl.facts{break-inside:avoid}\
a{color:inherit;text-decoration:none}}";

fn legend(out: &mut String) {
    out.push_str(r#"<ul class="legend" aria-label="Timeline legend">"#);
    for (status, colour) in svg::STATUSES {
        w!(
            out,
            r#"<li><span class="swatch" style="background:{colour}"></span>{}</li>"#,
            status.as_str().replace('_', " ")
        );
    }
    out.push_str(
        "<li>full mark: completed; three quarters: partially failed; lower half: failed; \
         upper half: interrupted; dashed: the next prune would forget it</li></ul>\
         <p class=\"muted\">In each timeline, a mark is a restore point (hover or tap it for its \
         time, status and why it is kept), age grows to the left on a logarithmic axis, and the \
         rows below the marks show which retention rule keeps each point. The tables after it \
         hold the same facts.</p>",
    );
}

/// One row per vault, linking to its section: the page's table of contents and the answer to
/// "is anything wrong" before any scrolling.
fn overview(out: &mut String, report: &Report) {
    out.push_str(
        r#"<nav aria-label="Vaults"><div class="scroll"><table class="overview"><caption>Vaults</caption><thead><tr><th>Vault</th><th>RPO</th><th class="num">Restore points</th><th>Newest</th><th class="num">Uncovered objects</th><th class="num">Stored</th></tr></thead><tbody>"#,
    );
    for v in &report.vaults {
        let name = Esc(v.vault.as_str());
        let uncovered = v.coverage.never_captured + v.coverage.failing;
        w!(
            out,
            r##"<tr data-vault="{name}"><td><a href="#vault-{name}">{name}</a></td><td>{badge}</td><td class="num">{points}</td><td class="t">{newest}</td><td class="num{bad}">{uncovered}</td><td class="num">{stored}</td></tr>"##,
            badge = rpo_badge(v),
            points = v.restore_points.count,
            newest = time_or(v.restore_points.newest, "never"),
            bad = if uncovered > 0 { " bad" } else { "" },
            stored = bytes(v.storage.stored_bytes),
        );
    }
    out.push_str("</tbody></table></div></nav>");
}

fn rpo_badge(v: &VaultReport) -> String {
    let status = v.rpo.status.as_str();
    format!(r#"<span class="badge rpo-{status}">RPO {status}</span>"#)
}

fn time_or(at: Option<i64>, none: &str) -> String {
    at.map(rfc3339).unwrap_or_else(|| none.to_string())
}

fn duration(secs: Option<u64>) -> String {
    secs.map(|s| human_duration(Duration::from_secs(s)))
        .unwrap_or_else(|| "-".into())
}

/// "showing the first 10 of 25; `kvkeep list objects --vault kv` lists them all", as a table
/// row spanning `cols` columns, when a table was cut.
fn more_row(out: &mut String, cols: usize, shown: usize, total: u64, command: &str) {
    let shown = shown as u64;
    if total > shown {
        w!(
            out,
            r#"<tr class="more"><td colspan="{cols}">and {more} more (this page shows {shown} of {total}): <code>{cmd}</code> lists them all</td></tr>"#,
            more = total - shown,
            cmd = Esc(command),
        );
    }
}

/// Pages of up to this many vaults show each in full; larger ones in [`Detail::Summary`], which
/// keeps a thousand vaults with ten points each under 5 MB (see `benches/report.rs`).
pub const FULL_DETAIL_VAULTS: usize = 100;

/// The detail of each vault's part of a page of `vaults` vaults.
pub fn detail_for(vaults: usize) -> Detail {
    if vaults <= FULL_DETAIL_VAULTS {
        Detail::Full
    } else {
        Detail::Summary
    }
}

fn vault_section(
    out: &mut String,
    v: &VaultReport,
    tl: &VaultTimeline,
    now: i64,
    rows: usize,
    detail: Detail,
) {
    let name = Esc(v.vault.as_str());
    w!(
        out,
        r#"
<section class="vault" id="vault-{name}" data-vault="{name}" aria-labelledby="h-{name}"><h2 id="h-{name}">{name} {badge}</h2>"#,
        badge = rpo_badge(v),
    );
    facts(out, v);

    w!(
        out,
        r#"<h3>Timeline</h3><figure class="timeline"><div class="scroll">{svg}</div></figure>"#,
        svg = svg::timeline_svg(v, tl, now, detail),
    );
    if detail == Detail::Summary {
        w!(
            out,
            r#"<p class="more">This page holds {FULL_DETAIL_VAULTS}+ vaults, so each shows its facts and restore points only. The tables (retention rules, restore points, failures, storage, verification, objects): <code>kvkeep report --format html --vault {name}</code>.</p></section>"#,
            name = Esc(v.vault.as_str()),
        );
        return;
    }
    bands_table(out, v, tl);
    rpo(out, v);
    points_table(out, v, tl, rows);
    coverage(out, v, rows);
    expirations(out, v);
    storage(out, v);
    verification(out, v);
    key_vault_expiry(out, v);
    objects_table(out, v, tl, rows);
    out.push_str("</section>");
}

/// The one-line answers, as in the terminal table.
fn facts(out: &mut String, v: &VaultReport) {
    let p = &v.restore_points;
    let s = p.by_status;
    let points = if p.count == 0 {
        "none".to_string()
    } else {
        format!(
            "{} from {} to {}: {} completed, {} partially failed, {} failed, {} interrupted",
            p.count,
            time_or(p.oldest, "-"),
            time_or(p.newest, "-"),
            s.completed,
            s.partially_failed,
            s.failed,
            s.interrupted
        )
    };
    let c = &v.coverage;
    let e = &v.expirations;
    let st = &v.storage;
    let expiring = if e.forgotten_points == 0 {
        "a prune now would forget nothing".to_string()
    } else {
        format!(
            "a prune now would forget {} restore points, deleting {} manifests and {} blobs ({})",
            e.forgotten_points,
            e.manifests,
            e.blobs,
            bytes(e.stored_bytes)
        )
    };
    let ver = &v.verification;
    let verified: Vec<String> = [
        ("quick", &ver.quick),
        ("deep", &ver.deep),
        ("drill", &ver.drill),
    ]
    .iter()
    .map(|(depth, last)| match last {
        Some(l) => format!("{depth} {} at {}", l.result, rfc3339(l.at)),
        None => format!("{depth} never"),
    })
    .collect();
    let coverage = format!(
        "{} never captured, {} failing, {} with {} or more versions (Key Vault's limit is {}); skipped on purpose: {}",
        c.never_captured,
        c.failing,
        c.many_versions.len(),
        c.version_warning_at,
        c.version_limit,
        super::skipped_line(c.skipped.as_ref())
    );
    let kv = &v.key_vault_expiry;
    let within = human_duration(std::time::Duration::from_secs(kv.within_seconds));
    let mut kv_expiry = match (kv.objects.len(), kv.expired) {
        (0, _) => format!("no object expires within {within}"),
        (n, 0) => format!("{n} expiring within {within}"),
        (n, expired) => format!("{n} expiring within {within}, {expired} of them already expired"),
    };
    if kv.unknown > 0 {
        kv_expiry.push_str(&format!(
            "; {} not known (backed up before kvkeep recorded expiry)",
            kv.unknown
        ));
    }
    let rows: [(&str, String, bool); 8] = [
        ("Restore points", points, false),
        ("Retention", p.policy.clone(), false),
        (
            "RPO",
            format!("{}: {}", v.rpo.status.as_str(), v.rpo.reason),
            !matches!(v.rpo.status, super::RpoStatus::Ok),
        ),
        ("Coverage", coverage, c.never_captured + c.failing > 0),
        ("Expirations", expiring, false),
        (
            "Storage",
            format!(
                "{} blobs, {} stored ({} plain); last 30 days: {} captures, {} stored",
                st.blobs,
                bytes(st.stored_bytes),
                bytes(st.plain_bytes),
                st.growth_30d.captures,
                bytes(st.growth_30d.stored_bytes)
            ),
            false,
        ),
        (
            "Verification",
            verified.join("; "),
            [&ver.quick, &ver.deep, &ver.drill]
                .iter()
                .any(|l| l.as_ref().is_some_and(|l| l.result != "ok")),
        ),
        ("Key Vault expiry", kv_expiry, !kv.objects.is_empty()),
    ];
    out.push_str(r#"<dl class="facts">"#);
    for (label, text, bad) in rows {
        w!(
            out,
            r#"<dt>{label}</dt><dd{class}>{text}</dd>"#,
            class = if bad { r#" class="bad""# } else { "" },
            text = Esc(&text),
        );
    }
    out.push_str("</dl>");
}

/// The retention rows of the timeline in figures.
fn bands_table(out: &mut String, v: &VaultReport, tl: &VaultTimeline) {
    let policy = &v.restore_points.policy_rules;
    let bands = svg::bands(policy, &tl.points);
    if bands.is_empty() {
        return;
    }
    out.push_str(r#"<div class="scroll"><table class="bands"><caption>What keeps the restore points</caption><thead><tr><th>Rule</th><th class="num">Points kept</th><th>Oldest</th><th>Newest</th></tr></thead><tbody>"#);
    for band in bands {
        let kept: Vec<&TimelinePoint> = tl
            .points
            .iter()
            .filter(|p| p.reasons.iter().any(|r| svg::Band::of(r) == Some(band)))
            .collect();
        w!(
            out,
            r#"<tr data-band="{slug}"><th scope="row">{label}</th><td class="num">{n}</td><td>{oldest}</td><td>{newest}</td></tr>"#,
            slug = band.slug(),
            label = Esc(&band.label(policy)),
            n = kept.len(),
            oldest = time_or(kept.first().map(|p| p.started_at), "-"),
            newest = time_or(kept.last().map(|p| p.started_at), "-"),
        );
    }
    out.push_str("</tbody></table></div>");
}

/// The restore points, newest first, cut at `rows`.
fn points_table(out: &mut String, v: &VaultReport, tl: &VaultTimeline, rows: usize) {
    if tl.points.is_empty() {
        return;
    }
    out.push_str(r#"<h3>Restore points</h3><div class="scroll"><table class="points"><thead><tr><th>Started</th><th>Status</th><th>Run</th><th>Next prune</th><th>Why</th></tr></thead><tbody>"#);
    for p in tl.points.iter().rev().take(rows) {
        let reasons = p
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        w!(
            out,
            r#"<tr><td class="t">{at}</td><td>{status}</td><td class="mono">{run}</td><td{class}>{verdict}</td><td>{reasons}</td></tr>"#,
            at = rfc3339(p.started_at),
            status = p.status.as_str().replace('_', " "),
            run = Esc(p.run.as_str()),
            class = if p.keep { "" } else { r#" class="bad""# },
            verdict = if p.keep { "keeps" } else { "forgets" },
            reasons = Esc(&reasons),
        );
    }
    more_row(
        out,
        5,
        tl.points.len().min(rows),
        tl.points.len() as u64,
        &format!("kvkeep prune --dry-run --vault {}", v.vault),
    );
    out.push_str("</tbody></table></div>");
}

/// The RPO verdict's figures, as `kvkeep report --section rpo` prints them.
fn rpo(out: &mut String, v: &VaultReport) {
    let r = &v.rpo;
    w!(
        out,
        r#"<h3>RPO</h3><p{class}>{badge} {reason}</p><div class="scroll"><table class="rpo"><thead><tr><th>Newest point</th><th>Age</th><th>Schedule</th><th>Period</th><th>Late after</th><th>RPO</th></tr></thead><tbody><tr><td>{newest}</td><td>{age}</td><td class="mono">{schedule}</td><td>{period}</td><td>{late}</td><td>{target}</td></tr></tbody></table></div>"#,
        class = if matches!(r.status, super::RpoStatus::Ok) {
            ""
        } else {
            r#" class="bad""#
        },
        badge = rpo_badge(v),
        reason = Esc(&r.reason),
        newest = time_or(r.newest_point, "never"),
        age = duration(r.age_seconds),
        schedule = Esc(r.schedule.as_deref().unwrap_or("on demand")),
        period = duration(r.period_seconds),
        late = duration(r.late_after_seconds),
        target = duration(r.rpo_seconds),
    );
}

/// Objects without a fresh backup and objects near the version limit.
fn coverage(out: &mut String, v: &VaultReport, rows: usize) {
    let c = &v.coverage;
    out.push_str("<h3>Failures and coverage</h3>");
    if c.objects.is_empty() {
        out.push_str("<p>Every object the vault holds is in its newest restore point.</p>");
    } else {
        out.push_str(r#"<div class="scroll"><table class="coverage"><thead><tr><th>Kind</th><th>Name</th><th>Issue</th><th>Last captured</th><th>Failing since</th><th class="num">Failed runs</th><th>Error</th></tr></thead><tbody>"#);
        for o in c.objects.iter().take(rows) {
            let error = match (&o.error_kind, &o.error) {
                (Some(kind), Some(msg)) => format!("{kind}: {msg}"),
                _ => String::new(),
            };
            w!(
                out,
                r#"<tr><td>{kind}</td><td class="mono">{name}</td><td class="bad">{issue}</td><td>{last}</td><td>{since}</td><td class="num">{runs}</td><td>{error}</td></tr>"#,
                kind = o.kind,
                name = Esc(o.name.as_str()),
                issue = o.state.replace('_', " "),
                last = time_or(o.last_captured_at, "never"),
                since = time_or(o.failing_since, ""),
                runs = o.failed_runs.map(|n| n.to_string()).unwrap_or_default(),
                error = Esc(&error),
            );
        }
        more_row(
            out,
            7,
            c.objects.len().min(rows),
            c.objects.len() as u64,
            &format!("kvkeep report --section coverage --vault {}", v.vault),
        );
        out.push_str("</tbody></table></div>");
    }
    if !c.many_versions.is_empty() {
        w!(
            out,
            r#"<div class="scroll"><table class="versions"><caption>Objects with {} or more versions (Key Vault refuses to back up more than {})</caption><thead><tr><th>Kind</th><th>Name</th><th class="num">Versions</th><th>Captured</th></tr></thead><tbody>"#,
            c.version_warning_at,
            c.version_limit
        );
        for o in c.many_versions.iter().take(rows) {
            w!(
                out,
                r#"<tr><td>{}</td><td class="mono">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                o.kind,
                Esc(o.name.as_str()),
                o.versions,
                rfc3339(o.captured_at)
            );
        }
        more_row(
            out,
            4,
            c.many_versions.len().min(rows),
            c.many_versions.len() as u64,
            &format!("kvkeep report --section coverage --vault {}", v.vault),
        );
        out.push_str("</tbody></table></div>");
    }
}

fn expirations(out: &mut String, v: &VaultReport) {
    let e = &v.expirations;
    out.push_str("<h3>Expirations</h3>");
    if e.forgotten_points == 0 {
        out.push_str("<p>A prune now would forget no restore point.</p>");
        return;
    }
    w!(
        out,
        "<p>A prune now would forget {} restore point{}, deleting {} manifests and {} blobs ({}).</p>",
        e.forgotten_points,
        if e.forgotten_points == 1 { "" } else { "s" },
        e.manifests,
        e.blobs,
        bytes(e.stored_bytes)
    );
    out.push_str(r#"<div class="scroll"><table class="expiring"><thead><tr><th>Reason</th><th class="num">Points</th></tr></thead><tbody>"#);
    for r in &e.by_reason {
        w!(
            out,
            r#"<tr><td>{}</td><td class="num">{}</td></tr>"#,
            Esc(&r.reason),
            r.points
        );
    }
    out.push_str("</tbody></table></div>");
    // The points themselves are in the restore points table, marked "forgets".
}

fn storage(out: &mut String, v: &VaultReport) {
    let s = &v.storage;
    out.push_str("<h3>Storage</h3>");
    if s.by_kind.is_empty() {
        out.push_str("<p>No object blob stored.</p>");
        return;
    }
    out.push_str(r#"<div class="scroll"><table class="storage"><thead><tr><th>Kind</th><th class="num">Blobs</th><th class="num">Stored</th><th class="num">Plain</th><th class="num">Captures, last 30 days</th><th class="num">Stored, last 30 days</th></tr></thead><tbody>"#);
    let mut row = |kind: &str, blobs: u64, stored: u64, plain: u64, g: &super::Growth| {
        w!(
            out,
            r#"<tr><th scope="row">{kind}</th><td class="num">{blobs}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            bytes(stored),
            bytes(plain),
            g.captures,
            bytes(g.stored_bytes)
        );
    };
    for k in &s.by_kind {
        row(
            k.kind.as_str(),
            k.blobs,
            k.stored_bytes,
            k.plain_bytes,
            &k.growth_30d,
        );
    }
    row("all", s.blobs, s.stored_bytes, s.plain_bytes, &s.growth_30d);
    out.push_str("</tbody></table></div>");
}

fn verification(out: &mut String, v: &VaultReport) {
    let ver = &v.verification;
    out.push_str(r#"<h3>Verification</h3><div class="scroll"><table class="verification"><thead><tr><th>Depth</th><th>Last</th><th>Result</th><th>Detail</th></tr></thead><tbody>"#);
    for (depth, last) in [
        ("quick", &ver.quick),
        ("deep", &ver.deep),
        ("drill", &ver.drill),
    ] {
        match last {
            Some(l) => w!(
                out,
                r#"<tr><th scope="row">{depth}</th><td>{}</td><td{}>{}</td><td>{}</td></tr>"#,
                rfc3339(l.at),
                if l.result == "ok" {
                    ""
                } else {
                    r#" class="bad""#
                },
                l.result,
                Esc(&l.detail)
            ),
            None => w!(
                out,
                r#"<tr><th scope="row">{depth}</th><td class="muted">never</td><td></td><td></td></tr>"#
            ),
        }
    }
    out.push_str("</tbody></table></div>");
}

/// Objects whose Key Vault `exp` is near or past, soonest first: an expired secret breaks the
/// application that reads it, whatever its backups.
fn key_vault_expiry(out: &mut String, v: &VaultReport) {
    let e = &v.key_vault_expiry;
    out.push_str("<h3>Key Vault expiry</h3>");
    if e.objects.is_empty() {
        w!(
            out,
            "<p>No object expires within {}.</p>",
            human_duration(std::time::Duration::from_secs(e.within_seconds))
        );
        return;
    }
    out.push_str(r#"<div class="scroll"><table class="kv-expiry"><thead><tr><th>Kind</th><th>Name</th><th>Expires</th><th>When</th><th>Not before</th></tr></thead><tbody>"#);
    for o in &e.objects {
        let gap = human_duration(std::time::Duration::from_secs(
            o.expires_in_seconds.unsigned_abs(),
        ));
        w!(
            out,
            r#"<tr><td>{kind}</td><td class="mono">{name}</td><td>{exp}</td><td{class}>{when}</td><td>{nbf}</td></tr>"#,
            kind = o.kind.as_str(),
            name = Esc(o.name.as_str()),
            exp = rfc3339(o.expires_at),
            class = if o.expired { r#" class="bad""# } else { "" },
            when = if o.expired {
                format!("expired {gap} ago")
            } else {
                format!("in {gap}")
            },
            nbf = time_or(o.not_before, "-"),
        );
    }
    out.push_str("</tbody></table></div>");
}

/// Each object with the restore points that hold it: how many, from when to when, and the
/// times of its newest distinct captures (the states it can be restored to).
fn objects_table(out: &mut String, v: &VaultReport, tl: &VaultTimeline, rows: usize) {
    out.push_str("<h3>Objects</h3>");
    if tl.total_objects == 0 {
        out.push_str("<p>No object seen yet.</p>");
        return;
    }
    out.push_str(r#"<div class="scroll"><table class="objects"><thead><tr><th>Kind</th><th>Name</th><th class="num">Restore points</th><th class="num">Distinct captures</th><th>First point</th><th>Last point</th><th>Newest captures</th></tr></thead><tbody>"#);
    for o in tl.objects.iter().take(rows) {
        let mut captures: Vec<String> = o.newest_captures.iter().map(|t| rfc3339(*t)).collect();
        if o.captures > captures.len() as u64 {
            captures.push(format!("and {} older", o.captures - captures.len() as u64));
        }
        w!(
            out,
            r#"<tr data-object="{kind}/{name}"><td>{kind}</td><td class="mono">{name}{deleted}</td><td class="num{bad}">{points}</td><td class="num">{n}</td><td class="t">{first}</td><td class="t">{last}</td><td>{captures}</td></tr>"#,
            kind = o.kind,
            name = Esc(o.name.as_str()),
            deleted = if o.deleted {
                r#" <span class="muted">(deleted)</span>"#
            } else {
                ""
            },
            bad = if o.points == 0 { " bad" } else { "" },
            points = o.points,
            n = o.captures,
            first = time_or(o.first_point, "none"),
            last = time_or(o.last_point, "none"),
            captures = Esc(&captures.join(", ")),
        );
    }
    more_row(
        out,
        7,
        tl.objects.len().min(rows),
        tl.total_objects,
        &format!("kvkeep list objects --vault {}", v.vault),
    );
    out.push_str("</tbody></table></div>");
}
