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
//! Each scheme rule's exceptions are a table too: the substitutions it
//! flags, by the month they started, judged under the partnership's
//! limits as the fold goes (`Cell::Flag`), with no total.
//!
//! # Tables audited together
//!
//! A few sums join the totals of different tables (`ACROSS`). A table
//! linked by one is audited, when it is released, together with every
//! table linked to it as the board shows them at that moment, and may hide
//! more of its own cells for their sake (`Releases::audit_across`); a
//! release that no hiding of its own makes safe waits.
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
    AuditError, DisclosureConfig, IntervalRule, KeyedCount, PublicationRule, Relation, ReleaseMark,
    protect_intervals, protect_intervals_within, publish, publish_rate,
};
use crate::flags::FlagRule;

/// One table of the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Table {
    Measure(Total),
    TrainingCompletionRate,
    SubstituteIntoWorkRate,
    /// The substitutions flagged under one scheme rule, by the month they
    /// started.
    Flags(FlagRule),
}

impl Table {
    /// Every published table: each total but `referrals`, the rates, and
    /// the flags of each rule.
    pub(crate) fn all() -> impl Iterator<Item = Table> {
        Total::ALL
            .iter()
            .filter(|&&t| t != Total::Referrals)
            .map(|&t| Table::Measure(t))
            .chain([Table::TrainingCompletionRate, Table::SubstituteIntoWorkRate])
            .chain(FlagRule::ALL.iter().map(|&rule| Table::Flags(rule)))
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Measure(total) => total.name(),
            Self::TrainingCompletionRate => "training_completion_rate",
            Self::SubstituteIntoWorkRate => "substitute_into_work_rate",
            Self::Flags(FlagRule::MinUnemployedWeeks) => "flags/min_unemployed_weeks",
            Self::Flags(FlagRule::MaxSubstitutionWeeks) => "flags/max_substitution_weeks",
            Self::Flags(FlagRule::HourForHour) => "flags/hour_for_hour",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::all().find(|t| t.name() == name)
    }

    /// The breakdowns whose changes decide when the table is due.
    fn breakdowns(self) -> Vec<Breakdown> {
        let total = match self {
            Self::Measure(total) => total,
            Self::Flags(_) => return vec![Breakdown::Month],
            _ => return vec![Breakdown::Whole],
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
            (Self::Flags(_), _) => Breakdown::Month,
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
        Cell::Flag(_, rule) => [Some(Table::Flags(rule)), None],
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
        Cell::Flag(month, rule) => format!("flags/{month}/{}", rule.as_str()),
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
            let month = parse_month(month)?;
            let measure = *MonthMeasure::ALL.iter().find(|m| m.name() == *measure)?;
            Some(Cell::Month(month, measure))
        }
        ["flags", month, rule] => {
            let rule = *FlagRule::ALL.iter().find(|r| r.as_str() == *rule)?;
            Some(Cell::Flag(parse_month(month)?, rule))
        }
        _ => None,
    }
}

