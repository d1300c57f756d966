//! The evaluation datasets of contract section 8 as a pure fold: committed
//! events in, one row per jobseeker, per release and per substitution out.
//!
//! The fold keeps, for each person, employer, rotation, release and
//! substitution, only the facts the definitions need, each stamped with the
//! id, position and date of the event it came from; it never keeps events.
//! Memory therefore grows with the number of entities and the facts recorded
//! about them, not with the size of the log.
//!
//! Every figure is derived in [`DatasetFold::finish`], not while folding.
//! That is what lets one pass honour `jobrotation.ledger.retracted`: a
//! retraction may arrive long after the event it names (and may itself be
//! retracted later), and a retracted event's facts are simply left out when
//! the rows are built.
//!
//! Rows carry raw ids and typed values. Pseudonyms, CSV and the data package
//! are the service's export writer's business.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use rotation_events::{
    Benefit, CommittedEvent, EndReason, Envelope, Ethnicity, EventData, EventType, InvalidEvent,
    ProgressionKind, ReferredBy, Role, Sector, Sex, Size, Status, SubjectKind, YesNo,
};
use uuid::Uuid;

use crate::outcomes::{self, AgeBand, FollowUp, Observation, StatusRecord, add_months, follow_up};

/// The version of the definitions below, recorded in every export's
/// provenance. It changes whenever a column's meaning changes, so that two
/// exports can be compared only when their definitions agree.
pub const DEFINITIONS_VERSION: &str = "1";

/// The follow-ups reported as `status_3m`, `status_6m` and `status_12m`, in
/// calendar months after the last ended substitution.
pub const FOLLOW_UP_MONTHS: [u32; 3] = [3, 6, 12];

/// How many calendar months after a release's end a progression of the
/// employee still counts for `progressed_12m`.
pub const PROGRESSION_MONTHS: u32 = 12;

/// How a release's training turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrainingOutcome {
    /// `training_completed` was recorded.
    Completed,
    /// `training_left` was recorded.
    Left,
    /// Neither, and the release has not ended.
    Ongoing,
}

impl TrainingOutcome {
    /// Every outcome.
    pub const ALL: &'static [TrainingOutcome] = &[Self::Completed, Self::Left, Self::Ongoing];

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Left => "left",
            Self::Ongoing => "ongoing",
        }
    }
}

/// One row of `jobseekers.csv`. `None` is a missing value (an empty cell).
/// The columns' definitions are in `docs/datasets.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobseekerRow {
    pub pid: Uuid,
    pub partnership: String,
    pub age_band: Option<AgeBand>,
    pub sex: Option<Sex>,
    pub ethnicity: Option<Ethnicity>,
    pub disability: Option<YesNo>,
    pub lone_parent: Option<bool>,
    pub health_condition: Option<YesNo>,
    pub benefit: Option<Benefit>,
    pub unemployed_weeks_at_referral: Option<i64>,
    pub referred_on: Option<NaiveDate>,
    pub referred_by: Option<ReferredBy>,
    pub eligible: Option<bool>,
    pub preparation_completed: bool,
    pub mentoring_sessions: u32,
    pub first_substitution_start: Option<NaiveDate>,
    pub substitutions: u32,
    pub substitution_days: i64,
    pub last_end_reason: Option<EndReason>,
    /// `None` while no substitution has ended: nobody can have been hired
    /// at the end of a substitution that is still running.
    pub hired_by_host_employer: Option<bool>,
    pub status_3m: Option<FollowUp>,
    pub status_6m: Option<FollowUp>,
    pub status_12m: Option<FollowUp>,
    /// `None` when no substitution has started, since there is no start to
    /// count from.
    pub progressed: Option<bool>,
}

/// One row of `releases.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRow {
    pub rid: Uuid,
    /// The released employee (not a jobseeker).
    pub pid: Uuid,
    pub employer: Option<Uuid>,
    pub sector: Option<Sector>,
    pub size: Option<Size>,
    pub rqf_level: u8,
    pub hours_per_week: f64,
    pub release_start: NaiveDate,
    pub release_end: Option<NaiveDate>,
    /// `None` when the release ended with no training outcome recorded:
    /// the training is then neither completed, left nor ongoing as far as
    /// the ledger knows.
    pub training_outcome: Option<TrainingOutcome>,
    /// Present only when the training was completed.
    pub qualification_achieved: Option<bool>,
    pub progressed_12m: bool,
    pub progression_kind: Option<ProgressionKind>,
}

