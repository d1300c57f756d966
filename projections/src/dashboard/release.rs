//! The board's releases (contract section 6): each table, a measure with
//! its breakdowns, is released anew only once enough units have entered or
//! left it, and each release is perturbed, thresholded, rounded and audited
//! once, when it is made, so that a board read is a lookup.
//!
//! # Tables
//!
//! A table is one published total with every breakdown that adds up to it
//! (`jobseekers_referred` with its groups and the months of referrals,
//! `releases_started` with its sectors and months, and so on), or one rate
//! with its numerator and denominator. `referrals` is not a table of its
//! own: it always equals `jobseekers_referred`, and a figure is published
//! once, so the months of referrals belong to that table.
//!
//! # When a table is due
//!
//! The fold keeps, for each table, the counts of its cells at its last
//! release. Within each breakdown (the sectors, the months, each group
//! dimension; the table's total when it has no breakdown) the units that
//! changed since then are at least the larger of the sum of the rises and
//! the sum of the falls of its cells: a unit that enters raises one cell,
//! one that leaves lowers one, one that moves does both. A table is due
//! when every breakdown has changed by at least `release_min_units`, so two
//! releases of a table never differ by fewer units in any breakdown, and a
//! unit that enters and leaves again before the next release is no change.
//! The sums are kept as the counters change, so deciding costs a few map
//! updates per changed cell. Releases are decided after every event, by
//! position, so the same log gives the same releases, however it is read.

use std::collections::{BTreeMap, BTreeSet};

use rotation_events::Sector;
use serde::{Deserialize, Serialize};

use super::cells::{Category, Cell, Counters, Month, sector_key};
use super::counts::{GroupMeasure, MonthMeasure, SectorMeasure, Total};
use crate::disclosure::{
    DisclosureConfig, IntervalRule, KeyedCount, PublicationRule, Relation, ReleaseMark,
    protect_intervals, publish, publish_rate,
};

/// One table of the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Table {
    Measure(Total),
    TrainingCompletionRate,
    SubstituteIntoWorkRate,
}

impl Table {
    /// Every published table: each total but `referrals`, and the rates.
    pub(crate) fn all() -> impl Iterator<Item = Table> {
        Total::ALL
            .iter()
            .filter(|&&t| t != Total::Referrals)
            .map(|&t| Table::Measure(t))
            .chain([Table::TrainingCompletionRate, Table::SubstituteIntoWorkRate])
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Measure(total) => total.name(),
            Self::TrainingCompletionRate => "training_completion_rate",
            Self::SubstituteIntoWorkRate => "substitute_into_work_rate",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::all().find(|t| t.name() == name)
    }

    /// The breakdowns whose changes decide when the table is due.
    fn breakdowns(self) -> Vec<Breakdown> {
        let Self::Measure(total) = self else {
            return vec![Breakdown::Whole];
        };
        let mut out = Vec::new();
        if SectorMeasure::ALL.iter().any(|m| m.total() == total) {
            out.push(Breakdown::Sector);
        }
        if MonthMeasure::ALL.iter().any(|&m| month_table(m) == total) {
            out.push(Breakdown::Month);
        }
        if GroupMeasure::ALL.iter().any(|m| m.total() == total) {
            for dimension in ["age_band", "sex", "disability", "ethnicity", "lone_parent"] {
                out.push(Breakdown::Group(dimension));
            }
        }
        if out.is_empty() {
            out.push(Breakdown::Whole);
        }
        out
    }

    /// The breakdown `cell` belongs to within this table.
    fn breakdown(self, cell: Cell) -> Breakdown {
        match (self, cell) {
            (Self::Measure(_), Cell::Sector(..)) => Breakdown::Sector,
            (Self::Measure(_), Cell::Month(..)) => Breakdown::Month,
            (Self::Measure(_), Cell::Group(category, _)) => Breakdown::Group(category.dimension()),
            _ => Breakdown::Whole,
        }
    }
}

/// The table a month column belongs to: its total's, but for referrals,
/// which are published once, as `jobseekers_referred`.
fn month_table(measure: MonthMeasure) -> Total {
    match measure.total() {
        Total::Referrals => Total::JobseekersReferred,
        total => total,
    }
}

