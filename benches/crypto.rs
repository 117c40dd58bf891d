//! Throughput of the sealing pipeline (placeholder while the crypto module is written).

fn main() {}
