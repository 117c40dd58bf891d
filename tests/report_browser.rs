//! The HTML report in a real browser (issue #10): an index with three vaults and 200 restore
//! points, `kvkeep report --format html --out FILE` through the binary, then headless Chromium
//! loads the file: its DOM (`--dump-dom`) holds every vault and exactly one mark per restore
//! point, text from outside stayed text, and screenshots at desktop and phone widths
//! (`--screenshot`) show a drawn page, not a blank one.
//!
//! The browser is Debian's `chromium-headless-shell` (or `chromium`), which `scripts/test.sh`
//! installs; `$KVKEEP_CHROMIUM` names another. Without one the test fails, saying how to get
//! it: a check CI skips silently is no check. `KVKEEP_SKIP_BROWSER=1` skips it on purpose (a
//! developer machine without a browser); the test script never sets it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvkeep::config::PayloadMode;
use kvkeep::index::{CapturedVersion, Index, NewCapture, ObjectState, RunStats, RunStatus};
use kvkeep::model::{BlobKey, ObjectKind, RunId};
use resvg::tiny_skia::Pixmap;

const CONFIG: &str = r#"
[store]
type = "local"
path = "store"

[index]
path = "index.sqlite"

[encryption]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]

[[vault]]
name = "kv-alpha"
schedule = "@every 1h"
rpo = "3h"

[vault.retention]
keep_hourly = 24
keep_daily = 7
min_retention = "1h"

[[vault]]
name = "kv-beta"
schedule = "@every 6h"

[vault.retention]
keep_last = 10
keep_weekly = 4

[[vault]]
name = "kv-gamma"
schedule = "0 3 * * *"
"#;

/// Restore points per vault, 200 in all, with the gap between two of them.
const VAULTS: [(&str, usize, i64); 3] = [
    ("kv-alpha", 120, 3_600),
    ("kv-beta", 60, 6 * 3_600),
    ("kv-gamma", 20, 86_400),
];
const POINTS: usize = 200;

/// An error message quoting markup, as a service's error text may.
const HOSTILE: &str = r#"denied <script>document.title="owned"</script> & <b>bold</b>"#;

fn status_of(i: usize) -> RunStatus {
    match i {
        _ if i % 23 == 5 => RunStatus::Interrupted,
        _ if i % 17 == 3 => RunStatus::Failed,
        _ if i % 7 == 2 => RunStatus::PartiallyFailed,
        _ => RunStatus::Completed,
    }
}

fn capture(vault: &str, name: &str, n: usize, at: i64) -> NewCapture {
    let version = |i: usize| format!("{i:032x}").parse().expect("version");
    NewCapture {
        object: ObjectState {
            kind: ObjectKind::Secrets,
            name: name.parse().expect("name"),
            current_version: version(n),
            updated: at - 60,
        },
        blob: format!("objects/{vault}/secrets/{name}/{at}.age")
            .parse()
            .expect("blob key"),
        captured_at: at,
        plain_bytes: 2_000,
        stored_bytes: 1_200,
        sha256: "cd".repeat(32),
        payload: PayloadMode::Native,
        versions: (1..=n)
            .map(|i| CapturedVersion {
                version: version(i),
                created: Some(at - 1_000 + i as i64),
                updated: Some(at - 60),
                enabled: true,
            })
            .collect(),
        tags: None,
        validity: Some(Default::default()),
    }
}

