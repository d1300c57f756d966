//! The plain rule (`method = "round"`): the view of a raw [`Dashboard`]
//! that a partnership board may see within one release, so that no count
//! about a handful of people can be read off it or worked back from it.
//!
//! [`protect`] returns the dashboard's JSON with these changes, under a
//! [`DisclosureConfig`] (defaults: threshold 10, rounding 5):
//!
//! 1. **Primary suppression.** A count from 1 to `threshold - 1` becomes
//!    `null`, and its JSON pointer (e.g. `/totals/training_left`,
//!    `/by_group/sex/female/referred`, `/monthly/3/progressions`) is listed
//!    in `suppressed`.
//! 2. **Secondary suppression.** Some counts add up to others: every
//!    `by_sector` column, every `by_group` dimension of a measure and every
//!    `monthly` column adds up to the matching total, and among the totals
//!    `releases_started = releases_active + releases_ended`,
//!    `substitutions_started = substitutions_active + substitutions_ended`
//!    and `substitutions_ended` = the four end reasons. In each such
//!    equation, if exactly one member is hidden it could be worked back
//!    from the others, so the smallest shown non-zero cell is hidden too
//!    (failing that a zero cell, failing that the total). Hiding a total
//!    can expose another equation it belongs to, so this runs until no
//!    equation has exactly one hidden member. Secondarily hidden counts are
//!    listed in `suppressed` like the others.
//! 3. **Rounding.** Every shown count is rounded to the nearest `rounding`
//!    (halves up); zero stays 0 and a non-zero count is never shown as 0.
//! 4. **Rates.** A rate is `null` when its denominator is under
//!    `threshold`, when a count it is made of is hidden, or when the people
//!    it leaves out (denominator minus numerator) number 1 to
//!    `threshold - 1`, since the rate would then give that small count
//!    away. Shown rates are rounded to two decimal places (whole
//!    percentage points).
//! 5. **Flags** are listed unchanged. A flag names a rule, a rotation and a
//!    substitution, never a person or a profile answer, and the rule about
//!    a substitute's own history says only which side of the limit they
//!    were on (see [`crate::flags`]); a board needs the rotation to act on
//!    an exception, which counts per rule would not give it.
//!
//! The result also carries `disclosure: {threshold, rounding}`, so a reader
//! knows the figures are protected and how.
//!
//! Counts are judged as whole cells of the JSON: `as_of`, `limits` and the
//! category names are not counts and are left as they are.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::DisclosureConfig;
use crate::dashboard::{Dashboard, GroupMeasure, MonthMeasure, Rate, SectorMeasure, Total};

/// The board's view of `dashboard`: its JSON with disclosure control
/// applied as the module documentation describes, plus `suppressed` (the
/// JSON pointers of the hidden counts) and `disclosure` (the config used).
pub fn protect(dashboard: &Dashboard, config: &DisclosureConfig) -> Value {
    let layout = Layout::of(dashboard);
    let hidden = suppress(&layout.values, &layout.tables, config.threshold);
    let mut value = serde_json::to_value(dashboard).expect("a dashboard always serialises");
    let mut suppressed = Vec::new();
    for (i, path) in layout.paths.iter().enumerate() {
        let shown = if hidden[i] {
            suppressed.push(Value::String(path.clone()));
            Value::Null
        } else {
            Value::from(round(layout.values[i], config.rounding))
        };
        if let Some(slot) = value.pointer_mut(path) {
            *slot = shown;
        }
    }
    let rates = [
        (
            "/rates/training_completion_rate",
            dashboard.rates.training_completion_rate,
            [Total::TrainingCompleted, Total::TrainingLeft],
        ),
        (
            "/rates/substitute_into_work_rate",
            dashboard.rates.substitute_into_work_rate,
            [Total::SubstitutionsIntoWork, Total::SubstitutionsEnded],
        ),
    ];
    for (path, rate, made_of) in rates {
        let any_hidden = made_of.iter().any(|&total| hidden[Layout::total(total)]);
        let shown = protected_rate(rate, any_hidden, config.threshold);
        if let Some(slot) = value.pointer_mut(path) {
            *slot = shown;
        }
    }
    if let Value::Object(map) = &mut value {
        map.insert("suppressed".to_owned(), Value::Array(suppressed));
        map.insert(
            "disclosure".to_owned(),
            json!({"threshold": config.threshold, "rounding": config.rounding}),
        );
    }
    value
}

