//! The cells of one row of each table, as the text the CSV files hold:
//! ids as pseudonyms, missing values as empty cells, enumerations in the
//! contract's spelling.

use std::fmt::Display;

use rotation_projections::dataset::{JobseekerRow, ReleaseRow, SubstitutionRow, TrainingOutcome};
use rotation_projections::outcomes::{AgeBand, FollowUp};

use super::pseudonym::Pseudonymiser;

fn cell<T: Display>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

pub(super) fn jobseeker_cells(
    row: &JobseekerRow,
    p: &Pseudonymiser,
) -> Vec<(&'static str, String)> {
    vec![
        ("pid", p.of(row.pid)),
        ("partnership", row.partnership.clone()),
        ("age_band", cell(row.age_band.map(AgeBand::as_str))),
        ("sex", cell(row.sex)),
        ("ethnicity", cell(row.ethnicity)),
        ("disability", cell(row.disability)),
        ("lone_parent", cell(row.lone_parent)),
        ("health_condition", cell(row.health_condition)),
        ("benefit", cell(row.benefit)),
        (
            "unemployed_weeks_at_referral",
            cell(row.unemployed_weeks_at_referral),
        ),
        ("referred_on", cell(row.referred_on)),
        ("referred_by", cell(row.referred_by)),
        ("eligible", cell(row.eligible)),
        (
            "preparation_completed",
            row.preparation_completed.to_string(),
        ),
        ("mentoring_sessions", row.mentoring_sessions.to_string()),
        (
            "first_substitution_start",
            cell(row.first_substitution_start),
        ),
        ("substitutions", row.substitutions.to_string()),
        ("substitution_days", row.substitution_days.to_string()),
        ("last_end_reason", cell(row.last_end_reason)),
        ("hired_by_host_employer", cell(row.hired_by_host_employer)),
        ("status_3m", cell(row.status_3m.map(FollowUp::as_str))),
        ("status_6m", cell(row.status_6m.map(FollowUp::as_str))),
        ("status_12m", cell(row.status_12m.map(FollowUp::as_str))),
        ("progressed", cell(row.progressed)),
    ]
}

pub(super) fn release_cells(row: &ReleaseRow, p: &Pseudonymiser) -> Vec<(&'static str, String)> {
    vec![
        ("rid", p.of(row.rid)),
        ("pid", p.of(row.pid)),
        ("employer", cell(row.employer.map(|e| p.of(e)))),
        ("sector", cell(row.sector)),
        ("size", cell(row.size)),
        ("rqf_level", row.rqf_level.to_string()),
        ("hours_per_week", row.hours_per_week.to_string()),
        ("release_start", row.release_start.to_string()),
        ("release_end", cell(row.release_end)),
        (
            "training_outcome",
            cell(row.training_outcome.map(TrainingOutcome::as_str)),
        ),
        ("qualification_achieved", cell(row.qualification_achieved)),
        ("progressed_12m", row.progressed_12m.to_string()),
        ("progression_kind", cell(row.progression_kind)),
    ]
}

pub(super) fn substitution_cells(
    row: &SubstitutionRow,
    p: &Pseudonymiser,
) -> Vec<(&'static str, String)> {
    vec![
        ("sid", p.of(row.sid)),
        ("pid", p.of(row.pid)),
        ("employer", cell(row.employer.map(|e| p.of(e)))),
        ("sector", cell(row.sector)),
        ("start", row.start.to_string()),
        ("end", cell(row.end)),
        ("days", cell(row.days)),
        ("hours_per_week", row.hours_per_week.to_string()),
        ("end_reason", cell(row.end_reason)),
        ("covers", row.covers.to_string()),
    ]
}