/// One row of `substitutions.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubstitutionRow {
    pub sid: Uuid,
    /// The substitute, a jobseeker.
    pub pid: Uuid,
    pub employer: Option<Uuid>,
    pub sector: Option<Sector>,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub days: Option<i64>,
    pub hours_per_week: f64,
    pub end_reason: Option<EndReason>,
    pub covers: u32,
}

/// The three tables, each sorted by its raw key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    pub jobseekers: Vec<JobseekerRow>,
    pub releases: Vec<ReleaseRow>,
    pub substitutions: Vec<SubstitutionRow>,
}

/// Where a fact came from: the event's id (which a retraction names), its
/// position (log order, which breaks ties between facts of the same date)
/// and the UTC date of its effective time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    event: Uuid,
    position: u64,
    date: NaiveDate,
}

impl Stamp {
    fn of(event: &CommittedEvent) -> Self {
        Self {
            event: event.envelope.id,
            position: event.ledger.position,
            date: event.envelope.date(),
        }
    }

    /// Later by date, and by log order on the same date: the order in which
    /// "the latest" and "the earliest" are meant throughout the definitions.
    fn key(&self) -> (NaiveDate, u64) {
        (self.date, self.position)
    }
}

#[derive(Debug, Clone)]
struct Fact<T> {
    stamp: Stamp,
    value: T,
}

/// The facts of one kind about one entity, in log order.
#[derive(Debug, Clone)]
struct Facts<T>(Vec<Fact<T>>);

impl<T> Default for Facts<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Facts<T> {
    fn push(&mut self, stamp: Stamp, value: T) {
        // Most lists hold one fact (one registration, one start, one end),
        // and a vector's first allocation has room for four: growing by
        // half keeps the fold's memory close to what it holds.
        if self.0.len() == self.0.capacity() {
            self.0.reserve_exact(self.0.len() / 2 + 1);
        }
        self.0.push(Fact { stamp, value });
    }

    fn effective<'a>(&'a self, retracted: &'a Retracted) -> impl Iterator<Item = &'a Fact<T>> {
        self.0.iter().filter(|f| !retracted.contains(f.stamp.event))
    }

    /// The first in log order.
    fn first<'a>(&'a self, retracted: &'a Retracted) -> Option<&'a Fact<T>> {
        self.effective(retracted).next()
    }

    /// The latest by date, then by log order.
    fn latest<'a>(&'a self, retracted: &'a Retracted) -> Option<&'a Fact<T>> {
        self.effective(retracted).max_by_key(|f| f.stamp.key())
    }

    /// The earliest by date, then by log order.
    fn earliest<'a>(&'a self, retracted: &'a Retracted) -> Option<&'a Fact<T>> {
        self.effective(retracted).min_by_key(|f| f.stamp.key())
    }
}

/// The ids of the events that retractions took out of the dataset.
#[derive(Debug, Default)]
struct Retracted(HashSet<Uuid>);

impl Retracted {
    /// Resolves retractions from the newest back: a retraction counts unless
    /// a later one retracted it. A retraction always names an earlier event,
    /// so by the time one is reached every retraction of it has been seen.
    fn resolve(retractions: &[(Uuid, Uuid)]) -> Self {
        let mut retracted = HashSet::new();
        for (retraction, target) in retractions.iter().rev() {
            if !retracted.contains(retraction) {
                retracted.insert(*target);
            }
        }
        Self(retracted)
    }

    fn contains(&self, event: Uuid) -> bool {
        !self.0.is_empty() && self.0.contains(&event)
    }
}

/// What a `participant.registered` says that the jobseeker rows use.
#[derive(Debug, Clone, Copy)]
struct Registration {
    role: Role,
    /// An index into [`DatasetFold::partnership_names`]: a person's
    /// partnership is repeated in every one of their rows, so it is interned.
    partnership: u32,
    unemployed_since: Option<NaiveDate>,
    benefit: Option<Benefit>,
    birth_year: Option<i32>,
    sex: Option<Sex>,
    ethnicity: Option<Ethnicity>,
    disability: Option<YesNo>,
    lone_parent: Option<bool>,
    health_condition: Option<YesNo>,
}

