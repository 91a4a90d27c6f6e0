//! `span-bench`: the span engine's index against infini-gram's, on the same tokenized corpus.
//!
//! The corpus is an infini-gram `tokenized.0` file (16-bit little-endian tokens, each document
//! preceded by `0xFFFF`), so that both indexes are built from the very same bytes; the
//! scripts that drive the peer (`tests/e2e/test_span_parity.py`, `scripts/bench_span_peer.py`)
//! write it.
//!
//! - `build --tokenized FILE --out DIR`: builds our index; prints the seconds it took.
//! - `answer --tokenized FILE --queries FILE`: builds our index and prints, for every query of
//!   the JSON array of token-id arrays, its rank range `[lo, hi)` and count, as one JSON object.
//! - `latency [--tokens 10000000] [--answers 200] [--length 256]`: builds an index over a
//!   generated corpus (documents of 50–400 tokens, log-uniform over a 49,152-token vocabulary,
//!   seeded) and times [`span::trace`] on answers that mix passages copied from the corpus with
//!   fresh tokens; prints the build time and the p50, p90 and worst trace times.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use openledger_attribution::span::{self, Document, SEPARATOR};
use std::{path::PathBuf, time::Instant};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index and time it.
    Build {
        #[arg(long)]
        tokenized: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Build an index and answer queries with it.
    Answer {
        #[arg(long)]
        tokenized: PathBuf,
        #[arg(long)]
        queries: PathBuf,
    },
    /// Time span attribution of answers on a generated corpus.
    Latency {
        #[arg(long, default_value_t = 10_000_000)]
        tokens: usize,
        #[arg(long, default_value_t = 200)]
        answers: usize,
        #[arg(long, default_value_t = 256)]
        length: usize,
    },
}

/// splitmix64: a seeded stream, the same everywhere.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// A token, log-uniform over the vocabulary (frequent ids small, as in a BPE vocabulary).
    fn token(&mut self) -> u32 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((49_152f64.ln() * u).exp() - 1.0) as u32
    }
}

fn latency(tokens: usize, answers: usize, length: usize) -> Result<()> {
    let mut rng = Stream(2026);
    let mut docs = Vec::new();
    let mut total = 0;
    while total < tokens {
        let len = 50 + rng.below(350);
        let doc: Vec<u32> = (0..len).map(|_| rng.token()).collect();
        total += len + 1;
        docs.push(Document {
            contribution: docs.len() as u64 + 1,
            tokens: doc,
        });
    }
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let index = span::build(dir.path(), docs.iter().cloned())?;
    let build_seconds = started.elapsed().as_secs_f64();
    let config = span::TraceConfig::default();
    let mut times = Vec::with_capacity(answers);
    let mut spans = 0usize;
    for _ in 0..answers {
        let mut answer = Vec::with_capacity(length);
        while answer.len() < length {
            let piece = 5 + rng.below(26);
            if rng.below(2) == 0 {
                let doc = &docs[rng.below(docs.len())].tokens;
                let start = rng.below(doc.len());
                answer.extend_from_slice(&doc[start..(start + piece).min(doc.len())]);
            } else {
                answer.extend((0..piece).map(|_| rng.token()));
            }
        }
        answer.truncate(length);
        let kinds: Vec<span::TokenKind> = answer
            .iter()
            .map(|&t| span::TokenKind {
                starts_word: t % 4 != 0,
                delimiter: t == 13,
                punctuation: t == 13 || t == 11,
            })
            .collect();
        let started = Instant::now();
        spans += span::trace(&index, &answer, &kinds, &config)?.len();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let out = serde_json::json!({
        "tokens": index.len(),
        "build_seconds": build_seconds,
        "answers": answers,
        "answer_tokens": length,
        "spans_per_answer": spans as f64 / answers as f64,
        "trace_ms_p50": at(0.5),
        "trace_ms_p90": at(0.9),
        "trace_ms_max": at(1.0),
    });
    println!("{out}");
    Ok(())
}

/// The documents of an infini-gram `tokenized.0` file; the contribution of document `i` is
/// `i + 1`.
fn documents(bytes: &[u8]) -> Result<Vec<Document>> {
    if !bytes.len().is_multiple_of(2) {
        bail!(
            "a 16-bit token file has an even length, not {}",
            bytes.len()
        );
    }
    let tokens: Vec<u32> = bytes
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    if tokens.first().is_some_and(|&t| t != SEPARATOR) {
        bail!("the file does not start with a document separator");
    }
    Ok(tokens
        .split(|&t| t == SEPARATOR)
        .skip(1)
        .enumerate()
        .map(|(i, doc)| Document {
            contribution: i as u64 + 1,
            tokens: doc.to_vec(),
        })
        .collect())
}

fn build(tokenized: &PathBuf, out: &std::path::Path) -> Result<(span::SpanIndex, f64)> {
    let bytes =
        std::fs::read(tokenized).with_context(|| format!("reading {}", tokenized.display()))?;
    let docs = documents(&bytes)?;
    let started = Instant::now();
    let index = span::build(out, docs)?;
    let seconds = started.elapsed().as_secs_f64();
    // The same text, byte for byte, or the comparison means nothing.
    if std::fs::read(out.join("tokens.bin"))? != bytes {
        bail!("our text differs from {}", tokenized.display());
    }
    Ok((index, seconds))
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Build { tokenized, out } => {
            let (index, seconds) = build(&tokenized, &out)?;
            let bytes: u64 = ["tokens.bin", "suffixes.bin", "documents.bin"]
                .iter()
                .map(|f| std::fs::metadata(out.join(f)).map_or(0, |m| m.len()))
                .sum();
            let out = serde_json::json!({
                "tokens": index.len(),
                "documents": index.documents(),
                "seconds": seconds,
                "bytes_per_token": bytes as f64 / index.len().max(1) as f64,
            });
            println!("{out}");
        }
        Command::Answer { tokenized, queries } => {
            let dir = tempfile::tempdir()?;
            let (index, _) = build(&tokenized, dir.path())?;
            let queries: Vec<Vec<u32>> = serde_json::from_slice(
                &std::fs::read(&queries)
                    .with_context(|| format!("reading {}", queries.display()))?,
            )?;
            let answers: Vec<[u64; 3]> = queries
                .iter()
                .map(|q| {
                    let r = index.find(q)?;
                    Ok([r.start, r.end, index.count(q)?])
                })
                .collect::<Result<_>>()?;
            println!("{}", serde_json::json!({ "answers": answers }));
        }
        Command::Latency {
            tokens,
            answers,
            length,
        } => latency(tokens, answers.max(1), length)?,
    }
    Ok(())
}