/// A rate as a board sees it: see rule 4 of the module documentation.
fn protected_rate(rate: Rate, any_hidden: bool, threshold: u64) -> Value {
    let left_out = rate.denominator.saturating_sub(rate.numerator);
    let small = |count: u64| count > 0 && count < threshold;
    match rate.value() {
        Some(share) if rate.denominator >= threshold && !any_hidden && !small(left_out) => {
            Value::from((share * 100.0).round() / 100.0)
        }
        _ => Value::Null,
    }
}

/// `value` rounded to the nearest multiple of `rounding`, halves up; zero
/// stays zero and nothing else becomes zero.
pub(crate) fn round(value: u64, rounding: u64) -> u64 {
    if value == 0 || rounding <= 1 {
        return value;
    }
    let nearest = value.saturating_add(rounding / 2) / rounding * rounding;
    nearest.max(rounding)
}

/// One equation between counts: the cells add up to the total. Members are
/// indices into the list of counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub total: usize,
    pub cells: Vec<usize>,
}

/// Which counts to hide: primary suppression of counts from 1 to
/// `threshold - 1`, then secondary suppression until no table has exactly
/// one hidden member.
pub(crate) fn suppress(values: &[u64], tables: &[Table], threshold: u64) -> Vec<bool> {
    let mut hidden: Vec<bool> = values.iter().map(|&v| v > 0 && v < threshold).collect();
    // Every pass hides at least one more count or stops, so this ends
    // within `values.len()` passes.
    loop {
        let mut changed = false;
        for table in tables {
            let members = table.cells.iter().chain([&table.total]);
            if members.filter(|&&i| hidden[i]).count() != 1 {
                continue;
            }
            let shown = || table.cells.iter().copied().filter(|&i| !hidden[i]);
            let complement = shown()
                .filter(|&i| values[i] > 0)
                .min_by_key(|&i| values[i])
                .or_else(|| shown().next())
                .or((!hidden[table.total]).then_some(table.total));
            if let Some(i) = complement {
                hidden[i] = true;
                changed = true;
            }
        }
        if !changed {
            return hidden;
        }
    }
}

/// The equations among the totals; see rule 2 of the module documentation.
const TOTAL_EQUATIONS: &[(Total, &[Total])] = &[
    (
        Total::ReleasesStarted,
        &[Total::ReleasesActive, Total::ReleasesEnded],
    ),
    (
        Total::SubstitutionsStarted,
        &[Total::SubstitutionsActive, Total::SubstitutionsEnded],
    ),
    (
        Total::SubstitutionsEnded,
        &[
            Total::SubstitutionsCompleted,
            Total::SubstitutionsLeftEarly,
            Total::SubstitutesHiredByEmployer,
            Total::SubstitutionsDismissed,
        ],
    ),
];

/// Every count of a dashboard with its JSON pointer, and the equations
/// between them.
#[derive(Debug, Default)]
struct Layout {
    paths: Vec<String>,
    values: Vec<u64>,
    tables: Vec<Table>,
}

impl Layout {
    /// The index of a total: the totals come first, in [`Total::ALL`] order.
    fn total(total: Total) -> usize {
        total as usize
    }

    fn push(&mut self, path: String, value: u64) -> usize {
        self.paths.push(path);
        self.values.push(value);
        self.paths.len() - 1
    }

    /// Adds one table per measure, each column's cells adding up to the
    /// measure's total.
    fn columns<M: Copy + Ord>(&mut self, columns: Vec<(M, usize)>, total: impl Fn(M) -> Total) {
        let mut by_measure: BTreeMap<M, Vec<usize>> = BTreeMap::new();
        for (measure, cell) in columns {
            by_measure.entry(measure).or_default().push(cell);
        }
        for (measure, cells) in by_measure {
            self.tables.push(Table {
                total: Self::total(total(measure)),
                cells,
            });
        }
    }

