//! The Llama transformer: RMSNorm, rotary embeddings (rotate-half, the model's theta),
//! grouped-query attention with a KV cache, SwiGLU, tied or untied output.
//!
//! Shapes in comments: `b` batch, `s` new positions, `t` all cached positions, `h` query
//! heads, `kv` key/value heads, `d` head width, `e` hidden size.

use crate::{
    config::Config, frozen::frozen_matmul, lora::LoraAdapter, lora_add::lora_add, q8::Q8,
    weights::Weights, ModelError,
};
use candle_core::{DType, Device, Tensor, D};
use std::{collections::HashMap, sync::OnceLock};

type Result<T> = std::result::Result<T, ModelError>;

/// A projection `y = x Wᵀ (+ b)`, holding `Wᵀ` contiguous `(in, out)` so every call is one
/// plain 2-D matrix product over all positions of the batch.
struct Linear {
    /// The module path adapters know it by (`model.layers.0.self_attn.q_proj`).
    name: String,
    wt: Tensor,
    bias: Option<Tensor>,
    /// An 8-bit copy of `W` `(out, in)` for decode steps (see
    /// [`Llama::set_quantized_decode`]), made on the first such step, so that loading for
    /// training or merging does not pay for it. `None` inside: the width is not whole blocks.
    q8: OnceLock<Option<Q8>>,
}

impl Linear {
    fn new(name: &str, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            wt: weight.t()?.contiguous()?,
            bias,
            q8: OnceLock::new(),
        })
    }

    /// The 8-bit copy, made on first use; `None` for widths that are not whole blocks.
    fn q8(&self) -> Option<&Q8> {
        self.q8
            .get_or_init(|| {
                let (inp, out) = self.wt.dims2().ok()?;
                if !inp.is_multiple_of(crate::q8::BLOCK) {
                    return None;
                }
                // Reading an f32 matrix back cannot fail; if it did, f32 products remain.
                let w: Vec<f32> = self.wt.t().ok()?.flatten_all().ok()?.to_vec1().ok()?;
                Some(Q8::quantize(&w, out, inp))
            })
            .as_ref()
    }

    /// `(n, in)·Wᵀ`: on the 8-bit copy in a quantized decode step that carries no gradient,
    /// else f32.
    fn product(&self, x: &Tensor, quantized: bool) -> Result<Tensor> {
        let q8 = if quantized && !x.track_op() {
            self.q8()
        } else {
            None
        };
        match q8 {
            Some(q8) => {
                let n = x.dim(0)?;
                let y = q8.matmul(&x.flatten_all()?.to_vec1()?, n);
                Ok(Tensor::from_vec(y, (n, self.wt.dim(1)?), x.device())?)
            }
            None => Ok(frozen_matmul(x, &self.wt)?),
        }
    }

    /// `(b, s, in)` to `(b, s, out)`: the base projection once for the whole batch, then the
    /// low-rank terms of every sequence's own adapter in two batched products.
    fn forward(&self, x: &Tensor, lora: Option<&LoraBatch>, decode: bool) -> Result<Tensor> {
        let (b, s, inner) = x.dims3()?;
        let y = self.product(&x.reshape((b * s, inner))?, decode)?;
        let y = match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        };
        let y = y.reshape((b, s, self.wt.dim(1)?))?;
        match lora.and_then(|l| l.stacks.get(&self.name)) {
            // (b, s, in)·(b, in, r) → (b, s, r); ·(b, r, out) → (b, s, out)
            Some((at, bt)) => Ok(lora_add(&y, x, at, bt)?),
            None => Ok(y),
        }
    }

    /// `(b, in)` to `(b, out)`, without adapters (the output head).
    fn forward_2d(&self, x: &Tensor, decode: bool) -> Result<Tensor> {
        self.product(x, decode)
    }

    /// Adds `sign · delta` `(out, in)` to the weight (its 8-bit copy is made again on use).
    fn add_delta(&mut self, delta: &Tensor, sign: f64) -> Result<()> {
        self.wt = (&self.wt + (delta.t()? * sign)?)?.contiguous()?;
        self.q8 = OnceLock::new();
        Ok(())
    }
}

