//! Shared helpers for the integration tests of the kvkeep package (`mod support;` in a test file).
//!
//! Each test binary compiles this module on its own and uses only part of it, hence the
//! `dead_code` allowance.

#![allow(dead_code)]

pub mod azurite;
pub mod config_files;
pub mod e2e;
pub mod http_sink;
pub mod prune_bed;
pub mod store_contract;
