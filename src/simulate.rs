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

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};

use chrono::{Datelike, Days, Months, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rotation_events::{
    Course, EligibilityAssessed, EmployerEnrolled, EndReason, EventData, EventType,
    JobseekerReferred, Member, MemberKind, Mentor, MentoringSession, ObservationSource,
    OutcomeObserved, ParticipantRegistered, PartnershipRegistered, PersonProgressed,
    PreparationCompleted, PreparationLeft, PreparationStarted, Profile, ProgressionKind,
    ReferredBy, ReleaseEnded, ReleaseStarted, Retracted, Role, RotationAgreed, RotationClosed,
    Sector, Size, Status, Subject, SubstitutionEnded, SubstitutionStarted, TrainingCompleted,
    TrainingLeft,
};
use serde_json::Value;
use uuid::{Builder, Uuid};

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
    Rejected(&'static str),
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

const INVALID_EVENT: &str = "invalid_event";
const UNKNOWN_STREAM: &str = "unknown_stream";
const RULE_VIOLATION: &str = "rule_violation";
const DUPLICATE_ID_CONFLICT: &str = "duplicate_id_conflict";
const VERSION_CONFLICT: &str = "version_conflict";

/// Simulated time: seconds since `start` at 00:00 UTC.
type Time = i64;
const MINUTE: Time = 60;
const HOUR: Time = 3_600;
const DAY: Time = 86_400;

/// The share of leaf events (mentoring, outcomes, progressions) reported late.
const LATE_REPORT_RATE: f64 = 0.03;
/// The share of retractable events later retracted. Retractable events are
/// about half of all, which makes retractions about 0.2 % of the log.
const RETRACTION_RATE: f64 = 0.004;
/// How many recently refused jobseekers each partnership remembers, as the
/// substitutes of deliberately invalid substitutions.
const REFUSED_KEPT: usize = 32;

/// The assumed proportions of the module docs, in one place. Weights are
/// relative (per cent where they add up to 100); ranges are inclusive.
#[rustfmt::skip]
mod proportions {
    use rotation_events::{
        Benefit, EndReason, Ethnicity, Mentor, ProgressionKind, ReferredBy, Sex, Size, Status,
        YesNo,
    };

    // Employers.
    pub const EMPLOYER_SIZES: &[(Size, u32)] =
        &[(Size::Micro, 12), (Size::Small, 30), (Size::Medium, 33), (Size::Large, 25)];

    // Jobseekers at referral.
    pub const UNEMPLOYED_WEEKS: &[((u32, u32), u32)] =
        &[((4, 25), 12), ((26, 51), 38), ((52, 103), 30), ((104, 260), 20)];
    pub const REFERRERS: &[(ReferredBy, u32)] = &[
        (ReferredBy::Jobcentre, 70), (ReferredBy::AdviceService, 12), (ReferredBy::SelfReferral, 8),
        (ReferredBy::TradeUnion, 5), (ReferredBy::Other, 5),
    ];
    pub const AGES: &[((i32, i32), u32)] = &[((16, 24), 22), ((25, 49), 53), ((50, 64), 25)];
    pub const SEXES: &[(Sex, u32)] =
        &[(Sex::Female, 47), (Sex::Male, 49), (Sex::Other, 1), (Sex::PreferNotToSay, 3)];
    pub const ETHNICITIES: &[(Ethnicity, u32)] = &[
        (Ethnicity::White, 74), (Ethnicity::Asian, 12), (Ethnicity::Black, 6), (Ethnicity::Mixed, 3),
        (Ethnicity::Other, 2), (Ethnicity::PreferNotToSay, 3),
    ];
    pub const DISABILITY: &[(YesNo, u32)] =
        &[(YesNo::Yes, 20), (YesNo::No, 75), (YesNo::PreferNotToSay, 5)];
    pub const LONE_PARENT: f64 = 0.10;
    pub const HEALTH_CONDITION: &[(YesNo, u32)] =
        &[(YesNo::Yes, 26), (YesNo::No, 69), (YesNo::PreferNotToSay, 5)];
    pub const BENEFITS: &[(Benefit, u32)] = &[
        (Benefit::UniversalCredit, 72), (Benefit::Jsa, 8), (Benefit::Esa, 8), (Benefit::None, 8),
        (Benefit::Other, 4),
    ];
    pub const QUALIFICATION_LEVELS: &[(u8, u32)] =
        &[(0, 15), (1, 25), (2, 30), (3, 20), (4, 7), (5, 3)];

    // Eligibility and preparation.
    pub const ELIGIBLE_LONG_TERM_UNEMPLOYED: f64 = 0.87;
    /// Unemployed under 26 weeks: admitted as priority groups, and flagged.
    pub const ELIGIBLE_SHORT_TERM_UNEMPLOYED: f64 = 0.72;
    pub const REASSESSED_ELIGIBLE: f64 = 0.12;
    pub const PREPARATION_WEEKS: &[(u32, u32)] = &[(4, 15), (5, 15), (6, 35), (7, 15), (8, 20)];
    pub const PREPARATION_LEFT: f64 = 0.10;
    pub const PREPARATION_MENTORS: &[(Mentor, u32)] = &[
        (Mentor::Provider, 50), (Mentor::UnionLearningRep, 35), (Mentor::Employer, 10),
        (Mentor::Other, 5),
    ];
    /// Admin data on those never placed, 6 and 12 months after referral.
    pub const COMPARISON_STATUSES: &[(Status, u32)] = &[
        (Status::Employed, 28), (Status::SelfEmployed, 2), (Status::Education, 5),
        (Status::Unemployed, 47), (Status::Inactive, 15), (Status::Unknown, 3),
    ];

    // Rotations, releases and substitutions.
    pub const ROTATION_REUSED: f64 = 0.5;
    pub const COVERS: &[(usize, u32)] = &[(1, 85), (2, 13), (3, 2)];
    pub const RELEASE_HOURS: &[(f64, u32)] =
        &[(7.5, 15), (15.0, 30), (22.5, 25), (30.0, 15), (37.5, 15)];
    /// Weeks of training; over 26 weeks is a board flag.
    pub const TRAINING_WEEKS: &[(i64, u32)] = &[
        (8, 10), (10, 8), (12, 20), (13, 12), (16, 15), (20, 10), (24, 8), (26, 12),
        (30, 2), (34, 2), (39, 1),
    ];
    pub const TRAINING_COMPLETED: f64 = 0.85;
    pub const QUALIFICATION_ACHIEVED: f64 = 0.9;
    /// The substitute works exactly the covered training hours.
    pub const HOUR_FOR_HOUR: f64 = 0.92;
    /// How substitutions end part-way; `None` runs until the cover ends.
    pub const EARLY_ENDS: &[(Option<EndReason>, u32)] =
        &[(Some(EndReason::LeftEarly), 14), (Some(EndReason::Dismissed), 4), (None, 82)];
    /// Of those that run until the cover ends.
    pub const HIRED_BY_EMPLOYER: f64 = 0.4;
    pub const PLACEMENT_MENTORS: &[(Mentor, u32)] = &[
        (Mentor::Employer, 45), (Mentor::UnionLearningRep, 40), (Mentor::Provider, 10),
        (Mentor::Other, 5),
    ];

    // After the placement.
    pub const HIRED_RECORD_JOB: f64 = 0.8;
    pub const JOB_AFTER_COMPLETION: f64 = 0.4;
    pub const JOB_AFTER_LEAVING_EARLY: f64 = 0.25;
    pub const JOB_AFTER_DISMISSAL: f64 = 0.15;
    pub const JOB_PROGRESSIONS: &[(ProgressionKind, u32)] = &[
        (ProgressionKind::OtherJob, 55), (ProgressionKind::PermanentJob, 20),
        (ProgressionKind::Education, 15), (ProgressionKind::SelfEmployment, 10),
    ];
    pub const OUTCOME_RESPONSE: f64 = 0.88;
    pub const PLACED_AGAIN: f64 = 0.15;
    pub const HIRED_STATUSES: &[(Status, u32)] = &[
        (Status::Employed, 87), (Status::Unemployed, 5), (Status::Inactive, 3),
        (Status::Education, 1), (Status::Unknown, 4),
    ];
    pub const NO_JOB_STATUSES: &[(Status, u32)] = &[
        (Status::Employed, 22), (Status::SelfEmployed, 2), (Status::Education, 6),
        (Status::Unemployed, 52), (Status::Inactive, 12), (Status::Unknown, 6),
    ];
    pub const EMPLOYED_HOURS: &[(f64, u32)] =
        &[(16.0, 15), (22.5, 20), (30.0, 25), (37.5, 35), (40.0, 5)];

    // Released employees.
    pub const EMPLOYEE_SEXES: &[(Sex, u32)] =
        &[(Sex::Female, 55), (Sex::Male, 43), (Sex::Other, 1), (Sex::PreferNotToSay, 1)];
    pub const EMPLOYEE_ETHNICITIES: &[(Ethnicity, u32)] = &[
        (Ethnicity::White, 78), (Ethnicity::Asian, 10), (Ethnicity::Black, 5), (Ethnicity::Mixed, 3),
        (Ethnicity::Other, 2), (Ethnicity::PreferNotToSay, 2),
    ];
    pub const EMPLOYEE_DISABILITY: &[(YesNo, u32)] =
        &[(YesNo::Yes, 12), (YesNo::No, 85), (YesNo::PreferNotToSay, 3)];
    pub const EMPLOYEE_QUALIFICATION_LEVELS: &[(u8, u32)] = &[(1, 15), (2, 40), (3, 30), (4, 15)];
    pub const QUALIFICATION_RECORDED: f64 = 0.35;
    pub const EMPLOYEE_PROGRESSED: f64 = 0.3;
    pub const EMPLOYEE_PROGRESSIONS: &[(ProgressionKind, u32)] = &[
        (ProgressionKind::Promotion, 30), (ProgressionKind::PayRise, 40),
        (ProgressionKind::NewRole, 30),
    ];
    pub const EMPLOYEE_STATUSES: &[(Status, u32)] = &[
        (Status::Employed, 92), (Status::Unemployed, 2), (Status::Inactive, 2), (Status::Unknown, 4),
    ];
    pub const EMPLOYEE_HOURS: &[(f64, u32)] = &[(37.5, 60), (30.0, 20), (22.5, 15), (16.0, 5)];
}

use proportions::*;

// ---------------------------------------------------------------------------
// Reference data: places, sectors, courses.
// ---------------------------------------------------------------------------

/// A city region that runs a partnership, with the organisations a board
/// there would have.
struct Place {
    slug: &'static str,
    name: &'static str,
    /// ONS local authority codes.
    areas: &'static [&'static str],
    region: &'static str,
    council: &'static str,
    college: &'static str,
    jobcentre: &'static str,
    advice: &'static str,
    provider: &'static str,
    university: &'static str,
    chamber: &'static str,
    /// Local names that employers take theirs from.
    localities: &'static [&'static str],
}

