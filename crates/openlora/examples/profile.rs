//! A serving pass to run under a profiler (`perf record`): a prompt's prefill, repeated, then
//! single-stream decode steps. Prints the best prefill and the decode rate.
//!
//! `cargo run --release -p openledger-openlora --example profile -- MODEL.gguf [PROMPT] [REPEATS] [DECODE]`

use openledger_openlora::engine::{Base, Chunk, Mix, SeqCache};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: profile MODEL.gguf [PROMPT] [REPEATS] [DECODE]");
    let mut number = |default: usize| args.next().map_or(default, |s| s.parse().expect("a count"));
    let (prompt, repeats, decode) = (number(128), number(30), number(0));
    let raw = openledger_model::weights::read_gguf_raw(std::path::Path::new(&path))
        .expect("reading the model");
    let base = Base::from_gguf(&raw).expect("a servable model");
    let ids: Vec<u32> = (0..prompt as u32).map(|i| 100 + (i * 37) % 5000).collect();
    let none: Mix = Vec::new();
    let forward = |tokens: &[u32], cache: &mut SeqCache| {
        base.forward(&mut [Chunk {
            tokens,
            cache,
            mix: &none,
            logits: true,
        }])
        .expect("a forward pass");
    };
    let mut best = f64::MAX;
    for _ in 0..repeats {
        let t = std::time::Instant::now();
        forward(&ids, &mut SeqCache::default());
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "prefill of {prompt}: {:.1} tokens/s (best of {repeats})",
        prompt as f64 / best
    );
    if decode > 0 {
        let mut cache = SeqCache::default();
        forward(&ids[..prompt.min(32)], &mut cache);
        let t = std::time::Instant::now();
        for i in 0..decode {
            forward(&[ids[i % ids.len()]], &mut cache);
        }
        println!(
            "decode: {:.1} tokens/s",
            decode as f64 / t.elapsed().as_secs_f64()
        );
    }
}
