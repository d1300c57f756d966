//! The evaluation dataset's definitions (contract section 8), one
//! hand-built history at a time: given these events, these rows.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use rotation_events::{
    Benefit, CommittedEvent, EndReason, Ethnicity, ProgressionKind, ReferredBy, Sector, Sex, Size,
    Status, YesNo,
};
use rotation_projections::dashboard::{Dashboards, SchemeLimits};
use rotation_projections::dataset::{
    Dataset, DatasetFold, JobseekerRow, ReleaseRow, SubstitutionRow, TrainingOutcome,
};
use rotation_projections::outcomes::{AgeBand, FollowUp};
use serde_json::{Value, json};
use uuid::Uuid;

const EMPLOYER: Uuid = Uuid::from_u128(0xE0);
const ROTATION: Uuid = Uuid::from_u128(0xA0);
const EMPLOYEE: Uuid = Uuid::from_u128(0xB0);
const JOBSEEKER: Uuid = Uuid::from_u128(0xC0);
const RELEASE: Uuid = Uuid::from_u128(0xD0);
const SUBSTITUTION: Uuid = Uuid::from_u128(0xF0);

fn d(text: &str) -> NaiveDate {
    text.parse().expect("a test date")
}

/// A committed log built by hand: positions and event ids are handed out in
/// order, hashes are placeholders (the fold never reads them).
#[derive(Default)]
struct Log {
    events: Vec<CommittedEvent>,
    partnership: Option<&'static str>,
}

impl Log {
    /// Appends one event dated `date` (a day, or a full RFC 3339 time) and
    /// returns its id.
    fn push(&mut self, event_type: &str, subject: String, date: &str, data: Value) -> Uuid {
        let position = self.events.len() as u64 + 1;
        let id = Uuid::from_u128((1 << 64) | u128::from(position));
        let time = if date.contains('T') {
            date.to_owned()
        } else {
            format!("{date}T09:30:00Z")
        };
        let event = json!({
            "specversion": "1.0",
            "id": id,
            "source": "urn:service:test",
            "type": format!("jobrotation.{event_type}"),
            "subject": subject,
            "time": time,
            "partnership": self.partnership.unwrap_or("stoke"),
            "position": position,
            "streamversion": 1,
            "recordedtime": "2027-01-01T00:00:00Z",
            "prevhash": "0".repeat(64),
            "hash": "0".repeat(64),
            "data": data,
        });
        let bytes = serde_json::to_vec(&event).expect("JSON");
        self.events
            .push(CommittedEvent::from_json(&bytes).expect("a committed event"));
        id
    }

    fn person(&mut self, pid: Uuid, event_type: &str, date: &str, data: Value) -> Uuid {
        self.push(event_type, format!("person/{pid}"), date, data)
    }

    fn rotation(&mut self, event_type: &str, date: &str, data: Value) -> Uuid {
        self.push(event_type, format!("rotation/{ROTATION}"), date, data)
    }

    fn jobseeker(&mut self, pid: Uuid, date: &str, unemployed_since: &str, profile: Value) {
        self.person(
            pid,
            "participant.registered",
            date,
            json!({"role": "jobseeker", "unemployed_since": unemployed_since, "benefit": "universal_credit", "profile": profile}),
        );
    }

    fn refer(&mut self, pid: Uuid, date: &str) -> Uuid {
        self.person(
            pid,
            "jobseeker.referred",
            date,
            json!({"referred_by": "jobcentre"}),
        )
    }

    fn assess(&mut self, pid: Uuid, date: &str, eligible: bool) -> Uuid {
        self.person(
            pid,
            "jobseeker.eligibility_assessed",
            date,
            json!({"eligible": eligible, "reasons": []}),
        )
    }

    fn start_substitution(&mut self, sid: Uuid, pid: Uuid, date: &str) -> Uuid {
        self.rotation(
            "rotation.substitution_started",
            date,
            json!({"substitution_id": sid, "substitute": pid, "covers": [RELEASE], "hours_per_week": 30, "planned_end": "2027-12-31"}),
        )
    }

    fn end_substitution(&mut self, sid: Uuid, date: &str, reason: &str) -> Uuid {
        self.rotation(
            "rotation.substitution_ended",
            date,
            json!({"substitution_id": sid, "reason": reason}),
        )
    }

    fn observe(&mut self, pid: Uuid, date: &str, status: &str) -> Uuid {
        self.person(
            pid,
            "person.outcome_observed",
            date,
            json!({"status": status, "source": "survey"}),
        )
    }

    fn progress(&mut self, pid: Uuid, date: &str, kind: &str) -> Uuid {
        self.person(pid, "person.progressed", date, json!({"kind": kind}))
    }

