//! The timeline of one vault as an SVG image: every restore point as a mark coloured by its
//! run's status, and below it one row per retention rule with a tick under each point the rule
//! keeps, on an axis of age before report time.
//!
//! The axis is logarithmic in age (linear for the first minutes, then compressing): retention
//! keeps many recent points and few old ones (24 hourly, 7 daily, 12 monthly), so on a linear
//! axis a year of monthly points would squeeze the last day's hourly points into one pixel.
//!
//! The image stands alone: colours are presentation attributes on groups (not page CSS), so the
//! same text renders in a browser, in print and in an SVG renderer (the tests use `resvg`).
//! Marks are grouped by status and verdict so each carries only its position and its `<title>`,
//! which keeps a report with hundreds of thousands of points a file a browser opens.

use std::fmt::Write;

use super::Esc;
use crate::index::RunStatus;
use crate::report::timeline::{TimelinePoint, VaultTimeline};
use crate::report::{human_duration, VaultReport};
use crate::restore::plan::rfc3339;
use crate::retention::{CalendarRule, Reason, RetentionPolicy};

/// The image's coordinate width (it scales to the page).
pub const WIDTH: f64 = 1000.0;
const LABEL_RIGHT: f64 = 150.0;
const PLOT_LEFT: f64 = 160.0;
const PLOT_RIGHT: f64 = 985.0;
const TOP: f64 = 8.0;
const POINT_ROW: f64 = 40.0;
const BAND_ROW: f64 = 18.0;
const BAND_TICK: f64 = 12.0;
const AXIS_SPACE: f64 = 26.0;

/// The statuses a restore point can have, in legend order, with their colour (colour-blind
/// safe, and each also drawn with its own mark height so colour is not the only cue).
pub const STATUSES: [(RunStatus, &str); 4] = [
    (RunStatus::Completed, "#1b7f3b"),
    (RunStatus::PartiallyFailed, "#c77700"),
    (RunStatus::Failed, "#c62828"),
    (RunStatus::Interrupted, "#6a4c93"),
];
const BAND_COLOUR: &str = "#3566a8";
const FORGET_COLOUR: &str = "#b3261e";

/// The mark of a status: its offset from the top of the point row and its length. Completed
/// points are full height; partially failed ones three quarters; failed ones the lower half;
/// interrupted ones the upper half.
fn mark_extent(status: RunStatus) -> (f64, f64) {
    let h = POINT_ROW - 4.0;
    match status {
        RunStatus::Completed | RunStatus::Running => (0.0, h),
        RunStatus::PartiallyFailed => (h / 4.0, h * 3.0 / 4.0),
        RunStatus::Failed => (h / 2.0, h / 2.0),
        RunStatus::Interrupted => (0.0, h / 2.0),
    }
}

/// The rows of retention reasons: what keeps a point, grouped as the policy's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    /// `keep_last`
    Last,
    /// A calendar rule (its oldest-point extension included).
    Calendar(CalendarRule),
    /// `keep_within`
    Within,
    /// `min_retention`
    MinRetention,
    /// The last copy of a deleted object (`keep_deleted_for`).
    Deleted,
    /// The newest point that counts, always kept.
    Newest,
    /// No `keep_*` rule: everything kept.
    NoPolicy,
}

impl Band {
    /// The band of a reason that keeps a point; `None` for a reason that forgets it.
    pub fn of(reason: &Reason) -> Option<Band> {
        Some(match reason {
            Reason::NoPolicy => Band::NoPolicy,
            Reason::Newest => Band::Newest,
            Reason::Last(_) => Band::Last,
            Reason::Period(p) => Band::Calendar(p.rule()),
            Reason::Oldest(rule) => Band::Calendar(*rule),
            Reason::Within(_) => Band::Within,
            Reason::LastCopyOfDeleted { .. } => Band::Deleted,
            Reason::MinRetention => Band::MinRetention,
            Reason::NotCounted(_) | Reason::NotSelected => return None,
        })
    }