#[rustfmt::skip]
const PLACES: &[Place] = &[
    Place {
        slug: "stoke", name: "Stoke-on-Trent Job Rotation Partnership",
        areas: &["E06000021"], region: "West Midlands",
        council: "Stoke-on-Trent City Council", college: "Stoke-on-Trent College",
        jobcentre: "Jobcentre Plus Hanley", advice: "Citizens Advice North Staffordshire",
        provider: "Potteries Training Partnership", university: "Staffordshire University",
        chamber: "Staffordshire Chambers of Commerce",
        localities: &["Hanley", "Burslem", "Longton", "Fenton", "Tunstall", "Stoke", "Trentham",
            "Meir", "Etruria", "Potteries"],
    },
    Place {
        slug: "greater-manchester", name: "Greater Manchester Job Rotation Partnership",
        areas: &["E08000001", "E08000002", "E08000003", "E08000004", "E08000005", "E08000006",
            "E08000007", "E08000008", "E08000009", "E08000010"],
        region: "North West",
        council: "Greater Manchester Combined Authority", college: "The Manchester College",
        jobcentre: "Jobcentre Plus Greater Manchester", advice: "Citizens Advice Manchester",
        provider: "Greater Manchester Skills Partnership",
        university: "Manchester Metropolitan University",
        chamber: "Greater Manchester Chamber of Commerce",
        localities: &["Bolton", "Bury", "Oldham", "Rochdale", "Salford", "Stockport", "Tameside",
            "Trafford", "Wigan", "Ancoats", "Irwell", "Pennine"],
    },
    Place {
        slug: "leeds", name: "Leeds Job Rotation Partnership",
        areas: &["E08000035"], region: "Yorkshire and the Humber",
        council: "Leeds City Council", college: "Leeds City College",
        jobcentre: "Jobcentre Plus Leeds City", advice: "Citizens Advice Leeds",
        provider: "Leeds Skills Partnership", university: "Leeds Beckett University",
        chamber: "West and North Yorkshire Chamber of Commerce",
        localities: &["Armley", "Headingley", "Holbeck", "Kirkstall", "Seacroft", "Horsforth",
            "Morley", "Aire Valley", "Pudsey", "Otley"],
    },
    Place {
        slug: "liverpool-city-region", name: "Liverpool City Region Job Rotation Partnership",
        areas: &["E08000011", "E08000012", "E08000013", "E08000014", "E08000015", "E06000006"],
        region: "North West",
        council: "Liverpool City Region Combined Authority",
        college: "The City of Liverpool College",
        jobcentre: "Jobcentre Plus Liverpool", advice: "Citizens Advice Liverpool",
        provider: "Merseyside Training Network", university: "Liverpool John Moores University",
        chamber: "Liverpool Chamber of Commerce",
        localities: &["Bootle", "Birkenhead", "Huyton", "St Helens", "Wallasey", "Kirkby",
            "Garston", "Mersey", "Widnes", "Runcorn"],
    },
    Place {
        slug: "birmingham", name: "Birmingham Job Rotation Partnership",
        areas: &["E08000025"], region: "West Midlands",
        council: "Birmingham City Council", college: "Birmingham Metropolitan College",
        jobcentre: "Jobcentre Plus Birmingham", advice: "Citizens Advice Birmingham",
        provider: "Midlands Training Partnership", university: "Birmingham City University",
        chamber: "Greater Birmingham Chambers of Commerce",
        localities: &["Aston", "Digbeth", "Edgbaston", "Erdington", "Handsworth", "Kings Heath",
            "Selly Oak", "Sparkbrook", "Yardley", "Moseley"],
    },
    Place {
        slug: "newcastle", name: "Newcastle Job Rotation Partnership",
        areas: &["E08000021"], region: "Northern",
        council: "Newcastle City Council", college: "Newcastle College",
        jobcentre: "Jobcentre Plus Newcastle", advice: "Citizens Advice Newcastle",
        provider: "Tyneside Training Partnership", university: "Northumbria University",
        chamber: "North East England Chamber of Commerce",
        localities: &["Byker", "Gosforth", "Jesmond", "Heaton", "Walker", "Benwell", "Kenton",
            "Tyne", "Quayside", "Elswick"],
    },
    Place {
        slug: "bristol", name: "Bristol Job Rotation Partnership",
        areas: &["E06000023"], region: "South West",
        council: "Bristol City Council", college: "City of Bristol College",
        jobcentre: "Jobcentre Plus Bristol", advice: "Citizens Advice Bristol",
        provider: "Avon Skills Partnership", university: "University of the West of England",
        chamber: "Business West",
        localities: &["Bedminster", "Clifton", "Easton", "Filton", "Fishponds", "Hartcliffe",
            "Knowle", "Southmead", "Avonmouth", "Redcliffe"],
    },
    Place {
        slug: "cardiff", name: "Cardiff Job Rotation Partnership",
        areas: &["W06000015"], region: "Wales",
        council: "Cardiff Council", college: "Cardiff and Vale College",
        jobcentre: "Jobcentre Plus Cardiff", advice: "Citizens Advice Cardiff and Vale",
        provider: "Taff Training Partnership", university: "Cardiff Metropolitan University",
        chamber: "Cardiff Chamber of Commerce",
        localities: &["Butetown", "Canton", "Cathays", "Ely", "Grangetown", "Llanishen", "Splott",
            "Roath", "Rumney", "Taff"],
    },
];

