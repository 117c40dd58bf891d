//! The checks of one vault: connection (host, TLS, token), one listing and one backup per
//! configured kind, clock skew against the vault's `Date` header, and the schedule's next run.
//!
//! The backup check sends one real backup request and drops the blob: nothing is stored or
//! recorded, but it is the only way to prove the `backup` permission short of a backup run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::advice::{advise, cause, Cause};
use super::{Check, CheckName, CheckStatus};
use crate::config::{Config, VaultConfig};
use crate::model::ObjectKind;
use crate::source::{AzureSourceOptions, AzureVaultSource, SdkRetryOptions, VaultSource};

/// Clock skew beyond which tokens and SAS start failing in confusing ways.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Objects listed per kind: one page on Key Vault, enough to prove listing works and to find
/// an object to back up, without walking a large vault to its end.
const LIST_PROBE: usize = 25;

/// How long the unauthenticated `Date` probe may take.
const DATE_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Every check of `vault`, in order.
pub(super) async fn check_vault(
    config: &Config,
    vault: &VaultConfig,
    cancel: &CancellationToken,
) -> Vec<Check> {
    let name = Some(&vault.name);
    let host = url::Url::parse(&vault.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| vault.url.clone());
    let mut checks = Vec::new();
    let options = AzureSourceOptions {
        // One quick retry: a preflight reports a dead host in seconds, not after the backup
        // path's patience.
        retry: SdkRetryOptions {
            max_retries: 1,
            ..SdkRetryOptions::default()
        },
        cancel: cancel.clone(),
        ..AzureSourceOptions::default()
    };
    let source = match AzureVaultSource::from_config(vault, &config.azure, options) {
        Ok(source) => source,
        Err(e) => {
            checks.push(Check::fail(
                name,
                CheckName::Connect,
                e.to_string(),
                "fix [azure] (credential, ca_file) or the vault's url as the message says",
            ));
            checks.push(check_schedule(vault));
            return checks;
        }
    };
    // The backup probe tries an object kvkeep would really back up: not certificate-managed and
    // not left out by include/exclude/skip_tags. (Globs were validated with the configuration.)
    let filter = crate::backup::plan::PlanOptions::from_vault(vault, 0).ok();
    let backed_up = |o: &crate::source::ObjectSummary| match &filter {
        Some(f) => f.skip_reason(o).is_none(),
        None => !o.managed,
    };
    let mut connected = false;
    let mut no_route = false;
    for kind in &vault.kinds {
        let kind = *kind;
        if cancel.is_cancelled() {
            break;
        }
        let mut listed = source.list_at_most(kind, LIST_PROBE).await;
        let mut refused_once = false;
        if !connected {
            // A token refused once may have been revoked or rotated under kvkeep: ask once more
            // before calling the credential broken, and say that it happened.
            if matches!(&listed, Err(e) if cause(e) == Cause::Token) {
                refused_once = true;
                listed = source.list_at_most(kind, LIST_PROBE).await;
            }
            // The first authenticated call proves (or not) the host, TLS and the token.
            match &listed {
                Err(e) if !cause(e).reached() => {
                    let (_, detail, fix) = advise(e, &host);
                    checks.push(Check::fail(name, CheckName::Connect, detail, fix));
                    // Without a connection there is no Date header to read either; skipping
                    // saves a second connect timeout on a host that does not answer.
                    no_route = matches!(
                        cause(e),
                        Cause::UnknownHost | Cause::Unreachable | Cause::Tls
                    );
                    break;
                }
                _ if refused_once => {
                    connected = true;
                    checks.push(Check::warn(
                        name,
                        CheckName::Connect,
                        format!("{host}: the vault refused kvkeep's token once (401), then accepted it"),
                        Some("if this repeats, check [azure] credential: a token revoked or issued for another tenant or resource is refused".into()),
                    ));
                }
                _ => {
                    connected = true;
                    checks.push(Check::ok(
                        name,
                        CheckName::Connect,
                        format!("{host}: resolves, tls verifies, token accepted"),
                    ));
                }
            }
        }
        match listed {
            Ok(objects) => {
                checks.push(Check::ok(
                    name,
                    CheckName::List(kind),
                    match objects.len() {
                        1 => format!("1 {} listed", singular(kind)),
                        n if n >= LIST_PROBE => {
                            format!("{n} {kind} listed (one page; the rest not fetched)")
                        }
                        n => format!("{n} {kind} listed"),
                    },
                ));
                match objects.iter().find(|o| backed_up(o)) {
                    Some(object) => {
                        checks.push(check_backup(&source, kind, &object.name, &host).await);
                    }
                    None => checks.push(Check::warn(
                        name,
                        CheckName::Backup(kind),
                        if objects.len() >= LIST_PROBE {
                            format!("no object to try: the first {} {kind} listed are all certificate-managed or left out by include/exclude/skip_tags", objects.len())
                        } else {
                            format!("no object to try: the vault holds no {kind} kvkeep backs up (certificate-managed ones and those left out by include/exclude/skip_tags are not tried)")
                        },
                        Some(format!(
                            "the `backup` permission on {kind} is unproven; run kvkeep doctor again once the vault holds one"
                        )),
                    )),
                }
            }
            Err(e) => {
                let (status, detail, fix) = advise(&e, &host);
                checks.push(row(name, CheckName::List(kind), status, detail, fix));
                checks.push(Check::warn(
                    name,
                    CheckName::Backup(kind),
                    format!("not tried: {kind} could not be listed"),
                    None,
                ));
            }
        }
    }
    if no_route {
        checks.push(Check::warn(
            name,
            CheckName::Clock,
            "skipped: the vault cannot be reached",
            None,
        ));
    } else {
        checks.push(check_clock(config, vault).await);
    }
    checks.push(check_schedule(vault));
    checks
}

