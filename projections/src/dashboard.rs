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
//! (age band from the birth year and the year of the first referral), with
//! `not_recorded` for a missing answer, so every dimension adds up to the
//! total of each measure as well.
//!
//! # Checkpoints
//!
//! [`Dashboards`] serialises its facts only; the views and counters are
//! rebuilt from them when it is deserialised, through the same functions
//! the fold uses, so a checkpoint cannot carry stale figures.
//! [`Dashboards::VERSION`] names the meaning of the facts and figures: a
//! checkpoint written under another version is to be rebuilt from the log.
//! The facts include profile answers (birth year, sex, ethnicity,
//! disability, lone parent) because the breakdowns need them; a checkpoint
//! is therefore as sensitive as the log itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{Datelike, NaiveDate};
use rotation_events::{
    CommittedEvent, EndReason, Envelope, Ethnicity, EventData, InvalidEvent, ProgressionKind,
    Sector, Sex, Status, Subject, TypedEvent, YesNo,
};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::flags::{Flag, SubstitutionCheck};
use crate::outcomes::{Observation, into_work};

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

/// Defines a struct of named counts together with an enum naming each of
/// them, so that the fold can address a count as a value and the JSON
/// keeps the field names.
macro_rules! counts {
    (
        $(#[$meta:meta])*
        $name:ident, $measure:ident {
            $( $(#[$fmeta:meta])* $field:ident => $variant:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct $name { $( $(#[$fmeta])* pub $field: u64, )* }

        /// One count of the struct of the same stem, by name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) enum $measure { $( $variant, )* }

        impl $measure {
            /// Every count, in the order of the struct's fields.
            pub(crate) const ALL: &'static [$measure] = &[ $( $measure::$variant, )* ];

            /// The count's name in the JSON.
            pub(crate) fn name(self) -> &'static str {
                match self { $( Self::$variant => stringify!($field), )* }
            }
        }

        impl $name {
            pub(crate) fn get(&self, measure: $measure) -> u64 {
                match measure { $( $measure::$variant => self.$field, )* }
            }

            fn slot(&mut self, measure: $measure) -> &mut u64 {
                match measure { $( $measure::$variant => &mut self.$field, )* }
            }
        }
    };
}

counts! {
    /// The partnership's totals: the contract's counts, then the extras the
    /// board page's funnel and the disclosure equations use.
    Totals, Total {
        /// Employers with a live enrolment.
        employers_enrolled => EmployersEnrolled,
        /// `rotation.agreed` events.
        rotations_agreed => RotationsAgreed,
        /// `rotation.closed` events.
        rotations_closed => RotationsClosed,
        /// `release_started` events.
        releases_started => ReleasesStarted,
        /// Releases started and not ended by `release_ended`.
        releases_active => ReleasesActive,
        /// `release_ended` events.
        releases_ended => ReleasesEnded,
        /// `training_completed` events.
        training_completed => TrainingCompleted,
        /// `training_left` events.
        training_left => TrainingLeft,
        /// `substitution_started` events.
        substitutions_started => SubstitutionsStarted,
        /// Substitutions started and not ended by `substitution_ended`.
        substitutions_active => SubstitutionsActive,
        /// `substitution_ended` events, whatever the reason.
        substitutions_ended => SubstitutionsEnded,
        /// Substitutions ended `completed`.
        substitutions_completed => SubstitutionsCompleted,
        /// Substitutions ended `left_early`.
        substitutions_left_early => SubstitutionsLeftEarly,
        /// Substitutions ended `hired_by_employer`.
        substitutes_hired_by_employer => SubstitutesHiredByEmployer,
        /// Substitutions ended `dismissed`.
        substitutions_dismissed => SubstitutionsDismissed,
        /// Ended substitutions whose substitute went into work within six
        /// months of the end ([`crate::outcomes::into_work`]).
        substitutions_into_work => SubstitutionsIntoWork,
        /// `jobseeker.referred` events.
        referrals => Referrals,
        /// People referred at least once.
        jobseekers_referred => JobseekersReferred,
        /// People whose latest eligibility assessment found them eligible.
        jobseekers_eligible => JobseekersEligible,
        /// People who completed pre-employment preparation.
        preparation_completed => PreparationCompleted,
        /// People who started at least one substitution.
        jobseekers_placed => JobseekersPlaced,
        /// People with at least one ended substitution that led into work.
        substitutes_into_work => SubstitutesIntoWork,
        /// `jobseeker.mentoring_session` events.
        mentoring_sessions => MentoringSessions,
        /// `person.progressed` events, of employees and substitutes alike.
        progressions => Progressions,
    }
}

counts! {
    /// The counts of one SIC section: rotation events filed under the
    /// sector of the rotation's employer.
    SectorCounts, SectorMeasure {
        employers_enrolled => EmployersEnrolled,
        rotations_agreed => RotationsAgreed,
        releases_started => ReleasesStarted,
        training_completed => TrainingCompleted,
        training_left => TrainingLeft,
        substitutions_started => SubstitutionsStarted,
    }
}

counts! {
    /// The people counts of one category of one `by_group` dimension.
    GroupCounts, GroupMeasure {
        /// Referred at least once (of `jobseekers_referred`).
        referred => Referred,
        /// Eligible at the latest assessment (of `jobseekers_eligible`).
        eligible => Eligible,
        /// Completed preparation (of `preparation_completed`).
        preparation_completed => PreparationCompleted,
        /// Started at least one substitution (of `jobseekers_placed`).
        placed => Placed,
        /// Went into work after a substitution (of `substitutes_into_work`).
        into_work => IntoWork,
    }
}

counts! {
    /// The events of one month, by the month of their effective time.
    MonthCounts, MonthMeasure {
        referrals => Referrals,
        releases_started => ReleasesStarted,
        substitutions_started => SubstitutionsStarted,
        training_completed => TrainingCompleted,
        progressions => Progressions,
    }
}

impl SectorMeasure {
    /// The total this column adds up to.
    pub(crate) fn total(self) -> Total {
        match self {
            Self::EmployersEnrolled => Total::EmployersEnrolled,
            Self::RotationsAgreed => Total::RotationsAgreed,
            Self::ReleasesStarted => Total::ReleasesStarted,
            Self::TrainingCompleted => Total::TrainingCompleted,
            Self::TrainingLeft => Total::TrainingLeft,
            Self::SubstitutionsStarted => Total::SubstitutionsStarted,
        }
    }
}

impl GroupMeasure {
    /// The total every dimension of this measure adds up to.
    pub(crate) fn total(self) -> Total {
        match self {
            Self::Referred => Total::JobseekersReferred,
            Self::Eligible => Total::JobseekersEligible,
            Self::PreparationCompleted => Total::PreparationCompleted,
            Self::Placed => Total::JobseekersPlaced,
            Self::IntoWork => Total::SubstitutesIntoWork,
        }
    }
}

impl MonthMeasure {
    /// The total this column adds up to.
    pub(crate) fn total(self) -> Total {
        match self {
            Self::Referrals => Total::Referrals,
            Self::ReleasesStarted => Total::ReleasesStarted,
            Self::SubstitutionsStarted => Total::SubstitutionsStarted,
            Self::TrainingCompleted => Total::TrainingCompleted,
            Self::Progressions => Total::Progressions,
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
}

impl Dashboards {
    /// The meaning of the fold's facts and figures. A checkpoint written
    /// under another version is to be discarded and the fold rebuilt.
    pub const VERSION: u32 = 1;

    pub fn new() -> Self {
        Self::default()
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
        if let Some(partnership) = self.partnerships.get_mut(&envelope.partnership) {
            partnership.apply(envelope, position, data);
        } else {
            let mut partnership = Partnership::default();
            partnership.apply(envelope, position, data);
            self.partnerships
                .insert(envelope.partnership.clone(), partnership);
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
        for (&cell, &count) in &state.derived.counters.0 {
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

/// The key of a sector in `by_sector`.
fn sector_key(sector: Option<Sector>) -> &'static str {
    sector.map_or("unknown", Sector::as_str)
}

/// A calendar month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Month {
    year: i32,
    month: u32,
}

impl Month {
    fn of(date: NaiveDate) -> Self {
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

/// Age at the first referral, in the contract's bands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum AgeBand {
    Under25,
    From25To49,
    From50,
}

impl AgeBand {
    const ALL: &'static [AgeBand] = &[Self::Under25, Self::From25To49, Self::From50];

    fn of(age: i32) -> Self {
        match age {
            ..25 => Self::Under25,
            25..50 => Self::From25To49,
            _ => Self::From50,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Under25 => "16-24",
            Self::From25To49 => "25-49",
            Self::From50 => "50+",
        }
    }
}

/// The name of a missing answer in `by_group`.
const NOT_RECORDED: &str = "not_recorded";

/// One category of one `by_group` dimension; `None` is `not_recorded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    AgeBand(Option<AgeBand>),
    Sex(Option<Sex>),
    Disability(Option<YesNo>),
    Ethnicity(Option<Ethnicity>),
    LoneParent(Option<bool>),
}

impl Category {
    fn dimension(self) -> &'static str {
        match self {
            Self::AgeBand(_) => "age_band",
            Self::Sex(_) => "sex",
            Self::Disability(_) => "disability",
            Self::Ethnicity(_) => "ethnicity",
            Self::LoneParent(_) => "lone_parent",
        }
    }

    fn name(self) -> &'static str {
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
    fn all() -> Vec<Category> {
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
enum Cell {
    Total(Total),
    /// `None` is the `unknown` sector.
    Sector(Option<Sector>, SectorMeasure),
    Group(Category, GroupMeasure),
    Month(Month, MonthMeasure),
}

/// The dashboard's counters: the sum of every entity's view. Zero counters
/// are removed, so that equal figures mean equal maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counters(BTreeMap<Cell, u64>);

impl Counters {
    fn add(&mut self, cell: Cell, count: u64) {
        if count > 0 {
            *self.0.entry(cell).or_default() += count;
        }
    }

    fn sub(&mut self, cell: Cell, count: u64) {
        if let Some(current) = self.0.get_mut(&cell) {
            debug_assert!(*current >= count, "a view took away more than it added");
            *current = current.saturating_sub(count);
            if *current == 0 {
                self.0.remove(&cell);
            }
        }
    }
}

/// What one registration says that the dashboard uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Registration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unemployed_since: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    birth_year: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sex: Option<Sex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ethnicity: Option<Ethnicity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disability: Option<YesNo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lone_parent: Option<bool>,
}

/// A fact from a person's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
enum PersonFact {
    Registered(Registration),
    Referred {
        date: NaiveDate,
    },
    Assessed {
        eligible: bool,
    },
    PreparationCompleted,
    Mentored,
    Progressed {
        kind: ProgressionKind,
        date: NaiveDate,
    },
    Observed {
        status: Status,
        date: NaiveDate,
    },
}

/// A started release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ReleaseStart {
    release: Uuid,
    /// The course's weekly hours, in thousandths.
    hours_milli: u64,
    date: NaiveDate,
}

/// A started substitution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SubstitutionStart {
    substitution: Uuid,
    substitute: Uuid,
    covers: Vec<Uuid>,
    /// The substitute's weekly hours, in thousandths.
    hours_milli: u64,
    planned_end: NaiveDate,
    date: NaiveDate,
}

/// A fact from a rotation's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
enum RotationFact {
    Agreed {
        employer: Uuid,
    },
    ReleaseStarted(ReleaseStart),
    SubstitutionStarted(SubstitutionStart),
    TrainingCompleted {
        release: Uuid,
        date: NaiveDate,
    },
    TrainingLeft {
        release: Uuid,
    },
    ReleaseEnded {
        release: Uuid,
    },
    SubstitutionEnded {
        substitution: Uuid,
        reason: EndReason,
        date: NaiveDate,
    },
    Closed,
}

/// What one event contributes, before it is filed under its entity.
#[derive(Debug)]
enum Fact {
    Employer(Sector),
    Rotation(RotationFact),
    Person(PersonFact),
    Retraction(Uuid),
}

impl Fact {
    /// The fact an event states; `None` for events no figure reads.
    fn of(data: EventData, date: NaiveDate) -> Option<Self> {
        use EventData as D;
        Some(match data {
            D::EmployerEnrolled(d) => Fact::Employer(d.sector),
            D::ParticipantRegistered(d) => {
                let profile = d.profile.as_ref();
                Fact::Person(PersonFact::Registered(Registration {
                    unemployed_since: d.unemployed_since,
                    birth_year: profile.and_then(|p| p.birth_year),
                    sex: profile.and_then(|p| p.sex),
                    ethnicity: profile.and_then(|p| p.ethnicity),
                    disability: profile.and_then(|p| p.disability),
                    lone_parent: profile.and_then(|p| p.lone_parent),
                }))
            }
            D::JobseekerReferred(_) => Fact::Person(PersonFact::Referred { date }),
            D::EligibilityAssessed(d) => Fact::Person(PersonFact::Assessed {
                eligible: d.eligible,
            }),
            D::PreparationCompleted(_) => Fact::Person(PersonFact::PreparationCompleted),
            D::MentoringSession(_) => Fact::Person(PersonFact::Mentored),
            D::PersonProgressed(d) => Fact::Person(PersonFact::Progressed { kind: d.kind, date }),
            D::OutcomeObserved(d) => Fact::Person(PersonFact::Observed {
                status: d.status,
                date,
            }),
            D::RotationAgreed(d) => Fact::Rotation(RotationFact::Agreed {
                employer: d.employer,
            }),
            D::ReleaseStarted(d) => Fact::Rotation(RotationFact::ReleaseStarted(ReleaseStart {
                release: d.release_id,
                hours_milli: milli(d.course.hours_per_week),
                date,
            })),
            D::SubstitutionStarted(d) => {
                Fact::Rotation(RotationFact::SubstitutionStarted(SubstitutionStart {
                    substitution: d.substitution_id,
                    substitute: d.substitute,
                    covers: d.covers,
                    hours_milli: milli(d.hours_per_week),
                    planned_end: d.planned_end,
                    date,
                }))
            }
            D::TrainingCompleted(d) => Fact::Rotation(RotationFact::TrainingCompleted {
                release: d.release_id,
                date,
            }),
            D::TrainingLeft(d) => Fact::Rotation(RotationFact::TrainingLeft {
                release: d.release_id,
            }),
            D::ReleaseEnded(d) => Fact::Rotation(RotationFact::ReleaseEnded {
                release: d.release_id,
            }),
            D::SubstitutionEnded(d) => Fact::Rotation(RotationFact::SubstitutionEnded {
                substitution: d.substitution_id,
                reason: d.reason,
                date,
            }),
            D::RotationClosed(_) => Fact::Rotation(RotationFact::Closed),
            D::Retracted(d) => Fact::Retraction(d.event_id),
            D::PartnershipRegistered(_) | D::PreparationStarted(_) | D::PreparationLeft(_) => {
                return None;
            }
        })
    }
}

/// Weekly hours in thousandths of an hour.
fn milli(hours: f64) -> u64 {
    // Hours are validated at intake to lie within 0..=168; the clamp only
    // keeps a malformed value from wrapping.
    (hours.clamp(0.0, 168.0) * 1000.0).round() as u64
}

/// The facts of one entity, each keyed by the position of the event that
/// stated it. Retracted facts are parked rather than dropped, so that
/// retracting the retraction brings them back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "F: Deserialize<'de>"))]
struct Facts<F> {
    live: BTreeMap<u64, F>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    parked: BTreeMap<u64, F>,
}

impl<F> Default for Facts<F> {
    fn default() -> Self {
        Self {
            live: BTreeMap::new(),
            parked: BTreeMap::new(),
        }
    }
}

impl<F> Facts<F> {
    fn set_live(&mut self, position: u64, live: bool) {
        let (from, to) = if live {
            (&mut self.parked, &mut self.live)
        } else {
            (&mut self.live, &mut self.parked)
        };
        if let Some(fact) = from.remove(&position) {
            to.insert(position, fact);
        }
    }
}

/// Where an applied event's fact is filed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entity {
    Employer(Uuid),
    Rotation(Uuid),
    Person(Uuid),
    /// A retraction, naming the event it retracts.
    Retraction(Uuid),
}

/// One applied event, by id, so that a retraction can find its fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Indexed {
    entity: Entity,
    position: u64,
    /// The live retractions that name this event; it is live while there
    /// are none.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    retracted_by: BTreeSet<Uuid>,
}

/// The entities whose facts one event changed.
#[derive(Debug, Default)]
struct Touched {
    employers: BTreeSet<Uuid>,
    rotations: BTreeSet<Uuid>,
    people: BTreeSet<Uuid>,
}

/// The other entities a rotation's facts name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Links {
    employer: Option<Uuid>,
    substitutes: BTreeSet<Uuid>,
}

impl Links {
    fn is_empty(&self) -> bool {
        self.employer.is_none() && self.substitutes.is_empty()
    }
}

/// What a rotation adds to the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RotationView {
    cells: Vec<(Cell, u64)>,
    checks: Vec<SubstitutionCheck>,
}

impl RotationView {
    fn is_empty(&self) -> bool {
        self.cells.is_empty() && self.checks.is_empty()
    }
}

/// What a person adds to the dashboard, kept compact because a partnership
/// has tens of thousands of people.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PersonView {
    referred: bool,
    eligible: bool,
    prepared: bool,
    placed: bool,
    into_work: bool,
    groups: [Category; 5],
    referral_months: Vec<Month>,
    progression_months: Vec<Month>,
    mentoring_sessions: u64,
}

