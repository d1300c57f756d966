//! The board dashboard (contract section 6): one fold over every
//! partnership's committed events, and the raw figures it serves per
//! partnership. Disclosure control is applied afterwards, by
//! [`crate::disclosure`]; the scheme-rule exceptions are judged by
//! [`crate::flags`]; "into work" is [`crate::outcomes::into_work`].
//!
//! # Facts, views and counters
//!
//! The fold keeps *facts*, not counts: for every employer, rotation and
//! person, what each of its events stated, keyed by the event's position.
//! A retraction parks the facts of the event it names (and a retraction of
//! that retraction brings them back), so every figure is a function of the
//! live facts alone, and a retracted event leaves the dashboard exactly as
//! if it had never been applied, whatever came after it.
//!
//! From the facts the fold derives, per entity, a *view*: the cells the
//! entity adds to the dashboard. The sum of all views is kept in one table
//! of counters. An event changes the facts of one entity (through a chain
//! of retractions, of a few); only those entities and the ones whose views
//! read their facts are recomputed, and the counters are adjusted by the
//! difference. Reading a dashboard is then a walk over a few hundred
//! counters and the per-substitution checks, however large the partnership.
//!
//! Which views read which facts:
//! - an employer's view reads its own facts (its sector);
//! - a rotation's view reads its own facts, its employer's sector and the
//!   facts of its substitutes, including their substitutions in other
//!   rotations (observations for "into work", `unemployed_since` for the
//!   scheme-rule checks);
//! - a person's view reads their own facts and the substitutions that name
//!   them as the substitute.
//!
//! # Definitions
//!
//! Counts of things are counts of live events; *active* is started and not
//! ended; people counts (`jobseekers_referred`, `jobseekers_eligible` on the
//! latest assessment, `preparation_completed`, `jobseekers_placed`,
//! `substitutes_into_work`) count people. Where one entity has several live
//! facts of a kind (a second registration, a second agreement), the one at
//! the highest position wins. Months are those of the UTC date of an
//! event's effective `time`. `by_sector` files rotation events under the
//! sector of the rotation's employer, or under `unknown` when that employer
//! is not (or no longer) enrolled, so every column adds up to its total.
//! `by_group` files people under their profile at the latest registration
//! (the age band is [`crate::outcomes::AgeBand::at_referral`], as in the
//! datasets), with `not_recorded` for a missing answer or an age without a
//! band, so every dimension adds up to the total of each measure as well.
//!
//! # Checkpoints
//!
//! [`Dashboards`] serialises its facts only; the views and counters are
//! rebuilt from them when it is deserialised, through the same functions
//! the fold uses, so a checkpoint cannot carry stale figures.
//! [`Dashboards::VERSION`] names the meaning of the facts and figures: a
//! checkpoint written under another version is to be rebuilt from the log.
//! The facts include profile answers (birth year, sex, ethnicity,
//! disability, lone parent) because the breakdowns need them, but only in
//! memory: a checkpoint holds none (contract section 9), and whoever
//! loads one opens the profiles of [`Dashboards::registrations`] again
//! and hands them to [`Dashboards::restore_profile`]. A
//! `jobrotation.person.erased` forgets every earlier profile of its
//! person, so the breakdowns file them under `not_recorded` at once.
//!
//! # Map
//!
//! - `counts`: the named counts a dashboard publishes ([`Totals`],
//!   [`SectorCounts`], [`GroupCounts`], [`MonthCounts`]) and the enums that
//!   name each count.
//! - `cells`: the counters every view adds to (a total, or a count under a
//!   sector, a group category or a month), and the age band and categories
//!   of `by_group`.
//! - `facts`: what each event states about an employer, rotation or person,
//!   and the index through which a retraction finds the fact it parks.
//! - `fold`: one partnership's facts, the retraction chains, and the
//!   recomputation of the views that read changed facts.
//! - `views`: what each employer, rotation and person adds to the
//!   dashboard, and the scheme-rule check of each substitution.
//! - this file: the entry points, [`Dashboards`] and the [`Dashboard`] it
//!   serves.

mod board;
mod cells;
mod counts;
mod facts;
mod fold;
mod release;
mod views;

use std::collections::BTreeMap;

use rotation_events::{CommittedEvent, EventData, InvalidEvent, Subject, TypedEvent};
use serde::{Deserialize, Serialize, Serializer};