/// The sectors employers are drawn from, with their weights (per cent) and
/// the nouns their names are made of. Care dominates, as it does in the
/// UK pilots.
#[rustfmt::skip]
const SECTORS: &[(Sector, u32, &[&str])] = &[
    (Sector::Q, 26, &["Care Homes", "Home Care", "Community Health", "Supported Living",
        "Nursing Home", "Medical Centre", "Hospice", "Dental Practice"]),
    (Sector::C, 12, &["Ceramics", "Engineering", "Precision Components", "Foods", "Packaging",
        "Print", "Plastics", "Metal Finishing"]),
    (Sector::G, 12, &["Retail", "Wholesale", "Superstore", "Motor Parts", "Pharmacy",
        "Builders Merchants"]),
    (Sector::H, 10, &["Logistics", "Distribution", "Transport", "Freight", "Couriers", "Buses"]),
    (Sector::I, 9, &["Hotels", "Catering", "Hospitality", "Restaurants", "Event Catering"]),
    (Sector::N, 8, &["Facilities Management", "Cleaning Services", "Security Services",
        "Contact Centre"]),
    (Sector::P, 8, &["Academy Trust", "Nursery", "Learning Trust", "Primary School"]),
    (Sector::F, 7, &["Construction", "Building Services", "Roofing", "Electrical Contractors"]),
    (Sector::J, 2, &["Digital", "Software"]),
    (Sector::K, 1, &["Credit Union"]),
    (Sector::M, 2, &["Surveyors", "Architects"]),
    (Sector::R, 2, &["Leisure Trust", "Arts Centre"]),
    (Sector::S, 1, &["Community Trust"]),
];

/// Who delivers a course.
#[derive(Clone, Copy, PartialEq)]
enum Deliverer {
    College,
    Provider,
    University,
}

