//! The prefix cache: the key/value cache of prompts already prefilled, by adapter mix and
//! tokens, so a request that repeats a prefix (a system prompt, an agent's instructions)
//! starts after it. Bounded in bytes, least recently used out first. A position's keys and
//! values depend only on the tokens before it and the adapters, so a reused prefix gives
//! exactly the numbers a fresh prefill would.

use crate::engine::SeqCache;

/// Shortest prefix worth reusing.
const MIN_PREFIX: usize = 16;

struct Entry {
    mix: String,
    tokens: Vec<u32>,
    cache: SeqCache,
    used: u64,
}

pub(crate) struct PrefixCache {
    entries: Vec<Entry>,
    capacity: usize,
    bytes: usize,
    tick: u64,
}

impl PrefixCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::new(),
            capacity,
            bytes: 0,
            tick: 0,
        }
    }

    /// The longest cached prefix of `tokens` under `mix`, leaving at least one token to run
    /// (whose logits start the answer).
    pub fn lookup(&mut self, mix: &str, tokens: &[u32]) -> Option<SeqCache> {
        self.tick += 1;
        let limit = tokens.len().saturating_sub(1);
        let (best, len) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.mix == mix)
            .map(|(i, e)| {
                let common = e
                    .tokens
                    .iter()
                    .zip(tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                (i, common.min(limit))
            })
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
        if len < MIN_PREFIX {
            return None;
        }
        self.entries[best].used = self.tick;
        Some(self.entries[best].cache.prefix(len))
    }

    /// Drops every prefix computed with adapter `name` (its weights changed or went away).
    pub fn forget(&mut self, name: &str) {
        let uses = |mix: &str| {
            mix.split('\u{1e}')
                .any(|part| part.split('\u{1f}').next() == Some(name))
        };
        let mut freed = 0;
        self.entries.retain(|e| {
            let keep = !uses(&e.mix);
            if !keep {
                freed += e.cache.bytes() + e.tokens.len() * 4;
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Keeps `cache` (holding exactly `tokens`) for later requests.
    pub fn insert(&mut self, mix: &str, tokens: &[u32], cache: &SeqCache) {
        if tokens.len() < MIN_PREFIX || self.capacity == 0 {
            return;
        }
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.mix == mix && e.tokens == tokens)
        {
            self.tick += 1;
            e.used = self.tick;
            return;
        }
        let size = cache.bytes() + tokens.len() * 4;
        if size > self.capacity {
            return;
        }
        while self.bytes + size > self.capacity {
            let Some(old) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            else {
                break;
            };
            let e = self.entries.swap_remove(old);
            self.bytes -= e.cache.bytes() + e.tokens.len() * 4;
        }
        self.tick += 1;
        self.bytes += size;
        self.entries.push(Entry {
            mix: mix.to_string(),
            tokens: tokens.to_vec(),
            cache: cache.clone(),
            used: self.tick,
        });
    }
}
