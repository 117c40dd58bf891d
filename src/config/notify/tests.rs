//! `[[notify]]` validation: defaults per kind, and every malformed entry reported at its key
//! path and line without repeating the value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::{Config, ConfigErrors};

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// A valid file with two vaults, then `notify`.
fn with(notify: &str) -> String {
    format!(
        "[store]\ntype = \"local\"\npath = \"/var/lib/kvkeep/store\"\n\n[encryption]\nrecipients = [\"{RECIPIENT}\"]\n\n[[vault]]\nname = \"kv1\"\n\n[[vault]]\nname = \"kv2\"\n\n{notify}"
    )
}

/// Parses `text`; no file is read (a URL file need not exist when the configuration is loaded).
fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(
        text,
        "kvkeep.toml",
        Path::new("/etc/kvkeep"),
        &|_: &Path| {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "No such file or directory",
            ))
        },
    )
}

#[test]
fn entries_get_their_defaults_and_keep_their_settings() {
    let c = parse(&with(
        r#"
[[notify]]
kind = "webhook"
url_file = "/run/credentials/kvkeep.service/webhook-url"
vaults = ["KV1"]

[[notify]]
kind = "command"
argv = ["/usr/local/bin/page-oncall", "--team", "platform"]
on = ["failure"]
timeout = "30s"

[[notify]]
kind = "ping"
url_file = "hc-url"
"#,
    ))
    .expect("valid");
    assert_eq!(c.notify.len(), 3);
    let [hook, cmd, ping] = [&c.notify[0], &c.notify[1], &c.notify[2]];
    assert_eq!(
        hook.target,
        NotifyTarget::Webhook {
            url_file: PathBuf::from("/run/credentials/kvkeep.service/webhook-url")
        }
    );
    assert_eq!(
        hook.on,
        [NotifyOutcome::Partial, NotifyOutcome::Failure].into()
    );
    assert_eq!(hook.timeout, Duration::from_secs(10));
    let kv1 = VaultName::from_str("kv1").expect("name");
    let kv2 = VaultName::from_str("kv2").expect("name");
    assert_eq!(hook.vaults, Some([kv1.clone()].into()));
    assert!(hook.wants(&kv1, NotifyOutcome::Failure));
    assert!(!hook.wants(&kv2, NotifyOutcome::Failure));
    assert!(!hook.wants(&kv1, NotifyOutcome::Success));
    assert_eq!(
        cmd.target,
        NotifyTarget::Command {
            argv: vec![
                "/usr/local/bin/page-oncall".into(),
                "--team".into(),
                "platform".into()
            ]
        }
    );
    assert_eq!(cmd.on, [NotifyOutcome::Failure].into());
    assert_eq!(cmd.timeout, Duration::from_secs(30));
    assert!(cmd.vaults.is_none() && cmd.covers(&kv2));
    assert_eq!(
        ping.target,
        NotifyTarget::Ping {
            url_file: PathBuf::from("/etc/kvkeep/hc-url")
        },
        "relative to the configuration's directory"
    );
    assert_eq!(
        ping.on,
        NotifyOutcome::ALL.into_iter().collect(),
        "a ping hears of every outcome"
    );
    let shown = serde_json::to_value(&c).expect("json");
    assert_eq!(shown["notify"][1]["kind"], "command");
    assert_eq!(shown["notify"][1]["timeout"], "30s");
    assert_eq!(
        shown["notify"][0]["on"],
        serde_json::json!(["partial", "failure"])
    );
}

#[test]
fn no_notify_section_means_no_notifications() {
    assert!(parse(&with("")).expect("valid").notify.is_empty());
}

