//! The board dashboard through its public interface: figures from
//! hand-built histories, retraction, checkpoint and resume, and disclosure
//! control of the result.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use proptest::prelude::*;
use rotation_events::CommittedEvent;
use rotation_projections::dashboard::{
    Dashboard, Dashboards, GroupCounts, MonthCounts, SchemeLimits, SectorCounts, Totals,
};
use rotation_projections::disclosure::{DisclosureConfig, Method, protect};
use rotation_projections::flags::FlagRule;
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Building histories

/// A history of committed events, built by hand: positions count up from 1
/// and every event gets a fresh id.
#[derive(Clone, Debug, Default)]
struct History {
    events: Vec<CommittedEvent>,
}

const STOKE: &str = "stoke";

impl History {
    fn new() -> Self {
        Self::default()
    }

    /// Appends one committed event to `partnership` and returns its id.
    /// `day` is the effective date; the event happens at 09:00 UTC.
    fn push_in(
        &mut self,
        partnership: &str,
        event_type: &str,
        subject: &str,
        day: &str,
        data: Value,
    ) -> Uuid {
        let position = self.events.len() as u64 + 1;
        let id = Uuid::from_u128((0xee << 120) | u128::from(position));
        let recorded = DateTime::<Utc>::UNIX_EPOCH
            + Duration::days(20_000)
            + Duration::seconds(i64::try_from(position).expect("a small position"));
        let json = json!({
            "specversion": "1.0",
            "id": id,
            "source": "urn:service:test",
            "type": format!("jobrotation.{event_type}"),
            "subject": subject,
            "time": format!("{day}T09:00:00Z"),
            "partnership": partnership,
            "position": position,
            "streamversion": 1,
            "recordedtime": recorded.to_rfc3339(),
            "prevhash": "0".repeat(64),
            "hash": "0".repeat(64),
            "data": data,
        });
        let bytes = serde_json::to_vec(&json).expect("JSON serialises");
        let event = CommittedEvent::from_json(&bytes).expect("a well-formed committed event");
        self.events.push(event);
        id
    }

    fn push(&mut self, event_type: &str, subject: &str, day: &str, data: Value) -> Uuid {
        self.push_in(STOKE, event_type, subject, day, data)
    }

    fn register_partnership(&mut self, partnership: &str) -> Uuid {
        self.push_in(
            partnership,
            "partnership.registered",
            &format!("partnership/{partnership}"),
            "2025-01-01",
            json!({"name": partnership, "areas": ["E06000021"], "members": []}),
        )
    }

    fn enrol(&mut self, employer: Uuid, sector: &str, day: &str) -> Uuid {
        self.push(
            "employer.enrolled",
            &format!("employer/{employer}"),
            day,
            json!({"name": "Potteries Ltd", "sector": sector, "size": "medium", "area": "E06000021"}),
        )
    }

    fn employee(&mut self, person: Uuid, employer: Uuid, day: &str) -> Uuid {
        self.push(
            "participant.registered",
            &format!("person/{person}"),
            day,
            json!({"role": "employee", "employer": employer}),
        )
    }

    fn jobseeker(&mut self, person: Uuid, since: &str, profile: Value, day: &str) -> Uuid {
        let mut data =
            json!({"role": "jobseeker", "unemployed_since": since, "benefit": "universal_credit"});
        if !profile.is_null() {
            data["profile"] = profile;
        }
        self.push(
            "participant.registered",
            &format!("person/{person}"),
            day,
            data,
        )
    }

    fn refer(&mut self, person: Uuid, day: &str) -> Uuid {
        self.push(
            "jobseeker.referred",
            &format!("person/{person}"),
            day,
            json!({"referred_by": "jobcentre"}),
        )
    }

    fn assess(&mut self, person: Uuid, eligible: bool, day: &str) -> Uuid {
        self.push(
            "jobseeker.eligibility_assessed",
            &format!("person/{person}"),
            day,
            json!({"eligible": eligible, "reasons": []}),
        )
    }

    fn prepared(&mut self, person: Uuid, day: &str) -> Uuid {
        self.push(
            "jobseeker.preparation_completed",
            &format!("person/{person}"),
            day,
            json!({"provider": "Stoke College"}),
        )
    }

    fn mentored(&mut self, person: Uuid, day: &str) -> Uuid {
        self.push(
            "jobseeker.mentoring_session",
            &format!("person/{person}"),
            day,
            json!({"minutes": 45, "mentor": "union_learning_rep"}),
        )
    }

    fn agree(&mut self, rotation: Uuid, employer: Uuid, day: &str) -> Uuid {
        self.push(
            "rotation.agreed",
            &format!("rotation/{rotation}"),
            day,
            json!({"employer": employer, "planned_start": day, "planned_end": "2026-12-31"}),
        )
    }

    fn release(
        &mut self,
        rotation: Uuid,
        release: Uuid,
        employee: Uuid,
        hours: f64,
        day: &str,
    ) -> Uuid {
        self.push(
            "rotation.release_started",
            &format!("rotation/{rotation}"),
            day,
            json!({
                "release_id": release,
                "employee": employee,
                "course": {"title": "Lean manufacturing", "provider": "Stoke College", "rqf_level": 3, "hours_per_week": hours},
                "planned_end": "2026-12-31",
            }),
        )
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the event's data fields, each named at the call"
    )]
    fn substitute(
        &mut self,
        rotation: Uuid,
        substitution: Uuid,
        person: Uuid,
        covers: &[Uuid],
        hours: f64,
        planned_end: &str,
        day: &str,
    ) -> Uuid {
        self.push(
            "rotation.substitution_started",
            &format!("rotation/{rotation}"),
            day,
            json!({
                "substitution_id": substitution,
                "substitute": person,
                "covers": covers,
                "hours_per_week": hours,
                "planned_end": planned_end,
            }),
        )
    }

    fn training_completed(&mut self, rotation: Uuid, release: Uuid, day: &str) -> Uuid {
        self.push(
            "rotation.training_completed",
            &format!("rotation/{rotation}"),
            day,
            json!({"release_id": release, "qualification_achieved": true}),
        )
    }

    fn training_left(&mut self, rotation: Uuid, release: Uuid, day: &str) -> Uuid {
        self.push(
            "rotation.training_left",
            &format!("rotation/{rotation}"),
            day,
            json!({"release_id": release, "reason": "caring responsibilities"}),
        )
    }

    fn release_ended(&mut self, rotation: Uuid, release: Uuid, day: &str) -> Uuid {
        self.push(
            "rotation.release_ended",
            &format!("rotation/{rotation}"),
            day,
            json!({"release_id": release}),
        )
    }

    fn substitution_ended(
        &mut self,
        rotation: Uuid,
        substitution: Uuid,
        reason: &str,
        day: &str,
    ) -> Uuid {
        self.push(
            "rotation.substitution_ended",
            &format!("rotation/{rotation}"),
            day,
            json!({"substitution_id": substitution, "reason": reason}),
        )
    }

    fn progressed(&mut self, person: Uuid, kind: &str, day: &str) -> Uuid {
        self.push(
            "person.progressed",
            &format!("person/{person}"),
            day,
            json!({"kind": kind}),
        )
    }

    fn observed(&mut self, person: Uuid, status: &str, day: &str) -> Uuid {
        self.push(
            "person.outcome_observed",
            &format!("person/{person}"),
            day,
            json!({"status": status, "source": "survey"}),
        )
    }

    /// Retracts the event `target`, in its own stream and partnership.
    fn retract(&mut self, target: Uuid, day: &str) -> Uuid {
        let event = self
            .events
            .iter()
            .find(|e| e.envelope.id == target)
            .expect("retracting an event of this history");
        let subject = event.envelope.subject.to_string();
        let partnership = event.envelope.partnership.clone();
        self.push_in(
            &partnership,
            "ledger.retracted",
            &subject,
            day,
            json!({"event_id": target, "reason": "entered in error"}),
        )
    }

    /// The same history without the event `id`.
    fn without(&self, id: Uuid) -> Vec<CommittedEvent> {
        self.events
            .iter()
            .filter(|e| e.envelope.id != id)
            .cloned()
            .collect()
    }
}

fn fold(events: &[CommittedEvent]) -> Dashboards {
    let mut dashboards = Dashboards::new();
    for event in events {
        dashboards.apply(event);
    }
    dashboards
}

