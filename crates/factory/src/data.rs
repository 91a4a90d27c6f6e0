//! A job's training data: records gathered from datanet versions (each checked against its
//! root on chain) and uploaded files, rendered under the model's chat template, tokenized and
//! cut to the cutoff length; the report validation writes; and the prepared file the runner
//! trains from, so that a resumed run reads exactly what the first one did.

use crate::{job::JobError, spec::Source};
use alloy_primitives::{B256, U256};
use openledger_datanets::{merkle::VersionTree, Datanets};
use openledger_model::{data, train::Example, Model};
use openledger_protocol::{datanet_registry::DatanetRegistry, ProtocolClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{
    io::{BufRead, BufWriter, Read, Write},
    path::Path,
};

/// One record and where it came from.
#[derive(Debug, Clone)]
pub struct Record {
    /// Index into the job's sources.
    pub source: usize,
    pub contribution: Option<u64>,
    /// Where it is, for messages: "contribution 5 record 3", "line 7".
    pub place: String,
    pub value: Value,
}

/// One training example and the contribution it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub contribution: Option<u64>,
    pub example: Example,
}

/// What validation found in one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceReport {
    pub source: String,
    pub version: Option<u64>,
    pub root: Option<B256>,
    pub contributions: u64,
    pub records: u64,
}

/// What validation found in all of a job's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub sources: Vec<SourceReport>,
    pub examples: u64,
    pub tokens: u64,
    /// Tokens the loss learns from (answers, not prompts).
    pub learned_tokens: u64,
    /// Examples cut to the cutoff length.
    pub truncated: u64,
    pub longest: u64,
    pub estimate: Option<Estimate>,
}

/// How long the run should take and how much memory it should need on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub peak_memory_bytes: u64,
}

fn invalid(message: String) -> JobError {
    JobError::new("invalid_training_file", message, Some("training_file"))
}

/// Reads a datanet version's records, after checking that the version is on chain, belongs
/// to `datanet`, and that its root is the Merkle root of the contributions exported.
pub async fn gather_version(
    datanets: &Datanets,
    client: &ProtocolClient,
    source: usize,
    datanet: u64,
    version: u64,
    out: &mut Vec<Record>,
) -> Result<SourceReport, JobError> {
    let name = format!("datanet:{datanet}@{version}");
    let registry = client
        .addresses()
        .map(|a| a.datanet_registry)
        .ok_or_else(|| JobError::new("server_error", "no protocol addresses", None))?;
    let on_chain = client
        .call(
            registry,
            DatanetRegistry::versionCall {
                versionId: U256::from(version),
            },
        )
        .await
        .map_err(|e| JobError::new("server_error", format!("reading {name}: {e}"), None))?;
    if on_chain.datanetId == 0 {
        return Err(invalid(format!("{name}: version {version} does not exist")));
    }
    if u64::from(on_chain.datanetId) != datanet {
        return Err(invalid(format!(
            "{name}: version {version} belongs to datanet {}, not {datanet}",
            on_chain.datanetId
        )));
    }
    let unreadable = |e: openledger_datanets::DatanetsError| invalid(format!("{name}: {e}"));
    let members = datanets.members(version).await.map_err(unreadable)?;
    let mut pairs = Vec::with_capacity(members.len());
    for id in &members {
        let row = datanets
            .index()
            .contribution(*id)
            .map_err(|e| unreadable(e.into()))?
            .ok_or_else(|| invalid(format!("{name}: contribution {id} is not indexed")))?;
        pairs.push((*id, row.content_hash));
    }
    let root = VersionTree::build(pairs)
        .map_err(|_| invalid(format!("{name}: its member list is malformed")))?
        .root();
    if root != on_chain.root || members.len() as u64 != on_chain.count {
        return Err(invalid(format!(
            "{name}: the stored data's root {root} is not the root on chain {}",
            on_chain.root
        )));
    }
    let mut file = tempfile::tempfile()
        .map_err(|e| JobError::new("server_error", format!("scratch file: {e}"), None))?;
    let summary = datanets
        .export(version, &mut BufWriter::new(&mut file))
        .await
        .map_err(unreadable)?;
    read_export(file, source, &name, out)?;
    Ok(SourceReport {
        source: name,
        version: Some(version),
        root: Some(root),
        contributions: summary.contributions,
        records: summary.records,
    })
}

/// Reads an export's `{"contribution", "record"}` lines.
fn read_export(
    mut file: std::fs::File,
    source: usize,
    name: &str,
    out: &mut Vec<Record>,
) -> Result<(), JobError> {
    use std::io::Seek;
    let io = |e: std::io::Error| JobError::new("server_error", format!("{name}: {e}"), None);
    file.rewind().map_err(io)?;
    let mut counts = std::collections::HashMap::<u64, u64>::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io)?;
        let mut row: Value = serde_json::from_str(&line)
            .map_err(|e| JobError::new("server_error", format!("{name}: {e}"), None))?;
        let contribution = row["contribution"].as_u64().unwrap_or(0);
        let n = counts.entry(contribution).or_default();
        *n += 1;
        out.push(Record {
            source,
            contribution: Some(contribution),
            place: format!("{name} contribution {contribution} record {n}"),
            value: row["record"].take(),
        });
    }
    Ok(())
}

