//! Protection intervals: the interval audit of published tables, and the
//! secondary suppression it drives.
//!
//! Counting hidden cells in each equation is not enough. A reader who
//! knows that a hidden count lies in 1 to 9, that a published 30 stands
//! for 28 to 32, and that a total is the sum of its parts can narrow a
//! hidden cell much further: with a total of 30 and one part of 30 both
//! published, two hidden parts lie in 1 to 3 each. The audit asks what a
//! reader can work out, with a linear program for each hidden cell: the
//! smallest and the largest value it can take that agrees with everything
//! published.
//!
//! # What the reader knows
//!
//! - **A shown cell.** A published 0 is a true 0: zero is never perturbed
//!   and nothing else is published as 0. A published `r > 0` was rounded
//!   from a value in `[r - rounding/2, r + (rounding-1)/2]` (±2 for
//!   rounding 5), at least the threshold (smaller values are hidden) and
//!   at least 1 when `r` is the rounding itself (small values round up to
//!   it); that value is the count plus a perturbation of at most D
//!   (`max_perturbation`, 0 under `method = "round"`), so the count lies
//!   D further out on either side, and is at least 1.
//! - **A hidden cell.** A reader knows that a hidden count is 1 to
//!   `threshold - 1 + D` (9 under the plain rule) when it is: the audit
//!   gives a hidden cell those bounds whenever its true count lies in
//!   them, the narrowest knowledge that is still true, and otherwise only
//!   that it is not negative.
//! - **Relations.** Every [`Relation`] holds exactly between the true
//!   counts: a total is the sum of its parts, within a table or across
//!   tables (a measure's total is the total of each of its breakdowns).
//!
//! The programs are solved over the real numbers (`good_lp` with the
//! pure-Rust `microlp` solver) and their optima rounded inwards to whole
//! numbers, the usual audit of statistics offices. Each covers only the
//! cells linked to the hidden cell by relations.
//!
//! # Protected
//!
//! A hidden cell is protected when its feasible range spans at least half
//! the threshold in values: `max - min >= protection_range` (4 by
//! default), which also means it is not pinned to one value.
//! [`protect_intervals`] hides more cells until every hidden cell is
//! protected: for a cell that is not, it hides the smallest shown non-zero
//! cell in the relations the cell belongs to (failing that a zero), and
//! audits again. Hiding a cell relaxes what the reader knows, so a cell
//! once protected nearly always stays so; a last full audit confirms it.

use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable, microlp,
    variable,
};

use super::DisclosureConfig;

/// One additive relation between true counts: `total` is the sum of
/// `parts`, to within `slack` either way. Members are indices into the
/// audited cells.
///
/// Within a table the slack is 0. Across tables released at different
/// times the counts a reader sees are of different moments, so the
/// relation between them may be off by the units that moved in between;
/// the slack says by how much (see `dashboard/release.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub total: usize,
    pub parts: Vec<usize>,
    pub slack: u64,
}

impl Relation {
    /// `total` is exactly the sum of `parts`.
    pub fn exact(total: usize, parts: Vec<usize>) -> Self {
        Self {
            total,
            parts,
            slack: 0,
        }
    }
}

/// The parameters of the audit, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalRule {
    pub threshold: u64,
    pub rounding: u64,
    /// The perturbation table's D; 0 under the plain rule.
    pub max_perturbation: u64,
    /// A hidden cell's range must satisfy `max - min >= protection_range`.
    pub protection_range: u64,
}

impl IntervalRule {
    pub fn new(config: &DisclosureConfig) -> Self {
        Self {
            threshold: config.threshold,
            rounding: config.rounding,
            max_perturbation: config.perturbation_bound(),
            protection_range: config.protection_range(),
        }
    }

    /// The largest count a hidden cell may hold because it is small:
    /// `threshold - 1 + D`.
    pub fn hidden_max(&self) -> u64 {
        self.threshold.saturating_sub(1) + self.max_perturbation
    }