use crate::disclosure::{DisclosureConfig, PtableError, RecordKeySecret, ReleaseMark, SecretError};
use crate::flags::Flag;

use cells::{Category, Cell, Month, sector_key};
pub use counts::{GroupCounts, MonthCounts, SectorCounts, Totals};
pub(crate) use counts::{GroupMeasure, MonthMeasure, SectorMeasure, Total};
use fold::Partnership;
use release::ReleaseRules;

/// The scheme-rule limits of one partnership (`[partnerships.<slug>]` in
/// the configuration). Exceptions to them are flagged, not rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemeLimits {
    /// A substitute should have been unemployed at least this many weeks
    /// when the substitution starts.
    pub min_unemployed_weeks: u32,
    /// A substitution should last at most this many weeks.
    pub max_substitution_weeks: u32,
}

impl Default for SchemeLimits {
    /// The Danish defaults: 26 weeks unemployed, at most 26 weeks' placement.
    fn default() -> Self {
        Self {
            min_unemployed_weeks: 26,
            max_substitution_weeks: 26,
        }
    }
}

/// A share, kept as its two counts so that disclosure control can judge
/// them; it serialises as the share, or `null` when the denominator is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub numerator: u64,
    pub denominator: u64,
}

impl Rate {
    /// The share, `None` when there is nothing to divide by.
    pub fn value(&self) -> Option<f64> {
        (self.denominator > 0).then(|| self.numerator as f64 / self.denominator as f64)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

/// The dashboard's rates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rates {
    /// `training_completed / (training_completed + training_left)`.
    pub training_completion_rate: Rate,
    /// `substitutions_into_work / substitutions_ended`.
    pub substitute_into_work_rate: Rate,
}

/// What the figures are as of: the last event the fold applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AsOf {
    pub position: u64,
    pub recordedtime: String,
}

/// One row of the `monthly` series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MonthlyRow {
    /// `YYYY-MM`.
    pub month: String,
    #[serde(flatten)]
    pub counts: MonthCounts,
}

/// One partnership's board dashboard, raw: every count exact. Serialises to
/// the JSON of contract section 6; [`crate::disclosure::protect`] makes the
/// view a board may see.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dashboard {
    pub partnership: String,
    pub as_of: AsOf,
    /// The limits the flags were judged against.
    pub limits: SchemeLimits,
    pub totals: Totals,
    pub rates: Rates,
    /// SIC section letter (or `unknown`) to counts; sections without any
    /// event are left out.
    pub by_sector: BTreeMap<String, SectorCounts>,
    /// Dimension (`age_band`, `sex`, `disability`, `ethnicity`,
    /// `lone_parent`) to category to counts; every category is listed.
    pub by_group: BTreeMap<String, BTreeMap<String, GroupCounts>>,
    /// Months with at least one event, in order; months without are left
    /// out.
    pub monthly: Vec<MonthlyRow>,
    /// Scheme-rule exceptions, by rotation, substitution and rule.
    pub flags: Vec<Flag>,
}

/// The fold behind every partnership's dashboard. Feed it committed events
/// in position order with [`Dashboards::apply`]; read a dashboard with
/// [`Dashboards::dashboard`]. It serialises (facts only) so that a service
/// can checkpoint it and resume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dashboards {
    /// The position of the last applied event; 0 before the first.
    position: u64,
    /// The `recordedtime` of the last applied event.
    recordedtime: String,
    partnerships: BTreeMap<String, Partnership>,
    /// The disclosure control the board's releases were made under; a
    /// checkpoint made under another is to be rebuilt.
    #[serde(default)]
    disclosure: DisclosureConfig,
    /// Names the secret the record keys were made under (a keyed hash of
    /// a fixed label, which says nothing of the secret); 0 for the public
    /// one. A checkpoint made under another secret is to be rebuilt.
    #[serde(default)]
    keyed_with: u32,
    /// The scheme-rule limits of the partnerships that have their own
    /// (`[partnerships.<slug>]`); the others have the defaults. The flags'
    /// releases are made under them, so a checkpoint made under other
    /// limits is to be rebuilt.
    #[serde(default)]
    limits: BTreeMap<String, SchemeLimits>,
    #[serde(skip)]
    control: Control,
}

/// The secret and rules of the board's releases, set by the service.
#[derive(Clone)]
struct Control {
    secret: RecordKeySecret,
    rules: ReleaseRules,
}

