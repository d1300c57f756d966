//! Interleaved measurement: a ratio figure is measured as pairs, each a
//! run of the ledger's side followed by a run of its baseline, and reported
//! as the median of the pairs' ratios with their spread. A baseline that
//! swings with the machine (a flush that lands on a busy disk, a neighbour
//! that wakes) then moves one pair, not the figure.

use super::Figure;

/// The rates of one pair of runs, in the figure's unit per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Pair {
    pub(super) ours: f64,
    pub(super) baseline: f64,
}

impl Pair {
    /// A pair from what each side counted and how long it took.
    pub(super) fn counted(
        count: u64,
        took: std::time::Duration,
        baseline_count: u64,
        baseline_took: std::time::Duration,
    ) -> Self {
        Self {
            ours: count as f64 / took.as_secs_f64().max(1e-9),
            baseline: baseline_count as f64 / baseline_took.as_secs_f64().max(1e-9),
        }
    }
}

/// The median of `values`; NaN when there are none.
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        f64::midpoint(values[middle - 1], values[middle])
    }
}

impl Figure {
    /// A figure from interleaved pairs: each side's median rate, the
    /// median of the pairs' ratios, and the lowest and highest ratio.
    pub(super) fn paired(pairs: &[Pair]) -> Self {
        let ratios: Vec<f64> = pairs.iter().map(|p| p.ours / p.baseline).collect();
        let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut figure = Self::rates(
            median(pairs.iter().map(|p| p.ours).collect()),
            median(pairs.iter().map(|p| p.baseline).collect()),
        );
        figure.ratio = median(ratios);
        figure.ratio_spread = (!pairs.is_empty()).then_some([lowest, highest]);
        figure.pairs = Some(pairs.len());
        figure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ours: f64, baseline: f64) -> Pair {
        Pair { ours, baseline }
    }

    #[test]
    fn the_ratio_is_the_median_of_the_pairs_ratios_not_of_the_medians() {
        let figure = Figure::paired(&[pair(100.0, 200.0), pair(150.0, 100.0), pair(90.0, 100.0)]);
        assert_eq!(figure.ratio, 0.9);
        assert_eq!(figure.per_s, 100.0);
        assert_eq!(figure.baseline_per_s, 100.0);
        assert_eq!(figure.ratio_spread, Some([0.5, 1.5]));
        assert_eq!(figure.pairs, Some(3));
    }

    #[test]
    fn an_even_number_of_pairs_takes_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
