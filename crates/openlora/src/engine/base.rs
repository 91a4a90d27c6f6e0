//! The base model's weights as the serving pass reads them: every projection as 8-bit
//! blocks (q|k|v and gate|up fused, so each layer runs four products), norms and the
//! embedding in f32, rotary tables precomputed.

use super::dims::{Dims, Kind};
use crate::ServeError;
use openledger_model::{llama::Llama, q8::Q8, weights::Weights};

pub(crate) struct Layer {
    pub in_norm: Vec<f32>,
    pub post_norm: Vec<f32>,
    /// `(h·d + 2·kv·d, e)`.
    pub qkv: Q8,
    pub qkv_bias: Option<Vec<f32>>,
    pub o: Q8,
    /// `(2·inter, e)`.
    pub gate_up: Q8,
    pub down: Q8,
}

/// The served base model.
pub struct Base {
    pub(crate) dims: Dims,
    /// `(vocab, e)`.
    pub(crate) embed: Vec<f32>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Vec<f32>,
    /// `(vocab, e)`.
    pub(crate) head: Q8,
    /// `(positions, d/2)` each.
    pub(crate) cos: Vec<f32>,
    pub(crate) sin: Vec<f32>,
}

impl Base {
    /// Takes `llama`'s weights (after any merges) and rounds its projections to 8 bits.
    pub fn new(llama: &Llama) -> Result<Self, ServeError> {
        let config = llama.config();
        let dims = Dims::new(config);
        let weights = llama.weights().map_err(ServeError::model)?;
        let get = |name: &str| -> Result<Vec<f32>, ServeError> {
            let t = weights
                .get(name)
                .ok_or_else(|| ServeError::Unsupported(format!("the model lacks {name}")))?;
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| ServeError::Unsupported(format!("{name}: {e}")))
        };
        let quantize = |rows: Vec<f32>, inp: usize| -> Result<Q8, ServeError> {
            if !inp.is_multiple_of(openledger_model::q8::BLOCK) {
                return Err(ServeError::Unsupported(format!(
                    "a projection {inp} wide is not whole blocks of {}",
                    openledger_model::q8::BLOCK
                )));
            }
            let out = rows.len() / inp;
            Ok(Q8::quantize(&rows, out, inp))
        };
        let mut layers = Vec::with_capacity(dims.layers);
        for i in 0..dims.layers {
            let p = |kind: Kind| format!("model.layers.{i}.{}", kind.path());
            let w = |kind: Kind| get(&format!("{}.weight", p(kind)));
            let mut qkv = w(Kind::Q)?;
            qkv.extend(w(Kind::K)?);
            qkv.extend(w(Kind::V)?);
            let qkv_bias = if config.attention_bias {
                let b = |kind: Kind| get(&format!("{}.bias", p(kind)));
                let mut bias = b(Kind::Q)?;
                bias.extend(b(Kind::K)?);
                bias.extend(b(Kind::V)?);
                Some(bias)
            } else {
                None
            };
            let mut gate_up = w(Kind::Gate)?;
            gate_up.extend(w(Kind::Up)?);
            layers.push(Layer {
                in_norm: get(&format!("model.layers.{i}.input_layernorm.weight"))?,
                post_norm: get(&format!("model.layers.{i}.post_attention_layernorm.weight"))?,
                qkv: quantize(qkv, dims.e)?,
                qkv_bias,
                o: quantize(w(Kind::O)?, dims.h * dims.d)?,
                gate_up: quantize(gate_up, dims.e)?,
                down: quantize(w(Kind::Down)?, dims.inter)?,
            });
        }
        let embed = get("model.embed_tokens.weight")?;
        let head = head_weight(&weights, &embed, config.tie_word_embeddings)?;
        let (cos, sin) = rope_tables(&dims, config.rope_theta);
        Ok(Self {
            head: quantize(head, dims.e)?,
            norm: get("model.norm.weight")?,
            embed,
            layers,
            cos,
            sin,
            dims,
        })
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
            + self.head.bytes()
            + 4 * (self.embed.len() + self.norm.len() + self.cos.len() + self.sin.len())
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

fn head_weight(weights: &Weights, embed: &[f32], tied: bool) -> Result<Vec<f32>, ServeError> {
    match weights.get("lm_head.weight") {
        Some(t) if !tied => t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| ServeError::Unsupported(format!("lm_head.weight: {e}"))),
        _ => Ok(embed.to_vec()),
    }
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
