//! The definitions that the dashboard and the evaluation datasets share
//! (contract sections 6 and 8): the age band at referral, observations,
//! implied or observed, the status window around a follow-up date, and
//! "into work".
//!
//! There is one definition of each here, so that a board and an evaluator
//! never count the same thing two ways.

use chrono::{Datelike, Months, NaiveDate};
use rotation_events::{EndReason, ProgressionKind, Status};
use serde::{Deserialize, Serialize};

/// How many days either side of a follow-up date an observation counts.
pub const WINDOW_DAYS: u64 = 31;

/// A substitute counts as into work when a job is observed within this many
/// months after the substitution's end.
pub const INTO_WORK_MONTHS: u32 = 6;

/// A person's labour market status on a date, observed (`outcome_observed`)
/// or implied (a hire by the host employer, a job progression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub date: NaiveDate,
    pub status: Status,
}

impl Observation {
    /// The observation a substitution's end implies: `hired_by_employer`
    /// means employed on the end date.
    pub fn implied_by_end(reason: EndReason, end: NaiveDate) -> Option<Self> {
        (reason == EndReason::HiredByEmployer).then_some(Self {
            date: end,
            status: Status::Employed,
        })
    }

    /// The observation a progression implies: a permanent or other job means
    /// employed, self-employment self-employed, education education.
    pub fn implied_by_progression(kind: ProgressionKind, date: NaiveDate) -> Option<Self> {
        kind.implied_status().map(|status| Self { date, status })
    }
}

/// What was recorded about a person that states or implies their status:
/// the records from which both the dashboard and the datasets take a
/// person's observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusRecord {
    /// An `outcome_observed` event.
    Observed(Status),
    /// A `person_progressed` event.
    Progressed(ProgressionKind),
    /// The end of a substitution in which the person was the substitute.
    SubstitutionEnded(EndReason),
}

impl Observation {
    /// The observation a record states or implies on its date; `None` for
    /// one that implies no status.
    pub fn of_record(record: StatusRecord, date: NaiveDate) -> Option<Self> {
        match record {
            StatusRecord::Observed(status) => Some(Self { date, status }),
            StatusRecord::Progressed(kind) => Self::implied_by_progression(kind, date),
            StatusRecord::SubstitutionEnded(reason) => Self::implied_by_end(reason, date),
        }
    }
}

/// A person's observations, observed and implied, from their records given
/// as `(position, date, record)` in any order. They come back in log order,
/// which [`follow_up`] uses to break ties on the same date.
pub fn observations(
    records: impl IntoIterator<Item = (u64, NaiveDate, StatusRecord)>,
) -> Vec<Observation> {
    let mut all: Vec<(u64, Observation)> = records
        .into_iter()
        .filter_map(|(position, date, record)| {
            Observation::of_record(record, date).map(|o| (position, o))
        })
        .collect();
    all.sort_unstable_by_key(|(position, _)| *position);
    all.into_iter().map(|(_, o)| o).collect()
}

/// `date` plus `months` calendar months, the day clamped to the month's end
/// (31 January plus one month is 28 or 29 February).
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// The status at a follow-up, as the datasets report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// The window's last day is after the reference date.
    NotDue,
    /// The window has passed and nothing was observed in it.
    Unknown,
    Observed(Status),
}

impl FollowUp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotDue => "not_due",
            Self::Unknown => "unknown",
            Self::Observed(status) => status.as_str(),
        }
    }
}

/// The status `months` after `anchor` (the last ended substitution's end):
/// the latest observation within [`WINDOW_DAYS`] either side of the
/// follow-up date. Among observations on the same date the one that comes
/// later in `observations` (log order) wins.
pub fn follow_up(
    observations: &[Observation],
    anchor: NaiveDate,
    months: u32,
    reference: NaiveDate,
) -> FollowUp {
    let target = add_months(anchor, months);
    let first = target - chrono::Days::new(WINDOW_DAYS);
    let last = target + chrono::Days::new(WINDOW_DAYS);
    if last > reference {
        return FollowUp::NotDue;
    }
    let mut latest: Option<&Observation> = None;
    for o in observations {
        if (first..=last).contains(&o.date) && latest.is_none_or(|l| o.date >= l.date) {
            latest = Some(o);
        }
    }
    latest.map_or(FollowUp::Unknown, |o| FollowUp::Observed(o.status))
}

/// Whether a substitute went into work after a substitution that ended on
/// `end`: employed or self-employed, observed or implied (a hire by the host
/// employer is implied at `end`), on a date from `end` to
/// [`INTO_WORK_MONTHS`] after it.
pub fn into_work(end: NaiveDate, reason: EndReason, observations: &[Observation]) -> bool {
    if reason == EndReason::HiredByEmployer {
        return true;
    }
    let last = add_months(end, INTO_WORK_MONTHS);
    observations.iter().any(|o| {
        matches!(o.status, Status::Employed | Status::SelfEmployed)
            && (end..=last).contains(&o.date)
    })
}

