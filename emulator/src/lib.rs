//! kvkeep-emulator: an Azure Key Vault data plane over HTTPS, faithful to the wire protocol the
//! official SDKs speak, plus a control plane for tests (vaults, seeding, time shift, throttling,
//! fault injection, request log).
//!
//! Layout: [`api`] is the contract between the HTTP layer ([`server`]) and the vault state
//! ([`vault`]); [`error`] is the service's error vocabulary; [`tls`] makes the test PKI;
//! [`client`] helps Rust tests reach the emulator.

pub mod api;
pub mod client;
pub mod error;
pub mod server;
pub mod tls;
pub mod vault;