impl PersonView {
    fn is_empty(&self) -> bool {
        !(self.referred || self.eligible || self.prepared || self.placed || self.into_work)
            && self.referral_months.is_empty()
            && self.progression_months.is_empty()
            && self.mentoring_sessions == 0
    }

    fn cells(&self, mut emit: impl FnMut(Cell, u64)) {
        let people = [
            (
                self.referred,
                Total::JobseekersReferred,
                GroupMeasure::Referred,
            ),
            (
                self.eligible,
                Total::JobseekersEligible,
                GroupMeasure::Eligible,
            ),
            (
                self.prepared,
                Total::PreparationCompleted,
                GroupMeasure::PreparationCompleted,
            ),
            (self.placed, Total::JobseekersPlaced, GroupMeasure::Placed),
            (
                self.into_work,
                Total::SubstitutesIntoWork,
                GroupMeasure::IntoWork,
            ),
        ];
        for (yes, total, measure) in people {
            if yes {
                emit(Cell::Total(total), 1);
                for category in self.groups {
                    emit(Cell::Group(category, measure), 1);
                }
            }
        }
        emit(
            Cell::Total(Total::Referrals),
            self.referral_months.len() as u64,
        );
        for &month in &self.referral_months {
            emit(Cell::Month(month, MonthMeasure::Referrals), 1);
        }
        emit(
            Cell::Total(Total::Progressions),
            self.progression_months.len() as u64,
        );
        for &month in &self.progression_months {
            emit(Cell::Month(month, MonthMeasure::Progressions), 1);
        }
        emit(
            Cell::Total(Total::MentoringSessions),
            self.mentoring_sessions,
        );
    }
}

