//! Domain rules (contract section 3): whether an event may join the log,
//! given the state of the streams it touches, and how that state changes.
//!
//! The state is kept per stream ([`StreamState`]), in the writer's memory
//! since the last snapshot and in the store as of it, so start-up replays
//! at most the events after a snapshot, never the log. It holds only
//! what the rules need: a stream's version and partnership, the lifecycle
//! of its entity, and the ids it has retracted. A person's active release
//! and substitution live on the person, although rotation events change
//! them, so that "a second active release for the same employee" is one
//! lookup.
//!
//! Retractions re-fold the stream's own state from its remaining events,
//! and mend the persons that the stream's releases and substitutions point
//! at, so that a retracted release frees its employee again.

use std::collections::BTreeMap;

use rotation_events::{
    Envelope, EventData, EventType, Role, Subject, SubjectKind, TrainingCompleted, TrainingLeft,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{IdRecord, StoreError};

use rotation_events::ErrorCode;

/// Why an event may not join the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct Violation {
    pub code: ErrorCode,
    pub message: String,
    /// For `version_conflict`: the stream's version now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

impl Violation {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            current_version: None,
        }
    }

    fn rule(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RuleViolation, message)
    }
}

/// A stream's state as the rules see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    /// How many events the stream holds, retractions included.
    pub version: u64,
    /// The partnership the stream belongs to, for life.
    pub partnership: String,
    /// Ids of this stream's events that have been retracted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retracted: Vec<Uuid>,
    pub entity: Entity,
    /// The log positions of the stream's events, in version order: the
    /// stream index, kept here so that an append writes one record per
    /// stream rather than one more per event. Maintained by the append
    /// path, not by the rules.
    #[serde(default)]
    pub positions: Vec<u64>,
}

/// The lifecycle of the entity behind a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entity {
    Partnership { registered: bool },
    Employer { enrolled: bool },
    Person(Person),
    Rotation(Rotation),
}

