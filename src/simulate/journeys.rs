//! Jobseekers: a journey from referral through assessment and preparation
//! to the plan of a placement, or to the comparison group's outcomes.

use chrono::{Datelike, Days};
use rand::Rng;
use rotation_events::{
    EligibilityAssessed, EventData, JobseekerReferred, Mentor, MentoringSession, ObservationSource,
    OutcomeObserved, ParticipantRegistered, PreparationCompleted, PreparationLeft,
    PreparationStarted, Profile, ReferredBy, Role, Subject,
};
use uuid::Uuid;

use super::calendar::{DAY, MINUTE, Time, fresh_id};
use super::emission::Draft;
use super::proportions::*;
use super::queue::{Agenda, Task, Thread, agenda};
use super::reference::{Deliverer, PREPARATION_LEFT_REASONS, REFUSAL_REASONS, Service};
use super::{Simulator, choose, pick, present};

/// How many recently refused jobseekers each partnership remembers, as the
/// substitutes of deliberately invalid substitutions.
const REFUSED_KEPT: usize = 32;

/// A jobseeker from referral to the end of preparation.
pub(super) struct Journey {
    partnership: usize,
    person: Uuid,
    referred_by: ReferredBy,
    unemployed_weeks: u32,
    planned_weeks: u32,
    provider: Deliverer,
    pub(super) agenda: Agenda<JourneyStep>,
}

pub(super) enum JourneyStep {
    Register,
    Refer,
    Assess {
        eligible: bool,
        final_refusal: bool,
    },
    PreparationStarted,
    Mentoring,
    PreparationCompleted,
    PreparationLeft,
    Plan {
        start_day: i64,
    },
    /// Admin data on someone never placed: the comparison group.
    Outcome,
}

impl Simulator {
    pub(super) fn arrival(&mut self, p: usize, at: Time) {
        let journey = self.new_journey(p, at);
        self.push_thread(Thread::Journey(journey));
        let partnership = &mut self.partnerships[p];
        partnership.arrived += 1;
        if partnership.arrived < partnership.jobseekers {
            let (k, n) = (
                i64::from(partnership.arrived),
                i64::from(partnership.jobseekers),
            );
            let (from, span) = (partnership.arrival_from, partnership.arrival_span);
            // Evenly spread with jitter, and always after this arrival.
            let next = from + (k * span + self.rng.random_range(0..span)) / n;
            self.push(next.max(at), Task::Arrival(p));
        }
    }

