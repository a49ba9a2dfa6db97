//! The stopping rule's bootstrap (docs/protocol.md, "Stopping rule").
//!
//! Every runner (Python, Rust, C++) computes it the same way, so a given list
//! of samples gives the same decision in every language:
//!
//! - random numbers: SplitMix64 seeded with [`SEED`] (`0x656d626564706572`,
//!   ASCII "embedper") afresh at every check;
//! - [`RESAMPLES`] = 1000 resamples, drawn one after the other, each of n
//!   indices `next() mod n` (u64 arithmetic) into the samples in loop order;
//! - the median of a resample (and of the samples): the middle value, the mean
//!   of the two middle values (as f64: `(a + b) / 2`) when n is even;
//! - CI: the B medians sorted ascending, low = m[floor(0.025·B)] = m[25],
//!   high = m[ceil(0.975·B) − 1] = m[974];
//! - the CI is reached when `low >= median * (1 - r)` and
//!   `high <= median * (1 + r)` (f64, r = `timing.target_ci`);
//! - checks at n ≥ max(min_calls, 10) calls, the next one at ceil(1.1·n),
//!   computed in integers as ceil(11·n / 10) (see [`next_check_after`]).

/// SplitMix64 seed of every check: the bytes of "embedper".
pub const SEED: u64 = 0x656d_6265_6470_6572;
/// Number of bootstrap resamples B.
pub const RESAMPLES: usize = 1000;
/// The first check needs at least this many samples.
pub const MIN_CHECK_CALLS: usize = 10;

/// SplitMix64 (Steele, Lea, Flood 2014; the generator of `java.util.SplittableRandom`).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Median of `v` (reordered in place): the middle value, or the mean of the
/// two middle values when the length is even. `None` for an empty slice.
pub fn median_in_place(v: &mut [u64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (left, &mut upper, _) = v.select_nth_unstable(mid);
    if n % 2 == 1 {
        Some(upper as f64)
    } else {
        // The lower middle is the largest of the left part.
        let lower = *left.iter().max().expect("n >= 2");
        Some((lower as f64 + upper as f64) / 2.0)
    }
}

/// Median of `samples` (not modified).
pub fn median(samples: &[u64]) -> Option<f64> {
    median_in_place(&mut samples.to_vec())
}

/// The 95% percentile bootstrap CI of the median of `samples`, with a
/// generator seeded with [`SEED`]. Returns (low, high); `None` when empty.
pub fn median_ci(samples: &[u64]) -> Option<(f64, f64)> {
    let n = samples.len();
    if n == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(SEED);
    let mut resample = vec![0u64; n];
    let mut medians = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        for slot in resample.iter_mut() {
            *slot = samples[(rng.next_u64() % n as u64) as usize];
        }
        medians.push(median_in_place(&mut resample).expect("n > 0"));
    }
    medians.sort_by(f64::total_cmp);
    let low_index = RESAMPLES / 40; // floor(0.025·B)
    let high_index = (RESAMPLES * 975).div_ceil(1000) - 1; // ceil(0.975·B) − 1
    Some((medians[low_index], medians[high_index]))
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// `low >= median·(1−r)` and `high <= median·(1+r)`.
    pub reached: bool,
}

/// One check of the stopping rule on `samples` with relative half-width `r`.
pub fn check(samples: &[u64], r: f64) -> Option<Check> {
    let median = median(samples)?;
    let (low, high) = median_ci(samples)?;
    let reached = low >= median * (1.0 - r) && high <= median * (1.0 + r);
    Some(Check { median, low, high, reached })
}

/// Where the first check happens: max(min_calls, 10) calls.
pub fn first_check(min_calls: usize) -> usize {
    min_calls.max(MIN_CHECK_CALLS)
}

