//! The kvkeep binary.
fn main() {}