/// The tables a counter belongs to (at most two: its measure's, and a rate
/// it is part of).
fn tables_of(cell: Cell) -> [Option<Table>; 2] {
    match cell {
        Cell::Total(Total::Referrals) => [None, None],
        Cell::Total(total) => {
            let rate = match total {
                Total::TrainingCompleted | Total::TrainingLeft => {
                    Some(Table::TrainingCompletionRate)
                }
                Total::SubstitutionsIntoWork | Total::SubstitutionsEnded => {
                    Some(Table::SubstituteIntoWorkRate)
                }
                _ => None,
            };
            [Some(Table::Measure(total)), rate]
        }
        Cell::Sector(_, measure) => [Some(Table::Measure(measure.total())), None],
        Cell::Group(_, measure) => [Some(Table::Measure(measure.total())), None],
        Cell::Month(_, measure) => [Some(Table::Measure(month_table(measure))), None],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Breakdown {
    Whole,
    Sector,
    Month,
    Group(&'static str),
}

/// A counter's name in a release: its JSON path on the board, with the
/// month itself rather than its row number.
pub(crate) fn cell_name(cell: Cell) -> String {
    match cell {
        Cell::Total(total) => format!("totals/{}", total.name()),
        Cell::Sector(sector, measure) => {
            format!("by_sector/{}/{}", sector_key(sector), measure.name())
        }
        Cell::Group(category, measure) => format!(
            "by_group/{}/{}/{}",
            category.dimension(),
            category.name(),
            measure.name()
        ),
        Cell::Month(month, measure) => format!("monthly/{month}/{}", measure.name()),
    }
}

/// The counter named `name` by [`cell_name`].
fn parse_cell(name: &str) -> Option<Cell> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["totals", total] => Total::ALL
            .iter()
            .find(|t| t.name() == *total)
            .map(|&t| Cell::Total(t)),
        ["by_sector", sector, measure] => {
            let sector = if *sector == "unknown" {
                None
            } else {
                Some(*Sector::ALL.iter().find(|s| s.as_str() == *sector)?)
            };
            let measure = *SectorMeasure::ALL.iter().find(|m| m.name() == *measure)?;
            Some(Cell::Sector(sector, measure))
        }
        ["by_group", dimension, category, measure] => {
            let category = Category::all()
                .into_iter()
                .find(|c| c.dimension() == *dimension && c.name() == *category)?;
            let measure = *GroupMeasure::ALL.iter().find(|m| m.name() == *measure)?;
            Some(Cell::Group(category, measure))
        }
        ["monthly", month, measure] => {
            let (year, number) = month.split_once('-')?;
            let month = Month {
                year: year.parse().ok()?,
                month: number.parse().ok()?,
            };
            let measure = *MonthMeasure::ALL.iter().find(|m| m.name() == *measure)?;
            Some(Cell::Month(month, measure))
        }
        _ => None,
    }
}

/// What one release of a table published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Published {
    pub(crate) mark: ReleaseMark,
    /// Every non-zero cell of the table by [`cell_name`], `None` when
    /// hidden; a cell not listed was 0.
    pub(crate) cells: BTreeMap<String, Option<u64>>,
    /// The rate of a rate table, `None` when hidden.
    pub(crate) rate: Option<f64>,
}

/// One table's last release and the counts it was made from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct TableState {
    /// The true counts of the table's cells at its last release, by name.
    released: BTreeMap<String, u64>,
    published: Option<Published>,
}

/// The rules a release is made under, built once from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ReleaseRules {
    pub(crate) min_units: u64,
    pub(crate) publication: PublicationRule,
    pub(crate) intervals: IntervalRule,
}

impl ReleaseRules {
    pub(crate) fn new(config: &DisclosureConfig) -> Self {
        Self {
            min_units: config.release_min_units,
            publication: PublicationRule::new(config)
                .expect("the configuration's perturbation table was checked when it was read"),
            intervals: IntervalRule::new(config),
        }
    }
}

/// Every table's releases of one partnership. Only the releases and the
/// counts they were made from are serialised; what changed since is
/// rebuilt from the counters on load ([`Releases::rebuild`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Releases {
    tables: BTreeMap<String, TableState>,
    #[serde(skip)]
    derived: Changes,
}

/// What changed since each table's last release.
#[derive(Clone, Debug, Default)]
struct Changes {
    released: BTreeMap<Table, BTreeMap<Cell, u64>>,
    /// The current cells of each table with a non-zero count.
    members: BTreeMap<Table, BTreeSet<Cell>>,
    /// Current count minus released count, for cells where they differ.
    deltas: BTreeMap<Table, BTreeMap<Cell, i64>>,
    /// The sums of rises and of falls of each breakdown's cells.
    spreads: BTreeMap<Table, BTreeMap<Breakdown, (u64, u64)>>,
}