#[derive(Debug, Default)]
struct Person {
    registrations: Facts<Registration>,
    referrals: Facts<ReferredBy>,
    assessments: Facts<bool>,
    preparations_completed: Facts<()>,
    /// Only counted, so only their ids are kept (for retractions): there
    /// are many of them.
    mentoring_sessions: Vec<Uuid>,
    progressions: Facts<ProgressionKind>,
    observations: Facts<Status>,
    /// The substitutions this person started as a substitute, by id.
    substitutions: Vec<Uuid>,
    /// Whether their profile was erased (`person.erased`): every profile
    /// column is then empty, even where an event committed before sealing
    /// still holds the profile in clear.
    erased: bool,
}

#[derive(Debug, Clone, Copy)]
struct ReleaseStart {
    rotation: Uuid,
    employee: Uuid,
    rqf_level: u8,
    hours_per_week: f64,
}

#[derive(Debug, Clone, Copy)]
enum Training {
    Completed { qualification_achieved: bool },
    Left,
}

#[derive(Debug, Default)]
struct Release {
    starts: Facts<ReleaseStart>,
    training: Facts<Training>,
    ends: Facts<()>,
}

#[derive(Debug, Clone)]
struct SubstitutionStart {
    rotation: Uuid,
    substitute: Uuid,
    covers: Box<[Uuid]>,
    hours_per_week: f64,
}

#[derive(Debug, Default)]
struct Substitution {
    starts: Facts<SubstitutionStart>,
    ends: Facts<EndReason>,
}

/// The fold from the committed log to the evaluation dataset.
///
/// Feed every event in position order to [`apply`](Self::apply) (or
/// [`try_apply`](Self::try_apply)), then call [`finish`](Self::finish) once.
///
/// ```
/// use rotation_projections::dataset::DatasetFold;
///
/// let fold = DatasetFold::new(None);
/// let dataset = fold.finish("2026-01-01".parse().unwrap());
/// assert!(dataset.jobseekers.is_empty());
/// ```
#[derive(Default, Debug)]
pub struct DatasetFold {
    /// The partnerships to keep; `None` keeps all. Every entity belongs to
    /// one partnership for life, so filtering events filters entities.
    partnerships: Option<BTreeSet<String>>,
    partnership_names: Vec<String>,
    partnership_index: HashMap<String, u32>,
    people: HashMap<Uuid, Person>,
    employers: HashMap<Uuid, Facts<(Sector, Size)>>,
    /// Each rotation's employer, from `rotation.agreed`.
    rotations: HashMap<Uuid, Facts<Uuid>>,
    releases: HashMap<Uuid, Release>,
    substitutions: HashMap<Uuid, Substitution>,
    /// `(retraction's id, retracted event's id)` in log order. Retractions
    /// are rare, so keeping them all costs little.
    retractions: Vec<(Uuid, Uuid)>,
}

impl DatasetFold {
    /// A fold over the given partnerships (`None`: all of them).
    pub fn new(partnerships: Option<BTreeSet<String>>) -> Self {
        Self {
            partnerships,
            ..Self::default()
        }
    }

    /// Folds one event. Events must come in position order. An event whose
    /// data cannot be read is skipped; use [`try_apply`](Self::try_apply)
    /// to be told about it.
    pub fn apply(&mut self, event: &CommittedEvent) {
        // Committed events were validated at intake, so an unreadable one
        // can only come from a damaged store, which `verify` reports.
        let _ = self.try_apply(event);
    }

    /// Folds one event, or says why its data cannot be read (in which case
    /// the fold is unchanged).
    pub fn try_apply(&mut self, event: &CommittedEvent) -> Result<(), InvalidEvent> {
        self.try_apply_with(event, || event.envelope.data())
    }