    fn new_journey(&mut self, p: usize, at: Time) -> Journey {
        let rng = &mut self.rng;
        let (shortest, longest) = *pick(rng, UNEMPLOYED_WEEKS);
        let unemployed_weeks = rng.random_range(shortest..=longest);
        let referred_by = *pick(rng, REFERRERS);
        let planned_weeks = *pick(rng, PREPARATION_WEEKS);
        let provider = *pick(rng, &[(Deliverer::College, 3), (Deliverer::Provider, 2)]);
        let eligible = rng.random_bool(if unemployed_weeks < 26 {
            ELIGIBLE_SHORT_TERM_UNEMPLOYED
        } else {
            ELIGIBLE_LONG_TERM_UNEMPLOYED
        });

        let register = self.work_time(at.div_euclid(DAY));
        let refer = register + self.rng.random_range(5 * MINUTE..45 * MINUTE);
        let mut assess = self.after(refer, 3, 14);
        let mut steps = vec![
            (register, JourneyStep::Register),
            (refer, JourneyStep::Refer),
        ];
        if !eligible {
            let reassessed = self.rng.random_bool(REASSESSED_ELIGIBLE);
            steps.push((
                assess,
                JourneyStep::Assess {
                    eligible: false,
                    final_refusal: !reassessed,
                },
            ));
            if !reassessed {
                self.comparison_outcomes(&mut steps, register);
                return Journey {
                    partnership: p,
                    person: fresh_id(&mut self.rng),
                    referred_by,
                    unemployed_weeks,
                    planned_weeks,
                    provider,
                    agenda: agenda(steps),
                };
            }
            assess = self.after(assess, 28, 70);
        }
        steps.push((
            assess,
            JourneyStep::Assess {
                eligible: true,
                final_refusal: false,
            },
        ));
        let start = self.after(assess, 7, 21);
        steps.push((start, JourneyStep::PreparationStarted));
        let weeks = i64::from(planned_weeks);
        let leaves = self.rng.random_bool(PREPARATION_LEFT);
        let end = if leaves {
            self.after(start, 5, weeks * 7 - 5)
        } else {
            self.after(start, weeks * 7 - 1, weeks * 7 + 2)
        };
        let mut week = 0;
        loop {
            let day = start.div_euclid(DAY) + 2 + 7 * week + self.rng.random_range(0..=2);
            let session = self.work_time(day);
            if session >= end {
                break;
            }
            if session > start && self.rng.random_bool(0.9) {
                steps.push((session, JourneyStep::Mentoring));
            }
            week += 1;
        }
        if leaves {
            steps.push((end, JourneyStep::PreparationLeft));
            self.comparison_outcomes(&mut steps, register);
        } else {
            // The placement is agreed while preparation runs, so that the
            // preparation can be tailored to the job.
            let plan = self.after(start, 7, 14).min(end - MINUTE);
            let start_day = end.div_euclid(DAY) + self.rng.random_range(3..=21);
            steps.push((plan, JourneyStep::Plan { start_day }));
            steps.push((end, JourneyStep::PreparationCompleted));
        }
        Journey {
            partnership: p,
            person: fresh_id(&mut self.rng),
            referred_by,
            unemployed_weeks,
            planned_weeks,
            provider,
            agenda: agenda(steps),
        }
    }

    /// Admin-data observations 6 and 12 months after referral for those who
    /// are never placed, so that evaluators have a comparison group.
    fn comparison_outcomes(&mut self, steps: &mut Vec<(Time, JourneyStep)>, referred: Time) {
        for after_days in [182, 365] {
            if self.rng.random_bool(0.9) {
                let day = referred.div_euclid(DAY) + after_days + self.rng.random_range(-7..=7);
                let at = self.work_time(day);
                steps.push((at, JourneyStep::Outcome));
            }
        }
    }

