//! One partnership's fold: each event's fact filed under its entity, the
//! retraction chains followed, and the views that read the changed facts
//! recomputed, the counters adjusted by the difference. A checkpoint's
//! facts are turned back into the derived state here, with the same
//! functions.

use std::collections::{BTreeMap, BTreeSet};

use rotation_events::{Envelope, EventData, InvalidEvent, Sector, Subject};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::SchemeLimits;
use super::cells::{Cell, Counters};
use super::counts::Total;
use super::facts::{Entity, Fact, Facts, Indexed, PersonFact, RotationFact};
use super::release::Releases;
use super::views::{PersonView, RotationView, employer_cells};
use crate::disclosure::{RecordKey, RecordKeySecret};

/// The entities whose facts one event changed.
#[derive(Debug, Default)]
pub(super) struct Touched {
    pub(super) employers: BTreeSet<Uuid>,
    pub(super) rotations: BTreeSet<Uuid>,
    pub(super) people: BTreeSet<Uuid>,
}

/// The other entities a rotation's facts name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Links {
    pub(super) employer: Option<Uuid>,
    pub(super) substitutes: BTreeSet<Uuid>,
}

impl Links {
    pub(super) fn is_empty(&self) -> bool {
        self.employer.is_none() && self.substitutes.is_empty()
    }
}

/// Everything derived from the facts: views, their sum, and the reverse
/// links that say whose views read whose facts. Never serialised; rebuilt
/// from the facts on load.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Derived {
    pub(super) counters: Counters,
    /// The sector each enrolled employer counts under.
    pub(super) employers: BTreeMap<Uuid, Sector>,
    pub(super) rotations: BTreeMap<Uuid, RotationView>,
    pub(super) people: BTreeMap<Uuid, PersonView>,
    pub(super) links: BTreeMap<Uuid, Links>,
    pub(super) rotations_by_employer: BTreeMap<Uuid, BTreeSet<Uuid>>,
    pub(super) rotations_by_substitute: BTreeMap<Uuid, BTreeSet<Uuid>>,
}

/// The serialised form of [`Partnership`]: its facts.
#[derive(Deserialize)]
pub(super) struct StoredPartnership {
    pub(super) employers: BTreeMap<Uuid, Facts<Sector>>,
    pub(super) rotations: BTreeMap<Uuid, Facts<RotationFact>>,
    pub(super) people: BTreeMap<Uuid, Facts<PersonFact>>,
    pub(super) events: BTreeMap<Uuid, Indexed>,
    #[serde(default)]
    pub(super) record_keys: BTreeMap<Uuid, RecordKey>,
    #[serde(default)]
    pub(super) releases: Releases,
    #[serde(default)]
    pub(super) limits: SchemeLimits,
}

/// One partnership's facts and what is derived from them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredPartnership")]
pub(super) struct Partnership {
    pub(super) employers: BTreeMap<Uuid, Facts<Sector>>,
    pub(super) rotations: BTreeMap<Uuid, Facts<RotationFact>>,
    pub(super) people: BTreeMap<Uuid, Facts<PersonFact>>,
    /// Every applied event that stated a fact or retracted one.
    pub(super) events: BTreeMap<Uuid, Indexed>,
    /// The record key of every employer, rotation and person, computed
    /// under the ledger's secret when the entity is first seen and kept,
    /// so that a checkpoint rebuilds the cell keys without the secret.
    pub(super) record_keys: BTreeMap<Uuid, RecordKey>,
    /// The board's releases of every table.
    pub(super) releases: Releases,
    /// The scheme-rule limits the flag cells are judged under, kept with
    /// the facts because the flags' releases were made under them.
    pub(super) limits: SchemeLimits,
    #[serde(skip)]
    pub(super) derived: Derived,
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
            record_keys: stored.record_keys,
            releases: stored.releases,
            limits: stored.limits,
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
        let Self {
            releases, derived, ..
        } = &mut partnership;
        releases.rebuild(&mut derived.counters);
        partnership
    }
}

impl Partnership {
    /// A partnership not seen before, its flags judged under `limits`.
    pub(super) fn new(limits: SchemeLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Judges the flags under other limits: every rotation's flag cells
    /// are counted again, and what changed since each release is worked
    /// out anew, so that the next release of a flag table is decided by
    /// the units that entered or left it.
    pub(super) fn set_limits(&mut self, limits: SchemeLimits) {
        if self.limits == limits {
            return;
        }
        self.limits = limits;
        let rotations: Vec<Uuid> = self.rotations.keys().copied().collect();
        for rotation in rotations {
            self.recompute_rotation(rotation);
        }
        let Self {
            releases, derived, ..
        } = self;
        releases.rebuild(&mut derived.counters);
    }

    pub(super) fn apply(
        &mut self,
        envelope: &Envelope,
        position: u64,
        secret: &RecordKeySecret,
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
        // Every entity whose view the event can add to gets its record key
        // now, the first time it is seen.
        let named = match (&fact, &envelope.subject) {
            (Fact::Rotation(RotationFact::SubstitutionStarted(start)), _) => Some(start.substitute),
            _ => None,
        };
        let subject = match &envelope.subject {
            Subject::Employer(id) | Subject::Rotation(id) | Subject::Person(id) => Some(*id),
            _ => None,
        };
        for id in subject.into_iter().chain(named) {
            self.record_keys
                .entry(id)
                .or_insert_with(|| secret.record_key(id));
        }
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
                let facts = self.people.entry(*id).or_default();
                if fact == PersonFact::Erased {
                    facts.forget_profiles();
                }
                facts.live.insert(position, fact);
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
            // The session is the person's next unit in the cell.
            let ordinal = view.mentoring_sessions;
            view.mentoring_sessions += 1;
            let key = self.record_keys.get(&person).copied().unwrap_or_default();
            self.derived
                .counters
                .add_from(Cell::Total(Total::MentoringSessions), ordinal, 1, key);
            return;
        }
        self.refresh(&touched);
    }