/// The cells an enrolled employer adds.
fn employer_cells(sector: Sector) -> [(Cell, u64); 2] {
    [
        (Cell::Total(Total::EmployersEnrolled), 1),
        (
            Cell::Sector(Some(sector), SectorMeasure::EmployersEnrolled),
            1,
        ),
    ]
}

/// Everything derived from the facts: views, their sum, and the reverse
/// links that say whose views read whose facts. Never serialised; rebuilt
/// from the facts on load.
#[derive(Clone, Debug, Default, PartialEq)]
struct Derived {
    counters: Counters,
    /// The sector each enrolled employer counts under.
    employers: BTreeMap<Uuid, Sector>,
    rotations: BTreeMap<Uuid, RotationView>,
    people: BTreeMap<Uuid, PersonView>,
    links: BTreeMap<Uuid, Links>,
    rotations_by_employer: BTreeMap<Uuid, BTreeSet<Uuid>>,
    rotations_by_substitute: BTreeMap<Uuid, BTreeSet<Uuid>>,
}

/// The serialised form of [`Partnership`]: its facts.
#[derive(Deserialize)]
struct StoredPartnership {
    employers: BTreeMap<Uuid, Facts<Sector>>,
    rotations: BTreeMap<Uuid, Facts<RotationFact>>,
    people: BTreeMap<Uuid, Facts<PersonFact>>,
    events: BTreeMap<Uuid, Indexed>,
}