impl Releases {
    /// Rebuilds what changed since each release from the counters, after
    /// a checkpoint is loaded.
    pub(crate) fn rebuild(&mut self, counters: &mut Counters) {
        self.derived = Changes::default();
        for (name, state) in &self.tables {
            let Some(table) = Table::parse(name) else {
                continue;
            };
            let released: BTreeMap<Cell, u64> = state
                .released
                .iter()
                .filter_map(|(cell, &count)| Some((parse_cell(cell)?, count)))
                .collect();
            let cells: Vec<Cell> = released.keys().copied().collect();
            self.derived.released.insert(table, released);
            for cell in cells {
                self.derived.note(table, cell, counters.count(&cell));
            }
        }
        counters.dirty.clear();
        for (&cell, count) in &counters.cells {
            for table in tables_of(cell).into_iter().flatten() {
                self.derived.note(table, cell, count.count);
            }
        }
    }

    /// Takes in the counters changed by one event and releases every table
    /// that is now due, at `mark`.
    pub(crate) fn after_event(
        &mut self,
        counters: &mut Counters,
        mark: ReleaseMark,
        rules: &ReleaseRules,
    ) {
        if counters.dirty.is_empty() {
            return;
        }
        let mut candidates = BTreeSet::new();
        for cell in std::mem::take(&mut counters.dirty) {
            let count = counters.count(&cell);
            for table in tables_of(cell).into_iter().flatten() {
                self.derived.note(table, cell, count);
                candidates.insert(table);
            }
        }
        for table in candidates {
            if self.derived.changed(table) >= rules.min_units.max(1) {
                self.release(table, counters, mark, rules);
            }
        }
    }

    /// Whether `table` has never counted anything: before its first
    /// release such a table is a true 0, which tells nothing of anyone.
    pub(crate) fn never_counted(&self, table: Table) -> bool {
        self.published(table).is_none()
            && self
                .derived
                .members
                .get(&table)
                .is_none_or(BTreeSet::is_empty)
            && self
                .derived
                .deltas
                .get(&table)
                .is_none_or(BTreeMap::is_empty)
    }

    /// The last release of `table`, `None` before its first.
    pub(crate) fn published(&self, table: Table) -> Option<&Published> {
        self.tables.get(table.name())?.published.as_ref()
    }

    fn release(
        &mut self,
        table: Table,
        counters: &Counters,
        mark: ReleaseMark,
        rules: &ReleaseRules,
    ) {
        let members = self
            .derived
            .members
            .get(&table)
            .cloned()
            .unwrap_or_default();
        let keyed = |cell: &Cell| counters.cells.get(cell).copied().unwrap_or_default();
        let published = match table {
            Table::Measure(total) => {
                // Merged categories are one cell: the union of their units,
                // whose count and key are the sums of theirs.
                let mut merged: BTreeMap<Cell, KeyedCount> = BTreeMap::new();
                merged.insert(Cell::Total(total), keyed(&Cell::Total(total)));
                for &cell in members.iter().filter(|&&c| c != Cell::Total(total)) {
                    let slot = merged.entry(published_as(cell)).or_default();
                    let part = keyed(&cell);
                    slot.count += part.count;
                    slot.key.0 = slot.key.0.wrapping_add(part.key.0);
                }
                let keyed = |cell: &Cell| merged.get(cell).copied().unwrap_or_default();
                let mut cells: Vec<Cell> = vec![Cell::Total(total)];
                cells.extend(merged.keys().copied().filter(|&c| c != Cell::Total(total)));
                let values: Vec<u64> = cells.iter().map(|c| keyed(c).count).collect();
                let mut shown: Vec<Option<u64>> = cells
                    .iter()
                    .map(|c| {
                        let k = keyed(c);
                        publish(k.count, k.key, &rules.publication)
                    })
                    .collect();
                let relations = relations(table, &cells);
                if protect_intervals(&values, &mut shown, &relations, &rules.intervals).is_err() {
                    // Cells that do not add up as the relations say cannot be
                    // audited; hiding every non-zero cell is the safe answer.
                    for (slot, &value) in shown.iter_mut().zip(&values) {
                        if value > 0 {
                            *slot = None;
                        }
                    }
                }
                Published {
                    mark,
                    cells: cells
                        .iter()
                        .zip(shown)
                        .filter(|(c, _)| keyed(c).count > 0)
                        .map(|(&c, shown)| (cell_name(c), shown))
                        .collect(),
                    rate: None,
                }
            }
            Table::TrainingCompletionRate | Table::SubstituteIntoWorkRate => {
                let (numerator, denominator) = if table == Table::TrainingCompletionRate {
                    let completed = keyed(&Cell::Total(Total::TrainingCompleted));
                    let left = keyed(&Cell::Total(Total::TrainingLeft));
                    // The union of two cells is a cell: counts and keys add.
                    let mut whole = completed;
                    whole.count += left.count;
                    whole.key.0 = whole.key.0.wrapping_add(left.key.0);
                    (completed, whole)
                } else {
                    (
                        keyed(&Cell::Total(Total::SubstitutionsIntoWork)),
                        keyed(&Cell::Total(Total::SubstitutionsEnded)),
                    )
                };
                Published {
                    mark,
                    cells: BTreeMap::new(),
                    rate: publish_rate(numerator, denominator, &rules.publication),
                }
            }
        };
        let released: BTreeMap<Cell, u64> = members
            .iter()
            .map(|&c| (c, keyed(&c).count))
            .filter(|&(_, n)| n > 0)
            .collect();
        self.tables.insert(
            table.name().to_owned(),
            TableState {
                released: released.iter().map(|(&c, &n)| (cell_name(c), n)).collect(),
                published: Some(published),
            },
        );
        self.derived.released.insert(table, released);
        self.derived.deltas.remove(&table);
        self.derived.spreads.remove(&table);
    }
}