impl Entity {
    /// Whether the entity's creating event is in force: made and not
    /// retracted.
    pub fn exists(&self) -> bool {
        match self {
            Self::Partnership { registered } => *registered,
            Self::Employer { enrolled } => *enrolled,
            Self::Person(person) => person.role.is_some(),
            Self::Rotation(rotation) => rotation.employer.is_some(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// `None` until registered, and again if the registration is retracted.
    pub role: Option<Role>,
    pub employer: Option<Uuid>,
    /// The latest eligibility assessment.
    pub eligible: Option<bool>,
    pub preparation: Option<Preparation>,
    /// The release this person is on now, as an employee.
    pub active_release: Option<Active>,
    /// The substitution this person works now, as a jobseeker.
    pub active_substitution: Option<Active>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preparation {
    Ongoing,
    Completed,
    Left,
}

/// A pointer from a person to the release or substitution they are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub rotation: Uuid,
    pub id: Uuid,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rotation {
    /// `None` if the agreement has been retracted.
    pub employer: Option<Uuid>,
    pub closed: bool,
    pub releases: BTreeMap<Uuid, Release>,
    pub substitutions: BTreeMap<Uuid, Substitution>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub employee: Uuid,
    /// Started and not yet ended by `release_ended`.
    pub active: bool,
    /// Neither completed nor left.
    pub training_ongoing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Substitution {
    pub substitute: Uuid,
    pub active: bool,
}

/// What the rules read: the state of streams as of the events accepted so
/// far, including those accepted earlier in the same commit.
pub trait StateView {
    fn stream(&mut self, subject: &str) -> Result<Option<StreamState>, StoreError>;
    fn id(&mut self, id: Uuid) -> Result<Option<IdRecord>, StoreError>;
    /// The events of a stream, in version order.
    fn stream_events(&mut self, subject: &str) -> Result<Vec<Envelope>, StoreError>;
}

/// The rule state changes an accepted event makes: its own stream first.
pub type Changes = Vec<(String, StreamState)>;

/// Decides whether `envelope` may be appended, and if so how the state
/// changes. Shape, time, permission and idempotency are checked before.
pub fn decide(
    view: &mut impl StateView,
    envelope: &Envelope,
    data: &EventData,
) -> Result<Result<Changes, Violation>, StoreError> {
    let subject = envelope.subject.key();
    let current = view.stream(&subject)?;
    let version = current.as_ref().map_or(0, |s| s.version);
    if let Some(expected) = envelope.expectedversion
        && expected != version
    {
        return Ok(Err(Violation {
            code: ErrorCode::VersionConflict,
            message: format!(
                "stream {subject} is at version {version}, not the expected {expected}"
            ),
            current_version: Some(version),
        }));
    }
    let creates = creating_type(envelope.subject.kind()) == envelope.event_type;
    let mut state = match current {
        None if creates => StreamState {
            version: 0,
            partnership: envelope.partnership.clone(),
            retracted: Vec::new(),
            entity: empty_entity(envelope.subject.kind()),
            positions: Vec::new(),
        },
        None => {
            return Ok(Err(Violation::new(
                ErrorCode::UnknownStream,
                format!(
                    "stream {subject} does not exist yet: its first event must be {}",
                    creating_type(envelope.subject.kind())
                ),
            )));
        }
        Some(state) if creates && state.entity.exists() => {
            return Ok(Err(Violation::rule(format!(
                "stream {subject} already exists"
            ))));
        }
        // A stream whose creating event was retracted may be created
        // again: a registration made by mistake and retracted does not
        // lock the person out. The stream goes on, with its history.
        Some(state) => state,
    };
    if state.partnership != envelope.partnership {
        return Ok(Err(Violation::rule(format!(
            "stream {subject} belongs to partnership {}, not {}",
            state.partnership, envelope.partnership
        ))));
    }
    let mut rules = Rules {
        view,
        envelope,
        subject: &subject,
        others: Vec::new(),
    };
    let verdict = rules.apply(&mut state, data)?;
    Ok(verdict.map(|()| {
        state.version += 1;
        let mut changes = vec![(subject.clone(), state)];
        changes.extend(rules.others);
        changes
    }))
}

/// The event type that opens a stream of each kind.
pub fn creating_type(kind: SubjectKind) -> EventType {
    match kind {
        SubjectKind::Partnership => EventType::PartnershipRegistered,
        SubjectKind::Employer => EventType::EmployerEnrolled,
        SubjectKind::Person => EventType::ParticipantRegistered,
        SubjectKind::Rotation => EventType::RotationAgreed,
    }
}

fn empty_entity(kind: SubjectKind) -> Entity {
    match kind {
        SubjectKind::Partnership => Entity::Partnership { registered: false },
        SubjectKind::Employer => Entity::Employer { enrolled: false },
        SubjectKind::Person => Entity::Person(Person::default()),
        SubjectKind::Rotation => Entity::Rotation(Rotation::default()),
    }
}

/// One decision in progress.
struct Rules<'a, V> {
    view: &'a mut V,
    envelope: &'a Envelope,
    subject: &'a str,
    /// Changes to streams other than the event's own.
    others: Changes,
}

type Verdict = Result<Result<(), Violation>, StoreError>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Ok(Err(Violation::rule(format!($($msg)+))));
        }
    };
}

impl<V: StateView> Rules<'_, V> {
    /// Another stream's state, preferring changes made earlier in this
    /// decision.
    fn other(&mut self, subject: &str) -> Result<Option<StreamState>, StoreError> {
        if let Some((_, state)) = self.others.iter().find(|(s, _)| s == subject) {
            return Ok(Some(state.clone()));
        }
        self.view.stream(subject)
    }

    fn set_other(&mut self, subject: String, state: StreamState) {
        match self.others.iter_mut().find(|(s, _)| *s == subject) {
            Some(slot) => slot.1 = state,
            None => self.others.push((subject, state)),
        }
    }

