//! The board's view of a partnership (contract section 6): each table as
//! it was last released, with the release's position and date, and the
//! scheme-rule exceptions as counts per rule under the same control.
//!
//! Nothing here reads the live counters: a read assembles
//! the releases the fold made, so the same log gives the same view byte
//! for byte, however often and whenever it is read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::Dashboards;
use super::cells::{Category, NOT_RECORDED};
use super::counts::{GroupMeasure, MonthMeasure, SectorMeasure, Total};
use super::release::{Published, Table};
use crate::flags::FlagRule;

/// The segment of a cell's name after `prefix` (a sector, a month).
fn key_under<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)?.split('/').next()
}

impl Dashboards {
    /// The board's view of `partnership`, `None` if it has had no event.
    /// The flags are counted under the limits set with
    /// [`Dashboards::set_limits`], which the view names.
    pub fn board(&self, partnership: &str) -> Option<Value> {
        let state = self.partnerships.get(partnership)?;
        let releases = &state.releases;
        let mut suppressed: Vec<Value> = Vec::new();
        let mut release_marks = Map::new();
        // Every cell's published value by its path, from each table's
        // last release; tables not released yet are absent.
        // Borrowed from the releases: a read copies no cell's name.
        let mut cells: BTreeMap<&str, Option<u64>> = BTreeMap::new();
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
                Table::Measure(_) | Table::Flags(_) => {
                    if let Some(Published { cells: shown, .. }) = published {
                        cells.extend(shown.iter().map(|(k, v)| (k.as_str(), *v)));
                    }
                }
                _ => {
                    let rate = published.and_then(|p| p.rate);
                    rates.insert(table.name().to_owned(), json!(rate));
                }
            }
        }
        let mut value_of = |name: String, table: Table, path: String| -> Value {
            // A table not released yet is held back whole, and its cells
            // are listed as hidden like any other, unless it has never
            // counted anything.
            if releases.never_counted(table) {
                return json!(0);
            }
            if releases.published(table).is_none() {
                suppressed.push(Value::String(path));
                return Value::Null;
            }
            match cells.get(name.as_str()) {
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
            totals.insert(
                total.name().to_owned(),
                value_of(name, Table::Measure(total), path),
            );
        }

        let mut sectors: Vec<String> = cells
            .keys()
            .filter_map(|k| key_under(k, "by_sector/"))
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
                    value_of(name, Table::Measure(measure.total()), path),
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
                    value_of(name, Table::Measure(measure.total()), path),
                );
            }
            if let Value::Object(rows) = dimension {
                rows.insert(category.name().to_owned(), Value::Object(row));
            }
        }
        debug_assert!(Category::all().iter().any(|c| c.name() == NOT_RECORDED));

        let mut months: Vec<String> = cells
            .keys()
            .filter_map(|k| key_under(k, "monthly/"))
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
                row.insert(
                    measure.name().to_owned(),
                    value_of(name, Table::Measure(total), path),
                );
            }
            monthly.push(Value::Object(row));
        }

        // The exceptions as counts per month and rule, each rule's months
        // one table; a month is listed when any rule's release counts it.
        let months: BTreeSet<String> = cells
            .keys()
            .filter_map(|k| key_under(k, "flags/"))
            .map(str::to_owned)
            .collect();
        let mut flags = Vec::new();
        for month in months {
            for &rule in FlagRule::ALL {
                let name = format!("flags/{month}/{}", rule.as_str());
                let path = format!("/flags/{}/count", flags.len());
                let count = value_of(name, Table::Flags(rule), path);
                flags.push(json!({"month": month, "rule": rule.as_str(), "count": count}));
            }
        }
        // A rule that has counted but is not released yet says no more
        // than that: not even the months of its exceptions.
        for &rule in FlagRule::ALL {
            let table = Table::Flags(rule);
            if releases.published(table).is_none() && !releases.never_counted(table) {
                let path = format!("/flags/{}/count", flags.len());
                suppressed.push(Value::String(path));
                flags.push(json!({"month": null, "rule": rule.as_str(), "count": null}));
            }
        }
        let config = &self.disclosure;
        Some(json!({
            "partnership": partnership,
            "as_of": {"position": self.position, "recordedtime": self.recordedtime},
            "limits": state.limits,
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
}
