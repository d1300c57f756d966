//! The deterministic scheme simulator: a synthetic but plausible history of
//! job rotation partnerships, written as the JSON Lines that partner services
//! would submit. It feeds `rotation-ledger simulate` and `demo`, the import
//! tests and the benchmarks.
//!
//! # What it owns
//!
//! [`simulate`] turns a [`Scenario`] into a lazy stream of [`Simulated`]
//! lines in submission order. The same scenario always yields the same
//! bytes: every choice, every entity id and every event id comes from one
//! seeded [`StdRng`] (bad lines from a second one, so that the good history
//! is the same whatever the invalid rate), never from the clock. Data is
//! built from the `rotation-events` types, so the shapes cannot drift from
//! the catalogue.
//!
//! # How it works
//!
//! A discrete-event simulation over all partnerships at once. Each journey
//! (a jobseeker from referral to the end of preparation) and each placement
//! (one substitute covering one or more releases, with its follow-ups) is a
//! thread with a small agenda of timed steps; a priority queue keyed by
//! submission time interleaves them. Threads meet only through the
//! partnership's shared state: the enrolled employers, the rotations waiting
//! for their next placement, and recently refused jobseekers. Memory is
//! therefore bounded by the entities active at one moment, not by the
//! history already written.
//!
//! Every good line is accepted by the ledger's rules when appended in order:
//! streams start with their creating event, lifecycles advance in order, a
//! substitute is a jobseeker whose latest assessment says eligible, `covers`
//! names releases active at the substitution's start, and nothing but
//! retractions would follow `rotation.closed`. Only leaf events (mentoring
//! sessions, outcome observations, progressions) are ever reported late or
//! retracted, plus the occasional `preparation_left` entered in error,
//! because nothing else depends on them. All effective times lie before
//! `start + months`.
//!
//! # Assumed proportions
//!
//! Targets, per partnership, drawn independently per person unless stated:
//!
//! - Partnerships: a real city region each (Stoke-on-Trent `E06000021`, the
//!   ten Greater Manchester boroughs `E08000001`..`E08000010`, Leeds
//!   `E08000035`, ...), with a board of every member kind: council, college,
//!   jobcentre, advice service, training provider, three trade unions, three
//!   founding employers and the chamber of commerce.
//! - Employers: about one per 9 jobseekers, enrolled as placements need them.
//!   Sector (SIC 2007): Q 26 %, C 12 %, G 12 %, H 10 %, I 9 %, N 8 %, P 8 %,
//!   F 7 %, J/K/M/R/S 8 %. Size: micro 12 %, small 30 %, medium 33 %,
//!   large 25 %; larger employers run proportionally more rotations.
//! - Jobseekers, referred evenly over the first three quarters of the period
//!   (intake closes early, as in a funded pilot, so that follow-ups can still
//!   be observed): referred by the jobcentre 70 %, advice service 12 %, self 8 %, trade
//!   union 5 %, other 5 %. Age at referral 16-24 22 %, 25-49 53 %,
//!   50-64 25 %; female 47 %, male 49 %, other 1 %, prefer not to say 3 %;
//!   white 74 %, asian 12 %, black 6 %, mixed 3 %, other 2 %, prefer not to
//!   say 3 %; disability 20 %; lone parent 10 %; health condition 26 %. Each
//!   profile field is missing for 2-3 % and the whole profile for 1 %.
//!   Benefit: universal credit 72 %, JSA 8 %, ESA 8 %, none 8 %, other 4 %.
//!   Unemployed for under 26 weeks at referral 12 % (board flags), 26-51
//!   weeks 38 %, 1-2 years 30 %, 2-5 years 20 %.
//! - Eligibility: about 85 % eligible at the first assessment (72 % of the
//!   short-term unemployed, 87 % of the others); 12 % of the refused are
//!   reassessed eligible 4-10 weeks later.
//! - Preparation: 4-8 weeks (mostly 6) with a provider, about one mentoring
//!   session a week; 10 % leave early.
//! - Placements: every jobseeker who completes preparation is placed, 3-21
//!   days after it ends; the placement is agreed while preparation runs, so
//!   that it can be tailored to the job. Half of the placements reuse a
//!   rotation of the
//!   partnership that has finished its previous placement; the rest agree a
//!   new one. A rotation left idle for 6-10 weeks is closed. A substitution
//!   covers one release (85 %), two (13 %) or three (2 %); courses are
//!   sector-specific or generic, RQF 2-5, at 7.5-37.5 hours a week, for
//!   8-26 weeks (5 % longer: board flags). The substitute works the covered
//!   training hours in 92 % of placements (otherwise a flag).
//! - Training: 85 % completed (90 % of them with the qualification), 15 %
//!   left part-way; the release ends 0-2 days after.
//! - Substitutions: 14 % left early and 4 % dismissed part-way; the rest
//!   run until the cover ends, then hired by the employer (40 %, so about
//!   a third of all) or completed. An induction session before the first
//!   day for 60 %; mentoring weekly for two months, then every 10-21 days;
//!   a quarter of placements over 10 weeks bring a qualification.
//! - Afterwards: 80 % of the hired record a permanent job with their host;
//!   others progress (other job, permanent job, education, self-employment)
//!   with 40 % after completion, 25 % after leaving early, 15 % after
//!   dismissal. Outcomes are observed about 3, 6 and 12 months after the
//!   substitution ends (88 % response each; survey, admin data or the
//!   employer). 15 % of those who completed without a job are placed again.
//!   Released employees: 35 % of those who gained a qualification record it,
//!   30 % of those who completed later record a promotion, pay rise or new
//!   role, and employers report whether they are still in work 6 and 12
//!   months after the release (85 % each). Those never placed (refused, or
//!   left preparation) get admin-data observations 6 and 12 months after
//!   referral (90 % each), as a comparison group.
//! - Reporting: 3 % of leaf events arrive 1-8 weeks late; about 0.2 % of
//!   all events are retractions of leaf events entered in error. Half of the
//!   creating events carry `expectedversion: 0`.
//!
//! On 2 partnerships, 2,000 jobseekers and 24 months this gives about 28
//! events per jobseeker (employers, employees and rotations included),
//! about half of them mentoring sessions; the test
//! `proportions_are_roughly_as_documented` prints the measured figures.
//!
//! # Bad lines
//!
//! With `invalid_rate` R, each good event is followed, with probability R,
//! by one line derived from it that the ledger must refuse, with the code
//! in [`Expected::Rejected`]: a line cut short, a missing or mistyped
//! attribute, an unknown type, a subject of the wrong kind, an end before
//! its start or a time a century ahead (`invalid_event`); the event on a
//! stream that does not exist (`unknown_stream`); a second active release
//! or substitution, an ineligible substitute, ending or closing twice, a
//! creating event for an existing stream, an unenrolled employer, another
//! partnership's person or a retraction of nothing (`rule_violation`); a
//! reused id with other content (`duplicate_id_conflict`); a wrong
//! `expectedversion` (`version_conflict`). Or, as [`Expected::Duplicate`],
//! an exact re-delivery. Each is built so that only one rule fails; none
//! changes what the ledger holds, so the good lines stay accepted in full.
//!
//! # Files
//!
//! One idea a file; the simulator's one `impl` is split across them by
//! topic, so each file adds the steps of its own threads.
//!
//! - `mod.rs`: the public entry points ([`Scenario`], [`simulate`],
//!   [`Simulated`], [`Expected`]), the simulator's state and its
//!   construction, and the weighted random draws every thread uses.
//! - `proportions`: the assumed proportions above, as weighted tables.
//! - `reference`: the reference data: places, sectors, courses, reasons and
//!   the partner services that publish.
//! - `calendar`: simulated time, office hours and weekdays, and the ids
//!   drawn at a time.
//! - `queue`: the threads, their agendas and the priority queue that
//!   interleaves them.
//! - `emission`: drafts written as lines, late reports and retractions.
//! - `bad_lines`: the lines the ledger must refuse, each derived from a good
//!   one.
//! - `partnerships`: partnerships, their boards and their employers.
//! - `journeys`: jobseekers from referral to the end of preparation.
//! - `placements`: rotations, releases, substitutions and what follows.
//! - `tests`: a cross-check against the contract's rules, and the measured
//!   proportions.