    /// A registered person of this partnership, with their stream state.
    fn person(
        &mut self,
        id: Uuid,
        what: &str,
    ) -> Result<Result<(String, StreamState, Person), Violation>, StoreError> {
        let subject = Subject::Person(id).key();
        let state = self.other(&subject)?;
        let Some(state) = state else {
            return Ok(Err(Violation::rule(format!(
                "{what} {id} is not registered"
            ))));
        };
        let Entity::Person(person) = &state.entity else {
            return Ok(Err(Violation::rule(format!("{what} {id} is not a person"))));
        };
        if person.role.is_none() {
            return Ok(Err(Violation::rule(format!(
                "{what} {id} is not registered"
            ))));
        }
        if state.partnership != self.envelope.partnership {
            return Ok(Err(Violation::rule(format!(
                "{what} {id} belongs to partnership {}",
                state.partnership
            ))));
        }
        let person = person.clone();
        Ok(Ok((subject, state, person)))
    }

    fn employer_enrolled(&mut self, id: Uuid, same_partnership: bool) -> Verdict {
        let state = self.other(&Subject::Employer(id).key())?;
        let enrolled = matches!(&state, Some(s) if s.entity == Entity::Employer { enrolled: true });
        ensure!(enrolled, "employer {id} is not enrolled");
        if same_partnership {
            let partnership = state.map(|s| s.partnership).unwrap_or_default();
            ensure!(
                partnership == self.envelope.partnership,
                "employer {id} is enrolled in partnership {partnership}, not {}",
                self.envelope.partnership
            );
        }
        Ok(Ok(()))
    }

    fn partnership_registered(&mut self) -> Verdict {
        let slug = &self.envelope.partnership;
        let state = self.other(&Subject::Partnership(slug.clone()).key())?;
        let registered =
            matches!(state, Some(s) if s.entity == Entity::Partnership { registered: true });
        ensure!(registered, "partnership {slug} is not registered");
        Ok(Ok(()))
    }

    /// Checks `data` against `state` (the event's own stream) and applies it.
    fn apply(&mut self, state: &mut StreamState, data: &EventData) -> Verdict {
        let kind = self.envelope.subject.kind();
        if kind != SubjectKind::Partnership
            && state.version == 0
            && let Err(v) = self.partnership_registered()?
        {
            return Ok(Err(v));
        }
        match data {
            EventData::Retracted(d) => return self.retract(state, d.event_id),
            EventData::ParticipantRegistered(d) if d.role == Role::Employee => {
                let employer = d.employer.unwrap_or_default();
                if let Err(v) = self.employer_enrolled(employer, true)? {
                    return Ok(Err(v));
                }
            }
            EventData::RotationAgreed(d) => {
                if let Err(v) = self.employer_enrolled(d.employer, true)? {
                    return Ok(Err(v));
                }
            }
            EventData::PersonProgressed(d) => {
                if let Some(employer) = d.employer
                    && let Err(v) = self.employer_enrolled(employer, false)?
                {
                    return Ok(Err(v));
                }
            }
            _ => {}
        }
        match &mut state.entity {
            Entity::Person(person) => {
                if let Err(v) = self.person_rules(person, data) {
                    return Ok(Err(v));
                }
            }
            Entity::Rotation(rotation) => {
                let verdict = self.rotation_rules(rotation, data)?;
                if verdict.is_err() {
                    return Ok(verdict);
                }
            }
            Entity::Partnership { .. } | Entity::Employer { .. } => {}
        }
        apply_own(&mut state.entity, data);
        Ok(Ok(()))
    }

    fn person_rules(&self, person: &Person, data: &EventData) -> Result<(), Violation> {
        let id = self.envelope.subject.uuid().unwrap_or_default();
        let jobseeker_event = matches!(
            data,
            EventData::JobseekerReferred(_)
                | EventData::EligibilityAssessed(_)
                | EventData::PreparationStarted(_)
                | EventData::PreparationCompleted(_)
                | EventData::PreparationLeft(_)
                | EventData::MentoringSession(_)
        );
        let registered =
            matches!(data, EventData::ParticipantRegistered(_)) || person.role.is_some();
        if !registered {
            return Err(Violation::rule(format!("person {id} is not registered")));
        }
        if jobseeker_event && person.role != Some(Role::Jobseeker) {
            return Err(Violation::rule(format!(
                "person {id} is not a registered jobseeker"
            )));
        }
        match data {
            EventData::PreparationStarted(_)
                if person.preparation == Some(Preparation::Ongoing) =>
            {
                Err(Violation::rule(format!(
                    "person {id} is already in preparation"
                )))
            }
            EventData::PreparationCompleted(_) | EventData::PreparationLeft(_)
                if person.preparation != Some(Preparation::Ongoing) =>
            {
                Err(Violation::rule(format!(
                    "person {id} has no preparation under way"
                )))
            }
            _ => Ok(()),
        }
    }

