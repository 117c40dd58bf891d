//! `kvkeep keys ...`: managing age keys. `generate` makes the identity (private key) that opens
//! backups and prints the recipient (public key) the daemon seals to.

use std::path::PathBuf;

use crate::crypto::{write_identity_file, CryptoError, Identity};

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

/// `kvkeep keys ...`
#[derive(Debug, clap::Subcommand)]
pub enum KeysAction {
    /// Create a new age identity file (mode 0600) and print its recipient (age1...) on stdout.
    Generate(GenerateArgs),
}

/// Arguments of `kvkeep keys generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Where to write the identity file; it must not exist yet.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Replace an existing file. The old key is lost: backups sealed only to it become
    /// unreadable.
    #[arg(long)]
    pub force: bool,
}

/// Runs a `keys` command and returns the exit code.
pub fn run(action: KeysAction) -> u8 {
    match action {
        KeysAction::Generate(args) => generate(&args),
    }
}

fn generate(args: &GenerateArgs) -> u8 {
    // The creation time is a comment for the operator only, so reading the clock here is fine.
    let created = crate::clock::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let identity = Identity::generate();
    match write_identity_file(&args.out, &identity, &created, args.force) {
        Ok(recipient) => {
            // stdout carries only the recipient, so scripts can capture it.
            println!("{recipient}");
            eprintln!(
                "wrote identity to {} (mode 0600)\n\
                 put the recipient above in the configuration: [encryption] recipients = [\"{recipient}\"]\n\
                 keep the identity file offline (a password manager, a safe): only restore, deep verify \
                 and index rebuild need it, never the daemon; without it the backups cannot be opened",
                args.out.display()
            );
            EXIT_OK
        }
        Err(e @ CryptoError::IdentityFileExists { .. }) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}