mod bad_lines;
mod calendar;
mod emission;
mod journeys;
mod partnerships;
mod placements;
#[rustfmt::skip]
mod proportions;
mod queue;
mod reference;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use chrono::{Datelike, Months, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rotation_events::{ErrorCode, Sector};

use calendar::{DAY, HOUR, MINUTE, Time};
use partnerships::{Partnership, SetupStep};
use queue::{Entry, Task, Thread, agenda};
use reference::COURSES;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// How many partnerships run a scheme side by side.
    pub partnerships: u32,
    /// Jobseekers referred in total, spread evenly over the partnerships.
    pub jobseekers: u32,
    /// The length of the simulated period (at most 1,200); every effective
    /// time lies before `start + months`.
    pub months: u32,
    /// The seed of every random choice: the same scenario yields the same
    /// bytes.
    pub seed: u64,
    /// The first day of the period (UTC). Pick it so that the whole period
    /// lies in the past, or the ledger refuses times ahead of its clock.
    pub start: NaiveDate,
    /// The probability, per good event, of adding one bad line after it.
    pub invalid_rate: f64,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            partnerships: 2,
            jobseekers: 400,
            months: 24,
            seed: 1,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).expect("2024-01-01 is a date"),
            invalid_rate: 0.0,
        }
    }
}

