//! Disclosure control (contract section 6): what a partnership board may
//! see of its figures, within one release and across the series of
//! releases a reader may keep.
//!
//! The board's view is built from these parts, each in its own module:
//!
//! - [`round`]: the plain rule (`method = "round"`), [`protect`]: counts
//!   from 1 to 9 hidden, the rest rounded to 5, and secondary suppression
//!   by counting hidden cells in each equation.
//! - [`record_key`]: every counted unit's fixed record key, a keyed hash of
//!   its id under the ledger's own secret, and the [`CellKey`] of a cell,
//!   the sum of its units' record keys, kept as units enter and leave.
//! - [`ptable`]: the perturbation table, looked up by (count, cell key).
//! - [`mod@publish`]: a cell's published value under cell-key perturbation
//!   (`method = "cell_key"`, the default): perturbed, thresholded, rounded.
//! - [`intervals`]: the interval audit of published tables (a linear
//!   program per hidden cell) and the secondary suppression it drives.
//! - [`cadence`]: when a table may be released anew, so that no two
//!   releases of a table are fewer than `release_min_units` units apart.
//!
//! Everything here is pure: the secret is handed in by the service, and
//! releases are decided by log position, never by the clock, so the same
//! log always gives the same board view.

pub mod cadence;
pub mod intervals;
pub mod ptable;
pub mod publish;
pub mod record_key;
pub mod round;

use serde::{Deserialize, Serialize};

pub use cadence::{Release, ReleaseMark, ReleaseState};
pub use intervals::{
    AuditError, FeasibleRange, IntervalRule, Protection, Relation, audit, protect_intervals,
    protect_intervals_within,
};
pub use ptable::{PerturbationTable, PtableError};
pub use publish::{PublicationRule, publish, publish_rate};
pub use record_key::{CellKey, KeyedCount, RecordKey, RecordKeySecret, SecretError};
pub use round::protect;

/// How a board's view is protected (`[disclosure]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisclosureConfig {
    /// Cell-key perturbation (the default) or the plain rule.
    pub method: Method,
    /// Counts from 1 to `threshold - 1` are suppressed; rates need a
    /// denominator of at least `threshold`. 0 or 1 suppresses nothing.
    pub threshold: u64,
    /// Shown counts are rounded to the nearest multiple of this; 0 or 1
    /// leaves them exact.
    pub rounding: u64,
    /// The perturbation table's parameter D under `method = "cell_key"`:
    /// no count moves by more than D, and the perturbation's variance is
    /// D / 2 (see [`PerturbationTable::binomial`]). 0 perturbs nothing.
    pub max_perturbation: u32,
    /// A table is released anew only when at least this many units have
    /// entered or left it since its previous release (see [`cadence`]).
    /// 0 or 1 releases at every change.
    pub release_min_units: u64,
    /// The file of the ledger's record-key secret, relative to the data
    /// directory; `keys/disclosure.key` when absent. Read by the service,
    /// which hands the projections its bytes.
    pub record_key_file: Option<String>,
}

impl Default for DisclosureConfig {
    fn default() -> Self {
        Self {
            method: Method::CellKey,
            threshold: 10,
            rounding: 5,
            max_perturbation: 2,
            release_min_units: 10,
            record_key_file: None,
        }
    }
}

impl DisclosureConfig {
    /// The most a published count may differ from the true one before
    /// rounding: the table's D under cell-key perturbation, else 0.
    pub fn perturbation_bound(&self) -> u64 {
        match self.method {
            Method::CellKey => u64::from(self.max_perturbation),
            Method::Round => 0,
        }
    }

    /// How far apart a hidden cell's smallest and largest feasible values
    /// must be: its range must span at least half the threshold in values,
    /// so `max - min >= ceil(threshold / 2) - 1` (4 by default).
    pub fn protection_range(&self) -> u64 {
        self.threshold.div_ceil(2).saturating_sub(1)
    }
}

/// Which disclosure control a board's view gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Cell-key perturbation (the ABS TableBuilder method), then the
    /// threshold and rounding, with a release cadence.
    #[default]
    CellKey,
    /// The threshold and rounding alone.
    Round,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_reads_the_method_and_its_parameters() {
        let config: DisclosureConfig = serde_json::from_value(serde_json::json!({
            "method": "round",
            "max_perturbation": 3,
            "release_min_units": 20,
        }))
        .expect("a valid configuration");
        assert_eq!(config.method, Method::Round);
        assert_eq!(config.max_perturbation, 3);
        assert_eq!(config.release_min_units, 20);
        assert_eq!(config.threshold, 10);
        assert_eq!(config.perturbation_bound(), 0);

        let default: DisclosureConfig =
            serde_json::from_value(serde_json::json!({})).expect("defaults");
        assert_eq!(default, DisclosureConfig::default());
        assert_eq!(default.method, Method::CellKey);
        assert_eq!(default.perturbation_bound(), 2);
        assert_eq!(default.protection_range(), 4);

        let unknown = serde_json::from_value::<DisclosureConfig>(serde_json::json!({
            "methd": "round",
        }));
        assert!(unknown.is_err(), "a misspelt parameter is refused");
    }
}
