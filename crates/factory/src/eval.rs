//! The figures a finished job is judged by: held-out loss, perplexity, and ROUGE-L of greedy
//! answers against the held-out references.
//!
//! ROUGE-L follows Lin (2004) as the `rouge-score` package computes it: both texts lowercased,
//! every character that is not an ASCII letter or digit made a space, split on whitespace;
//! precision and recall are the longest common subsequence over the candidate's and the
//! reference's token counts, and F is their harmonic mean (β = 1). An empty side scores 0.

use serde::{Deserialize, Serialize};

/// ROUGE-L of one candidate against one reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RougeL {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// The tokens ROUGE compares.
fn tokens(text: &str) -> Vec<String> {
    let lowered: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    lowered.split_whitespace().map(str::to_string).collect()
}

/// The length of the longest common subsequence, in O(|a|·|b|) time and O(|b|) memory.
fn lcs(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// ROUGE-L of `candidate` against `reference`.
pub fn rouge_l(candidate: &str, reference: &str) -> RougeL {
    let (c, r) = (tokens(candidate), tokens(reference));
    if c.is_empty() || r.is_empty() {
        return RougeL {
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
        };
    }
    let common = lcs(&c, &r) as f64;
    let precision = common / c.len() as f64;
    let recall = common / r.len() as f64;
    let f1 = if common == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    RougeL {
        precision,
        recall,
        f1,
    }
}

/// The mean ROUGE-L F over (candidate, reference) pairs; `None` for no pairs.
pub fn mean_rouge_l<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<f64> {
    let scores: Vec<f64> = pairs.into_iter().map(|(c, r)| rouge_l(c, r).f1).collect();
    (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
}

/// Perplexity from a mean per-token cross-entropy in nats.
pub fn perplexity(mean_loss: f64) -> f64 {
    mean_loss.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn rouge_l_matches_hand_worked_values() {
        // Lin (2004)'s example: S2 shares "police … the gunman" (3 of 4 tokens) in order.
        let s = rouge_l("police kill the gunman", "police killed the gunman");
        close(s.precision, 0.75);
        close(s.recall, 0.75);
        close(s.f1, 0.75);
        // S3 has the same words as S2 out of order: only "the gunman" is a common subsequence.
        close(
            rouge_l("the gunman kill police", "police killed the gunman").f1,
            0.5,
        );
        // Dropping one word: P = 5/5, R = 5/6, F = 2·(5/6)/(11/6) = 10/11.
        let s = rouge_l("The cat on the mat.", "the cat sat on the mat");
        close(s.precision, 1.0);
        close(s.recall, 5.0 / 6.0);
        close(s.f1, 10.0 / 11.0);
        // Punctuation and case do not count; nothing in common scores 0.
        close(rouge_l("Hello, WORLD!", "hello world").f1, 1.0);
        close(rouge_l("alpha beta", "gamma delta").f1, 0.0);
        close(rouge_l("", "anything").f1, 0.0);
        close(rouge_l("anything", "  ").f1, 0.0);
    }

    #[test]
    fn lcs_is_the_longest_common_subsequence() {
        let t = |s: &str| tokens(s);
        assert_eq!(lcs(&t("a b c d e f"), &t("a c e x f")), 4);
        assert_eq!(lcs(&t("a a a"), &t("a a")), 2);
        assert_eq!(lcs(&t("x y"), &t("")), 0);
    }

    #[test]
    fn the_mean_and_perplexity() {
        close(mean_rouge_l([("a b", "a b"), ("a", "b")]).unwrap(), 0.5);
        assert_eq!(mean_rouge_l(std::iter::empty()), None);
        // A uniform guess among 4 tokens costs ln 4 nats: perplexity 4.
        close(perplexity(4f64.ln()), 4.0);
        close(perplexity(0.0), 1.0);
    }
}
