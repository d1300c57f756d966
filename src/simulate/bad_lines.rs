//! The bad lines: each derived from the good event just written, each
//! refused by exactly one rule (or answered `duplicate`), none changing what
//! the ledger holds.

use chrono::Days;
use rand::Rng;
use rotation_events::{
    EventData, EventType, Mentor, MentoringSession, ReleaseStarted, Retracted, Role,
    RotationAgreed, Subject, SubstitutionStarted,
};
use serde_json::Value;
use uuid::{Builder, Uuid};

use super::calendar::{DAY, HOUR, Time};
use super::emission::{Draft, is_leaf};
use super::reference::Service;
use super::{Expected, Simulated, Simulator, choose};
use rotation_events::ErrorCode;

impl Simulator {
    /// One line the ledger must refuse (or answer `duplicate`), derived from
    /// the good event just written. Each kind is built so that exactly one
    /// rule fails, whatever order the ledger checks them in.
    pub(super) fn bad_line(
        &mut self,
        draft: &Draft,
        id: Uuid,
        time: Time,
        line: &str,
    ) -> Simulated {
        #[derive(Clone, Copy)]
        enum Kind {
            NotJson,
            BrokenAttribute,
            UnknownType,
            MisfitSubject,
            EndBeforeStart,
            FarFuture,
            UnknownStream,
            VersionConflict,
            IdConflict,
            Rule,
            Duplicate,
        }
        let event_type = draft.data.event_type();
        let mut kinds = vec![
            Kind::NotJson,
            Kind::BrokenAttribute,
            Kind::UnknownType,
            Kind::FarFuture,
            Kind::UnknownStream,
            Kind::Rule,
            Kind::Rule,
            Kind::Rule,
            Kind::Duplicate,
        ];
        if event_type.subject_kind().is_some() {
            kinds.push(Kind::MisfitSubject);
        }
        if matches!(
            event_type,
            EventType::RotationAgreed | EventType::ReleaseStarted | EventType::SubstitutionStarted
        ) {
            kinds.push(Kind::EndBeforeStart);
        }
        if is_leaf(event_type) {
            kinds.extend([Kind::VersionConflict, Kind::IdConflict]);
        }
        let kind = *choose(&mut self.bad_rng, &kinds);
        let fresh = Self::event_id(&mut self.bad_rng, self.start_unix, time);
        let rejected = |line: String, code: ErrorCode| Simulated {
            line,
            expected: Expected::Rejected(code),
        };
        match kind {
            Kind::Duplicate => Simulated {
                line: line.to_owned(),
                expected: Expected::Duplicate,
            },
            Kind::NotJson => {
                // A prefix of a JSON object lacks its closing brace, so it
                // is never JSON: a write cut short.
                let mut cut = self.bad_rng.random_range(1..line.len());
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                rejected(line[..cut].to_owned(), ErrorCode::InvalidEvent)
            }
            Kind::BrokenAttribute => {
                let good = self.render(draft, fresh, time);
                let choice = self.bad_rng.random_range(0..8);
                let broken = mutate(&good, |event| match choice {
                    0 => drop(event.remove("time")),
                    1 => drop(event.remove("source")),
                    2 => drop(event.remove("subject")),
                    3 => drop(event.remove("data")),
                    4 => drop(event.remove("partnership")),
                    5 => drop(event.insert("time".into(), Value::from(time))),
                    6 => drop(event.insert("specversion".into(), Value::from("0.3"))),
                    _ => drop(event.insert("data".into(), Value::from("see attachment"))),
                });
                rejected(broken, ErrorCode::InvalidEvent)
            }
            Kind::UnknownType => {
                let good = self.render(draft, fresh, time);
                let broken = mutate(&good, |event| {
                    event.insert("type".into(), Value::from("jobrotation.rotation.paused"));
                });
                rejected(broken, ErrorCode::InvalidEvent)
            }
            Kind::MisfitSubject => {
                let uuid = draft.subject.uuid().unwrap_or(fresh);
                let subject = match draft.subject {
                    Subject::Person(_) => Subject::Employer(uuid),
                    _ => Subject::Person(uuid),
                };
                let copy = Draft {
                    subject,
                    expected_version: None,
                    ..draft.clone()
                };
                rejected(self.render(&copy, fresh, time), ErrorCode::InvalidEvent)
            }
            Kind::EndBeforeStart => {
                let date = self.date(time.div_euclid(DAY));
                let week_before = date - Days::new(7);
                let data = match &draft.data {
                    EventData::RotationAgreed(d) => EventData::RotationAgreed(RotationAgreed {
                        planned_end: d.planned_start - Days::new(1),
                        ..d.clone()
                    }),
                    EventData::ReleaseStarted(d) => EventData::ReleaseStarted(ReleaseStarted {
                        planned_end: week_before,
                        ..d.clone()
                    }),
                    EventData::SubstitutionStarted(d) => {
                        EventData::SubstitutionStarted(SubstitutionStarted {
                            planned_end: week_before,
                            ..d.clone()
                        })
                    }
                    other => other.clone(),
                };
                let copy = Draft {
                    data,
                    expected_version: None,
                    ..draft.clone()
                };
                rejected(self.render(&copy, fresh, time), ErrorCode::InvalidEvent)
            }
            Kind::FarFuture => {
                let copy = Draft {
                    expected_version: None,
                    ..draft.clone()
                };
                rejected(
                    self.render(&copy, fresh, time + 36_525 * DAY),
                    ErrorCode::InvalidEvent,
                )
            }
            Kind::UnknownStream => {
                let stream = Builder::from_random_bytes(self.bad_rng.random()).into_uuid();
                let creating = is_creating(event_type);
                let copy = match draft.subject {
                    Subject::Person(_) if !creating => Draft {
                        subject: Subject::Person(stream),
                        expected_version: None,
                        ..draft.clone()
                    },
                    Subject::Rotation(_) if !creating => Draft {
                        subject: Subject::Rotation(stream),
                        expected_version: None,
                        ..draft.clone()
                    },
                    // A creating event would create its stream, so the
                    // unknown stream is a mentoring session for nobody.
                    _ => Draft {
                        partnership: draft.partnership,
                        source: Service::College,
                        subject: Subject::Person(stream),
                        expected_version: None,
                        correlation: None,
                        data: EventData::MentoringSession(MentoringSession {
                            minutes: 60,
                            mentor: Mentor::Provider,
                        }),
                    },
                };
                rejected(self.render(&copy, fresh, time), ErrorCode::UnknownStream)
            }
            Kind::VersionConflict => {
                let expected = *choose(&mut self.bad_rng, &[0, 1_000_000]);
                let copy = Draft {
                    expected_version: Some(expected),
                    ..draft.clone()
                };
                rejected(self.render(&copy, fresh, time), ErrorCode::VersionConflict)
            }
            Kind::IdConflict => {
                // The same id, an hour later: a publisher that reused an id.
                rejected(
                    self.render(draft, id, time + HOUR),
                    ErrorCode::DuplicateIdConflict,
                )
            }
            Kind::Rule => {
                let copy = self.rule_violation(draft);
                rejected(self.render(&copy, fresh, time), ErrorCode::RuleViolation)
            }
        }
    }

