//! Tracing an answer back to the training corpus, as OLMoTrace does: the maximal spans of the
//! answer that occur verbatim in the corpus, cut to whole words and at delimiters, the rarest
//! kept, each with the documents that hold it.
//!
//! Every choice is deterministic so that a validator recomputes the same spans: candidates are
//! ranked by unigram log-probability (ties by position, then length), and a span's documents
//! are its first occurrences in suffix-array order (OLMoTrace samples them with a seed; rank
//! order needs no seed and depends on the corpus alone).

use super::{Occurrence, Result, SpanIndex};
use openledger_model::tokenizer::Tokenizer;

/// What the tokenizer knows about one answer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenKind {
    /// The token begins a word (in byte-level BPE, its text starts with a space or it follows
    /// a newline); a span starts and ends on word boundaries.
    pub starts_word: bool,
    /// The token ends a sentence or line (`.`, `\n`, …); a span may end with one but never
    /// runs past it.
    pub delimiter: bool,
    /// The token is only punctuation or whitespace (`,`, `"`): a span neither starts with one
    /// nor ends with one, unless it is a delimiter.
    pub punctuation: bool,
}

/// The kind of every token of `tokens` under `tokenizer`, from the bytes each stands for: a
/// token starts a word when it begins with whitespace or punctuation, follows one that ended
/// with whitespace or punctuation, is a control token, or comes first; it is a delimiter when
/// it holds a line break or ends a sentence (`.`, `!`, `?`).
pub fn token_kinds(tokenizer: &Tokenizer, tokens: &[u32]) -> Vec<TokenKind> {
    let boundary = |b: u8| b.is_ascii_whitespace() || b.is_ascii_punctuation();
    let mut previous_ends_word = true;
    tokens
        .iter()
        .map(|&t| {
            let piece = tokenizer.decode_piece(t).unwrap_or_default();
            let special = tokenizer.is_special(t);
            let starts_word =
                special || previous_ends_word || piece.first().is_some_and(|&b| boundary(b));
            previous_ends_word = special || piece.last().is_some_and(|&b| boundary(b));
            let text = piece.trim_ascii_end();
            TokenKind {
                starts_word,
                delimiter: piece.contains(&b'\n')
                    || text.last().is_some_and(|b| matches!(b, b'.' | b'!' | b'?')),
                punctuation: !special && !piece.is_empty() && piece.iter().all(|&b| boundary(b)),
            }
        })
        .collect()
}

/// The knobs of [`trace`]; [`Default`] gives OLMoTrace's settings where it has them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceConfig {
    /// Spans shorter than this many tokens are dropped.
    pub min_tokens: usize,
    /// Spans kept: ⌈density × answer length⌉.
    pub density: f64,
    /// Occurrences retrieved per span.
    pub max_documents: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            min_tokens: 2,
            density: 0.05,
            max_documents: 10,
        }
    }
}

/// A span of the answer that occurs verbatim in the corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Answer token positions `start..end`.
    pub start: usize,
    pub end: usize,
    /// Occurrences in the corpus.
    pub count: u64,
    /// The sum over its tokens of ln(corpus frequency); lower is rarer.
    pub log_prob: f64,
    /// The first [`TraceConfig::max_documents`] occurrences, in suffix-array order.
    pub occurrences: Vec<Occurrence>,
}

/// The spans of `answer` (with `kinds[i]` describing `answer[i]`) attributed to the corpus, in
/// answer order.
pub fn trace(
    index: &SpanIndex,
    answer: &[u32],
    kinds: &[TokenKind],
    config: &TraceConfig,
) -> Result<Vec<Span>> {
    if answer.len() != kinds.len() {
        return Err(super::SpanError::Kinds {
            tokens: answer.len(),
            kinds: kinds.len(),
        });
    }
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    let mut reach = 0;
    for (i, &len) in index.longest_matches(answer).iter().enumerate() {
        // Maximal: not inside a span that started earlier.
        if len > 0 && i + len > reach {
            reach = i + len;
            if let Some(span) = whole_words(i, i + len, kinds) {
                if span.1 - span.0 >= config.min_tokens.max(1) {
                    candidates.push(span);
                }
            }
        }
    }
    // Trimming can make one candidate part of another; keep only the outermost.
    candidates.sort_by_key(|&(s, e)| (s, std::cmp::Reverse(e)));
    let mut outer: Vec<(usize, usize)> = Vec::new();
    for (s, e) in candidates {
        if outer.last().is_none_or(|&(_, last_end)| e > last_end) {
            outer.push((s, e));
        }
    }
    let total = (index.len() - index.documents() as u64).max(1) as f64;
    let mut unigram = std::collections::HashMap::new();
    let mut scored = Vec::with_capacity(outer.len());
    for (s, e) in outer {
        let mut log_prob = 0.0;
        for &t in &answer[s..e] {
            let count = match unigram.get(&t) {
                Some(&c) => c,
                None => {
                    let c = index.count(&[t])?;
                    unigram.insert(t, c);
                    c
                }
            };
            log_prob += (count.max(1) as f64 / total).ln();
        }
        scored.push((s, e, log_prob));
    }
    let keep = (config.density * answer.len() as f64).ceil() as usize;
    scored.sort_by(|a, b| {
        a.2.total_cmp(&b.2)
            .then(a.0.cmp(&b.0))
            .then((b.1 - b.0).cmp(&(a.1 - a.0)))
    });
    scored.truncate(keep);
    scored.sort_by_key(|&(s, _, _)| s);
    scored
        .into_iter()
        .map(|(start, end, log_prob)| {
            let ranks = index.find(&answer[start..end])?;
            Ok(Span {
                start,
                end,
                count: ranks.end - ranks.start,
                log_prob,
                occurrences: index.occurrences(ranks, config.max_documents),
            })
        })
        .collect()
}

/// `start..end` cut to whole words and to the first delimiter, or `None` if nothing is left.
fn whole_words(start: usize, end: usize, kinds: &[TokenKind]) -> Option<(usize, usize)> {
    let start = (start..end).find(|&i| kinds[i].starts_word && !kinds[i].punctuation)?;
    // A delimiter ends the span (it stays in it).
    let end = (start..end)
        .find(|&i| kinds[i].delimiter)
        .map_or(end, |d| d + 1);
    // The span ends where the next token starts a word (or the answer ends), or right after a
    // delimiter.
    let end = (start + 1..=end).rev().find(|&e| {
        let k = kinds[e - 1];
        (e == kinds.len() || kinds[e].starts_word || k.delimiter) && (!k.punctuation || k.delimiter)
    })?;
    debug_assert!(!kinds[start..end].iter().any(|k| k.delimiter) || kinds[end - 1].delimiter);
    Some((start, end)).filter(|&(s, e)| e > s)
}
