//! The perturbation table (ptable) of cell-key perturbation: for a cell's
//! count and key, how much to add to the count before it is thresholded
//! and rounded.
//!
//! # How the table is derived
//!
//! The table has one parameter, D (`max_perturbation`, 2 by default). For
//! every count above D the perturbation is `B - D`, where B is binomially
//! distributed with 2D trials of one half; the cell key picks the value by
//! the inverse of the cumulative distribution, as in the ABS TableBuilder
//! and the ONS's Census 2021 tables: the key's fraction of 1 falls into one
//! of 2D + 1 consecutive intervals whose widths are the probabilities.
//! With the default D = 2 the table is:
//!
//! | perturbation     | -2   | -1   | 0    | +1   | +2   |
//! |------------------|------|------|------|------|------|
//! | probability      | 1/16 | 4/16 | 6/16 | 4/16 | 1/16 |
//! | cell key in      | [0, 1/16) | [1/16, 5/16) | [5/16, 11/16) | [11/16, 15/16) | [15/16, 1) |
//!
//! Its properties, each held by a test:
//!
//! - **Bounded.** No count moves by more than D.
//! - **Unbiased.** The perturbation's mean is 0, so sums of many cells are
//!   not pushed up or down; its variance is D / 2 (1 by default).
//! - **Zero is never perturbed**, so a published 0 is a true 0 (a count
//!   that is not there cannot be protected by inventing one).
//! - **Nothing becomes zero.** Counts from 1 to D are not perturbed either:
//!   a row for them that kept the mean at 0 would have to move some of them
//!   to 0 or below. They are far under any threshold above 2D and so are
//!   suppressed whatever their perturbation; above D every count keeps at
//!   least 1.
//! - **No small counts.** The table itself may give a count from 1 to 9;
//!   [`publish()`](crate::disclosure::publish()) thresholds after perturbing, so none is
//!   published.
//!
//! The table's resolution is 4^D parts of 1 (16 by default), coarser than
//! the keys' 2^32, so every interval's share of keys is exact.

use super::CellKey;

/// The perturbation table for one D; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerturbationTable {
    max: u32,
    /// The binomial weights C(2D, k), k = 0 ..= 2D, for perturbations
    /// -D ..= D; they sum to 4^D.
    weights: Vec<u64>,
}

/// Why a perturbation table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PtableError {
    #[error("max_perturbation must be at most {max}, got {got}")]
    TooLarge { max: u32, got: u32 },
}

impl PerturbationTable {
    /// The largest D: the table's 4^D parts must not be finer than the keys'
    /// 2^32, and a larger D would blur every figure for no purpose.
    pub const MAX_D: u32 = 8;

    /// The table for D = `max`, as the module documentation derives it.
    pub fn binomial(max: u32) -> Result<Self, PtableError> {
        if max > Self::MAX_D {
            return Err(PtableError::TooLarge {
                max: Self::MAX_D,
                got: max,
            });
        }
        let trials = u64::from(2 * max);
        let mut weights = vec![1u64];
        for k in 1..=trials {
            let previous = weights[weights.len() - 1];
            weights.push(previous * (trials - k + 1) / k);
        }
        Ok(Self { max, weights })
    }

    /// D: no count moves by more than this.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The row of every count above D: `(perturbation, weight)` pairs, the
    /// weights out of [`Self::parts`].
    pub fn row(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        let max = i64::from(self.max);
        (-max..=max).zip(self.weights.iter().copied())
    }

    /// How many equal parts of 1 the weights count: 4^D.
    pub fn parts(&self) -> u64 {
        1 << (2 * self.max)
    }

    /// The perturbation of a cell of `count` units whose key is `key`.
    pub fn perturbation(&self, count: u64, key: CellKey) -> i64 {
        if count <= u64::from(self.max) {
            return 0;
        }
        // The key's fraction of 1 in parts of 1/4^D, rounded down.
        let part = (u64::from(key.0) * self.parts()) >> 32;
        let mut below = 0;
        for (perturbation, weight) in self.row() {
            below += weight;
            if part < below {
                return perturbation;
            }
        }
        unreachable!("the weights sum to the number of parts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share of keys, in parts of 2^32, that `table` perturbs by each
    /// amount, found by walking the keys at the table's resolution.
    fn shares(table: &PerturbationTable, count: u64) -> Vec<(i64, u64)> {
        let step = (1u64 << 32) / table.parts();
        let mut shares: Vec<(i64, u64)> = Vec::new();
        for part in 0..table.parts() {
            for key in [part * step, part * step + step - 1] {
                let key = CellKey(u32::try_from(key).expect("keys fit 32 bits"));
                let perturbation = table.perturbation(count, key);
                match shares.last_mut() {
                    Some((p, n)) if *p == perturbation => *n += 1,
                    _ => shares.push((perturbation, 1)),
                }
            }
        }
        shares.iter().map(|&(p, n)| (p, n / 2)).collect()
    }

    #[test]
    fn the_default_table_is_the_documented_one() {
        let table = PerturbationTable::binomial(2).expect("D = 2");
        assert_eq!(table.parts(), 16);
        let row: Vec<(i64, u64)> = table.row().collect();
        assert_eq!(row, [(-2, 1), (-1, 4), (0, 6), (1, 4), (2, 1)]);
        assert_eq!(shares(&table, 57), row);
        assert_eq!(table.perturbation(57, CellKey(0)), -2);
        assert_eq!(table.perturbation(57, CellKey(u32::MAX)), 2);
        assert_eq!(table.perturbation(57, CellKey(1 << 31)), 0);
    }

    #[test]
    fn every_table_is_unbiased_bounded_and_of_variance_d_over_2() {
        for d in 0..=PerturbationTable::MAX_D {
            let table = PerturbationTable::binomial(d).expect("a valid D");
            let row: Vec<(i64, u64)> = table.row().collect();
            let total: u64 = row.iter().map(|&(_, w)| w).sum();
            assert_eq!(total, table.parts(), "D = {d}");
            let sum: i64 = row.iter().map(|&(p, w)| p * w as i64).sum();
            assert_eq!(sum, 0, "D = {d} is unbiased");
            let squares: i64 = row.iter().map(|&(p, w)| p * p * w as i64).sum();
            // Variance D / 2: the sum of squares is D / 2 times 4^D.
            assert_eq!(2 * squares, i64::from(d) * total as i64, "D = {d}");
            assert!(row.iter().all(|&(p, _)| p.unsigned_abs() <= u64::from(d)));
        }
        assert_eq!(
            PerturbationTable::binomial(9),
            Err(PtableError::TooLarge { max: 8, got: 9 })
        );
    }

    #[test]
    fn zero_and_the_smallest_counts_are_never_perturbed() {
        let table = PerturbationTable::binomial(2).expect("D = 2");
        for count in 0..=2 {
            assert_eq!(shares(&table, count), [(0, 16)], "count {count}");
        }
        assert_eq!(shares(&table, 3)[0], (-2, 1), "3 may become 1, never 0");
    }
}
