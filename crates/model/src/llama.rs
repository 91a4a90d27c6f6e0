//! The Llama transformer: RMSNorm, rotary embeddings (rotate-half, the model's theta),
//! grouped-query attention with a KV cache, SwiGLU, tied or untied output.
//!
//! Shapes in comments: `b` batch, `s` new positions, `t` all cached positions, `h` query
//! heads, `kv` key/value heads, `d` head width, `e` hidden size.

use crate::{config::Config, weights::Weights, ModelError};
use candle_core::{DType, Device, Tensor, D};

/// A projection `y = x Wᵀ (+ b)`, holding `Wᵀ` contiguous `(in, out)` so every call is one
/// plain 2-D matrix product over all positions of the batch.
struct Linear {
    wt: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            wt: weight.t()?.contiguous()?,
            bias,
        })
    }

    /// `(…, in)` to `(…, out)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let inner = dims[dims.len() - 1];
        let rows = x.elem_count() / inner;
        let y = x.reshape((rows, inner))?.matmul(&self.wt)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims.to_vec();
        *out.last_mut().expect("at least one dimension") = self.wt.dim(1)?;
        Ok(y.reshape(out)?)
    }
}

type Result<T> = std::result::Result<T, ModelError>;

/// The keys and values of every layer for the positions seen so far.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// How many positions the cache holds.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

struct Layer {
    input_norm: Tensor,
    attn: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

/// A loaded model, ready to run.
pub struct Llama {
    config: Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    /// `(positions, d/2)` each.
    cos: Tensor,
    sin: Tensor,
}

impl Llama {
    /// Builds the model from weights under Hugging Face's names.
    pub fn new(config: Config, weights: &Weights) -> Result<Self> {
        let get = |name: &str| {
            weights
                .get(name)
                .cloned()
                .ok_or_else(|| ModelError::Format(format!("the weights lack {name}")))
        };
        let linear = |name: &str, bias: bool| -> Result<Linear> {
            let b = if bias {
                Some(get(&format!("{name}.bias"))?)
            } else {
                None
            };
            Linear::new(get(&format!("{name}.weight"))?, b)
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let bias = config.attention_bias;
            layers.push(Layer {
                input_norm: get(&format!("{p}.input_layernorm.weight"))?,
                attn: Attention {
                    q: linear(&format!("{p}.self_attn.q_proj"), bias)?,
                    k: linear(&format!("{p}.self_attn.k_proj"), bias)?,
                    v: linear(&format!("{p}.self_attn.v_proj"), bias)?,
                    o: linear(&format!("{p}.self_attn.o_proj"), false)?,
                },
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"))?,
                mlp: Mlp {
                    gate: linear(&format!("{p}.mlp.gate_proj"), false)?,
                    up: linear(&format!("{p}.mlp.up_proj"), false)?,
                    down: linear(&format!("{p}.mlp.down_proj"), false)?,
                },
            });
        }
        let embed = get("model.embed_tokens.weight")?;
        let lm_head = if config.tie_word_embeddings || !weights.contains_key("lm_head.weight") {
            Linear::new(embed.clone(), None)?
        } else {
            linear("lm_head", false)?
        };
        let (cos, sin) = rope_tables(&config)?;
        Ok(Self {
            norm: get("model.norm.weight")?,
            config,
            embed,
            layers,
            lm_head,
            cos,
            sin,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `tokens` `(b, s)` after the positions already in `cache`, extends the cache, and
    /// returns the logits of the last position of each sequence `(b, vocab)`.
    pub fn forward_last(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.hidden(tokens, cache)?; // (b, s, e)
        let s = hidden.dim(1)?;
        let last = hidden.narrow(1, s - 1, 1)?.squeeze(1)?; // (b, e)
        self.lm_head.forward(&last)
    }

    /// Like [`Llama::forward_last`] but returns the logits of every position `(b, s, vocab)`.
    pub fn forward_all(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.hidden(tokens, cache)?;
        self.lm_head.forward(&hidden)
    }

    /// The final normalized hidden states `(b, s, e)`.
    fn hidden(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, s) = tokens.dims2()?;
        let start = cache.len();
        if start + s > self.config.max_position_embeddings {
            return Err(ModelError::ContextFull {
                limit: self.config.max_position_embeddings,
            });
        }
        cache.layers.resize(self.layers.len(), None);
        let mut x = self
            .embed
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, s, self.config.hidden_size))?;
        let cos = self.cos.narrow(0, start, s)?;
        let sin = self.sin.narrow(0, start, s)?;
        let mask = causal_mask(s, start, x.device())?;
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = rms_norm(&x, &layer.input_norm, self.config.rms_norm_eps)?;
            let h = self.attention(&layer.attn, &h, &cos, &sin, mask.as_ref(), slot)?;
            x = (x + h)?;
            let h = rms_norm(&x, &layer.post_norm, self.config.rms_norm_eps)?;
            let m = &layer.mlp;
            let h = (candle_nn::ops::silu(&m.gate.forward(&h)?)? * m.up.forward(&h)?)?;
            x = (x + m.down.forward(&h)?)?;
        }
        rms_norm(&x, &self.norm, self.config.rms_norm_eps)
    }

    fn attention(
        &self,
        attn: &Attention,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut Option<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let (h, kv, d) = (
            self.config.num_attention_heads,
            self.config.kv_heads(),
            self.config.head_dim(),
        );
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, s, n, d))?.transpose(1, 2)?.contiguous()?)
        };
        let q = heads(attn.q.forward(x)?, h)?; // (b, h, s, d)
        let k = heads(attn.k.forward(x)?, kv)?; // (b, kv, s, d)
        let v = heads(attn.v.forward(x)?, kv)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        let t = k.dim(2)?;
        // Grouped-query attention without copying keys: fold each group's query heads into
        // the position axis, (b, kv, g·s, d) against (b, kv, t, d).
        let g = h / kv;
        let q = q.reshape((b, kv, g * s, d))?;
        let scale = 1.0 / (d as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?; // (b, kv, g·s, t)
        let scores = match mask {
            Some(mask) => scores
                .reshape((b, kv, g, s, t))?
                .broadcast_add(mask)?
                .reshape((b, kv, g * s, t))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&v)?; // (b, kv, g·s, d)
        let y = y
            .reshape((b, h, s, d))?
            .transpose(1, 2)?
            .reshape((b, s, h * d))?;
        attn.o.forward(&y)
    }
}

/// `-inf` above the diagonal for `s` new positions after `start` cached ones, `(s, start + s)`;
/// `None` for a single position, which may see everything.
fn causal_mask(s: usize, start: usize, device: &Device) -> Result<Option<Tensor>> {
    if s == 1 {
        return Ok(None);
    }
    let t = start + s;
    let values: Vec<f32> = (0..s)
        .flat_map(|i| {
            (0..t).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Some(Tensor::from_vec(values, (s, t), device)?))
}

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(candle_nn::ops::rms_norm(x, weight, eps as f32)?)
}

/// cos and sin of every position's rotation angles, `(positions, d/2)`.
fn rope_tables(config: &Config) -> Result<(Tensor, Tensor)> {
    let d = config.head_dim();
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f32 / d as f32))
        .collect();
    let n = config.max_position_embeddings;
    let inv = Tensor::from_vec(inv, (1, d / 2), &Device::Cpu)?;
    let positions = Tensor::arange(0u32, n as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((n, 1))?;
    let angles = positions.broadcast_mul(&inv)?;
    Ok((angles.cos()?, angles.sin()?))
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Tensor(e.to_string())
    }
}

/// The index of the largest value of a `(vocab,)` logits tensor.
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}