    /// A short name for CSS classes and data attributes.
    pub fn slug(self) -> &'static str {
        match self {
            Band::Last => "last",
            Band::Calendar(rule) => rule.as_str(),
            Band::Within => "within",
            Band::MinRetention => "min-retention",
            Band::Deleted => "deleted",
            Band::Newest => "newest",
            Band::NoPolicy => "no-policy",
        }
    }

    /// The row's label: the policy key and its setting.
    pub fn label(self, policy: &RetentionPolicy) -> String {
        let count = |n: Option<u32>| n.map(|n| format!(" {n}")).unwrap_or_default();
        match self {
            Band::Last => format!("keep_last{}", count(policy.keep_last)),
            Band::Calendar(rule) => {
                let n = match rule {
                    CalendarRule::Hourly => policy.keep_hourly,
                    CalendarRule::Daily => policy.keep_daily,
                    CalendarRule::Weekly => policy.keep_weekly,
                    CalendarRule::Monthly => policy.keep_monthly,
                    CalendarRule::Yearly => policy.keep_yearly,
                };
                format!("keep_{rule}{}", count(n))
            }
            Band::Within => match policy.keep_within {
                Some(d) => format!("keep_within {}", crate::retention::short_duration(d)),
                None => "keep_within".into(),
            },
            Band::MinRetention => format!(
                "min_retention {}",
                crate::retention::short_duration(policy.min_retention)
            ),
            Band::Deleted => format!(
                "deleted objects {}",
                crate::retention::short_duration(policy.keep_deleted_for)
            ),
            Band::Newest => "newest".into(),
            Band::NoPolicy => "no policy: keep all".into(),
        }
    }

    /// The time window the band keeps everything in, ending at report time, if it has one.
    fn window(self, policy: &RetentionPolicy) -> Option<i64> {
        let secs = match self {
            Band::Within => policy.keep_within?.as_secs(),
            Band::MinRetention => policy.min_retention.as_secs(),
            _ => return None,
        };
        i64::try_from(secs).ok().filter(|s| *s > 0)
    }
}

/// The bands to draw for a vault, in order: every rule the policy sets, and any other reason
/// that keeps one of its points (newest, the last copy of a deleted object, ...).
pub fn bands(policy: &RetentionPolicy, points: &[TimelinePoint]) -> Vec<Band> {
    let mut out: Vec<Band> = Vec::new();
    let set = |n: Option<u32>| n.unwrap_or(0) > 0;
    if set(policy.keep_last) {
        out.push(Band::Last);
    }
    for (rule, n) in [
        (CalendarRule::Hourly, policy.keep_hourly),
        (CalendarRule::Daily, policy.keep_daily),
        (CalendarRule::Weekly, policy.keep_weekly),
        (CalendarRule::Monthly, policy.keep_monthly),
        (CalendarRule::Yearly, policy.keep_yearly),
    ] {
        if set(n) {
            out.push(Band::Calendar(rule));
        }
    }
    if policy.keep_within.is_some() {
        out.push(Band::Within);
    }
    if !policy.is_empty() && !policy.min_retention.is_zero() {
        out.push(Band::MinRetention);
    }
    for p in points {
        for band in p.reasons.iter().filter_map(Band::of) {
            if !out.contains(&band) {
                out.push(band);
            }
        }
    }
    out.sort();
    out
}

/// The horizontal position of a time: logarithmic in its age before `now` (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct AgeScale {
    now: i64,
    /// Ages below this are spread almost linearly.
    knee: f64,
    /// `ln(1 + span / knee)`: the left edge.
    full: f64,
}

impl AgeScale {
    /// A scale whose left edge is a little older than `oldest` (at least an hour back).
    pub fn new(now: i64, oldest: Option<i64>) -> AgeScale {
        let span = oldest.map_or(0, |o| now.saturating_sub(o)).max(3_600) as f64 * 1.03;
        let knee = (span / 200.0).clamp(60.0, 3_600.0);
        AgeScale {
            now,
            knee,
            full: (1.0 + span / knee).ln(),
        }
    }