fn board(events: &[CommittedEvent]) -> Dashboard {
    fold(events)
        .dashboard(STOKE, &SchemeLimits::default())
        .expect("the partnership has events")
}

/// A dashboard with `as_of` cleared, to compare figures of histories whose
/// last events differ.
fn figures(mut dashboard: Dashboard) -> Dashboard {
    dashboard.as_of = Default::default();
    dashboard
}

const E1: Uuid = Uuid::from_u128(0xe1);
const E2: Uuid = Uuid::from_u128(0xe2);
const W1: Uuid = Uuid::from_u128(0xa1);
const W2: Uuid = Uuid::from_u128(0xa2);
const W3: Uuid = Uuid::from_u128(0xa3);
const J1: Uuid = Uuid::from_u128(0xb1);
const J2: Uuid = Uuid::from_u128(0xb2);
const J3: Uuid = Uuid::from_u128(0xb3);
const R1: Uuid = Uuid::from_u128(0xc1);
const R2: Uuid = Uuid::from_u128(0xc2);
const L1: Uuid = Uuid::from_u128(0xd1);
const L2: Uuid = Uuid::from_u128(0xd2);
const L3: Uuid = Uuid::from_u128(0xd3);
const S1: Uuid = Uuid::from_u128(0xf1);
const S2: Uuid = Uuid::from_u128(0xf2);

/// Two employers (manufacturing and health), three employees released,
/// three jobseekers of whom two are placed: S1 keeps to every scheme rule
/// and leads into work six months on; S2 breaks all three rules and ends
/// in a hire.
fn small_scheme() -> History {
    let mut h = History::new();
    h.register_partnership(STOKE);
    h.enrol(E1, "C", "2025-01-02");
    h.enrol(E2, "Q", "2025-01-02");
    h.employee(W1, E1, "2025-01-03");
    h.employee(W2, E1, "2025-01-03");
    h.employee(W3, E2, "2025-01-03");
    h.jobseeker(
        J1,
        "2024-01-01",
        json!({"birth_year": 2003, "sex": "female", "ethnicity": "white", "disability": "no", "lone_parent": true}),
        "2025-01-06",
    );
    h.refer(J1, "2025-01-06");
    h.assess(J1, true, "2025-01-10");
    h.jobseeker(
        J2,
        "2024-11-01",
        json!({"birth_year": 1970, "sex": "male", "ethnicity": "asian", "disability": "yes", "lone_parent": false}),
        "2025-01-20",
    );
    h.refer(J2, "2025-01-20");
    h.assess(J2, true, "2025-01-25");
    h.jobseeker(J3, "2023-06-01", Value::Null, "2025-02-03");
    h.refer(J3, "2025-02-03");
    h.assess(J3, true, "2025-02-05");
    h.mentored(J1, "2025-02-10");
    h.assess(J3, false, "2025-02-20");
    h.prepared(J1, "2025-02-20");
    h.prepared(J2, "2025-03-25");
    h.agree(R1, E1, "2025-02-01");
    h.agree(R2, E2, "2025-02-15");
    h.release(R1, L1, W1, 20.0, "2025-03-03");
    h.release(R1, L2, W2, 17.5, "2025-03-03");
    h.substitute(R1, S1, J1, &[L1, L2], 37.5, "2025-08-29", "2025-03-03");
    h.release(R2, L3, W3, 30.0, "2025-04-01");
    h.substitute(R2, S2, J2, &[L3], 25.0, "2025-12-31", "2025-04-01");
    h.training_left(R1, L2, "2025-05-15");
    h.release_ended(R1, L2, "2025-05-15");
    h.training_completed(R1, L1, "2025-08-29");
    h.release_ended(R1, L1, "2025-08-29");
    h.substitution_ended(R1, S1, "completed", "2025-08-29");
    h.training_completed(R2, L3, "2025-09-30");
    h.substitution_ended(R2, S2, "hired_by_employer", "2025-09-30");
    h.progressed(W1, "promotion", "2025-10-01");
    h.observed(J1, "employed", "2025-12-01");
    h.progressed(J1, "permanent_job", "2026-01-10");
    h
}

// ---------------------------------------------------------------------------
// Figures

#[test]
fn a_small_scheme_adds_up() {
    let h = small_scheme();
    let d = board(&h.events);

    assert_eq!(d.partnership, STOKE);
    assert_eq!(d.as_of.position, h.events.len() as u64);
    assert_eq!(
        d.as_of.recordedtime,
        h.events.last().expect("events").ledger.recordedtime
    );
    assert_eq!(
        d.totals,
        Totals {
            employers_enrolled: 2,
            rotations_agreed: 2,
            rotations_closed: 0,
            releases_started: 3,
            releases_active: 1,
            releases_ended: 2,
            training_completed: 2,
            training_left: 1,
            substitutions_started: 2,
            substitutions_active: 0,
            substitutions_ended: 2,
            substitutions_completed: 1,
            substitutions_left_early: 0,
            substitutes_hired_by_employer: 1,
            substitutions_dismissed: 0,
            substitutions_into_work: 2,
            referrals: 3,
            jobseekers_referred: 3,
            jobseekers_eligible: 2,
            preparation_completed: 2,
            jobseekers_placed: 2,
            substitutes_into_work: 2,
            mentoring_sessions: 1,
            progressions: 2,
        }
    );
    assert_eq!(d.rates.training_completion_rate.value(), Some(2.0 / 3.0));
    assert_eq!(d.rates.substitute_into_work_rate.value(), Some(1.0));

    let sector = |e, r, rs, tc, tl, ss| SectorCounts {
        employers_enrolled: e,
        rotations_agreed: r,
        releases_started: rs,
        training_completed: tc,
        training_left: tl,
        substitutions_started: ss,
    };
    assert_eq!(d.by_sector.len(), 2);
    assert_eq!(d.by_sector["C"], sector(1, 1, 2, 1, 1, 1));
    assert_eq!(d.by_sector["Q"], sector(1, 1, 1, 1, 0, 1));

    let group = |r, e, p, pl, w| GroupCounts {
        referred: r,
        eligible: e,
        preparation_completed: p,
        placed: pl,
        into_work: w,
    };
    let age = &d.by_group["age_band"];
    assert_eq!(age["16-24"], group(1, 1, 1, 1, 1));
    assert_eq!(age["25-49"], group(0, 0, 0, 0, 0));
    assert_eq!(age["50+"], group(1, 1, 1, 1, 1));
    assert_eq!(age["not_recorded"], group(1, 0, 0, 0, 0));
    let sex = &d.by_group["sex"];
    assert_eq!(sex["female"], group(1, 1, 1, 1, 1));
    assert_eq!(sex["male"], group(1, 1, 1, 1, 1));
    assert_eq!(sex["not_recorded"], group(1, 0, 0, 0, 0));
    assert_eq!(d.by_group["lone_parent"]["yes"], group(1, 1, 1, 1, 1));
    assert_eq!(d.by_group["disability"]["yes"], group(1, 1, 1, 1, 1));
    assert_eq!(d.by_group["ethnicity"]["asian"], group(1, 1, 1, 1, 1));

    let month = |r, rs, ss, tc, p| MonthCounts {
        referrals: r,
        releases_started: rs,
        substitutions_started: ss,
        training_completed: tc,
        progressions: p,
    };
    let monthly: Vec<(&str, MonthCounts)> = d
        .monthly
        .iter()
        .map(|row| (row.month.as_str(), row.counts.clone()))
        .collect();
    assert_eq!(
        monthly,
        [
            ("2025-01", month(2, 0, 0, 0, 0)),
            ("2025-02", month(1, 0, 0, 0, 0)),
            ("2025-03", month(0, 2, 1, 0, 0)),
            ("2025-04", month(0, 1, 1, 0, 0)),
            ("2025-08", month(0, 0, 0, 1, 0)),
            ("2025-09", month(0, 0, 0, 1, 0)),
            ("2025-10", month(0, 0, 0, 0, 1)),
            ("2026-01", month(0, 0, 0, 0, 1)),
        ]
    );

    let flags: Vec<(FlagRule, Uuid, Uuid)> = d
        .flags
        .iter()
        .map(|f| (f.rule, f.rotation, f.substitution))
        .collect();
    assert_eq!(
        flags,
        [
            (FlagRule::MinUnemployedWeeks, R2, S2),
            (FlagRule::MaxSubstitutionWeeks, R2, S2),
            (FlagRule::HourForHour, R2, S2),
        ]
    );
    assert_eq!(
        d.flags[1].message,
        "The substitution was planned to last 274 days, more than the scheme's maximum of 26 \
         weeks (182 days)."
    );
    assert_eq!(
        d.flags[2].message,
        "The substitute works 25 hours a week but the covered releases train 30 hours a week; \
         hour for hour, the two should be equal."
    );
}

