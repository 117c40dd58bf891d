//! The `kvkeep.toml` an end-to-end test bed (or a throttled bench) runs with, and the files next
//! to it: an age identity, a token file, `[azure] resolve` entries and `[[vault]]` sections for
//! emulator vaults. Free of Azurite, so the benches include it with `#[path]` too.

use std::path::{Path, PathBuf};

/// What differs between beds' configurations; everything else is shared: the identity's
/// recipient, the index beside the file, a token-file credential trusting the test CA, and the
/// full vault and subscription shares.
pub struct KvkeepToml<'a> {
    /// The `[store]` table.
    pub store: &'a str,
    /// The test CA, `[azure] ca_file`.
    pub ca: &'a Path,
    /// `[azure] resolve` entries (see [`resolve_entry`]).
    pub resolve: &'a [String],
    /// `[limits] concurrency`.
    pub concurrency: usize,
    /// The tables after `[limits]`: `[defaults]`, the `[[vault]]` sections.
    pub rest: &'a str,
}

impl KvkeepToml<'_> {
    /// Writes `identity.txt`, `token.txt` (holding `token`) and `kvkeep.toml` into `dir`;
    /// returns the configuration's path.
    pub fn write(&self, dir: &Path, token: &str) -> PathBuf {
        let recipient = write_identity(dir);
        write_token(dir, token);
        let config = format!(
            r#"{store}
[encryption]
recipients = ["{recipient}"]

[index]
path = "index.sqlite"

[azure]
credential = "token-file"
token_file = "token.txt"
ca_file = "{ca}"
resolve = {{ {resolve} }}

[limits]
vault_share = 1.0
subscription_share = 1.0
concurrency = {concurrency}

{rest}"#,
            store = self.store,
            ca = self.ca.display(),
            resolve = self.resolve.join(", "),
            concurrency = self.concurrency,
            rest = self.rest,
        );
        let path = dir.join("kvkeep.toml");
        std::fs::write(&path, config).expect("config");
        path
    }
}

/// Writes a fresh age identity to `dir/identity.txt` and returns its recipient, for
/// `[encryption] recipients`.
pub fn write_identity(dir: &Path) -> String {
    kvkeep::crypto::write_identity_file(
        &dir.join("identity.txt"),
        &kvkeep::crypto::Identity::generate(),
        "2026-01-01T00:00:00Z",
        false,
    )
    .expect("identity")
}

/// Writes `token` to `dir/token.txt` with mode 0600, for `credential = "token-file"` (kvkeep
/// refuses a token file others can read).
pub fn write_token(dir: &Path, token: &str) {
    write_private(&dir.join("token.txt"), &format!("{token}\n"));
}

/// Writes a secret file as the runbook asks: mode 0600.
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("secret file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    }
}

/// `"<host>" = "127.0.0.1"`: an `[azure] resolve` entry sending a vault's host to the emulator
/// on loopback.
pub fn resolve_entry(vault_url: &str) -> String {
    let host = url::Url::parse(vault_url)
        .expect("vault url")
        .host_str()
        .expect("vault host")
        .to_string();
    format!("\"{host}\" = \"127.0.0.1\"")
}

/// A `[[vault]]` section in the test subscription and `geography`.
pub fn vault_section(name: &str, url: &str, geography: &str) -> String {
    format!(
        "[[vault]]\nname = \"{name}\"\nurl = \"{url}\"\nsubscription = \"00000000-0000-0000-0000-000000000001\"\ngeography = \"{geography}\"\n\n"
    )
}
