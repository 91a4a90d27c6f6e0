//! One step of the serving pass over a ragged batch: every sequence brings its own new
//! tokens (a whole prompt, a chunk of one, or one decode token), its own key/value cache
//! and its own adapter mix. The projections run once over all rows of the step, so each
//! weight is read once per step for the whole batch; attention runs per sequence over its
//! own cache; the adapter terms run per row.

use super::{
    adapter::{apply, Mix},
    base::Base,
    dims::Kind,
    kernels::{attend, rms_norm, rope, swiglu},
    quant::QRows,
};
use crate::ServeError;

/// A sequence's keys and values for the positions seen so far: per layer `(positions,
/// kv·d)` each, appended to in place.
#[derive(Debug, Default, Clone)]
pub struct SeqCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl SeqCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * self.k.iter().chain(&self.v).map(Vec::len).sum::<usize>()
    }

    /// A copy of the first `n` positions (a cached prefix handed to a new sequence).
    pub fn prefix(&self, n: usize) -> SeqCache {
        let n = n.min(self.len);
        let cut = |layers: &Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            layers
                .iter()
                .map(|l| {
                    let width = l.len() / self.len.max(1);
                    l[..n * width].to_vec()
                })
                .collect()
        };
        SeqCache {
            k: cut(&self.k),
            v: cut(&self.v),
            len: n,
        }
    }
}

/// One sequence's part of a step.
pub struct Chunk<'a> {
    /// The new tokens, after the cache's positions.
    pub tokens: &'a [u32],
    pub cache: &'a mut SeqCache,
    pub mix: &'a Mix,
    /// Whether the step returns logits for this chunk's last token.
    pub logits: bool,
}

