//! The assumed proportions of the module docs, in one place. Weights are
//! relative (per cent where they add up to 100); ranges are inclusive.

use rotation_events::{
    Benefit, EndReason, Ethnicity, Mentor, ProgressionKind, ReferredBy, Sex, Size, Status,
    YesNo,
};

// Employers.
pub(super) const EMPLOYER_SIZES: &[(Size, u32)] =
    &[(Size::Micro, 12), (Size::Small, 30), (Size::Medium, 33), (Size::Large, 25)];

// Jobseekers at referral.
pub(super) const UNEMPLOYED_WEEKS: &[((u32, u32), u32)] =
    &[((4, 25), 12), ((26, 51), 38), ((52, 103), 30), ((104, 260), 20)];
pub(super) const REFERRERS: &[(ReferredBy, u32)] = &[
    (ReferredBy::Jobcentre, 70), (ReferredBy::AdviceService, 12), (ReferredBy::SelfReferral, 8),
    (ReferredBy::TradeUnion, 5), (ReferredBy::Other, 5),
];
pub(super) const AGES: &[((i32, i32), u32)] = &[((16, 24), 22), ((25, 49), 53), ((50, 64), 25)];
pub(super) const SEXES: &[(Sex, u32)] =
    &[(Sex::Female, 47), (Sex::Male, 49), (Sex::Other, 1), (Sex::PreferNotToSay, 3)];
pub(super) const ETHNICITIES: &[(Ethnicity, u32)] = &[
    (Ethnicity::White, 74), (Ethnicity::Asian, 12), (Ethnicity::Black, 6), (Ethnicity::Mixed, 3),
    (Ethnicity::Other, 2), (Ethnicity::PreferNotToSay, 3),
];
pub(super) const DISABILITY: &[(YesNo, u32)] =
    &[(YesNo::Yes, 20), (YesNo::No, 75), (YesNo::PreferNotToSay, 5)];
pub(super) const LONE_PARENT: f64 = 0.10;
pub(super) const HEALTH_CONDITION: &[(YesNo, u32)] =
    &[(YesNo::Yes, 26), (YesNo::No, 69), (YesNo::PreferNotToSay, 5)];
pub(super) const BENEFITS: &[(Benefit, u32)] = &[
    (Benefit::UniversalCredit, 72), (Benefit::Jsa, 8), (Benefit::Esa, 8), (Benefit::None, 8),
    (Benefit::Other, 4),
];
pub(super) const QUALIFICATION_LEVELS: &[(u8, u32)] =
    &[(0, 15), (1, 25), (2, 30), (3, 20), (4, 7), (5, 3)];

// Eligibility and preparation.
pub(super) const ELIGIBLE_LONG_TERM_UNEMPLOYED: f64 = 0.87;
/// Unemployed under 26 weeks: admitted as priority groups, and flagged.
pub(super) const ELIGIBLE_SHORT_TERM_UNEMPLOYED: f64 = 0.72;
pub(super) const REASSESSED_ELIGIBLE: f64 = 0.12;
pub(super) const PREPARATION_WEEKS: &[(u32, u32)] = &[(4, 15), (5, 15), (6, 35), (7, 15), (8, 20)];
pub(super) const PREPARATION_LEFT: f64 = 0.10;
pub(super) const PREPARATION_MENTORS: &[(Mentor, u32)] = &[
    (Mentor::Provider, 50), (Mentor::UnionLearningRep, 35), (Mentor::Employer, 10),
    (Mentor::Other, 5),
];
/// Admin data on those never placed, 6 and 12 months after referral.
pub(super) const COMPARISON_STATUSES: &[(Status, u32)] = &[
    (Status::Employed, 28), (Status::SelfEmployed, 2), (Status::Education, 5),
    (Status::Unemployed, 47), (Status::Inactive, 15), (Status::Unknown, 3),
];

// Rotations, releases and substitutions.
pub(super) const ROTATION_REUSED: f64 = 0.5;
pub(super) const COVERS: &[(usize, u32)] = &[(1, 85), (2, 13), (3, 2)];
pub(super) const RELEASE_HOURS: &[(f64, u32)] =
    &[(7.5, 15), (15.0, 30), (22.5, 25), (30.0, 15), (37.5, 15)];
