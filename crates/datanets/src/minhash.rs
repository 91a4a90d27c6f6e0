//! Near-duplicate detection: MinHash signatures of records' text, indexed with LSH.
//!
//! A record's text is lower-cased and split into words; its shingles are the runs of three
//! consecutive words (or the whole text when it is shorter). Each of [`PERMUTATIONS`] hash
//! functions maps a shingle to 32 bits, and the signature keeps each function's minimum, so
//! the share of positions where two signatures agree estimates the Jaccard similarity of
//! their shingle sets. LSH splits the signature into bands; records that agree on a whole band
//! become candidates, and candidates are confirmed by their estimated similarity against the
//! threshold. The band shape is chosen so that the S-curve's midpoint `(1/b)^(1/r)` sits just
//! below the threshold, which favours recall; confirmation restores precision.

use std::collections::HashMap;

/// Hash functions per signature.
pub const PERMUTATIONS: usize = 128;

/// A record's MinHash signature.
pub type Signature = [u32; PERMUTATIONS];

/// The hash functions' fixed keys and odd multipliers, derived from a constant seed so that
/// signatures mean the same in every process and version. Function `i` maps a 32-bit
/// shingle hash `x` to `xorshift((x ^ key[i]) * mul[i])`, a permutation of the 32-bit values
/// (each step is a bijection), computed in 32-bit lanes that the compiler vectorises.
struct Params {
    key: [u32; PERMUTATIONS],
    mul: [u32; PERMUTATIONS],
}

fn parameters() -> &'static Params {
    static PARAMS: std::sync::OnceLock<Params> = std::sync::OnceLock::new();
    PARAMS.get_or_init(|| {
        let mut state = 0x6f70_656e_6c65_6467u64; // "openledg"
        let key = std::array::from_fn(|_| splitmix(&mut state) as u32);
        let mul = std::array::from_fn(|_| splitmix(&mut state) as u32 | 1);
        Params { key, mul }
    })
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix(*state)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 64-bit hashes of `text`'s words, in order. A word is a run of ASCII letters and
/// digits or of non-ASCII bytes (so letters of any script stay inside words); ASCII letters
/// are folded to lower case. FNV-1a over the bytes, then mixed.
fn word_hashes(text: &str, out: &mut Vec<u64>) {
    const START: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h = START;
    let mut in_word = false;
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b >= 0x80 {
            h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
            in_word = true;
        } else if in_word {
            out.push(mix(h));
            h = START;
            in_word = false;
        }
    }
    if in_word {
        out.push(mix(h));
    }
}

/// The signature of `text`, or `None` when it has no words (empty records are not compared).
pub fn signature(text: &str) -> Option<Signature> {
    let mut words = Vec::with_capacity(text.len() / 5 + 1);
    word_hashes(text, &mut words);
    if words.is_empty() {
        return None;
    }
    let mut sig = [u32::MAX; PERMUTATIONS];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has just been found to support AVX2.
        unsafe { min_hashes_avx2(&words, &mut sig) };
        return Some(sig);
    }
    min_hashes(&words, &mut sig);
    Some(sig)
}

/// Folds the shingles of `words` into `sig`.
#[inline(always)]
fn min_hashes(words: &[u64], sig: &mut Signature) {
    let params = parameters();
    let mut add = |shingle: u64| {
        let x = (shingle ^ (shingle >> 32)) as u32;
        for ((slot, key), mul) in sig.iter_mut().zip(&params.key).zip(&params.mul) {
            let v = (x ^ key).wrapping_mul(*mul);
            *slot = (*slot).min(v ^ (v >> 15));
        }
    };
    if words.len() < 3 {
        add(words.iter().fold(0, |acc, w| mix(acc ^ w)));
    } else {
        for w in words.windows(3) {
            add(mix(w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42)));
        }
    }
}

/// [`min_hashes`] compiled for AVX2, whose 8-lane 32-bit multiply the portable build lacks
/// (about twice as fast on the whole validation pipeline).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn min_hashes_avx2(words: &[u64], sig: &mut Signature) {
    min_hashes(words, sig)
}

/// The estimated Jaccard similarity of two signatures' sets.
pub fn similarity(a: &Signature, b: &Signature) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / PERMUTATIONS as f64
}