    /// Retracts `event`, which belongs to `subject`'s stream.
    fn retract(&mut self, subject: String, event: Uuid, date: &str) -> Uuid {
        self.push(
            "ledger.retracted",
            subject,
            date,
            json!({"event_id": event, "reason": "entered in error"}),
        )
    }

    fn fold(&self, reference: &str) -> Dataset {
        fold(&self.events, None, reference)
    }

    fn jobseeker_row(&self, reference: &str) -> JobseekerRow {
        let dataset = self.fold(reference);
        let row = dataset.jobseekers.iter().find(|r| r.pid == JOBSEEKER);
        row.expect("the jobseeker's row").clone()
    }

    fn release_row(&self, reference: &str) -> ReleaseRow {
        let dataset = self.fold(reference);
        let row = dataset.releases.iter().find(|r| r.rid == RELEASE);
        row.expect("the release's row").clone()
    }
}

fn fold(events: &[CommittedEvent], partnerships: Option<&[&str]>, reference: &str) -> Dataset {
    let wanted = partnerships.map(|p| p.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>());
    let mut fold = DatasetFold::new(wanted);
    for event in events {
        fold.try_apply(event).expect("every test event decodes");
    }
    fold.finish(d(reference))
}

/// An employer with one rotation: the employee released for training from
/// 3 February 2025, the jobseeker (born 1990, unemployed since June 2024,
/// referred 10 January 2025) substituting from the same day.
fn scheme() -> Log {
    let mut log = Log::default();
    log.push(
        "employer.enrolled",
        format!("employer/{EMPLOYER}"),
        "2025-01-06",
        json!({"name": "Stoke Care Homes", "sector": "Q", "size": "medium", "area": "E06000021"}),
    );
    log.person(
        EMPLOYEE,
        "participant.registered",
        "2025-01-06",
        json!({"role": "employee", "employer": EMPLOYER, "profile": {"birth_year": 1970}}),
    );
    log.jobseeker(
        JOBSEEKER,
        "2025-01-06",
        "2024-06-01",
        json!({"birth_year": 1990, "sex": "female", "ethnicity": "white", "disability": "no", "lone_parent": true, "health_condition": "prefer_not_to_say"}),
    );
    log.refer(JOBSEEKER, "2025-01-10");
    log.assess(JOBSEEKER, "2025-01-13", true);
    log.rotation(
        "rotation.agreed",
        "2025-01-20",
        json!({"employer": EMPLOYER, "planned_start": "2025-02-03", "planned_end": "2025-07-31"}),
    );
    log.rotation(
        "rotation.release_started",
        "2025-02-03",
        json!({"release_id": RELEASE, "employee": EMPLOYEE, "course": {"title": "Level 3 Diploma in Adult Care", "provider": "Stoke College", "rqf_level": 3, "hours_per_week": 7.5}, "planned_end": "2025-07-31"}),
    );
    log.start_substitution(SUBSTITUTION, JOBSEEKER, "2025-02-03");
    log
}

#[test]
fn a_whole_history_fills_every_column() {
    let mut log = scheme();
    log.person(
        JOBSEEKER,
        "jobseeker.preparation_started",
        "2025-01-14",
        json!({"provider": "Stoke College", "planned_weeks": 2}),
    );
    log.person(
        JOBSEEKER,
        "jobseeker.preparation_completed",
        "2025-01-28",
        json!({"provider": "Stoke College"}),
    );
    for date in ["2025-02-10", "2025-03-10"] {
        log.person(
            JOBSEEKER,
            "jobseeker.mentoring_session",
            date,
            json!({"minutes": 45, "mentor": "union_learning_rep"}),
        );
    }
    log.rotation(
        "rotation.training_completed",
        "2025-06-27",
        json!({"release_id": RELEASE, "qualification_achieved": true}),
    );
    log.rotation(
        "rotation.release_ended",
        "2025-06-30",
        json!({"release_id": RELEASE}),
    );
    log.end_substitution(SUBSTITUTION, "2025-06-30", "completed");
    log.observe(JOBSEEKER, "2025-09-15", "employed");
    log.progress(EMPLOYEE, "2025-09-01", "promotion");

    let dataset = log.fold("2026-12-31");
    assert_eq!(
        dataset.jobseekers,
        [JobseekerRow {
            pid: JOBSEEKER,
            partnership: "stoke".to_owned(),
            age_band: Some(AgeBand::Middle),
            sex: Some(Sex::Female),
            ethnicity: Some(Ethnicity::White),
            disability: Some(YesNo::No),
            lone_parent: Some(true),
            health_condition: Some(YesNo::PreferNotToSay),
            benefit: Some(Benefit::UniversalCredit),
            // 1 June 2024 to 10 January 2025 is 223 days.
            unemployed_weeks_at_referral: Some(31),
            referred_on: Some(d("2025-01-10")),
            referred_by: Some(ReferredBy::Jobcentre),
            eligible: Some(true),
            preparation_completed: true,
            mentoring_sessions: 2,
            first_substitution_start: Some(d("2025-02-03")),
            substitutions: 1,
            substitution_days: 147,
            last_end_reason: Some(EndReason::Completed),
            hired_by_host_employer: Some(false),
            status_3m: Some(FollowUp::Observed(Status::Employed)),
            status_6m: Some(FollowUp::Unknown),
            status_12m: Some(FollowUp::Unknown),
            progressed: Some(false),
        }]
    );
    assert_eq!(
        dataset.releases,
        [ReleaseRow {
            rid: RELEASE,
            pid: EMPLOYEE,
            employer: Some(EMPLOYER),
            sector: Some(Sector::Q),
            size: Some(Size::Medium),
            rqf_level: 3,
            hours_per_week: 7.5,
            release_start: d("2025-02-03"),
            release_end: Some(d("2025-06-30")),
            training_outcome: Some(TrainingOutcome::Completed),
            qualification_achieved: Some(true),
            progressed_12m: true,
            progression_kind: Some(ProgressionKind::Promotion),
        }]
    );
    assert_eq!(
        dataset.substitutions,
        [SubstitutionRow {
            sid: SUBSTITUTION,
            pid: JOBSEEKER,
            employer: Some(EMPLOYER),
            sector: Some(Sector::Q),
            start: d("2025-02-03"),
            end: Some(d("2025-06-30")),
            days: Some(147),
            hours_per_week: 30.0,
            end_reason: Some(EndReason::Completed),
            covers: 1,
        }]
    );
}