async fn check_backup(
    source: &AzureVaultSource,
    kind: ObjectKind,
    object: &crate::model::ObjectName,
    host: &str,
) -> Check {
    let vault = Some(source.vault());
    match source.backup(kind, object).await {
        // The blob is dropped here: the check proves the permission, it stores nothing.
        Ok(blob) => Check::ok(
            vault,
            CheckName::Backup(kind),
            format!(
                "backup of {} {object} works ({} bytes, not stored)",
                singular(kind),
                blob.len()
            ),
        ),
        Err(e) if e.kind() == crate::source::SourceErrorKind::NotFound => Check::warn(
            vault,
            CheckName::Backup(kind),
            format!(
                "{} {object} went away between list and backup",
                singular(kind)
            ),
            Some("run kvkeep doctor again".into()),
        ),
        Err(e) => {
            let (status, detail, fix) = advise(&e, host);
            row(vault, CheckName::Backup(kind), status, detail, fix)
        }
    }
}

fn singular(kind: ObjectKind) -> &'static str {
    kind.as_str().trim_end_matches('s')
}

fn row(
    vault: Option<&crate::model::VaultName>,
    check: CheckName,
    status: CheckStatus,
    detail: String,
    fix: String,
) -> Check {
    Check {
        vault: vault.cloned(),
        check,
        status,
        detail,
        fix: Some(fix),
    }
}

/// Compares the local clock with the `Date` header of an unauthenticated GET of the vault's url
/// (Key Vault answers 401 with a `Date`), over the same transport as every kvkeep request
/// (`ca_file`, `resolve`). No token is sent.
async fn check_clock(config: &Config, vault: &VaultConfig) -> Check {
    let name = Some(&vault.name);
    let client = match crate::azure::http_client(&config.azure) {
        Ok(client) => client,
        Err(e) => {
            return Check::warn(name, CheckName::Clock, format!("skipped: {e}"), None);
        }
    };
    let response = client
        .get(&vault.url)
        .timeout(DATE_PROBE_TIMEOUT)
        .send()
        .await;
    let date = response.ok().and_then(|r| {
        r.headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&Utc))
    });
    skew_check(name, date, crate::clock::now())
}

/// The clock row for the vault's `date` (None: no usable header) seen at local time `now`.
pub(crate) fn skew_check(
    vault: Option<&crate::model::VaultName>,
    date: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Check {
    let Some(date) = date else {
        return Check::warn(
            vault,
            CheckName::Clock,
            "skipped: the vault's answer carried no usable Date header",
            None,
        );
    };
    let skew = (now - date).num_seconds();
    let direction = if skew >= 0 { "ahead of" } else { "behind" };
    let detail = format!(
        "local clock is {}s {direction} the vault's",
        skew.unsigned_abs()
    );
    if skew.unsigned_abs() > MAX_SKEW.as_secs() {
        Check::warn(
            vault,
            CheckName::Clock,
            detail,
            Some("synchronise this host's clock (NTP, e.g. chrony or systemd-timesyncd): tokens, SAS expiry and backup times depend on it".into()),
        )
    } else {
        Check::ok(vault, CheckName::Clock, detail)
    }
}

/// The vault's schedule and its next fire time (jitter applied, as the daemon will run it),
/// from the scheduler's public API.
pub(super) fn check_schedule(vault: &VaultConfig) -> Check {
    let name = Some(&vault.name);
    let Some(timetable) = crate::scheduler::Timetable::for_vault(vault) else {
        return Check::warn(
            name,
            CheckName::Schedule,
            "no schedule: backed up only when `kvkeep backup` runs",
            Some("set schedule in [defaults] or the vault's [[vault]] section for the daemon to back it up".into()),
        );
    };
    let schedule = timetable.schedule();
    if vault.paused {
        return Check::warn(
            name,
            CheckName::Schedule,
            format!("{schedule}: paused, the daemon does not back it up"),
            Some(
                "remove paused = true from the vault's section when it should be backed up again"
                    .into(),
            ),
        );
    }
    match timetable.next_due(crate::clock::now()) {
        Some(next) => Check::ok(
            name,
            CheckName::Schedule,
            format!("{schedule}: next run {}", next.format("%Y-%m-%dT%H:%M:%SZ")),
        ),
        None => Check::warn(
            name,
            CheckName::Schedule,
            format!("{schedule}: never fires again"),
            Some("fix the vault's schedule expression".into()),
        ),
    }
}
