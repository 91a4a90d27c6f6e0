//! The damped Gauss-Newton preconditioner in sketch space, as a Cholesky factor.
//!
//! Everything here runs on one thread in f64 and in a fixed order, so that every validator
//! gets the same bits from the same sketches.

/// A lower-triangular `L` with `L Lᵀ = F`, row-major `(k, k)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    pub k: usize,
    pub l: Vec<f64>,
}

/// The second moment `F = Σ g gᵀ` of sketches, accumulated one at a time (lower triangle).
pub struct Moment {
    k: usize,
    sum: Vec<f64>,
    count: u64,
}

impl Moment {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            sum: vec![0.0; k * k],
            count: 0,
        }
    }

    pub fn add(&mut self, g: &[f64]) {
        debug_assert_eq!(g.len(), self.k);
        for (i, &gi) in g.iter().enumerate() {
            if gi == 0.0 {
                continue;
            }
            let row = &mut self.sum[i * self.k..][..=i];
            for (s, &gj) in row.iter_mut().zip(g) {
                *s += gi * gj;
            }
        }
        self.count += 1;
    }

    /// The factor of `F / n + λ I`, with `λ = damping · tr(F / n) / k` (damping relative to
    /// the mean eigenvalue, so the same setting suits any gradient scale), or of `I` when
    /// every sketch was zero.
    pub fn factor(mut self, damping: f64) -> Factor {
        let k = self.k;
        let n = self.count.max(1) as f64;
        self.sum.iter_mut().for_each(|s| *s /= n);
        let trace: f64 = (0..k).map(|i| self.sum[i * k + i]).sum();
        let lambda = if trace > 0.0 {
            damping * trace / k as f64
        } else {
            1.0
        };
        (0..k).for_each(|i| self.sum[i * k + i] += lambda);
        cholesky(k, self.sum)
    }
}

/// Cholesky–Banachiewicz on the lower triangle of a symmetric positive definite matrix.
fn cholesky(k: usize, mut a: Vec<f64>) -> Factor {
    for i in 0..k {
        for j in 0..=i {
            let (upper, lower) = a.split_at_mut(i * k);
            let row_i = &lower[..k];
            let row_j = if j == i { row_i } else { &upper[j * k..][..k] };
            let dot: f64 = row_i[..j].iter().zip(&row_j[..j]).map(|(x, y)| x * y).sum();
            let value = row_i[j] - dot;
            let out = if i == j {
                // Damping keeps the diagonal positive; guard against rounding all the same.
                value.max(f64::MIN_POSITIVE).sqrt()
            } else {
                value / upper[j * k + j]
            };
            a[i * k + j] = out;
        }
        a[i * k + i + 1..(i + 1) * k]
            .iter_mut()
            .for_each(|x| *x = 0.0);
    }
    Factor { k, l: a }
}

impl Factor {
    /// `x` with `L Lᵀ x = b`.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        let k = self.k;
        let mut y = b.to_vec();
        for i in 0..k {
            let row = &self.l[i * k..][..k];
            let dot: f64 = row[..i].iter().zip(&y[..i]).map(|(l, y)| l * y).sum();
            y[i] = (y[i] - dot) / row[i];
        }
        for i in (0..k).rev() {
            let mut dot = 0.0;
            for (j, yj) in y.iter().enumerate().skip(i + 1) {
                dot += self.l[j * k + i] * yj;
            }
            y[i] = (y[i] - dot) / self.l[i * k + i];
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solving_with_the_factor_inverts_the_damped_moment() {
        let k = 6;
        let mut moment = Moment::new(k);
        let sketches: Vec<Vec<f64>> = (0..4)
            .map(|s| (0..k).map(|i| ((s * 7 + i * 3) % 5) as f64 - 2.0).collect())
            .collect();
        for g in &sketches {
            moment.add(g);
        }
        let factor = moment.factor(0.1);
        // Rebuild F + λI from the sketches by hand and check F x = b.
        let mut f = vec![0.0; k * k];
        for g in &sketches {
            for i in 0..k {
                for j in 0..k {
                    f[i * k + j] += g[i] * g[j] / 4.0;
                }
            }
        }
        let trace: f64 = (0..k).map(|i| f[i * k + i]).sum();
        (0..k).for_each(|i| f[i * k + i] += 0.1 * trace / k as f64);
        let b: Vec<f64> = (0..k).map(|i| i as f64 - 2.5).collect();
        let x = factor.solve(&b);
        for i in 0..k {
            let fx: f64 = (0..k).map(|j| f[i * k + j] * x[j]).sum();
            assert!((fx - b[i]).abs() < 1e-9, "row {i}: {fx} vs {}", b[i]);
        }
    }

    #[test]
    fn no_gradient_at_all_gives_the_identity() {
        let mut moment = Moment::new(3);
        moment.add(&[0.0, 0.0, 0.0]);
        let x = moment.factor(0.1).solve(&[1.0, -2.0, 3.0]);
        assert_eq!(x, vec![1.0, -2.0, 3.0]);
    }
}
