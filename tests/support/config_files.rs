//! The files an end-to-end test bed writes next to its `kvkeep.toml`, and the TOML lines that
//! point kvkeep at emulator vaults: an age identity, a token file, `[azure] resolve` entries and
//! `[[vault]]` sections. Free of Azurite, so the throttled benches include it with `#[path]` too.

use std::path::Path;

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

/// Writes `token` to `dir/token.txt`, for `credential = "token-file"`.
pub fn write_token(dir: &Path, token: &str) {
    std::fs::write(dir.join("token.txt"), format!("{token}\n")).expect("token file");
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
