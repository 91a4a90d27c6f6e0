//! A byte-level BPE tokenizer built from a GGUF file's own metadata, matching Hugging Face
//! `tokenizers` id for id on the default model (SmolLM2-135M-Instruct); or, for a Hugging Face
//! model directory, its `tokenizer.json` through the `tokenizers` crate (`hf`), which also
//! writes a GGUF tokenizer out as `tokenizer.json` for merged models.
//!
//! Encoding runs as HF's pipeline does for SmolLM2's `tokenizer.json`:
//!
//! 1. control and user-defined tokens (`<|im_start|>`, `<|im_end|>`, ...; GGUF `token_type` 3 and
//!    4) are found literally in the text, leftmost-longest, and become their own ids;
//! 2. the text between them is pre-tokenized (`pretokenize`: every digit alone, then GPT-2's
//!    split pattern);
//! 3. each piece's bytes are merged by BPE rank (`bpe`), through a cache of pieces seen before.
//!
//! The tokenizer is `Send + Sync`: its cache is split in `RwLock`ed shards that readers share.

mod bpe;
mod hf;
mod pretokenize;

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use bpe::Bpe;
pub use hf::chat_template;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// Why a tokenizer could not be built from GGUF metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata has no `{0}`")]
    Missing(&'static str),
    #[error("GGUF metadata `{key}` is not {expected}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    #[error("tokenizer.ggml.model is `{0}`: only byte-level BPE (`gpt2`) is supported")]
    UnsupportedModel(String),
    #[error("tokenizer.ggml.pre is `{0}`: only the `smollm` pre-tokenizer is supported")]
    UnsupportedPreTokenizer(String),
    #[error("tokenizer.ggml.merges[{index}] `{merge}` {problem}")]
    BadMerge {
        index: usize,
        merge: String,
        problem: &'static str,
    },
    #[error("`{key}` is {id}, outside the vocabulary of {vocab_size} tokens")]
    IdOutOfRange {
        key: &'static str,
        id: u64,
        vocab_size: usize,
    },
    #[error("tokenizer.ggml.token_type has {types} entries for {tokens} tokens")]
    TokenTypeCount { types: usize, tokens: usize },
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
}

/// A byte-level BPE tokenizer. Build it with [`Tokenizer::from_gguf`].
pub struct Tokenizer {
    /// Vocabulary spelling (GPT-2 byte-level form, e.g. `Ġthe`) → id.
    vocab: HashMap<String, u32>,
    /// The bytes of token `i` are `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    special: Vec<bool>,
    encoder: Encoder,
    bos: u32,
    eos: u32,
}

/// How text becomes ids.
#[allow(clippy::large_enum_variant)] // one per tokenizer: its size does not matter
enum Encoder {
    /// Our byte-level BPE, from GGUF metadata.
    Own {
        /// Tokens matched literally in the text, longest first.
        literals: Vec<(String, u32)>,
        /// `literal_first[b]`: whether some literal starts with byte `b`.
        literal_first: [bool; 256],
        bpe: Bpe,
        /// The merges as GGUF spells them (`Ġ t`), kept to write a `tokenizer.json`.
        merges: Vec<String>,
    },
    /// Hugging Face `tokenizers`, from a model directory's `tokenizer.json`.
    Hf(Box<tokenizers::Tokenizer>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field(
                "encoder",
                &match self.encoder {
                    Encoder::Own { .. } => "gguf",
                    Encoder::Hf(_) => "tokenizer.json",
                },
            )
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

type Metadata = HashMap<String, Value>;

fn get<'a>(md: &'a Metadata, key: &'static str) -> Result<&'a Value, TokenizerError> {
    md.get(key).ok_or(TokenizerError::Missing(key))
}

fn string<'a>(md: &'a Metadata, key: &'static str) -> Result<&'a str, TokenizerError> {
    match get(md, key)? {
        Value::String(s) => Ok(s),
        _ => Err(TokenizerError::WrongType {
            key,
            expected: "a string",
        }),
    }
}

fn integer(value: &Value) -> Option<i64> {
    Some(match *value {
        Value::U8(v) => v.into(),
        Value::I8(v) => v.into(),
        Value::U16(v) => v.into(),
        Value::I16(v) => v.into(),
        Value::U32(v) => v.into(),
        Value::I32(v) => v.into(),
        Value::U64(v) => i64::try_from(v).ok()?,
        Value::I64(v) => v,
        _ => return None,
    })
}

fn array<'a>(md: &'a Metadata, key: &'static str) -> Result<&'a [Value], TokenizerError> {
    match get(md, key)? {
        Value::Array(values) => Ok(values),
        _ => Err(TokenizerError::WrongType {
            key,
            expected: "an array",
        }),
    }
}

fn strings<'a>(md: &'a Metadata, key: &'static str) -> Result<Vec<&'a str>, TokenizerError> {
    array(md, key)?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            _ => Err(TokenizerError::WrongType {
                key,
                expected: "an array of strings",
            }),
        })
        .collect()
}

