//! The simulator's promises, checked: the same seed gives the same bytes,
//! every line gets the answer it expects (from a cross-check of the
//! contract's rules and from the real append path), and the history shows
//! the documented proportions.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use rotation_events::{
    EndReason, Envelope, EventData, EventType, ReferredBy, Role, Sector, TrainingCompleted,
    TrainingLeft, YesNo,
};
use uuid::Uuid;

use rotation_events::ErrorCode;

use super::bad_lines::is_creating;
use super::{Expected, Scenario, Simulated, simulate};

fn scenario(partnerships: u32, jobseekers: u32, months: u32, invalid_rate: f64) -> Scenario {
    Scenario {
        partnerships,
        jobseekers,
        months,
        invalid_rate,
        ..Scenario::default()
    }
}

/// A moment just after the simulated period, as the ledger's clock.
fn after_period(scenario: &Scenario) -> DateTime<Utc> {
    let end = scenario.start + Months::new(scenario.months);
    end.and_time(chrono::NaiveTime::MIN).and_utc() + chrono::TimeDelta::hours(1)
}

/// The ledger's rules as the contract states them, reduced to what the
/// simulator needs to be checked against: a cross-check, independent of
/// the service's own implementation.
#[derive(Default)]
struct Rules {
    /// Event id to its content, for idempotency.
    ids: HashMap<Uuid, String>,
    streams: HashMap<String, Stream>,
    /// Employer id to partnership.
    employers: HashMap<Uuid, String>,
    persons: HashMap<Uuid, Person>,
    rotations: HashMap<Uuid, Rotation>,
    release_ids: HashSet<Uuid>,
    substitution_ids: HashSet<Uuid>,
}

struct Stream {
    partnership: String,
    version: u64,
    /// Event id to whether it is a retraction.
    events: HashMap<Uuid, bool>,
    retracted: HashSet<Uuid>,
}

struct Person {
    role: Role,
    employer: Option<Uuid>,
    eligible: bool,
    active_release: bool,
    active_substitution: bool,
}

struct Rotation {
    employer: Uuid,
    closed: bool,
    /// Release id to (employee, active, training ongoing).
    releases: HashMap<Uuid, (Uuid, bool, bool)>,
    /// Substitution id to (substitute, active).
    substitutions: HashMap<Uuid, (Uuid, bool)>,
}

impl Rules {
    fn append(&mut self, line: &str, now: DateTime<Utc>) -> Expected {
        match self.try_append(line, now) {
            Ok(expected) => expected,
            Err(code) => Expected::Rejected(code),
        }
    }