    fn rotation_rules(&mut self, rotation: &Rotation, data: &EventData) -> Verdict {
        let rotation_id = self.envelope.subject.uuid().unwrap_or_default();
        if !matches!(data, EventData::RotationAgreed(_)) {
            ensure!(
                rotation.employer.is_some(),
                "rotation {rotation_id} has no agreement"
            );
            // A closed rotation starts nothing new, but what was under way
            // may still be reported ending: late reports are normal, and
            // refusing them would leave people on a release for good.
            let starts = matches!(
                data,
                EventData::ReleaseStarted(_)
                    | EventData::SubstitutionStarted(_)
                    | EventData::RotationClosed(_)
            );
            ensure!(
                !(starts && rotation.closed),
                "rotation {rotation_id} is closed"
            );
        }
        match data {
            EventData::ReleaseStarted(d) => {
                ensure!(
                    !rotation.releases.contains_key(&d.release_id),
                    "release {} already exists in rotation {rotation_id}",
                    d.release_id
                );
                let (subject, state, person) = match self.person(d.employee, "employee")? {
                    Ok(found) => found,
                    Err(v) => return Ok(Err(v)),
                };
                ensure!(
                    person.role == Some(Role::Employee) && person.employer == rotation.employer,
                    "person {} is not a registered employee of employer {}",
                    d.employee,
                    rotation.employer.unwrap_or_default()
                );
                return self.occupy(
                    subject,
                    state,
                    true,
                    Active {
                        rotation: rotation_id,
                        id: d.release_id,
                    },
                );
            }
            EventData::SubstitutionStarted(d) => {
                ensure!(
                    !rotation.substitutions.contains_key(&d.substitution_id),
                    "substitution {} already exists in rotation {rotation_id}",
                    d.substitution_id
                );
                for release in &d.covers {
                    ensure!(
                        rotation.releases.get(release).is_some_and(|r| r.active),
                        "covers names release {release}, which is not active in rotation {rotation_id}"
                    );
                }
                let (subject, state, person) = match self.person(d.substitute, "substitute")? {
                    Ok(found) => found,
                    Err(v) => return Ok(Err(v)),
                };
                ensure!(
                    person.role == Some(Role::Jobseeker),
                    "substitute {} is not a registered jobseeker",
                    d.substitute
                );
                ensure!(
                    person.eligible == Some(true),
                    "substitute {} has not been assessed eligible",
                    d.substitute
                );
                return self.occupy(
                    subject,
                    state,
                    false,
                    Active {
                        rotation: rotation_id,
                        id: d.substitution_id,
                    },
                );
            }
            EventData::TrainingCompleted(TrainingCompleted { release_id, .. })
            | EventData::TrainingLeft(TrainingLeft { release_id, .. }) => {
                ensure!(
                    rotation
                        .releases
                        .get(release_id)
                        .is_some_and(|r| r.training_ongoing),
                    "release {release_id} has no training under way in rotation {rotation_id}"
                );
            }
            EventData::ReleaseEnded(d) => {
                let release = rotation.releases.get(&d.release_id).filter(|r| r.active);
                let Some(release) = release else {
                    return Ok(Err(Violation::rule(format!(
                        "release {} is not active in rotation {rotation_id}",
                        d.release_id
                    ))));
                };
                self.clear_pointer(release.employee, rotation_id, d.release_id, true)?;
            }
            EventData::SubstitutionEnded(d) => {
                let substitution = rotation
                    .substitutions
                    .get(&d.substitution_id)
                    .filter(|s| s.active);
                let Some(substitution) = substitution else {
                    return Ok(Err(Violation::rule(format!(
                        "substitution {} is not active in rotation {rotation_id}",
                        d.substitution_id
                    ))));
                };
                self.clear_pointer(
                    substitution.substitute,
                    rotation_id,
                    d.substitution_id,
                    false,
                )?;
            }
            _ => {}
        }
        Ok(Ok(()))
    }

