//! The sketch store: every training example's sketched LoRA gradient at every checkpoint,
//! int8 with an f32 scale, and each checkpoint's preconditioner factor, in one file whose
//! keccak256 is the store's root.
//!
//! Layout (little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 4 | magic `OLGS` |
//! | 4 | format version |
//! | 4, 4, 8, 8, 8 | `k`, checkpoints `C`, examples `n`, projection seed, damping (f64) |
//! | C × 40 | per checkpoint: learning rate (f64), adapter weights hash |
//! | n × 16 | per example: index in `examples.bin`, contribution id |
//! | C × (n × (4 + k) + 8 k²) | per checkpoint: each example's scale (f32) and `k` int8 values, then the factor `L` (f64, row-major) |

use super::{cholesky::Factor, Checkpoint, GradientError, Result, SketchConfig};
use crate::corpus::TrainingExample;
use alloy_primitives::{Keccak256, B256};
use memmap2::Mmap;
use openledger_model::{gradients::per_example_gradients, llama::Llama};
use std::{
    io::Write,
    path::{Path, PathBuf},
};

const MAGIC: &[u8; 4] = b"OLGS";
/// The store format's version.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 40;

/// A sketch quantized to int8: `value[i] ≈ scale · q[i]`.
pub(crate) fn quantize(values: &[f64]) -> (f32, Vec<i8>) {
    let max = values.iter().fold(0f64, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        return (0.0, vec![0; values.len()]);
    }
    let scale = (max / 127.0) as f32;
    let q = values
        .iter()
        .map(|v| (v / scale as f64).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (scale, q)
}

/// A checkpoint's entry in the store's header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredCheckpoint {
    pub learning_rate: f64,
    pub weights_hash: B256,
}

/// An open sketch store.
pub struct SketchStore {
    map: Mmap,
    path: PathBuf,
    pub config: SketchConfig,
    pub checkpoints: Vec<StoredCheckpoint>,
    /// (index in `examples.bin`, contribution) of each example, in store order.
    pub examples: Vec<(u64, u64)>,
    factors: Vec<Factor>,
    root: B256,
    /// Where the per-checkpoint sections begin.
    body: usize,
}

/// The sketch of `example`'s gradient of its loss under `checkpoint`, unquantized; zero when
/// the example learns no position.
pub(crate) fn sketch(
    model: &Llama,
    checkpoint: &Checkpoint,
    example: &openledger_model::train::Example,
    config: &SketchConfig,
) -> Result<Vec<f64>> {
    let gradient =
        match per_example_gradients(model, &checkpoint.adapter, std::slice::from_ref(example)) {
            Ok(mut g) => g.pop().unwrap_or_default(),
            Err(openledger_model::ModelError::Train(_)) => return Ok(vec![0.0; config.k]),
            Err(e) => return Err(GradientError::Model(e)),
        };
    Ok(config
        .sketch()
        .project(&gradient)
        .into_iter()
        .map(f64::from)
        .collect())
}

/// Sketches every example at every checkpoint and writes the store to `path`.
/// `progress(done, total)` hears of each example sketched.
pub fn build(
    path: &Path,
    model: &Llama,
    checkpoints: &[Checkpoint],
    examples: &[TrainingExample],
    config: &SketchConfig,
    progress: impl FnMut(usize, usize),
) -> Result<SketchStore> {
    let stored: Vec<StoredCheckpoint> = checkpoints
        .iter()
        .map(|c| StoredCheckpoint {
            learning_rate: c.learning_rate,
            weights_hash: c.weights_hash,
        })
        .collect();
    let ids: Vec<(u64, u64)> = examples.iter().map(|e| (e.index, e.contribution)).collect();
    // Examples go through the model in fixed groups of BATCH consecutive ones (the grouping
    // is part of what every builder must do alike: padding changes float rounding).
    let mut group: Option<(usize, usize, Vec<Vec<f64>>)> = None;
    write(path, config, &stored, &ids, progress, |c, i| {
        let start = i - i % BATCH;
        if !matches!(&group, Some((gc, gs, _)) if *gc == c && *gs == start) {
            let end = (start + BATCH).min(examples.len());
            let batch: Vec<_> = examples[start..end]
                .iter()
                .map(|e| e.example.clone())
                .collect();
            group = Some((
                c,
                start,
                sketch_batch(model, &checkpoints[c], &batch, config)?,
            ));
        }
        let (_, _, sketches) = group.as_ref().expect("just filled");
        Ok(sketches[i - start].clone())
    })
}

/// Examples sketched together when the store is built.
const BATCH: usize = 8;

/// The sketches of a group of examples, from one pass; one by one when an example in it
/// learns nothing (its sketch is zero).
fn sketch_batch(
    model: &Llama,
    checkpoint: &Checkpoint,
    examples: &[openledger_model::train::Example],
    config: &SketchConfig,
) -> Result<Vec<Vec<f64>>> {
    match per_example_gradients(model, &checkpoint.adapter, examples) {
        Ok(gradients) => Ok(gradients
            .iter()
            .map(|g| {
                config
                    .sketch()
                    .project(g)
                    .into_iter()
                    .map(f64::from)
                    .collect()
            })
            .collect()),
        Err(openledger_model::ModelError::Train(_)) => examples
            .iter()
            .map(|e| sketch(model, checkpoint, e, config))
            .collect(),
        Err(e) => Err(GradientError::Model(e)),
    }
}