    fn try_append(&mut self, line: &str, now: DateTime<Utc>) -> Result<Expected, ErrorCode> {
        let envelope = Envelope::from_json(line.as_bytes()).map_err(|_| ErrorCode::InvalidEvent)?;
        envelope
            .check_time(now)
            .map_err(|_| ErrorCode::InvalidEvent)?;
        let content = envelope.to_value().to_string();
        if let Some(previous) = self.ids.get(&envelope.id) {
            return if *previous == content {
                Ok(Expected::Duplicate)
            } else {
                Err(ErrorCode::DuplicateIdConflict)
            };
        }
        let key = envelope.subject.to_string();
        let version = self.streams.get(&key).map_or(0, |s| s.version);
        if envelope.expectedversion.is_some_and(|v| v != version) {
            return Err(ErrorCode::VersionConflict);
        }
        let creating = is_creating(envelope.event_type);
        match self.streams.get(&key) {
            None if !creating => return Err(ErrorCode::UnknownStream),
            Some(_) if creating => return Err(ErrorCode::RuleViolation),
            Some(s) if s.partnership != envelope.partnership => {
                return Err(ErrorCode::RuleViolation);
            }
            _ => {}
        }
        let partnership_key = format!("partnership/{}", envelope.partnership);
        if envelope.event_type != EventType::PartnershipRegistered
            && !self.streams.contains_key(&partnership_key)
        {
            return Err(ErrorCode::RuleViolation);
        }
        let data = envelope.data().map_err(|_| ErrorCode::InvalidEvent)?;
        self.apply(&envelope, data)?;
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            partnership: envelope.partnership.clone(),
            version: 0,
            events: HashMap::new(),
            retracted: HashSet::new(),
        });
        stream.version += 1;
        stream
            .events
            .insert(envelope.id, envelope.event_type == EventType::Retracted);
        self.ids.insert(envelope.id, content);
        Ok(Expected::Accepted)
    }

    /// Checks the type's rules and, if they hold, applies the event.
    fn apply(&mut self, e: &Envelope, data: EventData) -> Result<(), ErrorCode> {
        let subject = e.subject.uuid();
        let fail = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ErrorCode::RuleViolation)
            }
        };
        let same_partnership = |employers: &HashMap<Uuid, String>, id: &Uuid| {
            employers.get(id).is_some_and(|p| *p == e.partnership)
        };
        match data {
            EventData::PartnershipRegistered(_) => {}
            EventData::EmployerEnrolled(_) => {
                self.employers
                    .insert(subject.unwrap(), e.partnership.clone());
            }
            EventData::ParticipantRegistered(d) => {
                if d.role == Role::Employee {
                    fail(same_partnership(&self.employers, &d.employer.unwrap()))?;
                }
                self.persons.insert(
                    subject.unwrap(),
                    Person {
                        role: d.role,
                        employer: d.employer,
                        eligible: false,
                        active_release: false,
                        active_substitution: false,
                    },
                );
            }
            EventData::JobseekerReferred(_)
            | EventData::PreparationStarted(_)
            | EventData::PreparationCompleted(_)
            | EventData::PreparationLeft(_)
            | EventData::MentoringSession(_) => {
                fail(self.persons[&subject.unwrap()].role == Role::Jobseeker)?;
            }
            EventData::EligibilityAssessed(d) => {
                let person = self.persons.get_mut(&subject.unwrap()).unwrap();
                fail(person.role == Role::Jobseeker)?;
                person.eligible = d.eligible;
            }
            EventData::RotationAgreed(d) => {
                fail(same_partnership(&self.employers, &d.employer))?;
                self.rotations.insert(
                    subject.unwrap(),
                    Rotation {
                        employer: d.employer,
                        closed: false,
                        releases: HashMap::new(),
                        substitutions: HashMap::new(),
                    },
                );
            }
            EventData::PersonProgressed(d) => {
                if let Some(employer) = d.employer {
                    fail(self.employers.contains_key(&employer))?;
                }
            }
            EventData::OutcomeObserved(_) => {}
            EventData::Retracted(d) => {
                let stream = &self.streams[&e.subject.to_string()];
                let retractable = stream.events.get(&d.event_id) == Some(&false)
                    && !stream.retracted.contains(&d.event_id);
                fail(retractable)?;
                let stream = self.streams.get_mut(&e.subject.to_string()).unwrap();
                stream.retracted.insert(d.event_id);
            }
            rotation_event => return self.apply_to_rotation(subject.unwrap(), rotation_event),
        }
        Ok(())
    }

    fn apply_to_rotation(&mut self, id: Uuid, data: EventData) -> Result<(), ErrorCode> {
        let fail = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ErrorCode::RuleViolation)
            }
        };
        let rotation = self.rotations.get_mut(&id).unwrap();
        fail(!rotation.closed)?;
        match data {
            EventData::ReleaseStarted(d) => {
                let employee = self.persons.get_mut(&d.employee);
                let employee = employee.ok_or(ErrorCode::RuleViolation)?;
                fail(employee.role == Role::Employee)?;
                fail(employee.employer == Some(rotation.employer))?;
                fail(!employee.active_release)?;
                fail(self.release_ids.insert(d.release_id))?;
                employee.active_release = true;
                rotation
                    .releases
                    .insert(d.release_id, (d.employee, true, true));
            }
            EventData::SubstitutionStarted(d) => {
                let substitute = self.persons.get_mut(&d.substitute);
                let substitute = substitute.ok_or(ErrorCode::RuleViolation)?;
                fail(substitute.role == Role::Jobseeker && substitute.eligible)?;
                fail(!substitute.active_substitution)?;
                for release in &d.covers {
                    fail(rotation.releases.get(release).is_some_and(|r| r.1))?;
                }
                fail(self.substitution_ids.insert(d.substitution_id))?;
                substitute.active_substitution = true;
                rotation
                    .substitutions
                    .insert(d.substitution_id, (d.substitute, true));
            }
            EventData::TrainingCompleted(TrainingCompleted { release_id, .. })
            | EventData::TrainingLeft(TrainingLeft { release_id, .. }) => {
                let release = rotation.releases.get_mut(&release_id);
                let release = release.ok_or(ErrorCode::RuleViolation)?;
                fail(release.2)?;
                release.2 = false;
            }
            EventData::ReleaseEnded(d) => {
                let release = rotation.releases.get_mut(&d.release_id);
                let release = release.ok_or(ErrorCode::RuleViolation)?;
                fail(release.1)?;
                release.1 = false;
                self.persons.get_mut(&release.0).unwrap().active_release = false;
            }
            EventData::SubstitutionEnded(d) => {
                let substitution = rotation.substitutions.get_mut(&d.substitution_id);
                let substitution = substitution.ok_or(ErrorCode::RuleViolation)?;
                fail(substitution.1)?;
                substitution.1 = false;
                self.persons
                    .get_mut(&substitution.0)
                    .unwrap()
                    .active_substitution = false;
            }
            EventData::RotationClosed(_) => rotation.closed = true,
            other => panic!("not a rotation event: {other:?}"),
        }
        Ok(())
    }
}

