//! Loading weights into f32 tensors under Hugging Face's names, from GGUF (any quantization
//! candle can dequantize: the k-quants and the legacy types) or from safetensors.
//!
//! One naming and one layout for every source: GGUF files from llama.cpp store the query and
//! key projections of Llama models with their rows permuted for interleaved rotary embeddings,
//! so they are permuted back here. The transformer then always applies the rotate-half
//! embedding of the Hugging Face implementation, and a PEFT adapter trained there applies to
//! weights from either source unchanged.

use crate::{config::Config, ModelError};
use candle_core::{quantized::gguf_file, Device, Tensor};
use std::{collections::HashMap, path::Path};

/// A model's tensors by Hugging Face name (`model.layers.0.self_attn.q_proj.weight`, …).
pub type Weights = HashMap<String, Tensor>;

/// A GGUF file's metadata and dequantized tensors.
pub struct GgufModel {
    pub metadata: HashMap<String, gguf_file::Value>,
    pub config: Config,
    pub weights: Weights,
}

/// Reads a GGUF file and dequantizes every tensor to f32.
pub fn load_gguf(path: &Path) -> Result<GgufModel, ModelError> {
    let io = |e: std::io::Error| ModelError::Io(path.display().to_string(), e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| ModelError::Format(format!("{}: not a GGUF file: {e}", path.display())))?;
    let mut config = Config::from_gguf(&content.metadata)?;
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    let mut weights = Weights::new();
    for name in content.tensor_infos.keys() {
        let tensor = content
            .tensor(&mut file, name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .map_err(|e| ModelError::Format(format!("tensor {name}: {e}")))?;
        let Some(hf) = hf_name(name) else {
            // Tensors the transformer does not use (e.g. precomputed rope frequencies).
            continue;
        };
        let tensor = if arch == "llama" && hf.ends_with("q_proj.weight") {
            unpermute(&tensor, config.num_attention_heads)?
        } else if arch == "llama" && hf.ends_with("k_proj.weight") {
            unpermute(&tensor, config.kv_heads())?
        } else {
            tensor
        };
        weights.insert(hf, tensor);
    }
    config.tie_word_embeddings = !weights.contains_key("lm_head.weight");
    Ok(GgufModel {
        metadata: content.metadata,
        config,
        weights,
    })
}

/// A tensor as a GGUF file stores it: llama.cpp's Q4_1 and Q8_0 blocks kept as they are
/// (rows of whole blocks along the input dimension), everything else as f32.
#[derive(Debug, Clone)]
pub enum RawTensor {
    /// Blocks of 32: f16 scale, f16 minimum, 16 bytes of nibbles (value = d·q + m).
    Q4_1 {
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    },
    /// Blocks of 32: f16 scale, 32 signed bytes (value = d·q).
    Q8_0 {
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    },
    F32 {
        shape: Vec<usize>,
        values: Vec<f32>,
    },
}

/// A GGUF file read for serving: metadata, config, and every tensor by Hugging Face name with
/// its quantized blocks intact (the query and key rows of Llama files back in Hugging Face's
/// order, as [`load_gguf`] puts them).
pub struct RawGguf {
    pub metadata: HashMap<String, gguf_file::Value>,
    pub config: Config,
    pub tensors: HashMap<String, RawTensor>,
}

/// A GGUF file's metadata (its tokenizer, chat template and config), reading no tensor.
pub fn read_gguf_metadata(path: &Path) -> Result<HashMap<String, gguf_file::Value>, ModelError> {
    let io = |e: std::io::Error| ModelError::Io(path.display().to_string(), e);
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| ModelError::Format(format!("{}: not a GGUF file: {e}", path.display())))?;
    Ok(content.metadata)
}

/// Reads a GGUF file keeping its Q4_1 and Q8_0 blocks.
pub fn read_gguf_raw(path: &Path) -> Result<RawGguf, ModelError> {
    use candle_core::quantized::GgmlDType;
    let io = |e: std::io::Error| ModelError::Io(path.display().to_string(), e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| ModelError::Format(format!("{}: not a GGUF file: {e}", path.display())))?;
    let mut config = Config::from_gguf(&content.metadata)?;
    let llama = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .is_none_or(|a| a == "llama");
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else {
            continue;
        };
        let q = content
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| ModelError::Format(format!("tensor {name}: {e}")))?;
        let heads = if llama && hf.ends_with("q_proj.weight") {
            Some(config.num_attention_heads)
        } else if llama && hf.ends_with("k_proj.weight") {
            Some(config.kv_heads())
        } else {
            None
        };
        let dims = q.shape().dims().to_vec();
        let raw = match (q.dtype(), dims.as_slice()) {
            (GgmlDType::Q4_1 | GgmlDType::Q8_0, &[rows, cols]) => {
                let mut bytes = q.data().map_err(fmt)?.into_owned();
                if let Some(heads) = heads {
                    bytes = unpermute_rows(&bytes, rows, heads);
                }
                if q.dtype() == GgmlDType::Q4_1 {
                    RawTensor::Q4_1 { rows, cols, bytes }
                } else {
                    RawTensor::Q8_0 { rows, cols, bytes }
                }
            }
            _ => {
                let t = q.dequantize(&Device::Cpu).map_err(fmt)?;
                let t = match heads {
                    Some(h) => unpermute(&t, h)?,
                    None => t,
                };
                RawTensor::F32 {
                    shape: dims,
                    values: t.flatten_all().and_then(|t| t.to_vec1()).map_err(fmt)?,
                }
            }
        };
        tensors.insert(hf, raw);
    }
    config.tie_word_embeddings = !tensors.contains_key("lm_head.weight");
    Ok(RawGguf {
        metadata: content.metadata,
        config,
        tensors,
    })
}