#[test]
fn a_jobseeker_with_nothing_but_a_registration_has_empty_cells() {
    let mut log = Log::default();
    log.jobseeker(JOBSEEKER, "2025-01-06", "2024-06-01", json!({}));
    assert_eq!(
        log.jobseeker_row("2026-01-01"),
        JobseekerRow {
            pid: JOBSEEKER,
            partnership: "stoke".to_owned(),
            age_band: None,
            sex: None,
            ethnicity: None,
            disability: None,
            lone_parent: None,
            health_condition: None,
            benefit: Some(Benefit::UniversalCredit),
            unemployed_weeks_at_referral: None,
            referred_on: None,
            referred_by: None,
            eligible: None,
            preparation_completed: false,
            mentoring_sessions: 0,
            first_substitution_start: None,
            substitutions: 0,
            substitution_days: 0,
            last_end_reason: None,
            hired_by_host_employer: None,
            status_3m: None,
            status_6m: None,
            status_12m: None,
            progressed: None,
        }
    );
}

#[test]
fn employees_are_not_jobseekers() {
    let dataset = scheme().fold("2026-01-01");
    let pids: Vec<Uuid> = dataset.jobseekers.iter().map(|r| r.pid).collect();
    assert_eq!(pids, [JOBSEEKER]);
}

#[test]
fn age_bands_count_years_from_the_birth_year_to_the_referral_year() {
    // The referral is on 10 January 2025, so only the years count: someone
    // born in December 2000 is "24" although they are still 24 for a year.
    let check = |birth_year: Option<i32>, expected: Option<AgeBand>| {
        let mut log = Log::default();
        let profile = birth_year.map_or(json!({}), |y| json!({"birth_year": y}));
        log.jobseeker(JOBSEEKER, "2025-01-06", "2024-06-01", profile);
        log.refer(JOBSEEKER, "2025-01-10");
        assert_eq!(
            log.jobseeker_row("2026-01-01").age_band,
            expected,
            "born {birth_year:?}"
        );
    };
    check(Some(2010), None);
    check(Some(2009), Some(AgeBand::Young));
    check(Some(2001), Some(AgeBand::Young));
    check(Some(2000), Some(AgeBand::Middle));
    check(Some(1976), Some(AgeBand::Middle));
    check(Some(1975), Some(AgeBand::Older));
    check(Some(1940), Some(AgeBand::Older));
    check(None, None);

    let mut unreferred = Log::default();
    unreferred.jobseeker(
        JOBSEEKER,
        "2025-01-06",
        "2024-06-01",
        json!({"birth_year": 1990}),
    );
    assert_eq!(unreferred.jobseeker_row("2026-01-01").age_band, None);
}

