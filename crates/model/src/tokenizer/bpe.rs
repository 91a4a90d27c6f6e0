//! Byte-level BPE: the GPT-2 byte ↔ char mapping and merging by rank, with a per-piece cache.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;

/// Pieces longer than this (in bytes) are not cached: they are rare and would bloat the cache.
const CACHE_MAX_PIECE: usize = 64;
/// Entries the cache holds at most; once full it only serves what it has (as HF's cache does).
const CACHE_CAPACITY: usize = 1 << 16;
/// The cache is split in this many independently locked shards, so that threads encoding at
/// once rarely touch the same lock.
const CACHE_SHARDS: usize = 16;
/// Marks a missing neighbour or a missing byte token.
const NONE: u32 = u32::MAX;

/// GPT-2's map from bytes to printable chars: printable Latin-1 bytes stand for themselves,
/// the others (controls, space, ...) for U+0100 onwards in byte order, so `' '` is `'Ġ'`.
pub(crate) fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in map.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let cp = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).unwrap_or('\0');
    }
    map
}

/// The inverse of [`byte_to_char`].
pub(crate) fn char_to_byte() -> HashMap<char, u8> {
    let map = byte_to_char();
    (0..=255u8).map(|b| (map[b as usize], b)).collect()
}

/// The bytes a vocabulary entry stands for: each char mapped back through [`byte_to_char`], or,
/// if any char is outside that map (an added token spelled in plain text), the entry's own UTF-8,
/// as HF's ByteLevel decoder does.
pub(crate) fn token_to_bytes(token: &str, char_to_byte: &HashMap<char, u8>) -> Vec<u8> {
    token
        .chars()
        .map(|c| char_to_byte.get(&c).copied())
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_else(|| token.as_bytes().to_vec())
}

/// FxHash (as in rustc): fast for the integer pair keys of the merge table, which come from the
/// model file, not from the text being encoded.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A merge: its rank (lower merges first) and the token it makes.
#[derive(Clone, Copy, Debug)]
struct Merge {
    rank: u32,
    id: u32,
}

pub(crate) struct Bpe {
    /// The token of each single byte, or [`NONE`].
    byte_ids: [u32; 256],
    /// `(left << 32) | right` → the merge of that pair.
    merges: FxMap<u64, Merge>,
    /// Piece bytes → its tokens, in shards picked by [`shard`]. Keyed by the text being
    /// encoded, so the maps keep std's keyed SipHash (no crafted-collision slowdowns).
    cache: [RwLock<PieceCache>; CACHE_SHARDS],
}

type PieceCache = HashMap<Box<[u8]>, Box<[u32]>>;

/// The cache shard of a piece: a cheap mix of its length and first and last bytes.
fn shard(piece: &[u8]) -> usize {
    let first = piece.first().copied().unwrap_or(0) as usize;
    let last = piece.last().copied().unwrap_or(0) as usize;
    (piece.len() ^ first.wrapping_mul(7) ^ last.wrapping_mul(13)) % CACHE_SHARDS
}

fn pair(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// One symbol of a word being merged, in a doubly linked list over the word's bytes.
#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: u32,
    next: u32,
}

impl Bpe {
    /// `byte_ids[b]`: the token for byte `b` ([`NONE`] if the vocabulary lacks it, in which case
    /// that byte is dropped, as HF's BPE without an unknown token does); `merges`: `(left, right,
    /// result)` in rank order.
    pub(crate) fn new(byte_ids: [u32; 256], merges: &[(u32, u32, u32)]) -> Bpe {
        let mut map = FxMap::with_capacity_and_hasher(merges.len(), Default::default());
        for (rank, &(left, right, id)) in merges.iter().enumerate() {
            let merge = Merge {
                rank: rank as u32,
                id,
            };
            // A pair listed twice keeps its first (lowest) rank.
            map.entry(pair(left, right)).or_insert(merge);
        }
        Bpe {
            byte_ids,
            merges: map,
            cache: std::array::from_fn(|_| RwLock::new(HashMap::new())),
        }
    }

    /// Appends the tokens of one pre-tokenized piece to `out`.
    pub(crate) fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if let [b] = piece {
            let id = self.byte_ids[*b as usize];
            if id != NONE {
                out.push(id);
            }
            return;
        }
        let cache = (piece.len() <= CACHE_MAX_PIECE).then(|| &self.cache[shard(piece)]);
        if let Some(cache) = cache {
            if let Ok(cache) = cache.read() {
                if let Some(ids) = cache.get(piece) {
                    out.extend_from_slice(ids);
                    return;
                }
            }
        }
        let start = out.len();
        self.merge(piece, out);
        if let Some(cache) = cache {
            // Never wait for the lock: another thread writing just means this piece stays out.
            if let Ok(mut cache) = cache.try_write() {
                if cache.len() < CACHE_CAPACITY / CACHE_SHARDS {
                    cache.insert(piece.into(), out[start..].into());
                }
            }
        }
    }

    /// Runs BPE on `piece`'s bytes: repeatedly merges the adjacent pair of lowest rank (the
    /// leftmost one among equals) until no pair has a merge, and appends the result to `out`.
    /// A heap of candidate merges keeps this O(n log n) for long pieces.
    fn merge(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(piece.len());
        for &b in piece {
            let id = self.byte_ids[b as usize];
            if id == NONE {
                continue;
            }
            let i = symbols.len() as u32;
            symbols.push(Symbol {
                id,
                prev: if i == 0 { NONE } else { i - 1 },
                next: i + 1,
            });
        }
        let Some(last) = symbols.last_mut() else {
            return;
        };
        last.next = NONE;

        // Min-heap of (rank, left position) with the pair it was made for, to spot stale ones.
        let mut heap = BinaryHeap::with_capacity(symbols.len());
        let candidate = |symbols: &[Symbol], pos: u32| {
            let left = symbols[pos as usize];
            let right = *symbols.get(left.next as usize)?;
            let merge = self.merges.get(&pair(left.id, right.id))?;
            Some(Reverse((merge.rank, pos, left.id, right.id, merge.id)))
        };
        for pos in 0..symbols.len() as u32 {
            heap.extend(candidate(&symbols, pos));
        }
        while let Some(Reverse((_, pos, left_id, right_id, id))) = heap.pop() {
            let left = symbols[pos as usize];
            let Some(&right) = symbols.get(left.next as usize) else {
                continue;
            };
            // A merged-away symbol has id NONE; a changed neighbour makes the entry stale.
            if left.id != left_id || right.id != right_id {
                continue;
            }
            let right_pos = left.next;
            symbols[pos as usize].id = id;
            symbols[pos as usize].next = right.next;
            symbols[right_pos as usize].id = NONE;
            if let Some(after) = symbols.get_mut(right.next as usize) {
                after.prev = pos;
            }
            if left.prev != NONE {
                heap.extend(candidate(&symbols, left.prev));
            }
            heap.extend(candidate(&symbols, pos));
        }

        let mut pos = 0u32;
        while let Some(symbol) = symbols.get(pos as usize) {
            out.push(symbol.id);
            pos = symbol.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_matches_gpt2() {
        let map = byte_to_char();
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
        assert_eq!(map[b'a' as usize], 'a');
        assert_eq!(map[0xad], 'Ń');
        let distinct: std::collections::HashSet<char> = map.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }
}