/// A token id from the metadata, checked against the vocabulary.
fn token_id(md: &Metadata, key: &'static str, vocab_size: usize) -> Result<u32, TokenizerError> {
    let value = get(md, key)?;
    let id =
        integer(value)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or(TokenizerError::WrongType {
                key,
                expected: "a non-negative integer",
            })?;
    if id >= vocab_size as u64 {
        return Err(TokenizerError::IdOutOfRange {
            key,
            id,
            vocab_size,
        });
    }
    Ok(id as u32)
}

impl Tokenizer {
    /// Builds the tokenizer from GGUF metadata (`Content::read(..)?.metadata`): the vocabulary,
    /// token types, merges and BOS/EOS ids under `tokenizer.ggml.*`. Refuses a tokenizer model
    /// other than `gpt2` and a pre-tokenizer other than `smollm`, since it could not match them.
    pub fn from_gguf(metadata: &HashMap<String, Value>) -> Result<Tokenizer, TokenizerError> {
        let md = metadata;
        let model = string(md, "tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_owned()));
        }
        let pre = string(md, "tokenizer.ggml.pre")?;
        if pre != "smollm" {
            return Err(TokenizerError::UnsupportedPreTokenizer(pre.to_owned()));
        }

        let tokens = strings(md, "tokenizer.ggml.tokens")?;
        let mut vocab = HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            vocab.entry((*token).to_owned()).or_insert(id as u32);
        }
        let types = match md.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(_) => array(md, "tokenizer.ggml.token_type")?
                .iter()
                .map(|v| {
                    integer(v).ok_or(TokenizerError::WrongType {
                        key: "tokenizer.ggml.token_type",
                        expected: "an array of integers",
                    })
                })
                .collect::<Result<Vec<i64>, _>>()?,
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::TokenTypeCount {
                types: types.len(),
                tokens: tokens.len(),
            });
        }

        let merge_names = strings(md, "tokenizer.ggml.merges")?;
        let merges = merge_names
            .iter()
            .enumerate()
            .map(|(index, merge)| {
                let bad = |problem| TokenizerError::BadMerge {
                    index,
                    merge: (*merge).to_owned(),
                    problem,
                };
                let (left, right) = merge.split_once(' ').ok_or(bad("is not `left right`"))?;
                let id = |token: &str| vocab.get(token).copied();
                let left_id = id(left).ok_or(bad("has a left side not in the vocabulary"))?;
                let right_id = id(right).ok_or(bad("has a right side not in the vocabulary"))?;
                let merged = id(&format!("{left}{right}"))
                    .ok_or(bad("makes a token not in the vocabulary"))?;
                Ok((left_id, right_id, merged))
            })
            .collect::<Result<Vec<_>, TokenizerError>>()?;

        let byte_to_char = bpe::byte_to_char();
        let char_to_byte = bpe::char_to_byte();
        let byte_ids = byte_to_char.map(|c| {
            vocab
                .get(c.encode_utf8(&mut [0; 4]) as &str)
                .copied()
                .unwrap_or(u32::MAX)
        });

        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(tokens.len() + 1);
        offsets.push(0);
        for token in &tokens {
            bytes.extend(bpe::token_to_bytes(token, &char_to_byte));
            offsets.push(bytes.len());
        }

        let mut literals: Vec<(String, u32)> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (token, &ty))| {
                !token.is_empty() && (ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED)
            })
            .map(|(id, (token, _))| ((*token).to_owned(), id as u32))
            .collect();
        literals.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        let mut literal_first = [false; 256];
        for (text, _) in &literals {
            literal_first[text.as_bytes()[0] as usize] = true;
        }

        Ok(Tokenizer {
            bos: token_id(md, "tokenizer.ggml.bos_token_id", tokens.len())?,
            eos: token_id(md, "tokenizer.ggml.eos_token_id", tokens.len())?,
            special: types.iter().map(|&t| t == TYPE_CONTROL).collect(),
            vocab,
            bytes,
            offsets,
            encoder: Encoder::Own {
                literals,
                literal_first,
                bpe: Bpe::new(byte_ids, &merges),
                merges: merge_names.iter().map(|m| (*m).to_owned()).collect(),
            },
        })
    }

    /// The ids of `text`. Special tokens written in it (`<|im_start|>`...) become their ids; no
    /// BOS is added (SmolLM2's GGUF says `add_bos_token = false`; chat templates write it).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let (literals, literal_first, bpe) = match &self.encoder {
            Encoder::Own {
                literals,
                literal_first,
                bpe,
                ..
            } => (literals, literal_first, bpe),
            // A tokenizer.json that cannot encode is refused when it is loaded; should one
            // fail on some text later, the empty result is refused as an empty prompt.
            Encoder::Hf(tk) => {
                return tk
                    .encode(text, false)
                    .map(|e| e.get_ids().to_vec())
                    .unwrap_or_default()
            }
        };
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        let mut rest = text;
        let plain = |text: &str, out: &mut Vec<u32>| {
            for piece in pretokenize::pieces(text) {
                bpe.encode_piece(piece.as_bytes(), out);
            }
        };
        while let Some((start, len, id)) = find_literal(literals, literal_first, rest) {
            plain(&rest[..start], &mut out);
            out.push(id);
            rest = &rest[start + len..];
        }
        plain(rest, &mut out);
        out
    }

    /// The text of `ids`; bytes that do not form UTF-8 (a sequence cut short) become U+FFFD.
    /// Special tokens are written out (`<|im_end|>`); ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            bytes.extend_from_slice(self.decode_piece(id).unwrap_or_default());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw bytes token `id` stands for (possibly part of a UTF-8 char), or `None` outside the
    /// vocabulary. For text as tokens arrive one by one, use a [`StreamDecoder`].
    pub fn decode_piece(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (&start, &end) = (self.offsets.get(i)?, self.offsets.get(i + 1)?);
        Some(&self.bytes[start..end])
    }

    /// The id of a vocabulary entry, spelled as the vocabulary spells it: special tokens as
    /// themselves (`<|im_end|>`), others in GPT-2 byte-level form (`Ġthe` for ` the`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// The beginning-of-sequence id (`tokenizer.ggml.bos_token_id`).
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// The end-of-sequence id (`tokenizer.ggml.eos_token_id`); generation stops on it.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// The number of tokens in the vocabulary (ids are `0..vocab_size()`).
    pub fn vocab_size(&self) -> usize {
        self.special.len()
    }

    /// Whether `id` is a control token (GGUF token type 3: `<|endoftext|>`, `<|im_start|>`...).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }
}

/// The leftmost literal token in `text` (the longest one there): its byte offset, length, id.
fn find_literal(
    literals: &[(String, u32)],
    literal_first: &[bool; 256],
    text: &str,
) -> Option<(usize, usize, u32)> {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| literal_first[b as usize])
        .find_map(|(i, _)| {
            literals
                .iter()
                .find(|(lit, _)| bytes[i..].starts_with(lit.as_bytes()))
                .map(|(lit, id)| (i, lit.len(), *id))
        })
}

/// Turns tokens into text one at a time, holding back the bytes of a UTF-8 char until the token
/// that completes it arrives, so a stream never shows half a char (or a U+FFFD that the whole
/// sequence would not have). The concatenation of what [`push`](Self::push) and
/// [`finish`](Self::finish) return equals [`Tokenizer::decode`] of all the ids.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Adds token `id` and returns the text it completes (often empty mid-char).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        self.pending
            .extend_from_slice(tokenizer.decode_piece(id).unwrap_or_default());
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    text.push_str(s);
                    self.pending.clear();
                    return text;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    text.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Cut short: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return text;
                        }
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// The text of the bytes still held back (U+FFFD for a char left unfinished), emptying it.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests;
