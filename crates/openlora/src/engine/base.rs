//! The base model's weights as the serving pass reads them: every projection in blocks of
//! 32 (a GGUF file's own Q4_1 or Q8_0 blocks as they are; f32 weights rounded to Q8_0),
//! q|k|v and gate|up fused so each layer runs four products, norms in f32, rotary tables
//! precomputed.

use super::{
    dims::{Dims, Kind},
    quant::Matrix,
};
use crate::ServeError;
use openledger_model::{
    llama::Llama,
    weights::{RawGguf, RawTensor},
};
use std::collections::HashMap;

pub(crate) struct Layer {
    pub in_norm: Vec<f32>,
    pub post_norm: Vec<f32>,
    /// `(h·d + 2·kv·d, e)`.
    pub qkv: Matrix,
    pub qkv_bias: Option<Vec<f32>>,
    pub o: Matrix,
    /// `(2·inter, e)`.
    pub gate_up: Matrix,
    pub down: Matrix,
}

/// The served base model.
pub struct Base {
    pub(crate) dims: Dims,
    /// `(vocab, e)`.
    pub(crate) embed: Matrix,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Vec<f32>,
    /// `(vocab, e)`; `None` when tied to the embedding.
    pub(crate) head: Option<Matrix>,
    /// `(positions, d/2)` each.
    pub(crate) cos: Vec<f32>,
    pub(crate) sin: Vec<f32>,
}

impl Base {
    /// Takes `llama`'s f32 weights (after any merges) and rounds them to Q8_0 blocks.
    pub fn new(llama: &Llama) -> Result<Self, ServeError> {
        let weights = llama.weights().map_err(ServeError::model)?;
        let mut tensors = HashMap::new();
        for (name, t) in weights {
            let shape = t.dims().to_vec();
            let values = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| ServeError::Unsupported(format!("{name}: {e}")))?;
            tensors.insert(name, RawTensor::F32 { shape, values });
        }
        Self::build(llama.config(), &tensors)
    }

    /// Serves a GGUF file's weights in their own blocks (no f32 copy is ever made of them).
    pub fn from_gguf(raw: &RawGguf) -> Result<Self, ServeError> {
        Self::build(&raw.config, &raw.tensors)
    }

    fn build(
        config: &openledger_model::config::Config,
        tensors: &HashMap<String, RawTensor>,
    ) -> Result<Self, ServeError> {
        let dims = Dims::new(config);
        let missing = |name: &str| ServeError::Unsupported(format!("the model lacks {name}"));
        let vector = |name: &str| -> Result<Vec<f32>, ServeError> {
            match tensors.get(name) {
                Some(RawTensor::F32 { values, .. }) => Ok(values.clone()),
                Some(_) => Err(ServeError::Unsupported(format!("{name} is quantized"))),
                None => Err(missing(name)),
            }
        };
        let matrix = |name: &str| -> Result<Matrix, ServeError> {
            let t = tensors.get(name).ok_or_else(|| missing(name))?;
            let m = match t {
                RawTensor::Q4_1 { rows, cols, bytes } => Matrix::from_q4_1(*rows, *cols, bytes),
                RawTensor::Q8_0 { rows, cols, bytes } => Matrix::from_q8_0(*rows, *cols, bytes),
                RawTensor::F32 { shape, values } => match shape.as_slice() {
                    &[rows, cols] => Matrix::quantize_q8_0(values, rows, cols),
                    _ => None,
                },
            };
            m.ok_or_else(|| {
                ServeError::Unsupported(format!(
                    "{name}: only matrices whose rows are whole blocks of 32 are served"
                ))
            })
        };
        let fused = |names: Vec<String>| -> Result<Matrix, ServeError> {
            let parts = names
                .iter()
                .map(|n| matrix(n))
                .collect::<Result<Vec<_>, _>>()?;
            Matrix::concat(parts).ok_or_else(|| {
                ServeError::Unsupported(format!("{} differ in format or width", names.join(", ")))
            })
        };
        let mut layers = Vec::with_capacity(dims.layers);
        for i in 0..dims.layers {
            let w = |kind: Kind| format!("model.layers.{i}.{}.weight", kind.path());
            let qkv_bias = if config.attention_bias {
                let b = |kind: Kind| vector(&format!("model.layers.{i}.{}.bias", kind.path()));
                let mut bias = b(Kind::Q)?;
                bias.extend(b(Kind::K)?);
                bias.extend(b(Kind::V)?);
                Some(bias)
            } else {
                None
            };
            layers.push(Layer {
                in_norm: vector(&format!("model.layers.{i}.input_layernorm.weight"))?,
                post_norm: vector(&format!("model.layers.{i}.post_attention_layernorm.weight"))?,
                qkv: fused(vec![w(Kind::Q), w(Kind::K), w(Kind::V)])?,
                qkv_bias,
                o: matrix(&w(Kind::O))?,
                gate_up: fused(vec![w(Kind::Gate), w(Kind::Up)])?,
                down: matrix(&w(Kind::Down))?,
            });
        }
        let embed = matrix("model.embed_tokens.weight")?;
        let head = match tensors.get("lm_head.weight") {
            Some(_) if !config.tie_word_embeddings => Some(matrix("lm_head.weight")?),
            _ => None,
        };
        check_shapes(&dims, &layers, &embed, head.as_ref())?;
        let norm = vector("model.norm.weight")?;
        if norm.len() != dims.e {
            return Err(ServeError::Unsupported(format!(
                "the final norm is not {} wide",
                dims.e
            )));
        }
        let (cos, sin) = rope_tables(&dims, config.rope_theta);
        Ok(Self {
            head,
            norm,
            embed,
            layers,
            cos,
            sin,
            dims,
        })
    }

    /// The output head.
    pub(crate) fn head(&self) -> &Matrix {
        self.head.as_ref().unwrap_or(&self.embed)
    }

    /// Bytes of weights held.
    pub fn bytes(&self) -> usize {
        let layer = |l: &Layer| {
            l.qkv.bytes()
                + l.o.bytes()
                + l.gate_up.bytes()
                + l.down.bytes()
                + 4 * (l.in_norm.len() + l.post_norm.len())
        };
        self.layers.iter().map(layer).sum::<usize>()
            + self.head.as_ref().map_or(0, Matrix::bytes)
            + self.embed.bytes()
            + 4 * (self.norm.len() + self.cos.len() + self.sin.len())
    }

    /// The vocabulary size (the width of a row of logits).
    pub fn vocab(&self) -> usize {
        self.dims.vocab
    }

    /// The longest sequence the model takes.
    pub fn max_positions(&self) -> usize {
        self.dims.max_positions
    }

    /// Bytes of key/value cache one position takes.
    pub fn kv_bytes_per_position(&self) -> usize {
        self.dims.layers * 2 * self.dims.kv * self.dims.d * 4
    }
}