/// Each malformed entry, the key path its error must name, the line, and a phrase it must
/// contain. `SECRET` stands in for a value that must never be echoed.
#[test]
fn malformed_entries_each_get_a_clear_error_without_the_value() {
    let hook = "[[notify]]\nkind = \"webhook\"\nurl_file = \"/run/hook\"\n";
    let cmd = "[[notify]]\nkind = \"command\"\nargv = [\"/bin/true\"]\n";
    let cases: Vec<(String, &str, usize, &str)> = vec![
        (
            "[[notify]]\nkind = \"SECRETmail\"\n".into(),
            "notify[0].kind",
            2,
            "expected \"webhook\", \"command\" or \"ping\"",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\n".into(),
            "notify[0].url_file",
            2,
            "missing",
        ),
        (
            "[[notify]]\nkind = \"ping\"\nurl_file = \"\"\n".into(),
            "notify[0].url_file",
            3,
            "must not be empty",
        ),
        (
            "[[notify]]\nkind = \"command\"\n".into(),
            "notify[0].argv",
            2,
            "missing",
        ),
        (
            "[[notify]]\nkind = \"command\"\nargv = []\n".into(),
            "notify[0].argv",
            3,
            "must name a program",
        ),
        (
            "[[notify]]\nkind = \"command\"\nargv = [\"SECRET-pager\", \"-x\"]\n".into(),
            "notify[0].argv[0]",
            3,
            "absolute path",
        ),
        (
            format!("{cmd}url_file = \"/SECRET\"\n"),
            "notify[0].url_file",
            4,
            "only used with kind = \"webhook\" or \"ping\"",
        ),
        (
            format!("{hook}argv = [\"/bin/SECRET\"]\n"),
            "notify[0].argv",
            4,
            "only used with kind = \"command\"",
        ),
        (
            format!("{hook}on = [\"failure\", \"SECRETfail\"]\n"),
            "notify[0].on",
            4,
            "expected success, partial or failure",
        ),
        (
            format!("{hook}on = []\n"),
            "notify[0].on",
            4,
            "at least one",
        ),
        (
            format!("{hook}timeout = \"SECRETs\"\n"),
            "notify[0].timeout",
            4,
            "not a duration",
        ),
        (
            format!("{hook}timeout = \"500ms\"\n"),
            "notify[0].timeout",
            4,
            "at least 1s",
        ),
        (
            format!("{hook}timeout = \"6m\"\n"),
            "notify[0].timeout",
            4,
            "at most 5m",
        ),
        (
            format!("{hook}vaults = [\"kv9\"]\n"),
            "notify[0].vaults[0]",
            4,
            "not a configured vault",
        ),
        (
            format!("{hook}vaults = [\"SECRET_!\"]\n"),
            "notify[0].vaults[0]",
            4,
            "not a vault name",
        ),
        (
            format!("{hook}vaults = []\n"),
            "notify[0].vaults",
            4,
            "matches no vault",
        ),
        (
            format!("{hook}\n{cmd}on = [\"SECRET\"]\n"),
            "notify[1].on",
            8,
            "unknown outcome",
        ),
        (
            format!("{hook}colour = \"SECRET\"\n"),
            "notify[0].colour",
            4,
            "unknown field `colour`",
        ),
        (
            format!("{hook}on = \"SECRET\"\n"),
            "notify[0].on",
            4,
            "expected an array",
        ),
        (format!("{hook}url_file = \"SECRET\"\n"), "", 4, "duplicate"),
    ];
    for (notify, path, line, phrase) in cases {
        let text = with(&notify);
        // The file's first 13 lines are the store, encryption and vaults.
        let line = line + 13;
        let err = parse(&text).expect_err(&notify);
        let rendered = err.to_string();
        assert!(
            err.errors
                .iter()
                .any(|e| (path.is_empty() || e.path == path)
                    && e.line == Some(line)
                    && e.message.contains(phrase)),
            "expected {path:?} on line {line} with {phrase:?}; got:\n{rendered}\nfor:\n{notify}"
        );
        assert!(
            !rendered.contains("SECRET"),
            "a value was echoed:\n{rendered}"
        );
    }
}

#[test]
fn every_entry_is_checked_and_reported_at_once() {
    let err = parse(&with(
        "[[notify]]\nkind = \"pigeon\"\n\n[[notify]]\nkind = \"command\"\nargv = [\"pager\"]\non = [\"sometimes\"]\n",
    ))
    .expect_err("invalid");
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["notify[0].kind", "notify[1].argv[0]", "notify[1].on"]
    );
}

#[test]
fn a_vault_filter_is_checked_only_for_form_while_the_vaults_have_errors() {
    let text = with("[[notify]]\nkind = \"command\"\nargv = [\"/bin/true\"]\nvaults = [\"kv9\"]\n")
        .replace("name = \"kv2\"", "name = \"kv_2\"");
    let err = parse(&text).expect_err("bad vault name");
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["vault[1].name"]);
}