/// The best match of a query: the owner of the most similar indexed record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// What the matching record belongs to (a contribution id).
    pub owner: u64,
    pub similarity: f64,
}

/// An LSH index of signatures, each tagged with its owner.
#[derive(Debug)]
pub struct LshIndex {
    threshold: f64,
    bands: usize,
    rows: usize,
    buckets: HashMap<u64, Vec<u32>>,
    entries: Vec<(u64, Signature)>,
}

impl LshIndex {
    /// An empty index that reports matches at or above `threshold` (0 < threshold ≤ 1).
    pub fn new(threshold: f64) -> Self {
        let (bands, rows) = band_shape(threshold);
        Self {
            threshold,
            bands,
            rows,
            buckets: HashMap::new(),
            entries: Vec::new(),
        }
    }

    /// How many signatures are indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn band_key(&self, band: usize, sig: &Signature) -> u64 {
        let rows = &sig[band * self.rows..(band + 1) * self.rows];
        rows.iter()
            .fold(mix(band as u64 + 1), |h, v| mix(h ^ u64::from(*v)))
    }

    /// Adds a signature owned by `owner`.
    pub fn insert(&mut self, owner: u64, sig: Signature) {
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 records");
        for band in 0..self.bands {
            let key = self.band_key(band, &sig);
            self.buckets.entry(key).or_default().push(index);
        }
        self.entries.push((owner, sig));
    }

    /// The most similar indexed record at or above the threshold, if any.
    pub fn query(&self, sig: &Signature) -> Option<Match> {
        let mut best: Option<Match> = None;
        let mut seen = Vec::new();
        for band in 0..self.bands {
            let Some(bucket) = self.buckets.get(&self.band_key(band, sig)) else {
                continue;
            };
            for &index in bucket {
                if seen.contains(&index) {
                    continue;
                }
                seen.push(index);
                let (owner, other) = &self.entries[index as usize];
                let s = similarity(sig, other);
                if s >= self.threshold && best.is_none_or(|b| s > b.similarity) {
                    best = Some(Match {
                        owner: *owner,
                        similarity: s,
                    });
                }
            }
        }
        best
    }
}

/// Bands × rows = [`PERMUTATIONS`], with the S-curve midpoint at or just below `threshold`.
fn band_shape(threshold: f64) -> (usize, usize) {
    let shapes = [(128, 1), (64, 2), (32, 4), (16, 8), (8, 16), (4, 32)];
    let midpoint = |(b, r): (usize, usize)| (1.0 / b as f64).powf(1.0 / r as f64);
    shapes
        .into_iter()
        .filter(|s| midpoint(*s) <= threshold)
        .max_by(|a, b| midpoint(*a).total_cmp(&midpoint(*b)))
        .unwrap_or((128, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "the quick brown fox jumps over the lazy dog while the farmer sleeps \
        under the old oak tree and the cows wander slowly across the green meadow at dawn";

    #[test]
    fn near_copies_match_and_unrelated_text_does_not() {
        let mut index = LshIndex::new(0.7);
        index.insert(7, signature(BASE).unwrap());
        index.insert(8, signature("completely different words about solidity reentrancy guards and storage layout in proxies").unwrap());
        // One word changed, case and punctuation changed.
        let near = BASE.replace("lazy", "sleepy").to_uppercase() + "!";
        let m = index.query(&signature(&near).unwrap()).unwrap();
        assert_eq!(m.owner, 7);
        assert!(m.similarity > 0.7 && m.similarity < 1.0, "{m:?}");
        assert_eq!(
            index.query(&signature(BASE).unwrap()).unwrap().similarity,
            1.0
        );
        let other = signature(
            "a medical note about blood pressure readings taken every morning for two weeks",
        )
        .unwrap();
        assert_eq!(index.query(&other), None);
        assert_eq!(signature(" ,. "), None);
    }

    #[test]
    fn band_shapes_sit_below_the_threshold() {
        assert_eq!(band_shape(0.8), (16, 8));
        assert_eq!(band_shape(0.5), (32, 4));
        assert_eq!(band_shape(0.95), (8, 16));
    }
}
