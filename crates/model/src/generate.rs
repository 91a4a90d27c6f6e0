//! Generation: greedy or seeded sampling (temperature, top-k, top-p, repetition penalty),
//! stop strings, a token limit, and the text streamed as it is decided.

use crate::{
    llama::{KvCache, Llama, LoraBatch},
    ModelError,
};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token every time (greedy).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `p` (1.0: all).
    pub top_p: f32,
    /// Divide the logits of tokens already present by this (1.0: off), as in CTRL.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

/// Picks next tokens from logits.
pub struct Sampler {
    config: Sampling,
    rng: StdRng,
}

impl Sampler {
    pub fn new(config: Sampling) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    /// The next token after `history`, from the last position's logits.
    pub fn next(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        let c = &self.config;
        if c.repetition_penalty != 1.0 {
            for &t in history {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / c.repetition_penalty
                    } else {
                        *l * c.repetition_penalty
                    };
                }
            }
        }
        if c.temperature <= 0.0 {
            return argmax(&logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l / c.temperature))
            .collect();
        // Ties go to the lower id, so the choice never depends on the sort's whims.
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            candidates.truncate(c.top_k);
        }
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if c.top_p < 1.0 {
            let mut mass = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    mass += p;
                    mass >= c.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            let sum: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= sum);
        }
        let mut r: f32 = self.rng.random();
        for (i, p) in probs.iter().enumerate() {
            if r < *p {
                return candidates[i].0;
            }
            r -= p;
        }
        candidates[probs.len() - 1].0
    }
}

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i as u32)
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model produced its end-of-sequence token.
    Eos,
    /// The text reached a stop string.
    Stop,
    /// The token limit was reached.
    Length,
}

/// What [`generate`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub finish: Finish,
}

/// Generates up to `max_tokens` after `prompt` (on `lora`'s adapter when given, a batch of
/// one), calling `on_token` with each new token as it is decided; stops early at `eos` (any
/// of them) or when `stop` says so (given the tokens so far, e.g. a stop-string check on the
/// decoded text).
#[allow(clippy::too_many_arguments)] // each is a separate, documented knob of one loop
pub fn generate(
    model: &Llama,
    lora: Option<&LoraBatch>,
    prompt: &[u32],
    max_tokens: usize,
    sampling: Sampling,
    eos: &[u32],
    mut stop: impl FnMut(&[u32]) -> bool,
    mut on_token: impl FnMut(u32),
) -> Result<Generation, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::EmptyPrompt);
    }
    let mut sampler = Sampler::new(sampling);
    let mut cache = KvCache::default();
    let mut history = prompt.to_vec();
    let mut out = Vec::new();
    let mut input = Tensor::new(prompt, &Device::Cpu)?.unsqueeze(0)?;
    while out.len() < max_tokens {
        let logits = model
            .forward_last_lora(&input, &mut cache, lora)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        let next = sampler.next(&logits, &history);
        if eos.contains(&next) {
            return Ok(Generation {
                tokens: out,
                finish: Finish::Eos,
            });
        }
        out.push(next);
        history.push(next);
        on_token(next);
        if stop(&out) {
            return Ok(Generation {
                tokens: out,
                finish: Finish::Stop,
            });
        }
        input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
    }
    Ok(Generation {
        tokens: out,
        finish: Finish::Length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(Sampling::default());
        assert_eq!(s.next(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn the_repetition_penalty_can_change_the_choice() {
        let mut s = Sampler::new(Sampling {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        assert_eq!(s.next(&[0.1, 3.0, -1.0, 2.9], &[1]), 3);
    }

    #[test]
    fn sampling_is_deterministic_for_a_seed_and_respects_top_k() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(Sampling {
                temperature: 1.0,
                top_k: 3,
                seed,
                ..Default::default()
            });
            (0..200).map(|_| s.next(&logits, &[])).collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        // The three largest logits (value 1.8) sit at indices 6, 13, 20, …: only the top three
        // indices by logit may come out.
        let mut allowed: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        allowed.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top: Vec<u32> = allowed[..3].iter().map(|x| x.0).collect();
        assert!(a.iter().all(|t| top.contains(t)), "{a:?} vs {top:?}");
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_p: 0.5,
            seed: 1,
            ..Default::default()
        });
        // Token 0 alone holds far more than half the mass.
        for _ in 0..100 {
            assert_eq!(s.next(&[10.0, 0.0, 0.0, 0.0], &[]), 0);
        }
    }
}
