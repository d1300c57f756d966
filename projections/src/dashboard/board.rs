//! The board's view of a partnership (contract section 6): each table as
//! it was last released, with the release's position and date, and the
//! scheme-rule exceptions as counts per rule under the same control.
//!
//! Nothing here reads the live counters but the flags: a read assembles
//! the releases the fold made, so the same log gives the same view byte
//! for byte, however often and whenever it is read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::cells::{Category, NOT_RECORDED, unit_key};
use super::counts::{GroupMeasure, MonthMeasure, SectorMeasure, Total};
use super::release::{Published, Table};
use super::{Dashboards, SchemeLimits};
use crate::disclosure::{CellKey, publish};
use crate::flags::{Flag, FlagRule};

impl Dashboards {
    /// The board's view of `partnership`, `None` if it has had no event.
    pub fn board(&self, partnership: &str, limits: &SchemeLimits) -> Option<Value> {
        let state = self.partnerships.get(partnership)?;
        let releases = &state.releases;
        let mut suppressed: Vec<Value> = Vec::new();
        let mut release_marks = Map::new();
        // Every cell's published value by its path, from each table's
        // last release; tables not released yet are absent.
        let mut cells: BTreeMap<String, Option<u64>> = BTreeMap::new();
        let mut rates = Map::new();
        for table in Table::all() {
            let published = releases.published(table);
            release_marks.insert(
                table.name().to_owned(),
                published.map_or(Value::Null, |p| {
                    json!({"position": p.mark.position, "date": p.mark.recorded_at.to_rfc3339()})
                }),
            );
            match table {
                Table::Measure(_) => {
                    if let Some(Published { cells: shown, .. }) = published {
                        cells.extend(shown.iter().map(|(k, v)| (k.clone(), *v)));
                    }
                }
                _ => {
                    let rate = published.and_then(|p| p.rate);
                    rates.insert(table.name().to_owned(), json!(rate));
                }
            }
        }
        let released = |total: Total| releases.published(Table::Measure(total)).is_some();
        let mut value_of = |name: String, total: Total, path: String| -> Value {
            // A table not released yet is held back whole, and its cells
            // are listed as hidden like any other, unless it has never
            // counted anything.
            if releases.never_counted(Table::Measure(total)) {
                return json!(0);
            }
            if !released(total) {
                suppressed.push(Value::String(path));
                return Value::Null;
            }
            match cells.get(&name) {
                Some(Some(v)) => json!(v),
                Some(None) => {
                    suppressed.push(Value::String(path));
                    Value::Null
                }
                None => json!(0),
            }
        };

        let mut totals = Map::new();
        for &total in Total::ALL {
            if total == Total::Referrals {
                continue;
            }
            let name = format!("totals/{}", total.name());
            let path = format!("/{name}");
            totals.insert(total.name().to_owned(), value_of(name, total, path));
        }

        let mut sectors: Vec<String> = cells
            .keys()
            .filter_map(|k| k.strip_prefix("by_sector/"))
            .filter_map(|k| k.split('/').next())
            .map(str::to_owned)
            .collect();
        sectors.dedup();
        let mut by_sector = Map::new();
        for sector in sectors {
            let mut row = Map::new();
            for &measure in SectorMeasure::ALL {
                let name = format!("by_sector/{sector}/{}", measure.name());
                let path = format!("/{name}");
                row.insert(
                    measure.name().to_owned(),
                    value_of(name, measure.total(), path),
                );
            }
            by_sector.insert(sector, Value::Object(row));
        }

        let mut by_group = Map::new();
        for category in Category::all() {
            // A merged category is shown under the one it is merged into.
            if category.published_as() != category {
                continue;
            }
            let dimension = by_group
                .entry(category.dimension().to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            let mut row = Map::new();
            for &measure in GroupMeasure::ALL {
                let name = format!(
                    "by_group/{}/{}/{}",
                    category.dimension(),
                    category.name(),
                    measure.name()
                );
                let path = format!("/{name}");
                row.insert(
                    measure.name().to_owned(),
                    value_of(name, measure.total(), path),
                );
            }
            if let Value::Object(rows) = dimension {
                rows.insert(category.name().to_owned(), Value::Object(row));
            }
        }
        debug_assert!(Category::all().iter().any(|c| c.name() == NOT_RECORDED));

        let mut months: Vec<String> = cells
            .keys()
            .filter_map(|k| k.strip_prefix("monthly/"))
            .filter_map(|k| k.split('/').next())
            .map(str::to_owned)
            .collect();
        months.dedup();
        let mut monthly = Vec::new();
        for (i, month) in months.into_iter().enumerate() {
            let mut row = Map::new();
            row.insert("month".to_owned(), json!(month));
            for &measure in MonthMeasure::ALL {
                let total = match measure.total() {
                    Total::Referrals => Total::JobseekersReferred,
                    total => total,
                };
                let name = format!("monthly/{month}/{}", measure.name());
                let path = format!("/monthly/{i}/{}", measure.name());
                row.insert(measure.name().to_owned(), value_of(name, total, path));
            }
            monthly.push(Value::Object(row));
        }

        let flags = self.flag_counts(state, limits);
        let config = &self.disclosure;
        Some(json!({
            "partnership": partnership,
            "as_of": {"position": self.position, "recordedtime": self.recordedtime},
            "limits": limits,
            "totals": totals,
            "rates": rates,
            "by_sector": by_sector,
            "by_group": by_group,
            "monthly": monthly,
            "flags": flags,
            "suppressed": suppressed,
            "releases": release_marks,
            "disclosure": {
                "method": config.method,
                "threshold": config.threshold,
                "rounding": config.rounding,
                "max_perturbation": config.perturbation_bound(),
                "release_min_units": config.release_min_units,
            },
        }))
    }

    /// The scheme-rule exceptions for a board: how many substitutions each
    /// rule flags in each month they started, perturbed through the cell
    /// key of the flagged substitutions' record keys, thresholded and
    /// rounded like any count. A substitution's record key is its
    /// rotation's mixed with the substitution's id, so a read computes no
    /// keyed hash. Months where no rule flags anything are
    /// left out; each listed month lists every rule.
    fn flag_counts(&self, state: &super::fold::Partnership, limits: &SchemeLimits) -> Value {
        let mut cells: BTreeMap<(&str, &'static str), (u64, CellKey)> = BTreeMap::new();
        let mut flags: Vec<Flag> = Vec::new();
        for view in state.derived.rotations.values() {
            for check in &view.checks {
                flags.clear();
                check.flags(limits, &mut flags);
                for flag in &flags {
                    let cell = cells
                        .entry((check.month.as_str(), flag.rule.as_str()))
                        .or_default();
                    cell.0 += 1;
                    let rotation = state.record_key(check.rotation);
                    let low = flag.substitution.as_u128() as u64;
                    cell.1.add(unit_key(rotation, low));
                }
            }
        }
        let months: BTreeSet<&str> = cells.keys().map(|&(month, _)| month).collect();
        let rule = &self.control.rules.publication;
        let mut out = Vec::new();
        for month in months {
            for flag_rule in FlagRule::ALL {
                let (count, key) = cells
                    .get(&(month, flag_rule.as_str()))
                    .copied()
                    .unwrap_or_default();
                out.push(json!({
                    "month": month,
                    "rule": flag_rule.as_str(),
                    "count": publish(count, key, rule),
                }));
            }
        }
        Value::Array(out)
    }
}