/// A month written `YYYY-MM`.
fn parse_month(month: &str) -> Option<Month> {
    let (year, number) = month.split_once('-')?;
    Some(Month {
        year: year.parse().ok()?,
        month: number.parse().ok()?,
    })
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
                if !self.audit_across(table, &cells, &values, &mut shown, counters, rules) {
                    // The table waits, showing its previous release, until
                    // a release of it keeps every hidden figure protected.
                    return;
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
            // A flag table has no total and no relation among its months:
            // each month's count is published on its own, hidden when small.
            Table::Flags(_) => Published {
                mark,
                cells: members
                    .iter()
                    .map(|cell| {
                        let k = keyed(cell);
                        (
                            cell_name(*cell),
                            publish(k.count, k.key, &rules.publication),
                        )
                    })
                    .collect(),
                rate: None,
            },
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

/// The relations a board can read between tables: each total is the sum
/// of the others'. The first is exact; the other two hold unless an end is
/// recorded for a start that was retracted, or one substitution or release
/// is started twice, which a reader cannot see, so they are audited too.
const ACROSS: &[(Total, &[Total])] = &[
    (
        Total::SubstitutionsEnded,
        &[
            Total::SubstitutionsCompleted,
            Total::SubstitutionsLeftEarly,
            Total::SubstitutesHiredByEmployer,
            Total::SubstitutionsDismissed,
        ],
    ),
    (
        Total::SubstitutionsStarted,
        &[Total::SubstitutionsActive, Total::SubstitutionsEnded],
    ),
    (
        Total::ReleasesStarted,
        &[Total::ReleasesActive, Total::ReleasesEnded],
    ),
];

/// The measures linked to `total` by relations across tables, itself
/// included, in order; just `total` when it has none.
fn linked(total: Total) -> Vec<Total> {
    let mut group = BTreeSet::from([total]);
    loop {
        let before = group.len();
        for &(sum, parts) in ACROSS {
            let members = || parts.iter().chain([&sum]);
            if members().any(|t| group.contains(t)) {
                group.extend(members().copied());
            }
        }
        if group.len() == before {
            return group.into_iter().collect();
        }
    }
}

/// A count a reader knows nothing of (a table held back whole): the audit
/// gives such a cell no bounds but that it is not negative.
const UNKNOWN: u64 = u64::MAX;

/// A table's last release as a board sees it (see [`Releases::as_released`]).
struct AsReleased {
    /// Its cells, the total first.
    cells: Vec<Cell>,
    /// Their counts as of the release.
    values: Vec<u64>,
    /// What the release showed of them.
    shown: Vec<Option<u64>>,
}

/// One audit of tables linked by relations across tables: their cells as
/// a board sees them now, the one being released among them.
#[derive(Default)]
struct Across {
    values: Vec<u64>,
    shown: Vec<Option<u64>>,
    hideable: Vec<bool>,
    relations: Vec<Relation>,
    /// Each measure's total: its index, and its count as of its release
    /// (the live count of a table held back), from which the slack of a
    /// relation between tables released at different times is worked out.
    totals: BTreeMap<Total, (usize, u64)>,
}

impl Across {
    /// Adds one table's cells (its total first) and its own relations.
    fn add(&mut self, table: Table, cells: &[Cell], values: &[u64], shown: &[Option<u64>]) {
        let offset = self.values.len();
        self.values.extend_from_slice(values);
        self.shown.extend_from_slice(shown);
        self.hideable
            .extend(std::iter::repeat_n(false, cells.len()));
        for relation in relations(table, cells) {
            self.relations.push(Relation {
                total: relation.total + offset,
                parts: relation.parts.iter().map(|p| p + offset).collect(),
                slack: 0,
            });
        }
    }
}

impl Releases {
    /// Audits the release of `table` (its `cells`, true `values` and
    /// `shown` values after its own audit) together with every table linked
    /// to it by a relation across tables, as each of those is released now,
    /// and hides more of `table`'s cells until every hidden cell of them
    /// all is protected. Only `table`'s cells may be hidden: the others
    /// were published before, and a reader may have kept them.
    ///
    /// A reader takes the relations to hold exactly between the figures
    /// shown now; when those contradict that, a reader knows the tables are
    /// of different moments, and can only take each relation to hold to
    /// within the units that moved in between, its slack. Returns `false`
    /// when no hiding of `table`'s cells protects every hidden cell: the
    /// table is then not released this time.
    fn audit_across(
        &self,
        table: Table,
        cells: &[Cell],
        values: &[u64],
        shown: &mut [Option<u64>],
        counters: &Counters,
        rules: &ReleaseRules,
    ) -> bool {
        let Table::Measure(measure) = table else {
            return true;
        };
        let group = linked(measure);
        if group.len() < 2 {
            return true;
        }
        let mut across = Across::default();
        let mut own = 0..0;
        for &member in &group {
            let offset = across.values.len();
            let member_table = Table::Measure(member);
            if member == measure {
                across.add(member_table, cells, values, shown);
                own = offset..across.values.len();
                across.totals.insert(member, (offset, values[0]));
            } else if let Some(released) = self.as_released(member_table) {
                across.add(
                    member_table,
                    &released.cells,
                    &released.values,
                    &released.shown,
                );
                across.totals.insert(member, (offset, released.values[0]));
            } else if self.never_counted(member_table) {
                let total = [Cell::Total(member)];
                across.add(member_table, &total, &[0], &[Some(0)]);
                across.totals.insert(member, (offset, 0));
            } else {
                let total = [Cell::Total(member)];
                across.add(member_table, &total, &[UNKNOWN], &[None]);
                let live = counters.count(&Cell::Total(member));
                across.totals.insert(member, (offset, live));
            }
        }
        for flag in &mut across.hideable[own.clone()] {
            *flag = true;
        }
        let mut exact = across.relations.clone();
        let mut loose = across.relations.clone();
        for &(sum, parts) in ACROSS {
            let Some(&(total, whole)) = across.totals.get(&sum) else {
                continue;
            };
            let members: Option<Vec<(usize, u64)>> = parts
                .iter()
                .map(|p| across.totals.get(p).copied())
                .collect();
            let Some(members) = members else {
                continue;
            };
            let sum_of_parts: u64 = members.iter().map(|&(_, count)| count).sum();
            let parts: Vec<usize> = members.iter().map(|&(index, _)| index).collect();
            exact.push(Relation::exact(total, parts.clone()));
            loose.push(Relation {
                total,
                parts,
                slack: whole.abs_diff(sum_of_parts),
            });
        }
        let attempt = |relations: &[Relation]| {
            let mut trial = across.shown.clone();
            match protect_intervals_within(
                &across.values,
                &mut trial,
                relations,
                &rules.intervals,
                &across.hideable,
            ) {
                Ok(protection) if protection.unprotected.is_empty() => Ok(Some(trial)),
                Ok(_) => Ok(None),
                Err(error) => Err(error),
            }
        };
        let outcome = match attempt(&exact) {
            Err(AuditError::Inconsistent { .. }) => attempt(&loose),
            other => other,
        };
        match outcome {
            Ok(Some(trial)) => {
                shown.copy_from_slice(&trial[own]);
                true
            }
            _ => false,
        }
    }

    /// A table's last release as a board sees it: its cells by the names
    /// it published (the total first), their counts as of that release,
    /// and the values shown; `None` before its first release.
    fn as_released(&self, table: Table) -> Option<AsReleased> {
        let state = self.tables.get(table.name())?;
        let published = state.published.as_ref()?;
        let Table::Measure(total) = table else {
            return None;
        };
        let mut counts: BTreeMap<Cell, u64> = BTreeMap::new();
        for (name, &count) in &state.released {
            if let Some(cell) = parse_cell(name) {
                *counts.entry(published_as(cell)).or_default() += count;
            }
        }
        let mut cells = vec![Cell::Total(total)];
        cells.extend(
            published
                .cells
                .keys()
                .filter_map(|name| parse_cell(name))
                .filter(|&cell| cell != Cell::Total(total)),
        );
        let values = cells
            .iter()
            .map(|c| counts.get(c).copied().unwrap_or(0))
            .collect();
        let shown = cells
            .iter()
            .map(|&c| {
                // A cell a release does not list was 0, which is shown.
                published
                    .cells
                    .get(&cell_name(c))
                    .copied()
                    .unwrap_or(Some(0))
            })
            .collect();
        Some(AsReleased {
            cells,
            values,
            shown,
        })
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
        .map(|parts| Relation::exact(0, parts))
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
            Cell::Flag(
                Month {
                    year: 2024,
                    month: 11,
                },
                FlagRule::HourForHour,
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
        assert_eq!(
            Table::all().count(),
            Total::ALL.len() - 1 + 2 + FlagRule::ALL.len()
        );
    }
}
