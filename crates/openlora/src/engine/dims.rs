//! The shape of the served base model, and the projections an adapter may target.

use openledger_model::config::Config;

/// The widths the serving pass needs, from the model's config.
#[derive(Debug, Clone)]
pub(crate) struct Dims {
    /// Hidden size `e`.
    pub e: usize,
    /// Query heads `h`, key/value heads `kv`, head width `d`.
    pub h: usize,
    pub kv: usize,
    pub d: usize,
    pub inter: usize,
    pub vocab: usize,
    pub layers: usize,
    pub eps: f32,
    pub max_positions: usize,
}

impl Dims {
    pub fn new(c: &Config) -> Self {
        Self {
            e: c.hidden_size,
            h: c.num_attention_heads,
            kv: c.kv_heads(),
            d: c.head_dim(),
            inter: c.intermediate_size,
            vocab: c.vocab_size,
            layers: c.num_hidden_layers,
            eps: c.rms_norm_eps as f32,
            max_positions: c.max_position_embeddings,
        }
    }

    /// Width of the fused q|k|v output.
    pub fn qkv(&self) -> usize {
        (self.h + 2 * self.kv) * self.d
    }

    /// `(in, out)` of a projection.
    pub fn shape(&self, kind: Kind) -> (usize, usize) {
        match kind {
            Kind::Q => (self.e, self.h * self.d),
            Kind::K | Kind::V => (self.e, self.kv * self.d),
            Kind::O => (self.h * self.d, self.e),
            Kind::Gate | Kind::Up => (self.e, self.inter),
            Kind::Down => (self.inter, self.e),
        }
    }
}

/// The seven adaptable projections of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Q,
        Kind::K,
        Kind::V,
        Kind::O,
        Kind::Gate,
        Kind::Up,
        Kind::Down,
    ];

    /// The module path under a layer, as Hugging Face and PEFT name it.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Q => "self_attn.q_proj",
            Kind::K => "self_attn.k_proj",
            Kind::V => "self_attn.v_proj",
            Kind::O => "self_attn.o_proj",
            Kind::Gate => "mlp.gate_proj",
            Kind::Up => "mlp.up_proj",
            Kind::Down => "mlp.down_proj",
        }
    }

    /// `model.layers.3.self_attn.q_proj` to `(3, Q)`.
    pub fn parse(module: &str) -> Option<(usize, Kind)> {
        let rest = module.strip_prefix("model.layers.")?;
        let (layer, path) = rest.split_once('.')?;
        let kind = Kind::ALL.into_iter().find(|k| k.path() == path)?;
        Some((layer.parse().ok()?, kind))
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