/// An age band at referral (contract section 8): the age is
/// `year(referred_on) - birth_year`, in whole years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgeBand {
    /// 16 to 24.
    Young,
    /// 25 to 49.
    Middle,
    /// 50 and over.
    Older,
}

impl AgeBand {
    /// Every band, youngest first.
    pub const ALL: &'static [AgeBand] = &[Self::Young, Self::Middle, Self::Older];

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Young => "16-24",
            Self::Middle => "25-49",
            Self::Older => "50+",
        }
    }

    /// The band of an age counted in whole years; `None` under 16, where the
    /// scheme has no band (such a value points to a wrong birth year).
    pub fn of_age(age: i32) -> Option<Self> {
        match age {
            16..=24 => Some(Self::Young),
            25..=49 => Some(Self::Middle),
            50.. => Some(Self::Older),
            _ => None,
        }
    }

    /// The band of a person born in `birth_year` and first referred on
    /// `referred_on`; `None` without either, or under 16. The dataset
    /// leaves such a cell empty and the dashboard files the person under
    /// `not_recorded`, so that both say the same of everyone.
    pub fn at_referral(birth_year: Option<i32>, referred_on: Option<NaiveDate>) -> Option<Self> {
        Self::of_age(referred_on?.year() - birth_year?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn obs(date: &str, status: Status) -> Observation {
        Observation {
            date: d(date),
            status,
        }
    }

    /// Checks the band of someone born in `birth_year` and referred on
    /// `referred_on`; `expect` is the contract's spelling, or "" for none.
    fn check(birth_year: Option<i32>, referred_on: Option<&str>, expect: &str) {
        let band = AgeBand::at_referral(birth_year, referred_on.map(d));
        assert_eq!(
            band.map_or("", AgeBand::as_str),
            expect,
            "born {birth_year:?}, referred {referred_on:?}"
        );
    }

    #[test]
    fn age_bands_count_years_from_the_birth_year_to_the_referral_year() {
        // Only the years count: born in 2000, referred on the first day of
        // 2025, is 25 whatever the birthday.
        check(Some(2000), Some("2025-01-01"), "25-49");
        check(Some(2001), Some("2025-12-31"), "16-24");
        check(Some(2009), Some("2025-06-01"), "16-24");
        check(Some(1976), Some("2025-06-01"), "25-49");
        check(Some(1975), Some("2025-06-01"), "50+");
        check(Some(1925), Some("2025-06-01"), "50+");
        // Under 16 has no band: such an age points to a wrong birth year.
        check(Some(2010), Some("2025-06-01"), "");
        check(Some(2030), Some("2025-06-01"), "");
        // No birth year or no referral: nothing to count from.
        check(None, Some("2025-06-01"), "");
        check(Some(1990), None, "");
        check(None, None, "");
    }

    #[test]
    fn follow_up_takes_the_latest_observation_in_the_window() {
        let observations = [
            obs("2025-06-20", Status::Unemployed),
            obs("2025-07-10", Status::Employed),
            obs("2025-08-15", Status::Inactive), // outside: 45 days after the target
        ];
        let got = follow_up(&observations, d("2025-01-01"), 6, d("2026-01-01"));
        assert_eq!(got, FollowUp::Observed(Status::Employed));
    }

    #[test]
    fn follow_up_is_not_due_until_the_window_has_passed() {
        // Target 2025-07-01, window ends 2025-08-01.
        assert_eq!(
            follow_up(&[], d("2025-01-01"), 6, d("2025-07-31")),
            FollowUp::NotDue
        );
        assert_eq!(
            follow_up(&[], d("2025-01-01"), 6, d("2025-08-01")),
            FollowUp::Unknown
        );
    }

    #[test]
    fn months_are_calendar_months_clamped_to_the_month_end() {
        assert_eq!(add_months(d("2025-01-31"), 1), d("2025-02-28"));
        assert_eq!(add_months(d("2024-01-31"), 1), d("2024-02-29"));
        assert_eq!(add_months(d("2025-08-31"), 6), d("2026-02-28"));
    }

    #[test]
    fn into_work_counts_hires_and_jobs_within_six_months() {
        let end = d("2025-03-01");
        assert!(into_work(end, EndReason::HiredByEmployer, &[]));
        assert!(into_work(
            end,
            EndReason::Completed,
            &[obs("2025-09-01", Status::SelfEmployed)]
        ));
        assert!(!into_work(
            end,
            EndReason::Completed,
            &[obs("2025-09-02", Status::Employed)]
        ));
        assert!(!into_work(
            end,
            EndReason::Completed,
            &[obs("2025-02-28", Status::Employed)]
        ));
        assert!(!into_work(
            end,
            EndReason::LeftEarly,
            &[obs("2025-04-01", Status::Education)]
        ));
    }
}
