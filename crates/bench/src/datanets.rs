//! `datanets-bench`: the datanet pipeline's speed on this machine.
//!
//! - **Validation and hashing**: a generated JSONL file of chat records (`--mb`, default 200)
//!   goes through exactly what a contribution goes through before it is stored: canonical
//!   bytes hashed with keccak256 into a staging file, then every record parsed, checked
//!   against a JSON Schema, scanned for secrets and personal data, MinHashed and looked up
//!   in the near-duplicate index of the datanet's accepted records. Measured twice: against
//!   an empty datanet, and against one with `--accepted` (100,000) accepted records.
//! - **Near-duplicate checking**: records/s of signing and querying new records against the
//!   index of `--accepted` accepted records.
//! - **Version building**: the Merkle tree over `--contributions` (1,000,000) contributions.
//!
//! Prints one JSON object. Usage:
//! `cargo run --release -p openledger-bench --bin datanets-bench [-- --mb 200]`.

use alloy_primitives::{keccak256, B256};
use anyhow::{ensure, Result};
use clap::Parser;
use openledger_datanets::{
    format::Format,
    merkle::VersionTree,
    minhash::{self, LshIndex},
    validate::{self, Policy},
};
use serde_json::json;
use std::{io::Write, time::Instant};

#[derive(Parser)]
struct Args {
    /// Size of the generated JSONL file, in MB.
    #[arg(long, default_value_t = 200)]
    mb: u64,
    /// Accepted records in the near-duplicate index.
    #[arg(long, default_value_t = 100_000)]
    accepted: usize,
    /// New records checked against them.
    #[arg(long, default_value_t = 20_000)]
    queries: usize,
    /// Contributions in the version tree.
    #[arg(long, default_value_t = 1_000_000)]
    contributions: u64,
}

/// A deterministic generator of word-salad records from a 4,096-word vocabulary.
struct Words {
    state: u64,
    vocabulary: Vec<String>,
}

impl Words {
    fn new(seed: u64) -> Self {
        let mut w = Self {
            state: seed,
            vocabulary: Vec::new(),
        };
        let syllables = [
            "ka", "lo", "mi", "ne", "su", "ta", "vo", "ri", "de", "pa", "zu", "ge",
        ];
        w.vocabulary = (0..4096)
            .map(|_| {
                let n = 2 + w.next() % 3;
                (0..n)
                    .map(|_| syllables[(w.next() % 12) as usize])
                    .collect()
            })
            .collect();
        w
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn sentence(&mut self, words: usize) -> String {
        let mut s = String::new();
        for i in 0..words {
            if i > 0 {
                s.push(' ');
            }
            let k = (self.next() % 4096) as usize;
            s.push_str(&self.vocabulary[k]);
        }
        s
    }

    fn chat_record(&mut self) -> String {
        let q = self.sentence(20);
        let a = self.sentence(60);
        json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
            .to_string()
    }
}

fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "required": ["messages"],
        "properties": {"messages": {"type": "array", "minItems": 2, "items": {
            "type": "object", "required": ["role", "content"],
            "properties": {
                "role": {"enum": ["system", "user", "assistant"]},
                "content": {"type": "string", "minLength": 1}
            }
        }}}
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let policy = Policy::default();
    let dir = tempfile::tempdir()?;

    // The accepted records of the datanet.
    let mut words = Words::new(1);
    let started = Instant::now();
    let mut accepted = LshIndex::new(policy.near_duplicate_threshold);
    let accepted_texts: Vec<String> = (0..args.accepted).map(|_| words.sentence(80)).collect();
    for (i, text) in accepted_texts.iter().enumerate() {
        accepted.insert(i as u64 / 100 + 1, minhash::signature(text).expect("words"));
    }
    let index_secs = started.elapsed().as_secs_f64();

    // Near-duplicate checking: new records, one in ten a light edit of an accepted one.
    let mut words = Words::new(2);
    let queries: Vec<String> = (0..args.queries)
        .map(|i| {
            if i % 10 == 0 {
                accepted_texts[i * 7 % args.accepted].replacen(' ', " edited ", 1)
            } else {
                words.sentence(80)
            }
        })
        .collect();
    let started = Instant::now();
    let mut found = 0;
    for q in &queries {
        let sig = minhash::signature(q).expect("words");
        found += usize::from(accepted.query(&sig).is_some());
    }
    let near_secs = started.elapsed().as_secs_f64();
    ensure!(
        found >= args.queries / 10,
        "the edited copies should all be found ({found} of {})",
        args.queries / 10
    );

    // Validation and hashing of a large JSONL file.
    let source = dir.path().join("contribution.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&source)?);
    let mut words = Words::new(3);
    let (mut bytes, mut records) = (0u64, 0u64);
    while bytes < args.mb * 1_000_000 {
        let line = words.chat_record();
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")?;
        bytes += line.len() as u64 + 1;
        records += 1;
    }
    file.flush()?;
    drop(file);
    let validator = jsonschema::validator_for(&schema())?;
    let mut validation = Vec::new();
    for (label, near) in [("empty datanet", None), ("accepted index", Some(&accepted))] {
        let staged = dir.path().join("staged");
        let started = Instant::now();
        let validated = validate::stage_and_check(
            &source,
            Format::Jsonl,
            &staged,
            &validator,
            &policy,
            near,
            &|_| {},
        )?;
        let checked = validated.checked?;
        let secs = started.elapsed().as_secs_f64();
        ensure!(checked.report.records == records, "every record checked");
        validation.push(json!({
            "against": label,
            "seconds": secs,
            "mb_per_s": bytes as f64 / 1e6 / secs,
            "records_per_s": records as f64 / secs,
        }));
    }

    // Building a version over a million contributions.
    let members: Vec<(u64, B256)> = (1..=args.contributions)
        .map(|i| (i, keccak256(i.to_be_bytes())))
        .collect();
    let started = Instant::now();
    let tree = VersionTree::build(members)?;
    let version_secs = started.elapsed().as_secs_f64();
    ensure!(tree.len() as u64 == args.contributions);

    let report = json!({
        "validation": {"file_mb": bytes as f64 / 1e6, "records": records, "runs": validation},
        "near_duplicates": {
            "accepted_records": args.accepted,
            "index_build_seconds": index_secs,
            "queries": args.queries,
            "records_per_s": args.queries as f64 / near_secs,
            "found": found,
        },
        "version": {"contributions": args.contributions, "seconds": version_secs, "root": tree.root()},
        "threads": rayon::current_num_threads(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
