//! A cell's published value under cell-key perturbation: the count plus
//! the perturbation the table gives for (count, cell key), then the
//! threshold, then the rounding.
//!
//! Thresholding after perturbing means a count near the threshold is shown
//! or hidden according to its key, so whether a cell is hidden does not
//! say on which side of the threshold its true count lies. Rounding after
//! perturbing means a published figure stands for up to `rounding + 2D`
//! true values, not `rounding`, which is what defeats reading exact counts
//! off a step-up. The same count and key always give the same value.
//!
//! A rate is perturbed through its numerator and denominator, each a cell
//! with its own key ([`publish_rate`]), never computed from published,
//! rounded parts.

use super::round::round;
use super::{DisclosureConfig, Method, PerturbationTable, PtableError};
use crate::disclosure::{CellKey, KeyedCount};

/// Everything [`publish`] needs, built once from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicationRule {
    pub ptable: PerturbationTable,
    pub threshold: u64,
    pub rounding: u64,
}

impl PublicationRule {
    /// The rule `config` describes; under `method = "round"` the table
    /// perturbs nothing.
    pub fn new(config: &DisclosureConfig) -> Result<Self, PtableError> {
        let max = match config.method {
            Method::CellKey => config.max_perturbation,
            Method::Round => 0,
        };
        Ok(Self {
            ptable: PerturbationTable::binomial(max)?,
            threshold: config.threshold,
            rounding: config.rounding,
        })
    }
}

/// The published value of a cell of `count` units whose key is `key`, or
/// `None` when it is suppressed (shown as `[c]`).
pub fn publish(count: u64, key: CellKey, rule: &PublicationRule) -> Option<u64> {
    let perturbation = rule.ptable.perturbation(count, key);
    let perturbed = count.saturating_add_signed(perturbation);
    if perturbed > 0 && perturbed < rule.threshold {
        return None;
    }
    Some(round(perturbed, rule.rounding))
}

/// The published share `numerator / denominator`, or `None` when it is
/// suppressed: both counts are perturbed (not rounded), the numerator kept
/// within the denominator, and the rate is hidden when the perturbed
/// denominator is under the threshold, or when the numerator or the
/// units it leaves out (denominator minus numerator) number 1 to
/// `threshold - 1`, since the rate would then give that small count away.
/// Shown rates are rounded to two decimal places (whole percentage
/// points), as under the plain rule.
pub fn publish_rate(
    numerator: KeyedCount,
    denominator: KeyedCount,
    rule: &PublicationRule,
) -> Option<f64> {
    let perturbed = |cell: KeyedCount| {
        cell.count
            .saturating_add_signed(rule.ptable.perturbation(cell.count, cell.key))
    };
    let whole = perturbed(denominator);
    let part = perturbed(numerator).min(whole);
    let small = |count: u64| count > 0 && count < rule.threshold;
    if whole == 0 || whole < rule.threshold || small(part) || small(whole - part) {
        return None;
    }
    Some((part as f64 / whole as f64 * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rule() -> PublicationRule {
        PublicationRule::new(&DisclosureConfig::default()).expect("the default is valid")
    }

    #[test]
    fn published_values_of_a_few_cells() {
        let rule = rule();
        // Keys at the start of each of the default table's intervals.
        let key = |sixteenths: u32| CellKey(sixteenths << 28);
        let cases = [
            (0, key(0), Some(0)),
            (0, key(15), Some(0)),
            (5, key(15), None),
            // 9 + 2 = 11, shown as 10; 10 - 2 = 8, hidden.
            (9, key(15), Some(10)),
            (10, key(0), None),
            (10, key(5), Some(10)),
            (12, key(1), Some(10)),
            (12, key(11), Some(15)),
            (30, key(0), Some(30)),
            (30, key(15), Some(30)),
            (28, key(15), Some(30)),
            (28, key(0), Some(25)),
        ];
        for (count, key, expected) in cases {
            assert_eq!(publish(count, key, &rule), expected, "{count} {key:?}");
        }
    }

    #[test]
    fn the_round_method_is_threshold_and_rounding_alone() {
        let config = DisclosureConfig {
            method: Method::Round,
            ..DisclosureConfig::default()
        };
        let rule = PublicationRule::new(&config).expect("valid");
        for key in [CellKey(0), CellKey(u32::MAX)] {
            assert_eq!(publish(9, key, &rule), None);
            assert_eq!(publish(12, key, &rule), Some(10));
            assert_eq!(publish(13, key, &rule), Some(15));
        }
    }

    #[test]
    fn a_rate_is_made_of_its_perturbed_counts() {
        let rule = rule();
        let cell = |count, sixteenths: u32| KeyedCount {
            count,
            key: CellKey(sixteenths << 28),
        };
        // 20 / 40 unperturbed (keys in the middle interval).
        assert_eq!(publish_rate(cell(20, 8), cell(40, 8), &rule), Some(0.5));
        // 20 + 2 over 40 - 2.
        assert_eq!(publish_rate(cell(20, 15), cell(40, 0), &rule), Some(0.58));
        // A denominator perturbed under the threshold hides the rate.
        assert_eq!(publish_rate(cell(5, 8), cell(10, 0), &rule), None);
        // So does a small remainder: 35 of 40 leaves 5 out.
        assert_eq!(publish_rate(cell(35, 8), cell(40, 8), &rule), None);
        // All or none of the units is not a small count.
        assert_eq!(publish_rate(cell(40, 15), cell(40, 8), &rule), Some(1.0));
        assert_eq!(publish_rate(cell(0, 0), cell(40, 8), &rule), Some(0.0));
        assert_eq!(publish_rate(cell(0, 0), cell(0, 0), &rule), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn perturbation_never_shows_a_small_count_nor_moves_zero_nor_strays(
            count in 0u64..200,
            key in any::<u32>(),
            max in 0u32..=4,
        ) {
            let config = DisclosureConfig {
                max_perturbation: max,
                ..DisclosureConfig::default()
            };
            let rule = PublicationRule::new(&config).expect("valid");
            let key = CellKey(key);
            let shown = publish(count, key, &rule);
            // The same inputs always give the same output.
            prop_assert_eq!(shown, publish(count, key, &rule));
            match shown {
                Some(value) => {
                    prop_assert!(value == 0 || value >= 10, "{} shown as {}", count, value);
                    prop_assert_eq!(value == 0, count == 0);
                    // Within the table's bound, then within the rounding.
                    let d = u64::from(max);
                    prop_assert!(value + 2 + d >= count && value <= count + 2 + d);
                }
                None => prop_assert!(count > 0 && count < 10 + u64::from(max)),
            }
            let perturbation = rule.ptable.perturbation(count, key);
            prop_assert!(perturbation.unsigned_abs() <= u64::from(max));
        }
    }
}
