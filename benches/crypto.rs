//! Throughput of the sealing pipeline: seal (envelope → zstd → age) and open (the reverse
//! with every check) on a typical secret-sized payload (10 KiB) and a large one (1 MiB).
//! Run with `cargo bench -p kvkeep --bench crypto`; prints MB/s, asserts nothing about speed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kvkeep::crypto::{open, Identities, Identity, Label, Sealer};
use kvkeep::model::ObjectKind;

/// Half random, half repetitive: Key Vault backup blobs are encrypted (incompressible) but
/// wrapped in a compressible JSON/base64 frame.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|i| {
            if i % 2 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                b'a'
            }
        })
        .collect()
}

/// Repeats `f` for about `budget` and returns MB/s over `bytes` per call.
fn measure(bytes: usize, budget: Duration, mut f: impl FnMut()) -> (f64, u32) {
    f(); // warm-up
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < budget || calls < 3 {
        f();
        calls += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    ((bytes as f64 * f64::from(calls)) / secs / 1e6, calls)
}

fn main() {
    let identity = Identity::generate();
    let sealer = Sealer::new(&[identity.recipient()], 3).expect("sealer");
    let identities = Identities::from(identity);
    let label = Label::object(
        "kv-bench".parse().expect("vault"),
        ObjectKind::Secrets,
        "bench-object".parse().expect("name"),
        vec!["0f1e2d3c4b5a69788796a5b4c3d2e1f0".parse().expect("version")],
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0".parse().expect("version"),
        1_764_356_400,
    );
    let budget = Duration::from_secs(2);
    println!("crypto pipeline (zstd level 3, 1 recipient)");
    for (name, len) in [("10 KiB", 10 * 1024), ("1 MiB", 1024 * 1024)] {
        let data = payload(len);
        let blob = sealer.seal(&label, &data).expect("seal");
        let (seal_mbs, seal_n) = measure(len, budget, || {
            black_box(sealer.seal(&label, black_box(&data)).expect("seal"));
        });
        let (open_mbs, open_n) = measure(len, budget, || {
            black_box(open(black_box(&blob), &identities).expect("open"));
        });
        println!(
            "{name:>7}: seal {seal_mbs:8.1} MB/s ({seal_n} runs), open {open_mbs:8.1} MB/s ({open_n} runs), sealed size {} bytes",
            blob.len()
        );
    }
}