/// Per vault, points every `gap` seconds up to an hour ago: `db-password` is captured anew
/// every fifth run and carried over otherwise, `api-token` captured once, and kv-beta's newest
/// run failed on a secret with a message quoting markup.
fn build_index(dir: &Path) {
    std::fs::write(dir.join("kvkeep.toml"), CONFIG).expect("config");
    let index = Index::open(dir.join("index.sqlite")).expect("index");
    let now = kvkeep::clock::now_unix();
    let mut n = 0u64;
    for (vault, points, gap) in VAULTS {
        let name = vault.parse().expect("vault");
        let mut last_db: Option<NewCapture> = None;
        let mut token: Option<NewCapture> = None;
        for i in 0..points {
            n += 1;
            let run: RunId = format!("{n:016x}").parse().expect("run id");
            let started = now - 3_600 - gap * (points - 1 - i) as i64;
            index.begin_run(&run, &name, started).expect("begin");
            match &last_db {
                Some(c) if i % 5 != 0 => index
                    .record_unchanged(&run, &c.object, &c.blob, started + 10, false)
                    .expect("unchanged"),
                _ => {
                    let c = capture(vault, "db-password", i / 5 + 1, started + 10);
                    index.record_capture(&run, &c).expect("capture");
                    last_db = Some(c);
                }
            }
            match &token {
                Some(c) => index
                    .record_unchanged(&run, &c.object, &c.blob, started + 20, false)
                    .expect("unchanged"),
                None => {
                    let c = capture(vault, "api-token", 1, started + 20);
                    index.record_capture(&run, &c).expect("capture");
                    token = Some(c);
                }
            }
            if vault == "kv-beta" && i + 1 == points {
                index
                    .record_object_error(
                        &run,
                        ObjectKind::Secrets,
                        &"odd-one".parse().expect("name"),
                        "forbidden",
                        HOSTILE,
                        started + 30,
                    )
                    .expect("error");
            }
            let manifest: BlobKey = format!("manifests/{vault}/{started}-{run}.age")
                .parse()
                .expect("manifest key");
            index
                .finish_run(
                    &run,
                    status_of(i),
                    &RunStats::default(),
                    started + 60,
                    Some(&manifest),
                )
                .expect("finish");
        }
    }
}

