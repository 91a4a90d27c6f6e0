//! A small mutation fuzzer for property tests on the stable toolchain: inputs are seed cases
//! mutated at random (bytes flipped, inserted, deleted, duplicated, truncated, spliced), and
//! each target runs for `OPENLEDGER_FUZZ_SECS` seconds (default 2, what CI runs). A target
//! fails by panicking; the failing input is printed first so it can be kept as a case.

use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::{Duration, Instant};

/// How long each target runs.
pub fn budget() -> Duration {
    let secs = std::env::var("OPENLEDGER_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

/// One mutation of `input`, with bytes taken from `other` for splices.
pub fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                out.splice(i..i, bytes);
            }
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                let j = rng.random_range(i..=len.min(i + 32));
                out.drain(i..j);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let j = rng.random_range(i..=len.min(i + 64));
                let copy = out[i..j].to_vec();
                out.splice(i..i, copy);
            }
            4 => out.truncate(rng.random_range(0..=len)),
            5 if !other.is_empty() => {
                let i = rng.random_range(0..=len);
                let a = rng.random_range(0..other.len());
                let b = rng.random_range(a..=other.len());
                out.splice(i..i, other[a..b].iter().copied());
            }
            _ if len > 0 => {
                // An "interesting" byte: boundaries that parsers trip on.
                let i = rng.random_range(0..len);
                out[i] = [0x00, 0xff, 0x7f, 0x80, b'"', b'\\', b'\n', b'{', b'[']
                    [rng.random_range(0..9)];
            }
            _ => {}
        }
    }
    out
}

/// Runs `target` on mutations of `seeds` for the budget (at least `min_runs` times);
/// returns how many inputs it tried.
pub fn run(name: &str, seeds: &[Vec<u8>], min_runs: usize, mut target: impl FnMut(&[u8])) -> usize {
    let seed: u64 = std::env::var("OPENLEDGER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("fuzz {name}: seed {seed} (OPENLEDGER_FUZZ_SEED reproduces it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let (started, budget) = (Instant::now(), budget());
    let mut runs = 0;
    while runs < min_runs || started.elapsed() < budget {
        let a = &seeds[rng.random_range(0..seeds.len())];
        let b = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, a, b);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
        if let Err(panic) = outcome {
            eprintln!(
                "fuzz {name}: input that failed: {}",
                alloy_primitives::hex::encode(&input)
            );
            std::panic::resume_unwind(panic);
        }
        runs += 1;
    }
    eprintln!("fuzz {name}: {runs} inputs in {:?}", started.elapsed());
    runs
}