/// One partnership's facts and what is derived from them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredPartnership")]
struct Partnership {
    employers: BTreeMap<Uuid, Facts<Sector>>,
    rotations: BTreeMap<Uuid, Facts<RotationFact>>,
    people: BTreeMap<Uuid, Facts<PersonFact>>,
    /// Every applied event that stated a fact or retracted one.
    events: BTreeMap<Uuid, Indexed>,
    #[serde(skip)]
    derived: Derived,
}

impl From<StoredPartnership> for Partnership {
    /// Rebuilds the derived state from the facts, with the functions the
    /// fold uses event by event.
    fn from(stored: StoredPartnership) -> Self {
        let mut partnership = Self {
            employers: stored.employers,
            rotations: stored.rotations,
            people: stored.people,
            events: stored.events,
            derived: Derived::default(),
        };
        let rotations: Vec<Uuid> = partnership.rotations.keys().copied().collect();
        for &rotation in &rotations {
            let links = partnership.links_of(rotation);
            partnership.set_links(rotation, links);
        }
        let employers: Vec<Uuid> = partnership.employers.keys().copied().collect();
        for employer in employers {
            partnership.recompute_employer(employer);
        }
        for rotation in rotations {
            partnership.recompute_rotation(rotation);
        }
        let people: BTreeSet<Uuid> = partnership
            .people
            .keys()
            .chain(partnership.derived.rotations_by_substitute.keys())
            .copied()
            .collect();
        for person in people {
            partnership.recompute_person(person);
        }
        partnership
    }
}