#[test]
fn the_dashboard_json_has_the_contracts_shape() {
    let json = serde_json::to_value(board(&small_scheme().events)).expect("serialises");
    for name in [
        "employers_enrolled",
        "rotations_agreed",
        "releases_started",
        "releases_active",
        "training_completed",
        "training_left",
        "substitutions_started",
        "substitutions_active",
        "substitutions_completed",
        "substitutions_left_early",
        "substitutes_hired_by_employer",
        "jobseekers_referred",
        "jobseekers_eligible",
        "preparation_completed",
        "progressions",
    ] {
        assert!(json["totals"][name].is_u64(), "totals.{name}");
    }
    assert!(json["as_of"]["position"].is_u64());
    assert!(json["as_of"]["recordedtime"].is_string());
    assert_eq!(json["rates"]["substitute_into_work_rate"], json!(1.0));
    assert!(json["rates"]["training_completion_rate"].is_f64());
    assert_eq!(json["by_sector"]["C"]["releases_started"], json!(2));
    assert_eq!(json["by_group"]["age_band"]["50+"]["placed"], json!(1));
    assert_eq!(json["monthly"][0]["month"], json!("2025-01"));
    assert_eq!(json["monthly"][0]["referrals"], json!(2));
    assert_eq!(
        json["limits"],
        json!({"min_unemployed_weeks": 26, "max_substitution_weeks": 26})
    );
    let flag = &json["flags"][0];
    assert_eq!(flag["rule"], json!("min_unemployed_weeks"));
    assert_eq!(flag["rotation"], json!(R2));
    assert_eq!(flag["substitution"], json!(S2));
    assert!(flag["message"].is_string());
}

#[test]
fn flags_carry_no_person() {
    let d = board(&small_scheme().events);
    let text = serde_json::to_string(&d.flags).expect("serialises");
    for person in [J1, J2, J3, W1, W2, W3] {
        assert!(
            !text.contains(&person.to_string()),
            "{person} appears in a flag"
        );
    }
    assert!(
        !text.contains("21 weeks"),
        "a substitute's own weeks appear in a flag"
    );
}

#[test]
fn limits_are_applied_when_the_dashboard_is_read() {
    let dashboards = fold(&small_scheme().events);
    let lenient = SchemeLimits {
        min_unemployed_weeks: 13,
        max_substitution_weeks: 52,
    };
    let d = dashboards.dashboard(STOKE, &lenient).expect("known");
    let rules: Vec<FlagRule> = d.flags.iter().map(|f| f.rule).collect();
    assert_eq!(rules, [FlagRule::HourForHour]);
    assert_eq!(d.limits, lenient);
}

#[test]
fn partnerships_are_kept_apart() {
    let mut h = small_scheme();
    h.register_partnership("leeds");
    h.push_in(
        "leeds",
        "employer.enrolled",
        &format!("employer/{}", Uuid::from_u128(0x1e)),
        "2025-02-01",
        json!({"name": "Leeds Ltd", "sector": "F", "size": "small", "area": "E08000035"}),
    );
    let dashboards = fold(&h.events);
    assert_eq!(dashboards.partnerships(), ["leeds", STOKE]);
    let leeds = dashboards
        .dashboard("leeds", &SchemeLimits::default())
        .expect("known");
    assert_eq!(leeds.totals.employers_enrolled, 1);
    assert_eq!(leeds.as_of.position, h.events.len() as u64);
    assert_eq!(
        dashboards
            .dashboard(STOKE, &SchemeLimits::default())
            .expect("known")
            .totals
            .employers_enrolled,
        2
    );
    assert_eq!(dashboards.dashboard("york", &SchemeLimits::default()), None);
    assert_eq!(Dashboards::new().position(), 0);
    assert!(Dashboards::new().partnerships().is_empty());
}

#[test]
fn a_hire_in_another_rotation_makes_an_earlier_substitution_lead_into_work() {
    let mut h = History::new();
    h.enrol(E1, "C", "2025-01-02");
    h.employee(W1, E1, "2025-01-03");
    h.employee(W2, E1, "2025-01-03");
    h.jobseeker(J1, "2024-01-01", Value::Null, "2025-01-06");
    h.agree(R1, E1, "2025-02-01");
    h.agree(R2, E1, "2025-02-01");
    h.release(R1, L1, W1, 30.0, "2025-03-03");
    h.substitute(R1, S1, J1, &[L1], 30.0, "2025-06-30", "2025-03-03");
    h.substitution_ended(R1, S1, "completed", "2025-06-30");
    let before = board(&h.events);
    assert_eq!(before.totals.substitutions_into_work, 0);
    assert_eq!(before.totals.substitutes_into_work, 0);

    h.release(R2, L2, W2, 30.0, "2025-07-07");
    h.substitute(R2, S2, J1, &[L2], 30.0, "2025-09-30", "2025-07-07");
    let hire = h.substitution_ended(R2, S2, "hired_by_employer", "2025-09-30");
    let after = board(&h.events);
    assert_eq!(after.totals.substitutions_ended, 2);
    assert_eq!(after.totals.substitutions_into_work, 2);
    assert_eq!(after.totals.substitutes_into_work, 1);
    assert_eq!(after.totals.jobseekers_placed, 1);

    h.retract(hire, "2025-10-01");
    let retracted = board(&h.events);
    assert_eq!(retracted.totals.substitutions_ended, 1);
    assert_eq!(retracted.totals.substitutions_into_work, 0);
    assert_eq!(retracted.totals.substitutions_active, 1);
}

#[test]
fn eligibility_is_the_latest_assessment() {
    let mut h = History::new();
    h.jobseeker(J1, "2024-01-01", Value::Null, "2025-01-06");
    h.assess(J1, true, "2025-01-10");
    let no = h.assess(J1, false, "2025-01-20");
    assert_eq!(board(&h.events).totals.jobseekers_eligible, 0);
    h.retract(no, "2025-01-21");
    assert_eq!(board(&h.events).totals.jobseekers_eligible, 1);
}

// ---------------------------------------------------------------------------
// Retraction

#[test]
fn retracting_any_event_leaves_the_figures_as_if_it_never_happened() {
    let h = small_scheme();
    for event in &h.events {
        let id = event.envelope.id;
        let mut retracted = h.clone();
        retracted.retract(id, "2026-02-01");
        assert_eq!(
            figures(board(&retracted.events)),
            figures(board(&h.without(id))),
            "retracting {}",
            event.envelope.event_type
        );
    }
}

#[test]
fn retracting_a_retraction_brings_the_event_back() {
    let h = small_scheme();
    let whole = figures(board(&h.events));
    let hire = h.events[h.events.len() - 4].envelope.id;
    let mut twice = h.clone();
    let first = twice.retract(hire, "2026-02-01");
    assert_ne!(figures(board(&twice.events)), whole);
    twice.retract(first, "2026-02-02");
    assert_eq!(figures(board(&twice.events)), whole);

    // Two retractions of one event: undoing one of them is not enough.
    let mut both = h.clone();
    let first = both.retract(hire, "2026-02-01");
    both.retract(hire, "2026-02-02");
    both.retract(first, "2026-02-03");
    assert_eq!(
        figures(board(&both.events)),
        figures(board(&h.without(hire)))
    );
}

#[test]
fn a_retracted_enrolment_files_its_rotations_under_unknown() {
    let mut h = small_scheme();
    let enrolment = h.events[1].envelope.id;
    h.retract(enrolment, "2026-02-01");
    let d = board(&h.events);
    assert_eq!(d.totals.employers_enrolled, 1);
    assert!(!d.by_sector.contains_key("C"));
    assert_eq!(d.by_sector["unknown"].releases_started, 2);
    assert_eq!(d.by_sector["unknown"].employers_enrolled, 0);
    assert_eq!(d.totals.releases_started, 3);
}

