//! The dashboard's counters: the cells every view adds to (a total, or a
//! count under a sector, a `by_group` category or a month), the categories
//! and age bands that address them, and the table of their sums.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{Datelike, NaiveDate};
use rotation_events::{Ethnicity, Sector, Sex, YesNo};

use super::counts::{GroupMeasure, MonthMeasure, SectorMeasure, Total};
use crate::disclosure::{KeyedCount, RecordKey};
use crate::flags::FlagRule;
use crate::outcomes::AgeBand;

/// The key of a sector in `by_sector`.
pub(super) fn sector_key(sector: Option<Sector>) -> &'static str {
    sector.map_or("unknown", Sector::as_str)
}

/// A calendar month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Month {
    pub(super) year: i32,
    pub(super) month: u32,
}

impl Month {
    pub(super) fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The name of a missing answer in `by_group`.
pub(super) const NOT_RECORDED: &str = "not_recorded";

/// One category of one `by_group` dimension; `None` is `not_recorded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Category {
    AgeBand(Option<AgeBand>),
    Sex(Option<Sex>),
    Disability(Option<YesNo>),
    Ethnicity(Option<Ethnicity>),
    LoneParent(Option<bool>),
}

impl Category {
    pub(super) fn dimension(self) -> &'static str {
        match self {
            Self::AgeBand(_) => "age_band",
            Self::Sex(_) => "sex",
            Self::Disability(_) => "disability",
            Self::Ethnicity(_) => "ethnicity",
            Self::LoneParent(_) => "lone_parent",
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::AgeBand(v) => v.map_or(NOT_RECORDED, AgeBand::as_str),
            Self::Sex(v) => v.map_or(NOT_RECORDED, Sex::as_str),
            Self::Disability(v) => v.map_or(NOT_RECORDED, YesNo::as_str),
            Self::Ethnicity(v) => v.map_or(NOT_RECORDED, Ethnicity::as_str),
            Self::LoneParent(v) => v.map_or(NOT_RECORDED, |yes| if yes { "yes" } else { "no" }),
        }
    }

    /// The category a board sees this one under: "prefer not to say" is
    /// published together with "not recorded" (both say the answer is not
    /// known, and each is small in most partnerships, so apart they would
    /// mostly be hidden); every other category is its own.
    pub(super) fn published_as(self) -> Self {
        match self {
            Self::Sex(Some(Sex::PreferNotToSay)) => Self::Sex(None),
            Self::Disability(Some(YesNo::PreferNotToSay)) => Self::Disability(None),
            Self::Ethnicity(Some(Ethnicity::PreferNotToSay)) => Self::Ethnicity(None),
            other => other,
        }
    }

    /// Every category of every dimension, so that the dashboard lists them
    /// all, zeros included.
    pub(super) fn all() -> Vec<Category> {
        fn with_none<T: Copy>(all: &[T], wrap: impl Fn(Option<T>) -> Category) -> Vec<Category> {
            all.iter()
                .map(|&v| wrap(Some(v)))
                .chain([wrap(None)])
                .collect()
        }
        let mut all = with_none(AgeBand::ALL, Self::AgeBand);
        all.extend(with_none(Sex::ALL, Self::Sex));
        all.extend(with_none(YesNo::ALL, Self::Disability));
        all.extend(with_none(Ethnicity::ALL, Self::Ethnicity));
        all.extend(with_none(&[true, false], Self::LoneParent));
        all
    }
}

/// One counter of the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Cell {
    Total(Total),
    /// `None` is the `unknown` sector.
    Sector(Option<Sector>, SectorMeasure),
    Group(Category, GroupMeasure),
    Month(Month, MonthMeasure),
    /// The substitutions started in a month that break a scheme rule,
    /// under the partnership's limits: what a board sees of the flags.
    Flag(Month, FlagRule),
}

/// The dashboard's counters: the sum of every entity's view, each with its
/// cell key (contract section 6) kept alongside. Zero counters are
/// removed, so that equal figures mean equal maps.
///
/// A view adds `count` units to a cell on behalf of one entity; the units
/// are that entity's first, second, ... unit in the cell, and their record
/// keys are [`unit_key`] of the entity's record key and the ordinal. So an
/// entity that adds the same count always adds the same key, and a cell's
/// key is the sum of the keys of the units it holds, however often views
/// are recomputed.
#[derive(Clone, Debug, Default)]
pub(super) struct Counters {
    pub(super) cells: BTreeMap<Cell, KeyedCount>,
    /// The cells changed since the release cadence last looked.
    pub(super) dirty: BTreeSet<Cell>,
}

impl PartialEq for Counters {
    /// Equal counters hold the same cells; which changed last is not a
    /// figure.
    fn eq(&self, other: &Self) -> bool {
        self.cells == other.cells
    }
}

impl Counters {
    /// `count` units of the entity whose record key is `entity` entered
    /// `cell`.
    pub(super) fn add(&mut self, cell: Cell, count: u64, entity: RecordKey) {
        self.add_from(cell, 0, count, entity);
    }

    /// The entity's units numbered `from .. from + count` entered `cell`.
    pub(super) fn add_from(&mut self, cell: Cell, from: u64, count: u64, entity: RecordKey) {
        if count > 0 {
            let slot = self.cells.entry(cell).or_default();
            for ordinal in from..from + count {
                slot.add(unit_key(entity, ordinal));
            }
            self.dirty.insert(cell);
        }
    }

    /// The `count` units the entity had added to `cell` left it.
    pub(super) fn sub(&mut self, cell: Cell, count: u64, entity: RecordKey) {
        if count == 0 {
            return;
        }
        if let Some(current) = self.cells.get_mut(&cell) {
            debug_assert!(
                current.count >= count,
                "a view took away more than it added"
            );
            for ordinal in 0..count {
                current.remove(unit_key(entity, ordinal));
            }
            if current.count == 0 {
                self.cells.remove(&cell);
            }
            self.dirty.insert(cell);
        }
    }

    /// The count of a cell, 0 when it holds nothing.
    pub(super) fn count(&self, cell: &Cell) -> u64 {
        self.cells.get(cell).map_or(0, |c| c.count)
    }
}

/// The record key of an entity's unit numbered `ordinal` in a cell: the
/// entity's own key for its first unit, and for the others a mix of it and
/// the ordinal (SplitMix64's finaliser), as unpredictable as the entity's
/// key without the ledger's secret.
pub(super) fn unit_key(entity: RecordKey, ordinal: u64) -> RecordKey {
    if ordinal == 0 {
        return entity;
    }
    let mut z = (u64::from(entity.0) << 32 | ordinal).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    RecordKey((z >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dimension_lists_not_recorded() {
        let all = Category::all();
        for dimension in ["age_band", "sex", "disability", "ethnicity", "lone_parent"] {
            assert!(
                all.iter()
                    .any(|c| c.dimension() == dimension && c.name() == NOT_RECORDED),
                "{dimension}"
            );
        }
        assert_eq!(all.len(), 4 + 5 + 4 + 7 + 3);
    }

    #[test]
    fn months_print_as_year_and_month() {
        let date = NaiveDate::from_ymd_opt(2025, 3, 9).expect("a valid date");
        assert_eq!(Month::of(date).to_string(), "2025-03");
    }

    #[test]
    fn counters_forget_zeros() {
        let mut counters = Counters::default();
        let cell = Cell::Total(Total::Referrals);
        counters.add(cell, 2, RecordKey(7));
        counters.sub(cell, 2, RecordKey(7));
        counters.add(cell, 0, RecordKey(7));
        counters.dirty.clear();
        assert_eq!(counters, Counters::default());
    }
}
