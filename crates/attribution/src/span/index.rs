//! Opening an index and answering queries on it.

use super::{io, packed, Result, SpanError, FORMAT_VERSION, SEPARATOR};
use std::{cmp::Ordering, ops::Range, path::Path};

/// File bytes: memory-mapped, or owned when the file is empty (which cannot be mapped).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

fn map(path: &Path) -> Result<Bytes> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    if len == 0 {
        return Ok(Bytes::Owned(Vec::new()));
    }
    // SAFETY: index files are written once by `build` and never modified in place; a reader
    // that finds one changed under it reads wrong counts, never unsafe memory, because every
    // access below is bounds-checked.
    let mapped = unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))?;
    Ok(Bytes::Mapped(mapped))
}

/// A place where a span occurs: its rank in the suffix array, its token position in the
/// text, and the document (training example) and contribution that hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub rank: u64,
    pub position: u64,
    pub document: u64,
    pub contribution: u64,
}

/// An opened span index (see the [module docs](super)).
pub struct SpanIndex {
    tokens: Bytes,
    suffixes: Bytes,
    /// Per document, its separator's position and its contribution id.
    documents: Vec<(u64, u64)>,
    n: u64,
    width: u32,
    root: std::sync::OnceLock<alloy_primitives::B256>,
}