    /// A copy of `draft` that breaks one reference or lifecycle rule, and
    /// only that one.
    fn rule_violation(&mut self, draft: &Draft) -> Draft {
        let rng = &mut self.bad_rng;
        let mut copy = Draft {
            expected_version: None,
            ..draft.clone()
        };
        let coin = rng.random_bool(0.5);
        let fresh = Builder::from_random_bytes(rng.random()).into_uuid();
        let partnerships = self.partnerships.len();
        match &mut copy.data {
            // A second active release for the same employee.
            EventData::ReleaseStarted(d) => d.release_id = fresh,
            EventData::SubstitutionStarted(d) => {
                d.substitution_id = fresh;
                let refused = &self.partnerships[draft.partnership].refused;
                if coin && !refused.is_empty() {
                    // A substitute whose latest assessment refused them.
                    d.substitute = refused[rng.random_range(0..refused.len())];
                }
                // Otherwise: a second active substitution for the same person.
            }
            // Ending, completing or leaving twice; closing twice.
            EventData::TrainingCompleted(_)
            | EventData::TrainingLeft(_)
            | EventData::ReleaseEnded(_)
            | EventData::SubstitutionEnded(_)
            | EventData::RotationClosed(_)
            // Retracting what is already retracted.
            | EventData::Retracted(_) => {}
            // A progression with an employer that never enrolled.
            EventData::PersonProgressed(d) if coin => d.employer = Some(fresh),
            // A jobseeker event for an employee.
            EventData::ParticipantRegistered(d) if coin && d.role == Role::Employee => {
                copy.data = EventData::MentoringSession(MentoringSession {
                    minutes: 45,
                    mentor: Mentor::Employer,
                });
            }
            // A creating event for a stream that exists.
            EventData::PartnershipRegistered(_)
            | EventData::EmployerEnrolled(_)
            | EventData::ParticipantRegistered(_)
            | EventData::RotationAgreed(_) => {}
            // A person's event under another partnership than the person's.
            EventData::MentoringSession(_) | EventData::OutcomeObserved(_)
                if coin && partnerships > 1 =>
            {
                copy.partnership = (draft.partnership + 1) % partnerships;
                copy.source = Service::Board;
            }
            // Retracting an event that does not exist.
            _ => {
                copy.data = EventData::Retracted(Retracted {
                    event_id: fresh,
                    reason: "entered in error".to_owned(),
                });
            }
        }
        copy
    }
}

pub(super) fn is_creating(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::PartnershipRegistered
            | EventType::EmployerEnrolled
            | EventType::ParticipantRegistered
            | EventType::RotationAgreed
    )
}

fn mutate(line: &str, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut value: Value = serde_json::from_str(line).expect("a rendered event is JSON");
    if let Value::Object(event) = &mut value {
        change(event);
    }
    value.to_string()
}