    /// Makes the event `id` live or not, and follows retraction chains: a
    /// retraction going live retracts its target, one going dead restores
    /// it (unless another live retraction names it). A retraction is
    /// honoured only for an event applied before it, so chains always run
    /// towards lower positions and end.
    pub(super) fn set_live(&mut self, id: Uuid, live: bool, touched: &mut Touched) {
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
    pub(super) fn refresh(&mut self, touched: &Touched) {
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
    pub(super) fn links_of(&self, rotation: Uuid) -> Links {
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

    pub(super) fn set_links(&mut self, rotation: Uuid, new: Links) {
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

    pub(super) fn recompute_employer(&mut self, employer: Uuid) {
        let new = self.sector_of(employer);
        let key = self.record_key(employer);
        let derived = &mut self.derived;
        let old = match new {
            Some(sector) => derived.employers.insert(employer, sector),
            None => derived.employers.remove(&employer),
        };
        for (cell, count) in old.into_iter().flat_map(employer_cells) {
            derived.counters.sub(cell, count, key);
        }
        for (cell, count) in new.into_iter().flat_map(employer_cells) {
            derived.counters.add(cell, count, key);
        }
    }

    pub(super) fn recompute_rotation(&mut self, rotation: Uuid) {
        let new = self.rotation_view(rotation);
        let key = self.record_key(rotation);
        let derived = &mut self.derived;
        if let Some(old) = derived.rotations.remove(&rotation) {
            for &(cell, count) in &old.cells {
                derived.counters.sub(cell, count, key);
            }
        }
        for &(cell, count) in &new.cells {
            derived.counters.add(cell, count, key);
        }
        if !new.is_empty() {
            derived.rotations.insert(rotation, new);
        }
    }

    pub(super) fn recompute_person(&mut self, person: Uuid) {
        let new = self.person_view(person);
        let key = self.record_key(person);
        let derived = &mut self.derived;
        if let Some(old) = derived.people.remove(&person) {
            old.cells(|cell, count| derived.counters.sub(cell, count, key));
        }
        new.cells(|cell, count| derived.counters.add(cell, count, key));
        if !new.is_empty() {
            derived.people.insert(person, new);
        }
    }
}

impl Partnership {
    /// The record key of an entity, kept since it was first seen; an
    /// entity never seen has none, and adds nothing under that key.
    pub(super) fn record_key(&self, id: Uuid) -> RecordKey {
        self.record_keys.get(&id).copied().unwrap_or_default()
    }
}

pub(super) fn unlink(index: &mut BTreeMap<Uuid, BTreeSet<Uuid>>, key: Uuid, rotation: Uuid) {
    if let Some(rotations) = index.get_mut(&key) {
        rotations.remove(&rotation);
        if rotations.is_empty() {
            index.remove(&key);
        }
    }
}

impl Partnership {
    /// Gives the registration at `position` of `person` its profile, opened
    /// again after a checkpoint was loaded, unless the person was erased
    /// since.
    pub(super) fn restore_profile(
        &mut self,
        person: Uuid,
        position: u64,
        profile: &rotation_events::Profile,
    ) {
        let Some(facts) = self.people.get_mut(&person) else {
            return;
        };
        let erased_since = facts
            .live
            .range(position..)
            .chain(facts.parked.range(position..))
            .any(|(_, fact)| *fact == PersonFact::Erased);
        if erased_since {
            return;
        }
        for fact in [
            facts.live.get_mut(&position),
            facts.parked.get_mut(&position),
        ]
        .into_iter()
        .flatten()
        {
            if let PersonFact::Registered(registration) = fact {
                registration.set_profile(Some(profile));
            }
        }
        self.recompute_person(person);
    }

    /// The positions of every registration, whose profiles a checkpoint
    /// does not hold.
    pub(super) fn registrations(&self) -> impl Iterator<Item = u64> + '_ {
        self.people.values().flat_map(|facts| {
            facts
                .live
                .iter()
                .chain(&facts.parked)
                .filter(|(_, fact)| matches!(fact, PersonFact::Registered(_)))
                .map(|(position, _)| *position)
        })
    }
}
