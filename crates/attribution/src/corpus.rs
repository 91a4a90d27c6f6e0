//! An adapter's training corpus, as its publication recorded it: the training manifest
//! (`manifest.json`) and the examples file it hashes (`examples.bin`, the factory's prepared
//! data: every example's contribution, prompt length and tokens, in the job's order).
//!
//! The span index is built over exactly what trained the adapter: the examples the manifest
//! did not hold out, whole (prompt and answer: the model read both), each a document carrying
//! its contribution id.

use crate::span::Document;
use alloy_primitives::keccak256;
use openledger_factory::{data, publish::Manifest};
use openledger_model::train::Example;

/// The contribution id of an example that came from an uploaded file rather than a datanet:
/// its spans are traced but credit nobody.
pub const UNCREDITED: u64 = u64::MAX;

/// Why a published corpus cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("examples.bin hashes to {found}, but the manifest records {expected}")]
    Hash {
        expected: alloy_primitives::B256,
        found: alloy_primitives::B256,
    },
    #[error("examples.bin holds {found} examples, but the manifest records {expected}")]
    Count { expected: u64, found: usize },
    #[error("examples.bin: {0}")]
    Format(#[source] std::io::Error),
    #[error("held-out index {0} is beyond the examples")]
    HeldOut(u64),
}

/// An example that trained the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingExample {
    /// Its index in `examples.bin` (held-out examples keep their places).
    pub index: u64,
    /// Its contribution, [`UNCREDITED`] for uploaded data.
    pub contribution: u64,
    pub example: Example,
}

/// The examples that trained the adapter `manifest` describes, from the bytes of its
/// `examples.bin`, in the job's order.
pub fn training_examples(
    manifest: &Manifest,
    examples: &[u8],
) -> Result<Vec<TrainingExample>, CorpusError> {
    let found = keccak256(examples);
    if found != manifest.examples_hash {
        return Err(CorpusError::Hash {
            expected: manifest.examples_hash,
            found,
        });
    }
    let samples = data::parse_samples(examples).map_err(CorpusError::Format)?;
    if samples.len() as u64 != manifest.examples {
        return Err(CorpusError::Count {
            expected: manifest.examples,
            found: samples.len(),
        });
    }
    let mut held = vec![false; samples.len()];
    for &i in &manifest.held_out {
        *held.get_mut(i as usize).ok_or(CorpusError::HeldOut(i))? = true;
    }
    Ok(samples
        .into_iter()
        .zip(held)
        .enumerate()
        .filter(|(_, (_, held))| !held)
        .map(|(index, (s, _))| TrainingExample {
            index: index as u64,
            contribution: s.contribution.unwrap_or(UNCREDITED),
            example: s.example,
        })
        .collect())
}

/// The span index's documents: each training example whole (prompt and answer: the model
/// read both), carrying its contribution.
pub fn documents(examples: &[TrainingExample]) -> Vec<Document> {
    examples
        .iter()
        .map(|e| Document {
            contribution: e.contribution,
            tokens: e.example.tokens.clone(),
        })
        .collect()
}

/// The documents that trained the adapter `manifest` describes, from the bytes of its
/// `examples.bin`, in the job's order.
pub fn training_documents(
    manifest: &Manifest,
    examples: &[u8],
) -> Result<Vec<Document>, CorpusError> {
    Ok(documents(&training_examples(manifest, examples)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openledger_factory::data::Sample;

    fn manifest(examples: &[u8], count: u64, held_out: Vec<u64>) -> Manifest {
        Manifest {
            format: 1,
            job: "ftjob-1".into(),
            base_model: "SmolLM2-135M-Instruct".into(),
            base_weights_hash: Default::default(),
            datanet_versions: Vec::new(),
            training_config_hash: Default::default(),
            examples_hash: keccak256(examples),
            examples: count,
            held_out,
            checkpoints: Vec::new(),
            weights_hash: Default::default(),
        }
    }

    fn examples() -> Vec<u8> {
        let samples: Vec<Sample> = [
            (Some(4), vec![1, 2, 3]),
            (None, vec![5, 6]),
            (Some(9), vec![7]),
        ]
        .into_iter()
        .map(|(contribution, tokens)| Sample {
            contribution,
            example: Example {
                tokens,
                prompt_len: 1,
            },
        })
        .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("examples.bin");
        data::write_samples(&path, &samples).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_corpus_is_what_trained_and_nothing_else() {
        let bytes = examples();
        let docs = training_documents(&manifest(&bytes, 3, vec![2]), &bytes).unwrap();
        let got: Vec<(u64, Vec<u32>)> = docs
            .into_iter()
            .map(|d| (d.contribution, d.tokens))
            .collect();
        assert_eq!(got, [(4, vec![1, 2, 3]), (UNCREDITED, vec![5, 6])]);
    }

    #[test]
    fn a_corpus_that_does_not_match_its_manifest_is_refused() {
        let bytes = examples();
        let mut tampered = bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let err = training_documents(&manifest(&bytes, 3, vec![]), &tampered).unwrap_err();
        assert!(matches!(err, CorpusError::Hash { .. }), "{err}");
        let err = training_documents(&manifest(&bytes, 4, vec![]), &bytes).unwrap_err();
        assert!(err.to_string().contains("holds 3 examples"), "{err}");
        let err = training_documents(&manifest(&bytes, 3, vec![3]), &bytes).unwrap_err();
        assert!(matches!(err, CorpusError::HeldOut(3)), "{err}");
    }
}
