//! The statistics of the experiments report (docs/EXPERIMENTS.md, "Definitions"): intervals for
//! proportions and their difference, a bootstrap interval for a difference of medians, and the
//! sample size for a minimum detectable effect. Pure and deterministic: the bootstrap draws from
//! a fixed-seed generator, so the same rows give the same answer on every store and every run.

use super::percentile;

/// z for a two-sided 95 % interval (the 97.5th percentile of the standard normal).
pub const Z95: f64 = 1.959_963_984_540_054;
/// z for 80 % power (the 80th percentile).
pub const Z_POWER80: f64 = 0.841_621_233_572_914_3;

/// Resamples of the median bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// Wilson's score interval for `x` successes in `n` trials; `None` when `n` is 0.
pub fn wilson(x: usize, n: usize, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (n, p) = (n as f64, x as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// A difference of two proportions, treatment minus control, with its interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Difference {
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

impl Difference {
    /// The interval excludes zero.
    pub fn significant(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// Newcombe's hybrid score interval (1998, method 10) for `x1/n1 − x2/n2`, from the two Wilson
/// intervals: `d − √((p1−l1)² + (u2−p2)²)` to `d + √((u1−p1)² + (p2−l2)²)`.
pub fn newcombe(x1: usize, n1: usize, x2: usize, n2: usize, z: f64) -> Option<Difference> {
    let ((l1, u1), (l2, u2)) = (wilson(x1, n1, z)?, wilson(x2, n2, z)?);
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let d = p1 - p2;
    Some(Difference {
        difference: d,
        low: d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        high: d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    })
}

/// The relative difference `p1/p2 − 1` with the Katz log interval of the ratio; `None` when
/// either arm has no success (the ratio or its logarithm is undefined).
pub fn relative(x1: usize, n1: usize, x2: usize, n2: usize, z: f64) -> Option<Difference> {
    if x1 == 0 || x2 == 0 || n1 == 0 || n2 == 0 {
        return None;
    }
    let (a, b, c, d) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let ratio = (a / b) / (c / d);
    let se = (1.0 / a - 1.0 / b + 1.0 / c - 1.0 / d).sqrt();
    Some(Difference { difference: ratio - 1.0, low: (ratio.ln() - z * se).exp() - 1.0, high: (ratio.ln() + z * se).exp() - 1.0 })
}

/// The normal approximation behind these intervals is trusted once `n·p > 5` and `n·(1−p) > 5`.
pub fn enough_data(x: usize, n: usize) -> bool {
    x > 5 && n.saturating_sub(x) > 5
}

/// Users needed per arm to detect `baseline + mde` against `baseline` (two-sided α = 0.05, power
/// 0.8, normal approximation without continuity correction, Fleiss), with `ratio` treatment
/// users per control user: `(control, treatment)`, rounded up. `None` when `baseline + mde` is
/// not a proportion, or `mde` or `ratio` is not positive.
pub fn sample_size(baseline: f64, mde: f64, ratio: f64) -> Option<(u64, u64)> {
    let (p1, p2, k) = (baseline, baseline + mde, ratio);
    if !(0.0..=1.0).contains(&p1) || !(0.0..=1.0).contains(&p2) || mde <= 0.0 || k <= 0.0 || !k.is_finite() {
        return None;
    }
    let pbar = (p1 + k * p2) / (1.0 + k);
    let root = Z95 * (pbar * (1.0 - pbar) * (1.0 + 1.0 / k)).sqrt() + Z_POWER80 * (p1 * (1.0 - p1) + p2 * (1.0 - p2) / k).sqrt();
    let control = (root * root / (mde * mde)).ceil();
    Some((control as u64, (control * k).ceil() as u64))
}

/// splitmix64: a small, well-mixed generator for the bootstrap; the fixed seed makes the
/// interval reproducible.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻³² for any n here).
    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
}

/// The nearest-rank median of `values` (reordered in place).
fn median_in_place(values: &mut [i64]) -> i64 {
    let rank = values.len().div_ceil(2).max(1);
    *values.select_nth_unstable(rank - 1).1
}

/// A difference of medians, treatment minus control (nearest-rank medians, as every report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MedianDifference {
    pub difference: i64,
    /// The 2.5th and 97.5th nearest-rank percentiles of the bootstrap differences.
    pub low: i64,
    pub high: i64,
}

impl MedianDifference {
    pub fn significant(&self) -> bool {
        self.low > 0 || self.high < 0
    }
}

/// The percentile bootstrap interval of `median(treatment) − median(control)`: `resamples` times,
/// each arm is resampled with replacement (its own size) and the difference of the resamples'
/// medians kept. `None` when an arm is empty.
pub fn median_difference(treatment: &[i64], control: &[i64], resamples: usize, seed: u64) -> Option<MedianDifference> {
    if treatment.is_empty() || control.is_empty() {
        return None;
    }
    let (mut t, mut c) = (treatment.to_vec(), control.to_vec());
    let difference = median_in_place(&mut t) - median_in_place(&mut c);
    let mut rng = SplitMix(seed);
    let mut draw = |from: &[i64], into: &mut Vec<i64>| {
        into.clear();
        into.extend((0..from.len()).map(|_| from[rng.below(from.len())]));
    };
    let (mut bt, mut bc) = (Vec::with_capacity(t.len()), Vec::with_capacity(c.len()));
    let mut diffs: Vec<i64> = (0..resamples)
        .map(|_| {
            draw(treatment, &mut bt);
            draw(control, &mut bc);
            median_in_place(&mut bt) - median_in_place(&mut bc)
        })
        .collect();
    diffs.sort_unstable();
    // 2.5th percentile: rank ⌈0.025·B⌉; 97.5th: rank ⌈0.975·B⌉ (both nearest-rank, in tenths
    // of a percent so that integer arithmetic gives the exact rank).
    let rank = |per_mille: usize| (per_mille * diffs.len()).div_ceil(1000).clamp(1, diffs.len()) - 1;
    Some(MedianDifference { difference, low: diffs[rank(25)], high: diffs[rank(975)] })
}

/// The nearest-rank median of `values`, as the reports state it.
pub fn median(values: &[i64]) -> Option<i64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    percentile(&v, 50)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_is_reproducible_and_brackets_a_clear_shift() {
        let c: Vec<i64> = (0..200).map(|i| i * 10).collect();
        let t: Vec<i64> = c.iter().map(|v| v - 300).collect();
        let a = median_difference(&t, &c, 500, 7).expect("data");
        assert_eq!(a, median_difference(&t, &c, 500, 7).expect("data"), "same seed, same interval");
        assert_eq!(a.difference, -300);
        assert!(a.low <= -300 && a.high >= -300 && a.significant(), "{a:?}");
        assert_eq!(median_difference(&[], &c, 10, 1), None);
    }

    #[test]
    fn enough_data_needs_more_than_five_of_each_outcome() {
        assert!(!enough_data(5, 100));
        assert!(enough_data(6, 12));
        assert!(!enough_data(6, 11));
        assert!(!enough_data(0, 0));
    }

    #[test]
    fn sample_size_matches_power_prop_test() {
        // R: power.prop.test(p1 = 0.4, p2 = 0.5, power = 0.8) → n = 387.3 per group.
        assert_eq!(sample_size(0.4, 0.1, 1.0), Some((388, 388)));
        assert_eq!(sample_size(0.95, 0.1, 1.0), None);
        assert_eq!(sample_size(0.4, 0.0, 1.0), None);
    }
}