    /// Points a person at the release (or substitution) they start, unless
    /// they are on one already: nobody has two at once.
    fn occupy(
        &mut self,
        subject: String,
        mut state: StreamState,
        release: bool,
        start: Active,
    ) -> Verdict {
        let Entity::Person(person) = &state.entity else {
            return Ok(Err(Violation::rule(format!("{subject} is not a person"))));
        };
        let (active, role, what) = if release {
            (person.active_release, "employee", "release")
        } else {
            (person.active_substitution, "substitute", "substitution")
        };
        if let Some(active) = active {
            let id = subject.strip_prefix("person/").unwrap_or(&subject);
            return Ok(Err(Violation::rule(format!(
                "{role} {id} already has an active {what} ({} in rotation {})",
                active.id, active.rotation
            ))));
        }
        set_person(&mut state, |p| {
            let slot = if release {
                &mut p.active_release
            } else {
                &mut p.active_substitution
            };
            *slot = Some(start);
        });
        self.set_other(subject, state);
        Ok(Ok(()))
    }

    /// Frees a person whose release (or substitution) has ended.
    fn clear_pointer(
        &mut self,
        person: Uuid,
        rotation: Uuid,
        id: Uuid,
        release: bool,
    ) -> Result<(), StoreError> {
        let subject = Subject::Person(person).key();
        if let Some(mut state) = self.other(&subject)? {
            let target = Some(Active { rotation, id });
            set_person(&mut state, |p| {
                let slot = if release {
                    &mut p.active_release
                } else {
                    &mut p.active_substitution
                };
                if *slot == target {
                    *slot = None;
                }
            });
            self.set_other(subject, state);
        }
        Ok(())
    }

    fn retract(&mut self, state: &mut StreamState, target: Uuid) -> Verdict {
        let Some(record) = self.view.id(target)? else {
            return Ok(Err(Violation::rule(format!(
                "retraction of an unknown event {target}"
            ))));
        };
        let events = self.view.stream_events(self.subject)?;
        let Some(retracted) = events.iter().find(|e| e.id == target) else {
            return Ok(Err(Violation::rule(format!(
                "event {target} (position {}) belongs to another stream than {}",
                record.position, self.subject
            ))));
        };
        ensure!(
            retracted.event_type != EventType::Retracted,
            "event {target} is a retraction, which cannot be retracted"
        );
        ensure!(
            !state.retracted.contains(&target),
            "event {target} is already retracted"
        );
        state.retracted.push(target);
        let mut entity = empty_entity(self.envelope.subject.kind());
        for event in events.iter().filter(|e| !state.retracted.contains(&e.id)) {
            if let Ok(data) = event.data() {
                apply_own(&mut entity, &data);
            }
        }
        match (&state.entity, &mut entity) {
            (Entity::Person(old), Entity::Person(new)) => {
                // Pointers are owned by rotation streams, not by the person's own events.
                new.active_release = old.active_release;
                new.active_substitution = old.active_substitution;
            }
            (Entity::Rotation(old), Entity::Rotation(new)) => {
                let rotation = self.envelope.subject.uuid().unwrap_or_default();
                let verdict = self.mend_pointers(rotation, old, new)?;
                if verdict.is_err() {
                    return Ok(verdict);
                }
            }
            _ => {}
        }
        state.entity = entity;
        Ok(Ok(()))
    }

