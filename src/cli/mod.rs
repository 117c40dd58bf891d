//! Command-line interface: clap definitions and dispatch. No business logic lives here; commands
//! call into the library and render its reports.

use clap::{Parser, Subcommand};

pub mod backup;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod doctor;
pub mod keys;
pub mod list;
pub mod lock;
pub mod prune;
pub mod render;
pub mod report;
pub mod restore;
pub mod schedule;
pub mod sync;
pub mod verify;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when a run failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when some objects failed and the rest succeeded.
pub const EXIT_PARTIAL: u8 = 3;

/// A command-level failure with its exit code.
pub(crate) struct Fail(pub u8, pub String);

/// A command's exit code; a failure's message goes to stderr first.
pub(crate) fn exit_code_of(result: Result<u8, Fail>) -> u8 {
    match result {
        Ok(code) => code,
        Err(Fail(code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

/// Loads the configuration (exit 2 when invalid).
pub(crate) fn load_config(path: &std::path::Path) -> Result<crate::config::Config, Fail> {
    crate::config::Config::load(path).map_err(|errors| Fail(EXIT_USAGE, errors.to_string()))
}

/// A token cancelled by the first Ctrl-C or SIGTERM (work in flight finishes, nothing new
/// starts, and `stopping` says so in the log); a second one exits at once with status 130, for
/// the operator who will not wait. Call it inside the runtime.
pub(crate) fn cancel_on_stop_signal(stopping: &'static str) -> tokio_util::sync::CancellationToken {
    let cancel = tokio_util::sync::CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::warn!("interrupted: {stopping}; interrupt again to exit now");
        token.cancel();
        stop_signal().await;
        eprintln!("interrupted twice: exiting now");
        std::process::exit(130);
    });
    cancel
}

/// Resolves on Ctrl-C, or on SIGTERM (a service manager stopping the command).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A multi-threaded runtime, or exit 1.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail(EXIT_FAILED, format!("cannot start the async runtime: {e}")))
}

/// kvkeep: backup and restore for Azure Key Vault keys, secrets and certificates.
#[derive(Debug, Parser)]
#[command(name = "kvkeep", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). Logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log lines as text (default) or one JSON object per line (for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Where the configuration file is: accepted before or after the subcommand.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print version and build information.
    Version,
    /// Check or show the configuration.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Back up vaults now (every configured vault unless --vault names some).
    Backup(backup::BackupArgs),
    /// List what the index knows: runs, objects, versions.
    List {
        /// What to list.
        #[command(subcommand)]
        what: list::ListAction,
    },
    /// Run a self-contained demonstration: an in-process Key Vault emulator, a local store,
    /// two backups with changes in between. No Azure, no set-up.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Show when each vault's next backups are due, local time and UTC (jitter applied).
    Schedule(schedule::ScheduleArgs),
    /// Show which restore points the retention policy keeps and would forget (--dry-run).
    Prune(prune::PruneArgs),
    /// Report per vault: restore points, RPO status, coverage gaps, what the next prune would
    /// forget, storage and the last verifications; from the index only.
    Report(report::ReportArgs),
    /// Run every vault's backups on its schedule, in the foreground, until SIGTERM or Ctrl-C.
    Daemon,
    /// Restore a vault (or selected objects) as it was at a point in time.
    Restore(restore::RestoreArgs),
    /// Check that backups are restorable: quick (blobs present and intact), --deep (they open),
    /// --drill (a restore into a scratch vault matches the index).
    Verify(verify::VerifyArgs),
    /// Preflight: check the index, the store (probe write, read, delete) and each vault
    /// (connection, token, list and backup permission per kind, clock skew, schedule); with
    /// --identity, that the newest manifest opens.
    Doctor(doctor::DoctorArgs),
    /// Maintain the index.
    Index {
        /// What to do.
        #[command(subcommand)]
        action: verify::IndexAction,
    },
    /// Manage age encryption keys.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    /// Vault leases on the store: break the lease of a hung instance.
    Lock {
        /// What to do.
        #[command(subcommand)]
        action: lock::LockAction,
    },
}

/// `kvkeep config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate the configuration file; exit 0 when valid, 2 with every problem listed otherwise.
    Check,
    /// Print the effective configuration (defaults applied) as JSON.
    Show,
}

/// Where the configuration file is. One global option rather than one per subcommand, so
/// `kvkeep --config X backup` and `kvkeep backup --config X` mean the same; commands that read
/// no configuration (`version`, `keys`, `demo`) ignore it.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "KVKEEP_CONFIG",
        default_value = "/etc/kvkeep/kvkeep.toml"
    )]
    pub config: std::path::PathBuf,
}

/// Sets up `tracing` to stderr; `RUST_LOG` overrides the verbosity flags.
pub fn init_logging(verbose: u8, format: LogFormat) {
    // kvkeep's own events at info; the SDK's per-request chatter only when asked for (-v).
    let default = match verbose {
        0 => "warn,kvkeep=info",
        1 => "info,kvkeep=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // One JSON object per line, for log shippers.
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        // Colour codes only for a person at a terminal, never into log files or journals.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs a parsed command and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let config = cli.config.config.as_path();
    match cli.command {
        Command::Version => {
            println!("kvkeep {}", env!("CARGO_PKG_VERSION"));
            EXIT_OK
        }
        Command::Config { action } => exit_code_of(config_command(action, config)),
        Command::Keys { action } => keys::run(action),
        Command::Backup(args) => backup::run(args, config),
        Command::List { what } => list::run(what, config),
        Command::Restore(args) => restore::run(args, config),
        Command::Schedule(args) => schedule::run(args, config),
        Command::Prune(args) => prune::run(args, config),
        Command::Report(args) => report::run(args, config),
        Command::Daemon => daemon::run(config),
        Command::Verify(args) => verify::run(args, config),
        Command::Index { action } => verify::run_index(action, config),
        Command::Doctor(args) => doctor::run(args, config),
        Command::Lock { action } => lock::run(action, config),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args),
    }
}

fn config_command(action: ConfigAction, path: &std::path::Path) -> Result<u8, Fail> {
    let config = load_config(path)?;
    match action {
        ConfigAction::Check => {
            println!(
                "{}: ok ({} vault{})",
                path.display(),
                config.vaults.len(),
                if config.vaults.len() == 1 { "" } else { "s" }
            );
        }
        ConfigAction::Show => {
            let json = serde_json::to_string_pretty(&config)
                .map_err(|e| Fail(EXIT_FAILED, format!("cannot render the configuration: {e}")))?;
            println!("{json}");
        }
    }
    Ok(EXIT_OK)
}
