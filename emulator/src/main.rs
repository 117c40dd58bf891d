//! emulator binary
fn main() {}