impl Partnership {
    fn apply(
        &mut self,
        envelope: &Envelope,
        position: u64,
        data: impl FnOnce() -> Result<EventData, InvalidEvent>,
    ) {
        if self.events.contains_key(&envelope.id) {
            return;
        }
        // Committed events were validated at intake; one whose data no
        // longer reads is left out rather than stopping the fold.
        let Ok(data) = data() else { return };
        let Some(fact) = Fact::of(data, envelope.date()) else {
            return;
        };
        let mentored = matches!(fact, Fact::Person(PersonFact::Mentored));
        let mut touched = Touched::default();
        let entity = match (fact, &envelope.subject) {
            (Fact::Retraction(target), _) => Entity::Retraction(target),
            (Fact::Employer(sector), Subject::Employer(id)) => {
                self.employers
                    .entry(*id)
                    .or_default()
                    .live
                    .insert(position, sector);
                touched.employers.insert(*id);
                Entity::Employer(*id)
            }
            (Fact::Rotation(fact), Subject::Rotation(id)) => {
                self.rotations
                    .entry(*id)
                    .or_default()
                    .live
                    .insert(position, fact);
                touched.rotations.insert(*id);
                Entity::Rotation(*id)
            }
            (Fact::Person(fact), Subject::Person(id)) => {
                self.people
                    .entry(*id)
                    .or_default()
                    .live
                    .insert(position, fact);
                touched.people.insert(*id);
                Entity::Person(*id)
            }
            // A subject of the wrong kind is refused at intake.
            _ => return,
        };
        self.events.insert(
            envelope.id,
            Indexed {
                entity,
                position,
                retracted_by: BTreeSet::new(),
            },
        );
        if let Entity::Retraction(_) = entity {
            self.set_live(envelope.id, true, &mut touched);
        }
        // Half of all events are mentoring sessions, which change nothing
        // but their person's count of sessions: a person already in view
        // takes one more without the recomputation of everything else.
        if let Entity::Person(person) = entity
            && mentored
            && let Some(view) = self.derived.people.get_mut(&person)
        {
            view.mentoring_sessions += 1;
            self.derived
                .counters
                .add(Cell::Total(Total::MentoringSessions), 1);
            return;
        }
        self.refresh(&touched);
    }

    /// Makes the event `id` live or not, and follows retraction chains: a
    /// retraction going live retracts its target, one going dead restores
    /// it (unless another live retraction names it). A retraction is
    /// honoured only for an event applied before it, so chains always run
    /// towards lower positions and end.
    fn set_live(&mut self, id: Uuid, live: bool, touched: &mut Touched) {
        let mut work = vec![(id, live)];
        while let Some((id, live)) = work.pop() {
            let Some(indexed) = self.events.get(&id) else {
                continue;
            };
            let (entity, position) = (indexed.entity, indexed.position);
            match entity {
                Entity::Retraction(target) => {
                    let Some(target_indexed) = self.events.get_mut(&target) else {
                        continue;
                    };
                    if target_indexed.position >= position {
                        continue;
                    }
                    let was_live = target_indexed.retracted_by.is_empty();
                    if live {
                        target_indexed.retracted_by.insert(id);
                    } else {
                        target_indexed.retracted_by.remove(&id);
                    }
                    let is_live = target_indexed.retracted_by.is_empty();
                    if was_live != is_live {
                        work.push((target, is_live));
                    }
                }
                Entity::Employer(employer) => {
                    if let Some(facts) = self.employers.get_mut(&employer) {
                        facts.set_live(position, live);
                    }
                    touched.employers.insert(employer);
                }
                Entity::Rotation(rotation) => {
                    if let Some(facts) = self.rotations.get_mut(&rotation) {
                        facts.set_live(position, live);
                    }
                    touched.rotations.insert(rotation);
                }
                Entity::Person(person) => {
                    if let Some(facts) = self.people.get_mut(&person) {
                        facts.set_live(position, live);
                    }
                    touched.people.insert(person);
                }
            }
        }
    }