#[test]
fn a_retracted_registration_moves_the_person_to_not_recorded() {
    let mut h = small_scheme();
    let registration = h.events[6].envelope.id;
    assert_eq!(
        h.events[6].envelope.subject.to_string(),
        format!("person/{J1}")
    );
    h.retract(registration, "2026-02-01");
    let d = board(&h.events);
    assert_eq!(d.by_group["sex"]["female"].referred, 0);
    assert_eq!(d.by_group["sex"]["not_recorded"].referred, 2);
    assert_eq!(d.totals.jobseekers_referred, 3);
}

// ---------------------------------------------------------------------------
// Checkpoints

#[test]
fn events_already_applied_are_ignored_on_resume() {
    let h = small_scheme();
    let whole = fold(&h.events);
    let mut resumed = fold(&h.events[..20]);
    for event in &h.events {
        resumed.apply(event);
    }
    assert_eq!(resumed, whole);
    assert_eq!(resumed.position(), h.events.len() as u64);
}

/// `state` written as a checkpoint and read back, its registrations'
/// profiles opened again from `events`, as the projector does: a
/// checkpoint holds no profile answer (contract section 9).
fn through_checkpoint(state: &Dashboards, events: &[CommittedEvent]) -> Dashboards {
    let json = serde_json::to_string(state).expect("serialises");
    assert!(
        !json.contains("birth_year") && !json.contains("\"sex\""),
        "{json}"
    );
    let mut back: Dashboards = serde_json::from_str(&json).expect("deserialises");
    for position in back.registrations() {
        let event = events
            .iter()
            .find(|e| e.ledger.position == position)
            .expect("the registration's event");
        if let Ok(rotation_events::EventData::ParticipantRegistered(d)) = event.envelope.data()
            && let Some(profile) = d.profile
        {
            back.restore_profile(event, &profile);
        }
    }
    back
}

#[test]
fn a_checkpoint_reads_back_with_the_same_figures() {
    let h = small_scheme();
    let whole = fold(&h.events);
    let back = through_checkpoint(&whole, &h.events);
    assert_eq!(back, whole);
    assert_eq!(
        back.dashboard(STOKE, &SchemeLimits::default()),
        whole.dashboard(STOKE, &SchemeLimits::default())
    );
}

// ---------------------------------------------------------------------------
// Disclosure control on real dashboards

/// Thirty referred jobseekers (12 female, 15 male, 3 of other sex), all
/// eligible; releases whose training 12 completed and 3 left.
fn larger_scheme() -> History {
    let mut h = History::new();
    h.enrol(E1, "C", "2025-01-02");
    h.agree(R1, E1, "2025-02-01");
    for n in 0..30u128 {
        let person = Uuid::from_u128(0x1000 + n);
        let sex = match n {
            0..12 => "female",
            12..27 => "male",
            _ => "other",
        };
        h.jobseeker(
            person,
            "2024-01-01",
            json!({"birth_year": 1990, "sex": sex}),
            "2025-01-06",
        );
        h.refer(person, "2025-01-06");
        h.assess(person, true, "2025-01-10");
    }
    for n in 0..15u128 {
        let (employee, release) = (Uuid::from_u128(0x2000 + n), Uuid::from_u128(0x3000 + n));
        h.employee(employee, E1, "2025-01-03");
        h.release(R1, release, employee, 20.0, "2025-03-03");
        if n < 12 {
            h.training_completed(R1, release, "2025-06-30");
        } else {
            h.training_left(R1, release, "2025-04-30");
        }
    }
    h
}

