//! `kvkeep keys ...`: managing age keys. `generate` makes a recovery identity (private key) that
//! opens backups and prints the recipient (public key) the daemon seals to; `generate --catalog`
//! makes the catalog identity daemon hosts hold, which opens manifests only.

use std::path::PathBuf;

use crate::crypto::{write_identity_file, CryptoError, Identity, KeyRole};

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
    /// Make a catalog key instead of a recovery key: daemon hosts hold it to read manifests
    /// (never backups); its recipient goes in [encryption] catalog_recipient.
    #[arg(long)]
    pub catalog: bool,
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
    let role = if args.catalog {
        KeyRole::Catalog
    } else {
        KeyRole::Recovery
    };
    let identity = Identity::generate_with_role(role);
    match write_identity_file(&args.out, &identity, &created, args.force) {
        Ok(recipient) => {
            // stdout carries only the recipient, so scripts can capture it.
            println!("{recipient}");
            eprintln!("{}", hint(role, &args.out, &recipient));
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

/// Where the new key's two halves go: the recipient into the configuration, the identity file
/// offline (recovery) or onto daemon hosts only (catalog).
fn hint(role: KeyRole, out: &std::path::Path, recipient: &str) -> String {
    match role {
        KeyRole::Recovery => format!(
            "wrote recovery identity to {} (mode 0600)\n\
             put the recipient above in the configuration: [encryption] recipients = [\"{recipient}\"]\n\
             keep the identity file offline (a password manager, a safe): only restore, deep verify \
             and index rebuild need it, never the daemon; without it the backups cannot be opened",
            out.display()
        ),
        KeyRole::Catalog => format!(
            "wrote catalog identity to {} (mode 0600)\n\
             put the recipient above in the configuration: [encryption] catalog_recipient = \"{recipient}\"\n\
             copy the identity file to daemon hosts only, as a systemd credential \
             (LoadCredential=catalog-identity:/etc/kvkeep/credentials/catalog-identity) named by \
             [encryption] catalog_identity_file; it opens manifests (names, versions, times, tags, \
             sizes), never a backup: restore still needs a recovery identity",
            out.display()
        ),
    }
}