    /// What a reader knows of a cell's count from its published value;
    /// see the module documentation.
    fn shown_bounds(&self, published: u64) -> Bounds {
        if published == 0 {
            return Bounds {
                min: 0,
                max: Some(0),
            };
        }
        let (down, up) = if self.rounding >= 2 {
            (self.rounding / 2, (self.rounding - 1) / 2)
        } else {
            (0, 0)
        };
        let lowest_rounded = if published <= self.rounding {
            1
        } else {
            published.saturating_sub(down)
        };
        let perturbed_min = lowest_rounded.max(self.threshold).max(1);
        Bounds {
            min: perturbed_min.saturating_sub(self.max_perturbation).max(1),
            max: Some(published + up + self.max_perturbation),
        }
    }

    /// What a reader knows of a hidden cell whose true count is `value`.
    fn hidden_bounds(&self, value: u64) -> Bounds {
        if (1..=self.hidden_max()).contains(&value) {
            Bounds {
                min: 1,
                max: Some(self.hidden_max()),
            }
        } else {
            Bounds { min: 0, max: None }
        }
    }
}

/// The values a hidden cell can take that agree with everything published;
/// `max` is `None` when nothing bounds it from above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeasibleRange {
    pub min: u64,
    pub max: Option<u64>,
}

impl FeasibleRange {
    /// Whether the range spans at least `protection_range + 1` values.
    pub fn is_protected(&self, protection_range: u64) -> bool {
        self.max
            .is_none_or(|max| max.saturating_sub(self.min) >= protection_range)
    }
}

/// What [`protect_intervals`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// The cells it hid, in the order it hid them.
    pub suppressed: Vec<usize>,
    /// Hidden cells it could not protect because every cell they are
    /// related to is hidden already; empty unless the configuration asks
    /// for a range wider than a hidden cell's own bounds allow.
    pub unprotected: Vec<usize>,
}

/// Why an audit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// No counts agree with the published values and the relations, so
    /// the cells given do not add up as the relations say.
    #[error("the published cells contradict their relations around cell {cell}")]
    Inconsistent { cell: usize },
    #[error("the interval audit's solver failed: {0}")]
    Solver(String),
    #[error("relation {relation} names cell {cell}, but there are {cells} cells")]
    NoSuchCell {
        relation: usize,
        cell: usize,
        cells: usize,
    },
}

/// The feasible range of every hidden cell (`published[i]` is `None`),
/// `None` for shown cells. `values` are the true counts, `published` what
/// the board shows.
pub fn audit(
    values: &[u64],
    published: &[Option<u64>],
    relations: &[Relation],
    rule: &IntervalRule,
) -> Result<Vec<Option<FeasibleRange>>, AuditError> {
    let auditor = Auditor::new(values, relations, rule)?;
    (0..values.len())
        .map(|cell| match published[cell] {
            Some(_) => Ok(None),
            None => auditor.range(cell, published).map(Some),
        })
        .collect()
}

/// Hides more cells of `published` (setting them to `None`) until every
/// hidden cell is protected; see the module documentation.
pub fn protect_intervals(
    values: &[u64],
    published: &mut [Option<u64>],
    relations: &[Relation],
    rule: &IntervalRule,
) -> Result<Protection, AuditError> {
    let hideable = vec![true; values.len()];
    protect_intervals_within(values, published, relations, rule, &hideable)
}

