//! A mergeable quantile sketch with relative-error guarantees (DDSketch,
//! Masson et al., VLDB 2019): values fall into logarithmic bins, so any
//! quantile is answered within `ALPHA` relative error of a true sample at
//! that rank, and sketches of different buckets merge by adding bin counts.

use serde::{Deserialize, Serialize};

/// Relative accuracy. Half the API's 1 % promise, leaving room for rank rounding.
pub const ALPHA: f64 = 0.005;
/// Magnitudes below this count as zero.
pub const MIN_MAGNITUDE: f64 = 1e-9;
/// Bins kept per sign; beyond it the smallest magnitudes are merged (DDSketch's collapsing store).
pub const MAX_BINS: usize = 4_096;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

fn index_of(magnitude: f64) -> i32 {
    (magnitude.ln() / gamma().ln()).ceil() as i32
}

/// The value reported for a bin: within `ALPHA` of everything in it.
fn value_of(index: i32) -> f64 {
    2.0 * gamma().powi(index) / (gamma() + 1.0)
}

/// Sorted `(bin index, count)` pairs for one sign.
type Bins = Vec<(i32, u64)>;

fn add_to(bins: &mut Bins, index: i32, count: u64) {
    match bins.binary_search_by_key(&index, |(i, _)| *i) {
        Ok(pos) => bins[pos].1 += count,
        Err(pos) => bins.insert(pos, (index, count)),
    }
    collapse(bins);
}

/// Keeps the [`MAX_BINS`] highest bins, the lowest of them holding the
/// counts of every bin below it.
fn collapse(bins: &mut Bins) {
    if bins.len() > MAX_BINS {
        let excess = bins.len() - MAX_BINS;
        let folded: u64 = bins[..=excess].iter().map(|(_, c)| c).sum();
        let keep = bins[excess].0;
        bins.drain(..excess);
        bins[0] = (keep, folded);
    }
}

fn merge_into(bins: &mut Bins, other: &Bins) {
    if bins.is_empty() {
        bins.clone_from(other);
        return;
    }
    let mut merged = Vec::with_capacity(bins.len() + other.len());
    let (mut a, mut b) = (bins.iter().peekable(), other.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(&&(ia, ca)), Some(&&(ib, cb))) => {
                if ia == ib {
                    merged.push((ia, ca + cb));
                    a.next();
                    b.next();
                } else if ia < ib {
                    merged.push((ia, ca));
                    a.next();
                } else {
                    merged.push((ib, cb));
                    b.next();
                }
            }
            (Some(&&x), None) => {
                merged.push(x);
                a.next();
            }
            (None, Some(&&x)) => {
                merged.push(x);
                b.next();
            }
            (None, None) => break,
        }
    }
    *bins = merged;
    collapse(bins);
}

/// The widest index range [`merge_all`] adds up in one array (512 KiB); a
/// wider one (values over hundreds of orders of magnitude) is merged pairwise.
const DENSE_SPAN: i64 = 1 << 16;

/// The sum of many bin lists, in time linear in their bins and index range.
fn merge_all<'a>(parts: impl Iterator<Item = &'a Bins> + Clone) -> Bins {
    let span = parts
        .clone()
        .filter_map(|bins| Some((bins.first()?.0, bins.last()?.0)))
        .reduce(|(lo, hi), (l, h)| (lo.min(l), hi.max(h)));
    let Some((lo, hi)) = span else { return Bins::new() };
    if i64::from(hi) - i64::from(lo) >= DENSE_SPAN {
        let mut out = Bins::new();
        parts.for_each(|part| merge_into(&mut out, part));
        return out;
    }
    let mut dense = vec![0u64; (hi - lo) as usize + 1];
    for &(index, count) in parts.flatten() {
        dense[(index - lo) as usize] += count;
    }
    let mut out: Bins =
        dense.iter().enumerate().filter(|(_, count)| **count > 0).map(|(offset, count)| (lo + offset as i32, *count)).collect();
    collapse(&mut out);
    out
}

/// Zero-based index of the nearest-rank quantile `q` among `n` sorted values.
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n.max(1)) - 1
}

/// The sketch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    zero: u64,
    positive: Bins,
    /// Bins of `|v|` for negative values.
    negative: Bins,
}

impl Sketch {
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let magnitude = value.abs();
        if magnitude < MIN_MAGNITUDE {
            self.zero += 1;
        } else if value > 0.0 {
            add_to(&mut self.positive, index_of(magnitude), 1);
        } else {
            add_to(&mut self.negative, index_of(magnitude), 1);
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        self.zero += other.zero;
        merge_into(&mut self.positive, &other.positive);
        merge_into(&mut self.negative, &other.negative);
    }