/// The dashboard once put anyone under 16 at referral in "16-24" while the
/// dataset left their band empty. Both now read one definition.
#[test]
fn age_under_16_is_not_recorded_on_the_board_as_in_the_dataset() {
    for birth_year in [
        Some(2012),
        Some(2010),
        Some(2009),
        Some(2000),
        Some(1975),
        None,
    ] {
        let mut log = Log::default();
        let profile = birth_year.map_or(json!({}), |y| json!({"birth_year": y}));
        log.jobseeker(JOBSEEKER, "2025-01-06", "2024-06-01", profile);
        log.refer(JOBSEEKER, "2025-01-10");
        let in_dataset = log.jobseeker_row("2026-01-01").age_band;

        let mut dashboards = Dashboards::new();
        for event in &log.events {
            dashboards.apply(event);
        }
        let board = dashboards
            .dashboard("stoke", &SchemeLimits::default())
            .expect("the partnership's board");
        let on_board: Vec<&str> = board.by_group["age_band"]
            .iter()
            .filter(|(_, counts)| counts.referred == 1)
            .map(|(band, _)| band.as_str())
            .collect();

        let expect = in_dataset.map_or("not_recorded", AgeBand::as_str);
        assert_eq!(on_board, [expect], "born {birth_year:?}");
    }
}

#[test]
fn unemployed_weeks_are_whole_weeks_to_the_first_referral() {
    let check = |since: &str, referred: &str, expected: Option<i64>| {
        let mut log = Log::default();
        log.jobseeker(JOBSEEKER, "2025-01-01", since, json!({}));
        log.refer(JOBSEEKER, referred);
        log.refer(JOBSEEKER, "2025-12-01");
        let row = log.jobseeker_row("2026-01-01");
        assert_eq!(row.referred_on, Some(d(referred)));
        assert_eq!(
            row.unemployed_weeks_at_referral, expected,
            "{since} to {referred}"
        );
    };
    check("2025-01-01", "2025-01-01", Some(0));
    check("2025-01-01", "2025-01-07", Some(0));
    check("2025-01-01", "2025-01-08", Some(1));
    check("2024-07-03", "2025-01-01", Some(26));
    // A referral dated before the unemployment began cannot be counted.
    check("2025-01-01", "2024-12-31", None);
}

#[test]
fn eligible_follows_the_latest_assessment_by_date() {
    let mut log = scheme();
    log.assess(JOBSEEKER, "2025-03-01", false);
    assert_eq!(log.jobseeker_row("2026-01-01").eligible, Some(false));
    // A late report of an older assessment does not overturn a newer one.
    log.assess(JOBSEEKER, "2025-02-01", true);
    assert_eq!(log.jobseeker_row("2026-01-01").eligible, Some(false));
    // On the same day the one recorded later wins.
    log.assess(JOBSEEKER, "2025-03-01T17:00:00Z", true);
    assert_eq!(log.jobseeker_row("2026-01-01").eligible, Some(true));
}

/// The scheme with its substitution ended on 30 June 2025: the 3-month
/// follow-up is 30 September, its window 30 August to 31 October 2025.
fn ended(reason: &str) -> Log {
    let mut log = scheme();
    log.end_substitution(SUBSTITUTION, "2025-06-30", reason);
    log
}

#[test]
fn status_is_the_latest_observation_within_31_days_of_the_follow_up() {
    let status_3m = |log: &Log| log.jobseeker_row("2026-12-31").status_3m;

    let mut log = ended("completed");
    log.observe(JOBSEEKER, "2025-08-29", "employed");
    assert_eq!(
        status_3m(&log),
        Some(FollowUp::Unknown),
        "a day before the window"
    );
    log.observe(JOBSEEKER, "2025-11-01", "inactive");
    assert_eq!(
        status_3m(&log),
        Some(FollowUp::Unknown),
        "a day after the window"
    );
    log.observe(JOBSEEKER, "2025-08-30", "unemployed");
    assert_eq!(
        status_3m(&log),
        Some(FollowUp::Observed(Status::Unemployed)),
        "the window's first day"
    );
    log.observe(JOBSEEKER, "2025-10-31", "education");
    assert_eq!(
        status_3m(&log),
        Some(FollowUp::Observed(Status::Education)),
        "the window's last day, and later than the first"
    );
    // A late report of an earlier observation does not displace a later one.
    log.observe(JOBSEEKER, "2025-09-30", "employed");
    assert_eq!(status_3m(&log), Some(FollowUp::Observed(Status::Education)));
    // On the same date, the observation recorded later wins.
    log.observe(JOBSEEKER, "2025-10-31", "self_employed");
    assert_eq!(
        status_3m(&log),
        Some(FollowUp::Observed(Status::SelfEmployed))
    );
}