/// Which LoRA adapter each sequence of a batch uses. The base projections run once for the
/// whole batch; the adapters' low-rank terms run as two batched products per projection,
/// over each sequence's own `Aᵀ` and `Bᵀ` stacked along the batch (zeros for a sequence
/// without an adapter there, and zero columns up to the largest rank), so the cost does not
/// grow with the number of distinct adapters in the batch.
pub struct LoraBatch {
    /// Per adapted module: `Aᵀ` `(b, in, r)` and `scale·Bᵀ` `(b, r, out)`.
    stacks: HashMap<String, (Tensor, Tensor)>,
}

impl LoraBatch {
    /// `per_sequence[i]` is the index into `adapters` of sequence `i`'s adapter, or `None`
    /// for the base model alone.
    pub fn new(adapters: Vec<&LoraAdapter>, per_sequence: &[Option<usize>]) -> Result<Self> {
        if let Some(bad) = per_sequence
            .iter()
            .flatten()
            .find(|&&k| k >= adapters.len())
        {
            return Err(ModelError::Adapter(format!(
                "sequence names adapter {bad} but only {} are given",
                adapters.len()
            )));
        }
        let used: Vec<&LoraAdapter> = per_sequence
            .iter()
            .flatten()
            .map(|&k| adapters[k])
            .collect();
        let rank = used.iter().map(|a| a.config.r).max().unwrap_or(0);
        let mut modules: Vec<&String> = used.iter().flat_map(|a| a.pairs.keys()).collect();
        modules.sort();
        modules.dedup();
        let mut stacks = HashMap::new();
        for module in modules {
            let (mut at, mut bt) = (Vec::new(), Vec::new());
            // Shapes from any adapter that has the module.
            let sample = used
                .iter()
                .find_map(|a| a.pair(module))
                .expect("the module comes from a used adapter");
            let (inp, out) = (sample.a.dim(1)?, sample.b.dim(0)?);
            for choice in per_sequence {
                let adapter = choice.map(|k| adapters[k]);
                match adapter.and_then(|a| a.pair(module).map(|p| (a, p))) {
                    Some((a, p)) => {
                        let r = a.config.r;
                        let pad = rank - r;
                        let a_t = p.a.t()?.pad_with_zeros(1, 0, pad)?; // (in, rank)
                        let b_t = (p.b.t()? * a.config.scale())?.pad_with_zeros(0, 0, pad)?; // (rank, out)
                        at.push(a_t);
                        bt.push(b_t);
                    }
                    None => {
                        at.push(Tensor::zeros((inp, rank), DType::F32, &Device::Cpu)?);
                        bt.push(Tensor::zeros((rank, out), DType::F32, &Device::Cpu)?);
                    }
                }
            }
            stacks.insert(
                module.clone(),
                (
                    Tensor::stack(&at, 0)?.contiguous()?,
                    Tensor::stack(&bt, 0)?.contiguous()?,
                ),
            );
        }
        Ok(Self { stacks })
    }
}

/// The keys and values of every layer for the positions seen so far, each in a buffer that
/// grows by [`CACHE_GROWTH`] positions at a time and is written in place, so a decode step
/// copies only its own position rather than the whole cache.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<candle_nn::kv_cache::KvCache>>,
}

/// Positions a layer's cache buffer grows by when full.
const CACHE_GROWTH: usize = 256;

impl KvCache {
    /// How many positions the cache holds.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |kv| kv.current_seq_len())
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

impl Layer {
    pub(crate) fn input_norm(&self) -> &Tensor {
        &self.input_norm
    }

    pub(crate) fn post_norm(&self) -> &Tensor {
        &self.post_norm
    }

    /// Each projection's `Wᵀ` `(in, out)` and bias, in [`Layer::projections`] order.
    pub(crate) fn weights(&self) -> [(&Tensor, Option<&Tensor>); 7] {
        self.projections().map(|p| (&p.wt, p.bias.as_ref()))
    }

