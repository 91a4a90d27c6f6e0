//! Choosing each next token: penalties, JSON mode's constraint, temperature, top-k, top-p,
//! a per-sequence seeded generator, and log-probabilities of the model's own distribution.

use crate::{
    engine::log_softmax,
    json::JsonState,
    request::{Logprob, Params},
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;

/// Tokens considered under JSON mode when sampling (greedy takes the best valid one).
const JSON_CANDIDATES: usize = 40;
/// Best-scoring tokens JSON mode checks first, before it sorts the whole vocabulary.
const JSON_SCAN: usize = 512;

/// The bytes of every token id, for JSON mode.
pub struct Vocab {
    pub pieces: Vec<Vec<u8>>,
    /// End-of-sequence ids.
    pub eos: Vec<u32>,
}

impl Vocab {
    /// Every token's bytes from `tokenizer`, ending at its end-of-sequence token.
    pub fn new(tokenizer: &openledger_model::tokenizer::Tokenizer) -> Self {
        let pieces = (0..tokenizer.vocab_size() as u32)
            .map(|id| tokenizer.decode_piece(id).unwrap_or_default().to_vec())
            .collect();
        Self {
            pieces,
            eos: vec![tokenizer.eos_id()],
        }
    }
}

/// One sequence's sampler.
pub(crate) struct Picker {
    params: Params,
    rng: StdRng,
    counts: HashMap<u32, u32>,
    pub json: Option<JsonState>,
}

impl Picker {
    pub fn new(params: Params) -> Self {
        Self {
            rng: StdRng::seed_from_u64(params.seed),
            json: params.json.then(JsonState::default),
            counts: HashMap::new(),
            params,
        }
    }

    /// The next token from the last position's logits, with its log-probability if asked.
    pub fn pick(&mut self, logits: &[f32], vocab: &Vocab) -> (u32, Option<Logprob>) {
        let logprob = self.params.logprobs.map(|k| {
            let lp = log_softmax(logits);
            let top = top_k(&lp, k);
            (lp, top)
        });
        let mut scores = logits.to_vec();
        let p = &self.params;
        if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            for (&t, &n) in &self.counts {
                if let Some(s) = scores.get_mut(t as usize) {
                    *s -= n as f32 * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        if p.ignore_eos {
            for &eos in &vocab.eos {
                if let Some(s) = scores.get_mut(eos as usize) {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        let id = if self.json.as_ref().is_some_and(JsonState::complete) {
            vocab.eos[0]
        } else {
            self.choose(&scores, vocab)
        };
        *self.counts.entry(id).or_default() += 1;
        if let Some(state) = &mut self.json {
            if !vocab.eos.contains(&id) {
                state.feed(&vocab.pieces[id as usize]);
            }
        }
        let logprob = logprob.map(|(lp, top)| Logprob {
            logprob: lp[id as usize],
            top,
        });
        (id, logprob)
    }

    fn choose(&mut self, scores: &[f32], vocab: &Vocab) -> u32 {
        let p = &self.params;
        // Candidates best first; ties to the lower id so the order never depends on the sort.
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        let by_score = |a: &u32, b: &u32| {
            scores[*b as usize]
                .total_cmp(&scores[*a as usize])
                .then(a.cmp(b))
        };
        let limit = match (&self.json, p.temperature <= 0.0, p.top_k) {
            (Some(_), true, _) => 1,
            (Some(_), false, 0) => JSON_CANDIDATES,
            (Some(_), false, k) => k.min(JSON_CANDIDATES),
            (None, true, _) => 1,
            (None, false, k) => k,
        };
        // The best `n` candidates, best first (sorting only those).
        let best = |order: &mut Vec<u32>, n: usize| {
            if n < order.len() {
                order.select_nth_unstable_by(n - 1, by_score);
                order.truncate(n);
            }
            order.sort_unstable_by(by_score);
        };
        match &self.json {
            None if limit > 0 => best(&mut order, limit),
            None => {
                // All tokens may be drawn, but those below e^-21 of the best (about 1e-9)
                // cannot matter: sort only the rest.
                let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let floor = max - 21.0 * p.temperature;
                order.retain(|&id| scores[id as usize] >= floor);
                order.sort_unstable_by(by_score);
            }
            Some(state) => {
                let allowed =
                    |id: u32| !vocab.eos.contains(&id) && state.accepts(&vocab.pieces[id as usize]);
                // Most steps find their valid candidates among the best few hundred.
                let mut head = order.clone();
                best(&mut head, JSON_SCAN.min(order.len()));
                let valid: Vec<u32> = head
                    .into_iter()
                    .filter(|&id| allowed(id))
                    .take(limit)
                    .collect();
                order = if valid.len() == limit || order.len() <= JSON_SCAN {
                    valid
                } else {
                    order.sort_unstable_by(by_score);
                    order
                        .into_iter()
                        .filter(|&id| allowed(id))
                        .take(limit)
                        .collect()
                };
                if order.is_empty() {
                    return vocab.eos[0];
                }
            }
        }
        if p.temperature <= 0.0 || order.len() == 1 {
            return order[0];
        }
        let max = scores[order[0] as usize];
        let mut probs: Vec<f32> = order
            .iter()
            .map(|&id| ((scores[id as usize] - max) / p.temperature).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        if p.top_p < 1.0 {
            let mut mass = 0.0;
            let keep = probs
                .iter()
                .position(|x| {
                    mass += x;
                    mass >= p.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            let sum: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|x| *x /= sum);
        }
        let mut r: f32 = self.rng.random();
        for (i, x) in probs.iter().enumerate() {
            if r < *x {
                return order[i];
            }
            r -= x;
        }
        order[probs.len() - 1]
    }
}

/// The `k` largest `(id, value)`, largest first, ties to the lower id.
fn top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut ids: Vec<u32> = (0..values.len() as u32).collect();
    let by = |a: &u32, b: &u32| {
        values[*b as usize]
            .total_cmp(&values[*a as usize])
            .then(a.cmp(b))
    };
    if k > 0 && k < ids.len() {
        ids.select_nth_unstable_by(k - 1, by);
    }
    ids.truncate(k);
    ids.sort_unstable_by(by);
    ids.into_iter().map(|i| (i, values[i as usize])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocab {
        let pieces = ["{", "}", "\"a\"", ":", "1", "x", "</s>"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        Vocab {
            pieces,
            eos: vec![6],
        }
    }

    #[test]
    fn json_mode_steers_greedy_choices_into_an_object() {
        let v = vocab();
        let mut p = Picker::new(Params {
            json: true,
            ..Default::default()
        });
        // The model always prefers "x", then end-of-sequence.
        let logits = [0.0, 0.5, 0.2, 0.3, 0.4, 5.0, 4.0];
        let mut text = Vec::new();
        for _ in 0..8 {
            let (id, _) = p.pick(&logits, &v);
            if id == 6 {
                break;
            }
            text.extend_from_slice(&v.pieces[id as usize]);
        }
        assert_eq!(String::from_utf8(text).unwrap(), "{}");
    }

    #[test]
    fn penalties_and_logprobs() {
        let v = vocab();
        let mut p = Picker::new(Params {
            presence_penalty: 2.0,
            logprobs: Some(2),
            ..Default::default()
        });
        let logits = [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, -9.0];
        let (first, lp) = p.pick(&logits, &v);
        assert_eq!(first, 5);
        let lp = lp.unwrap();
        assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![5, 4]);
        assert!((lp.logprob - lp.top[0].1).abs() < 1e-6 && lp.logprob < 0.0);
        // Token 5 now pays 2.0 and falls below token 4.
        assert_eq!(p.pick(&logits, &v).0, 4);
    }

    #[test]
    fn a_seed_reproduces_its_samples() {
        let v = vocab();
        let logits = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -9.0];
        let run = |seed| {
            let mut p = Picker::new(Params {
                temperature: 1.0,
                seed,
                ..Default::default()
            });
            (0..50).map(|_| p.pick(&logits, &v).0).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