impl Default for Control {
    /// A public secret, for folds outside a ledger (tests, tools): the
    /// service always sets the ledger's own with
    /// [`Dashboards::with_disclosure`].
    fn default() -> Self {
        Self {
            secret: RecordKeySecret::new(b"rotation-ledger public test secret")
                .expect("long enough"),
            rules: ReleaseRules::new(&DisclosureConfig::default()),
        }
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control(..)")
    }
}

impl PartialEq for Control {
    /// The secret and rules are not figures: two folds of the same log are
    /// equal whatever they will release next (the configuration they
    /// released under is compared as [`Dashboards::disclosure`]).
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Why a fold's disclosure control could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Ptable(#[from] PtableError),
}

impl Dashboards {
    /// The meaning of the fold's facts and figures. A checkpoint written
    /// under another version is to be discarded and the fold rebuilt.
    pub const VERSION: u32 = 5;

    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh fold whose releases are made under `config`, with record
    /// keys under `secret` (the ledger's own, from its key file).
    pub fn with_disclosure(config: &DisclosureConfig, secret: &[u8]) -> Result<Self, ControlError> {
        let mut dashboards = Self::new();
        dashboards.set_disclosure(config, secret)?;
        Ok(dashboards)
    }

    /// Sets the disclosure control of a fold loaded from a checkpoint; the
    /// caller checks [`Self::disclosure`] first, since releases already
    /// made stay as they were made.
    pub fn set_disclosure(
        &mut self,
        config: &DisclosureConfig,
        secret: &[u8],
    ) -> Result<(), ControlError> {
        crate::disclosure::PerturbationTable::binomial(config.max_perturbation)?;
        let secret = RecordKeySecret::new(secret)?;
        self.keyed_with = secret.record_key(b"rotation-ledger secret id").0;
        self.control = Control {
            secret,
            rules: ReleaseRules::new(config),
        };
        self.disclosure = config.clone();
        Ok(())
    }

    /// Sets the scheme-rule limits the flags are judged under, by
    /// partnership (the others have the defaults). The board's flag counts
    /// are released from cells counted under them; the raw view judges
    /// its flags under the limits it is given.
    pub fn set_limits(&mut self, limits: BTreeMap<String, SchemeLimits>) {
        for (name, partnership) in &mut self.partnerships {
            partnership.set_limits(limits.get(name).cloned().unwrap_or_default());
        }
        self.limits = limits;
    }

    /// The disclosure control this fold's releases were made under.
    pub fn disclosure(&self) -> &DisclosureConfig {
        &self.disclosure
    }

    /// Whether `other`'s releases and record keys were made under the same
    /// disclosure control and secret as this fold's, so that one may go on
    /// from the other.
    pub fn same_control(&self, other: &Dashboards) -> bool {
        self.disclosure == other.disclosure
            && self.keyed_with == other.keyed_with
            && self.limits == other.limits
    }

    /// Applies one committed event. Events at or below [`Self::position`]
    /// are ignored, so that a service may resume from a checkpoint by
    /// replaying from any earlier position; an event id seen before is
    /// ignored as well. A `jobrotation.ledger.retracted` event takes the
    /// event it names (of the same partnership, applied before it) out of
    /// every figure.
    pub fn apply(&mut self, event: &CommittedEvent) {
        self.apply_with(event, || event.envelope.data());
    }

    /// [`Dashboards::apply`] of an event whose data is already typed (as a
    /// replay through [`TypedEvent::from_json`] gives it).
    pub fn apply_typed(&mut self, typed: TypedEvent) {
        let TypedEvent { event, data } = typed;
        self.apply_with(&event, || data);
    }

    /// [`Dashboards::apply`], with the typed data from `data`, which is
    /// called only if the event is applied.
    fn apply_with(
        &mut self,
        event: &CommittedEvent,
        data: impl FnOnce() -> Result<EventData, InvalidEvent>,
    ) {
        let position = event.ledger.position;
        if position <= self.position {
            return;
        }
        self.position = position;
        self.recordedtime.clone_from(&event.ledger.recordedtime);
        let envelope = &event.envelope;
        let secret = &self.control.secret;
        let limits = &self.limits;
        let partnership = self
            .partnerships
            .entry(envelope.partnership.clone())
            .or_insert_with(|| {
                Partnership::new(
                    limits
                        .get(&envelope.partnership)
                        .cloned()
                        .unwrap_or_default(),
                )
            });
        partnership.apply(envelope, position, secret, data);
        if let Ok(recorded_at) = chrono::DateTime::parse_from_rfc3339(&self.recordedtime) {
            let mark = ReleaseMark {
                position,
                recorded_at: recorded_at.to_utc(),
            };
            partnership.releases.after_event(
                &mut partnership.derived.counters,
                mark,
                &self.control.rules,
            );
        }
    }

