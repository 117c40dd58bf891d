//! The `kvkeep-emulator` binary: parses the command line (emulator/README.md), starts the
//! emulator, prints one JSON ready line on stdout, and serves until SIGTERM/SIGINT.
//! Exit codes: 0 after a signal, 1 when the emulator cannot start, 2 for bad arguments.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kvkeep_emulator::server::{Emulator, EmulatorConfig, StartError};
use kvkeep_emulator::vault::VaultSettings;

/// Wire-faithful Azure Key Vault emulator over HTTPS, with a control plane for tests.
#[derive(Debug, Parser)]
#[command(name = "kvkeep-emulator", version)]
struct Args {
    /// The HTTPS listener (loopback addresses only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A vault that exists at start-up:
    /// NAME[:geo=G][:subscription=S][:region=R][:days=N|none][:purge-protection] (repeatable).
    #[arg(long = "vault", value_name = "SPEC", value_parser = parse_vault)]
    vaults: Vec<VaultSettings>,
    /// Directory with ca.pem, server.pem, server.key (generated when absent); default: a
    /// temporary directory removed on exit.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Serve each vault on its own 127.0.0.1 port instead of routing by host name.
    #[arg(long)]
    loopback: bool,
    /// Derive the backup-blob master key from this string, so blobs restore across runs.
    #[arg(long)]
    backup_key_seed: Option<String>,
}

/// Parses `NAME[:key=value...][:purge-protection]`.
fn parse_vault(spec: &str) -> Result<VaultSettings, String> {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    if name.is_empty() {
        return Err("the vault name is empty".into());
    }
    let mut settings = VaultSettings::named(name);
    for part in parts {
        match part.split_once('=') {
            Some(("geo", v)) if !v.is_empty() => settings.geo = v.to_string(),
            Some(("subscription", v)) if !v.is_empty() => settings.subscription = v.to_string(),
            Some(("region", v)) if !v.is_empty() => settings.region = v.to_string(),
            Some(("days", "none")) => settings.recoverable_days = None,
            Some(("days", v)) => {
                let days: u32 = v
                    .parse()
                    .map_err(|_| format!("days must be a number of days (7-90) or none, not '{v}'"))?;
                if !(7..=90).contains(&days) {
                    return Err(format!("days must be between 7 and 90, not {days}"));
                }
                settings.recoverable_days = Some(days);
            }
            None if part == "purge-protection" => settings.purge_protection = true,
            _ => {
                return Err(format!(
                    "unknown vault option '{part}'; expected geo=G, subscription=S, region=R, days=N|none or purge-protection"
                ))
            }
        }
    }
    Ok(settings)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvkeep-emulator: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    // The handlers must be in place before the ready line goes out: a client may read the line
    // and signal at once, and a SIGTERM that arrives before tokio has registered its handler
    // meets the default disposition and kills the process instead of shutting it down. Installing
    // them before the emulator starts also covers signals sent during start-up; they are queued
    // and answered right after the ready line.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("kvkeep-emulator: cannot install the SIGTERM/SIGINT handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let config = EmulatorConfig {
        listen: args.listen,
        vaults: args.vaults,
        cert_dir: args.cert_dir,
        loopback: args.loopback,
        backup_key_seed: args.backup_key_seed,
    };
    let emulator = match Emulator::start(config).await {
        Ok(emulator) => emulator,
        Err(e) => {
            eprintln!("kvkeep-emulator: {e}");
            // Arguments that parse but make no sense are usage errors too.
            let code = match e {
                StartError::NotLoopback(_) | StartError::InvalidVault { .. } => 2,
                _ => 1,
            };
            return ExitCode::from(code);
        }
    };
    let line = match serde_json::to_string(emulator.info()) {
        Ok(line) => line,
        Err(e) => {
            eprintln!("kvkeep-emulator: {e}");
            return ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Whoever started us is gone; nobody can use the emulator.
        return ExitCode::from(1);
    }
    drop(stdout);

    signals.wait().await;
    tracing::info!("signal received, shutting down");
    emulator.shutdown().await;
    ExitCode::SUCCESS
}

/// The SIGTERM and SIGINT listeners, registered with the OS when created: from then on a signal is
/// recorded for [`Signals::wait`] instead of terminating the process.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers both handlers (needs the tokio runtime).
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Returns once either signal has arrived since [`Signals::install`].
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_specs_parse() {
        let v = parse_vault("kv1:geo=us:subscription=s2:days=7:purge-protection").unwrap();
        assert_eq!((v.geo.as_str(), v.subscription.as_str()), ("us", "s2"));
        assert_eq!(v.recoverable_days, Some(7));
        assert!(v.purge_protection);
        assert_eq!(parse_vault("kv2:days=none").unwrap().recoverable_days, None);
        for bad in [
            "",
            ":geo=x",
            "kv:days=3",
            "kv:days=x",
            "kv:color=red",
            "kv:geo=",
        ] {
            assert!(parse_vault(bad).is_err(), "{bad}");
        }
    }
}
