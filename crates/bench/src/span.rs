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
    }
    Ok(())
}