    /// The positions of every registration folded so far. A checkpoint
    /// holds no profile (contract section 9): whoever loads one opens
    /// these registrations' profiles again and hands them to
    /// [`Dashboards::restore_profile`].
    pub fn registrations(&self) -> Vec<u64> {
        let mut positions: Vec<u64> = self
            .partnerships
            .values()
            .flat_map(Partnership::registrations)
            .collect();
        positions.sort_unstable();
        positions
    }

    /// Gives the registration `event` (at its position) the profile opened
    /// from it, as a checkpoint does not hold it. Ignored for a person
    /// erased since.
    pub fn restore_profile(&mut self, event: &CommittedEvent, profile: &rotation_events::Profile) {
        let Subject::Person(person) = event.envelope.subject else {
            return;
        };
        if let Some(partnership) = self.partnerships.get_mut(&event.envelope.partnership) {
            partnership.restore_profile(person, event.ledger.position, profile);
        }
    }

    /// The position of the last applied event (0 = none).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The partnerships that have had at least one event, in order.
    pub fn partnerships(&self) -> Vec<String> {
        self.partnerships.keys().cloned().collect()
    }

    /// The raw dashboard of `partnership`, its flags judged under `limits`;
    /// `None` if the partnership has had no event.
    pub fn dashboard(&self, partnership: &str, limits: &SchemeLimits) -> Option<Dashboard> {
        let state = self.partnerships.get(partnership)?;
        let mut totals = Totals::default();
        let mut by_sector: BTreeMap<String, SectorCounts> = BTreeMap::new();
        let mut by_group: BTreeMap<String, BTreeMap<String, GroupCounts>> = BTreeMap::new();
        for category in Category::all() {
            by_group
                .entry(category.dimension().to_owned())
                .or_default()
                .insert(category.name().to_owned(), GroupCounts::default());
        }
        let mut monthly: BTreeMap<Month, MonthCounts> = BTreeMap::new();
        for (&cell, keyed) in &state.derived.counters.cells {
            let count = keyed.count;
            match cell {
                Cell::Total(total) => *totals.slot(total) = count,
                Cell::Sector(sector, measure) => {
                    *by_sector
                        .entry(sector_key(sector).to_owned())
                        .or_default()
                        .slot(measure) = count;
                }
                Cell::Group(category, measure) => {
                    if let Some(row) = by_group
                        .get_mut(category.dimension())
                        .and_then(|rows| rows.get_mut(category.name()))
                    {
                        *row.slot(measure) = count;
                    }
                }
                Cell::Month(month, measure) => {
                    *monthly.entry(month).or_default().slot(measure) = count;
                }
                // The raw view lists the flags themselves, judged below.
                Cell::Flag(..) => {}
            }
        }
        let rates = Rates {
            training_completion_rate: Rate {
                numerator: totals.training_completed,
                denominator: totals.training_completed + totals.training_left,
            },
            substitute_into_work_rate: Rate {
                numerator: totals.substitutions_into_work,
                denominator: totals.substitutions_ended,
            },
        };
        let mut flags = Vec::new();
        for view in state.derived.rotations.values() {
            for check in &view.checks {
                check.flags(limits, &mut flags);
            }
        }
        flags.sort_by(|a, b| {
            (a.rotation, a.substitution, a.rule).cmp(&(b.rotation, b.substitution, b.rule))
        });
        Some(Dashboard {
            partnership: partnership.to_owned(),
            as_of: AsOf {
                position: self.position,
                recordedtime: self.recordedtime.clone(),
            },
            limits: limits.clone(),
            totals,
            rates,
            by_sector,
            by_group,
            monthly: monthly
                .into_iter()
                .map(|(month, counts)| MonthlyRow {
                    month: month.to_string(),
                    counts,
                })
                .collect(),
            flags,
        })
    }
}