/// The browser to drive: `$KVKEEP_CHROMIUM`, else the first of the usual names on `PATH`.
fn find_browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KVKEEP_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    let names = [
        "chromium-headless-shell",
        "chromium",
        "chromium-browser",
        "google-chrome",
        "chrome-headless-shell",
    ];
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// What the browser printed and how it ended.
struct Run {
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs the browser headless on `url` with `args`, in `work` (its own profile there, so
/// parallel runs never share one; its output goes to files, so a DOM larger than a pipe's
/// buffer never blocks it). A browser that hangs is killed after a generous while and fails
/// the test with what it printed: a hang guard, not a speed requirement.
fn browser(chromium: &Path, work: &Path, args: &[String], url: &str) -> Run {
    std::fs::create_dir_all(work).expect("browser work dir");
    let stdout = work.join("stdout");
    let stderr = work.join("stderr");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--force-device-scale-factor=1",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.join("profile").display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > Duration::from_secs(300) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} {args:?} did not finish; stderr:\n{}",
                    chromium.display(),
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("waiting for the browser: {e}"),
        }
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Run {
        ok: status.success(),
        status: status.to_string(),
        stdout: read(&stdout),
        stderr: read(&stderr),
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Takes a screenshot of `url` at `width` × `height` and decodes it.
fn screenshot(chromium: &Path, dir: &Path, url: &str, width: u32, height: u32) -> Pixmap {
    let png = dir.join(format!("shot-{width}x{height}.png"));
    let out = browser(
        chromium,
        &dir.join(format!("browser-{width}")),
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
        ],
        url,
    );
    assert!(
        out.ok && png.is_file(),
        "screenshot failed ({}): {}",
        out.status,
        out.stderr
    );
    let bytes = std::fs::read(&png).expect("screenshot file");
    Pixmap::decode_png(&bytes).unwrap_or_else(|e| panic!("the screenshot is no PNG: {e}"))
}

/// Shares of pixels that differ from white, that are dark (text), and that are close to the
/// colour of a restore point mark (`#1b7f3b` completed, `#c77700` partially failed).
fn look_at(pixmap: &Pixmap) -> (f64, f64, usize) {
    let total = pixmap.pixels().len() as f64;
    let mut drawn = 0usize;
    let mut dark = 0usize;
    let mut marks = 0usize;
    let near = |c: [u8; 3], want: [u8; 3]| c.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 12);
    for p in pixmap.pixels() {
        let p = p.demultiply();
        let c = [p.red(), p.green(), p.blue()];
        if c != [255, 255, 255] {
            drawn += 1;
        }
        if c.iter().all(|v| *v < 100) {
            dark += 1;
        }
        if near(c, [0x1b, 0x7f, 0x3b]) || near(c, [0xc7, 0x77, 0x00]) {
            marks += 1;
        }
    }
    (drawn as f64 / total, dark as f64 / total, marks)
}

#[test]
fn a_browser_shows_every_vault_and_every_restore_point() {
    let Some(chromium) = find_browser() else {
        if std::env::var("KVKEEP_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("KVKEEP_SKIP_BROWSER=1: the HTML report was not checked in a browser");
            return;
        }
        panic!(
            "no browser to check the HTML report in: install Debian's chromium-headless-shell \
             (or chromium), as scripts/test.sh does (`apt-get install chromium-headless-shell`), \
             or name one in KVKEEP_CHROMIUM; KVKEEP_SKIP_BROWSER=1 skips this test on purpose"
        );
    };
    let dir = tempfile::tempdir().expect("tempdir");
    build_index(dir.path());
    let file = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_kvkeep"))
        .args(["report", "--format", "html", "--out"])
        .arg(&file)
        .arg("--config")
        .arg(dir.path().join("kvkeep.toml"))
        .env_remove("RUST_LOG")
        .env_remove("KVKEEP_CONFIG")
        .output()
        .expect("run kvkeep");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the report went to stdout too");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the report names every vault and object");
    }
    let html = std::fs::read_to_string(&file).expect("report file");
    assert_eq!(
        count(&html, r#"class="point status-"#),
        POINTS,
        "in the file"
    );

    let url = url::Url::from_file_path(&file)
        .expect("file URL")
        .to_string();
    let dumped = browser(
        &chromium,
        &dir.path().join("browser-dom"),
        &["--dump-dom".to_string()],
        &url,
    );
    let dom = dumped.stdout;
    assert!(
        dumped.ok && dom.contains("</html>"),
        "--dump-dom failed ({}): {}",
        dumped.status,
        dumped.stderr
    );

    // Every vault, once, with exactly its points as marks.
    let sections: Vec<&str> = dom.split(r#"<section class="vault""#).skip(1).collect();
    assert_eq!(sections.len(), VAULTS.len(), "vault sections in the DOM");
    for ((vault, points, _), section) in VAULTS.iter().zip(&sections) {
        assert!(
            section.starts_with(&format!(r#" id="vault-{vault}" data-vault="{vault}""#)),
            "{vault}: {}",
            &section[..section.len().min(200)]
        );
        assert_eq!(
            count(section, r#"class="point status-"#),
            *points,
            "{vault}: marks in the DOM"
        );
        assert_eq!(count(section, "<svg"), 1, "{vault}: one timeline");
    }
    assert_eq!(count(&dom, r#"class="point status-"#), POINTS);
    for status in ["completed", "partially_failed", "failed", "interrupted"] {
        assert!(
            dom.contains(&format!(r#"class="point status-{status}""#)),
            "{status}"
        );
    }
    // The hostile message is text in the page, not an element: no script ran or exists.
    assert!(
        !dom.contains("<script"),
        "markup from an error message became an element"
    );
    assert!(!dom.contains("<b>bold</b>"));
    assert!(dom.contains("&lt;script&gt;"), "the message is missing");
    assert!(
        dom.contains("<title>kvkeep report "),
        "the page title changed"
    );

    // Drawn, at a desktop width and at a phone's.
    for (width, height) in [(1280, 1600), (390, 844)] {
        let pixmap = screenshot(&chromium, dir.path(), &url, width, height);
        assert_eq!((pixmap.width(), pixmap.height()), (width, height));
        let (drawn, dark, marks) = look_at(&pixmap);
        assert!(
            drawn > 0.02 && dark > 0.002,
            "{width}x{height}: a blank page ({drawn:.4} drawn, {dark:.4} dark)"
        );
        if width >= 1_000 {
            // The first vault's timeline is on the first screen of a desktop.
            assert!(
                marks > 100,
                "{width}x{height}: {marks} pixels of restore point marks"
            );
        }
    }
}