    fn of(dashboard: &Dashboard) -> Self {
        let mut layout = Self::default();
        for &total in Total::ALL {
            let i = layout.push(
                format!("/totals/{}", total.name()),
                dashboard.totals.get(total),
            );
            debug_assert_eq!(i, Self::total(total));
        }
        for &(total, parts) in TOTAL_EQUATIONS {
            layout.tables.push(Table {
                total: Self::total(total),
                cells: parts.iter().map(|&part| Self::total(part)).collect(),
            });
        }

        let mut columns = Vec::new();
        for (sector, row) in &dashboard.by_sector {
            for &measure in SectorMeasure::ALL {
                let path = format!("/by_sector/{}/{}", escape(sector), measure.name());
                columns.push((measure, layout.push(path, row.get(measure))));
            }
        }
        layout.columns(columns, SectorMeasure::total);

        for (dimension, categories) in &dashboard.by_group {
            let mut columns = Vec::new();
            for (category, row) in categories {
                for &measure in GroupMeasure::ALL {
                    let path = format!(
                        "/by_group/{}/{}/{}",
                        escape(dimension),
                        escape(category),
                        measure.name()
                    );
                    columns.push((measure, layout.push(path, row.get(measure))));
                }
            }
            layout.columns(columns, GroupMeasure::total);
        }

        let mut columns = Vec::new();
        for (i, row) in dashboard.monthly.iter().enumerate() {
            for &measure in MonthMeasure::ALL {
                let path = format!("/monthly/{i}/{}", measure.name());
                columns.push((measure, layout.push(path, row.counts.get(measure))));
            }
        }
        layout.columns(columns, MonthMeasure::total);
        layout
    }
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs secondary suppression and rounding on tables written as
    /// `total=55: a=3 b=12 c=40; ...` (tables separated by `;`, a name used
    /// twice is the same count) and compares the result, written the same
    /// way with `_` for a hidden count, with `expected`.
    fn check(input: &str, expected: &str) {
        check_with(&DisclosureConfig::default(), input, expected);
    }

    fn check_with(config: &DisclosureConfig, input: &str, expected: &str) {
        let mut counts = Counts::default();
        let mut tables = Vec::new();
        let mut layout = Vec::new();
        for table in input.split(';') {
            let (total, cells) = table
                .split_once(':')
                .expect("tables are written total: cells");
            let total = counts.index(total);
            let cells: Vec<usize> = cells.split_whitespace().map(|c| counts.index(c)).collect();
            layout.push((total, cells.clone()));
            tables.push(Table { total, cells });
        }
        let hidden = suppress(&counts.values, &tables, config.threshold);
        let show = |i: usize| {
            let name = &counts.names[i];
            if hidden[i] {
                format!("{name}=_")
            } else {
                format!("{name}={}", round(counts.values[i], config.rounding))
            }
        };
        let got: Vec<String> = layout
            .into_iter()
            .map(|(total, cells)| {
                let cells: Vec<String> = cells.into_iter().map(show).collect();
                format!("{}: {}", show(total), cells.join(" "))
            })
            .collect();
        assert_eq!(got.join("; "), expected, "for {input}");
    }

    /// The named counts of a `check` input.
    #[derive(Default)]
    struct Counts {
        names: Vec<String>,
        values: Vec<u64>,
    }

    impl Counts {
        /// The index of the count written `name=value`, added when new.
        fn index(&mut self, cell: &str) -> usize {
            let (name, value) = cell
                .trim()
                .split_once('=')
                .expect("counts are written name=value");
            let value: u64 = value.parse().expect("counts are whole numbers");
            if let Some(i) = self.names.iter().position(|n| n == name) {
                assert_eq!(self.values[i], value, "{name} is given two values");
                return i;
            }
            self.names.push(name.to_owned());
            self.values.push(value);
            self.names.len() - 1
        }
    }