/// The cell a board sees `cell` under (see [`Category::published_as`]).
fn published_as(cell: Cell) -> Cell {
    match cell {
        Cell::Group(category, measure) => Cell::Group(category.published_as(), measure),
        other => other,
    }
}

/// The additive relations among a measure table's cells (the first is its
/// total): the total is the sum of each breakdown's cells. Zero cells are
/// left out; a reader knows them exactly.
fn relations(table: Table, cells: &[Cell]) -> Vec<Relation> {
    let mut by_breakdown: BTreeMap<Breakdown, Vec<usize>> = BTreeMap::new();
    for (i, &cell) in cells.iter().enumerate().skip(1) {
        // The months of referrals count events, not people: they add up
        // to `referrals`, which a person referred twice makes larger.
        if let Cell::Month(_, MonthMeasure::Referrals) = cell {
            continue;
        }
        by_breakdown
            .entry(table.breakdown(cell))
            .or_default()
            .push(i);
    }
    by_breakdown
        .into_values()
        .map(|parts| Relation { total: 0, parts })
        .collect()
}

impl PartialEq for Changes {
    /// What changed is a function of the released counts and the counters,
    /// which are compared where they are kept; how its maps happen to be
    /// filled is not.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Changes {
    /// `cell` of `table` now counts `count`.
    fn note(&mut self, table: Table, cell: Cell, count: u64) {
        let members = self.members.entry(table).or_default();
        if count > 0 {
            members.insert(cell);
        } else {
            members.remove(&cell);
        }
        let released = self
            .released
            .get(&table)
            .and_then(|r| r.get(&cell))
            .copied()
            .unwrap_or(0);
        let new = count as i64 - released as i64;
        let deltas = self.deltas.entry(table).or_default();
        let old = deltas.get(&cell).copied().unwrap_or(0);
        if new == old {
            return;
        }
        if new == 0 {
            deltas.remove(&cell);
        } else {
            deltas.insert(cell, new);
        }
        let spread = self
            .spreads
            .entry(table)
            .or_default()
            .entry(table.breakdown(cell))
            .or_default();
        let rises = |d: i64| d.max(0) as u64;
        let falls = |d: i64| (-d).max(0) as u64;
        spread.0 = spread.0 + rises(new) - rises(old);
        spread.1 = spread.1 + falls(new) - falls(old);
    }

    /// The fewest units any of the table's breakdowns has changed by since
    /// its last release.
    fn changed(&self, table: Table) -> u64 {
        let spreads = self.spreads.get(&table);
        table
            .breakdowns()
            .into_iter()
            .map(|b| {
                spreads
                    .and_then(|s| s.get(&b))
                    .map_or(0, |&(rises, falls)| rises.max(falls))
            })
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_names_read_back() {
        let cells = [
            Cell::Total(Total::ReleasesStarted),
            Cell::Sector(None, SectorMeasure::RotationsAgreed),
            Cell::Sector(Some(Sector::ALL[2]), SectorMeasure::TrainingLeft),
            Cell::Group(Category::all()[3], GroupMeasure::IntoWork),
            Cell::Month(
                Month {
                    year: 2025,
                    month: 3,
                },
                MonthMeasure::Progressions,
            ),
        ];
        for cell in cells {
            assert_eq!(parse_cell(&cell_name(cell)), Some(cell), "{cell:?}");
        }
    }

    #[test]
    fn every_cell_belongs_to_a_table_but_referrals() {
        assert_eq!(tables_of(Cell::Total(Total::Referrals)), [None, None]);
        assert_eq!(
            tables_of(Cell::Month(
                Month {
                    year: 2025,
                    month: 1
                },
                MonthMeasure::Referrals
            )),
            [Some(Table::Measure(Total::JobseekersReferred)), None]
        );
        assert_eq!(Table::all().count(), Total::ALL.len() - 1 + 2);
    }
}
