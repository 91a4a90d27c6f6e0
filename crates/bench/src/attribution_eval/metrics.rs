//! Retrieval and correlation metrics, and the BM25 baseline.

use std::collections::{BTreeMap, HashMap};

/// The owner's rank among `candidates` by score, counting ties against it (a score of zero
/// everywhere ranks last, not first).
pub fn rank(scores: &BTreeMap<u64, f64>, candidates: &[u64], owner: u64) -> usize {
    let own = scores.get(&owner).copied().unwrap_or(0.0);
    1 + candidates
        .iter()
        .filter(|&&c| c != owner)
        .filter(|&&c| scores.get(&c).copied().unwrap_or(0.0) >= own)
        .count()
}

/// The fraction of `positives` among the `k` highest-scored items (ties to lower index),
/// out of at most `k`.
pub fn recall_at(scores: &[f64], positives: &[bool], k: usize) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let total = positives.iter().filter(|&&p| p).count().min(k);
    if total == 0 {
        return 0.0;
    }
    let hits = order.iter().take(k).filter(|&&i| positives[i]).count();
    hits as f64 / total as f64
}

/// The area under the ROC curve of `scores` separating `positives` (ties count one half).
pub fn auc(scores: &[f64], positives: &[bool]) -> f64 {
    let (mut pairs, mut wins) = (0f64, 0f64);
    for (i, &p) in positives.iter().enumerate() {
        if !p {
            continue;
        }
        for (j, &n) in positives.iter().enumerate() {
            if n {
                continue;
            }
            pairs += 1.0;
            wins += match scores[i].total_cmp(&scores[j]) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    if pairs == 0.0 {
        0.5
    } else {
        wins / pairs
    }
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            out[o] = mean;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation (0 when either side is constant).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma).powi(2);
        vb += (y - mb).powi(2);
    }
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

/// Lowercased runs of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Okapi BM25 (k1 = 1.2, b = 0.75) over documents of words.
pub struct Bm25 {
    docs: Vec<HashMap<String, f64>>,
    lengths: Vec<f64>,
    average: f64,
    df: HashMap<String, f64>,
}

impl Bm25 {
    pub fn new(documents: &[Vec<String>]) -> Self {
        let mut df: HashMap<String, f64> = HashMap::new();
        let docs: Vec<HashMap<String, f64>> = documents
            .iter()
            .map(|d| {
                let mut tf = HashMap::new();
                for w in d {
                    *tf.entry(w.clone()).or_insert(0.0) += 1.0;
                }
                for w in tf.keys() {
                    *df.entry(w.clone()).or_insert(0.0) += 1.0;
                }
                tf
            })
            .collect();
        let lengths: Vec<f64> = documents.iter().map(|d| d.len() as f64).collect();
        let average = lengths.iter().sum::<f64>() / lengths.len().max(1) as f64;
        Self {
            docs,
            lengths,
            average,
            df,
        }
    }

    pub fn scores(&self, query: &[String]) -> Vec<f64> {
        let n = self.docs.len() as f64;
        let (k1, b) = (1.2, 0.75);
        self.docs
            .iter()
            .zip(&self.lengths)
            .map(|(tf, &len)| {
                query
                    .iter()
                    .map(|w| {
                        let Some(&f) = tf.get(w) else { return 0.0 };
                        let df = self.df[w];
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        idf * f * (k1 + 1.0) / (f + k1 * (1.0 - b + b * len / self.average))
                    })
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_values() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        assert_eq!(auc(&[0.9, 0.1, 0.5], &[true, false, false]), 1.0);
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), 0.5);
        assert_eq!(recall_at(&[0.1, 0.9, 0.8], &[true, true, false], 2), 0.5);
        let scores = BTreeMap::from([(1, 0.0), (2, 0.0)]);
        assert_eq!(rank(&scores, &[1, 2, 3], 1), 3);
        let bm = Bm25::new(&[words("the red fox"), words("the blue whale")]);
        let s = bm.scores(&words("red"));
        assert!(s[0] > 0.0 && s[1] == 0.0);
    }
}