/// A course an employee can be released for: title, RQF level, the sectors
/// it suits (`*` for every sector) and who delivers it.
#[rustfmt::skip]
const COURSES: &[(&str, u8, &str, Deliverer)] = &[
    ("Level 2 Diploma in Care", 2, "Q", Deliverer::College),
    ("Level 3 Diploma in Adult Care", 3, "Q", Deliverer::College),
    ("Level 3 Senior Healthcare Support Worker", 3, "Q", Deliverer::College),
    ("Level 4 Certificate in Principles of Leadership and Management for Adult Care", 4, "Q",
        Deliverer::Provider),
    ("Level 5 Diploma in Leadership and Management for Adult Care", 5, "Q", Deliverer::Provider),
    ("Nursing Associate Foundation Degree", 5, "Q", Deliverer::University),
    ("Level 2 Certificate in Retail Knowledge", 2, "G", Deliverer::College),
    ("Level 3 Retail Team Leader", 3, "G", Deliverer::Provider),
    ("Level 2 Certificate in Customer Service", 2, "GIN", Deliverer::College),
    ("Level 2 Certificate in Improving Operational Performance", 2, "C", Deliverer::Provider),
    ("Level 3 Diploma in Engineering Maintenance", 3, "C", Deliverer::College),
    ("Higher National Certificate in Engineering", 4, "C", Deliverer::College),
    ("Level 3 Award in Supervising Food Safety", 3, "CI", Deliverer::Provider),
    ("Level 2 Certificate in Warehousing and Storage", 2, "HG", Deliverer::Provider),
    ("LGV Category C Licence and Driver CPC", 2, "H", Deliverer::Provider),
    ("Level 3 Certificate in Logistics and Transport", 3, "H", Deliverer::Provider),
    ("Level 2 Diploma in Professional Cookery", 2, "I", Deliverer::College),
    ("Level 3 Diploma in Hospitality Supervision and Leadership", 3, "I", Deliverer::College),
    ("Level 2 Certificate in Cleaning Principles", 2, "N", Deliverer::Provider),
    ("Level 3 Diploma in Business Administration", 3, "NJKMRS", Deliverer::College),
    ("Level 3 Certificate in Supporting Teaching and Learning", 3, "P", Deliverer::College),
    ("Level 3 Diploma for the Early Years Workforce", 3, "P", Deliverer::College),
    ("Level 5 Diploma in Education and Training", 5, "P", Deliverer::University),
    ("Level 2 Diploma in Bricklaying", 2, "F", Deliverer::College),
    ("Level 3 Diploma in Electrotechnical Installation", 3, "F", Deliverer::College),
    ("Level 3 NVQ Diploma in Occupational Work Supervision (Construction)", 3, "F",
        Deliverer::Provider),
    ("Level 4 Data Analyst", 4, "JKM", Deliverer::University),
    ("Level 3 Certificate in Team Leading", 3, "*", Deliverer::Provider),
    ("Level 5 Diploma in Management and Leadership", 5, "*", Deliverer::University),
    ("Level 2 Certificate in IT User Skills", 2, "*", Deliverer::College),
    ("Functional Skills Mathematics Level 2", 2, "*", Deliverer::College),
];

const PREPARATION_LEFT_REASONS: &[&str] = &[
    "found other work",
    "health reasons",
    "caring responsibilities",
    "moved out of the area",
    "lost contact",
    "did not want to continue",
];
const TRAINING_LEFT_REASONS: &[&str] = &[
    "left the employer",
    "health reasons",
    "caring responsibilities",
    "course too demanding",
    "course withdrawn by the provider",
    "pressure of work",
];
const REFUSAL_REASONS: &[&str] = &[
    "in paid work of 16 hours or more a week",
    "lives outside the partnership area",
    "no right to work in the UK",
    "in full-time education",
    "not available for the placement hours",
];
const RETRACTION_REASONS: &[&str] = &[
    "entered in error",
    "recorded against the wrong person",
    "duplicate of an entry from another system",
    "wrong date recorded",
];

/// The partner services that publish, per partnership.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Service {
    Board,
    Jobcentre,
    Advice,
    College,
    Training,
    UnionLearning,
    Evaluation,
    /// An employer's HR system, by index in the partnership's employers.
    Employer(usize),
}

const SERVICE_SUFFIXES: [&str; 7] = [
    "board",
    "jobcentre",
    "advice",
    "college",
    "training",
    "unionlearn",
    "evaluation",
];

// ---------------------------------------------------------------------------
// Simulation state.
// ---------------------------------------------------------------------------

struct Employer {
    id: Uuid,
    sector: Sector,
    size: Size,
    area: &'static str,
    name: String,
    source: String,
}

/// A rotation as the partnership sees it between placements.
struct RotationSlot {
    id: Uuid,
    employer: usize,
    /// Bumped every time a placement takes the rotation up again, so that a
    /// pending close of an earlier idle spell can tell it is stale.
    generation: u32,
    idle: bool,
}

struct Partnership {
    place: &'static Place,
    slug: String,
    name: String,
    services: [String; 7],
    /// Enrolled employers, in enrolment order; never shrinks.
    employers: Vec<Employer>,
    /// Founding employers, named on the board before they enrol.
    founders: VecDeque<Employer>,
    /// Employer indices repeated by size, so that larger employers run
    /// more rotations.
    tickets: Vec<usize>,
    employer_target: usize,
    /// How many employers of each sector have been named, for unique names.
    named: [u32; 21],
    rotations: HashMap<u64, RotationSlot>,
    next_rotation: u64,
    /// Rotations whose placement has finished and which are not closed.
    idle: Vec<u64>,
    /// Recently refused jobseekers (never reassessed).
    refused: VecDeque<Uuid>,
    jobseekers: u32,
    arrived: u32,
    arrival_from: Time,
    arrival_span: Time,
}

impl Partnership {
    fn source(&self, service: Service) -> &str {
        match service {
            Service::Board => &self.services[0],
            Service::Jobcentre => &self.services[1],
            Service::Advice => &self.services[2],
            Service::College => &self.services[3],
            Service::Training => &self.services[4],
            Service::UnionLearning => &self.services[5],
            Service::Evaluation => &self.services[6],
            Service::Employer(i) => &self.employers[i].source,
        }
    }