    /// Recomputes the views of the touched entities and of every entity
    /// whose view reads their facts.
    fn refresh(&mut self, touched: &Touched) {
        let mut rotations = touched.rotations.clone();
        let mut people = touched.people.clone();
        for &rotation in &touched.rotations {
            let new = self.links_of(rotation);
            if let Some(old) = self.derived.links.get(&rotation) {
                people.extend(old.substitutes.iter().copied());
            }
            people.extend(new.substitutes.iter().copied());
            self.set_links(rotation, new);
        }
        for employer in &touched.employers {
            if let Some(linked) = self.derived.rotations_by_employer.get(employer) {
                rotations.extend(linked.iter().copied());
            }
        }
        for person in &people {
            if let Some(linked) = self.derived.rotations_by_substitute.get(person) {
                rotations.extend(linked.iter().copied());
            }
        }
        for &employer in &touched.employers {
            self.recompute_employer(employer);
        }
        for rotation in rotations {
            self.recompute_rotation(rotation);
        }
        for person in people {
            self.recompute_person(person);
        }
    }

    /// The employer and substitutes a rotation's live facts name. Every
    /// live start counts, even one superseded by a later start of the same
    /// substitution, because each start is checked against its own
    /// substitute's registration and places that person.
    fn links_of(&self, rotation: Uuid) -> Links {
        let mut links = Links::default();
        let Some(facts) = self.rotations.get(&rotation) else {
            return links;
        };
        for fact in facts.live.values() {
            match fact {
                RotationFact::Agreed { employer } => links.employer = Some(*employer),
                RotationFact::SubstitutionStarted(start) => {
                    links.substitutes.insert(start.substitute);
                }
                _ => {}
            }
        }
        links
    }

    fn set_links(&mut self, rotation: Uuid, new: Links) {
        let derived = &mut self.derived;
        if let Some(old) = derived.links.remove(&rotation) {
            if let Some(employer) = old.employer {
                unlink(&mut derived.rotations_by_employer, employer, rotation);
            }
            for person in old.substitutes {
                unlink(&mut derived.rotations_by_substitute, person, rotation);
            }
        }
        if let Some(employer) = new.employer {
            derived
                .rotations_by_employer
                .entry(employer)
                .or_default()
                .insert(rotation);
        }
        for &person in &new.substitutes {
            derived
                .rotations_by_substitute
                .entry(person)
                .or_default()
                .insert(rotation);
        }
        if !new.is_empty() {
            derived.links.insert(rotation, new);
        }
    }

    /// The sector an employer counts under: that of its latest live
    /// enrolment; `None` if it has none.
    fn sector_of(&self, employer: Uuid) -> Option<Sector> {
        self.employers
            .get(&employer)?
            .live
            .values()
            .next_back()
            .copied()
    }

    /// A person's latest live registration.
    fn registration(&self, person: Uuid) -> Option<&Registration> {
        self.people
            .get(&person)?
            .live
            .values()
            .rev()
            .find_map(|fact| match fact {
                PersonFact::Registered(registration) => Some(registration),
                _ => None,
            })
    }

    /// The ends (date and reason) of every substitution in which `person`
    /// is the substitute, in every rotation.
    fn substitution_ends_of(&self, person: Uuid) -> Vec<(NaiveDate, EndReason)> {
        let mut ends = Vec::new();
        let Some(rotations) = self.derived.rotations_by_substitute.get(&person) else {
            return ends;
        };
        for rotation in rotations {
            let Some(facts) = self.rotations.get(rotation) else {
                continue;
            };
            let starts = substitution_starts(facts);
            for fact in facts.live.values() {
                if let RotationFact::SubstitutionEnded {
                    substitution,
                    reason,
                    date,
                } = fact
                    && starts.get(substitution).map(|s| s.substitute) == Some(person)
                {
                    ends.push((*date, *reason));
                }
            }
        }
        ends
    }

    /// A person's observations, observed and implied (contract section 8),
    /// given the ends of their substitutions.
    fn observations(&self, person: Uuid, ends: &[(NaiveDate, EndReason)]) -> Vec<Observation> {
        let mut observations = Vec::new();
        if let Some(facts) = self.people.get(&person) {
            for fact in facts.live.values() {
                match *fact {
                    PersonFact::Observed { status, date } => {
                        observations.push(Observation { date, status });
                    }
                    PersonFact::Progressed { kind, date } => {
                        observations.extend(Observation::implied_by_progression(kind, date));
                    }
                    _ => {}
                }
            }
        }
        for &(date, reason) in ends {
            observations.extend(Observation::implied_by_end(reason, date));
        }
        observations
    }

