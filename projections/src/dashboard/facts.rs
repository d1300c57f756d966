//! What the fold keeps: the facts each event states about an employer,
//! rotation or person, keyed by the event's position, and the index by
//! event id through which a retraction finds the fact it parks.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rotation_events::{
    EndReason, Ethnicity, EventData, ProgressionKind, Sector, Sex, Status, YesNo,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What one registration says that the dashboard uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Registration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) unemployed_since: Option<NaiveDate>,
    // The profile's answers are kept in memory only: a checkpoint holds
    // nothing derived from a profile (contract section 9), and the
    // projector opens the profiles again when it loads one
    // ([`super::Dashboards::restore_profile`]).
    #[serde(skip)]
    pub(super) birth_year: Option<i32>,
    #[serde(skip)]
    pub(super) sex: Option<Sex>,
    #[serde(skip)]
    pub(super) ethnicity: Option<Ethnicity>,
    #[serde(skip)]
    pub(super) disability: Option<YesNo>,
    #[serde(skip)]
    pub(super) lone_parent: Option<bool>,
}

impl Registration {
    /// Sets the profile's answers, or forgets them.
    pub(super) fn set_profile(&mut self, profile: Option<&rotation_events::Profile>) {
        self.birth_year = profile.and_then(|p| p.birth_year);
        self.sex = profile.and_then(|p| p.sex);
        self.ethnicity = profile.and_then(|p| p.ethnicity);
        self.disability = profile.and_then(|p| p.disability);
        self.lone_parent = profile.and_then(|p| p.lone_parent);
    }
}

/// A fact from a person's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub(super) enum PersonFact {
    Registered(Registration),
    /// The person's profile was erased: every registration before it
    /// counts as not recorded.
    Erased,
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
pub(super) struct ReleaseStart {
    pub(super) release: Uuid,
    /// The course's weekly hours, in thousandths.
    pub(super) hours_milli: u64,
    pub(super) date: NaiveDate,
}

/// A started substitution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SubstitutionStart {
    pub(super) substitution: Uuid,
    pub(super) substitute: Uuid,
    pub(super) covers: Vec<Uuid>,
    /// The substitute's weekly hours, in thousandths.
    pub(super) hours_milli: u64,
    pub(super) planned_end: NaiveDate,
    pub(super) date: NaiveDate,
}

/// A fact from a rotation's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub(super) enum RotationFact {
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
pub(super) enum Fact {
    Employer(Sector),
    Rotation(RotationFact),
    Person(PersonFact),
    Retraction(Uuid),
}

impl Fact {
    /// The fact an event states; `None` for events no figure reads.
    pub(super) fn of(data: EventData, date: NaiveDate) -> Option<Self> {
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
            D::PersonErased(_) => Fact::Person(PersonFact::Erased),
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
pub(super) fn milli(hours: f64) -> u64 {
    // Hours are validated at intake to lie within 0..=168; the clamp only
    // keeps a malformed value from wrapping.
    (hours.clamp(0.0, 168.0) * 1000.0).round() as u64
}

/// The facts of one entity, each keyed by the position of the event that
/// stated it. Retracted facts are parked rather than dropped, so that
/// retracting the retraction brings them back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "F: Deserialize<'de>"))]
pub(super) struct Facts<F> {
    pub(super) live: BTreeMap<u64, F>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) parked: BTreeMap<u64, F>,
}

impl Facts<PersonFact> {
    /// Forgets the profile of every registration so far (an erasure).
    pub(super) fn forget_profiles(&mut self) {
        for fact in self.live.values_mut().chain(self.parked.values_mut()) {
            if let PersonFact::Registered(registration) = fact {
                registration.set_profile(None);
            }
        }
    }
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
    pub(super) fn set_live(&mut self, position: u64, live: bool) {
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
pub(super) enum Entity {
    Employer(Uuid),
    Rotation(Uuid),
    Person(Uuid),
    /// A retraction, naming the event it retracts.
    Retraction(Uuid),
}

/// One applied event, by id, so that a retraction can find its fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Indexed {
    pub(super) entity: Entity,
    pub(super) position: u64,
    /// The live retractions that name this event; it is live while there
    /// are none.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(super) retracted_by: BTreeSet<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_kept_in_thousandths() {
        assert_eq!(milli(37.5), 37_500);
        assert_eq!(milli(7.3333), 7_333);
        assert_eq!(milli(-1.0), 0);
    }
}