fn check(scenario: &Scenario) -> Vec<(Simulated, Expected)> {
    let now = after_period(scenario);
    let mut rules = Rules::default();
    simulate(scenario)
        .map(|item| {
            let answer = rules.append(&item.line, now);
            (item, answer)
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_lines_and_another_seed_others() {
    let base = scenario(2, 200, 12, 0.02);
    let lines = |s: &Scenario| simulate(s).map(|i| i.line).collect::<Vec<_>>();
    let first = lines(&base);
    assert!(first.len() > 2_000, "{} lines", first.len());
    assert_eq!(first, lines(&base));
    let other = lines(&Scenario { seed: 2, ..base });
    assert_ne!(first, other);
}

#[test]
fn the_good_history_is_the_same_whatever_the_invalid_rate() {
    let good = |rate: f64| {
        simulate(&scenario(2, 150, 12, rate))
            .filter(|i| i.expected == Expected::Accepted)
            .map(|i| i.line)
            .collect::<Vec<_>>()
    };
    assert_eq!(good(0.0), good(0.1));
}

#[test]
fn every_good_line_is_an_envelope_within_the_period_and_accepted_in_order() {
    let s = scenario(3, 600, 24, 0.0);
    let end = s.start + Months::new(s.months);
    let results = check(&s);
    for (item, answer) in &results {
        assert_eq!(item.expected, Expected::Accepted);
        let envelope = Envelope::from_json(item.line.as_bytes()).unwrap();
        assert!(envelope.date() < end, "{} is after the period", item.line);
        assert!(
            envelope.date() >= s.start,
            "{} is before the period",
            item.line
        );
        assert_eq!(*answer, Expected::Accepted, "{}", item.line);
    }
}

#[test]
fn every_line_gets_the_answer_it_expects() {
    let results = check(&scenario(2, 600, 24, 0.05));
    let mut by_answer: HashMap<String, usize> = HashMap::new();
    for (item, answer) in &results {
        assert_eq!(item.expected, *answer, "{}", item.line);
        *by_answer.entry(format!("{answer:?}")).or_default() += 1;
    }
    println!("{by_answer:?}");
    for code in [
        ErrorCode::InvalidEvent,
        ErrorCode::UnknownStream,
        ErrorCode::RuleViolation,
        ErrorCode::DuplicateIdConflict,
        ErrorCode::VersionConflict,
    ] {
        let key = format!("{:?}", Expected::Rejected(code));
        assert!(
            by_answer.get(&key).is_some_and(|n| *n > 5),
            "too few {code}"
        );
    }
    assert!(by_answer[&format!("{:?}", Expected::Duplicate)] > 5);
    let bad = results
        .iter()
        .filter(|(i, _)| i.expected != Expected::Accepted)
        .count();
    let rate = bad as f64 / (results.len() - bad) as f64;
    assert!(
        (0.04..0.06).contains(&rate),
        "bad lines per good event: {rate}"
    );
}

/// What the history says about the documented proportions.
#[derive(Default, Debug)]
struct Measured {
    events: usize,
    jobseekers: usize,
    eligible_first: (usize, usize),
    short_unemployed: (usize, usize),
    disability: (usize, usize),
    lone_parent: (usize, usize),
    age_16_24: (usize, usize),
    age_50_plus: (usize, usize),
    referred_by_jobcentre: (usize, usize),
    preparation_left: (usize, usize),
    training_completed: (usize, usize),
    covers_more_than_one: (usize, usize),
    not_hour_for_hour: (usize, usize),
    longer_than_26_weeks: (usize, usize),
    ended: usize,
    ended_by: HashMap<EndReason, usize>,
    care_employers: (usize, usize),
    rotations_closed: usize,
    rotations: usize,
    outcomes: usize,
    progressions: usize,
    retractions: usize,
    late: usize,
}

fn share((part, whole): (usize, usize)) -> f64 {
    part as f64 / whole.max(1) as f64
}

fn measure(s: &Scenario) -> Measured {
    let mut m = Measured::default();
    let mut assessed = HashSet::new();
    let mut release_hours: HashMap<Uuid, f64> = HashMap::new();
    let mut substitution_start: HashMap<Uuid, NaiveDate> = HashMap::new();
    let mut latest = DateTime::<Utc>::MIN_UTC;
    let count = |flag: bool, tally: &mut (usize, usize)| {
        tally.0 += usize::from(flag);
        tally.1 += 1;
    };
    for item in simulate(s) {
        let e = Envelope::from_json(item.line.as_bytes()).unwrap();
        m.events += 1;
        if e.time + chrono::TimeDelta::days(3) < latest {
            m.late += 1;
        }
        latest = latest.max(e.time);
        match e.data().unwrap() {
            EventData::ParticipantRegistered(d) if d.role == Role::Jobseeker => {
                m.jobseekers += 1;
                let since = d.unemployed_since.unwrap();
                count((e.date() - since).num_weeks() < 26, &mut m.short_unemployed);
                let Some(profile) = d.profile else { continue };
                if let Some(disability) = profile.disability {
                    count(disability == YesNo::Yes, &mut m.disability);
                }
                if let Some(lone) = profile.lone_parent {
                    count(lone, &mut m.lone_parent);
                }
                if let Some(year) = profile.birth_year {
                    let age = e.date().year() - year;
                    count(age <= 24, &mut m.age_16_24);
                    count(age >= 50, &mut m.age_50_plus);
                }
            }
            EventData::JobseekerReferred(d) => {
                count(
                    d.referred_by == ReferredBy::Jobcentre,
                    &mut m.referred_by_jobcentre,
                );
            }
            EventData::EligibilityAssessed(d) if assessed.insert(e.subject.clone()) => {
                count(d.eligible, &mut m.eligible_first);
            }
            EventData::PreparationLeft(_) => count(true, &mut m.preparation_left),
            EventData::PreparationCompleted(_) => count(false, &mut m.preparation_left),
            EventData::EmployerEnrolled(d) => count(d.sector == Sector::Q, &mut m.care_employers),
            EventData::RotationAgreed(_) => m.rotations += 1,
            EventData::RotationClosed(_) => m.rotations_closed += 1,
            EventData::ReleaseStarted(d) => {
                release_hours.insert(d.release_id, d.course.hours_per_week);
            }
            EventData::TrainingCompleted(_) => count(true, &mut m.training_completed),
            EventData::TrainingLeft(_) => count(false, &mut m.training_completed),
            EventData::SubstitutionStarted(d) => {
                count(d.covers.len() > 1, &mut m.covers_more_than_one);
                let covered: f64 = d.covers.iter().map(|r| release_hours[r]).sum();
                count(covered != d.hours_per_week, &mut m.not_hour_for_hour);
                substitution_start.insert(d.substitution_id, e.date());
            }
            EventData::SubstitutionEnded(d) => {
                m.ended += 1;
                *m.ended_by.entry(d.reason).or_default() += 1;
                let days = (e.date() - substitution_start[&d.substitution_id]).num_days();
                count(days > 182, &mut m.longer_than_26_weeks);
            }
            EventData::OutcomeObserved(_) => m.outcomes += 1,
            EventData::PersonProgressed(_) => m.progressions += 1,
            EventData::Retracted(_) => m.retractions += 1,
            _ => {}
        }
    }
    m
}

#[test]
fn proportions_are_roughly_as_documented() {
    let s = scenario(2, 2_000, 24, 0.0);
    let m = measure(&s);
    let per_jobseeker = m.events as f64 / m.jobseekers as f64;
    let ended_share =
        |reason| m.ended_by.get(&reason).copied().unwrap_or(0) as f64 / m.ended as f64;
    let report = [
        ("events per jobseeker", per_jobseeker),
        ("eligible at first assessment", share(m.eligible_first)),
        ("unemployed under 26 weeks", share(m.short_unemployed)),
        ("disability", share(m.disability)),
        ("lone parent", share(m.lone_parent)),
        ("aged 16-24", share(m.age_16_24)),
        ("aged 50+", share(m.age_50_plus)),
        ("referred by the jobcentre", share(m.referred_by_jobcentre)),
        ("preparation left", share(m.preparation_left)),
        ("training completed", share(m.training_completed)),
        (
            "covers more than one release",
            share(m.covers_more_than_one),
        ),
        ("not hour for hour", share(m.not_hour_for_hour)),
        ("substitution over 26 weeks", share(m.longer_than_26_weeks)),
        ("ended completed", ended_share(EndReason::Completed)),
        (
            "ended hired by employer",
            ended_share(EndReason::HiredByEmployer),
        ),
        ("ended left early", ended_share(EndReason::LeftEarly)),
        ("ended dismissed", ended_share(EndReason::Dismissed)),
        ("care employers", share(m.care_employers)),
        (
            "rotations closed",
            m.rotations_closed as f64 / m.rotations as f64,
        ),
        (
            "outcomes per ended substitution",
            m.outcomes as f64 / m.ended as f64,
        ),
        (
            "progressions per ended substitution",
            m.progressions as f64 / m.ended as f64,
        ),
        (
            "retractions per event",
            m.retractions as f64 / m.events as f64,
        ),
        ("late reports per event", m.late as f64 / m.events as f64),
    ];
    println!("{} events for {} jobseekers", m.events, m.jobseekers);
    for (name, value) in report {
        println!("{name:>36}: {value:.3}");
    }
    assert_eq!(m.jobseekers, 2_000);
    let within = |value: f64, low: f64, high: f64, name: &str| {
        assert!(
            (low..=high).contains(&value),
            "{name}: {value:.3} outside {low}..{high}"
        );
    };
    within(per_jobseeker, 22.0, 38.0, "events per jobseeker");
    within(share(m.eligible_first), 0.81, 0.89, "eligible");
    within(
        share(m.short_unemployed),
        0.09,
        0.15,
        "unemployed under 26 weeks",
    );
    within(share(m.disability), 0.16, 0.24, "disability");
    within(share(m.lone_parent), 0.07, 0.13, "lone parent");
    within(share(m.preparation_left), 0.07, 0.13, "preparation left");
    within(
        share(m.training_completed),
        0.81,
        0.89,
        "training completed",
    );
    within(
        share(m.covers_more_than_one),
        0.10,
        0.20,
        "covers more than one",
    );
    within(share(m.not_hour_for_hour), 0.05, 0.11, "not hour for hour");
    within(share(m.longer_than_26_weeks), 0.01, 0.10, "over 26 weeks");
    within(ended_share(EndReason::HiredByEmployer), 0.28, 0.40, "hired");
    within(ended_share(EndReason::Completed), 0.40, 0.55, "completed");
    within(ended_share(EndReason::Dismissed), 0.01, 0.08, "dismissed");
    within(share(m.care_employers), 0.18, 0.36, "care employers");
    within(
        m.retractions as f64 / m.events as f64,
        0.0005,
        0.004,
        "retractions",
    );
    assert!(m.late > 0 && m.rotations_closed > 0 && m.outcomes > 0);
}

/// The promise itself: the real append path gives every line the
/// answer the simulator expects, good lines and bad.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_gives_every_line_the_expected_answer() {
    use crate::auth::Caller;
    use crate::ledger::{Ledger, LedgerOptions, ReceiptStatus, Submission};

    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    let items: Vec<Simulated> = simulate(&scenario(3, 900, 24, 0.05)).collect();
    for chunk in items.chunks(1_000) {
        let submissions = chunk
            .iter()
            .map(|item| {
                let body = item.line.clone().into_bytes();
                Submission::from_json(body, "simulate-test", Caller::operator())
            })
            .collect();
        let outcomes = ledger.submit(submissions).await.unwrap();
        for (item, outcome) in chunk.iter().zip(outcomes) {
            let answer = match (&outcome.rejection, &outcome.receipts[..]) {
                (Some(violation), _) => format!("rejected {}", violation.code),
                (None, [receipt]) if receipt.status == ReceiptStatus::Duplicate => {
                    "duplicate".to_owned()
                }
                (None, [receipt]) if receipt.status == ReceiptStatus::Accepted => {
                    "accepted".to_owned()
                }
                other => panic!("an unexpected outcome {other:?}"),
            };
            let expected = match item.expected {
                Expected::Accepted => "accepted".to_owned(),
                Expected::Duplicate => "duplicate".to_owned(),
                Expected::Rejected(code) => format!("rejected {code}"),
            };
            assert_eq!(answer, expected, "{outcome:?} for {}", item.line);
        }
    }
    ledger.close();
}

/// Prints the generation rate; `cargo test --release --lib simulate --
/// --nocapture` gives the figure that matters.
#[test]
fn generation_rate() {
    let s = scenario(2, 5_000, 24, 0.0);
    let started = Instant::now();
    let (mut events, mut bytes) = (0usize, 0usize);
    for item in simulate(&s) {
        events += 1;
        bytes += item.line.len() + 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{events} events ({:.1} MB) in {seconds:.2} s: {:.0} events/s",
        bytes as f64 / 1e6,
        events as f64 / seconds
    );
    assert!(events > 100_000);
}
