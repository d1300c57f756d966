//! The release cadence: when a table (a measure with its breakdowns) may
//! be released anew.
//!
//! No method that gives the same units the same value can hide which cell
//! moved between two releases one unit apart: the cell that moved is the
//! newcomer's group. So a table is released anew only when at least
//! `release_min_units` units have entered or left it since its previous
//! release; until then a board sees the previous release, with its date.
//!
//! A [`ReleaseState`] counts changes exactly: it keeps the set of units
//! whose membership differs from the previous release, toggling a unit in
//! when it enters or leaves and out when it goes back. A unit that enters
//! and is retracted again before the next release is therefore no change
//! at all, so churn cannot bring on a release that differs from the
//! previous one by a single unit. The set never holds more than
//! `release_min_units` units: the release that reaches the mark empties
//! it.
//!
//! Releases are decided by log position, never by the clock: the fold
//! feeds every change in position order and asks after each event whether
//! the table is due, so the same log always gives the same releases,
//! after a restart, a rebuild or a replay.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where in the log a release was made: its position and the recorded
/// time of the event there, which the board shows as the release's date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMark {
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
}

/// One release of a table: the values as published then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release<V> {
    pub values: V,
    pub mark: ReleaseMark,
}

/// One table's releases so far and its changes since the last; `K` names
/// a unit (its record key or id, with its cell when a unit can move
/// between cells), `V` is the table's published values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseState<K: Ord, V> {
    /// The latest release, `None` until the table first has enough units.
    last: Option<Release<V>>,
    /// The units whose membership differs from the latest release.
    changed: BTreeSet<K>,
}

impl<K: Ord, V> Default for ReleaseState<K, V> {
    fn default() -> Self {
        Self {
            last: None,
            changed: BTreeSet::new(),
        }
    }
}

impl<K: Ord, V> ReleaseState<K, V> {
    /// A unit entered or left the table. A second call for the same unit
    /// before the next release undoes the first.
    pub fn toggle(&mut self, unit: K) {
        if !self.changed.remove(&unit) {
            self.changed.insert(unit);
        }
    }

    /// How many units differ from the latest release.
    pub fn pending(&self) -> u64 {
        self.changed.len() as u64
    }

    /// Whether the table may be released anew: at least `min_units` units
    /// (at least one, whatever `min_units` says) differ from the latest
    /// release.
    pub fn is_due(&self, min_units: u64) -> bool {
        self.pending() >= min_units.max(1)
    }

    /// Releases the table at `mark` with the values `values` gives, when it
    /// is due; returns whether it did. `values` is called only then, so the
    /// fold perturbs and audits a table only when it is released.
    pub fn release_if_due(
        &mut self,
        min_units: u64,
        mark: ReleaseMark,
        values: impl FnOnce() -> V,
    ) -> bool {
        if !self.is_due(min_units) {
            return false;
        }
        self.last = Some(Release {
            values: values(),
            mark,
        });
        self.changed.clear();
        true
    }

    /// The release a board sees, `None` before the first.
    pub fn current(&self) -> Option<&Release<V>> {
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn mark(position: u64) -> ReleaseMark {
        ReleaseMark {
            position,
            recorded_at: DateTime::from_timestamp(1_750_000_000 + position as i64, 0)
                .expect("a valid time"),
        }
    }

    /// Feeds `changes` (a unit toggled at each position) to a table
    /// released every `min_units` changes, its values the number of units
    /// in it, and returns the positions and values of its releases.
    fn releases(changes: &[u32], min_units: u64) -> Vec<(u64, usize)> {
        let mut state: ReleaseState<u32, usize> = ReleaseState::default();
        let mut members = BTreeSet::new();
        let mut out = Vec::new();
        for (position, &unit) in changes.iter().enumerate() {
            if !members.remove(&unit) {
                members.insert(unit);
            }
            state.toggle(unit);
            let position = position as u64;
            if state.release_if_due(min_units, mark(position), || members.len()) {
                out.push((position, members.len()));
            }
        }
        out
    }

    #[test]
    fn a_table_waits_for_ten_units() {
        let arrivals: Vec<u32> = (0..25).collect();
        assert_eq!(releases(&arrivals, 10), [(9, 10), (19, 20)]);
        // One unit at a time releases every change.
        assert_eq!(releases(&[1, 2, 1], 1), [(0, 1), (1, 2), (2, 1)]);
        assert_eq!(releases(&[1, 2, 1], 0), [(0, 1), (1, 2), (2, 1)]);
    }

    #[test]
    fn churn_does_not_bring_on_a_release_one_unit_apart() {
        // Units 1 to 9 enter and are retracted again, then unit 10 enters:
        // ten changes counted naively, but only one unit differs.
        let mut changes: Vec<u32> = Vec::new();
        for unit in 1..10 {
            changes.extend([unit, unit]);
        }
        changes.push(10);
        assert_eq!(releases(&changes, 10), []);
    }

    #[test]
    fn the_board_sees_the_previous_release_until_the_next() {
        let mut state: ReleaseState<u32, &str> = ReleaseState::default();
        assert_eq!(state.current(), None);
        for unit in 0..10 {
            state.toggle(unit);
        }
        assert!(state.release_if_due(10, mark(9), || "first"));
        state.toggle(10);
        assert!(!state.release_if_due(10, mark(10), || unreachable!("not due")));
        let current = state.current().expect("released");
        assert_eq!((current.values, current.mark), ("first", mark(9)));
        assert_eq!(state.pending(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any two consecutive releases differ by at least ten units, and
        /// the same changes always give the same releases.
        #[test]
        fn releases_are_ten_units_apart_and_repeatable(
            changes in proptest::collection::vec(0u32..30, 0..200),
        ) {
            let first = releases(&changes, 10);
            prop_assert_eq!(&first, &releases(&changes, 10));
            let mut members = BTreeSet::new();
            let mut released: Option<BTreeSet<u32>> = None;
            let mut next = first.iter().peekable();
            for (position, &unit) in changes.iter().enumerate() {
                if !members.remove(&unit) {
                    members.insert(unit);
                }
                if next.peek().is_some_and(|&&(p, _)| p == position as u64) {
                    next.next();
                    let before = released.take().unwrap_or_default();
                    let differ = before.symmetric_difference(&members).count();
                    prop_assert!(differ >= 10, "released {} units apart", differ);
                    released = Some(members.clone());
                }
            }
        }
    }
}