impl Base {
    /// Runs one step; returns the logits `(vocab,)` of the last token of each chunk that asks
    /// for them, in order.
    pub fn forward(&self, chunks: &mut [Chunk<'_>]) -> Result<Vec<Vec<f32>>, ServeError> {
        let dims = &self.dims;
        let (e, h, kv, d) = (dims.e, dims.h, dims.kv, dims.d);
        // Which chunk and position each row is.
        let mut rows: Vec<(usize, usize)> = Vec::new();
        for (c, chunk) in chunks.iter_mut().enumerate() {
            let start = chunk.cache.len;
            if chunk.tokens.is_empty() {
                return Err(ServeError::Invalid("a chunk with no tokens".into()));
            }
            if start + chunk.tokens.len() > dims.max_positions {
                return Err(ServeError::ContextFull {
                    limit: dims.max_positions,
                });
            }
            if let Some(&bad) = chunk.tokens.iter().find(|&&t| t as usize >= dims.vocab) {
                return Err(ServeError::Invalid(format!(
                    "token {bad} is outside the vocabulary of {}",
                    dims.vocab
                )));
            }
            rows.extend((0..chunk.tokens.len()).map(|i| (c, start + i)));
            chunk.cache.k.resize(dims.layers, Vec::new());
            chunk.cache.v.resize(dims.layers, Vec::new());
        }
        let m = rows.len();
        let mixes: Vec<&Mix> = rows.iter().map(|&(c, _)| chunks[c].mix).collect();
        let mut x: Vec<f32> = Vec::with_capacity(m * e);
        for chunk in chunks.iter() {
            for &t in chunk.tokens {
                x.extend(self.embed.row(t as usize));
            }
        }
        let (nq, nk) = (h * d, kv * d);
        let qkv_width = dims.qkv();
        let half = d / 2;
        for (l, layer) in self.layers.iter().enumerate() {
            // Attention.
            let xn = rms_norm(&x, e, &layer.in_norm, dims.eps);
            let mut qkv = layer.qkv.matmul(&QRows::new(&xn, e)); // (m, nq + 2nk)
            if let Some(bias) = &layer.qkv_bias {
                for row in qkv.chunks_exact_mut(qkv_width) {
                    row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
                }
            }
            apply(&mixes, l, Kind::Q, &xn, e, &mut qkv, qkv_width, 0);
            apply(&mixes, l, Kind::K, &xn, e, &mut qkv, qkv_width, nq);
            apply(&mixes, l, Kind::V, &xn, e, &mut qkv, qkv_width, nq + nk);
            for (row, &(_, pos)) in qkv.chunks_exact_mut(qkv_width).zip(&rows) {
                let (cos, sin) = (
                    &self.cos[pos * half..][..half],
                    &self.sin[pos * half..][..half],
                );
                rope(&mut row[..nq + nk], d, cos, sin);
            }
            for (row, &(c, _)) in qkv.chunks_exact(qkv_width).zip(&rows) {
                let cache = &mut *chunks[c].cache;
                cache.k[l].extend_from_slice(&row[nq..nq + nk]);
                cache.v[l].extend_from_slice(&row[nq + nk..]);
            }
            let att = self.attention(chunks, &rows, &qkv, l);
            let mut o = layer.o.matmul(&QRows::new(&att, nq)); // (m, e)
            apply(&mixes, l, Kind::O, &att, nq, &mut o, e, 0);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            // Feed-forward.
            let xn = rms_norm(&x, e, &layer.post_norm, dims.eps);
            let mut gu = layer.gate_up.matmul(&QRows::new(&xn, e)); // (m, 2·inter)
            apply(&mixes, l, Kind::Gate, &xn, e, &mut gu, 2 * dims.inter, 0);
            apply(
                &mixes,
                l,
                Kind::Up,
                &xn,
                e,
                &mut gu,
                2 * dims.inter,
                dims.inter,
            );
            let act = swiglu(&gu, dims.inter); // (m, inter)
            let mut down = layer.down.matmul(&QRows::new(&act, dims.inter));
            apply(&mixes, l, Kind::Down, &act, dims.inter, &mut down, e, 0);
            x.iter_mut().zip(&down).for_each(|(x, y)| *x += y);
        }
        for chunk in chunks.iter_mut() {
            chunk.cache.len += chunk.tokens.len();
        }
        // The last row of each chunk that wants logits.
        let mut last = Vec::new();
        let mut end = 0;
        for chunk in chunks.iter() {
            end += chunk.tokens.len();
            if chunk.logits {
                last.extend_from_slice(&x[(end - 1) * e..end * e]);
            }
        }
        if last.is_empty() {
            return Ok(Vec::new());
        }
        let normed = rms_norm(&last, e, &self.norm, dims.eps);
        let logits = self.head().matmul(&QRows::new(&normed, e));
        Ok(logits
            .chunks_exact(dims.vocab)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// `(m, h·d)`: each row's query heads against its own sequence's cache up to its
    /// position (causal), one task per row and head.
    fn attention(
        &self,
        chunks: &[Chunk<'_>],
        rows: &[(usize, usize)],
        qkv: &[f32],
        l: usize,
    ) -> Vec<f32> {
        let (h, kv, d) = (self.dims.h, self.dims.kv, self.dims.d);
        let qkv_width = self.dims.qkv();
        let group = h / kv;
        let caches: Vec<(&[f32], &[f32])> = chunks
            .iter()
            .map(|c| (c.cache.k[l].as_slice(), c.cache.v[l].as_slice()))
            .collect();
        let mut att = vec![0f32; rows.len() * h * d];
        let target = super::team::Shared(att.as_mut_ptr());
        let items = rows.len() * h;
        // Members take every `members`-th (row, head): a prompt's later rows attend to more
        // positions, so contiguous shares would leave one member with most of the work.
        super::team::Team::global().run(&|member, members| {
            for i in (member..items).step_by(members) {
                let (row, head) = (i / h, i % h);
                let (c, pos) = rows[row];
                let q = &qkv[row * qkv_width + head * d..][..d];
                let (keys, values) = caches[c];
                // SAFETY: item `i` is this member's alone and `(i + 1)·d ≤ att.len()`; `att`
                // outlives the run.
                let out = unsafe { std::slice::from_raw_parts_mut(target.at(i * d), d) };
                attend(q, keys, values, pos + 1, kv * d, (head / group) * d, out);
            }
        });
        att
    }
}