    fn person_view(&self, person: Uuid) -> PersonView {
        let mut registration = None;
        let mut first_referral: Option<NaiveDate> = None;
        let mut eligible = None;
        let mut view = PersonView {
            referred: false,
            eligible: false,
            prepared: false,
            placed: self.derived.rotations_by_substitute.contains_key(&person),
            into_work: false,
            groups: [
                Category::AgeBand(None),
                Category::Sex(None),
                Category::Disability(None),
                Category::Ethnicity(None),
                Category::LoneParent(None),
            ],
            referral_months: Vec::new(),
            progression_months: Vec::new(),
            mentoring_sessions: 0,
        };
        if let Some(facts) = self.people.get(&person) {
            for fact in facts.live.values() {
                match fact {
                    PersonFact::Registered(r) => registration = Some(r),
                    PersonFact::Referred { date } => {
                        view.referral_months.push(Month::of(*date));
                        first_referral = Some(first_referral.map_or(*date, |d| d.min(*date)));
                    }
                    PersonFact::Assessed { eligible: e } => eligible = Some(*e),
                    PersonFact::PreparationCompleted => view.prepared = true,
                    PersonFact::Mentored => view.mentoring_sessions += 1,
                    PersonFact::Progressed { date, .. } => {
                        view.progression_months.push(Month::of(*date));
                    }
                    PersonFact::Observed { .. } => {}
                }
            }
        }
        view.referred = first_referral.is_some();
        view.eligible = eligible == Some(true);
        if view.placed {
            let ends = self.substitution_ends_of(person);
            let observations = self.observations(person, &ends);
            view.into_work = ends
                .iter()
                .any(|&(date, reason)| into_work(date, reason, &observations));
        }
        if let Some(r) = registration {
            let age = r
                .birth_year
                .zip(first_referral)
                .map(|(born, referred)| AgeBand::of(referred.year() - born));
            view.groups = [
                Category::AgeBand(age),
                Category::Sex(r.sex),
                Category::Disability(r.disability),
                Category::Ethnicity(r.ethnicity),
                Category::LoneParent(r.lone_parent),
            ];
        }
        view
    }

    fn rotation_view(&self, rotation: Uuid) -> RotationView {
        let Some(facts) = self.rotations.get(&rotation) else {
            return RotationView::default();
        };
        let sector = self
            .derived
            .links
            .get(&rotation)
            .and_then(|links| links.employer)
            .and_then(|employer| self.sector_of(employer));
        let mut releases: BTreeMap<Uuid, &ReleaseStart> = BTreeMap::new();
        let mut ended_releases = BTreeSet::new();
        let mut ends: BTreeMap<Uuid, NaiveDate> = BTreeMap::new();
        for fact in facts.live.values() {
            match fact {
                RotationFact::ReleaseStarted(start) => {
                    releases.insert(start.release, start);
                }
                RotationFact::ReleaseEnded { release } => {
                    ended_releases.insert(*release);
                }
                RotationFact::SubstitutionEnded {
                    substitution, date, ..
                } => {
                    ends.insert(*substitution, *date);
                }
                _ => {}
            }
        }
        let starts = substitution_starts(facts);
        let mut cells = Counters::default();
        let mut count = |total: Total,
                         by_sector: Option<SectorMeasure>,
                         by_month: Option<(NaiveDate, MonthMeasure)>| {
            cells.add(Cell::Total(total), 1);
            if let Some(measure) = by_sector {
                cells.add(Cell::Sector(sector, measure), 1);
            }
            if let Some((date, measure)) = by_month {
                cells.add(Cell::Month(Month::of(date), measure), 1);
            }
        };
        let mut checks = Vec::new();
        for fact in facts.live.values() {
            match fact {
                RotationFact::Agreed { .. } => {
                    count(
                        Total::RotationsAgreed,
                        Some(SectorMeasure::RotationsAgreed),
                        None,
                    );
                }
                RotationFact::Closed => count(Total::RotationsClosed, None, None),
                RotationFact::ReleaseStarted(start) => {
                    count(
                        Total::ReleasesStarted,
                        Some(SectorMeasure::ReleasesStarted),
                        Some((start.date, MonthMeasure::ReleasesStarted)),
                    );
                    if !ended_releases.contains(&start.release) {
                        count(Total::ReleasesActive, None, None);
                    }
                }
                RotationFact::ReleaseEnded { .. } => count(Total::ReleasesEnded, None, None),
                RotationFact::TrainingCompleted { date, .. } => count(
                    Total::TrainingCompleted,
                    Some(SectorMeasure::TrainingCompleted),
                    Some((*date, MonthMeasure::TrainingCompleted)),
                ),
                RotationFact::TrainingLeft { .. } => {
                    count(Total::TrainingLeft, Some(SectorMeasure::TrainingLeft), None);
                }
                RotationFact::SubstitutionStarted(start) => {
                    count(
                        Total::SubstitutionsStarted,
                        Some(SectorMeasure::SubstitutionsStarted),
                        Some((start.date, MonthMeasure::SubstitutionsStarted)),
                    );
                    let end = ends.get(&start.substitution).copied();
                    if end.is_none() {
                        count(Total::SubstitutionsActive, None, None);
                    }
                    checks.push(self.check(rotation, start, &releases, end));
                }
                RotationFact::SubstitutionEnded {
                    substitution,
                    reason,
                    date,
                } => {
                    count(Total::SubstitutionsEnded, None, None);
                    count(
                        match reason {
                            EndReason::Completed => Total::SubstitutionsCompleted,
                            EndReason::LeftEarly => Total::SubstitutionsLeftEarly,
                            EndReason::HiredByEmployer => Total::SubstitutesHiredByEmployer,
                            EndReason::Dismissed => Total::SubstitutionsDismissed,
                        },
                        None,
                        None,
                    );
                    // An end whose start is not known (retracted) has no
                    // substitute to observe; only a hire can show work.
                    let observations = match starts.get(substitution) {
                        Some(start) => {
                            let ends = self.substitution_ends_of(start.substitute);
                            self.observations(start.substitute, &ends)
                        }
                        None => Vec::new(),
                    };
                    if into_work(*date, *reason, &observations) {
                        count(Total::SubstitutionsIntoWork, None, None);
                    }
                }
            }
        }
        RotationView {
            cells: cells.0.into_iter().collect(),
            checks,
        }
    }