/// Writes a store to `path` (beside it first, then renamed, so a crash leaves no half
/// store) from `sketch(checkpoint, example)`, each example's unquantized sketch, called
/// checkpoint by checkpoint in example order.
pub fn write(
    path: &Path,
    config: &SketchConfig,
    checkpoints: &[StoredCheckpoint],
    examples: &[(u64, u64)],
    mut progress: impl FnMut(usize, usize),
    mut sketch: impl FnMut(usize, usize) -> Result<Vec<f64>>,
) -> Result<SketchStore> {
    config.validate()?;
    if checkpoints.is_empty() {
        return Err(GradientError::NoCheckpoints);
    }
    let tmp = path.with_extension("tmp");
    let io = |e| GradientError::Io(tmp.display().to_string(), e);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    let mut head = Vec::with_capacity(HEADER);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    head.extend_from_slice(&(config.k as u32).to_le_bytes());
    head.extend_from_slice(&(checkpoints.len() as u32).to_le_bytes());
    head.extend_from_slice(&(examples.len() as u64).to_le_bytes());
    head.extend_from_slice(&config.seed.to_le_bytes());
    head.extend_from_slice(&config.damping.to_le_bytes());
    for c in checkpoints {
        head.extend_from_slice(&c.learning_rate.to_le_bytes());
        head.extend_from_slice(c.weights_hash.as_slice());
    }
    for &(index, contribution) in examples {
        head.extend_from_slice(&index.to_le_bytes());
        head.extend_from_slice(&contribution.to_le_bytes());
    }
    out.write_all(&head).map_err(io)?;
    let total = checkpoints.len() * examples.len();
    let mut done = 0;
    for c in 0..checkpoints.len() {
        let mut moment = super::cholesky::Moment::new(config.k);
        for i in 0..examples.len() {
            let values = sketch(c, i)?;
            if values.len() != config.k {
                return Err(GradientError::Config(format!(
                    "a sketch of {} values for k = {}",
                    values.len(),
                    config.k
                )));
            }
            let (scale, q) = quantize(&values);
            out.write_all(&scale.to_le_bytes()).map_err(io)?;
            out.write_all(&q.iter().map(|&v| v as u8).collect::<Vec<_>>())
                .map_err(io)?;
            // The preconditioner comes from the stored (quantized) sketches, so that anyone
            // holding the store can recompute it.
            let dequantized: Vec<f64> = q.iter().map(|&v| scale as f64 * v as f64).collect();
            moment.add(&dequantized);
            done += 1;
            progress(done, total);
        }
        for x in moment.factor(config.damping).l {
            out.write_all(&x.to_le_bytes()).map_err(io)?;
        }
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| GradientError::Io(path.display().to_string(), e))?;
    SketchStore::open(path)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

fn f64_at(b: &[u8], at: usize) -> f64 {
    f64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

impl SketchStore {
    /// Opens a store, checking its header and size, and hashes it for its root.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| GradientError::Io(shown.clone(), e))?;
        // SAFETY: the store is written once, beside its final name, then renamed; nothing
        // writes to it while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| GradientError::Io(shown.clone(), e))?;
        let bad = |why: String| GradientError::Format(format!("{shown}: {why}"));
        if map.len() < HEADER || &map[..4] != MAGIC {
            return Err(bad("not a sketch store".into()));
        }
        let version = u32_at(&map, 4);
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let k = u32_at(&map, 8) as usize;
        let c = u32_at(&map, 12) as usize;
        let n = u64_at(&map, 16);
        let config = SketchConfig {
            k,
            seed: u64_at(&map, 24),
            damping: f64_at(&map, 32),
        };
        config.validate()?;
        // Sizes in u128 so that a hostile header cannot overflow the arithmetic.
        let (kw, cw, nw) = (k as u128, c as u128, n as u128);
        let expected = HEADER as u128 + cw * 40 + nw * 16 + cw * (nw * (4 + kw) + 8 * kw * kw);
        if expected != map.len() as u128 {
            return Err(bad(format!(
                "{} bytes, but k = {k}, {c} checkpoints and {n} examples need {expected}",
                map.len()
            )));
        }
        let n = n as usize;
        let mut at = HEADER;
        let mut checkpoints = Vec::with_capacity(c);
        for _ in 0..c {
            checkpoints.push(StoredCheckpoint {
                learning_rate: f64_at(&map, at),
                weights_hash: B256::from_slice(&map[at + 8..at + 40]),
            });
            at += 40;
        }
        let examples = (0..n)
            .map(|i| (u64_at(&map, at + 16 * i), u64_at(&map, at + 16 * i + 8)))
            .collect();
        let body = at + 16 * n;
        let factors = (0..c)
            .map(|ci| {
                let start = body + ci * (n * (4 + k) + 8 * k * k) + n * (4 + k);
                Factor {
                    k,
                    l: (0..k * k).map(|i| f64_at(&map, start + 8 * i)).collect(),
                }
            })
            .collect();
        let mut hasher = Keccak256::new();
        hasher.update(&map[..]);
        let root = hasher.finalize();
        Ok(Self {
            map,
            path: path.to_path_buf(),
            config,
            checkpoints,
            examples,
            factors,
            root,
            body,
        })
    }

    /// keccak256 of the store file: what a receipt names.
    pub fn root(&self) -> B256 {
        self.root
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Examples in the store.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Checkpoint `c`'s preconditioner factor.
    pub(crate) fn factor(&self, c: usize) -> &Factor {
        &self.factors[c]
    }

    /// Checkpoint `c`'s sketches: `n` records of a scale (f32) and `k` int8 values.
    pub(crate) fn records(&self, c: usize) -> &[u8] {
        let (k, n) = (self.config.k, self.examples.len());
        let start = self.body + c * (n * (4 + k) + 8 * k * k);
        &self.map[start..start + n * (4 + k)]
    }
}