#[test]
fn the_follow_ups_are_anchored_at_the_last_ended_substitution() {
    let second = Uuid::from_u128(0xF1);
    let mut log = ended("completed");
    log.observe(JOBSEEKER, "2025-09-30", "unemployed");
    log.start_substitution(second, JOBSEEKER, "2025-07-07");
    log.observe(JOBSEEKER, "2026-01-31", "employed");
    // While the second runs, the first's end is the anchor.
    let row = log.jobseeker_row("2026-12-31");
    assert_eq!(row.status_3m, Some(FollowUp::Observed(Status::Unemployed)));
    assert_eq!(row.substitutions, 2);
    assert_eq!(row.substitution_days, 147);
    assert_eq!(row.last_end_reason, Some(EndReason::Completed));

    log.end_substitution(second, "2025-10-31", "left_early");
    let row = log.jobseeker_row("2026-12-31");
    assert_eq!(row.status_3m, Some(FollowUp::Observed(Status::Employed)));
    assert_eq!(row.substitution_days, 147 + 116);
    assert_eq!(row.last_end_reason, Some(EndReason::LeftEarly));
    assert_eq!(row.first_substitution_start, Some(d("2025-02-03")));
}

#[test]
fn status_is_not_due_until_the_window_has_closed() {
    let mut log = ended("completed");
    log.observe(JOBSEEKER, "2025-10-01", "employed");
    // The 3-month window closes on 31 October 2025, the 6-month one on
    // 31 January 2026 and the 12-month one on 31 July 2026.
    let row = log.jobseeker_row("2025-10-30");
    assert_eq!(
        [row.status_3m, row.status_6m, row.status_12m],
        [Some(FollowUp::NotDue); 3]
    );
    let row = log.jobseeker_row("2025-10-31");
    assert_eq!(row.status_3m, Some(FollowUp::Observed(Status::Employed)));
    assert_eq!(row.status_6m, Some(FollowUp::NotDue));
    let row = log.jobseeker_row("2026-07-31");
    assert_eq!(row.status_6m, Some(FollowUp::Unknown));
    assert_eq!(row.status_12m, Some(FollowUp::Unknown));
}

#[test]
fn status_is_empty_until_a_substitution_has_ended() {
    let mut log = scheme();
    log.observe(JOBSEEKER, "2025-05-01", "employed");
    let row = log.jobseeker_row("2027-01-01");
    assert_eq!([row.status_3m, row.status_6m, row.status_12m], [None; 3]);
    assert_eq!(row.hired_by_host_employer, None);
    assert_eq!(row.last_end_reason, None);
    assert_eq!(row.substitution_days, 0);
}

#[test]
fn job_progressions_imply_a_status_on_their_date() {
    let check = |kind: &str, expected: FollowUp| {
        let mut log = ended("completed");
        log.progress(JOBSEEKER, "2025-09-30", kind);
        assert_eq!(
            log.jobseeker_row("2026-12-31").status_3m,
            Some(expected),
            "{kind}"
        );
    };
    check("permanent_job", FollowUp::Observed(Status::Employed));
    check("other_job", FollowUp::Observed(Status::Employed));
    check("self_employment", FollowUp::Observed(Status::SelfEmployed));
    check("education", FollowUp::Observed(Status::Education));
    check("promotion", FollowUp::Unknown);
    check("qualification", FollowUp::Unknown);

    // An implied observation and a survey on the same day: log order decides.
    let mut log = ended("completed");
    log.observe(JOBSEEKER, "2025-09-30", "unemployed");
    log.progress(JOBSEEKER, "2025-09-30", "other_job");
    assert_eq!(
        log.jobseeker_row("2026-12-31").status_3m,
        Some(FollowUp::Observed(Status::Employed))
    );
}

#[test]
fn a_hire_by_the_host_employer_implies_employment_at_the_end_date() {
    // The hire is an observation dated at the substitution's end. Every
    // follow-up window opens at least 58 days after the last end, so a hire
    // never decides a status on its own: it shows in `hired_by_host_employer`
    // (and in the boards' "into work"), and the statuses need an observation
    // near each follow-up.
    let log = ended("hired_by_employer");
    let row = log.jobseeker_row("2026-12-31");
    assert_eq!(row.hired_by_host_employer, Some(true));
    assert_eq!(row.last_end_reason, Some(EndReason::HiredByEmployer));
    assert_eq!(row.status_3m, Some(FollowUp::Unknown));

    // A hire at the end of an earlier substitution still counts after a
    // later one ended otherwise; the last end gives the reason.
    let second = Uuid::from_u128(0xF1);
    let mut log = scheme();
    log.end_substitution(SUBSTITUTION, "2025-03-31", "hired_by_employer");
    log.start_substitution(second, JOBSEEKER, "2025-04-01");
    log.end_substitution(second, "2025-04-30", "completed");
    let row = log.jobseeker_row("2026-12-31");
    assert_eq!(row.hired_by_host_employer, Some(true));
    assert_eq!(row.last_end_reason, Some(EndReason::Completed));
    assert_eq!(row.status_3m, Some(FollowUp::Unknown));
}