    #[test]
    fn secondary_suppression_cases() {
        // Nothing small: only rounding.
        check("t=57: a=15 b=42", "t=55: a=15 b=40");
        // One small cell: the next smallest is hidden with it.
        check("t=55: a=3 b=12 c=40", "t=55: a=_ b=_ c=40");
        // Two small cells already protect each other.
        check("t=50: a=3 b=4 c=43", "t=50: a=_ b=_ c=45");
        // Zeros are shown, and a small total hides its small cells.
        check("t=7: a=7 b=0", "t=_: a=_ b=0");
        check("t=40: a=0 b=40", "t=40: a=0 b=40");
        // The complement is the smallest non-zero cell, not a zero.
        check("t=48: a=3 b=0 c=45", "t=50: a=_ b=0 c=_");
        // Ties go to the first cell.
        check("t=45: a=5 b=20 c=20", "t=45: a=_ b=_ c=20");
        // A table sharing a shown total with another is judged on its own.
        check(
            "t=30: a=3 b=27; t=30: x=12 y=18",
            "t=30: a=_ b=_; t=30: x=10 y=20",
        );
        // A hidden total of one table is a hidden cell of another; the
        // cascade ends when no table has exactly one hidden member.
        check(
            "t=12: a=10 b=2; u=15: t=12 w=3",
            "t=_: a=_ b=_; u=15: t=_ w=_",
        );
        check(
            "t=12: a=10 b=2; u=15: t=12 w=3; t=12: x=12 y=0",
            "t=_: a=_ b=_; u=15: t=_ w=_; t=_: x=_ y=0",
        );
        // When only zero cells are left to hide, a zero is hidden.
        check(
            "u=15: e=12 w=3; s=12: act=0 e=12",
            "u=15: e=_ w=_; s=10: act=_ e=_",
        );
        // Tables that share no hidden count do not affect each other.
        check(
            "t=20: a=20 b=0; t=20: x=5 y=15",
            "t=20: a=20 b=0; t=20: x=_ y=_",
        );
    }

    #[test]
    fn the_configuration_sets_threshold_and_rounding() {
        let loose = DisclosureConfig {
            threshold: 5,
            rounding: 10,
            ..DisclosureConfig::default()
        };
        check_with(&loose, "t=57: a=4 b=6 c=47", "t=60: a=_ b=_ c=50");
        let none = DisclosureConfig {
            threshold: 0,
            rounding: 0,
            ..DisclosureConfig::default()
        };
        check_with(&none, "t=4: a=1 b=3", "t=4: a=1 b=3");
        let exact = DisclosureConfig {
            threshold: 3,
            rounding: 1,
            ..DisclosureConfig::default()
        };
        check_with(&exact, "t=9: a=1 b=3 c=5", "t=9: a=_ b=_ c=5");
    }

    #[test]
    fn rounding_keeps_zero_and_never_makes_zero() {
        let cases = [
            (0, 5, 0),
            (1, 5, 5),
            (2, 5, 5),
            (3, 5, 5),
            (10, 5, 10),
            (12, 5, 10),
            (13, 5, 15),
            (15, 10, 20),
            (14, 10, 10),
            (7, 1, 7),
            (7, 0, 7),
            (u64::MAX, 5, u64::MAX / 5 * 5),
        ];
        for (value, rounding, expected) in cases {
            assert_eq!(round(value, rounding), expected, "{value} to {rounding}");
        }
    }

    #[test]
    fn rates_need_a_denominator_and_no_small_remainder() {
        let rate = |numerator, denominator| Rate {
            numerator,
            denominator,
        };
        let cases = [
            (rate(0, 0), false, Value::Null),
            (rate(5, 9), false, Value::Null),
            // Five left out of ten is itself a small count.
            (rate(5, 10), false, Value::Null),
            (rate(10, 20), false, json!(0.5)),
            // Whether a small numerator is hidden is judged with the cells;
            // here it is given as shown.
            (rate(2, 30), false, json!(0.07)),
            (rate(20, 30), true, Value::Null),
            (rate(27, 30), false, Value::Null),
            (rate(30, 30), false, json!(1.0)),
            (rate(0, 30), false, json!(0.0)),
            (rate(14, 17), false, Value::Null),
            (rate(2, 3), false, Value::Null),
            (rate(40, 60), false, json!(0.67)),
        ];
        for (rate, any_hidden, expected) in cases {
            assert_eq!(protected_rate(rate, any_hidden, 10), expected, "{rate:?}");
        }
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        assert_eq!(escape("50+"), "50+");
        assert_eq!(escape("a/b~c"), "a~1b~0c");
    }
}