    fn deliverer_name(&self, deliverer: Deliverer) -> &'static str {
        match deliverer {
            Deliverer::College => self.place.college,
            Deliverer::Provider => self.place.provider,
            Deliverer::University => self.place.university,
        }
    }
}

/// An event about to be written, before it gets its id.
#[derive(Clone, Debug)]
struct Draft {
    partnership: usize,
    source: Service,
    subject: Subject,
    expected_version: Option<u64>,
    correlation: Option<Uuid>,
    data: EventData,
}

type Agenda<T> = VecDeque<(Time, T)>;

fn agenda<T>(mut steps: Vec<(Time, T)>) -> Agenda<T> {
    // Stable, so that steps at the same second keep their lifecycle order.
    steps.sort_by_key(|(at, _)| *at);
    steps.into()
}

enum SetupStep {
    Register,
    EnrolFounder,
}

/// A jobseeker from referral to the end of preparation.
struct Journey {
    partnership: usize,
    person: Uuid,
    referred_by: ReferredBy,
    unemployed_weeks: u32,
    planned_weeks: u32,
    provider: Deliverer,
    agenda: Agenda<JourneyStep>,
}

enum JourneyStep {
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

/// One substitute covering one or more releases in one rotation, and what
/// follows for the people involved.
struct Placement {
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
    agenda: Agenda<PlacementStep>,
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

enum PlacementStep {
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

enum Thread {
    Setup(usize, Agenda<SetupStep>),
    Journey(Journey),
    Placement(Placement),
}

impl Thread {
    fn next_time(&self) -> Option<Time> {
        match self {
            Self::Setup(_, agenda) => agenda.front().map(|s| s.0),
            Self::Journey(j) => j.agenda.front().map(|s| s.0),
            Self::Placement(p) => p.agenda.front().map(|s| s.0),
        }
    }
}

enum Task {
    Thread(Box<Thread>),
    Arrival(usize),
    /// A leaf event reported after its effective time.
    Late(Box<(Time, Draft)>),
    Retraction(Box<Draft>),
}

/// A task in the queue. The key packs the submission time (upper 32 bits:
/// seconds, enough for a century) and a push counter (lower 32 bits), so
/// that ties keep push order and the heap compares one integer.
struct Entry {
    key: u64,
    task: Task,
}

impl Entry {
    fn at(&self) -> Time {
        (self.key >> 32) as Time
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
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

    fn new_partnership(&mut self, index: usize, jobseekers: u32) -> Partnership {
        let place = &PLACES[index % PLACES.len()];
        let round = index / PLACES.len();
        let (slug, name) = if round == 0 {
            (place.slug.to_owned(), place.name.to_owned())
        } else {
            (
                format!("{}-{}", place.slug, round + 1),
                format!("{} ({})", place.name, round + 1),
            )
        };
        let services = SERVICE_SUFFIXES.map(|suffix| format!("urn:service:{slug}-{suffix}"));
        let arrival_from = (14 * DAY).min(self.end / 10);
        let arrival_span = (self.end * 75 / 100 - arrival_from).max(1);
        let mut partnership = Partnership {
            place,
            slug,
            name,
            services,
            employers: Vec::new(),
            founders: VecDeque::new(),
            tickets: Vec::new(),
            employer_target: (jobseekers as usize / 9).max(4),
            named: [0; 21],
            rotations: HashMap::new(),
            next_rotation: 0,
            idle: Vec::new(),
            refused: VecDeque::new(),
            jobseekers,
            arrived: 0,
            arrival_from,
            arrival_span,
        };
        // The founders are a care provider, a manufacturer or retailer and a
        // logistics firm: the sectors that usually start such schemes.
        for sector in [
            Sector::Q,
            *pick(&mut self.rng, &[(Sector::C, 1), (Sector::G, 1)]),
            Sector::H,
        ] {
            let size = *pick(&mut self.rng, &[(Size::Medium, 1), (Size::Large, 2)]);
            let founder = new_employer(&mut self.rng, &mut partnership, sector, size);
            partnership.founders.push_back(founder);
        }
        partnership
    }

    // --- the queue -----------------------------------------------------

    fn push(&mut self, at: Time, task: Task) {
        self.seq = self.seq.wrapping_add(1);
        let at = u64::try_from(at).unwrap_or(0).min(u64::from(u32::MAX));
        self.queue.push(Reverse(Entry {
            key: at << 32 | u64::from(self.seq),
            task,
        }));
    }

    fn push_thread(&mut self, thread: Thread) {
        if let Some(at) = thread.next_time()
            && at < self.end
        {
            self.push(at, Task::Thread(Box::new(thread)));
        }
    }

    fn run(&mut self, at: Time, task: Task) {
        match task {
            Task::Arrival(p) => self.arrival(p, at),
            Task::Late(late) => {
                let (time, draft) = *late;
                self.commit(time, at, draft);
            }
            Task::Retraction(draft) => self.commit(at, at, *draft),
            Task::Thread(mut thread) => {
                match thread.as_mut() {
                    Thread::Setup(p, agenda) => {
                        if let Some((time, step)) = agenda.pop_front() {
                            let p = *p;
                            self.setup_step(p, time, step);
                        }
                    }
                    Thread::Journey(journey) => {
                        if let Some((time, step)) = journey.agenda.pop_front() {
                            self.journey_step(journey, time, step);
                        }
                    }
                    Thread::Placement(placement) => {
                        if let Some((time, step)) = placement.agenda.pop_front() {
                            self.placement_step(placement, time, step);
                        }
                    }
                }
                if let Some(next) = thread.next_time()
                    && next < self.end
                {
                    self.push(next, Task::Thread(thread));
                }
            }
        }
    }

    // --- time and ids --------------------------------------------------

    fn date(&self, day: i64) -> NaiveDate {
        self.start + Days::new(day.max(0) as u64)
    }

    /// The first weekday on or after `day`.
    fn weekday_on_or_after(&self, day: i64) -> i64 {
        match (self.start_weekday + day).rem_euclid(7) {
            5 => day + 2,
            6 => day + 1,
            _ => day,
        }
    }

    /// A moment in office hours on the first weekday on or after `day`.
    fn work_time(&mut self, day: i64) -> Time {
        self.weekday_on_or_after(day) * DAY
            + self.rng.random_range(8 * HOUR..17 * HOUR + 30 * MINUTE)
    }

    /// A moment in office hours on the last weekday on or before `day`.
    fn work_time_back(&mut self, day: i64) -> Time {
        let day = match (self.start_weekday + day).rem_euclid(7) {
            5 => day - 1,
            6 => day - 2,
            _ => day,
        };
        day * DAY + self.rng.random_range(8 * HOUR..17 * HOUR + 30 * MINUTE)
    }

    /// A moment in office hours `min..=max` days after `t`, and strictly
    /// after it, so that steps that depend on each other stay in order.
    fn after(&mut self, t: Time, min_days: i64, max_days: i64) -> Time {
        let day = t.div_euclid(DAY) + self.rng.random_range(min_days..=max_days.max(min_days));
        let candidate = self.work_time(day);
        if candidate > t {
            candidate
        } else {
            t + self.rng.random_range(5 * MINUTE..2 * HOUR)
        }
    }

    /// A v7 event id from the effective time and random bytes.
    fn event_id(rng: &mut StdRng, start_unix: i64, time: Time) -> Uuid {
        let millis = (start_unix + time).max(0) as u64 * 1000 + rng.random_range(0..1000);
        Builder::from_unix_timestamp_millis(millis, &rng.random()).into_uuid()
    }

    // --- emission ------------------------------------------------------

    /// Writes a good event at `time`, or queues it as a late report.
    fn emit(&mut self, time: Time, draft: Draft) {
        if time >= self.end {
            return;
        }
        if is_leaf(draft.data.event_type()) && self.rng.random_bool(LATE_REPORT_RATE) {
            let delay = self.rng.random_range(7 * DAY..=56 * DAY);
            self.push(time + delay, Task::Late(Box::new((time, draft))));
            return;
        }
        self.commit(time, time, draft);
    }

    /// Writes a good event with effective time `time`, submitted at
    /// `submitted`, and perhaps a bad line after it.
    fn commit(&mut self, time: Time, submitted: Time, draft: Draft) {
        let id = Self::event_id(&mut self.rng, self.start_unix, time);
        let line = self.render(&draft, id, time);
        let event_type = draft.data.event_type();
        if is_retractable(event_type) && self.rng.random_bool(RETRACTION_RATE) {
            let at = self.after(submitted, 1, 21);
            if at < self.end {
                let reason = *choose(&mut self.rng, RETRACTION_REASONS);
                let retraction = Draft {
                    partnership: draft.partnership,
                    source: draft.source,
                    subject: draft.subject.clone(),
                    expected_version: None,
                    correlation: draft.correlation,
                    data: EventData::Retracted(Retracted {
                        event_id: id,
                        reason: reason.to_owned(),
                    }),
                };
                self.push(at, Task::Retraction(Box::new(retraction)));
            }
        }
        let bad = self.invalid_rate > 0.0 && self.bad_rng.random_bool(self.invalid_rate);
        let bad = bad.then(|| self.bad_line(&draft, id, time, &line));
        self.out.push_back(Simulated {
            line,
            expected: Expected::Accepted,
        });
        if let Some(bad) = bad {
            self.out.push_back(bad);
        }
    }

    /// The line a partner service would send: the attributes in the order
    /// `Envelope` writes them. Every attribute is made of characters that
    /// JSON needs no escape for (UUIDs, slugs, URNs built from slugs, RFC
    /// 3339 times), so they are written as they are, which is much faster
    /// than a serialiser; `data` goes through serde from the catalogue types.
    fn render(&self, draft: &Draft, id: Uuid, time: Time) -> String {
        let partnership = &self.partnerships[draft.partnership];
        let mut line = Vec::with_capacity(640);
        line.extend_from_slice(br#"{"specversion":"1.0","id":""#);
        push_uuid(&mut line, id);
        line.extend_from_slice(br#"","source":""#);
        line.extend_from_slice(partnership.source(draft.source).as_bytes());
        line.extend_from_slice(br#"","type":""#);
        line.extend_from_slice(draft.data.event_type().as_str().as_bytes());
        line.extend_from_slice(br#"","subject":""#);
        match &draft.subject {
            Subject::Partnership(slug) => {
                line.extend_from_slice(b"partnership/");
                line.extend_from_slice(slug.as_bytes());
            }
            other => {
                line.extend_from_slice(other.kind().as_str().as_bytes());
                line.push(b'/');
                push_uuid(&mut line, other.uuid().unwrap_or_default());
            }
        }
        line.extend_from_slice(br#"","time":""#);
        push_time(
            &mut line,
            self.date(time.div_euclid(DAY)),
            time.rem_euclid(DAY),
        );
        line.extend_from_slice(br#"","partnership":""#);
        line.extend_from_slice(partnership.slug.as_bytes());
        line.push(b'"');
        if let Some(version) = draft.expected_version {
            line.extend_from_slice(br#","expectedversion":"#);
            line.extend_from_slice(version.to_string().as_bytes());
        }
        if let Some(correlation) = draft.correlation {
            line.extend_from_slice(br#","correlationid":""#);
            push_uuid(&mut line, correlation);
            line.push(b'"');
        }
        line.extend_from_slice(br#","data":"#);
        serde_json::to_writer(&mut line, &draft.data).expect("event data always serialises");
        line.push(b'}');
        String::from_utf8(line).expect("a rendered event is UTF-8")
    }

    // --- bad lines -----------------------------------------------------

    /// One line the ledger must refuse (or answer `duplicate`), derived from
    /// the good event just written. Each kind is built so that exactly one
    /// rule fails, whatever order the ledger checks them in.
    fn bad_line(&mut self, draft: &Draft, id: Uuid, time: Time, line: &str) -> Simulated {
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
        let rejected = |line: String, code: &'static str| Simulated {
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
                rejected(line[..cut].to_owned(), INVALID_EVENT)
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
                rejected(broken, INVALID_EVENT)
            }
            Kind::UnknownType => {
                let good = self.render(draft, fresh, time);
                let broken = mutate(&good, |event| {
                    event.insert("type".into(), Value::from("jobrotation.rotation.paused"));
                });
                rejected(broken, INVALID_EVENT)
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
                rejected(self.render(&copy, fresh, time), INVALID_EVENT)
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
                rejected(self.render(&copy, fresh, time), INVALID_EVENT)
            }
            Kind::FarFuture => {
                let copy = Draft {
                    expected_version: None,
                    ..draft.clone()
                };
                rejected(
                    self.render(&copy, fresh, time + 36_525 * DAY),
                    INVALID_EVENT,
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
                rejected(self.render(&copy, fresh, time), UNKNOWN_STREAM)
            }
            Kind::VersionConflict => {
                let expected = *choose(&mut self.bad_rng, &[0, 1_000_000]);
                let copy = Draft {
                    expected_version: Some(expected),
                    ..draft.clone()
                };
                rejected(self.render(&copy, fresh, time), VERSION_CONFLICT)
            }
            Kind::IdConflict => {
                // The same id, an hour later: a publisher that reused an id.
                rejected(self.render(draft, id, time + HOUR), DUPLICATE_ID_CONFLICT)
            }
            Kind::Rule => {
                let copy = self.rule_violation(draft);
                rejected(self.render(&copy, fresh, time), RULE_VIOLATION)
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

    // --- partnerships and employers -----------------------------------

    fn setup_step(&mut self, p: usize, time: Time, step: SetupStep) {
        match step {
            SetupStep::Register => {
                let partnership = &self.partnerships[p];
                let place = partnership.place;
                let mut members = vec![
                    member(place.council, MemberKind::LocalAuthority),
                    member(place.college, MemberKind::College),
                    member(place.jobcentre, MemberKind::Jobcentre),
                    member(place.advice, MemberKind::AdviceService),
                    member(place.provider, MemberKind::TrainingProvider),
                    member(&format!("UNISON {}", place.region), MemberKind::TradeUnion),
                    member(&format!("Unite {}", place.region), MemberKind::TradeUnion),
                    member(&format!("GMB {}", place.region), MemberKind::TradeUnion),
                ];
                members.extend(
                    partnership
                        .founders
                        .iter()
                        .map(|e| member(&e.name, MemberKind::Employer)),
                );
                members.push(member(place.chamber, MemberKind::Other));
                let data = EventData::PartnershipRegistered(PartnershipRegistered {
                    name: partnership.name.clone(),
                    areas: place.areas.iter().map(|a| (*a).to_owned()).collect(),
                    members,
                });
                let draft = Draft {
                    partnership: p,
                    source: Service::Board,
                    subject: Subject::Partnership(partnership.slug.clone()),
                    expected_version: Some(0),
                    correlation: None,
                    data,
                };
                self.emit(time, draft);
            }
            SetupStep::EnrolFounder => {
                if let Some(founder) = self.partnerships[p].founders.pop_front() {
                    self.enrol(p, time, founder);
                }
            }
        }
    }

    fn enrol(&mut self, p: usize, time: Time, employer: Employer) -> usize {
        let data = EventData::EmployerEnrolled(EmployerEnrolled {
            name: employer.name.clone(),
            sector: employer.sector,
            size: employer.size,
            area: employer.area.to_owned(),
        });
        let draft = Draft {
            partnership: p,
            source: Service::Board,
            subject: Subject::Employer(employer.id),
            expected_version: self.rng.random_bool(0.5).then_some(0),
            correlation: None,
            data,
        };
        self.emit(time, draft);
        let partnership = &mut self.partnerships[p];
        let index = partnership.employers.len();
        let weight = match employer.size {
            Size::Micro => 1,
            Size::Small => 2,
            Size::Medium => 3,
            Size::Large => 5,
        };
        partnership
            .tickets
            .extend(std::iter::repeat_n(index, weight));
        partnership.employers.push(employer);
        index
    }

    /// An employer for a new rotation: a new one while the partnership is
    /// still recruiting employers, else an enrolled one, larger ones more
    /// often. Enrolling writes `employer.enrolled` at `time`.
    fn employer_for_rotation(&mut self, p: usize, time: Time) -> usize {
        let partnership = &self.partnerships[p];
        let enrolled = partnership.employers.len();
        let target = partnership.employer_target;
        let recruit = if enrolled == 0 {
            1.0
        } else if enrolled >= target {
            0.0
        } else {
            0.3 * (1.0 - enrolled as f64 / target as f64)
        };
        if self.rng.random_bool(recruit) {
            let sectors: Vec<(Sector, u32)> = SECTORS.iter().map(|(s, w, _)| (*s, *w)).collect();
            let sector = *pick(&mut self.rng, &sectors);
            let size = *pick(&mut self.rng, EMPLOYER_SIZES);
            let employer = new_employer(&mut self.rng, &mut self.partnerships[p], sector, size);
            self.enrol(p, time, employer)
        } else {
            let tickets = &self.partnerships[p].tickets;
            tickets[self.rng.random_range(0..tickets.len())]
        }
    }

    // --- jobseekers ----------------------------------------------------

    fn arrival(&mut self, p: usize, at: Time) {
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

    fn journey_step(&mut self, j: &Journey, time: Time, step: JourneyStep) {
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
        }
    }

    // --- placements ----------------------------------------------------

    /// Agrees a placement for `substitute`: takes up an idle rotation or
    /// agrees a new one (enrolling its employer if need be), and starts the
    /// placement's thread.
    fn plan_placement(&mut self, p: usize, substitute: Uuid, time: Time, start_day: i64) {
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

    fn placement_step(&mut self, pl: &Placement, time: Time, step: PlacementStep) {
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

fn new_employer(rng: &mut StdRng, p: &mut Partnership, sector: Sector, size: Size) -> Employer {
    let sector_index = Sector::ALL.iter().position(|s| *s == sector).unwrap_or(0);
    let nouns = SECTORS
        .iter()
        .find(|(s, _, _)| *s == sector)
        .map_or(&["Services"][..], |(_, _, nouns)| nouns);
    let count = p.named[sector_index] as usize;
    p.named[sector_index] += 1;
    let localities = p.place.localities;
    let locality = localities[count % localities.len()];
    let noun = nouns[(count / localities.len()) % nouns.len()];
    let round = count / (localities.len() * nouns.len());
    let suffix = match size {
        Size::Micro | Size::Small => *pick(rng, &[("Ltd", 5), ("CIC", 1)]),
        Size::Medium => *pick(rng, &[("Ltd", 3), ("Group", 1)]),
        Size::Large => *pick(rng, &[("Group", 2), ("plc", 1), ("Ltd", 1)]),
    };
    let name = if round == 0 {
        format!("{locality} {noun} {suffix}")
    } else {
        format!("{locality} {noun} {} {suffix}", round + 1)
    };
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let source = format!("urn:service:{slug}-hr");
    Employer {
        id: fresh_id(rng),
        sector,
        size,
        area: p.place.areas[rng.random_range(0..p.place.areas.len())],
        name,
        source,
    }
}

fn fresh_id(rng: &mut StdRng) -> Uuid {
    Builder::from_random_bytes(rng.random()).into_uuid()
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

fn member(organisation: &str, kind: MemberKind) -> Member {
    Member {
        organisation: organisation.to_owned(),
        kind,
    }
}

/// Events nothing else depends on: they may arrive late or be retracted.
fn is_leaf(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::MentoringSession | EventType::OutcomeObserved | EventType::PersonProgressed
    )
}

fn is_retractable(event_type: EventType) -> bool {
    is_leaf(event_type) || event_type == EventType::PreparationLeft
}

fn is_creating(event_type: EventType) -> bool {
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

fn push_uuid(line: &mut Vec<u8>, id: Uuid) {
    let mut buffer = Uuid::encode_buffer();
    line.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
}

/// RFC 3339 in UTC with whole seconds, e.g. `2024-03-04T09:30:12Z`.
fn push_time(line: &mut Vec<u8>, date: NaiveDate, seconds: i64) {
    let digits = |line: &mut Vec<u8>, value: i64, width: u32| {
        for place in (0..width).rev() {
            line.push(b'0' + (value / 10_i64.pow(place) % 10) as u8);
        }
    };
    digits(line, i64::from(date.year()), 4);
    line.push(b'-');
    digits(line, i64::from(date.month()), 2);
    line.push(b'-');
    digits(line, i64::from(date.day()), 2);
    line.push(b'T');
    digits(line, seconds / HOUR, 2);
    line.push(b':');
    digits(line, seconds % HOUR / MINUTE, 2);
    line.push(b':');
    digits(line, seconds % MINUTE, 2);
    line.push(b'Z');
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::time::Instant;

    use chrono::{DateTime, Utc};
    use rotation_events::{Envelope, YesNo};

    use super::*;

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

        fn try_append(&mut self, line: &str, now: DateTime<Utc>) -> Result<Expected, &'static str> {
            let envelope = Envelope::from_json(line.as_bytes()).map_err(|_| INVALID_EVENT)?;
            envelope.check_time(now).map_err(|_| INVALID_EVENT)?;
            let content = envelope.to_value().to_string();
            if let Some(previous) = self.ids.get(&envelope.id) {
                return if *previous == content {
                    Ok(Expected::Duplicate)
                } else {
                    Err(DUPLICATE_ID_CONFLICT)
                };
            }
            let key = envelope.subject.to_string();
            let version = self.streams.get(&key).map_or(0, |s| s.version);
            if envelope.expectedversion.is_some_and(|v| v != version) {
                return Err(VERSION_CONFLICT);
            }
            let creating = is_creating(envelope.event_type);
            match self.streams.get(&key) {
                None if !creating => return Err(UNKNOWN_STREAM),
                Some(_) if creating => return Err(RULE_VIOLATION),
                Some(s) if s.partnership != envelope.partnership => return Err(RULE_VIOLATION),
                _ => {}
            }
            let partnership_key = format!("partnership/{}", envelope.partnership);
            if envelope.event_type != EventType::PartnershipRegistered
                && !self.streams.contains_key(&partnership_key)
            {
                return Err(RULE_VIOLATION);
            }
            let data = envelope.data().map_err(|_| INVALID_EVENT)?;
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
        fn apply(&mut self, e: &Envelope, data: EventData) -> Result<(), &'static str> {
            let subject = e.subject.uuid();
            let fail = |ok: bool| if ok { Ok(()) } else { Err(RULE_VIOLATION) };
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

        fn apply_to_rotation(&mut self, id: Uuid, data: EventData) -> Result<(), &'static str> {
            let fail = |ok: bool| if ok { Ok(()) } else { Err(RULE_VIOLATION) };
            let rotation = self.rotations.get_mut(&id).unwrap();
            fail(!rotation.closed)?;
            match data {
                EventData::ReleaseStarted(d) => {
                    let employee = self.persons.get_mut(&d.employee);
                    let employee = employee.ok_or(RULE_VIOLATION)?;
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
                    let substitute = substitute.ok_or(RULE_VIOLATION)?;
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
                    let release = release.ok_or(RULE_VIOLATION)?;
                    fail(release.2)?;
                    release.2 = false;
                }
                EventData::ReleaseEnded(d) => {
                    let release = rotation.releases.get_mut(&d.release_id);
                    let release = release.ok_or(RULE_VIOLATION)?;
                    fail(release.1)?;
                    release.1 = false;
                    self.persons.get_mut(&release.0).unwrap().active_release = false;
                }
                EventData::SubstitutionEnded(d) => {
                    let substitution = rotation.substitutions.get_mut(&d.substitution_id);
                    let substitution = substitution.ok_or(RULE_VIOLATION)?;
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
            INVALID_EVENT,
            UNKNOWN_STREAM,
            RULE_VIOLATION,
            DUPLICATE_ID_CONFLICT,
            VERSION_CONFLICT,
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
                EventData::EmployerEnrolled(d) => {
                    count(d.sector == Sector::Q, &mut m.care_employers)
                }
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
}
