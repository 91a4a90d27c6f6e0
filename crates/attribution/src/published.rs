//! An adapter's published artifacts, opened for attribution: the training manifest, the
//! examples it hashes, the checkpoints it names, and the two engines' indexes built from them
//! (once, into a cache directory; later opens reuse them).
//!
//! The published directory has the blob store's layout under `adapters/<weights hash>/`:
//! `manifest.json`, `examples.bin` and `checkpoints/<step>/adapter_{config.json,model.safetensors}`.

use crate::{
    corpus::{self, TrainingExample},
    gradient::{self, Checkpoint, SketchConfig, SketchStore},
    span::{self, SpanIndex},
    AttributionError,
};
use alloy_primitives::{keccak256, B256};
use openledger_factory::publish::Manifest;
use openledger_model::{lora::LoraAdapter, Model};
use std::{collections::BTreeMap, path::Path};

type Result<T> = std::result::Result<T, AttributionError>;

/// Everything attribution needs about one adapter.
pub struct Published {
    pub manifest: Manifest,
    /// keccak256 of `manifest.json`: what the registry records.
    pub manifest_hash: B256,
    pub examples: Vec<TrainingExample>,
    /// Each credited contribution's datanet.
    pub datanets: BTreeMap<u64, u64>,
    pub spans: SpanIndex,
    pub sketches: SketchStore,
    pub checkpoints: Vec<Checkpoint>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| AttributionError::Io(path.display().to_string(), e))
}

impl Published {
    /// Opens the artifacts in `dir`, checking every file against the manifest and the
    /// manifest against `base_weights_hash` (the loaded base model's), and builds (or reopens)
    /// the span index and sketch store in `cache`. `progress(done, total)` hears of the
    /// sketching, the long part.
    pub fn open(
        dir: &Path,
        cache: &Path,
        model: &Model,
        base_weights_hash: B256,
        sketch: &SketchConfig,
        progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        let manifest_bytes = read(&dir.join("manifest.json"))?;
        let manifest_hash = keccak256(&manifest_bytes);
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| AttributionError::Artifact(format!("manifest.json: {e}")))?;
        if manifest.base_weights_hash != base_weights_hash {
            return Err(AttributionError::Artifact(format!(
                "the adapter was trained on base weights {}, but the loaded model's are {}",
                manifest.base_weights_hash, base_weights_hash
            )));
        }
        let examples = corpus::training_examples(&manifest, &read(&dir.join("examples.bin"))?)?;
        let mut datanets = BTreeMap::new();
        for version in &manifest.datanet_versions {
            for (contribution, _) in &version.members {
                datanets.insert(*contribution, version.datanet);
            }
        }
        let checkpoints = manifest
            .checkpoints
            .iter()
            .map(|c| {
                let at = dir.join("checkpoints").join(c.step.to_string());
                let found = keccak256(read(&at.join("adapter_model.safetensors"))?);
                if found != c.weights_hash {
                    return Err(AttributionError::Artifact(format!(
                        "checkpoint {} hashes to {found}, the manifest records {}",
                        c.step, c.weights_hash
                    )));
                }
                Ok(Checkpoint {
                    learning_rate: c.learning_rate,
                    weights_hash: c.weights_hash,
                    adapter: LoraAdapter::load(&at).map_err(gradient::GradientError::Model)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        std::fs::create_dir_all(cache)
            .map_err(|e| AttributionError::Io(cache.display().to_string(), e))?;
        let spans = open_or_build_spans(&cache.join("spans"), &examples)?;
        let sketches = open_or_build_sketches(
            &cache.join("sketches.bin"),
            model,
            &checkpoints,
            &examples,
            sketch,
            progress,
        )?;
        Ok(Self {
            manifest,
            manifest_hash,
            examples,
            datanets,
            spans,
            sketches,
            checkpoints,
        })
    }
}

/// Only the span index of the adapter published in `dir` (built into `cache` on first use),
/// with the manifest's hash: all that checking a receipt's span part needs.
pub fn open_span_index(dir: &Path, cache: &Path) -> Result<(B256, SpanIndex)> {
    let manifest_bytes = read(&dir.join("manifest.json"))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| AttributionError::Artifact(format!("manifest.json: {e}")))?;
    let examples = corpus::training_examples(&manifest, &read(&dir.join("examples.bin"))?)?;
    std::fs::create_dir_all(cache)
        .map_err(|e| AttributionError::Io(cache.display().to_string(), e))?;
    Ok((
        keccak256(&manifest_bytes),
        open_or_build_spans(&cache.join("spans"), &examples)?,
    ))
}

fn open_or_build_spans(dir: &Path, examples: &[TrainingExample]) -> Result<SpanIndex> {
    // An index that does not open (damaged, or an older format) is rebuilt, not trusted.
    if let Ok(index) = SpanIndex::open(dir) {
        if index.documents() == examples.len() {
            return Ok(index);
        }
    }
    // Built beside, then renamed: a crash never leaves a half index under the real name.
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    span::build(&tmp, corpus::documents(examples))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(|e| AttributionError::Io(dir.display().to_string(), e))?;
    Ok(SpanIndex::open(dir)?)
}

fn open_or_build_sketches(
    path: &Path,
    model: &Model,
    checkpoints: &[Checkpoint],
    examples: &[TrainingExample],
    config: &SketchConfig,
    progress: impl FnMut(usize, usize),
) -> Result<SketchStore> {
    if let Ok(store) = SketchStore::open(path) {
        let same = store.config == *config
            && store.examples.len() == examples.len()
            && store
                .examples
                .iter()
                .zip(examples)
                .all(|(&(i, c), e)| i == e.index && c == e.contribution)
            && store.checkpoints.len() == checkpoints.len()
            && store.checkpoints.iter().zip(checkpoints).all(|(s, c)| {
                s.weights_hash == c.weights_hash && s.learning_rate == c.learning_rate
            });
        if same {
            return Ok(store);
        }
    }
    Ok(gradient::build(
        path,
        &model.llama,
        checkpoints,
        examples,
        config,
        progress,
    )?)
}
