//! Placements: one substitute covering one or more releases in one
//! rotation, from the rotation's agreement to the follow-ups of everyone
//! involved, and the rotation's close when it stays idle.

use chrono::{Datelike, NaiveDate};
use rand::Rng;
use rotation_events::{
    Course, EndReason, EventData, Mentor, MentoringSession, ObservationSource, OutcomeObserved,
    ParticipantRegistered, PersonProgressed, Profile, ProgressionKind, ReleaseEnded,
    ReleaseStarted, Role, RotationAgreed, RotationClosed, Sector, Status, Subject,
    SubstitutionEnded, SubstitutionStarted, TrainingCompleted, TrainingLeft,
};
use uuid::Uuid;

use super::calendar::{DAY, HOUR, MINUTE, Time, fresh_id};
use super::emission::Draft;
use super::partnerships::RotationSlot;
use super::proportions::*;
use super::queue::{Agenda, Thread, agenda};
use super::reference::{COURSES, Deliverer, Service, TRAINING_LEFT_REASONS};
use super::{Simulator, choose, pick, present};

/// One substitute covering one or more releases in one rotation, and what
/// follows for the people involved.
pub(super) struct Placement {
    partnership: usize,
    rotation_key: u64,
    generation: u32,
    rotation: Uuid,
    employer: usize,
    substitution: Uuid,
    substitute: Uuid,
    hours: f64,
    planned_end: NaiveDate,
    reason: EndReason,
    releases: Vec<ReleasePlan>,
    /// The substitute's progression after the placement, and when.
    job: Option<(ProgressionKind, Time)>,
    pub(super) agenda: Agenda<PlacementStep>,
}

struct ReleasePlan {
    id: Uuid,
    employee: Uuid,
    course: usize,
    hours: f64,
    planned_end: NaiveDate,
    /// `None` when completed, else the reason for leaving.
    left: Option<&'static str>,
    qualification: bool,
}

pub(super) enum PlacementStep {
    RegisterEmployee(usize),
    ReleaseStarted(usize),
    SubstitutionStarted,
    TrainingEnded(usize),
    ReleaseEnded(usize),
    SubstitutionEnded,
    Mentoring,
    Idle,
    CloseIfIdle,
    SubstituteProgressed,
    /// A qualification gained during the placement (e.g. the Care Certificate).
    SubstituteQualified,
    Outcome,
    /// The employer's report that a released employee is still in work.
    EmployeeOutcome(usize),
    EmployeeProgressed(usize, ProgressionKind),
    Plan {
        start_day: i64,
    },
}

impl Simulator {
    /// Agrees a placement for `substitute`: takes up an idle rotation or
    /// agrees a new one (enrolling its employer if need be), and starts the
    /// placement's thread.
    pub(super) fn plan_placement(
        &mut self,
        p: usize,
        substitute: Uuid,
        time: Time,
        start_day: i64,
    ) {
        let start_day = self.weekday_on_or_after(start_day.max(time.div_euclid(DAY) + 14));
        let partnership = &mut self.partnerships[p];
        let reuse = !partnership.idle.is_empty() && self.rng.random_bool(ROTATION_REUSED);
        let (rotation_key, rotation, employer, generation) = if reuse {
            let key = partnership
                .idle
                .swap_remove(self.rng.random_range(0..partnership.idle.len()));
            let slot = partnership
                .rotations
                .get_mut(&key)
                .expect("an idle rotation has a slot");
            slot.generation += 1;
            slot.idle = false;
            (key, slot.id, slot.employer, slot.generation)
        } else {
            let employer = self.employer_for_rotation(p, time);
            let rotation = fresh_id(&mut self.rng);
            let partnership = &mut self.partnerships[p];
            let key = partnership.next_rotation;
            partnership.next_rotation += 1;
            partnership.rotations.insert(
                key,
                RotationSlot {
                    id: rotation,
                    employer,
                    generation: 0,
                    idle: false,
                },
            );
            let agreed = time + self.rng.random_range(MINUTE..30 * MINUTE);
            let data = EventData::RotationAgreed(RotationAgreed {
                employer: self.partnerships[p].employers[employer].id,
                planned_start: self.date(start_day),
                planned_end: self.date(start_day + 364),
            });
            let draft = Draft {
                partnership: p,
                source: Service::Employer(employer),
                subject: Subject::Rotation(rotation),
                expected_version: self.rng.random_bool(0.5).then_some(0),
                correlation: None,
                data,
            };
            self.emit(agreed, draft);
            (key, rotation, employer, 0)
        };
        let placement = self.new_placement(
            p,
            rotation_key,
            generation,
            rotation,
            employer,
            substitute,
            time,
            start_day,
        );
        self.push_thread(Thread::Placement(placement));
    }