#[test]
fn progressed_counts_progressions_from_the_first_substitution_start() {
    let mut log = scheme();
    log.progress(JOBSEEKER, "2025-02-02", "qualification");
    assert_eq!(log.jobseeker_row("2026-01-01").progressed, Some(false));
    log.progress(JOBSEEKER, "2025-02-03", "qualification");
    assert_eq!(log.jobseeker_row("2026-01-01").progressed, Some(true));
    // Nothing after the reference date counts.
    assert_eq!(log.jobseeker_row("2025-02-02").progressed, Some(false));

    let mut unplaced = Log::default();
    unplaced.jobseeker(JOBSEEKER, "2025-01-06", "2024-06-01", json!({}));
    unplaced.progress(JOBSEEKER, "2025-03-01", "permanent_job");
    assert_eq!(unplaced.jobseeker_row("2026-01-01").progressed, None);
}

#[test]
fn progressed_12m_runs_from_the_release_start_to_twelve_months_after_its_end() {
    let check =
        |progressions: &[(&str, &str)], reference: &str, expected: Option<ProgressionKind>| {
            let mut log = scheme();
            log.rotation(
                "rotation.release_ended",
                "2025-06-30",
                json!({"release_id": RELEASE}),
            );
            for (date, kind) in progressions {
                log.progress(EMPLOYEE, date, kind);
            }
            let row = log.release_row(reference);
            assert_eq!(
                row.progression_kind, expected,
                "{progressions:?} judged at {reference}"
            );
            assert_eq!(row.progressed_12m, expected.is_some());
        };
    let late = "2027-12-31";
    check(&[], late, None);
    check(&[("2025-02-02", "promotion")], late, None);
    check(
        &[("2025-02-03", "promotion")],
        late,
        Some(ProgressionKind::Promotion),
    );
    check(
        &[("2026-06-30", "pay_rise")],
        late,
        Some(ProgressionKind::PayRise),
    );
    check(&[("2026-07-01", "pay_rise")], late, None);
    // The earliest progression in the window gives the kind, whatever the
    // order in which they were recorded.
    check(
        &[
            ("2026-01-10", "new_role"),
            ("2025-08-01", "pay_rise"),
            ("2025-01-01", "promotion"),
        ],
        late,
        Some(ProgressionKind::PayRise),
    );
    // Outcomes are judged at the reference date: later progressions wait.
    check(&[("2025-08-01", "pay_rise")], "2025-07-31", None);
    check(
        &[("2025-08-01", "pay_rise")],
        "2025-08-01",
        Some(ProgressionKind::PayRise),
    );
}

#[test]
fn progressed_12m_of_a_running_release_runs_to_the_reference_date() {
    let mut log = scheme();
    log.progress(EMPLOYEE, "2025-05-01", "new_role");
    let row = log.release_row("2025-04-30");
    assert_eq!((row.progressed_12m, row.release_end), (false, None));
    let row = log.release_row("2025-05-01");
    assert_eq!(row.progression_kind, Some(ProgressionKind::NewRole));
}

#[test]
fn training_outcomes() {
    let check = |events: &[(&str, Value)], expected: (Option<TrainingOutcome>, Option<bool>)| {
        let mut log = scheme();
        for (event_type, data) in events {
            log.rotation(event_type, "2025-06-30", data.clone());
        }
        let row = log.release_row("2026-01-01");
        assert_eq!(
            (row.training_outcome, row.qualification_achieved),
            expected,
            "{events:?}"
        );
    };
    let completed = |achieved: bool| {
        (
            "rotation.training_completed",
            json!({"release_id": RELEASE, "qualification_achieved": achieved}),
        )
    };
    let left = (
        "rotation.training_left",
        json!({"release_id": RELEASE, "reason": "caring duties"}),
    );
    let ended = ("rotation.release_ended", json!({"release_id": RELEASE}));
    check(&[], (Some(TrainingOutcome::Ongoing), None));
    check(
        &[completed(true)],
        (Some(TrainingOutcome::Completed), Some(true)),
    );
    check(
        &[completed(false), ended.clone()],
        (Some(TrainingOutcome::Completed), Some(false)),
    );
    check(
        &[left.clone(), ended.clone()],
        (Some(TrainingOutcome::Left), None),
    );
    // A release that ended with no training outcome recorded is not ongoing.
    check(&[ended], (None, None));
}

