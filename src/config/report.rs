//! `[report]`: the HTML report `kvkeep daemon` keeps up to date after each run and serves at
//! `/report`. The section is optional; without `html_path` the daemon writes no report.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::validate::Check;

/// `[report]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// Where the daemon writes the HTML report.
    pub html_path: Option<Spanned<String>>,
}

/// `[report]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportConfig {
    /// Where the daemon writes the HTML report after each run; `None`: it writes none.
    pub html_path: Option<PathBuf>,
}

/// Validates `[report]`; `None` when a key is wrong (the problem is in `c`).
pub(super) fn validate(c: &mut Check, raw: RawReport) -> Option<ReportConfig> {
    let mut config = ReportConfig::default();
    if let Some(p) = &raw.html_path {
        let text = p.get_ref();
        if text.trim().is_empty() {
            c.at(
                "report.html_path",
                p,
                "must not be empty: name a file, or leave the key out to write no report",
            );
            return None;
        }
        if text.ends_with('/') {
            c.at(
                "report.html_path",
                p,
                "names a directory: name the file to write, e.g. \"/var/lib/kvkeep/report.html\"",
            );
            return None;
        }
        config.html_path = Some(c.path(text));
    }
    Some(config)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigErrors};

    fn parse(report: &str) -> Result<Config, ConfigErrors> {
        crate::config::parse_minimal(report)
    }

    #[test]
    fn without_the_section_no_report_is_written() {
        let c = parse("").expect("valid");
        assert_eq!(c.report.html_path, None);
    }

    #[test]
    fn a_relative_path_is_resolved_against_the_configuration_directory() {
        let c = parse("[report]\nhtml_path = \"out/report.html\"\n").expect("valid");
        assert_eq!(
            c.report.html_path.as_deref(),
            Some(Path::new("/etc/kvkeep/out/report.html"))
        );
        let c = parse("[report]\nhtml_path = \"/srv/kvkeep/report.html\"\n").expect("valid");
        assert_eq!(
            c.report.html_path.as_deref(),
            Some(Path::new("/srv/kvkeep/report.html"))
        );
    }

    #[test]
    fn an_empty_or_directory_path_and_unknown_keys_are_refused_with_their_line() {
        for (report, says) in [
            ("html_path = \"\"", "must not be empty"),
            ("html_path = \"/srv/kvkeep/\"", "names a directory"),
        ] {
            let errors = parse(&format!("[report]\n{report}\n"))
                .expect_err(report)
                .errors;
            assert_eq!(errors.len(), 1, "{report}: {errors:?}");
            assert_eq!(errors[0].path, "report.html_path", "{report}");
            assert_eq!(errors[0].line, Some(12), "{report}");
            assert!(errors[0].message.contains(says), "{report}: {}", errors[0]);
        }
        let unknown = parse("[report]\nhtml_file = \"x\"\n").expect_err("unknown key");
        assert!(unknown.to_string().contains("html_file"), "{unknown}");
    }
}
