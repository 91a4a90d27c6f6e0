//! LoRA adapters in PEFT's file layout (`adapter_config.json` + `adapter_model.safetensors`,
//! tensors named `base_model.model.<module>.lora_A.weight` `(r, in)` and `lora_B.weight`
//! `(out, r)`), so adapters move both ways between this engine and Python's PEFT.
//!
//! An adapter adds `scale · B A x` to each projection it targets, `scale = alpha / r`.

use crate::ModelError;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, path::Path};

/// The projections an adapter may target, by PEFT's short names.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// `adapter_config.json`: the fields this engine reads and writes (PEFT ignores none of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    #[serde(default = "lora_type")]
    pub peft_type: String,
    #[serde(default = "causal_lm")]
    pub task_type: String,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    #[serde(default = "no_bias")]
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Rank-stabilised LoRA: scale `alpha / √r` instead of `alpha / r`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Weight-decomposed LoRA (DoRA), which this engine does not implement: refused.
    #[serde(default)]
    pub use_dora: bool,
    /// PEFT's per-module ranks and alphas; only empty maps (one rank, one alpha) are supported.
    #[serde(default)]
    pub rank_pattern: HashMap<String, serde_json::Value>,
    #[serde(default)]
    pub alpha_pattern: HashMap<String, serde_json::Value>,
}

fn lora_type() -> String {
    "LORA".into()
}

fn causal_lm() -> String {
    "CAUSAL_LM".into()
}

fn no_bias() -> String {
    "none".into()
}

impl LoraConfig {
    /// A config for rank `r` and scale numerator `alpha` on `targets` (PEFT short names).
    pub fn new(r: usize, lora_alpha: f64, targets: &[&str]) -> Self {
        Self {
            peft_type: lora_type(),
            task_type: causal_lm(),
            r,
            lora_alpha,
            lora_dropout: 0.0,
            target_modules: targets.iter().map(|t| t.to_string()).collect(),
            bias: no_bias(),
            fan_in_fan_out: false,
            base_model_name_or_path: None,
            use_rslora: false,
            use_dora: false,
            rank_pattern: HashMap::new(),
            alpha_pattern: HashMap::new(),
        }
    }

    /// `alpha / r` (`alpha / √r` with `use_rslora`).
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Refuses configs this engine cannot apply, naming the problem.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |why: String| Err(ModelError::Adapter(why));
        if self.peft_type != "LORA" {
            return bad(format!("peft_type {:?} is not LORA", self.peft_type));
        }
        if self.r == 0 {
            return bad("rank r must be at least 1".into());
        }
        if self.bias != "none" || self.fan_in_fan_out {
            return bad("only bias \"none\" without fan_in_fan_out is supported".into());
        }
        if self.use_dora {
            return bad("DoRA (use_dora) is not supported".into());
        }
        if !self.rank_pattern.is_empty() || !self.alpha_pattern.is_empty() {
            return bad(
                "per-module ranks or alphas (rank_pattern, alpha_pattern) are not supported".into(),
            );
        }
        if let Some(t) = self
            .target_modules
            .iter()
            .find(|t| !TARGETS.contains(&t.as_str()))
        {
            return bad(format!("target module {t:?} is not one of {TARGETS:?}"));
        }
        Ok(())
    }
}

/// One adapted projection: `a` `(r, in)`, `b` `(out, r)`.
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: Tensor,
    pub b: Tensor,
}

/// A LoRA adapter: its config and the pairs by module path
/// (`model.layers.3.self_attn.q_proj`).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub config: LoraConfig,
    pub pairs: HashMap<String, LoraPair>,
}

const PREFIX: &str = "base_model.model.";

impl LoraAdapter {
    /// Reads a PEFT adapter directory.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let config_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| ModelError::Io(config_path.display().to_string(), e))?;
        let config: LoraConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::Adapter(format!("{}: {e}", config_path.display())))?;
        config.validate()?;
        let weights_path = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| ModelError::Adapter(format!("{}: {e}", weights_path.display())))?;
        let mut halves: HashMap<String, (Option<Tensor>, Option<Tensor>)> = HashMap::new();
        for (name, tensor) in tensors {
            let tensor = tensor.to_dtype(DType::F32)?;
            let rest = name.strip_prefix(PREFIX).unwrap_or(&name);
            let (module, is_a) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
                (m, true)
            } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
                (m, false)
            } else {
                return Err(ModelError::Adapter(format!(
                    "unexpected tensor {name} (only LoRA A/B weights are supported)"
                )));
            };
            let entry = halves.entry(module.to_string()).or_default();
            if is_a {
                entry.0 = Some(tensor);
            } else {
                entry.1 = Some(tensor);
            }
        }
        let mut pairs = HashMap::new();
        for (module, (a, b)) in halves {
            let (Some(a), Some(b)) = (a, b) else {
                return Err(ModelError::Adapter(format!(
                    "{module} lacks lora_A or lora_B"
                )));
            };
            let (r_a, _) = a.dims2()?;
            let (_, r_b) = b.dims2()?;
            if r_a != config.r || r_b != config.r {
                return Err(ModelError::Adapter(format!(
                    "{module} has rank {r_a}/{r_b}, the config says {}",
                    config.r
                )));
            }
            pairs.insert(module, LoraPair { a, b });
        }
        Ok(Self { config, pairs })
    }

    /// Writes the adapter as a PEFT directory.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::Io(dir.display().to_string(), e))?;
        let mut tensors = HashMap::new();
        for (module, pair) in &self.pairs {
            tensors.insert(format!("{PREFIX}{module}.lora_A.weight"), pair.a.clone());
            tensors.insert(format!("{PREFIX}{module}.lora_B.weight"), pair.b.clone());
        }
        let weights_path = dir.join("adapter_model.safetensors");
        candle_core::safetensors::save(&tensors, &weights_path)?;
        let config_path = dir.join("adapter_config.json");
        let text = serde_json::to_string_pretty(&self.config).expect("the config serializes");
        std::fs::write(&config_path, text)
            .map_err(|e| ModelError::Io(config_path.display().to_string(), e))
    }

    /// The pair adapting `module`, if the adapter targets it.
    pub fn pair(&self, module: &str) -> Option<&LoraPair> {
        self.pairs.get(module)
    }

    /// `scale · B A`, the change the adapter makes to `module`'s weight `(out, in)`.
    pub fn delta(&self, module: &str) -> Result<Option<Tensor>, ModelError> {
        match self.pairs.get(module) {
            Some(p) => Ok(Some((p.b.matmul(&p.a)? * self.config.scale())?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LoraConfig;

    #[test]
    fn the_scale_is_alpha_over_r_or_over_its_root_with_rslora() {
        let mut config = LoraConfig::new(4, 8.0, &["q_proj"]);
        assert_eq!(config.scale(), 2.0);
        config.use_rslora = true;
        assert_eq!(config.scale(), 4.0);
        // PEFT's own file, as PEFT writes it, reads back with the flag.
        let text = r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": true,
            "target_modules": ["q_proj"], "rank_pattern": {}, "alpha_pattern": {}}"#;
        let read: LoraConfig = serde_json::from_str(text).unwrap();
        assert_eq!(read.scale(), 4.0);
        read.validate().unwrap();
    }
}
