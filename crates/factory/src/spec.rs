//! What a job asks for: OpenAI's create-job body with this system's extensions, and the
//! training spec it resolves to, every `"auto"` replaced by its documented default.
//!
//! Extensions sit where OpenAI puts method options: `training_file` may name datanet versions
//! (`datanet:<id>@<version>`, or `datanet:<id>` for its latest version; several separated by
//! commas or given as an array), and `method.supervised.hyperparameters` also takes the LoRA
//! and training settings below.

use crate::FactoryError;
use openledger_model::lora::TARGETS;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The body of `POST /v1/fine_tuning/jobs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    pub model: String,
    pub training_file: Value,
    #[serde(default)]
    pub validation_file: Option<String>,
    /// OpenAI's older place for hyperparameters; `method` wins where both name one.
    #[serde(default)]
    pub hyperparameters: Option<Map<String, Value>>,
    #[serde(default)]
    pub method: Option<Value>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub integrations: Option<Vec<Value>>,
}

/// Where training data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// A published version of a datanet (`None`: the latest when the job is validated).
    Datanet { datanet: u64, version: Option<u64> },
    /// A file uploaded with `POST /v1/files`.
    File { id: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Datanet {
                datanet,
                version: Some(v),
            } => write!(f, "datanet:{datanet}@{v}"),
            Source::Datanet {
                datanet,
                version: None,
            } => write!(f, "datanet:{datanet}"),
            Source::File { id } => f.write_str(id),
        }
    }
}

/// The settings of a run, every one resolved. Step counts that depend on how many examples
/// there are (`warmup_steps`, `eval_interval`) stay `None` for "auto" until validation counts
/// them ([`Plan`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub n_epochs: u32,
    pub batch_size: usize,
    /// The base learning rate; the run uses `learning_rate × learning_rate_multiplier`.
    pub learning_rate: f64,
    pub learning_rate_multiplier: f64,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub lora_target_modules: Vec<String>,
    /// Examples longer than this many tokens are cut to it.
    pub cutoff_length: usize,
    pub warmup_steps: Option<usize>,
    pub gradient_accumulation_steps: usize,
    /// Share of the examples held out for evaluation.
    pub eval_split: f64,
    pub eval_interval: Option<usize>,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Held-out prompts answered greedily for ROUGE-L at the end.
    pub eval_samples: usize,
    /// Held-out prompts answered by the base model and the adapter side by side.
    pub compare_samples: usize,
    /// The most tokens a greedy evaluation answer may have.
    pub eval_max_tokens: usize,
    pub seed: u64,
}

/// The defaults `"auto"` resolves to (README, "Fine-tuning").
pub mod defaults {
    pub const N_EPOCHS: u32 = 3;
    pub const BATCH_SIZE: usize = 4;
    pub const LEARNING_RATE: f64 = 2e-3;
    pub const LORA_RANK: usize = 8;
    pub const LORA_ALPHA: f64 = 16.0;
    pub const LORA_DROPOUT: f64 = 0.0;
    pub const TARGETS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "o_proj"];
    pub const CUTOFF_LENGTH: usize = 1024;
    /// Warmup is this share of the run's steps, rounded up.
    pub const WARMUP_RATIO: f64 = 0.05;
    pub const EVAL_SPLIT: f64 = 0.1;
    /// Evaluation (and a checkpoint) this many times over the run…
    pub const EVALS_PER_RUN: usize = 10;
    /// …but no more often than once per this many training examples: an interval's
    /// evaluation reads at least one held-out example, and a forward pass costs about half of
    /// a training example, so evaluating a short run ten times would cost it several percent.
    pub const MIN_EXAMPLES_PER_EVAL: usize = 32;
    pub const WEIGHT_DECAY: f64 = 0.0;
    pub const MAX_GRAD_NORM: f64 = 1.0;
    pub const EVAL_SAMPLES: usize = 8;
    pub const COMPARE_SAMPLES: usize = 3;
    pub const EVAL_MAX_TOKENS: usize = 64;
}

/// A job's resolved request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSpec {
    pub model: String,
    pub sources: Vec<Source>,
    pub validation_file: Option<String>,
    pub suffix: Option<String>,
    pub hyperparameters: Hyperparameters,
    pub metadata: BTreeMap<String, String>,
}

/// The step counts of a run, fixed once validation knows how many examples it trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub train_examples: usize,
    pub eval_examples: usize,
    pub total_steps: usize,
    pub warmup_steps: usize,
    pub eval_interval: usize,
}

fn bad(param: &str, message: impl Into<String>) -> FactoryError {
    FactoryError::InvalidRequest {
        param: Some(param.to_string()),
        message: message.into(),
    }
}

/// Parses `training_file`: `datanet:<id>[@<version>]` or a file id, one or several.
pub fn parse_sources(value: &Value) -> Result<Vec<Source>, FactoryError> {
    let names: Vec<&str> = match value {
        Value::String(s) => s.split(',').map(str::trim).collect(),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| bad("training_file", "every training file must be a string"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(bad(
                "training_file",
                "training_file must be a string or an array of strings",
            ))
        }
    };
    if names.is_empty() || names.iter().any(|n| n.is_empty()) {
        return Err(bad("training_file", "a training file name is empty"));
    }
    if names.len() > 16 {
        return Err(bad("training_file", "at most 16 training files per job"));
    }
    let mut out = Vec::new();
    for name in names {
        let source = if let Some(rest) = name.strip_prefix("datanet:") {
            let (id, version) = match rest.split_once('@') {
                Some((id, v)) => (id, Some(v)),
                None => (rest, None),
            };
            let number = |text: &str| {
                text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    bad(
                        "training_file",
                        format!("{name:?} is not datanet:<id>@<version> with positive numbers"),
                    )
                })
            };
            Source::Datanet {
                datanet: number(id)?,
                version: version.map(number).transpose()?,
            }
        } else if name.starts_with("file-") {
            Source::File {
                id: name.to_string(),
            }
        } else {
            return Err(bad(
                "training_file",
                format!("{name:?} is neither a file id (file-…) nor datanet:<id>@<version>"),
            ));
        };
        if out.contains(&source) {
            return Err(bad("training_file", format!("{name} is named twice")));
        }
        out.push(source);
    }
    Ok(out)
}

/// The hyperparameters object of `method.supervised` (or the top-level one).
fn hyperparameters_of(request: &CreateJob) -> Result<Map<String, Value>, FactoryError> {
    let mut merged = request.hyperparameters.clone().unwrap_or_default();
    if let Some(method) = &request.method {
        let kind = method
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("supervised");
        if kind != "supervised" {
            return Err(bad(
                "method.type",
                format!("method {kind:?} is not supported; use \"supervised\""),
            ));
        }
        if let Some(h) = method.pointer("/supervised/hyperparameters") {
            let h = h.as_object().ok_or_else(|| {
                bad(
                    "method.supervised.hyperparameters",
                    "hyperparameters must be an object",
                )
            })?;
            merged.extend(h.clone());
        }
    }
    Ok(merged)
}

/// One hyperparameter: absent or `"auto"` gives `None`.
fn get<T: serde::de::DeserializeOwned>(
    h: &Map<String, Value>,
    name: &str,
) -> Result<Option<T>, FactoryError> {
    match h.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "auto" => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| {
            bad(
                &format!("hyperparameters.{name}"),
                format!("{name} = {v} has the wrong type"),
            )
        }),
    }
}

/// Checks `value` lies in `range`, naming the hyperparameter.
fn within<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: T,
    low: T,
    high: T,
) -> Result<T, FactoryError> {
    if value < low || value > high {
        return Err(bad(
            &format!("hyperparameters.{name}"),
            format!("{name} = {value} must be between {low} and {high}"),
        ));
    }
    Ok(value)
}

const KNOWN: [&str; 19] = [
    "n_epochs",
    "batch_size",
    "learning_rate",
    "learning_rate_multiplier",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "cutoff_length",
    "warmup_steps",
    "gradient_accumulation_steps",
    "eval_split",
    "eval_interval",
    "weight_decay",
    "max_grad_norm",
    "eval_samples",
    "compare_samples",
    "eval_max_tokens",
    "seed",
];

/// Resolves the hyperparameters, refusing unknown names and values out of range.
fn resolve_hyperparameters(
    h: &Map<String, Value>,
    seed: u64,
) -> Result<Hyperparameters, FactoryError> {
    if let Some(name) = h.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(
            &format!("hyperparameters.{name}"),
            format!(
                "unknown hyperparameter {name:?}; known: {}",
                KNOWN.join(", ")
            ),
        ));
    }
    use defaults as d;
    let targets: Vec<String> =
        get(h, "lora_target_modules")?.unwrap_or_else(|| d::TARGETS.map(String::from).to_vec());
    if targets.is_empty() {
        return Err(bad(
            "hyperparameters.lora_target_modules",
            "name at least one module",
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        if !TARGETS.contains(&t.as_str()) || targets[..i].contains(t) {
            return Err(bad(
                "hyperparameters.lora_target_modules",
                format!("{t:?} is not one of {TARGETS:?}, or is named twice"),
            ));
        }
    }
    let n_epochs = within(
        "n_epochs",
        get(h, "n_epochs")?.unwrap_or(d::N_EPOCHS),
        1,
        100,
    )?;
    let hyper = Hyperparameters {
        n_epochs,
        batch_size: within(
            "batch_size",
            get(h, "batch_size")?.unwrap_or(d::BATCH_SIZE),
            1,
            256,
        )?,
        learning_rate: within(
            "learning_rate",
            get(h, "learning_rate")?.unwrap_or(d::LEARNING_RATE),
            1e-9,
            1.0,
        )?,
        learning_rate_multiplier: within(
            "learning_rate_multiplier",
            get(h, "learning_rate_multiplier")?.unwrap_or(1.0),
            1e-6,
            10.0,
        )?,
        lora_rank: within(
            "lora_rank",
            get(h, "lora_rank")?.unwrap_or(d::LORA_RANK),
            1,
            256,
        )?,
        lora_alpha: within(
            "lora_alpha",
            get(h, "lora_alpha")?.unwrap_or(d::LORA_ALPHA),
            1e-6,
            4096.0,
        )?,
        lora_dropout: within(
            "lora_dropout",
            get(h, "lora_dropout")?.unwrap_or(d::LORA_DROPOUT),
            0.0,
            0.9,
        )?,
        lora_target_modules: targets,
        cutoff_length: within(
            "cutoff_length",
            get(h, "cutoff_length")?.unwrap_or(d::CUTOFF_LENGTH),
            2,
            1 << 16,
        )?,
        warmup_steps: get::<usize>(h, "warmup_steps")?
            .map(|w| within("warmup_steps", w, 0, 1 << 24))
            .transpose()?,
        gradient_accumulation_steps: within(
            "gradient_accumulation_steps",
            get(h, "gradient_accumulation_steps")?.unwrap_or(1),
            1,
            1024,
        )?,
        eval_split: within(
            "eval_split",
            get(h, "eval_split")?.unwrap_or(d::EVAL_SPLIT),
            0.0,
            0.5,
        )?,
        eval_interval: get::<usize>(h, "eval_interval")?
            .map(|e| within("eval_interval", e, 1, 1 << 24))
            .transpose()?,
        weight_decay: within(
            "weight_decay",
            get(h, "weight_decay")?.unwrap_or(d::WEIGHT_DECAY),
            0.0,
            1.0,
        )?,
        max_grad_norm: within(
            "max_grad_norm",
            get(h, "max_grad_norm")?.unwrap_or(d::MAX_GRAD_NORM),
            0.0,
            1e6,
        )?,
        eval_samples: within(
            "eval_samples",
            get(h, "eval_samples")?.unwrap_or(d::EVAL_SAMPLES),
            0,
            256,
        )?,
        compare_samples: within(
            "compare_samples",
            get(h, "compare_samples")?.unwrap_or(d::COMPARE_SAMPLES),
            0,
            16,
        )?,
        eval_max_tokens: within(
            "eval_max_tokens",
            get(h, "eval_max_tokens")?.unwrap_or(d::EVAL_MAX_TOKENS),
            1,
            1024,
        )?,
        seed: get(h, "seed")?.unwrap_or(seed),
    };
    Ok(hyper)
}

/// Checks a request and resolves it against the base models the factory knows.
pub fn resolve(
    request: &CreateJob,
    known_models: &[String],
    default_seed: u64,
) -> Result<TrainingSpec, FactoryError> {
    if !known_models.contains(&request.model) {
        return Err(bad(
            "model",
            format!(
                "model {:?} is not a base model this factory trains; it has: {}",
                request.model,
                known_models.join(", ")
            ),
        ));
    }
    if request.integrations.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(bad("integrations", "integrations are not supported"));
    }
    if let Some(suffix) = &request.suffix {
        let ok = !suffix.is_empty()
            && suffix.len() <= 64
            && suffix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(bad(
                "suffix",
                "suffix must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
    }
    let metadata = request.metadata.clone().unwrap_or_default();
    if metadata.len() > 16 || metadata.iter().any(|(k, v)| k.len() > 64 || v.len() > 512) {
        return Err(bad(
            "metadata",
            "metadata holds at most 16 pairs, keys up to 64 and values up to 512 characters",
        ));
    }
    if let Some(file) = &request.validation_file {
        if !file.starts_with("file-") {
            return Err(bad(
                "validation_file",
                format!("{file:?} is not a file id (file-…)"),
            ));
        }
    }
    let sources = parse_sources(&request.training_file)?;
    let hyper = hyperparameters_of(request)?;
    let hyperparameters = resolve_hyperparameters(&hyper, request.seed.unwrap_or(default_seed))?;
    Ok(TrainingSpec {
        model: request.model.clone(),
        sources,
        validation_file: request.validation_file.clone(),
        suffix: request.suffix.clone(),
        hyperparameters,
        metadata,
    })
}

impl Hyperparameters {
    /// The step counts for `examples` usable examples (held-out ones taken out first).
    pub fn plan(&self, examples: usize, eval_from_file: Option<usize>) -> Plan {
        let eval_examples = match eval_from_file {
            Some(n) => n,
            // At least one example always trains.
            None => ((examples as f64 * self.eval_split).round() as usize)
                .min(examples.saturating_sub(1)),
        };
        let train_examples = if eval_from_file.is_some() {
            examples
        } else {
            examples - eval_examples
        };
        let per_step = self.batch_size * self.gradient_accumulation_steps;
        let total_steps = (train_examples * self.n_epochs as usize)
            .div_ceil(per_step)
            .max(1);
        let warmup_steps = self
            .warmup_steps
            .unwrap_or_else(|| (total_steps as f64 * defaults::WARMUP_RATIO).ceil() as usize);
        let eval_interval = self.eval_interval.unwrap_or_else(|| {
            total_steps
                .div_ceil(defaults::EVALS_PER_RUN)
                .max(defaults::MIN_EXAMPLES_PER_EVAL.div_ceil(per_step))
                .max(1)
        });
        Plan {
            train_examples,
            eval_examples,
            total_steps,
            warmup_steps: warmup_steps.min(total_steps),
            eval_interval,
        }
    }

    /// The learning rate the run uses.
    pub fn effective_learning_rate(&self) -> f64 {
        self.learning_rate * self.learning_rate_multiplier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> CreateJob {
        serde_json::from_value(body).unwrap()
    }

    fn models() -> Vec<String> {
        vec!["SmolLM2-135M-Instruct".into()]
    }

    #[test]
    fn auto_resolves_to_the_documented_defaults() {
        let spec = resolve(
            &request(
                json!({"model": "SmolLM2-135M-Instruct", "training_file": "datanet:1@2",
                "method": {"type": "supervised", "supervised": {"hyperparameters":
                    {"n_epochs": "auto", "lora_rank": 16}}}}),
            ),
            &models(),
            7,
        )
        .unwrap();
        let h = &spec.hyperparameters;
        assert_eq!(h.n_epochs, defaults::N_EPOCHS);
        assert_eq!(h.lora_rank, 16);
        assert_eq!(h.lora_alpha, defaults::LORA_ALPHA);
        assert_eq!(h.seed, 7);
        assert_eq!(
            spec.sources,
            vec![Source::Datanet {
                datanet: 1,
                version: Some(2)
            }]
        );
        // 90 examples, 10% held out: 81 train, 3 epochs of batches of 4 → 61 steps.
        let plan = h.plan(90, None);
        assert_eq!((plan.train_examples, plan.eval_examples), (81, 9));
        assert_eq!(plan.total_steps, 61);
        assert_eq!(plan.warmup_steps, 4);
        // A tenth of the run would be 7 steps (28 examples), under the 32-example floor.
        assert_eq!(plan.eval_interval, 8);
        // A long run evaluates a tenth of the way through.
        assert_eq!(h.plan(9000, None).eval_interval, 608);
    }

    #[test]
    fn several_sources_and_bad_names_are_told_apart() {
        let sources = parse_sources(&json!("datanet:1@2, datanet:3 ,file-9")).unwrap();
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[1].to_string(), "datanet:3");
        for (value, expected) in [
            (json!("datanet:0@1"), "positive numbers"),
            (json!("datanet:x"), "positive numbers"),
            (json!("s3://bucket"), "neither a file id"),
            (json!("datanet:1@1,datanet:1@1"), "named twice"),
            (json!(""), "empty"),
            (json!(7), "string or an array"),
        ] {
            let err = parse_sources(&value).unwrap_err().to_string();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    #[test]
    fn bad_hyperparameters_name_the_parameter() {
        for (h, param) in [
            (json!({"lora_rank": 0}), "hyperparameters.lora_rank"),
            (json!({"lora_dropout": 1.5}), "hyperparameters.lora_dropout"),
            (json!({"batch_size": "four"}), "hyperparameters.batch_size"),
            (
                json!({"lora_target_modules": ["lm_head"]}),
                "hyperparameters.lora_target_modules",
            ),
            (json!({"learning_rat": 0.1}), "hyperparameters.learning_rat"),
        ] {
            let body = json!({"model": "SmolLM2-135M-Instruct", "training_file": "file-1",
                "method": {"supervised": {"hyperparameters": h}}});
            match resolve(&request(body), &models(), 0) {
                Err(FactoryError::InvalidRequest { param: Some(p), .. }) => assert_eq!(p, param),
                other => panic!("{h}: {other:?}"),
            }
        }
        let unknown_model = json!({"model": "gpt-4o", "training_file": "file-1"});
        assert!(resolve(&request(unknown_model), &models(), 0)
            .unwrap_err()
            .to_string()
            .contains("not a base model"));
    }
}