    /// After a rotation is re-folded, points persons at exactly the releases
    /// and substitutions that are active in it now.
    fn mend_pointers(&mut self, rotation: Uuid, old: &Rotation, new: &Rotation) -> Verdict {
        let actives = |r: &Rotation| {
            let releases = r
                .releases
                .iter()
                .filter(|(_, x)| x.active)
                .map(|(id, x)| (x.employee, *id, true));
            let substitutions = r
                .substitutions
                .iter()
                .filter(|(_, x)| x.active)
                .map(|(id, x)| (x.substitute, *id, false));
            releases.chain(substitutions).collect::<Vec<_>>()
        };
        let (before, after) = (actives(old), actives(new));
        for &(person, id, release) in before.iter().filter(|a| !after.contains(a)) {
            self.clear_pointer(person, rotation, id, release)?;
        }
        for &(person, id, release) in after.iter().filter(|a| !before.contains(a)) {
            let subject = Subject::Person(person).key();
            let Some(mut state) = self.other(&subject)? else {
                continue;
            };
            let mut clash = None;
            set_person(&mut state, |p| {
                let slot = if release {
                    &mut p.active_release
                } else {
                    &mut p.active_substitution
                };
                match slot {
                    Some(other) => clash = Some(*other),
                    None => *slot = Some(Active { rotation, id }),
                }
            });
            if let Some(other) = clash {
                return Ok(Err(Violation::rule(format!(
                    "retracting this would give person {person} two active {} ({id} and {})",
                    if release { "releases" } else { "substitutions" },
                    other.id
                ))));
            }
            self.set_other(subject, state);
        }
        Ok(Ok(()))
    }
}

fn set_person(state: &mut StreamState, change: impl FnOnce(&mut Person)) {
    if let Entity::Person(person) = &mut state.entity {
        change(person);
    }
}

/// How an event changes its own stream's entity. Infallible: the checks
/// come before, and a re-fold after a retraction applies what remains.
fn apply_own(entity: &mut Entity, data: &EventData) {
    match (entity, data) {
        (Entity::Partnership { registered }, EventData::PartnershipRegistered(_)) => {
            *registered = true
        }
        (Entity::Employer { enrolled }, EventData::EmployerEnrolled(_)) => *enrolled = true,
        (Entity::Person(p), EventData::ParticipantRegistered(d)) => {
            p.role = Some(d.role);
            p.employer = d.employer;
        }
        (Entity::Person(p), EventData::EligibilityAssessed(d)) => p.eligible = Some(d.eligible),
        (Entity::Person(p), EventData::PreparationStarted(_)) => {
            p.preparation = Some(Preparation::Ongoing)
        }
        (Entity::Person(p), EventData::PreparationCompleted(_)) => {
            p.preparation = Some(Preparation::Completed)
        }
        (Entity::Person(p), EventData::PreparationLeft(_)) => {
            p.preparation = Some(Preparation::Left)
        }
        (Entity::Rotation(r), EventData::RotationAgreed(d)) => r.employer = Some(d.employer),
        (Entity::Rotation(r), EventData::RotationClosed(_)) => r.closed = true,
        (Entity::Rotation(r), EventData::ReleaseStarted(d)) => {
            r.releases.insert(
                d.release_id,
                Release {
                    employee: d.employee,
                    active: true,
                    training_ongoing: true,
                },
            );
        }
        (Entity::Rotation(r), EventData::SubstitutionStarted(d)) => {
            r.substitutions.insert(
                d.substitution_id,
                Substitution {
                    substitute: d.substitute,
                    active: true,
                },
            );
        }
        (
            Entity::Rotation(r),
            EventData::TrainingCompleted(TrainingCompleted { release_id, .. })
            | EventData::TrainingLeft(TrainingLeft { release_id, .. }),
        ) => {
            if let Some(release) = r.releases.get_mut(release_id) {
                release.training_ongoing = false;
            }
        }
        (Entity::Rotation(r), EventData::ReleaseEnded(d)) => {
            if let Some(release) = r.releases.get_mut(&d.release_id) {
                release.active = false;
            }
        }
        (Entity::Rotation(r), EventData::SubstitutionEnded(d)) => {
            if let Some(substitution) = r.substitutions.get_mut(&d.substitution_id) {
                substitution.active = false;
            }
        }
        _ => {}
    }
}