/// [`protect_intervals`], hiding only the cells marked `hideable`: the
/// cells of the table being released, when the others were published
/// before and a reader may have kept them. A hidden cell that no hideable
/// cell can protect is listed in [`Protection::unprotected`].
pub fn protect_intervals_within(
    values: &[u64],
    published: &mut [Option<u64>],
    relations: &[Relation],
    rule: &IntervalRule,
    hideable: &[bool],
) -> Result<Protection, AuditError> {
    let auditor = Auditor::new(values, relations, rule)?;
    let mut protection = Protection::default();
    loop {
        let mut queue: Vec<usize> = (0..values.len())
            .filter(|&cell| published[cell].is_none())
            .filter(|cell| !protection.unprotected.contains(cell))
            .rev()
            .collect();
        let mut hid_any = false;
        while let Some(cell) = queue.pop() {
            if auditor
                .range(cell, published)?
                .is_protected(rule.protection_range)
            {
                continue;
            }
            match auditor.complement(cell, published, hideable) {
                Some(next) => {
                    published[next] = None;
                    protection.suppressed.push(next);
                    hid_any = true;
                    queue.push(cell);
                    queue.push(next);
                }
                None => protection.unprotected.push(cell),
            }
        }
        // Hiding a cell nearly always only widens the others' ranges, but
        // a small cell's own bounds can be narrower hidden than shown, so
        // the pass repeats until one hides nothing.
        if !hid_any {
            return Ok(protection);
        }
    }
}

/// A count's bounds as a reader knows them.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    min: u64,
    max: Option<u64>,
}

/// The relations of one audit, grouped by the cells they link.
#[derive(Debug)]
struct Auditor<'a> {
    values: &'a [u64],
    relations: &'a [Relation],
    rule: &'a IntervalRule,
    /// For each cell, the relations it belongs to.
    member_of: Vec<Vec<usize>>,
    /// For each cell, the cells linked to it by relations (itself
    /// included), in index order, and the relations among them.
    component: Vec<usize>,
    components: Vec<(Vec<usize>, Vec<usize>)>,
}

impl<'a> Auditor<'a> {
    fn new(
        values: &'a [u64],
        relations: &'a [Relation],
        rule: &'a IntervalRule,
    ) -> Result<Self, AuditError> {
        let cells = values.len();
        let mut member_of = vec![Vec::new(); cells];
        let mut parent: Vec<usize> = (0..cells).collect();
        fn root(parent: &mut [usize], mut cell: usize) -> usize {
            while parent[cell] != cell {
                parent[cell] = parent[parent[cell]];
                cell = parent[cell];
            }
            cell
        }
        for (r, relation) in relations.iter().enumerate() {
            for &cell in relation.parts.iter().chain([&relation.total]) {
                if cell >= cells {
                    return Err(AuditError::NoSuchCell {
                        relation: r,
                        cell,
                        cells,
                    });
                }
                if member_of[cell].last() != Some(&r) {
                    member_of[cell].push(r);
                }
                let (a, b) = (root(&mut parent, cell), root(&mut parent, relation.total));
                parent[a.max(b)] = a.min(b);
            }
        }
        let mut component = vec![usize::MAX; cells];
        let mut components: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
        for cell in 0..cells {
            let r = root(&mut parent, cell);
            if component[r] == usize::MAX {
                component[r] = components.len();
                components.push((Vec::new(), Vec::new()));
            }
            component[cell] = component[r];
            components[component[cell]].0.push(cell);
        }
        for (r, relation) in relations.iter().enumerate() {
            components[component[relation.total]].1.push(r);
        }
        Ok(Self {
            values,
            relations,
            rule,
            member_of,
            component,
            components,
        })
    }