    /// Plans one placement in full: the employees and their releases, the
    /// substitution, how each ends, the mentoring, and the follow-ups.
    #[allow(
        clippy::too_many_arguments,
        reason = "the caller's independent draws, each named; a struct would only repeat them"
    )]
    fn new_placement(
        &mut self,
        p: usize,
        rotation_key: u64,
        generation: u32,
        rotation: Uuid,
        employer: usize,
        substitute: Uuid,
        time: Time,
        start_day: i64,
    ) -> Placement {
        let sector = self.partnerships[p].employers[employer].sector;
        let sector_index = Sector::ALL.iter().position(|s| *s == sector).unwrap_or(0);
        let covers = *pick(&mut self.rng, COVERS);
        let mut steps = Vec::with_capacity(32);
        let mut releases = Vec::with_capacity(covers);
        let mut training_ends = Vec::with_capacity(covers);
        let mut release_ends = Vec::with_capacity(covers);
        let mut release_start =
            start_day * DAY + 8 * HOUR + 30 * MINUTE + self.rng.random_range(0..HOUR);
        let mut total_hours = 0.0;
        let mut planned_end = self.date(start_day);
        for i in 0..covers {
            let rng = &mut self.rng;
            let tickets = &self.courses_by_sector[sector_index];
            let course = tickets[rng.random_range(0..tickets.len())];
            let hours = if covers == 1 {
                *pick(rng, RELEASE_HOURS)
            } else {
                // Several part-time releases that one substitute can cover.
                let hours = *pick(rng, &[(7.5, 1), (15.0, 1)]);
                if total_hours + hours > 37.5 {
                    7.5
                } else {
                    hours
                }
            };
            total_hours += hours;
            let weeks: i64 = *pick(rng, TRAINING_WEEKS);
            let completed = rng.random_bool(TRAINING_COMPLETED);
            let qualification = completed && rng.random_bool(QUALIFICATION_ACHIEVED);
            let left = (!completed).then(|| *choose(rng, TRAINING_LEFT_REASONS));
            let employee = fresh_id(rng);
            let lead = self.rng.random_range(1..=10);
            let registered = self.work_time_back(start_day - lead).max(time + MINUTE);
            if i > 0 {
                release_start += self.rng.random_range(MINUTE..10 * MINUTE);
            }
            // Completion lands a few days before the planned end, so that a
            // 26-week course stays within 26 weeks after the weekend.
            let training_end = if completed {
                self.after(release_start, weeks * 7 - 10, weeks * 7 - 5)
            } else {
                self.after(release_start, weeks * 7 / 5, weeks * 7 * 4 / 5)
            };
            let release_end = self.after(training_end, 0, 1);
            let release_planned_end = self.date(start_day + weeks * 7);
            planned_end = planned_end.max(release_planned_end);
            steps.push((registered, PlacementStep::RegisterEmployee(i)));
            steps.push((release_start, PlacementStep::ReleaseStarted(i)));
            steps.push((training_end, PlacementStep::TrainingEnded(i)));
            steps.push((release_end, PlacementStep::ReleaseEnded(i)));
            training_ends.push(training_end);
            release_ends.push(release_end);
            releases.push(ReleasePlan {
                id: fresh_id(&mut self.rng),
                employee,
                course,
                hours,
                planned_end: release_planned_end,
                left,
                qualification,
            });
        }
        let hours = if self.rng.random_bool(HOUR_FOR_HOUR) {
            total_hours
        } else {
            // Not hour for hour: a board flag.
            let options: Vec<f64> = [total_hours + 7.5, total_hours - 7.5, 37.5]
                .into_iter()
                .filter(|h| *h > 0.0 && *h <= 37.5 && *h != total_hours)
                .collect();
            *choose(&mut self.rng, &options)
        };
        let substitution_start = if self.rng.random_bool(0.9) {
            release_start + self.rng.random_range(15 * MINUTE..2 * HOUR)
        } else {
            let delay = self.rng.random_range(1..=3);
            self.work_time(start_day + delay)
        };
        steps.push((substitution_start, PlacementStep::SubstitutionStarted));
        let cover_end = release_ends
            .iter()
            .copied()
            .max()
            .unwrap_or(substitution_start);
        let fate = *pick(&mut self.rng, EARLY_ENDS);
        let (reason, substitution_end) = match fate {
            Some(reason) => {
                let first = substitution_start.div_euclid(DAY);
                let span = (cover_end.div_euclid(DAY) - first) as f64;
                let day = first + ((span * self.rng.random_range(0.15..0.85)) as i64).max(1);
                let at = self.work_time(day);
                let at = if at > substitution_start {
                    at
                } else {
                    substitution_start + HOUR
                };
                (reason, at)
            }
            None => {
                let reason = if self.rng.random_bool(HIRED_BY_EMPLOYER) {
                    EndReason::HiredByEmployer
                } else {
                    EndReason::Completed
                };
                (reason, self.after(cover_end, 0, 0))
            }
        };
        steps.push((substitution_end, PlacementStep::SubstitutionEnded));
        if self.rng.random_bool(0.6) {
            // An induction session between preparation and the first day.
            let before = self.rng.random_range(2..=6);
            let induction = self.work_time_back(start_day - before).max(time + MINUTE);
            if induction < substitution_start {
                steps.push((induction, PlacementStep::Mentoring));
            }
        }
        // Mentoring weekly in the first two months, then every two weeks or so.
        let first = substitution_start.div_euclid(DAY);
        let mut day = first + self.rng.random_range(5..=9);
        loop {
            let session = self.work_time(day);
            if session >= substitution_end {
                break;
            }
            steps.push((session, PlacementStep::Mentoring));
            day += if day - first < 56 {
                self.rng.random_range(6..=8)
            } else {
                self.rng.random_range(10..=21)
            };
        }
        let span = substitution_end - substitution_start;
        if span > 70 * DAY && self.rng.random_bool(0.25) {
            let at = substitution_start + (span as f64 * self.rng.random_range(0.5..0.9)) as Time;
            steps.push((at, PlacementStep::SubstituteQualified));
        }
        let finished = substitution_end.max(cover_end);
        steps.push((finished + MINUTE, PlacementStep::Idle));
        let close = self.after(finished, 42, 70);
        steps.push((close, PlacementStep::CloseIfIdle));

        let hired = reason == EndReason::HiredByEmployer;
        let job = if hired {
            self.rng
                .random_bool(HIRED_RECORD_JOB)
                .then_some(ProgressionKind::PermanentJob)
        } else {
            let chance = match reason {
                EndReason::Completed => JOB_AFTER_COMPLETION,
                EndReason::LeftEarly => JOB_AFTER_LEAVING_EARLY,
                _ => JOB_AFTER_DISMISSAL,
            };
            self.rng
                .random_bool(chance)
                .then(|| *pick(&mut self.rng, JOB_PROGRESSIONS))
        };
        let job = match job {
            Some(kind) => {
                let at = if hired {
                    self.after(substitution_end, 0, 3)
                } else {
                    self.after(substitution_end, 14, 182)
                };
                steps.push((at, PlacementStep::SubstituteProgressed));
                Some((kind, at))
            }
            None => None,
        };
        let ended_day = substitution_end.div_euclid(DAY);
        for after_days in [91, 182, 365] {
            if self.rng.random_bool(OUTCOME_RESPONSE) {
                let day = ended_day + after_days + self.rng.random_range(-7..=7);
                let at = self.work_time(day);
                steps.push((at, PlacementStep::Outcome));
            }
        }
        if reason == EndReason::Completed && job.is_none() && self.rng.random_bool(PLACED_AGAIN) {
            let plan = self.after(substitution_end, 14, 42);
            let start_day = plan.div_euclid(DAY) + self.rng.random_range(21..=56);
            steps.push((plan, PlacementStep::Plan { start_day }));
        }
        for (i, release) in releases.iter().enumerate() {
            if release.left.is_some() {
                continue;
            }
            if release.qualification && self.rng.random_bool(QUALIFICATION_RECORDED) {
                let at = self.after(training_ends[i], 1, 14);
                steps.push((
                    at,
                    PlacementStep::EmployeeProgressed(i, ProgressionKind::Qualification),
                ));
            }
            for after_days in [182, 365] {
                if self.rng.random_bool(0.85) {
                    let jitter = self.rng.random_range(-7..=7);
                    let at = self.work_time(release_ends[i].div_euclid(DAY) + after_days + jitter);
                    steps.push((at, PlacementStep::EmployeeOutcome(i)));
                }
            }
            if self.rng.random_bool(EMPLOYEE_PROGRESSED) {
                let kind = *pick(&mut self.rng, EMPLOYEE_PROGRESSIONS);
                let at = self.after(release_ends[i], 30, 365);
                steps.push((at, PlacementStep::EmployeeProgressed(i, kind)));
            }
        }
        Placement {
            partnership: p,
            rotation_key,
            generation,
            rotation,
            employer,
            substitution: fresh_id(&mut self.rng),
            substitute,
            hours,
            planned_end,
            reason,
            releases,
            job,
            agenda: agenda(steps),
        }
    }

    pub(super) fn placement_step(&mut self, pl: &Placement, time: Time, step: PlacementStep) {
        let p = pl.partnership;
        let employer_id = self.partnerships[p].employers[pl.employer].id;
        let hr = Service::Employer(pl.employer);
        let on_rotation = |source: Service, data: EventData| Draft {
            partnership: p,
            source,
            subject: Subject::Rotation(pl.rotation),
            expected_version: None,
            correlation: Some(pl.substitution),
            data,
        };
        let on_person = |person: Uuid, source: Service, data: EventData| Draft {
            partnership: p,
            source,
            subject: Subject::Person(person),
            expected_version: None,
            correlation: Some(pl.substitution),
            data,
        };
        match step {
            PlacementStep::RegisterEmployee(i) => {
                let data = self.employee_registration(time, employer_id);
                let mut draft = on_person(
                    pl.releases[i].employee,
                    hr,
                    EventData::ParticipantRegistered(data),
                );
                draft.expected_version = self.rng.random_bool(0.5).then_some(0);
                self.emit(time, draft);
            }
            PlacementStep::ReleaseStarted(i) => {
                let release = &pl.releases[i];
                let (title, rqf_level, _, deliverer) = COURSES[release.course];
                let data = EventData::ReleaseStarted(ReleaseStarted {
                    release_id: release.id,
                    employee: release.employee,
                    course: Course {
                        title: title.to_owned(),
                        provider: self.partnerships[p].deliverer_name(deliverer).to_owned(),
                        rqf_level,
                        hours_per_week: release.hours,
                    },
                    planned_end: release.planned_end,
                });
                self.emit(time, on_rotation(hr, data));
            }
            PlacementStep::SubstitutionStarted => {
                let data = EventData::SubstitutionStarted(SubstitutionStarted {
                    substitution_id: pl.substitution,
                    substitute: pl.substitute,
                    covers: pl.releases.iter().map(|r| r.id).collect(),
                    hours_per_week: pl.hours,
                    planned_end: pl.planned_end,
                });
                self.emit(time, on_rotation(hr, data));
            }
            PlacementStep::TrainingEnded(i) => {
                let release = &pl.releases[i];
                let source = match COURSES[release.course].3 {
                    Deliverer::College => Service::College,
                    Deliverer::Provider => Service::Training,
                    // Universities report through the employer.
                    Deliverer::University => hr,
                };
                let data = match release.left {
                    None => EventData::TrainingCompleted(TrainingCompleted {
                        release_id: release.id,
                        qualification_achieved: release.qualification,
                    }),
                    Some(reason) => EventData::TrainingLeft(TrainingLeft {
                        release_id: release.id,
                        reason: reason.to_owned(),
                    }),
                };
                self.emit(time, on_rotation(source, data));
            }
            PlacementStep::ReleaseEnded(i) => {
                let data = EventData::ReleaseEnded(ReleaseEnded {
                    release_id: pl.releases[i].id,
                });
                self.emit(time, on_rotation(hr, data));
            }
            PlacementStep::SubstitutionEnded => {
                let data = EventData::SubstitutionEnded(SubstitutionEnded {
                    substitution_id: pl.substitution,
                    reason: pl.reason,
                });
                self.emit(time, on_rotation(hr, data));
            }
            PlacementStep::Mentoring => {
                let rng = &mut self.rng;
                let mentor = *pick(rng, PLACEMENT_MENTORS);
                let minutes = 15 * rng.random_range(2..=4);
                let source = match mentor {
                    Mentor::Employer => hr,
                    Mentor::UnionLearningRep => Service::UnionLearning,
                    _ => Service::College,
                };
                let data = EventData::MentoringSession(MentoringSession { minutes, mentor });
                self.emit(time, on_person(pl.substitute, source, data));
            }
            PlacementStep::Idle => {
                let partnership = &mut self.partnerships[p];
                if let Some(slot) = partnership.rotations.get_mut(&pl.rotation_key)
                    && slot.generation == pl.generation
                {
                    slot.idle = true;
                    partnership.idle.push(pl.rotation_key);
                }
            }
            PlacementStep::CloseIfIdle => {
                let partnership = &mut self.partnerships[p];
                let idle = partnership
                    .rotations
                    .get(&pl.rotation_key)
                    .is_some_and(|slot| slot.idle && slot.generation == pl.generation);
                if idle {
                    // Nobody took the rotation up again: the employer closes it.
                    partnership.rotations.remove(&pl.rotation_key);
                    if let Some(at) = partnership.idle.iter().position(|k| *k == pl.rotation_key) {
                        partnership.idle.swap_remove(at);
                    }
                    let data = EventData::RotationClosed(RotationClosed {});
                    let mut draft = on_rotation(hr, data);
                    draft.correlation = None;
                    self.emit(time, draft);
                }
            }
            PlacementStep::SubstituteProgressed => {
                let Some((kind, _)) = pl.job else { return };
                let hired = pl.reason == EndReason::HiredByEmployer;
                let employers = &self.partnerships[p].employers;
                let employer = if hired {
                    Some(employer_id)
                } else if kind == ProgressionKind::PermanentJob && self.rng.random_bool(0.5) {
                    Some(employers[self.rng.random_range(0..employers.len())].id)
                } else {
                    None
                };
                let source = if hired { hr } else { Service::Jobcentre };
                let data = EventData::PersonProgressed(PersonProgressed { kind, employer });
                self.emit(time, on_person(pl.substitute, source, data));
            }
            PlacementStep::SubstituteQualified => {
                let data = EventData::PersonProgressed(PersonProgressed {
                    kind: ProgressionKind::Qualification,
                    employer: None,
                });
                self.emit(time, on_person(pl.substitute, Service::College, data));
            }
            PlacementStep::EmployeeOutcome(i) => {
                let rng = &mut self.rng;
                let status = *pick(rng, EMPLOYEE_STATUSES);
                let (source, service) = if status == Status::Employed {
                    (ObservationSource::Employer, hr)
                } else {
                    (ObservationSource::Survey, Service::Evaluation)
                };
                let hours_per_week =
                    (status == Status::Employed).then(|| *pick(rng, EMPLOYEE_HOURS));
                let data = EventData::OutcomeObserved(OutcomeObserved {
                    status,
                    hours_per_week,
                    source,
                });
                self.emit(time, on_person(pl.releases[i].employee, service, data));
            }
            PlacementStep::Outcome => {
                let (source, data) = self.outcome(pl, time);
                self.emit(
                    time,
                    on_person(pl.substitute, source, EventData::OutcomeObserved(data)),
                );
            }
            PlacementStep::EmployeeProgressed(i, kind) => {
                let employer = self.rng.random_bool(0.7).then_some(employer_id);
                let data = EventData::PersonProgressed(PersonProgressed { kind, employer });
                self.emit(time, on_person(pl.releases[i].employee, hr, data));
            }
            PlacementStep::Plan { start_day } => {
                self.plan_placement(p, pl.substitute, time, start_day);
            }
        }
    }

    fn employee_registration(&mut self, time: Time, employer: Uuid) -> ParticipantRegistered {
        let year = self.date(time.div_euclid(DAY)).year();
        let rng = &mut self.rng;
        let profile = if rng.random_bool(0.75) {
            let birth_year = year - rng.random_range(19..=62);
            let sex = *pick(rng, EMPLOYEE_SEXES);
            let ethnicity = *pick(rng, EMPLOYEE_ETHNICITIES);
            let disability = *pick(rng, EMPLOYEE_DISABILITY);
            Some(Profile {
                birth_year: Some(birth_year),
                sex: present(rng, 0.05, |_| sex),
                ethnicity: present(rng, 0.1, |_| ethnicity),
                disability: present(rng, 0.1, |_| disability),
                lone_parent: None,
                health_condition: None,
            })
        } else {
            None
        };
        let level = *pick(rng, EMPLOYEE_QUALIFICATION_LEVELS);
        ParticipantRegistered {
            role: Role::Employee,
            employer: Some(employer),
            unemployed_since: None,
            benefit: None,
            qualification_level: present(rng, 0.1, |_| level),
            profile,
            sealed_profile: None,
        }
    }

    /// A follow-up observation of a former substitute: what they are doing,
    /// given how the placement ended and any progression reported so far.
    fn outcome(&mut self, pl: &Placement, time: Time) -> (Service, OutcomeObserved) {
        let rng = &mut self.rng;
        let hired = pl.reason == EndReason::HiredByEmployer;
        let job = pl.job.filter(|(_, at)| *at <= time).map(|(kind, _)| kind);
        let status = if hired {
            *pick(rng, HIRED_STATUSES)
        } else if let Some(kind) = job {
            match kind.implied_status() {
                Some(status) if rng.random_bool(0.9) => status,
                Some(_) => Status::Unemployed,
                None => Status::Employed,
            }
        } else {
            *pick(rng, NO_JOB_STATUSES)
        };
        let hours_per_week = match status {
            Status::Employed if rng.random_bool(0.7) => Some(*pick(rng, EMPLOYED_HOURS)),
            Status::SelfEmployed if rng.random_bool(0.4) => {
                Some(f64::from(rng.random_range(10..=45)))
            }
            _ => None,
        };
        let (source, service) = if hired && status == Status::Employed && rng.random_bool(0.35) {
            (ObservationSource::Employer, Service::Employer(pl.employer))
        } else if rng.random_bool(0.45) {
            (ObservationSource::AdminData, Service::Jobcentre)
        } else {
            (ObservationSource::Survey, Service::Evaluation)
        };
        (
            service,
            OutcomeObserved {
                status,
                hours_per_week,
                source,
            },
        )
    }
}