/// Refuses weights whose shapes disagree with the config (a damaged or hostile file), which
/// would otherwise misalign a batch's logits or index out of range mid-step.
fn check_shapes(
    dims: &Dims,
    layers: &[Layer],
    embed: &Matrix,
    head: Option<&Matrix>,
) -> Result<(), ServeError> {
    let bad = |what: String| Err(ServeError::Unsupported(what));
    if dims.kv == 0
        || !dims.h.is_multiple_of(dims.kv)
        || !dims.d.is_multiple_of(2)
        || dims.h * dims.d != dims.e
    {
        return bad(format!(
            "{} heads over {} key/value heads of width {} in a hidden size of {}",
            dims.h, dims.kv, dims.d, dims.e
        ));
    }
    let (e, inter, vocab) = (dims.e, dims.inter, dims.vocab);
    for (i, l) in layers.iter().enumerate() {
        let want = [
            ("q|k|v", l.qkv.shape(), (dims.qkv(), e)),
            ("o_proj", l.o.shape(), (e, dims.h * dims.d)),
            ("gate|up", l.gate_up.shape(), (2 * inter, e)),
            ("down_proj", l.down.shape(), (e, inter)),
        ];
        for (name, got, want) in want {
            if got != want {
                return bad(format!(
                    "layer {i} {name} is {got:?}, the config says {want:?}"
                ));
            }
        }
        if l.in_norm.len() != e || l.post_norm.len() != e {
            return bad(format!("layer {i}'s norms are not {e} wide"));
        }
        if l.qkv_bias.as_ref().is_some_and(|b| b.len() != dims.qkv()) {
            return bad(format!("layer {i}'s q|k|v bias is not {} wide", dims.qkv()));
        }
    }
    for (name, m) in [("the embedding", Some(embed)), ("the output head", head)] {
        if let Some(m) = m {
            if m.shape() != (vocab, e) {
                return bad(format!(
                    "{name} is {:?}, the config says {:?}",
                    m.shape(),
                    (vocab, e)
                ));
            }
        }
    }
    Ok(())
}

/// cos and sin of every position's angles, `(positions, d/2)`, as the model crate computes
/// them (f32 angles), so both passes rotate identically.
fn rope_tables(dims: &Dims, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = dims.d / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / theta.powf(2.0 * i as f32 / dims.d as f32))
        .collect();
    let mut cos = Vec::with_capacity(dims.max_positions * half);
    let mut sin = Vec::with_capacity(dims.max_positions * half);
    for p in 0..dims.max_positions {
        for f in &inv {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}