    /// The feasible range of hidden `cell`.
    fn range(&self, cell: usize, published: &[Option<u64>]) -> Result<FeasibleRange, AuditError> {
        let (cells, relations) = &self.components[self.component[cell]];
        let bounds = |c: usize| match published[c] {
            Some(shown) => self.rule.shown_bounds(shown),
            None => self.rule.hidden_bounds(self.values[c]),
        };
        if relations.is_empty() {
            let own = bounds(cell);
            return Ok(FeasibleRange {
                min: own.min,
                max: own.max,
            });
        }
        let solve = |maximise: bool| -> Result<Option<f64>, AuditError> {
            let mut problem = ProblemVariables::new();
            let mut vars: Vec<Option<Variable>> = vec![None; published.len()];
            for &c in cells {
                let own = bounds(c);
                let mut definition = variable().min(own.min as f64);
                if let Some(max) = own.max {
                    definition = definition.max(max as f64);
                }
                vars[c] = Some(problem.add(definition));
            }
            let var = |c: usize| vars[c].expect("every cell of the component has a variable");
            let objective: Expression = var(cell).into();
            let mut model = if maximise {
                problem.maximise(objective)
            } else {
                problem.minimise(objective)
            }
            .using(microlp);
            for &r in relations {
                let relation = &self.relations[r];
                let parts: Expression = relation.parts.iter().map(|&c| var(c)).sum();
                if relation.slack == 0 {
                    model = model.with(parts.eq(var(relation.total)));
                } else {
                    let slack = relation.slack as f64;
                    let gap = parts - var(relation.total);
                    model = model.with(gap.clone().leq(slack)).with(gap.geq(-slack));
                }
            }
            match model.solve() {
                Ok(solution) => Ok(Some(solution.value(var(cell)))),
                Err(ResolutionError::Unbounded) => Ok(None),
                Err(ResolutionError::Infeasible) => Err(AuditError::Inconsistent { cell }),
                Err(other) => Err(AuditError::Solver(other.to_string())),
            }
        };
        // Optima are rounded inwards: a count is a whole number.
        let tolerance = 1e-6;
        let min = solve(false)?.map_or(0, |min| (min - tolerance).ceil().max(0.0) as u64);
        let max = solve(true)?.map(|max| (max + tolerance).floor().max(0.0) as u64);
        Ok(FeasibleRange { min, max })
    }