    /// The x of an age in seconds.
    pub fn x_of_age(&self, age: i64) -> f64 {
        let age = age.max(0) as f64;
        let fraction = ((1.0 + age / self.knee).ln() / self.full).min(1.0);
        PLOT_RIGHT - (PLOT_RIGHT - PLOT_LEFT) * fraction
    }

    /// The x of a time (Unix seconds); a time after `now` is drawn at `now`.
    pub fn x(&self, at: i64) -> f64 {
        self.x_of_age(self.now.saturating_sub(at))
    }

    /// The age at the left edge, in seconds.
    fn span(&self) -> i64 {
        (((self.full.exp() - 1.0) * self.knee) as i64).max(1)
    }
}

/// Ages worth a grid line, with their labels.
const TICKS: [(i64, &str); 16] = [
    (0, "now"),
    (3_600, "1h ago"),
    (6 * 3_600, "6h ago"),
    (86_400, "1d ago"),
    (2 * 86_400, "2d ago"),
    (4 * 86_400, "4d ago"),
    (7 * 86_400, "1w ago"),
    (14 * 86_400, "2w ago"),
    (30 * 86_400, "30d ago"),
    (90 * 86_400, "90d ago"),
    (180 * 86_400, "180d ago"),
    (365 * 86_400, "1y ago"),
    (2 * 365 * 86_400, "2y ago"),
    (5 * 365 * 86_400, "5y ago"),
    (10 * 365 * 86_400, "10y ago"),
    (25 * 365 * 86_400, "25y ago"),
];

/// How much a vault's part of the page holds: everything, or (on a page of many vaults) the
/// facts and the timeline's marks, so that a fleet's page stays small enough to open and mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The timeline with its retention rows, and every table.
    Full,
    /// The facts and the timeline's marks; the tables are one `--vault` report away.
    Summary,
}

/// A point's tooltip: when, how it ended, and (in full detail) why it stays or goes.
fn point_title(p: &TimelinePoint, detail: Detail) -> String {
    if detail == Detail::Summary {
        let verdict = if p.keep {
            "kept"
        } else {
            "forgotten by the next prune"
        };
        return format!(
            "{}, {}, {verdict}",
            rfc3339(p.started_at),
            p.status.as_str()
        );
    }
    let reasons = p
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let verdict = if p.keep {
        "kept"
    } else {
        "forgotten by the next prune"
    };
    format!(
        "{}, {}, {verdict}: {reasons}",
        rfc3339(p.started_at),
        p.status.as_str()
    )
}