#[test]
fn substitutions_count_their_days_and_the_releases_they_cover() {
    let second_release = Uuid::from_u128(0xD1);
    let second_employee = Uuid::from_u128(0xB1);
    let mut log = scheme();
    log.person(
        second_employee,
        "participant.registered",
        "2025-01-06",
        json!({"role": "employee", "employer": EMPLOYER}),
    );
    log.rotation(
        "rotation.release_started",
        "2025-03-03",
        json!({"release_id": second_release, "employee": second_employee, "course": {"title": "Team leading", "provider": "Stoke College", "rqf_level": 2, "hours_per_week": 6}, "planned_end": "2025-07-31"}),
    );
    let sid = Uuid::from_u128(0xF1);
    let substitute = Uuid::from_u128(0xC1);
    log.jobseeker(substitute, "2025-01-06", "2024-01-01", json!({}));
    // Version 1 of substitution_started named one `release_id`; it is read
    // as covering that one release.
    log.rotation(
        "rotation.substitution_started",
        "2025-03-03T08:00:00Z",
        json!({"substitution_id": sid, "substitute": substitute, "release_id": second_release, "hours_per_week": 12.5, "planned_end": "2025-07-31"}),
    );
    log.end_substitution(sid, "2025-03-04T23:59:00Z", "dismissed");
    let both = Uuid::from_u128(0xF2);
    let third = Uuid::from_u128(0xC2);
    log.jobseeker(third, "2025-01-06", "2024-01-01", json!({}));
    log.rotation(
        "rotation.substitution_started",
        "2025-03-10",
        json!({"substitution_id": both, "substitute": third, "covers": [RELEASE, second_release, RELEASE], "hours_per_week": 37.5, "planned_end": "2025-07-31"}),
    );

    let dataset = log.fold("2026-01-01");
    let rows: Vec<_> = dataset
        .substitutions
        .iter()
        .map(|r| {
            (
                r.sid,
                r.pid,
                r.days,
                r.end_reason,
                r.covers,
                r.hours_per_week,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (SUBSTITUTION, JOBSEEKER, None, None, 1, 30.0),
            (
                sid,
                substitute,
                Some(1),
                Some(EndReason::Dismissed),
                1,
                12.5
            ),
            (both, third, None, None, 2, 37.5),
        ]
    );
    let releases: Vec<Uuid> = dataset.releases.iter().map(|r| r.rid).collect();
    assert_eq!(releases, [RELEASE, second_release]);
}

#[test]
fn a_retracted_event_leaves_the_dataset() {
    let mut log = ended("completed");
    let observation = log.observe(JOBSEEKER, "2025-09-30", "employed");
    assert_eq!(
        log.jobseeker_row("2026-12-31").status_3m,
        Some(FollowUp::Observed(Status::Employed))
    );
    log.retract(format!("person/{JOBSEEKER}"), observation, "2025-10-05");
    assert_eq!(
        log.jobseeker_row("2026-12-31").status_3m,
        Some(FollowUp::Unknown)
    );
}

#[test]
fn a_retracted_substitution_takes_its_row_and_its_counts_with_it() {
    let second = Uuid::from_u128(0xF1);
    let mut log = ended("hired_by_employer");
    let start = log.start_substitution(second, JOBSEEKER, "2025-07-01");
    log.retract(format!("rotation/{ROTATION}"), start, "2025-07-02");
    let dataset = log.fold("2026-12-31");
    let sids: Vec<Uuid> = dataset.substitutions.iter().map(|r| r.sid).collect();
    assert_eq!(sids, [SUBSTITUTION]);
    assert_eq!(dataset.jobseekers[0].substitutions, 1);

    // Retracting the end reopens the substitution.
    let mut log = scheme();
    let end = log.end_substitution(SUBSTITUTION, "2025-06-30", "hired_by_employer");
    log.retract(format!("rotation/{ROTATION}"), end, "2025-07-01");
    let row = log.jobseeker_row("2026-12-31");
    assert_eq!(row.hired_by_host_employer, None);
    assert_eq!(row.status_3m, None);
    assert_eq!(log.fold("2026-12-31").substitutions[0].end, None);
    // A corrected end recorded afterwards is the end.
    log.end_substitution(SUBSTITUTION, "2025-06-27", "completed");
    let row = log.jobseeker_row("2026-12-31");
    assert_eq!(row.last_end_reason, Some(EndReason::Completed));
    assert_eq!(row.hired_by_host_employer, Some(false));
}

#[test]
fn a_retracted_registration_or_release_has_no_row() {
    let mut log = scheme();
    let registration = log.events[2].envelope.id;
    let release = log.events[6].envelope.id;
    log.retract(format!("person/{JOBSEEKER}"), registration, "2025-03-01");
    log.retract(format!("rotation/{ROTATION}"), release, "2025-03-01");
    let dataset = log.fold("2026-01-01");
    assert!(dataset.jobseekers.is_empty());
    assert!(dataset.releases.is_empty());
    // The substitution stays, but covers no release any more.
    assert_eq!(dataset.substitutions[0].covers, 0);
}

#[test]
fn retracting_a_retraction_restores_the_event() {
    let mut log = scheme();
    let assessment = log.assess(JOBSEEKER, "2025-03-01", false);
    let retraction = log.retract(format!("person/{JOBSEEKER}"), assessment, "2025-03-02");
    assert_eq!(log.jobseeker_row("2026-01-01").eligible, Some(true));
    log.retract(format!("person/{JOBSEEKER}"), retraction, "2025-03-03");
    assert_eq!(log.jobseeker_row("2026-01-01").eligible, Some(false));
}

#[test]
fn retracting_an_event_is_the_same_as_never_having_recorded_it() {
    // Events nothing else depends on can each be retracted on their own.
    let mut log = ended("hired_by_employer");
    let mut independent = vec![
        log.refer(JOBSEEKER, "2025-01-09"),
        log.assess(JOBSEEKER, "2025-02-01", false),
        log.person(
            JOBSEEKER,
            "jobseeker.mentoring_session",
            "2025-02-10",
            json!({"minutes": 30, "mentor": "employer"}),
        ),
        log.person(
            JOBSEEKER,
            "jobseeker.preparation_completed",
            "2025-01-28",
            json!({"provider": "Stoke College"}),
        ),
        log.observe(JOBSEEKER, "2025-09-30", "employed"),
        log.observe(JOBSEEKER, "2025-12-31", "unemployed"),
        log.progress(JOBSEEKER, "2026-06-30", "education"),
        log.progress(EMPLOYEE, "2025-07-15", "pay_rise"),
        log.progress(EMPLOYEE, "2025-08-15", "promotion"),
        log.rotation(
            "rotation.training_left",
            "2025-05-01",
            json!({"release_id": RELEASE, "reason": "moved away"}),
        ),
    ];
    independent.push(log.rotation(
        "rotation.release_ended",
        "2025-06-30",
        json!({"release_id": RELEASE}),
    ));
    for reference in ["2025-10-31", "2026-12-31"] {
        for event in &independent {
            let subject = log
                .events
                .iter()
                .find(|e| e.envelope.id == *event)
                .map(|e| e.envelope.subject.to_string())
                .expect("the event is in the log");
            let mut retracted = Log {
                events: log.events.clone(),
                partnership: None,
            };
            retracted.retract(subject, *event, "2026-01-01");
            let without: Vec<CommittedEvent> = log
                .events
                .iter()
                .filter(|e| e.envelope.id != *event)
                .cloned()
                .collect();
            assert_eq!(
                retracted.fold(reference),
                fold(&without, None, reference),
                "retracting {event} judged at {reference}"
            );
        }
    }
}

#[test]
fn the_partnership_filter_keeps_only_the_partnerships_asked_for() {
    let mut log = scheme();
    log.partnership = Some("leeds");
    let other = Uuid::from_u128(0xC9);
    log.jobseeker(other, "2025-01-06", "2024-06-01", json!({}));
    let all = fold(&log.events, None, "2026-01-01");
    let partnerships: Vec<(&str, Uuid)> = all
        .jobseekers
        .iter()
        .map(|r| (r.partnership.as_str(), r.pid))
        .collect();
    assert_eq!(partnerships, [("stoke", JOBSEEKER), ("leeds", other)]);
    let leeds = fold(&log.events, Some(&["leeds"]), "2026-01-01");
    assert_eq!(leeds.jobseekers.len(), 1);
    assert!(leeds.releases.is_empty() && leeds.substitutions.is_empty());
    let stoke = fold(&log.events, Some(&["stoke"]), "2026-01-01");
    assert_eq!((stoke.jobseekers.len(), stoke.releases.len()), (1, 1));
    assert_eq!(
        fold(&log.events, Some(&[]), "2026-01-01"),
        Dataset::default()
    );
}

#[test]
fn dates_are_the_utc_date_of_the_effective_time() {
    let mut log = Log::default();
    log.jobseeker(JOBSEEKER, "2025-01-06", "2024-06-01", json!({}));
    // 00:30 in London in summer is still the previous day in UTC.
    log.refer(JOBSEEKER, "2025-07-01T00:30:00+01:00");
    assert_eq!(
        log.jobseeker_row("2026-01-01").referred_on,
        Some(d("2025-06-30"))
    );
}

#[test]
fn unreadable_data_is_reported_and_leaves_the_fold_unchanged() {
    let mut log = Log::default();
    log.jobseeker(JOBSEEKER, "2025-01-06", "2024-06-01", json!({}));
    let mut bad = log.events[0].clone();
    bad.envelope.data = json!({"role": "astronaut"});
    let mut fold = DatasetFold::new(None);
    assert!(fold.try_apply(&bad).is_err());
    fold.apply(&bad);
    assert_eq!(fold.finish(d("2026-01-01")), Dataset::default());
}