/// Where the check after one at `n` calls happens: ceil(1.1·n), computed
/// exactly as ceil(11·n / 10) in integers (the float product 1.1·10 is
/// 11.000000000000002, whose ceiling would be 12). Always > n for n ≥ 1.
pub fn next_check_after(n: usize) -> usize {
    (n.saturating_mul(11)).div_ceil(10).max(n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_outputs() {
        // Seed 0: the published reference values of SplitMix64.
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(g.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(g.next_u64(), 0x06c4_5d18_8009_454f);
        // The protocol's seed: the numbers the Python and C++ runners must reproduce.
        let mut g = SplitMix64::new(SEED);
        let first: Vec<u64> = (0..3).map(|_| g.next_u64()).collect();
        assert_eq!(first, SEED_FIRST_OUTPUTS);
    }

    /// The first three outputs of SplitMix64 seeded with [`SEED`].
    const SEED_FIRST_OUTPUTS: [u64; 3] = [0x6116_6608_1988_fd79, 0x98d8_357e_2998_fad4, 0xdff7_efd7_5f90_528b];

    /// Cross-language golden cases (also computed by an independent Python
    /// implementation): the Python and C++ bootstraps must give the same numbers.
    #[test]
    fn golden_cases() {
        // A: n = 37 (odd), s_i = 1000 + (7919·i mod 101).
        let a: Vec<u64> = (0..37u64).map(|i| 1000 + (i * 7919 % 101)).collect();
        let c = check(&a, 0.016).unwrap();
        assert_eq!((c.median, c.low, c.high), (1050.0, 1034.0, 1066.0));
        assert!(c.reached);
        assert!(!check(&a, 0.015).unwrap().reached);
        // B: n = 24 (even), s_i = 1_000_000 + 100·((31·i² + 7) mod 997).
        let b: Vec<u64> = (0..24u64).map(|i| 1_000_000 + ((i * i * 31 + 7) % 997) * 100).collect();
        let c = check(&b, 0.023).unwrap();
        assert_eq!((c.median, c.low, c.high), (1036450.0, 1012850.0, 1052400.0));
        assert!(c.reached);
        assert!(!check(&b, 0.022).unwrap().reached);
    }

    #[test]
    fn seed_is_embedper() {
        assert_eq!(SEED.to_be_bytes(), *b"embedper");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7]), Some(7.0));
        assert_eq!(median(&[9, 1]), Some(5.0));
        assert_eq!(median(&[3, 1, 2]), Some(2.0));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2.5));
        assert_eq!(median(&[5, 5, 1, 5]), Some(5.0));
        assert_eq!(median(&[u64::MAX, u64::MAX]), Some(u64::MAX as f64));
    }

    #[test]
    fn check_schedule() {
        assert_eq!(first_check(1), 10);
        assert_eq!(first_check(30), 30);
        let mut n = first_check(5);
        let mut at = vec![n];
        for _ in 0..8 {
            n = next_check_after(n);
            at.push(n);
        }
        assert_eq!(at, [10, 11, 13, 15, 17, 19, 21, 24, 27]);
        assert_eq!(next_check_after(100), 110);
        assert_eq!(next_check_after(101), 112);
        assert_eq!(next_check_after(1), 2);
    }

    #[test]
    fn constant_samples_reach_at_once() {
        let s = vec![1000u64; 10];
        let c = check(&s, 0.01).unwrap();
        assert_eq!((c.median, c.low, c.high), (1000.0, 1000.0, 1000.0));
        assert!(c.reached);
        // Width 0 is within any r, however small.
        assert!(check(&s, 1e-12).unwrap().reached);
    }

    #[test]
    fn wide_two_valued_sample_never_reaches() {
        // Half 1, half 1000 (n even): the medians of resamples are 1, 500.5 or
        // 1000, and the CI spans [1, 1000] around a median of 500.5.
        for n in [10usize, 11, 12, 50, 200] {
            let s: Vec<u64> = (0..n).map(|i| if i % 2 == 0 { 1 } else { 1000 }).collect();
            let c = check(&s, 0.5).unwrap();
            assert_eq!((c.low, c.high), (1.0, 1000.0), "n={n}");
            assert!(!c.reached, "n={n}");
        }
    }

    #[test]
    fn one_outlier_in_many_reaches() {
        // 99 samples of 100 and one of 10^9: every resample's median is 100
        // unless more than half of it is the outlier (never, in practice).
        let mut s = vec![100u64; 99];
        s.push(1_000_000_000);
        let c = check(&s, 0.01).unwrap();
        assert_eq!((c.median, c.low, c.high), (100.0, 100.0, 100.0));
        assert!(c.reached);
    }

    #[test]
    fn bootstrap_is_deterministic_and_hand_checkable() {
        // n = 2, samples [10, 20]: each resample is two draws; the medians are
        // 10 (both index 0), 20 (both 1) or 15. With 1000 resamples the 2.5%
        // and 97.5% points are 10 and 20.
        let c = check(&[10, 20], 0.1).unwrap();
        assert_eq!((c.median, c.low, c.high), (15.0, 10.0, 20.0));
        assert!(!c.reached);
        // The very first resample of [10, 20] uses the first two outputs mod 2.
        let mut g = SplitMix64::new(SEED);
        let (a, b) = (g.next_u64() % 2, g.next_u64() % 2);
        assert_eq!((a, b), (SEED_FIRST_OUTPUTS[0] % 2, SEED_FIRST_OUTPUTS[1] % 2));
        // Same input, same answer (re-seeded every time).
        let s: Vec<u64> = (0..37).map(|i| 1000 + (i * 7919 % 101)).collect();
        assert_eq!(check(&s, 0.02), check(&s, 0.02));
    }
}