fn pointers(value: &Value) -> Vec<&str> {
    value["suppressed"]
        .as_array()
        .expect("a suppressed list")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn disclosure_hides_small_counts_and_their_complements() {
    let d = board(&larger_scheme().events);
    let p = protect(&d, &DisclosureConfig::default());

    assert_eq!(p["totals"]["jobseekers_referred"], json!(30));
    assert_eq!(p["totals"]["releases_started"], json!(15));
    assert_eq!(p["totals"]["training_completed"], json!(10));
    assert_eq!(p["totals"]["training_left"], Value::Null);
    assert_eq!(p["totals"]["employers_enrolled"], Value::Null);
    assert_eq!(p["totals"]["substitutions_started"], json!(0));

    let sex = &p["by_group"]["sex"];
    assert_eq!(sex["other"]["referred"], Value::Null);
    assert_eq!(
        sex["female"]["referred"],
        Value::Null,
        "the next smallest cell"
    );
    assert_eq!(sex["male"]["referred"], json!(15));
    assert_eq!(sex["not_recorded"]["referred"], json!(0));
    assert_eq!(p["by_group"]["age_band"]["25-49"]["referred"], json!(30));

    let hidden = pointers(&p);
    for pointer in [
        "/totals/training_left",
        "/totals/employers_enrolled",
        "/by_group/sex/other/referred",
        "/by_group/sex/female/referred",
        "/by_group/sex/other/eligible",
        "/by_group/sex/female/eligible",
    ] {
        assert!(hidden.contains(&pointer), "{pointer} is not listed");
    }
    for pointer in &hidden {
        assert_eq!(p.pointer(pointer), Some(&Value::Null), "{pointer}");
    }

    // Three left of fifteen: the rate would give the three away.
    assert_eq!(p["rates"]["training_completion_rate"], Value::Null);
    assert_eq!(p["rates"]["substitute_into_work_rate"], Value::Null);
    assert_eq!(p["disclosure"], json!({"threshold": 10, "rounding": 5}));
    assert_eq!(
        p["as_of"],
        serde_json::to_value(&d.as_of).expect("serialises")
    );
    assert_eq!(p["partnership"], json!(STOKE));
}

#[test]
fn disclosure_can_be_loosened() {
    let d = board(&larger_scheme().events);
    let p = protect(
        &d,
        &DisclosureConfig {
            threshold: 3,
            rounding: 1,
            ..DisclosureConfig::default()
        },
    );
    assert_eq!(p["totals"]["training_left"], json!(3));
    assert_eq!(p["rates"]["training_completion_rate"], json!(0.8));
    assert_eq!(p["by_group"]["sex"]["other"]["referred"], json!(3));
    let off = protect(
        &d,
        &DisclosureConfig {
            threshold: 0,
            rounding: 0,
            ..DisclosureConfig::default()
        },
    );
    assert!(pointers(&off).is_empty());
    assert_eq!(off["totals"]["employers_enrolled"], json!(1));
}

#[test]
fn the_protected_view_keeps_the_flags() {
    let d = board(&small_scheme().events);
    let p = protect(&d, &DisclosureConfig::default());
    assert_eq!(
        p["flags"],
        serde_json::to_value(&d.flags).expect("serialises")
    );
    assert_eq!(p["totals"]["substitutes_hired_by_employer"], Value::Null);
}

// ---------------------------------------------------------------------------
// Properties over random histories

/// One step of a random history; indices pick among a few ids, so that
/// steps meet the same entities.
#[derive(Clone, Debug)]
enum Step {
    Enrol(u8, u8),
    Register(u8, u16, Option<i32>, Option<u8>, bool),
    Refer(u8),
    Assess(u8, bool),
    Prepared(u8),
    Mentored(u8),
    Progressed(u8, u8),
    Observed(u8, u8),
    Agree(u8, u8),
    Release(u8, u8, u8),
    Substitute(u8, u8, u8, Vec<u8>, u8, u16),
    TrainingCompleted(u8, u8),
    TrainingLeft(u8, u8),
    ReleaseEnded(u8, u8),
    Ended(u8, u8, u8),
    Closed(u8),
    Retract(u16),
}

fn step() -> impl Strategy<Value = Step> {
    let small = || 0u8..3;
    prop_oneof![
        (small(), 0u8..4).prop_map(|(e, s)| Step::Enrol(e, s)),
        (
            0u8..5,
            0u16..800,
            proptest::option::of(1950i32..2008),
            proptest::option::of(0u8..4),
            any::<bool>()
        )
            .prop_map(|(p, since, born, sex, jobseeker)| Step::Register(
                p, since, born, sex, jobseeker
            )),
        (0u8..5).prop_map(Step::Refer),
        (0u8..5, any::<bool>()).prop_map(|(p, e)| Step::Assess(p, e)),
        (0u8..5).prop_map(Step::Prepared),
        (0u8..5).prop_map(Step::Mentored),
        (0u8..5, 0u8..8).prop_map(|(p, k)| Step::Progressed(p, k)),
        (0u8..5, 0u8..6).prop_map(|(p, s)| Step::Observed(p, s)),
        (small(), small()).prop_map(|(r, e)| Step::Agree(r, e)),
        (small(), 0u8..4, 0u8..160).prop_map(|(r, l, h)| Step::Release(r, l, h)),
        (
            small(),
            small(),
            0u8..5,
            proptest::collection::vec(0u8..4, 1..3),
            0u8..160,
            0u16..300
        )
            .prop_map(|(r, s, p, c, h, len)| Step::Substitute(r, s, p, c, h, len)),
        (small(), 0u8..4).prop_map(|(r, l)| Step::TrainingCompleted(r, l)),
        (small(), 0u8..4).prop_map(|(r, l)| Step::TrainingLeft(r, l)),
        (small(), 0u8..4).prop_map(|(r, l)| Step::ReleaseEnded(r, l)),
        (small(), small(), 0u8..4).prop_map(|(r, s, why)| Step::Ended(r, s, why)),
        small().prop_map(Step::Closed),
        any::<u16>().prop_map(Step::Retract),
    ]
}

/// A random history: each step in one of two partnerships, on a day within
/// about two years (not in order: late reports are normal).
fn history() -> impl Strategy<Value = Vec<(bool, u16, Step)>> {
    proptest::collection::vec((any::<bool>(), 0u16..700, step()), 0..40)
}

/// An id for entity `n` of `kind` in a partnership, distinct across both.
fn entity(partnership: &str, kind: u8, n: u8) -> Uuid {
    let p = u128::from(partnership == "leeds");
    Uuid::from_u128((p << 64) | (u128::from(kind) << 8) | u128::from(n))
}

fn build(steps: &[(bool, u16, Step)]) -> History {
    const SECTORS: [&str; 4] = ["C", "F", "Q", "G"];
    const SEXES: [&str; 4] = ["female", "male", "other", "prefer_not_to_say"];
    const KINDS: [&str; 8] = [
        "promotion",
        "pay_rise",
        "new_role",
        "qualification",
        "permanent_job",
        "other_job",
        "education",
        "self_employment",
    ];
    const STATUSES: [&str; 6] = [
        "employed",
        "self_employed",
        "education",
        "unemployed",
        "inactive",
        "unknown",
    ];
    const REASONS: [&str; 4] = ["completed", "left_early", "hired_by_employer", "dismissed"];
    let base = NaiveDate::from_ymd_opt(2025, 1, 1).expect("a date");
    let date = |offset: u16| (base + Duration::days(i64::from(offset))).to_string();

    let mut h = History::new();
    h.register_partnership(STOKE);
    h.register_partnership("leeds");
    for (leeds, day_offset, step) in steps {
        let p = if *leeds { "leeds" } else { STOKE };
        let day = date(*day_offset);
        let employer = |n| entity(p, 1, n);
        let person = |n| entity(p, 2, n);
        let rotation = |n| entity(p, 3, n);
        let release = |n| entity(p, 4, n);
        let substitution = |n| entity(p, 5, n);
        let at = |kind: &str, id: Uuid| format!("{kind}/{id}");
        match step.clone() {
            Step::Enrol(e, s) => {
                h.push_in(
                    p,
                    "employer.enrolled",
                    &at("employer", employer(e)),
                    &day,
                    json!({"name": "Firm", "sector": SECTORS[usize::from(s)], "size": "small", "area": "E06000021"}),
                );
            }
            Step::Register(n, since, born, sex, jobseeker) => {
                let mut profile = json!({});
                if let Some(year) = born {
                    profile["birth_year"] = json!(year);
                }
                if let Some(s) = sex {
                    profile["sex"] = json!(SEXES[usize::from(s)]);
                }
                let data = if jobseeker {
                    let since = NaiveDate::from_ymd_opt(2023, 1, 1).expect("a date")
                        + Duration::days(i64::from(since));
                    json!({"role": "jobseeker", "unemployed_since": since.to_string(), "profile": profile})
                } else {
                    json!({"role": "employee", "employer": employer(0), "profile": profile})
                };
                h.push_in(
                    p,
                    "participant.registered",
                    &at("person", person(n)),
                    &day,
                    data,
                );
            }
            Step::Refer(n) => {
                h.push_in(
                    p,
                    "jobseeker.referred",
                    &at("person", person(n)),
                    &day,
                    json!({"referred_by": "self"}),
                );
            }
            Step::Assess(n, eligible) => {
                h.push_in(
                    p,
                    "jobseeker.eligibility_assessed",
                    &at("person", person(n)),
                    &day,
                    json!({"eligible": eligible}),
                );
            }
            Step::Prepared(n) => {
                h.push_in(
                    p,
                    "jobseeker.preparation_completed",
                    &at("person", person(n)),
                    &day,
                    json!({"provider": "College"}),
                );
            }
            Step::Mentored(n) => {
                h.push_in(
                    p,
                    "jobseeker.mentoring_session",
                    &at("person", person(n)),
                    &day,
                    json!({"minutes": 30, "mentor": "employer"}),
                );
            }
            Step::Progressed(n, k) => {
                h.push_in(
                    p,
                    "person.progressed",
                    &at("person", person(n)),
                    &day,
                    json!({"kind": KINDS[usize::from(k)]}),
                );
            }
            Step::Observed(n, s) => {
                h.push_in(
                    p,
                    "person.outcome_observed",
                    &at("person", person(n)),
                    &day,
                    json!({"status": STATUSES[usize::from(s)], "source": "admin_data"}),
                );
            }
            Step::Agree(r, e) => {
                h.push_in(
                    p,
                    "rotation.agreed",
                    &at("rotation", rotation(r)),
                    &day,
                    json!({"employer": employer(e), "planned_start": day, "planned_end": day}),
                );
            }
            Step::Release(r, l, hours) => {
                h.push_in(
                    p,
                    "rotation.release_started",
                    &at("rotation", rotation(r)),
                    &day,
                    json!({
                        "release_id": release(l),
                        "employee": person(0),
                        "course": {"title": "Course", "provider": "College", "rqf_level": 2, "hours_per_week": f64::from(hours) / 4.0},
                        "planned_end": day,
                    }),
                );
            }
            Step::Substitute(r, s, n, covers, hours, length) => {
                let covers: Vec<Uuid> = covers.into_iter().map(release).collect();
                let planned_end =
                    (base + Duration::days(i64::from(*day_offset) + i64::from(length))).to_string();
                h.push_in(
                    p,
                    "rotation.substitution_started",
                    &at("rotation", rotation(r)),
                    &day,
                    json!({
                        "substitution_id": substitution(s),
                        "substitute": person(n),
                        "covers": covers,
                        "hours_per_week": f64::from(hours) / 4.0,
                        "planned_end": planned_end,
                    }),
                );
            }
            Step::TrainingCompleted(r, l) => {
                h.push_in(
                    p,
                    "rotation.training_completed",
                    &at("rotation", rotation(r)),
                    &day,
                    json!({"release_id": release(l), "qualification_achieved": false}),
                );
            }
            Step::TrainingLeft(r, l) => {
                h.push_in(
                    p,
                    "rotation.training_left",
                    &at("rotation", rotation(r)),
                    &day,
                    json!({"release_id": release(l), "reason": "moved away"}),
                );
            }
            Step::ReleaseEnded(r, l) => {
                h.push_in(
                    p,
                    "rotation.release_ended",
                    &at("rotation", rotation(r)),
                    &day,
                    json!({"release_id": release(l)}),
                );
            }
            Step::Ended(r, s, why) => {
                h.push_in(
                    p,
                    "rotation.substitution_ended",
                    &at("rotation", rotation(r)),
                    &day,
                    json!({"substitution_id": substitution(s), "reason": REASONS[usize::from(why)]}),
                );
            }
            Step::Closed(r) => {
                h.push_in(
                    p,
                    "rotation.closed",
                    &at("rotation", rotation(r)),
                    &day,
                    json!({}),
                );
            }
            Step::Retract(back) => {
                let target = h.events[h.events.len() - 1 - usize::from(back) % h.events.len()]
                    .envelope
                    .id;
                h.retract(target, &day);
            }
        }
    }
    h
}

/// The equations the protected view must not leave with exactly one hidden
/// member, read from the JSON alone: each breakdown column against its
/// total.
fn lone_hidden_cells(p: &Value) -> Vec<String> {
    let mut lone = Vec::new();
    let mut judge = |name: String, total: &Value, cells: Vec<&Value>| {
        let hidden = cells.iter().filter(|c| c.is_null()).count() + usize::from(total.is_null());
        if hidden == 1 {
            lone.push(name);
        }
    };
    let group_totals = [
        ("referred", "jobseekers_referred"),
        ("eligible", "jobseekers_eligible"),
        ("preparation_completed", "preparation_completed"),
        ("placed", "jobseekers_placed"),
        ("into_work", "substitutes_into_work"),
    ];
    if let Some(dimensions) = p["by_group"].as_object() {
        for (dimension, categories) in dimensions {
            for (measure, total) in group_totals {
                let cells = categories
                    .as_object()
                    .map(|c| c.values().map(|row| &row[measure]).collect())
                    .unwrap_or_default();
                judge(
                    format!("by_group/{dimension}/{measure}"),
                    &p["totals"][total],
                    cells,
                );
            }
        }
    }
    for measure in [
        "employers_enrolled",
        "rotations_agreed",
        "releases_started",
        "training_completed",
        "training_left",
        "substitutions_started",
    ] {
        let cells = p["by_sector"]
            .as_object()
            .map(|s| s.values().map(|row| &row[measure]).collect())
            .unwrap_or_default();
        judge(format!("by_sector/{measure}"), &p["totals"][measure], cells);
    }
    for measure in [
        "referrals",
        "releases_started",
        "substitutions_started",
        "training_completed",
        "progressions",
    ] {
        let cells = p["monthly"]
            .as_array()
            .map(|rows| rows.iter().map(|row| &row[measure]).collect())
            .unwrap_or_default();
        judge(format!("monthly/{measure}"), &p["totals"][measure], cells);
    }
    let t = &p["totals"];
    judge(
        "substitutions_ended".into(),
        &t["substitutions_ended"],
        vec![
            &t["substitutions_completed"],
            &t["substitutions_left_early"],
            &t["substitutes_hired_by_employer"],
            &t["substitutions_dismissed"],
        ],
    );
    judge(
        "substitutions_started".into(),
        &t["substitutions_started"],
        vec![&t["substitutions_active"], &t["substitutions_ended"]],
    );
    judge(
        "releases_started".into(),
        &t["releases_started"],
        vec![&t["releases_active"], &t["releases_ended"]],
    );
    lone
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Folding a history equals folding part of it, checkpointing the state
    /// through JSON, and folding the rest: at every split point.
    #[test]
    fn checkpoint_and_resume_equal_one_fold(steps in history()) {
        let h = build(&steps);
        let whole = fold(&h.events);
        for split in 0..=h.events.len() {
            let first = fold(&h.events[..split]);
            let mut resumed = through_checkpoint(&first, &h.events);
            prop_assert_eq!(&resumed, &first, "round trip at {}", split);
            for event in &h.events[split..] {
                resumed.apply(event);
            }
            prop_assert_eq!(&resumed, &whole, "resumed at {}", split);
        }
    }

    /// Retracting an event gives the figures of the history without it;
    /// retracting the retraction gives the figures of the whole history.
    #[test]
    fn retraction_equals_omission(steps in history(), pick in any::<prop::sample::Index>()) {
        let steps: Vec<_> = steps.into_iter().filter(|(_, _, s)| !matches!(s, Step::Retract(_))).collect();
        let h = build(&steps);
        // The first two events register the partnerships and stay, so
        // both histories know both partnerships.
        prop_assume!(h.events.len() > 2);
        let target = h.events[2 + pick.index(h.events.len() - 2)].envelope.id;
        let mut retracted = h.clone();
        let retraction = retracted.retract(target, "2027-01-01");
        let limits = SchemeLimits::default();
        let (with, without) = (fold(&retracted.events), fold(&h.without(target)));
        for p in [STOKE, "leeds"] {
            prop_assert_eq!(
                with.dashboard(p, &limits).map(figures),
                without.dashboard(p, &limits).map(figures)
            );
        }
        retracted.retract(retraction, "2027-01-02");
        let (restored, whole) = (fold(&retracted.events), fold(&h.events));
        for p in [STOKE, "leeds"] {
            prop_assert_eq!(
                restored.dashboard(p, &limits).map(figures),
                whole.dashboard(p, &limits).map(figures)
            );
        }
    }

    /// The protected view never leaves a hidden count that its column's
    /// total and the other cells would give away; every hidden count is
    /// listed, and every shown count is a multiple of five.
    #[test]
    fn protection_leaves_no_lone_hidden_cell(steps in history()) {
        let h = build(&steps);
        let dashboards = fold(&h.events);
        for p in dashboards.partnerships() {
            let d = dashboards.dashboard(&p, &SchemeLimits::default()).expect("known");
            let protected = protect(&d, &DisclosureConfig::default());
            prop_assert_eq!(lone_hidden_cells(&protected), Vec::<String>::new());
            for pointer in pointers(&protected) {
                prop_assert_eq!(protected.pointer(pointer), Some(&Value::Null));
            }
            for count in protected["totals"].as_object().expect("totals").values() {
                if let Some(n) = count.as_u64() {
                    prop_assert_eq!(n % 5, 0);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Disclosure across releases: the board's view under attack

/// The ethnicity of the `i`-th newcomer: seven in ten white, the rest
/// spread over the other answers, from a fixed sequence.
fn ethnicity_of(i: u64) -> &'static str {
    let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
    match mixed % 10 {
        0 => "asian",
        1 => "black",
        2 => "mixed",
        _ => "white",
    }
}

/// A small partnership of 60 referred jobseekers, then `newcomers` more,
/// each registered and referred; returns the history and, for each
/// newcomer, the position of their referral and their ethnicity.
fn growing_partnership(newcomers: u64) -> (History, Vec<(usize, &'static str)>) {
    let mut history = History::new();
    history.register_partnership(STOKE);
    let mut referrals = Vec::new();
    for i in 0..60 + newcomers {
        let person = Uuid::from_u128(0x5000 + u128::from(i));
        let ethnicity = ethnicity_of(i);
        let profile = json!({"birth_year": 1990, "sex": "female", "ethnicity": ethnicity});
        history.jobseeker(person, "2024-01-01", profile, "2025-03-01");
        history.refer(person, "2025-03-02");
        if i >= 60 {
            referrals.push((history.events.len(), ethnicity));
        }
    }
    (history, referrals)
}

/// Folds `history` under `config`, and returns the board's view after
/// each event.
fn board_views(history: &History, config: &DisclosureConfig) -> Vec<Value> {
    let mut dashboards = Dashboards::with_disclosure(config, b"the ledger's own secret, 32 bytes")
        .expect("a valid configuration");
    history
        .events
        .iter()
        .map(|event| {
            dashboards.apply(event);
            dashboards.board(STOKE).expect("the partnership")
        })
        .collect()
}

const ETHNICITIES: &[&str] = &[
    "asian",
    "black",
    "mixed",
    "white",
    "other",
    "prefer_not_to_say",
];

fn referred(view: &Value, ethnicity: &str) -> Option<u64> {
    view["by_group"]["ethnicity"][ethnicity]["referred"].as_u64()
}

/// The differencing attacker: after each referral, guesses the newcomer's
/// ethnicity as the one published cell that rose while the others did
/// not, or else the largest group (white). Returns the attacker's share of
/// right guesses and that of always guessing the largest group.
fn differencing_attack(config: &DisclosureConfig) -> (f64, f64) {
    let (history, referrals) = growing_partnership(300);
    let views = board_views(&history, config);
    let (mut right, mut baseline) = (0u32, 0u32);
    for &(at, truth) in &referrals {
        let (before, after) = (&views[at - 2], &views[at - 1]);
        let rose: Vec<&str> = ETHNICITIES
            .iter()
            .copied()
            .filter(|&e| referred(after, e).unwrap_or(0) > referred(before, e).unwrap_or(0))
            .collect();
        let guess = match rose.as_slice() {
            [one] => *one,
            _ => "white",
        };
        right += u32::from(guess == truth);
        baseline += u32::from(truth == "white");
    }
    let n = f64::from(u32::try_from(referrals.len()).expect("few"));
    (f64::from(right) / n, f64::from(baseline) / n)
}

/// The tolerance of the attack tests: with 300 newcomers a share's
/// standard error is at most 0.029, so 0.06 is two of them; the plain rule
/// beats guessing by about a fifth of the other groups' share (one step
/// of rounding in five shows a single newcomer), well over it.
const TOLERANCE: f64 = 0.06;

#[test]
fn differencing_does_not_beat_guessing_the_largest_group_under_cell_key() {
    let (attacker, baseline) = differencing_attack(&DisclosureConfig::default());
    assert!(
        attacker <= baseline + TOLERANCE,
        "the attacker was right {attacker:.3} of the time, guessing {baseline:.3}"
    );
}

#[test]
fn differencing_beats_guessing_under_the_plain_rule_released_every_unit() {
    let config = DisclosureConfig {
        method: Method::Round,
        release_min_units: 1,
        ..DisclosureConfig::default()
    };
    let (attacker, baseline) = differencing_attack(&config);
    assert!(
        attacker > baseline + TOLERANCE,
        "the attacker was right only {attacker:.3} of the time, guessing {baseline:.3}"
    );
}

/// The step-up attacker: a published count that just rose is taken to sit
/// on the lowest value its figure stands for under rounding (the figure
/// minus 2). Returns the share of such guesses that were right.
fn step_up_attack(config: &DisclosureConfig) -> f64 {
    let (history, _) = growing_partnership(300);
    let views = board_views(&history, config);
    let (mut right, mut guesses) = (0u32, 0u32);
    let mut raw = fold(&history.events[..1]);
    for at in 1..history.events.len() {
        raw.apply(&history.events[at]);
        let truth = raw
            .dashboard(STOKE, &SchemeLimits::default())
            .expect("the partnership");
        for &e in ETHNICITIES {
            let (Some(before), Some(now)) = (referred(&views[at - 1], e), referred(&views[at], e))
            else {
                continue;
            };
            if now > before {
                guesses += 1;
                let exact = truth.by_group["ethnicity"][e].referred;
                right += u32::from(exact == now - 2);
            }
        }
    }
    assert!(guesses >= 20, "only {guesses} step-ups to judge");
    f64::from(right) / f64::from(guesses)
}

#[test]
fn step_ups_do_not_give_exact_counts_under_cell_key() {
    let share = step_up_attack(&DisclosureConfig::default());
    assert!(share <= 0.5 + TOLERANCE, "right {share:.3} of the time");
    let plain = DisclosureConfig {
        method: Method::Round,
        release_min_units: 1,
        ..DisclosureConfig::default()
    };
    let share = step_up_attack(&plain);
    assert!(
        share > 0.9,
        "the plain rule gave exact counts only {share:.3} of the time"
    );
}

#[test]
fn the_same_log_gives_the_same_board_view_after_a_checkpoint() {
    let (history, _) = growing_partnership(40);
    let config = DisclosureConfig::default();
    let secret = b"the ledger's own secret, 32 bytes";
    let mut whole = Dashboards::with_disclosure(&config, secret).expect("valid");
    for event in &history.events {
        whole.apply(event);
    }
    let mut first = Dashboards::with_disclosure(&config, secret).expect("valid");
    let half = history.events.len() / 2;
    for event in &history.events[..half] {
        first.apply(event);
    }
    let mut resumed = through_checkpoint(&first, &history.events);
    resumed.set_disclosure(&config, secret).expect("valid");
    for event in &history.events {
        resumed.apply(event);
    }
    let view = |d: &Dashboards| serde_json::to_vec(&d.board(STOKE)).expect("json");
    assert_eq!(view(&whole), view(&resumed));
    assert!(whole.board(STOKE).expect("known")["releases"]["jobseekers_referred"].is_object());
}

/// The interval audit as a reader would run it on a small partnership's
/// published `referred` table: 60 people, 30 women and 30 men, one lone
/// parent and one who did not say, the issue's own example.
#[test]
fn every_hidden_cell_of_a_small_table_spans_at_least_five_values() {
    use rotation_projections::disclosure::{IntervalRule, Relation, audit};

    let mut history = History::new();
    history.register_partnership(STOKE);
    for i in 0..60u128 {
        let person = Uuid::from_u128(0x7000 + i);
        let sex = if i % 2 == 0 { "female" } else { "male" };
        let mut profile = json!({"birth_year": 1990, "sex": sex});
        match i {
            0 => profile["lone_parent"] = json!(true),
            1 => {}
            _ => profile["lone_parent"] = json!(false),
        }
        history.jobseeker(person, "2024-01-01", profile, "2025-03-01");
        history.refer(person, "2025-03-02");
    }
    let plain = DisclosureConfig {
        method: Method::Round,
        ..DisclosureConfig::default()
    };
    // Under the plain rule the lone-parent cells narrow to 1 to 3 unless
    // more is hidden; under cell_key the perturbation widens every range.
    let cases = [
        (
            DisclosureConfig::default(),
            &b"the ledger's own secret, 32 bytes"[..],
        ),
        (
            DisclosureConfig::default(),
            b"another ledger's secret, 32 bytes",
        ),
        (plain, b"the ledger's own secret, 32 bytes"),
    ];
    for (config, secret) in cases {
        let mut dashboards = Dashboards::with_disclosure(&config, secret).expect("valid");
        for event in &history.events {
            dashboards.apply(event);
        }
        let limits = SchemeLimits::default();
        let view = dashboards.board(STOKE).expect("known");
        let raw = dashboards.dashboard(STOKE, &limits).expect("known");
        // The table's cells as a reader sees them: the total, then every
        // category of every dimension, each dimension adding up to it.
        let mut values = vec![raw.totals.jobseekers_referred];
        let mut published = vec![view["totals"]["jobseekers_referred"].as_u64()];
        let mut relations = Vec::new();
        for (dimension, categories) in &raw.by_group {
            let mut parts = Vec::new();
            for (category, counts) in categories {
                parts.push(values.len());
                values.push(counts.referred);
                published.push(view["by_group"][dimension][category]["referred"].as_u64());
            }
            relations.push(Relation::exact(0, parts));
        }
        let hidden = published.iter().filter(|p| p.is_none()).count();
        assert!(
            hidden >= 2,
            "the small lone-parent cells are hidden: {view}"
        );
        let ranges = audit(&values, &published, &relations, &IntervalRule::new(&config))
            .expect("the published table is consistent");
        for (cell, range) in ranges.iter().enumerate() {
            if let Some(range) = range {
                assert!(
                    range.is_protected(4),
                    "hidden cell {cell} (true {}) narrows to {range:?}",
                    values[cell]
                );
            }
        }
    }
}

/// A rotation with one release training 20 hours a week, then
/// `substitutions` substitutes of 37.5 hours in March 2025, each an
/// exception to hour for hour.
fn flagged_rotation(substitutions: u128) -> History {
    let mut history = History::new();
    history.register_partnership(STOKE);
    history.enrol(E1, "C", "2025-01-02");
    history.employee(W1, E1, "2025-01-03");
    history.agree(R1, E1, "2025-02-01");
    history.release(R1, L1, W1, 20.0, "2025-03-03");
    for i in 0..substitutions {
        history.substitute(
            R1,
            Uuid::from_u128(0x9100 + i),
            Uuid::from_u128(0x9000 + i),
            &[L1],
            37.5,
            "2025-06-30",
            "2025-03-10",
        );
    }
    history
}

/// The board's count of March's hour-for-hour exceptions, and the release
/// it comes from.
fn hour_for_hour(view: &Value) -> (Value, Value) {
    let row = view["flags"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|row| row["month"] == "2025-03" && row["rule"] == "hour_for_hour")
        .cloned()
        .unwrap_or(Value::Null);
    (
        row["count"].clone(),
        view["releases"]["flags/hour_for_hour"].clone(),
    )
}

#[test]
fn a_single_new_flag_waits_for_the_release_cadence() {
    let history = flagged_rotation(40);
    let secret = b"the ledger's own secret, 32 bytes";
    let watch = |config: &DisclosureConfig| {
        let mut dashboards = Dashboards::with_disclosure(config, secret).expect("valid");
        let (first, rest) = history.events.split_at(history.events.len() - 10);
        for event in first {
            dashboards.apply(event);
        }
        let mut seen = vec![hour_for_hour(&dashboards.board(STOKE).expect("known"))];
        for (i, event) in rest.iter().enumerate() {
            dashboards.apply(event);
            let raw = dashboards
                .dashboard(STOKE, &SchemeLimits::default())
                .expect("known");
            assert_eq!(raw.flags.len(), 31 + i, "the raw view stays live");
            seen.push(hour_for_hour(&dashboards.board(STOKE).expect("known")));
        }
        seen
    };

    let seen = watch(&DisclosureConfig::default());
    let (count, release) = &seen[0];
    assert!(
        count.as_u64().is_some_and(|n| (25..=35).contains(&n)),
        "{count}"
    );
    assert!(release["position"].is_u64(), "{release}");
    // Nine new flags are fewer than `release_min_units`: the board keeps
    // showing the previous release, count and date alike.
    for later in &seen[1..10] {
        assert_eq!(later, &seen[0], "a flag showed before the cadence allowed");
    }
    // The tenth makes the table due, and it is released anew.
    assert_ne!(seen[10].1, seen[0].1);
    assert!(seen[10].0.as_u64().is_some_and(|n| (35..=45).contains(&n)));

    // Released at every unit, each new flag moves the release at once.
    let every_unit = DisclosureConfig {
        release_min_units: 1,
        ..DisclosureConfig::default()
    };
    let seen = watch(&every_unit);
    for pair in seen.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "each flag is a release");
    }
}

#[test]
fn flags_are_counted_under_the_limits_the_fold_was_given() {
    let history = flagged_rotation(20);
    let mut dashboards = Dashboards::new();
    for event in &history.events {
        dashboards.apply(event);
    }
    let (count, _) = hour_for_hour(&dashboards.board(STOKE).expect("known"));
    assert!(count.as_u64().is_some_and(|n| n >= 10), "{count}");
    // Substitutions planned for 16 weeks break a 10-week maximum: the
    // flags are counted again, and the table is due at once.
    let strict = SchemeLimits {
        min_unemployed_weeks: 26,
        max_substitution_weeks: 10,
    };
    dashboards.set_limits([(STOKE.to_owned(), strict.clone())].into());
    let view = dashboards.board(STOKE).expect("known");
    assert_eq!(view["limits"]["max_substitution_weeks"], 10);
    assert_eq!(
        view["releases"]["flags/max_substitution_weeks"],
        Value::Null,
        "no event has been applied since, so nothing is released yet"
    );
    let later = flagged_rotation(21);
    dashboards.apply(later.events.last().expect("one more"));
    let view = dashboards.board(STOKE).expect("known");
    let max_weeks = view["flags"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|row| row["rule"] == "max_substitution_weeks")
        .expect("listed")["count"]
        .clone();
    assert!(max_weeks.as_u64().is_some_and(|n| n >= 10), "{max_weeks}");
    // The limits are part of what a checkpoint was made under.
    assert!(!dashboards.same_control(&Dashboards::new()));
}

/// Twelve substitutions started, then ten of them completed: the board
/// shows 10 started and 10 ended, each table passing its own audit, and
/// `substitutions_active` (2) hidden. A reader who knows that started is
/// active plus ended narrows active to 1 or 2, unless the audit across
/// tables hides more.
fn twelve_started_ten_ended() -> History {
    let mut history = History::new();
    history.register_partnership(STOKE);
    history.enrol(E1, "C", "2025-01-02");
    history.employee(W1, E1, "2025-01-03");
    history.agree(R1, E1, "2025-02-01");
    history.release(R1, L1, W1, 37.5, "2025-03-03");
    let substitution = |i: u128| Uuid::from_u128(0x9100 + i);
    for i in 0..12 {
        let person = Uuid::from_u128(0x9000 + i);
        history.substitute(
            R1,
            substitution(i),
            person,
            &[L1],
            37.5,
            "2025-06-30",
            "2025-03-10",
        );
    }
    for i in 0..10 {
        history.substitution_ended(R1, substitution(i), "completed", "2025-06-30");
    }
    history
}

#[test]
fn relations_between_tables_do_not_narrow_a_hidden_total() {
    use rotation_projections::disclosure::{IntervalRule, Relation, audit};

    let history = twelve_started_ten_ended();
    // The plain rule, released at every unit: every figure is fresh, and
    // only the audit stands between the reader and the hidden count.
    let config = DisclosureConfig {
        method: Method::Round,
        release_min_units: 1,
        ..DisclosureConfig::default()
    };
    let mut dashboards =
        Dashboards::with_disclosure(&config, b"the ledger's own secret, 32 bytes").expect("valid");
    for event in &history.events {
        dashboards.apply(event);
    }
    let view = dashboards.board(STOKE).expect("known");
    let raw = dashboards
        .dashboard(STOKE, &SchemeLimits::default())
        .expect("known");
    assert_eq!(raw.totals.substitutions_active, 2);
    assert_eq!(view["totals"]["substitutions_active"], Value::Null);

    // The reader's audit of the totals the relations between tables link.
    let names = [
        "substitutions_started",
        "substitutions_active",
        "substitutions_ended",
        "substitutions_completed",
        "substitutions_left_early",
        "substitutes_hired_by_employer",
        "substitutions_dismissed",
    ];
    let raw_totals = serde_json::to_value(&raw.totals).expect("serialises");
    let values: Vec<u64> = names
        .iter()
        .map(|n| raw_totals[n].as_u64().expect("a count"))
        .collect();
    let published: Vec<Option<u64>> = names.iter().map(|n| view["totals"][n].as_u64()).collect();
    let relations = [
        Relation::exact(0, vec![1, 2]),
        Relation::exact(2, vec![3, 4, 5, 6]),
    ];
    let ranges = audit(&values, &published, &relations, &IntervalRule::new(&config))
        .expect("the published totals are consistent");
    for (i, range) in ranges.iter().enumerate() {
        if let Some(range) = range {
            assert!(
                range.is_protected(4),
                "{} (true {}) narrows to {range:?} in {}",
                names[i],
                values[i],
                view["totals"]
            );
        }
    }
}

/// Twelve jobseekers registered and referred in each of `months` calendar
/// months from January 2023.
fn referrals_over_months(months: u32) -> History {
    let mut history = History::new();
    history.register_partnership(STOKE);
    for m in 0..months {
        let day = format!("{:04}-{:02}-10", 2023 + m / 12, m % 12 + 1);
        for i in 0..12 {
            let person = Uuid::from_u128(0x7000 + u128::from(m * 100 + i));
            let profile = json!({"birth_year": 1990, "sex": "female", "ethnicity": "white"});
            history.jobseeker(person, "2022-01-01", profile, &day);
            history.refer(person, &day);
        }
    }
    history
}

fn board_months(view: &Value) -> Vec<String> {
    view["monthly"]
        .as_array()
        .expect("a monthly series")
        .iter()
        .map(|row| row["month"].as_str().expect("a month").to_owned())
        .collect()
}

#[test]
fn the_board_shows_every_month_the_raw_view_shows() {
    let months = 30;
    let dashboards = fold(&referrals_over_months(months).events);
    let raw: Vec<String> = dashboards
        .dashboard(STOKE, &SchemeLimits::default())
        .expect("known")
        .monthly
        .iter()
        .map(|row| row.month.clone())
        .collect();
    assert_eq!(raw.len(), months as usize, "the raw view keeps every month");
    let view = dashboards.board(STOKE).expect("known");
    assert_eq!(board_months(&view), raw, "the board's monthly series");
    // Every pointer to a hidden cell names a row the board shows.
    for path in view["suppressed"].as_array().expect("a list") {
        let path = path.as_str().expect("a pointer");
        assert!(view.pointer(path).is_some(), "{path} points at nothing");
    }
}