/// Reads an uploaded JSONL file's records.
pub fn gather_file(
    path: &Path,
    source: usize,
    name: &str,
    out: &mut Vec<Record>,
) -> Result<SourceReport, JobError> {
    let file = std::fs::File::open(path)
        .map_err(|e| JobError::new("server_error", format!("{name}: {e}"), None))?;
    let mut records = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| JobError::new("server_error", format!("{name}: {e}"), None))?;
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("{name} line {}", i + 1);
        let value =
            serde_json::from_str(&line).map_err(|e| invalid(format!("{place}: not JSON: {e}")))?;
        out.push(Record {
            source,
            contribution: None,
            place,
            value,
        });
        records += 1;
    }
    Ok(SourceReport {
        source: name.to_string(),
        version: None,
        root: None,
        contributions: 0,
        records,
    })
}

/// Renders and tokenizes every record, cutting examples to `cutoff` tokens; the first record
/// that cannot be learned from fails the job, by name.
pub fn prepare(
    model: &Model,
    records: &[Record],
    cutoff: usize,
    sources: Vec<SourceReport>,
) -> Result<(Vec<Sample>, Report), JobError> {
    let mut samples = Vec::with_capacity(records.len());
    let mut report = Report {
        sources,
        examples: 0,
        tokens: 0,
        learned_tokens: 0,
        truncated: 0,
        longest: 0,
        estimate: None,
    };
    // Rendering and tokenizing dominate validation: every record on every core, in order.
    use rayon::prelude::*;
    let rendered: Vec<Result<Example, JobError>> = records
        .par_iter()
        .map(|record| {
            let bad = |why: String| invalid(format!("{}: {why}", record.place));
            let rendered = data::render(model, &record.value).map_err(bad)?;
            data::tokenize(model, &rendered).map_err(bad)
        })
        .collect();
    for (record, example) in records.iter().zip(rendered) {
        let mut example = example?;
        report.longest = report.longest.max(example.tokens.len() as u64);
        if example.tokens.len() > cutoff {
            if example.prompt_len + 1 >= cutoff {
                return Err(invalid(format!(
                    "{}: the prompt alone is {} tokens, which leaves nothing to learn within \
                     the cutoff length of {cutoff}",
                    record.place, example.prompt_len
                )));
            }
            example.tokens.truncate(cutoff);
            report.truncated += 1;
        }
        report.tokens += example.tokens.len() as u64;
        report.learned_tokens += (example.tokens.len() - example.prompt_len) as u64;
        samples.push(Sample {
            contribution: record.contribution,
            example,
        });
    }
    report.examples = samples.len() as u64;
    if samples.is_empty() {
        return Err(invalid("the training files hold no records".into()));
    }
    Ok((samples, report))
}

const MAGIC: &[u8; 8] = b"OLFDATA1";

/// Writes prepared samples: `MAGIC`, the count, then per sample its contribution
/// (`u64::MAX` for none), prompt length and token count, and the tokens, little-endian.
pub fn write_samples(path: &Path, samples: &[Sample]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        w.write_all(MAGIC)?;
        w.write_all(&(samples.len() as u64).to_le_bytes())?;
        for s in samples {
            w.write_all(&s.contribution.unwrap_or(u64::MAX).to_le_bytes())?;
            w.write_all(&(s.example.prompt_len as u32).to_le_bytes())?;
            w.write_all(&(s.example.tokens.len() as u32).to_le_bytes())?;
            for t in &s.example.tokens {
                w.write_all(&t.to_le_bytes())?;
            }
        }
        w.into_inner()?.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads what [`write_samples`] wrote.
pub fn read_samples(path: &Path) -> std::io::Result<Vec<Sample>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    parse_samples(&bytes)
}

/// Parses the bytes [`write_samples`] wrote.
pub fn parse_samples(bytes: &[u8]) -> std::io::Result<Vec<Sample>> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut at = 0usize;
    let mut take = |n: usize| -> std::io::Result<&[u8]> {
        let slice = bytes.get(at..at + n).ok_or_else(|| bad("truncated"))?;
        at += n;
        Ok(slice)
    };
    if take(8)? != MAGIC {
        return Err(bad("not a prepared-data file"));
    }
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    let count = u64_of(take(8)?) as usize;
    let mut samples = Vec::with_capacity(count.min(1 << 24));
    for _ in 0..count {
        let contribution = u64_of(take(8)?);
        let prompt_len = u32_of(take(4)?) as usize;
        let len = u32_of(take(4)?) as usize;
        let tokens = take(len * 4)?.chunks_exact(4).map(u32_of).collect();
        samples.push(Sample {
            contribution: (contribution != u64::MAX).then_some(contribution),
            example: Example { tokens, prompt_len },
        });
    }
    Ok(samples)
}

/// The sources' names, for messages.
pub fn describe(sources: &[Source]) -> String {
    sources
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_samples_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let samples = vec![
            Sample {
                contribution: Some(7),
                example: Example {
                    tokens: vec![1, 2, 3, 70_000],
                    prompt_len: 2,
                },
            },
            Sample {
                contribution: None,
                example: Example {
                    tokens: vec![5, 6],
                    prompt_len: 0,
                },
            },
        ];
        write_samples(&path, &samples).unwrap();
        assert_eq!(read_samples(&path).unwrap(), samples);
        // A cut file is refused, not read short.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read_samples(&path).is_err());
    }
}