/// What the ledger should answer to a simulated line.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// Committed.
    Accepted,
    /// An exact re-delivery of an event already committed (same id, same
    /// content): answered `duplicate`, nothing is added.
    Duplicate,
    /// Rejected with the contract's code, e.g. `rule_violation`.
    Rejected(ErrorCode),
}

/// One simulated submission.
#[derive(Clone, Debug)]
pub struct Simulated {
    /// One JSON Lines line, without its newline: exactly what a partner
    /// service would send.
    pub line: String,
    /// The answer the ledger should give when the lines are appended in order.
    pub expected: Expected,
}

/// A lazy, deterministic stream of events in submission (recorded) order.
pub fn simulate(scenario: &Scenario) -> impl Iterator<Item = Simulated> + use<> {
    Simulator::new(scenario)
}

struct Simulator {
    rng: StdRng,
    /// Bad lines draw from their own generator, so that the good history is
    /// the same whatever the invalid rate.
    bad_rng: StdRng,
    invalid_rate: f64,
    start: NaiveDate,
    start_unix: i64,
    /// Days from the Monday on or before `start` to `start`, for weekdays.
    start_weekday: i64,
    end: Time,
    partnerships: Vec<Partnership>,
    /// Course indices per sector (by position in `Sector::ALL`), repeated
    /// by weight: sector courses three times, generic ones once.
    courses_by_sector: Vec<Vec<usize>>,
    queue: BinaryHeap<Reverse<Entry>>,
    seq: u32,
    out: VecDeque<Simulated>,
}

impl Iterator for Simulator {
    type Item = Simulated;

    fn next(&mut self) -> Option<Simulated> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Some(item);
            }
            let Reverse(entry) = self.queue.pop()?;
            self.run(entry.at(), entry.task);
        }
    }
}

impl Simulator {
    fn new(scenario: &Scenario) -> Self {
        let end_date = scenario
            .start
            .checked_add_months(Months::new(scenario.months.min(1_200)))
            .expect("the simulated period ends within chrono's range");
        let end = (end_date - scenario.start).num_days() * DAY;
        let courses_by_sector = Sector::ALL
            .iter()
            .map(|sector| {
                let letter = sector.as_str();
                let mut tickets = Vec::new();
                for (i, (_, _, sectors, _)) in COURSES.iter().enumerate() {
                    let weight = if sectors.contains(letter) {
                        3
                    } else if *sectors == "*" {
                        1
                    } else {
                        0
                    };
                    tickets.extend(std::iter::repeat_n(i, weight));
                }
                tickets
            })
            .collect();
        let mut sim = Self {
            rng: StdRng::seed_from_u64(scenario.seed),
            bad_rng: StdRng::seed_from_u64(scenario.seed ^ 0xbad_11e5),
            invalid_rate: if scenario.invalid_rate.is_nan() {
                0.0
            } else {
                scenario.invalid_rate.clamp(0.0, 1.0)
            },
            start: scenario.start,
            start_unix: scenario
                .start
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .timestamp(),
            start_weekday: i64::from(scenario.start.weekday().num_days_from_monday()),
            end,
            partnerships: Vec::new(),
            courses_by_sector,
            queue: BinaryHeap::new(),
            seq: 0,
            out: VecDeque::new(),
        };
        let count = scenario.partnerships as usize;
        for index in 0..count {
            let share = scenario.jobseekers / scenario.partnerships
                + u32::from((index as u32) < scenario.jobseekers % scenario.partnerships);
            let partnership = sim.new_partnership(index, share);
            sim.partnerships.push(partnership);
            let register = 9 * HOUR + index as Time * 7 * MINUTE;
            let mut steps = vec![(register, SetupStep::Register)];
            for _ in 0..sim.partnerships[index].founders.len() {
                let day = sim.rng.random_range(1..=13);
                steps.push((
                    sim.work_time(day).max(register + MINUTE),
                    SetupStep::EnrolFounder,
                ));
            }
            sim.push_thread(Thread::Setup(index, agenda(steps)));
            let p = &sim.partnerships[index];
            if p.jobseekers > 0 {
                let first = p.arrival_from
                    + sim.rng.random_range(0..=p.arrival_span) / i64::from(p.jobseekers);
                sim.push(first, Task::Arrival(index));
            }
        }
        sim
    }
}

/// Orders `table` by weight and picks one entry.
fn pick<'a, T>(rng: &mut StdRng, table: &'a [(T, u32)]) -> &'a T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (value, weight) in table {
        if x < *weight {
            return value;
        }
        x -= weight;
    }
    &table[table.len() - 1].0
}

fn choose<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// `Some` of a value drawn by `draw`, except with probability `missing`.
fn present<T>(rng: &mut StdRng, missing: f64, draw: impl FnOnce(&mut StdRng) -> T) -> Option<T> {
    if rng.random_bool(missing) {
        None
    } else {
        Some(draw(rng))
    }
}