    /// The scheme-rule check of one started substitution.
    fn check(
        &self,
        rotation: Uuid,
        start: &SubstitutionStart,
        releases: &BTreeMap<Uuid, &ReleaseStart>,
        end: Option<NaiveDate>,
    ) -> SubstitutionCheck {
        SubstitutionCheck {
            rotation,
            substitution: start.substitution,
            unemployed_weeks: self
                .registration(start.substitute)
                .and_then(|r| r.unemployed_since)
                .map(|since| (start.date - since).num_days().div_euclid(7)),
            planned_days: (start.planned_end - start.date).num_days(),
            actual_days: end.map(|end| (end - start.date).num_days()),
            hours_milli: start.hours_milli,
            covered_milli: start
                .covers
                .iter()
                .map(|release| releases.get(release).map(|r| r.hours_milli))
                .sum(),
        }
    }

    fn recompute_employer(&mut self, employer: Uuid) {
        let new = self.sector_of(employer);
        let derived = &mut self.derived;
        let old = match new {
            Some(sector) => derived.employers.insert(employer, sector),
            None => derived.employers.remove(&employer),
        };
        for (cell, count) in old.into_iter().flat_map(employer_cells) {
            derived.counters.sub(cell, count);
        }
        for (cell, count) in new.into_iter().flat_map(employer_cells) {
            derived.counters.add(cell, count);
        }
    }

    fn recompute_rotation(&mut self, rotation: Uuid) {
        let new = self.rotation_view(rotation);
        let derived = &mut self.derived;
        if let Some(old) = derived.rotations.remove(&rotation) {
            for &(cell, count) in &old.cells {
                derived.counters.sub(cell, count);
            }
        }
        for &(cell, count) in &new.cells {
            derived.counters.add(cell, count);
        }
        if !new.is_empty() {
            derived.rotations.insert(rotation, new);
        }
    }

    fn recompute_person(&mut self, person: Uuid) {
        let new = self.person_view(person);
        let derived = &mut self.derived;
        if let Some(old) = derived.people.remove(&person) {
            old.cells(|cell, count| derived.counters.sub(cell, count));
        }
        new.cells(|cell, count| derived.counters.add(cell, count));
        if !new.is_empty() {
            derived.people.insert(person, new);
        }
    }
}

/// The live start of each substitution in a rotation, by substitution id;
/// the latest wins should a substitution have been started twice.
fn substitution_starts(facts: &Facts<RotationFact>) -> BTreeMap<Uuid, &SubstitutionStart> {
    facts
        .live
        .values()
        .filter_map(|fact| match fact {
            RotationFact::SubstitutionStarted(start) => Some((start.substitution, start)),
            _ => None,
        })
        .collect()
}

fn unlink(index: &mut BTreeMap<Uuid, BTreeSet<Uuid>>, key: Uuid, rotation: Uuid) {
    if let Some(rotations) = index.get_mut(&key) {
        rotations.remove(&rotation);
        if rotations.is_empty() {
            index.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands_follow_the_contract() {
        assert_eq!(AgeBand::of(16).as_str(), "16-24");
        assert_eq!(AgeBand::of(24).as_str(), "16-24");
        assert_eq!(AgeBand::of(25).as_str(), "25-49");
        assert_eq!(AgeBand::of(49).as_str(), "25-49");
        assert_eq!(AgeBand::of(50).as_str(), "50+");
    }

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
    fn hours_are_kept_in_thousandths() {
        assert_eq!(milli(37.5), 37_500);
        assert_eq!(milli(7.3333), 7_333);
        assert_eq!(milli(-1.0), 0);
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