/// The SVG of one vault's timeline at report time `now`. In [`Detail::Summary`] it holds the
/// marks alone (every point, with a shorter tooltip) without the rows of retention rules.
pub fn timeline_svg(
    vault: &VaultReport,
    timeline: &VaultTimeline,
    now: i64,
    detail: Detail,
) -> String {
    let policy = &vault.restore_points.policy_rules;
    let points = &timeline.points;
    let full = detail == Detail::Full;
    let bands = if full {
        bands(policy, points)
    } else {
        Vec::new()
    };
    let forgotten = points.iter().filter(|p| !p.keep).count();
    let band_rows = bands.len() + usize::from(full && forgotten > 0);
    let axis_y = TOP + POINT_ROW + 6.0 + BAND_ROW * band_rows as f64;
    let height = axis_y + AXIS_SPACE;
    let scale = AgeScale::new(now, points.first().map(|p| p.started_at));
    let name = Esc(vault.vault.as_str());
    let id = format!("tl-{}", vault.vault.as_str());

    let mut out = String::with_capacity(2_000 + points.len() * 120);
    w!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="timeline-svg" data-vault="{name}" data-points="{n}" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="{id}-t {id}-d" font-family="system-ui, sans-serif" font-size="12">"##,
        n = points.len(),
    );
    w!(
        out,
        r#"<title id="{id}-t">Timeline of the restore points of {name}</title><desc id="{id}-d">{desc}</desc>"#,
        desc = Esc(&describe(vault, points, &bands, forgotten)),
    );
    w!(
        out,
        r##"<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );

    // Grid lines at round ages, skipping those too close to the previous one to label.
    let mut last_x = f64::INFINITY;
    let span = scale.span();
    out.push_str(r##"<g class="grid" stroke="#d9d9d9" stroke-width="1">"##);
    let mut labels = String::new();
    for (age, label) in TICKS.iter().filter(|(age, _)| *age <= span) {
        let x = scale.x_of_age(*age);
        if last_x - x < 48.0 {
            continue;
        }
        last_x = x;
        w!(out, r#"<path d="M{x:.1} {TOP}V{axis_y}"/>"#);
        let anchor = if *age == 0 { "end" } else { "middle" };
        w!(
            labels,
            r#"<text x="{x:.1}" y="{y}" text-anchor="{anchor}">{label}</text>"#,
            y = axis_y + 16.0,
        );
    }
    w!(
        out,
        r##"<path d="M{PLOT_LEFT} {axis_y}H{PLOT_RIGHT}" stroke="#767676"/></g><g class="axis" fill="#444444">{labels}</g>"##
    );

    // Row labels.
    out.push_str(r##"<g class="labels" fill="#222222" text-anchor="end">"##);
    w!(
        out,
        r#"<text x="{LABEL_RIGHT}" y="{y:.1}" font-weight="600">restore points</text>"#,
        y = TOP + POINT_ROW / 2.0 + 4.0,
    );
    let band_y = |row: usize| TOP + POINT_ROW + 6.0 + BAND_ROW * row as f64;
    for (row, band) in bands.iter().enumerate() {
        w!(
            out,
            r#"<text x="{LABEL_RIGHT}" y="{y:.1}">{label}</text>"#,
            y = band_y(row) + BAND_TICK - 1.0,
            label = Esc(&band.label(policy)),
        );
    }
    if full && forgotten > 0 {
        w!(
            out,
            r##"<text x="{LABEL_RIGHT}" y="{y:.1}" fill="{FORGET_COLOUR}">next prune forgets</text>"##,
            y = band_y(bands.len()) + BAND_TICK - 1.0,
        );
    }
    out.push_str("</g>");

    if points.is_empty() {
        w!(
            out,
            r##"<text x="{x}" y="{y}" text-anchor="middle" fill="#555555">no restore point yet</text>"##,
            x = (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            y = TOP + POINT_ROW / 2.0 + 4.0,
        );
    }

    // The marks, one group per status and verdict so each mark carries only its place.
    for (status, colour) in STATUSES {
        for keep in [true, false] {
            let mut group = points
                .iter()
                .filter(|p| p.status == status && p.keep == keep)
                .peekable();
            if group.peek().is_none() {
                continue;
            }
            let (verdict, dash) = if keep {
                ("kept", "")
            } else {
                (
                    "forgotten",
                    r#" stroke-dasharray="4 2" stroke-opacity="0.6""#,
                )
            };
            w!(
                out,
                r#"<g class="points {status} {verdict}" stroke="{colour}" stroke-width="3"{dash}>"#,
                status = status.as_str(),
            );
            let (offset, length) = mark_extent(status);
            for p in group {
                w!(
                    out,
                    r#"<path class="point status-{status}" d="M{x:.1} {y}v{length}"><title>{title}</title></path>"#,
                    status = status.as_str(),
                    x = scale.x(p.started_at),
                    y = TOP + 2.0 + offset,
                    title = Esc(&point_title(p, detail)),
                );
            }
            out.push_str("</g>");
        }
    }

    // One row per band: the window it keeps everything in, and a tick under each point it keeps.
    for (row, band) in bands.iter().enumerate() {
        let y = band_y(row);
        if let Some(window) = band.window(policy) {
            let left = scale.x_of_age(window);
            w!(
                out,
                r#"<rect class="window" x="{left:.1}" y="{y:.1}" width="{width:.1}" height="{BAND_TICK}" fill="{BAND_COLOUR}" fill-opacity="0.15"/>"#,
                width = PLOT_RIGHT - left,
            );
        }
        let kept: Vec<&TimelinePoint> = points
            .iter()
            .filter(|p| p.reasons.iter().any(|r| Band::of(r) == Some(*band)))
            .collect();
        let title = band_title(*band, policy, &kept);
        band_ticks(&mut out, band.slug(), BAND_COLOUR, y, &scale, &kept, &title);
    }
    if full && forgotten > 0 {
        let gone: Vec<&TimelinePoint> = points.iter().filter(|p| !p.keep).collect();
        let title = format!(
            "a prune now would forget {} restore point{}",
            gone.len(),
            plural(gone.len())
        );
        band_ticks(
            &mut out,
            "forget",
            FORGET_COLOUR,
            band_y(bands.len()),
            &scale,
            &gone,
            &title,
        );
    }
    out.push_str("</svg>");
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One band's ticks as a single path (one element per band, not per point), with its title.
fn band_ticks(
    out: &mut String,
    slug: &str,
    colour: &str,
    y: f64,
    scale: &AgeScale,
    points: &[&TimelinePoint],
    title: &str,
) {
    let mut d = String::with_capacity(points.len() * 14);
    for p in points {
        w!(d, "M{:.1} {y}v{BAND_TICK}", scale.x(p.started_at));
    }
    if d.is_empty() {
        // An empty path is still a hover target for the title, on the row's whole width.
        w!(
            d,
            "M{PLOT_LEFT} {mid:.1}H{PLOT_RIGHT}",
            mid = y + BAND_TICK / 2.0
        );
        w!(
            out,
            r#"<path class="band band-{slug}" d="{d}" stroke="{colour}" stroke-opacity="0.25" stroke-dasharray="2 4"><title>{title}</title></path>"#,
            title = Esc(title),
        );
        return;
    }
    w!(
        out,
        r#"<path class="band band-{slug}" d="{d}" stroke="{colour}" stroke-width="3"><title>{title}</title></path>"#,
        title = Esc(title),
    );
}

fn band_title(band: Band, policy: &RetentionPolicy, kept: &[&TimelinePoint]) -> String {
    let label = band.label(policy);
    match (kept.first(), kept.last()) {
        (Some(first), Some(last)) => format!(
            "{label}: keeps {} restore point{}, {} to {}",
            kept.len(),
            plural(kept.len()),
            rfc3339(first.started_at),
            rfc3339(last.started_at)
        ),
        _ => format!("{label}: keeps no restore point yet"),
    }
}

/// The image in words, for screen readers (the tables beside it give the details).
fn describe(
    vault: &VaultReport,
    points: &[TimelinePoint],
    bands: &[Band],
    forgotten: usize,
) -> String {
    let rp = &vault.restore_points;
    if points.is_empty() {
        return format!("{} has no restore point yet.", vault.vault);
    }
    let s = rp.by_status;
    let mut text = format!(
        "{} restore point{} of {} from {} to {} ({} completed, {} partially failed, {} failed, {} interrupted), placed by age on a logarithmic axis ending at report time.",
        points.len(),
        plural(points.len()),
        vault.vault,
        rfc3339(points[0].started_at),
        rfc3339(points[points.len() - 1].started_at),
        s.completed,
        s.partially_failed,
        s.failed,
        s.interrupted,
    );
    if !bands.is_empty() {
        let rows: Vec<String> = bands
            .iter()
            .map(|b| {
                let n = points
                    .iter()
                    .filter(|p| p.reasons.iter().any(|r| Band::of(r) == Some(*b)))
                    .count();
                format!("{} keeps {n}", b.label(&rp.policy_rules))
            })
            .collect();
        let _ = write!(text, " Retention: {}.", rows.join("; "));
    }
    let _ = write!(
        text,
        " A prune now would forget {forgotten}. Newest point {} old.",
        vault
            .rpo
            .age_seconds
            .map(|s| human_duration(std::time::Duration::from_secs(s)))
            .unwrap_or_else(|| "-".into())
    );
    text
}