    /// Folds one event whose typed data `data` gives, so that a caller can
    /// decode data elsewhere (on other threads); `data` is called only for
    /// the types whose data a column reports.
    pub fn try_apply_with(
        &mut self,
        event: &CommittedEvent,
        data: impl FnOnce() -> Result<EventData, InvalidEvent>,
    ) -> Result<(), InvalidEvent> {
        let envelope = &event.envelope;
        if let Some(wanted) = &self.partnerships
            && !wanted.contains(envelope.partnership.as_str())
        {
            return Ok(());
        }
        match envelope.event_type {
            // These say nothing that a column reports, so their data is not
            // even decoded: decoding is most of the fold's cost.
            EventType::PartnershipRegistered
            | EventType::PreparationStarted
            | EventType::PreparationLeft
            | EventType::RotationClosed => return Ok(()),
            EventType::MentoringSession => {
                let pid = stream_id(envelope, SubjectKind::Person)?;
                self.person(pid).mentoring_sessions.push(envelope.id);
                return Ok(());
            }
            _ => {}
        }
        let stamp = Stamp::of(event);
        match data()? {
            EventData::EmployerEnrolled(d) => {
                let id = stream_id(envelope, SubjectKind::Employer)?;
                self.employers
                    .entry(id)
                    .or_default()
                    .push(stamp, (d.sector, d.size));
            }
            EventData::ParticipantRegistered(d) => {
                let pid = stream_id(envelope, SubjectKind::Person)?;
                let partnership = self.intern(&envelope.partnership);
                let profile = d.profile.as_ref();
                let registration = Registration {
                    role: d.role,
                    partnership,
                    unemployed_since: d.unemployed_since,
                    benefit: d.benefit,
                    birth_year: profile.and_then(|p| p.birth_year),
                    sex: profile.and_then(|p| p.sex),
                    ethnicity: profile.and_then(|p| p.ethnicity),
                    disability: profile.and_then(|p| p.disability),
                    lone_parent: profile.and_then(|p| p.lone_parent),
                    health_condition: profile.and_then(|p| p.health_condition),
                };
                self.person(pid).registrations.push(stamp, registration);
            }
            EventData::JobseekerReferred(d) => {
                let pid = stream_id(envelope, SubjectKind::Person)?;
                self.person(pid).referrals.push(stamp, d.referred_by);
            }
            EventData::EligibilityAssessed(d) => {
                let pid = stream_id(envelope, SubjectKind::Person)?;
                self.person(pid).assessments.push(stamp, d.eligible);
            }
            EventData::PreparationCompleted(_) => {
                let pid = stream_id(envelope, SubjectKind::Person)?;
                self.person(pid).preparations_completed.push(stamp, ());
            }
            EventData::PersonProgressed(d) => {
                let pid = stream_id(envelope, SubjectKind::Person)?;
                self.person(pid).progressions.push(stamp, d.kind);
            }
            EventData::OutcomeObserved(d) => {
                let pid = stream_id(envelope, SubjectKind::Person)?;
                self.person(pid).observations.push(stamp, d.status);
            }
            EventData::PersonErased(_) => {
                let pid = stream_id(envelope, SubjectKind::Person)?;
                self.person(pid).erased = true;
            }
            EventData::RotationAgreed(d) => {
                let id = stream_id(envelope, SubjectKind::Rotation)?;
                self.rotations
                    .entry(id)
                    .or_default()
                    .push(stamp, d.employer);
            }
            EventData::ReleaseStarted(d) => {
                let rotation = stream_id(envelope, SubjectKind::Rotation)?;
                let start = ReleaseStart {
                    rotation,
                    employee: d.employee,
                    rqf_level: d.course.rqf_level,
                    hours_per_week: d.course.hours_per_week,
                };
                self.releases
                    .entry(d.release_id)
                    .or_default()
                    .starts
                    .push(stamp, start);
            }
            EventData::TrainingCompleted(d) => {
                let training = Training::Completed {
                    qualification_achieved: d.qualification_achieved,
                };
                self.releases
                    .entry(d.release_id)
                    .or_default()
                    .training
                    .push(stamp, training);
            }
            EventData::TrainingLeft(d) => {
                self.releases
                    .entry(d.release_id)
                    .or_default()
                    .training
                    .push(stamp, Training::Left);
            }
            EventData::ReleaseEnded(d) => {
                self.releases
                    .entry(d.release_id)
                    .or_default()
                    .ends
                    .push(stamp, ());
            }
            EventData::SubstitutionStarted(d) => {
                let rotation = stream_id(envelope, SubjectKind::Rotation)?;
                let start = SubstitutionStart {
                    rotation,
                    substitute: d.substitute,
                    covers: d.covers.into_boxed_slice(),
                    hours_per_week: d.hours_per_week,
                };
                self.substitutions
                    .entry(d.substitution_id)
                    .or_default()
                    .starts
                    .push(stamp, start);
                let person = self.person(d.substitute);
                if !person.substitutions.contains(&d.substitution_id) {
                    person.substitutions.push(d.substitution_id);
                }
            }
            EventData::SubstitutionEnded(d) => {
                self.substitutions
                    .entry(d.substitution_id)
                    .or_default()
                    .ends
                    .push(stamp, d.reason);
            }
            EventData::Retracted(d) => self.retractions.push((envelope.id, d.event_id)),
            EventData::PartnershipRegistered(_)
            | EventData::PreparationStarted(_)
            | EventData::PreparationLeft(_)
            | EventData::MentoringSession(_)
            | EventData::RotationClosed(_) => {}
        }
        Ok(())
    }

