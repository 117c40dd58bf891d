//! Notifications: tells webhooks, local commands and healthchecks.io-style ping URLs how each
//! backup run went (`[[notify]]` in the configuration, see [`crate::config::NotifyConfig`]).
//!
//! A [`Notifier`] is built once from the configuration; the daemon calls
//! [`Notifier::run_started`] before a vault's run and [`Notifier::run_finished`] after it. Every
//! entry is sent concurrently and bounded by its own timeout (retries included), so a dead
//! receiver delays the others by nothing and the daemon by at most the largest timeout. A
//! notification that fails is logged and returned as a [`NotifyFailure`] — it never fails the
//! run it reports on. Dropping a notifier's future cancels it: requests are abandoned, retry
//! waits end and commands are killed, so a daemon shutting down need not wait for a receiver.
//!
//! Each entry is named after its kind and its position among the `[[notify]]` entries
//! (`webhook[0]`, `command[1]`, `ping[2]`): the name appears in logs, failures and metrics in
//! place of the URL, which carries a token and is never shown.

mod command;
mod http;
mod summary;

use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;

pub use summary::{outcome_of, Summary, MAX_LISTED_FAILURES, SUMMARY_FORMAT};

use crate::backup::BackupReport;
use crate::config::{NotifyConfig, NotifyOutcome, NotifyTarget};
use crate::model::VaultName;

/// Retries of a webhook after its first attempt (connect errors, 5xx, 429).
const WEBHOOK_RETRIES: u32 = 3;
/// Retries of a ping: a monitoring service is either up or will notice the missing ping itself.
const PING_RETRIES: u32 = 1;
/// The wait before the first retry, doubled for each next one (1 s, 2 s, 4 s).
const RETRY_BASE: Duration = Duration::from_secs(1);
/// Connecting is a small part of the entry's timeout; a black-holed address should fail fast
/// enough to leave time for a retry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A notification that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyFailure {
    /// The entry: its kind and position among the `[[notify]]` entries (`webhook[0]`).
    pub notifier: String,
    /// What went wrong; never the URL.
    pub error: String,
}

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client for notifications: {0}")]
pub struct NotifySetupError(String);

/// Sends notifications for the configured `[[notify]]` entries.
#[derive(Debug, Clone)]
pub struct Notifier {
    entries: Vec<Entry>,
    client: reqwest::Client,
    host: String,
    retry_base: Duration,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    config: NotifyConfig,
}

impl Notifier {
    /// A notifier for `configs`, sending HTTP requests with `client` (see
    /// [`Notifier::http_client`]).
    pub fn new(configs: &[NotifyConfig], client: reqwest::Client) -> Notifier {
        Notifier {
            entries: configs
                .iter()
                .enumerate()
                .map(|(i, config)| Entry {
                    name: format!("{}[{i}]", config.target.kind()),
                    config: config.clone(),
                })
                .collect(),
            client,
            host: summary::host_name(),
            retry_base: RETRY_BASE,
        }
    }

    /// The HTTP client notifications are sent with: rustls with the system's roots, and no
    /// redirects, so the token in a URL is never carried to a host other than the one the
    /// operator wrote.
    pub fn http_client() -> Result<reqwest::Client, NotifySetupError> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("kvkeep/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifySetupError(e.without_url().to_string()))
    }

    /// Changes the wait before the first retry (1 s; each next wait doubles). For tests.
    pub fn with_retry_base(mut self, base: Duration) -> Notifier {
        self.retry_base = base;
        self
    }

    /// Changes the host name the summary reports (the kernel's by default).
    pub fn with_host(mut self, host: impl Into<String>) -> Notifier {
        self.host = host.into();
        self
    }

    /// The names of the entries (`webhook[0]`, ...), in configuration order: for metrics that
    /// should exist before the first failure.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Whether there is nothing to notify.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A run of `vault` is starting: pings `{base}/start` for every ping entry that covers the
    /// vault and reports successes. (A ping that never hears of success would see a start
    /// without an end after every good run and raise a false alarm.) Webhooks and commands hear
    /// only of finished runs.
    pub async fn run_started(&self, vault: &VaultName) -> Vec<NotifyFailure> {
        let sends = self.entries.iter().filter_map(|e| match &e.config.target {
            NotifyTarget::Ping { url_file }
                if e.config.covers(vault) && e.config.on.contains(&NotifyOutcome::Success) =>
            {
                Some(self.finish(e, vault, self.ping(e, url_file, Some("start"))))
            }
            _ => None,
        });
        join_all(sends).await.into_iter().flatten().collect()
    }

    /// A run has ended: sends its summary to every entry whose `on` holds the run's outcome and
    /// whose `vaults` holds its vault, all at once, and returns the ones that failed.
    pub async fn run_finished(&self, report: &BackupReport) -> Vec<NotifyFailure> {
        let outcome = outcome_of(report.status);
        let summary = Summary::of(report, &self.host);
        let body = summary.to_json();
        let env = [
            ("KVKEEP_VAULT", summary.vault.as_str()),
            ("KVKEEP_OUTCOME", summary.outcome),
            ("KVKEEP_STATUS", summary.status),
        ];
        let (body, env) = (&body, &env);
        let sends = self
            .entries
            .iter()
            .filter(|e| e.config.wants(&report.vault, outcome))
            .map(|e| {
                let send = async move {
                    match &e.config.target {
                        NotifyTarget::Webhook { url_file } => {
                            self.webhook(e, url_file, body.clone()).await
                        }
                        NotifyTarget::Command { argv } => {
                            command::run(argv, body, env, e.config.timeout).await
                        }
                        NotifyTarget::Ping { url_file } => {
                            let suffix = (outcome != NotifyOutcome::Success).then_some("fail");
                            self.ping(e, url_file, suffix).await
                        }
                    }
                };
                self.finish(e, &report.vault, send)
            });
        join_all(sends).await.into_iter().flatten().collect()
    }

    /// Awaits one delivery and logs its result.
    async fn finish(
        &self,
        entry: &Entry,
        vault: &VaultName,
        send: impl std::future::Future<Output = Result<(), String>>,
    ) -> Option<NotifyFailure> {
        match send.await {
            Ok(()) => {
                tracing::debug!(notifier = %entry.name, vault = %vault, "notification sent");
                None
            }
            Err(error) => {
                tracing::warn!(notifier = %entry.name, vault = %vault, error = %error, "notification failed");
                Some(NotifyFailure {
                    notifier: entry.name.clone(),
                    error,
                })
            }
        }
    }

    async fn webhook(
        &self,
        entry: &Entry,
        url_file: &std::path::Path,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let url = http::read_url(url_file)?;
        http::Delivery {
            url: &url,
            retries: WEBHOOK_RETRIES,
            retry_base: self.retry_base,
            timeout: entry.config.timeout,
        }
        .send(|| {
            self.client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
    }

    /// Pings `{base}` or `{base}/{suffix}`. A GET, which every healthchecks-style service
    /// accepts.
    async fn ping(
        &self,
        entry: &Entry,
        url_file: &std::path::Path,
        suffix: Option<&str>,
    ) -> Result<(), String> {
        let base = http::read_url(url_file)?;
        let url = match suffix {
            Some(s) => http::with_segment(&base, s),
            None => base,
        };
        http::Delivery {
            url: &url,
            retries: PING_RETRIES,
            retry_base: self.retry_base,
            timeout: entry.config.timeout,
        }
        .send(|| self.client.get(url.clone()))
        .await
    }
}

#[cfg(test)]
mod tests;