    /// The merge of many sketches. Merging them one at a time rewrites the
    /// growing result each time (a month's buckets: hundreds of times its
    /// ~900 bins); this adds every bin once.
    pub fn merged<'a>(parts: impl Iterator<Item = &'a Sketch> + Clone) -> Sketch {
        Sketch {
            zero: parts.clone().map(|p| p.zero).sum(),
            positive: merge_all(parts.clone().map(|p| &p.positive)),
            negative: merge_all(parts.map(|p| &p.negative)),
        }
    }

    pub fn count(&self) -> u64 {
        self.zero + self.positive.iter().chain(&self.negative).map(|(_, c)| c).sum::<u64>()
    }

    /// The value at quantile `q` (0 ≤ q ≤ 1) by the nearest-rank method: the
    /// smallest value with at least `q·n` values at or below it.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = nearest_rank(q, n);
        let mut seen = 0u64;
        // Most negative first: negative bins by descending magnitude.
        for &(index, count) in self.negative.iter().rev() {
            seen += count;
            if seen > rank {
                return Some(-value_of(index));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for &(index, count) in &self.positive {
            seen += count;
            if seen > rank {
                return Some(value_of(index));
            }
        }
        None
    }

    /// Number of bins in use (a measure of the encoded size).
    pub fn bins(&self) -> usize {
        self.positive.len() + self.negative.len()
    }

    /// Whether a decoded sketch is one this code could have made: bins in
    /// strictly ascending order, none empty, at most [`MAX_BINS`] per sign,
    /// counts that add up without overflow. Merging assumes all of it.
    pub fn well_formed(&self) -> bool {
        let sorted = |bins: &Bins| bins.len() <= MAX_BINS && bins.windows(2).all(|w| w[0].0 < w[1].0) && bins.iter().all(|(_, c)| *c > 0);
        let total = self.positive.iter().chain(&self.negative).try_fold(self.zero, |sum, (_, c)| sum.checked_add(*c));
        sorted(&self.positive) && sorted(&self.negative) && total.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact value at the same rank the sketch uses.
    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[nearest_rank(q, sorted.len() as u64) as usize]
    }

    #[test]
    fn nearest_rank_matches_its_definition() {
        assert_eq!(nearest_rank(0.5, 2), 0);
        assert_eq!(nearest_rank(0.95, 2), 1);
        assert_eq!(nearest_rank(0.0, 10), 0);
        assert_eq!(nearest_rank(1.0, 10), 9);
        assert_eq!(nearest_rank(0.99, 100), 98);
    }

    fn assert_close(estimate: f64, truth: f64, what: &str) {
        let error = if truth == 0.0 { estimate.abs() } else { ((estimate - truth) / truth).abs() };
        assert!(error <= 0.01, "{what}: estimate {estimate} vs {truth} ({:.3}% off)", error * 100.0);
    }

    /// A small deterministic generator, so the test needs no dependency.
    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn quantiles_within_one_percent_on_skewed_and_signed_data() {
        let mut seed = 42;
        let datasets: Vec<Vec<f64>> = vec![
            (0..10_000).map(|_| lcg(&mut seed) * 100.0).collect(),
            (0..10_000).map(|_| (-(1.0 - lcg(&mut seed)).ln()) * 250.0).collect(),
            (0..10_000).map(|_| (lcg(&mut seed) - 0.5) * 2_000.0).collect(),
            (0..1_000).map(|i| if i % 3 == 0 { 0.0 } else { i as f64 * 1e6 }).collect(),
        ];
        for data in datasets {
            let mut sketch = Sketch::default();
            data.iter().for_each(|v| sketch.add(*v));
            let mut sorted = data.clone();
            sorted.sort_by(f64::total_cmp);
            for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
                assert_close(sketch.quantile(q).unwrap(), exact(&sorted, q), &format!("q={q}"));
            }
        }
    }

    #[test]
    fn merging_equals_adding_everything_to_one_sketch() {
        let mut seed = 7;
        let values: Vec<f64> = (0..5_000).map(|_| lcg(&mut seed) * 1_000.0 - 100.0).collect();
        let mut whole = Sketch::default();
        values.iter().for_each(|v| whole.add(*v));
        let mut merged = Sketch::default();
        for chunk in values.chunks(97) {
            let mut part = Sketch::default();
            chunk.iter().for_each(|v| part.add(*v));
            merged.merge(&part);
        }
        assert_eq!(merged, whole);
        assert_eq!(merged.count(), 5_000);
    }

    #[test]
    fn merging_many_at_once_equals_merging_one_at_a_time() {
        let mut seed = 11;
        let mut value = |scale: f64| (lcg(&mut seed) - 0.3) * scale;
        let cases: Vec<Vec<Vec<f64>>> = vec![
            vec![],
            vec![vec![], vec![0.0, 0.0], vec![]],
            (0..200).map(|i| (0..(i % 7) * 40).map(|_| value(100.0)).collect()).collect(),
            // Wider than the dense range: merged pairwise.
            vec![vec![1e-300, 2e-300], vec![1e300, -1e300], vec![5.0]],
            // More distinct bins than kept: collapsed the same way.
            (-300..300).map(|e| (1..20).map(|m| m as f64 * 10f64.powi(e) / 1e100).collect()).collect(),
        ];
        for parts in cases {
            let sketches: Vec<Sketch> = parts
                .iter()
                .map(|values| {
                    let mut sketch = Sketch::default();
                    values.iter().for_each(|v| sketch.add(*v));
                    sketch
                })
                .collect();
            let mut one_at_a_time = Sketch::default();
            sketches.iter().for_each(|s| one_at_a_time.merge(s));
            assert_eq!(Sketch::merged(sketches.iter()), one_at_a_time);
        }
    }

    #[test]
    fn empty_and_single_value_sketches() {
        assert_eq!(Sketch::default().quantile(0.5), None);
        let mut one = Sketch::default();
        one.add(85.5);
        assert_close(one.quantile(0.99).unwrap(), 85.5, "single");
        one.add(f64::NAN);
        assert_eq!(one.count(), 1);
    }

    #[test]
    fn bins_stay_bounded_on_huge_ranges() {
        let mut sketch = Sketch::default();
        for e in -300..300 {
            for m in 1..20 {
                sketch.add(m as f64 * 10f64.powi(e));
            }
        }
        assert!(sketch.bins() <= MAX_BINS);
        // The high quantiles, where bins were not folded, stay accurate.
        let mut sorted: Vec<f64> = (-300..300).flat_map(|e| (1..20).map(move |m| m as f64 * 10f64.powi(e))).collect();
        sorted.sort_by(f64::total_cmp);
        assert_close(sketch.quantile(0.99).unwrap(), exact(&sorted, 0.99), "p99 after folding");
    }
}