    pub(super) fn journey_step(&mut self, j: &Journey, time: Time, step: JourneyStep) {
        let referrer = match j.referred_by {
            ReferredBy::Jobcentre => Service::Jobcentre,
            ReferredBy::AdviceService => Service::Advice,
            ReferredBy::TradeUnion => Service::UnionLearning,
            ReferredBy::SelfReferral | ReferredBy::Other => Service::Board,
        };
        let provider_service = match j.provider {
            Deliverer::College => Service::College,
            _ => Service::Training,
        };
        let provider_name = self.partnerships[j.partnership].deliverer_name(j.provider);
        let draft = |source: Service, data: EventData| Draft {
            partnership: j.partnership,
            source,
            subject: Subject::Person(j.person),
            expected_version: None,
            correlation: None,
            data,
        };
        match step {
            JourneyStep::Register => {
                let data = self.jobseeker_registration(time, j.unemployed_weeks);
                let mut d = draft(referrer, EventData::ParticipantRegistered(data));
                d.expected_version = self.rng.random_bool(0.5).then_some(0);
                self.emit(time, d);
            }
            JourneyStep::Refer => {
                let data = EventData::JobseekerReferred(JobseekerReferred {
                    referred_by: j.referred_by,
                });
                self.emit(time, draft(referrer, data));
            }
            JourneyStep::Assess {
                eligible,
                final_refusal,
            } => {
                let rng = &mut self.rng;
                let reasons = if !eligible {
                    vec![(*choose(rng, REFUSAL_REASONS)).to_owned()]
                } else if j.unemployed_weeks < 26 {
                    let group = *choose(
                        rng,
                        &[
                            "aged under 25",
                            "lone parent",
                            "disabled",
                            "recently made redundant",
                        ],
                    );
                    vec![format!(
                        "unemployed under 26 weeks: priority group ({group})"
                    )]
                } else if rng.random_bool(0.6) {
                    vec![
                        "unemployed 26 weeks or more".to_owned(),
                        "lives in the partnership area".to_owned(),
                    ]
                } else {
                    Vec::new()
                };
                let data =
                    EventData::EligibilityAssessed(EligibilityAssessed { eligible, reasons });
                self.emit(time, draft(Service::Jobcentre, data));
                if final_refusal {
                    let refused = &mut self.partnerships[j.partnership].refused;
                    if refused.len() == REFUSED_KEPT {
                        refused.pop_front();
                    }
                    refused.push_back(j.person);
                }
            }
            JourneyStep::PreparationStarted => {
                let data = EventData::PreparationStarted(PreparationStarted {
                    provider: provider_name.to_owned(),
                    planned_weeks: j.planned_weeks,
                });
                self.emit(time, draft(provider_service, data));
            }
            JourneyStep::Mentoring => {
                let rng = &mut self.rng;
                let mentor = *pick(rng, PREPARATION_MENTORS);
                let minutes = 15 * rng.random_range(2..=6);
                let source = match mentor {
                    Mentor::UnionLearningRep => Service::UnionLearning,
                    _ => provider_service,
                };
                let data = EventData::MentoringSession(MentoringSession { minutes, mentor });
                self.emit(time, draft(source, data));
            }
            JourneyStep::PreparationCompleted => {
                let data = EventData::PreparationCompleted(PreparationCompleted {
                    provider: provider_name.to_owned(),
                });
                self.emit(time, draft(provider_service, data));
            }
            JourneyStep::PreparationLeft => {
                let reason = *choose(&mut self.rng, PREPARATION_LEFT_REASONS);
                let data = EventData::PreparationLeft(PreparationLeft {
                    reason: reason.to_owned(),
                });
                self.emit(time, draft(provider_service, data));
            }
            JourneyStep::Plan { start_day } => {
                self.plan_placement(j.partnership, j.person, time, start_day);
            }
            JourneyStep::Outcome => {
                let rng = &mut self.rng;
                let status = *pick(rng, COMPARISON_STATUSES);
                let data = EventData::OutcomeObserved(OutcomeObserved {
                    status,
                    hours_per_week: None,
                    source: ObservationSource::AdminData,
                });
                self.emit(time, draft(Service::Jobcentre, data));
            }
        }
    }

    fn jobseeker_registration(
        &mut self,
        time: Time,
        unemployed_weeks: u32,
    ) -> ParticipantRegistered {
        let date = self.date(time.div_euclid(DAY));
        let rng = &mut self.rng;
        let since = date - Days::new(u64::from(unemployed_weeks) * 7 + rng.random_range(0..=6));
        let (youngest, oldest) = *pick(rng, AGES);
        let age = rng.random_range(youngest..=oldest);
        let profile = Profile {
            birth_year: present(rng, 0.02, |_| date.year() - age),
            sex: present(rng, 0.02, |rng| *pick(rng, SEXES)),
            ethnicity: present(rng, 0.02, |rng| *pick(rng, ETHNICITIES)),
            disability: present(rng, 0.02, |rng| *pick(rng, DISABILITY)),
            lone_parent: present(rng, 0.02, |rng| rng.random_bool(LONE_PARENT)),
            health_condition: present(rng, 0.03, |rng| *pick(rng, HEALTH_CONDITION)),
        };
        let benefit = present(rng, 0.03, |rng| *pick(rng, BENEFITS));
        let qualification_level = present(rng, 0.05, |rng| *pick(rng, QUALIFICATION_LEVELS));
        let profile = present(rng, 0.01, |_| profile);
        ParticipantRegistered {
            role: Role::Jobseeker,
            employer: None,
            unemployed_since: Some(since),
            benefit,
            qualification_level,
            profile,
            sealed_profile: None,
        }
    }
}
