//! The dashboard's counters: the cells every view adds to (a total, or a
//! count under a sector, a `by_group` category or a month), the categories
//! and age bands that address them, and the table of their sums.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use rotation_events::{Ethnicity, Sector, Sex, YesNo};

use super::counts::{GroupMeasure, MonthMeasure, SectorMeasure, Total};
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
}

/// The dashboard's counters: the sum of every entity's view. Zero counters
/// are removed, so that equal figures mean equal maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Counters(pub(super) BTreeMap<Cell, u64>);

impl Counters {
    pub(super) fn add(&mut self, cell: Cell, count: u64) {
        if count > 0 {
            *self.0.entry(cell).or_default() += count;
        }
    }

    pub(super) fn sub(&mut self, cell: Cell, count: u64) {
        if let Some(current) = self.0.get_mut(&cell) {
            debug_assert!(*current >= count, "a view took away more than it added");
            *current = current.saturating_sub(count);
            if *current == 0 {
                self.0.remove(&cell);
            }
        }
    }
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
        counters.add(cell, 2);
        counters.sub(cell, 2);
        counters.add(cell, 0);
        assert_eq!(counters, Counters::default());
    }
}