    /// The layer's adaptable projections, in a fixed order.
    fn projections(&self) -> [&Linear; 7] {
        let (a, m) = (&self.attn, &self.mlp);
        [&a.q, &a.k, &a.v, &a.o, &m.gate, &m.up, &m.down]
    }

    fn projections_mut(&mut self) -> [&mut Linear; 7] {
        let (a, m) = (&mut self.attn, &mut self.mlp);
        [
            &mut a.q,
            &mut a.k,
            &mut a.v,
            &mut a.o,
            &mut m.gate,
            &mut m.up,
            &mut m.down,
        ]
    }
}

pub(crate) struct Layer {
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
    /// Whether decode steps run on 8-bit copies ([`Llama::set_quantized_decode`]).
    quantized_decode: bool,
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
            Linear::new(name, get(&format!("{name}.weight"))?, b)
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
            Linear::new("lm_head", embed.clone(), None)?
        } else {
            linear("lm_head", false)?
        };
        let (cos, sin) = rope_tables(&config)?;
        Ok(Self {
            norm: get("model.norm.weight")?,
            quantized_decode: false,
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

    pub(crate) fn layers(&self) -> &[Layer] {
        &self.layers
    }

    pub(crate) fn embed(&self) -> &Tensor {
        &self.embed
    }

    pub(crate) fn final_norm(&self) -> &Tensor {
        &self.norm
    }

    /// cos and sin of every position's rotation angles, `(positions, d/2)` each.
    pub(crate) fn rope_tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// The output head's `Wᵀ` `(hidden, vocab)`.
    pub(crate) fn head(&self) -> &Tensor {
        &self.lm_head.wt
    }

    /// Runs `tokens` `(b, s)` after the positions already in `cache`, extends the cache, and
    /// returns the logits of the last position of each sequence `(b, vocab)`.
    pub fn forward_last(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.forward_last_lora(tokens, cache, None)
    }

    /// Like [`Llama::forward_last`] but returns the logits of every position `(b, s, vocab)`.
    pub fn forward_all(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.forward_all_lora(tokens, cache, None)
    }

    /// [`Llama::forward_last`] with each sequence on its own adapter (or none).
    pub fn forward_last_lora(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        lora: Option<&LoraBatch>,
    ) -> Result<Tensor> {
        let decode = self.quantized_step(tokens, cache)?;
        let hidden = self.hidden(tokens, cache, lora)?; // (b, s, e)
        let s = hidden.dim(1)?;
        let last = hidden.narrow(1, s - 1, 1)?.squeeze(1)?; // (b, e)
        self.lm_head.forward_2d(&last, decode)
    }

    /// [`Llama::forward_all`] with each sequence on its own adapter (or none).
    pub fn forward_all_lora(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        lora: Option<&LoraBatch>,
    ) -> Result<Tensor> {
        let decode = self.quantized_step(tokens, cache)?;
        let hidden = self.hidden(tokens, cache, lora)?;
        let (b, s, e) = hidden.dims3()?;
        let logits = self
            .lm_head
            .forward_2d(&hidden.reshape((b * s, e))?, decode)?;
        Ok(logits.reshape((b, s, self.config.vocab_size))?)
    }

    /// The model's weights under Hugging Face's names (after any merges), ready to save as
    /// safetensors next to [`Config::to_hf_json`].
    pub fn weights(&self) -> Result<Weights> {
        let mut w = Weights::new();
        w.insert("model.embed_tokens.weight".into(), self.embed.clone());
        w.insert("model.norm.weight".into(), self.norm.clone());
        if !self.config.tie_word_embeddings {
            w.insert("lm_head.weight".into(), self.lm_head.wt.t()?.contiguous()?);
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            w.insert(
                format!("{p}.input_layernorm.weight"),
                layer.input_norm.clone(),
            );
            w.insert(
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_norm.clone(),
            );
            for linear in layer.projections() {
                w.insert(
                    format!("{}.weight", linear.name),
                    linear.wt.t()?.contiguous()?,
                );
                if let Some(bias) = &linear.bias {
                    w.insert(format!("{}.bias", linear.name), bias.clone());
                }
            }
        }
        Ok(w)
    }

    /// Every adaptable projection: module path, input width, output width.
    pub fn projections(&self) -> Vec<(String, usize, usize)> {
        self.layers
            .iter()
            .flat_map(Layer::projections)
            .map(|linear| {
                let (inp, out) = linear.wt.dims2().expect("weights are matrices");
                (linear.name.clone(), inp, out)
            })
            .collect()
    }

    /// Checks that every pair of `adapter` names a projection of this model and fits its
    /// shape, so that a mismatched adapter is refused up front rather than mid-generation.
    pub fn check_adapter(&self, adapter: &LoraAdapter) -> Result<()> {
        let shapes: HashMap<String, (usize, usize)> = self
            .projections()
            .into_iter()
            .map(|(name, inp, out)| (name, (inp, out)))
            .collect();
        for (module, pair) in &adapter.pairs {
            let Some(&(inp, out)) = shapes.get(module) else {
                return Err(ModelError::Adapter(format!(
                    "the model has no projection {module}"
                )));
            };
            let (_, a_in) = pair.a.dims2()?;
            let (b_out, _) = pair.b.dims2()?;
            if a_in != inp || b_out != out {
                return Err(ModelError::Adapter(format!(
                    "{module} is {out}×{inp} but the adapter is for {b_out}×{a_in}"
                )));
            }
        }
        Ok(())
    }

    /// All positions' logits `(b, s, vocab)` for training: no cache, and only operations
    /// that carry gradients (candle's fused RMSNorm, rotary and softmax kernels do not), so
    /// that a loss can be differentiated with respect to adapter weights held in `Var`s.
    pub fn forward_train(&self, tokens: &Tensor, lora: Option<&LoraBatch>) -> Result<Tensor> {
        let hidden = self.run(tokens, &mut KvCache::default(), lora, true)?;
        let (b, s, e) = hidden.dims3()?;
        let logits = self
            .lm_head
            .forward_2d(&hidden.reshape((b * s, e))?, false)?;
        Ok(logits.reshape((b, s, self.config.vocab_size))?)
    }

    /// Decode steps of up to four sequences on 8-bit copies of the projection and head weights
    /// (`on`; blocks of 32 with a scale, llama.cpp's Q8_0), or on the f32 weights (`off`, the
    /// default). A decode step reads every weight once, so a copy a quarter the size makes it
    /// several times faster; its logits differ from the f32 pass by the rounding of the
    /// weights to 8 bits (`tests/generate.rs` bounds it). Prefill, batches and training stay
    /// on f32. The copies are made on the first decode step (about a second for the default
    /// model).
    pub fn set_quantized_decode(&mut self, on: bool) {
        self.quantized_decode = on;
    }

    /// Whether decode steps run on 8-bit copies.
    pub fn quantized_decode(&self) -> bool {
        self.quantized_decode
    }

    /// Folds `adapter` into the base weights (`sign` 1.0), or takes it back out (-1.0).
    pub fn merge(&mut self, adapter: &LoraAdapter, sign: f64) -> Result<()> {
        self.check_adapter(adapter)?;
        for layer in &mut self.layers {
            for linear in layer.projections_mut() {
                if let Some(delta) = adapter.delta(&linear.name)? {
                    linear.add_delta(&delta, sign)?;
                }
            }
        }
        Ok(())
    }

    /// The final normalized hidden states `(b, s, e)`.
    fn hidden(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        lora: Option<&LoraBatch>,
    ) -> Result<Tensor> {
        self.run(tokens, cache, lora, false)
    }

    /// The layers; `grad` picks differentiable operations over the fused kernels.
    fn run(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        lora: Option<&LoraBatch>,
        grad: bool,
    ) -> Result<Tensor> {
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
        let decode = self.quantized_step(tokens, cache)?;
        let at = Positions {
            cos: self.cos.narrow(0, start, s)?,
            sin: self.sin.narrow(0, start, s)?,
            mask: causal_mask(s, start, x.device())?,
            grad,
            decode,
        };
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = rms_norm(&x, &layer.input_norm, self.config.rms_norm_eps, grad)?;
            let h = self.attention(&layer.attn, &h, &at, slot, lora)?;
            x = (x + h)?;
            let h = rms_norm(&x, &layer.post_norm, self.config.rms_norm_eps, grad)?;
            let m = &layer.mlp;
            let gate = m.gate.forward(&h, lora, decode)?;
            let up = m.up.forward(&h, lora, decode)?;
            let h = (candle_nn::ops::silu(&gate)? * up)?;
            x = (x + m.down.forward(&h, lora, decode)?)?;
        }
        rms_norm(&x, &self.norm, self.config.rms_norm_eps, grad)
    }

    fn attention(
        &self,
        attn: &Attention,
        x: &Tensor,
        at: &Positions,
        cache: &mut Option<candle_nn::kv_cache::KvCache>,
        lora: Option<&LoraBatch>,
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
        let q = heads(attn.q.forward(x, lora, at.decode)?, h)?; // (b, h, s, d)
        let k = heads(attn.k.forward(x, lora, at.decode)?, kv)?; // (b, kv, s, d)
        let v = heads(attn.v.forward(x, lora, at.decode)?, kv)?;
        let rope = if at.grad {
            candle_nn::rotary_emb::rope_slow
        } else {
            candle_nn::rotary_emb::rope
        };
        let q = rope(&q, &at.cos, &at.sin)?;
        let k = rope(&k, &at.cos, &at.sin)?;
        // Training needs no cache, and the in-place writes carry no gradient.
        let (k, v) = if at.grad {
            (k, v)
        } else {
            cache
                .get_or_insert_with(|| candle_nn::kv_cache::KvCache::new(2, CACHE_GROWTH))
                .append(&k, &v)?
        };
        let t = k.dim(2)?;
        // Grouped-query attention without copying keys: fold each group's query heads into
        // the position axis, (b, kv, g·s, d) against (b, kv, t, d).
        let g = h / kv;
        let q = q.reshape((b, kv, g * s, d))?;
        let scale = 1.0 / (d as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?; // (b, kv, g·s, t)
        let scores = match &at.mask {
            Some(mask) => scores
                .reshape((b, kv, g, s, t))?
                .broadcast_add(mask)?
                .reshape((b, kv, g * s, t))?,
            None => scores,
        };
        let probs = if at.grad {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let y = probs.matmul(&v)?; // (b, kv, g·s, d)
        let y = y
            .reshape((b, h, s, d))?
            .transpose(1, 2)?
            .reshape((b, s, h * d))?;
        attn.o.forward(&y, lora, at.decode)
    }
}

/// What the new positions of one forward pass share across layers.
struct Positions {
    /// Rotary tables for the new positions, `(s, d/2)`.
    cos: Tensor,
    sin: Tensor,
    /// The causal mask, `(s, t)`; none for a single position.
    mask: Option<Tensor>,
    /// Use operations that carry gradients.
    grad: bool,
    /// A quantized decode step: run projections on their 8-bit copies where there are some.
    decode: bool,
}

/// Sequences at most this many use the 8-bit copies in a decode step: one step reads every
/// weight once, so the quarter-size copies save most of its time, while a bigger batch
/// spreads the f32 read over its rows and runs faster on f32 products.
const QUANTIZED_DECODE_MAX_BATCH: usize = 4;

impl Llama {
    /// Whether running `tokens` `(b, s)` after `cache` uses the 8-bit copies: quantized decode
    /// is on, and it is a decode step of one new position of at most
    /// [`QUANTIZED_DECODE_MAX_BATCH`] sequences after a prefill.
    fn quantized_step(&self, tokens: &Tensor, cache: &KvCache) -> Result<bool> {
        let (b, s) = tokens.dims2()?;
        Ok(self.quantized_decode && s == 1 && b <= QUANTIZED_DECODE_MAX_BATCH && !cache.is_empty())
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

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, grad: bool) -> Result<Tensor> {
    Ok(if grad {
        candle_nn::ops::rms_norm_slow(x, weight, eps as f32)?
    } else {
        candle_nn::ops::rms_norm(x, weight, eps as f32)?
    })
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