    /// The cell to hide next to protect `cell`: the smallest shown non-zero
    /// cell of the relations `cell` belongs to, failing that a shown zero,
    /// the first by index on ties.
    fn complement(
        &self,
        cell: usize,
        published: &[Option<u64>],
        hideable: &[bool],
    ) -> Option<usize> {
        self.member_of[cell]
            .iter()
            .flat_map(|&r| {
                let relation = &self.relations[r];
                relation.parts.iter().chain([&relation.total]).copied()
            })
            .filter(|&c| published[c].is_some() && hideable.get(c) == Some(&true))
            .min_by_key(|&c| (self.values[c] == 0, self.values[c], c))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::disclosure::{CellKey, Method, PublicationRule, publish};

    /// Publishes the tables written in `input` as `total=30: a=28 b=1 c=1;
    /// ...` (tables separated by `;`, a name used twice is the same count)
    /// under `config` with no perturbation drawn, runs the interval
    /// protection, and compares the result with `expected`, written the
    /// same way: a shown count as its published value, a hidden one as
    /// `_` and its feasible range after protection, `[min..max]` (`max` is
    /// `_` when unbounded).
    fn check_with(config: &DisclosureConfig, input: &str, expected: &str) {
        let rule = IntervalRule::new(config);
        let mut names: Vec<String> = Vec::new();
        let mut values: Vec<u64> = Vec::new();
        let mut relations = Vec::new();
        let mut index = |cell: &str| {
            let (name, value) = cell.trim().split_once('=').expect("name=value");
            let value: u64 = value.parse().expect("a whole number");
            if let Some(i) = names.iter().position(|n| n == name) {
                assert_eq!(values[i], value, "{name} is given two values");
                return i;
            }
            names.push(name.to_owned());
            values.push(value);
            names.len() - 1
        };
        for table in input.split(';') {
            let (total, parts) = table.split_once(':').expect("total: parts");
            let total = index(total);
            let parts = parts.split_whitespace().map(&mut index).collect();
            relations.push(Relation::exact(total, parts));
        }
        let mut published: Vec<Option<u64>> = values
            .iter()
            .map(|&v| {
                let small = v > 0 && v < config.threshold;
                (!small).then(|| super::super::round::round(v, config.rounding))
            })
            .collect();
        let protection =
            protect_intervals(&values, &mut published, &relations, &rule).expect("an audit");
        assert!(protection.unprotected.is_empty(), "for {input}");
        let ranges = audit(&values, &published, &relations, &rule).expect("an audit");
        let show = |i: usize| match (published[i], ranges[i]) {
            (Some(shown), _) => format!("{}={shown}", names[i]),
            (None, Some(range)) => {
                let max = range.max.map_or("_".to_owned(), |m| m.to_string());
                format!("{}=_[{}..{max}]", names[i], range.min)
            }
            (None, None) => unreachable!("hidden cells have ranges"),
        };
        let got: Vec<String> = relations
            .iter()
            .map(|r| {
                let parts: Vec<String> = r.parts.iter().map(|&p| show(p)).collect();
                format!("{}: {}", show(r.total), parts.join(" "))
            })
            .collect();
        assert_eq!(got.join("; "), expected, "for {input}");
    }

    fn round() -> DisclosureConfig {
        DisclosureConfig {
            method: Method::Round,
            ..DisclosureConfig::default()
        }
    }

    #[test]
    fn two_small_cells_beside_a_published_30_and_30_are_not_protected_by_each_other() {
        // The case of issue 22: lone parent "yes" and "not recorded" are
        // both 1 beside a published total of 30 and "no" of 30. Counting
        // hidden cells passes it; a reader narrows both to [1, 3].
        let config = round();
        let rule = IntervalRule::new(&config);
        let values = [30, 28, 1, 1];
        let relations = [Relation::exact(0, vec![1, 2, 3])];
        let published = [Some(30), Some(30), None, None];
        let ranges = audit(&values, &published, &relations, &rule).expect("an audit");
        let pinned = FeasibleRange {
            min: 1,
            max: Some(3),
        };
        assert_eq!(ranges, [None, None, Some(pinned), Some(pinned)]);
        assert!(!pinned.is_protected(rule.protection_range));
        // The interval protection hides "no" as well.
        check_with(
            &config,
            "total=30: no=28 yes=1 nr=1",
            "total=30: no=_[10..30] yes=_[1..9] nr=_[1..9]",
        );
    }

    #[test]
    fn perturbation_widens_what_a_published_figure_stands_for() {
        // The same table under cell-key perturbation (D = 2, none drawn
        // here): each published 30 stands for 26 to 34, so the two small
        // cells lie in [1, 7] and are protected as they are.
        check_with(
            &DisclosureConfig::default(),
            "total=30: no=28 yes=1 nr=1",
            "total=30: no=30 yes=_[1..7] nr=_[1..7]",
        );
    }

    #[test]
    fn interval_protection_cases() {
        let config = round();
        // Nothing hidden, nothing to do.
        check_with(&config, "t=57: a=15 b=42", "t=55: a=15 b=40");
        // One small cell alone in its table: the rounding of the three
        // shown counts leaves it anywhere in 1 to 9, so nothing more is
        // hidden (the plain rule would hide b as well).
        check_with(&config, "t=55: a=3 b=12 c=40", "t=55: a=_[1..9] b=10 c=40");
        // Two shown counts leave a in [1, 9] when the rounding happens to
        // centre on it, but in [1, 4] when it does not; then b is hidden.
        check_with(&config, "t=20: a=3 b=17", "t=20: a=_[1..9] b=15");
        check_with(&config, "t=20: a=1 b=19", "t=20: a=_[1..9] b=_[9..21]");
        // Two small cells whose sum lies in 3 to 9 protect each other.
        check_with(
            &config,
            "t=50: a=3 b=4 c=43",
            "t=50: a=_[1..8] b=_[1..8] c=45",
        );
        // A small total hides its small part, and the zero stays shown:
        // the reader's range for a small count, 1 to 9, is protection.
        check_with(&config, "t=7: a=7 b=0", "t=_[1..9]: a=_[1..9] b=0");
        // The complement is the smallest non-zero cell, never a zero
        // while a non-zero cell is left.
        check_with(
            &config,
            "t=12: a=2 b=0 c=10",
            "t=10: a=_[1..9] b=0 c=_[1..11]",
        );
    }

    #[test]
    fn relations_across_tables_are_audited_together() {
        let config = round();
        // The sector table's small cell is protected by the doubt in three
        // rounded counts; the group table shares only the shown total.
        check_with(
            &config,
            "t=60: s1=2 s2=18 s3=40; t=60: men=30 women=30",
            "t=60: s1=_[1..6] s2=20 s3=40; t=60: men=30 women=30",
        );
        // A published 30 and 30 pin s1 to [1, 4]: s2 is hidden too, and
        // the group table, whose total is shown, gives nothing back.
        check_with(
            &config,
            "t=30: s1=2 s2=28; t=30: men=15 women=15",
            "t=30: s1=_[1..9] s2=_[19..31]; t=30: men=15 women=15",
        );
        // A total of one table is a part of another. b is pinned to
        // [1, 2] by the published 10 and 10, so a is hidden; w is left in
        // [1, 7] by the rounding of t and u.
        check_with(
            &config,
            "t=12: a=10 b=2; u=15: t=12 w=3",
            "t=10: a=_[1..11] b=_[1..9]; u=15: t=10 w=_[1..7]",
        );
        // A small total is pinned through the other table it belongs to:
        // u and w, both published 30, put t in [1, 4], and so a, which
        // equals it. The audit follows the chain and hides w.
        check_with(
            &config,
            "t=2: a=2 b=0; u=31: t=2 w=29",
            "t=_[1..9]: a=_[1..9] b=0; u=30: t=_[1..9] w=_[19..31]",
        );
    }

    #[test]
    fn a_wrongly_added_table_is_refused() {
        let rule = IntervalRule::new(&round());
        let relations = [Relation::exact(0, vec![1, 2])];
        let result = audit(&[60, 30, 5], &[Some(60), Some(30), None], &relations, &rule);
        assert_eq!(result, Err(AuditError::Inconsistent { cell: 2 }));
        let beyond = [Relation::exact(0, vec![3])];
        assert_eq!(
            audit(&[1], &[None], &beyond, &rule),
            Err(AuditError::NoSuchCell {
                relation: 0,
                cell: 3,
                cells: 1
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Two tables of one total, published under cell-key perturbation
        /// with random keys: after protection every hidden cell's range
        /// holds its true count and spans at least 5 values.
        #[test]
        fn protected_ranges_hold_the_truth_and_span_five_values(
            sectors in proptest::collection::vec(0u64..25, 2..5),
            men in 0u64..25,
            keys in proptest::collection::vec(any::<u32>(), 8),
        ) {
            let config = DisclosureConfig::default();
            let total: u64 = sectors.iter().sum();
            let men = men.min(total);
            let mut values = vec![total, men, total - men];
            values.extend(&sectors);
            let relations = [
                Relation::exact(0, vec![1, 2]),
                Relation::exact(0, (3..values.len()).collect()),
            ];
            let rule = PublicationRule::new(&config).expect("valid");
            let mut published: Vec<Option<u64>> = values
                .iter()
                .zip(&keys)
                .map(|(&v, &k)| publish(v, CellKey(k), &rule))
                .collect();
            let interval_rule = IntervalRule::new(&config);
            let protection = protect_intervals(&values, &mut published, &relations, &interval_rule)
                .expect("an audit");
            prop_assert!(protection.unprotected.is_empty());
            let ranges = audit(&values, &published, &relations, &interval_rule).expect("an audit");
            for (cell, range) in ranges.iter().enumerate() {
                if let Some(range) = range {
                    prop_assert!(range.min <= values[cell]);
                    prop_assert!(range.max.is_none_or(|max| values[cell] <= max));
                    prop_assert!(range.is_protected(4), "cell {} in {:?}", cell, range);
                }
            }
        }
    }
}