    /// Builds the rows, judging outcomes at `reference_date`.
    pub fn finish(self, reference_date: NaiveDate) -> Dataset {
        let retracted = Retracted::resolve(&self.retractions);
        let tables = Tables {
            fold: &self,
            retracted: &retracted,
            reference: reference_date,
        };
        let spans = tables.substitution_spans();
        // The jobseekers' table is the largest; the other two are built
        // beside it.
        let (jobseekers, (releases, substitutions)) = std::thread::scope(|scope| {
            let others = scope.spawn(|| {
                let mut releases: Vec<ReleaseRow> = self
                    .releases
                    .iter()
                    .filter_map(|(rid, release)| tables.release_row(*rid, release))
                    .collect();
                releases.sort_unstable_by_key(|row| row.rid);
                let mut substitutions: Vec<SubstitutionRow> = spans
                    .values()
                    .map(|span| tables.substitution_row(span))
                    .collect();
                substitutions.sort_unstable_by_key(|row| row.sid);
                (releases, substitutions)
            });
            let mut jobseekers: Vec<JobseekerRow> = self
                .people
                .iter()
                .filter_map(|(pid, person)| tables.jobseeker_row(*pid, person, &spans))
                .collect();
            jobseekers.sort_unstable_by_key(|row| row.pid);
            let others = others
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (jobseekers, others)
        });
        Dataset {
            jobseekers,
            releases,
            substitutions,
        }
    }

    fn person(&mut self, pid: Uuid) -> &mut Person {
        self.people.entry(pid).or_default()
    }

    fn intern(&mut self, partnership: &str) -> u32 {
        if let Some(index) = self.partnership_index.get(partnership) {
            return *index;
        }
        let index =
            u32::try_from(self.partnership_names.len()).expect("fewer than 2^32 partnerships");
        self.partnership_names.push(partnership.to_owned());
        self.partnership_index.insert(partnership.to_owned(), index);
        index
    }
}

/// The id of the stream an event belongs to, checked against the kind its
/// type belongs to.
fn stream_id(envelope: &Envelope, kind: SubjectKind) -> Result<Uuid, InvalidEvent> {
    match envelope.subject.uuid() {
        Some(id) if envelope.subject.kind() == kind => Ok(id),
        _ => Err(InvalidEvent(format!(
            "subject: `{}` events belong to `{}/…` streams, not `{}`",
            envelope.event_type,
            kind.as_str(),
            envelope.subject
        ))),
    }
}

/// A substitution as the dataset sees it: its effective start and, if it
/// has ended, its effective end.
#[derive(Debug)]
struct Span<'a> {
    sid: Uuid,
    start: &'a Fact<SubstitutionStart>,
    end: Option<&'a Fact<EndReason>>,
}

impl Span<'_> {
    fn days(&self) -> Option<i64> {
        self.end
            .map(|end| (end.stamp.date - self.start.stamp.date).num_days())
    }
}

/// The finished fold with its retractions resolved: builds the rows.
struct Tables<'a> {
    fold: &'a DatasetFold,
    retracted: &'a Retracted,
    reference: NaiveDate,
}