/// [`unpermute`] on rows of raw bytes: row `r` of the result is llama.cpp's row `(h, j, i)`
/// for Hugging Face's `(h, i, j)`, heads of `dim` rows, `i` in 0..2, `j` in 0..dim/2.
fn unpermute_rows(bytes: &[u8], rows: usize, heads: usize) -> Vec<u8> {
    let width = bytes.len() / rows;
    let dim = rows / heads;
    let mut out = Vec::with_capacity(bytes.len());
    for h in 0..heads {
        for i in 0..2 {
            for j in 0..dim / 2 {
                let src = h * dim + j * 2 + i;
                out.extend_from_slice(&bytes[src * width..][..width]);
            }
        }
    }
    out
}

/// Reads a Hugging Face model directory: `config.json` and `*.safetensors`.
pub fn load_safetensors_dir(dir: &Path) -> Result<(Config, Weights), ModelError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| ModelError::Io(p, e)
    };
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let config = Config::from_hf_json(&text)?;
    let mut weights = Weights::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::Format(format!(
            "{} holds no .safetensors file",
            dir.display()
        )));
    }
    for file in files {
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| ModelError::Format(format!("{}: {e}", file.display())))?;
        for (name, tensor) in tensors {
            let tensor = tensor
                .to_dtype(candle_core::DType::F32)
                .map_err(|e| ModelError::Format(format!("{name}: {e}")))?;
            weights.insert(name, tensor);
        }
    }
    Ok((config, weights))
}

/// Writes a Hugging Face model directory: `config.json` and `model.safetensors`.
pub fn save_safetensors_dir(
    dir: &Path,
    config: &Config,
    weights: &Weights,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::Io(dir.display().to_string(), e))?;
    candle_core::safetensors::save(weights, dir.join("model.safetensors"))
        .map_err(|e| ModelError::Format(format!("{}: {e}", dir.display())))?;
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_hf_json())
        .map_err(|e| ModelError::Io(path.display().to_string(), e))
}

/// llama.cpp's tensor names mapped to Hugging Face's.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = part.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's row permutation of a query or key projection `(heads·dim, in)`: its rows
/// hold each head's rotary pairs interleaved, `(heads, dim/2, 2)`; Hugging Face keeps the
/// halves apart, `(heads, 2, dim/2)`.
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor, ModelError> {
    let (rows, cols) = w.dims2().map_err(fmt)?;
    let dim = rows / heads;
    w.reshape((heads, dim / 2, 2, cols))
        .and_then(|t| t.transpose(1, 2))
        .and_then(|t| t.reshape((rows, cols)))
        .and_then(|t| t.contiguous())
        .map_err(fmt)
}

fn fmt(e: candle_core::Error) -> ModelError {
    ModelError::Format(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.ffn_down.weight").as_deref(),
            Some("model.layers.0.mlp.down_proj.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn raw_rows_unpermute_like_tensors() {
        // Two heads of width 4, one byte per row.
        let gguf: Vec<u8> = (0..8).collect();
        let t = Tensor::new(
            gguf.iter().map(|&b| b as f32).collect::<Vec<_>>(),
            &Device::Cpu,
        )
        .unwrap()
        .reshape((8, 1))
        .unwrap();
        let want: Vec<u8> = unpermute(&t, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v as u8)
            .collect();
        assert_eq!(unpermute_rows(&gguf, 8, 2), want);
    }

    #[test]
    fn unpermute_inverts_the_interleaving_permutation() {
        // One head of width 4 over 1 input: HF rows [a0 a1 | b0 b1] (halves), llama.cpp rows
        // [a0 b0 a1 b1] (pairs interleaved).
        let gguf = Tensor::new(&[[0f32], [2.], [1.], [3.]], &Device::Cpu).unwrap();
        let hf = unpermute(&gguf, 1).unwrap();
        let rows: Vec<f32> = hf.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(rows, vec![0., 1., 2., 3.]);
    }
}