impl SpanIndex {
    /// Opens the index that [`super::build`] wrote to `dir`, checking that its files agree.
    pub fn open(dir: &Path) -> Result<Self> {
        let corrupt = |reason: String| SpanError::Corrupt {
            path: dir.display().to_string(),
            reason,
        };
        let meta_path = dir.join("index.json");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).map_err(io(&meta_path))?)
                .map_err(|e| corrupt(format!("index.json: {e}")))?;
        if meta["format"].as_u64() != Some(u64::from(FORMAT_VERSION)) {
            return Err(corrupt(format!(
                "format {} is not {FORMAT_VERSION}",
                meta["format"]
            )));
        }
        let n = meta["tokens"]
            .as_u64()
            .ok_or_else(|| corrupt("no token count".into()))?;
        let width = packed::width_for(n);
        let tokens = map(&dir.join("tokens.bin"))?;
        let suffixes = map(&dir.join("suffixes.bin"))?;
        let starts =
            std::fs::read(dir.join("documents.bin")).map_err(io(&dir.join("documents.bin")))?;
        if tokens.len() as u64 != 2 * n {
            return Err(corrupt(format!(
                "tokens.bin holds {} bytes, not {}",
                tokens.len(),
                2 * n
            )));
        }
        let want = (n as usize * width as usize).div_ceil(8) + 8;
        if suffixes.len() != want {
            return Err(corrupt(format!(
                "suffixes.bin holds {} bytes, not {want}",
                suffixes.len()
            )));
        }
        if starts.len() % 16 != 0 {
            return Err(corrupt("documents.bin is not whole records".into()));
        }
        let documents: Vec<(u64, u64)> = starts
            .chunks_exact(16)
            .map(|c| {
                let word = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
                (word(0), word(8))
            })
            .collect();
        if documents.windows(2).any(|w| w[0].0 >= w[1].0)
            || documents.last().is_some_and(|d| d.0 >= n)
        {
            return Err(corrupt(
                "document starts are not increasing within the text".into(),
            ));
        }
        Ok(Self {
            tokens,
            suffixes,
            documents,
            n,
            width,
            root: std::sync::OnceLock::new(),
        })
    }

    /// The document holding text position `position` and the offset within it, or `None`
    /// for a separator or a position beyond the text.
    pub fn locate(&self, position: u64) -> Option<(usize, usize)> {
        let d = self.documents.partition_point(|&(sep, _)| sep < position);
        let d = d.checked_sub(1)?;
        let start = self.documents[d].0 + 1;
        let end = self.documents.get(d + 1).map_or(self.n, |&(sep, _)| sep);
        (position < end).then(|| (d, (position - start) as usize))
    }

    /// What a receipt names the index by: keccak256 of `OLSPAN`, the format version and the
    /// keccak256 of `tokens.bin`, `suffixes.bin` and `documents.bin`. Computed on first use.
    pub fn root(&self) -> alloy_primitives::B256 {
        *self.root.get_or_init(|| {
            use alloy_primitives::keccak256;
            let documents: Vec<u8> = self
                .documents
                .iter()
                .flat_map(|&(start, c)| [start.to_le_bytes(), c.to_le_bytes()].concat())
                .collect();
            let mut all = b"OLSPAN".to_vec();
            all.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            for part in [&self.tokens[..], &self.suffixes[..], &documents[..]] {
                all.extend_from_slice(keccak256(part).as_slice());
            }
            keccak256(all)
        })
    }

    /// Tokens in the text, separators included.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Documents (training examples) indexed.
    pub fn documents(&self) -> usize {
        self.documents.len()
    }

    /// The token at text position `i`.
    pub fn token(&self, i: u64) -> u32 {
        let at = 2 * i as usize;
        u32::from(u16::from_le_bytes([self.tokens[at], self.tokens[at + 1]]))
    }

    /// The text position of the suffix of rank `rank`.
    pub fn suffix(&self, rank: u64) -> u64 {
        packed::get(&self.suffixes, rank as usize, self.width)
    }

    /// The rank range of the suffixes that start with `query` (half-open; empty at the place
    /// the query would sort when it does not occur). The empty query matches every suffix.
    /// The separator is a valid query token, so a query can span a document boundary.
    pub fn find(&self, query: &[u32]) -> Result<Range<u64>> {
        let keys = keys(query)?;
        Ok(self.narrow(0..self.n, 0, &keys))
    }

    /// How many times `query` occurs in the text.
    pub fn count(&self, query: &[u32]) -> Result<u64> {
        self.find(query).map(|r| r.end - r.start)
    }

    /// For every position `i` of `answer`, the length of the longest prefix of `answer[i..]`
    /// that occurs in the text (0 where even its first token does not). Tokens beyond 16 bits
    /// never match.
    pub fn longest_matches(&self, answer: &[u32]) -> Vec<usize> {
        let mut out = Vec::with_capacity(answer.len());
        let mut previous = 0usize;
        for i in 0..answer.len() {
            // answer[i..i + previous - 1] occurs, being a suffix of the last match.
            let mut len = previous.saturating_sub(1);
            let mut range = match keys(&answer[i..i + len]) {
                Ok(k) => self.narrow(0..self.n, 0, &k),
                Err(_) => 0..0,
            };
            while i + len < answer.len() {
                let Ok(key) = keys(&answer[i + len..=i + len]) else {
                    break;
                };
                let next = self.narrow(range.clone(), len, &key);
                if next.is_empty() {
                    break;
                }
                range = next;
                len += 1;
            }
            out.push(len);
            previous = len;
        }
        out
    }

    /// The occurrences behind a rank range, in rank order (which any validator reproduces from
    /// the corpus alone), at most `limit` of them.
    pub fn occurrences(&self, ranks: Range<u64>, limit: usize) -> Vec<Occurrence> {
        ranks
            .take(limit)
            .map(|rank| {
                let position = self.suffix(rank);
                let document = self
                    .documents
                    .partition_point(|d| d.0 <= position)
                    .saturating_sub(1);
                Occurrence {
                    rank,
                    position,
                    document: document as u64,
                    contribution: self.documents.get(document).map_or(0, |d| d.1),
                }
            })
            .collect()
    }

    /// Within `range`, whose suffixes all share their first `depth` tokens, the ranks whose
    /// next tokens are `keys` (byte-swapped).
    fn narrow(&self, range: Range<u64>, depth: usize, keys: &[u16]) -> Range<u64> {
        let cmp = |rank: u64| self.compare(self.suffix(rank) + depth as u64, keys);
        let lo = partition(range.clone(), |r| cmp(r) == Ordering::Less);
        let hi = partition(lo..range.end, |r| cmp(r) != Ordering::Greater);
        lo..hi
    }

    /// The suffix at text position `at` against `keys`: `Equal` when it starts with them,
    /// `Less` when it sorts before (a suffix that ends first is smaller).
    fn compare(&self, at: u64, keys: &[u16]) -> Ordering {
        for (j, &k) in keys.iter().enumerate() {
            let p = at + j as u64;
            if p >= self.n {
                return Ordering::Less;
            }
            match (self.token(p) as u16).swap_bytes().cmp(&k) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        Ordering::Equal
    }
}

/// The first rank in `range` for which `before` is false (`before` holds for a prefix).
fn partition(range: Range<u64>, before: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (range.start, range.end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Query tokens as byte-swapped 16-bit keys.
fn keys(query: &[u32]) -> Result<Vec<u16>> {
    query
        .iter()
        .map(|&t| {
            if t > SEPARATOR {
                Err(SpanError::QueryToken(t))
            } else {
                Ok((t as u16).swap_bytes())
            }
        })
        .collect()
}