/// Weeks of training; over 26 weeks is a board flag.
pub(super) const TRAINING_WEEKS: &[(i64, u32)] = &[
    (8, 10), (10, 8), (12, 20), (13, 12), (16, 15), (20, 10), (24, 8), (26, 12),
    (30, 2), (34, 2), (39, 1),
];
pub(super) const TRAINING_COMPLETED: f64 = 0.85;
pub(super) const QUALIFICATION_ACHIEVED: f64 = 0.9;
/// The substitute works exactly the covered training hours.
pub(super) const HOUR_FOR_HOUR: f64 = 0.92;
/// How substitutions end part-way; `None` runs until the cover ends.
pub(super) const EARLY_ENDS: &[(Option<EndReason>, u32)] =
    &[(Some(EndReason::LeftEarly), 14), (Some(EndReason::Dismissed), 4), (None, 82)];
/// Of those that run until the cover ends.
pub(super) const HIRED_BY_EMPLOYER: f64 = 0.4;
pub(super) const PLACEMENT_MENTORS: &[(Mentor, u32)] = &[
    (Mentor::Employer, 45), (Mentor::UnionLearningRep, 40), (Mentor::Provider, 10),
    (Mentor::Other, 5),
];

// After the placement.
pub(super) const HIRED_RECORD_JOB: f64 = 0.8;
pub(super) const JOB_AFTER_COMPLETION: f64 = 0.4;
pub(super) const JOB_AFTER_LEAVING_EARLY: f64 = 0.25;
pub(super) const JOB_AFTER_DISMISSAL: f64 = 0.15;
pub(super) const JOB_PROGRESSIONS: &[(ProgressionKind, u32)] = &[
    (ProgressionKind::OtherJob, 55), (ProgressionKind::PermanentJob, 20),
    (ProgressionKind::Education, 15), (ProgressionKind::SelfEmployment, 10),
];
pub(super) const OUTCOME_RESPONSE: f64 = 0.88;
pub(super) const PLACED_AGAIN: f64 = 0.15;
pub(super) const HIRED_STATUSES: &[(Status, u32)] = &[
    (Status::Employed, 87), (Status::Unemployed, 5), (Status::Inactive, 3),
    (Status::Education, 1), (Status::Unknown, 4),
];
pub(super) const NO_JOB_STATUSES: &[(Status, u32)] = &[
    (Status::Employed, 22), (Status::SelfEmployed, 2), (Status::Education, 6),
    (Status::Unemployed, 52), (Status::Inactive, 12), (Status::Unknown, 6),
];
pub(super) const EMPLOYED_HOURS: &[(f64, u32)] =
    &[(16.0, 15), (22.5, 20), (30.0, 25), (37.5, 35), (40.0, 5)];

// Released employees.
pub(super) const EMPLOYEE_SEXES: &[(Sex, u32)] =
    &[(Sex::Female, 55), (Sex::Male, 43), (Sex::Other, 1), (Sex::PreferNotToSay, 1)];
pub(super) const EMPLOYEE_ETHNICITIES: &[(Ethnicity, u32)] = &[
    (Ethnicity::White, 78), (Ethnicity::Asian, 10), (Ethnicity::Black, 5), (Ethnicity::Mixed, 3),
    (Ethnicity::Other, 2), (Ethnicity::PreferNotToSay, 2),
];
pub(super) const EMPLOYEE_DISABILITY: &[(YesNo, u32)] =
    &[(YesNo::Yes, 12), (YesNo::No, 85), (YesNo::PreferNotToSay, 3)];
pub(super) const EMPLOYEE_QUALIFICATION_LEVELS: &[(u8, u32)] =
    &[(1, 15), (2, 40), (3, 30), (4, 15)];
pub(super) const QUALIFICATION_RECORDED: f64 = 0.35;
pub(super) const EMPLOYEE_PROGRESSED: f64 = 0.3;
pub(super) const EMPLOYEE_PROGRESSIONS: &[(ProgressionKind, u32)] = &[
    (ProgressionKind::Promotion, 30), (ProgressionKind::PayRise, 40),
    (ProgressionKind::NewRole, 30),
];
pub(super) const EMPLOYEE_STATUSES: &[(Status, u32)] = &[
    (Status::Employed, 92), (Status::Unemployed, 2), (Status::Inactive, 2), (Status::Unknown, 4),
];
pub(super) const EMPLOYEE_HOURS: &[(f64, u32)] = &[(37.5, 60), (30.0, 20), (22.5, 15), (16.0, 5)];