impl<'a> Tables<'a> {
    fn employer_of(&self, rotation: Uuid) -> Option<Uuid> {
        let agreements = self.fold.rotations.get(&rotation)?;
        agreements.latest(self.retracted).map(|f| f.value)
    }

    fn enrolment_of(&self, employer: Option<Uuid>) -> Option<(Sector, Size)> {
        let enrolments = self.fold.employers.get(&employer?)?;
        enrolments.latest(self.retracted).map(|f| f.value)
    }

    fn release_exists(&self, rid: &Uuid) -> bool {
        self.fold
            .releases
            .get(rid)
            .is_some_and(|r| r.starts.first(self.retracted).is_some())
    }

    /// Every substitution with an effective start. Its end is the first
    /// effective end recorded after that start.
    fn substitution_spans(&self) -> HashMap<Uuid, Span<'a>> {
        let retracted = self.retracted;
        self.fold
            .substitutions
            .iter()
            .filter_map(|(sid, s)| {
                let start = s.starts.first(retracted)?;
                let end = s
                    .ends
                    .effective(retracted)
                    .find(|e| e.stamp.position > start.stamp.position);
                Some((
                    *sid,
                    Span {
                        sid: *sid,
                        start,
                        end,
                    },
                ))
            })
            .collect()
    }

    fn substitution_row(&self, span: &Span<'_>) -> SubstitutionRow {
        let start = &span.start.value;
        let employer = self.employer_of(start.rotation);
        let covered: BTreeSet<&Uuid> = start
            .covers
            .iter()
            .filter(|rid| self.release_exists(rid))
            .collect();
        SubstitutionRow {
            sid: span.sid,
            pid: start.substitute,
            employer,
            sector: self.enrolment_of(employer).map(|(sector, _)| sector),
            start: span.start.stamp.date,
            end: span.end.map(|e| e.stamp.date),
            days: span.days(),
            hours_per_week: start.hours_per_week,
            end_reason: span.end.map(|e| e.value),
            covers: u32::try_from(covered.len()).unwrap_or(u32::MAX),
        }
    }

    fn release_row(&self, rid: Uuid, release: &Release) -> Option<ReleaseRow> {
        let retracted = self.retracted;
        let start = release.starts.first(retracted)?;
        let after_start = |stamp: &Stamp| stamp.position > start.stamp.position;
        let end = release
            .ends
            .effective(retracted)
            .find(|e| after_start(&e.stamp));
        let training = release
            .training
            .effective(retracted)
            .find(|t| after_start(&t.stamp));
        let training_outcome = match (training.map(|t| t.value), end) {
            (Some(Training::Completed { .. }), _) => Some(TrainingOutcome::Completed),
            (Some(Training::Left), _) => Some(TrainingOutcome::Left),
            (None, None) => Some(TrainingOutcome::Ongoing),
            (None, Some(_)) => None,
        };
        let qualification_achieved = match training.map(|t| t.value) {
            Some(Training::Completed {
                qualification_achieved,
            }) => Some(qualification_achieved),
            _ => None,
        };
        let employee = start.value.employee;
        // The window runs from the release's start to twelve months after
        // its end, or to the reference date while it runs; nothing after the
        // reference date counts, because outcomes are judged on that day.
        let first = start.stamp.date;
        let last = end
            .map(|e| add_months(e.stamp.date, PROGRESSION_MONTHS))
            .unwrap_or(self.reference)
            .min(self.reference);
        let progression = self
            .fold
            .people
            .get(&employee)
            .and_then(|person| {
                person
                    .progressions
                    .effective(retracted)
                    .filter(|p| (first..=last).contains(&p.stamp.date))
                    .min_by_key(|p| p.stamp.key())
            })
            .map(|p| p.value);
        let employer = self.employer_of(start.value.rotation);
        let enrolment = self.enrolment_of(employer);
        Some(ReleaseRow {
            rid,
            pid: employee,
            employer,
            sector: enrolment.map(|(sector, _)| sector),
            size: enrolment.map(|(_, size)| size),
            rqf_level: start.value.rqf_level,
            hours_per_week: start.value.hours_per_week,
            release_start: start.stamp.date,
            release_end: end.map(|e| e.stamp.date),
            training_outcome,
            qualification_achieved,
            progressed_12m: progression.is_some(),
            progression_kind: progression,
        })
    }

    fn jobseeker_row(
        &self,
        pid: Uuid,
        person: &Person,
        spans: &HashMap<Uuid, Span<'_>>,
    ) -> Option<JobseekerRow> {
        let retracted = self.retracted;
        let mut registration = person.registrations.latest(retracted)?.value;
        if registration.role != Role::Jobseeker {
            return None;
        }
        if person.erased {
            registration.birth_year = None;
            registration.sex = None;
            registration.ethnicity = None;
            registration.disability = None;
            registration.lone_parent = None;
            registration.health_condition = None;
        }
        let referral = person.referrals.earliest(retracted);
        let referred_on = referral.map(|r| r.stamp.date);
        let age_band = AgeBand::at_referral(registration.birth_year, referred_on);
        // Whole weeks, rounded down; a referral dated before the
        // unemployment began has no meaningful count and is left missing.
        let unemployed_weeks_at_referral = match (referred_on, registration.unemployed_since) {
            (Some(on), Some(since)) if since <= on => Some((on - since).num_days() / 7),
            _ => None,
        };

        let own: Vec<&Span<'_>> = person
            .substitutions
            .iter()
            .filter_map(|sid| spans.get(sid))
            .filter(|span| span.start.value.substitute == pid)
            .collect();
        let first_start = own.iter().map(|span| span.start.stamp.date).min();
        let ended: Vec<(&Span<'_>, &Fact<EndReason>)> = own
            .iter()
            .filter_map(|span| span.end.map(|end| (*span, end)))
            .collect();
        let last_ended = ended.iter().max_by_key(|(_, end)| end.stamp.key());
        let substitution_days = ended.iter().filter_map(|(span, _)| span.days()).sum();

        let statuses = last_ended.map(|(_, last)| {
            let observations = observations(person, &ended, retracted);
            FOLLOW_UP_MONTHS
                .map(|months| follow_up(&observations, last.stamp.date, months, self.reference))
        });
        let progressed = first_start.map(|first| {
            person
                .progressions
                .effective(retracted)
                .any(|p| (first..=self.reference).contains(&p.stamp.date))
        });

        Some(JobseekerRow {
            pid,
            partnership: self.fold.partnership_names[registration.partnership as usize].clone(),
            age_band,
            sex: registration.sex,
            ethnicity: registration.ethnicity,
            disability: registration.disability,
            lone_parent: registration.lone_parent,
            health_condition: registration.health_condition,
            benefit: registration.benefit,
            unemployed_weeks_at_referral,
            referred_on,
            referred_by: referral.map(|r| r.value),
            eligible: person.assessments.latest(retracted).map(|a| a.value),
            preparation_completed: person.preparations_completed.first(retracted).is_some(),
            mentoring_sessions: count(
                person
                    .mentoring_sessions
                    .iter()
                    .filter(|id| !retracted.contains(**id)),
            ),
            first_substitution_start: first_start,
            substitutions: count(own.iter()),
            substitution_days,
            last_end_reason: last_ended.map(|(_, end)| end.value),
            hired_by_host_employer: (!ended.is_empty()).then(|| {
                ended
                    .iter()
                    .any(|(_, end)| end.value == EndReason::HiredByEmployer)
            }),
            status_3m: statuses.map(|s| s[0]),
            status_6m: statuses.map(|s| s[1]),
            status_12m: statuses.map(|s| s[2]),
            progressed,
        })
    }
}

/// A person's observations, observed and implied, in log order (which
/// [`follow_up`] uses to break ties on the same date).
fn observations(
    person: &Person,
    ended: &[(&Span<'_>, &Fact<EndReason>)],
    retracted: &Retracted,
) -> Vec<Observation> {
    let record = |stamp: &Stamp, record| (stamp.position, stamp.date, record);
    let observed = person
        .observations
        .effective(retracted)
        .map(|o| record(&o.stamp, StatusRecord::Observed(o.value)));
    let progressed = person
        .progressions
        .effective(retracted)
        .map(|p| record(&p.stamp, StatusRecord::Progressed(p.value)));
    let ends = ended
        .iter()
        .map(|(_, end)| record(&end.stamp, StatusRecord::SubstitutionEnded(end.value)));
    outcomes::observations(observed.chain(progressed).chain(ends))
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}
