//! The domain rules of contract section 3, given–when–then: given events
//! that must all be accepted, when one more event (or batch) arrives, then
//! it is accepted, answered as a duplicate, or rejected with exactly the
//! expected code. Every rule has a case that passes it and one that breaks
//! it, so a rule that rejects too much fails as surely as one that rejects
//! too little.

use std::collections::BTreeSet;

use rotation_ledger::auth::{Caller, Role, Scope};
use rotation_ledger::ledger::{Outcome, ReceiptStatus, Submission};
use serde_json::{Value, json};

use crate::support::*;

/// The answer to a submission as the contract names it: `accepted`,
/// `duplicate`, or the error code.
fn answer(outcome: &Outcome) -> String {
    if let Some(violation) = &outcome.rejection {
        return violation.code.to_string();
    }
    let all = |status| outcome.receipts.iter().all(|r| r.status == status);
    if all(ReceiptStatus::Duplicate) {
        "duplicate".into()
    } else {
        "accepted".into()
    }
}

/// Given `given` (each submitted on its own and each accepted), when `when`
/// is submitted by the operator, then the answer is `expected`.
async fn check(given: &[Value], when: Value, expected: &str) -> (TempLedger, Outcome) {
    check_bytes(
        given,
        when.to_string().into_bytes(),
        Caller::operator(),
        expected,
    )
    .await
}

/// [`check`] with the body as bytes and any caller.
async fn check_bytes(
    given: &[Value],
    body: Vec<u8>,
    caller: Caller,
    expected: &str,
) -> (TempLedger, Outcome) {
    let ledger = TempLedger::new();
    for event in given {
        let outcome = ledger.submit(event).await;
        assert_eq!(
            answer(&outcome),
            "accepted",
            "given {event}: {:?}",
            outcome.rejection
        );
    }
    let head = ledger.ledger.head();
    let shown = String::from_utf8_lossy(&body).into_owned();
    let outcome = ledger
        .ledger
        .submit_one(Submission::from_json(body, "test", caller))
        .await
        .expect("the ledger answers");
    assert_eq!(
        answer(&outcome),
        expected,
        "when {shown}: {:?}",
        outcome.rejection
    );
    if let Some(violation) = &outcome.rejection {
        // A rejection is all-or-nothing: every receipt says so with the
        // same code, and the log has not moved.
        assert!(!outcome.receipts.is_empty());
        for receipt in &outcome.receipts {
            assert_eq!(receipt.status, ReceiptStatus::Rejected);
            assert_eq!(receipt.position, None);
            assert_eq!(receipt.error.as_ref().map(|e| e.code), Some(violation.code));
        }
        assert_eq!(ledger.ledger.head(), head);
    }
    (ledger, outcome)
}

fn publisher(partnerships: &[&str]) -> Caller {
    Caller {
        role: Role::Publisher,
        scope: Scope::Only(std::sync::Arc::new(
            partnerships
                .iter()
                .map(|p| (*p).to_owned())
                .collect::<BTreeSet<_>>(),
        )),
    }
}

/// The scheme followed by `more`.
fn scheme_and(more: &[Value]) -> Vec<Value> {
    let mut events = scheme_events();
    events.extend_from_slice(more);
    events
}

fn leek_registered() -> Value {
    with(
        with(partnership_registered(), "/partnership", json!("leek")),
        "/subject",
        json!("partnership/leek"),
    )
}

fn in_leek(event: Value) -> Value {
    with(event, "/partnership", json!("leek"))
}

fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> Value {
    json!(time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[tokio::test]
async fn invalid_event() {
    check(&[], partnership_registered(), "accepted").await;
    let bad_bodies: [&[u8]; 4] = [b"{\"specversion\": \"1.0\"", b"", b"not json", b"[]"];
    for body in bad_bodies {
        check_bytes(&[], body.to_vec(), Caller::operator(), "invalid_event").await;
    }
    for not_an_object in [
        json!("an event"),
        json!(42),
        json!(null),
        json!(["an event"]),
    ] {
        check(&[], not_an_object, "invalid_event").await;
    }
    let registered = partnership_registered();
    for bad in [
        with(
            registered.clone(),
            "/type",
            json!("jobrotation.partnership.dissolved"),
        ),
        with(registered.clone(), "/specversion", json!("0.3")),
        without(registered.clone(), "/source"),
        without(registered.clone(), "/id"),
        without(registered.clone(), "/data"),
        without(registered.clone(), "/data/name"),
        with(registered.clone(), "/id", json!("not-a-uuid")),
        with(registered.clone(), "/data/areas", json!("E06000021")),
        with(registered.clone(), "/data/areas", json!(["E0600002X"])),
        with(registered.clone(), "/expectedversion", json!("zero")),
        with(registered.clone(), "/expectedversion", json!(-1)),
        with(registered.clone(), "/time", json!("3 March 2025")),
        with(registered.clone(), "/partnership", json!("Stoke On Trent")),
        with(registered.clone(), "/unknown_attribute", json!(1)),
        with(registered.clone(), "/position", json!(1)),
        with(registered.clone(), "/hash", json!("00")),
        with(registered.clone(), "/datacontenttype", json!("text/plain")),
        // A partnership stream named differently from its partnership.
        with(registered.clone(), "/subject", json!("partnership/leek")),
    ] {
        check(&[], bad, "invalid_event").await;
    }
    let given = scheme_events();
    check(
        &given,
        with(assessed(20, true), "/data/eligible", json!("yes")),
        "invalid_event",
    )
    .await;
    check(
        &given,
        with(referred(20), "/data/referred_by", json!("a friend")),
        "invalid_event",
    )
    .await;
}

#[tokio::test]
async fn invalid_event_subject_kind() {
    let given = scheme_events();
    check(&given, employer_enrolled(2), "accepted").await;
    check(
        &given,
        with(
            employer_enrolled(2),
            "/subject",
            json!(format!("person/{}", uuid(2))),
        ),
        "invalid_event",
    )
    .await;
    check(
        &given,
        with(
            release_started(100, 200, 10),
            "/subject",
            json!(format!("person/{}", uuid(10))),
        ),
        "invalid_event",
    )
    .await;
    check(
        &given,
        with(
            referred(20),
            "/subject",
            json!(format!("rotation/{}", uuid(20))),
        ),
        "invalid_event",
    )
    .await;
    check(
        &given,
        with(referred(20), "/subject", json!("person/20")),
        "invalid_event",
    )
    .await;
    check(
        &given,
        with(referred(20), "/subject", json!("team/20")),
        "invalid_event",
    )
    .await;
}

#[tokio::test]
async fn invalid_event_time_more_than_a_day_ahead() {
    let now = chrono::Utc::now();
    let soon = rfc3339(now + chrono::TimeDelta::hours(23));
    let later = rfc3339(now + chrono::TimeDelta::hours(25));
    check(
        &[],
        with(partnership_registered(), "/time", soon),
        "accepted",
    )
    .await;
    check(
        &[],
        with(partnership_registered(), "/time", later),
        "invalid_event",
    )
    .await;
    // Late reports are normal.
    let past = json!("1999-12-31T23:59:59+01:00");
    check(
        &[],
        with(partnership_registered(), "/time", past),
        "accepted",
    )
    .await;
}

#[tokio::test]
async fn invalid_event_end_before_start() {
    let given = scheme_events();
    let agreed = rotation_agreed(101, 1);
    check(
        &given,
        with(agreed.clone(), "/data/planned_end", json!("2025-03-03")),
        "accepted",
    )
    .await;
    check(
        &given,
        with(agreed, "/data/planned_end", json!("2025-03-02")),
        "invalid_event",
    )
    .await;
    let release = release_started(100, 200, 10);
    check(
        &given,
        with(release.clone(), "/data/planned_end", json!("2025-03-03")),
        "accepted",
    )
    .await;
    check(
        &given,
        with(release, "/data/planned_end", json!("2025-01-31")),
        "invalid_event",
    )
    .await;
    let given = scheme_and(&[release_started(100, 200, 10)]);
    let substitution = substitution_started(100, 300, 20, &[200]);
    check(&given, substitution.clone(), "accepted").await;
    check(
        &given,
        with(substitution, "/data/planned_end", json!("2024-12-31")),
        "invalid_event",
    )
    .await;
}

#[tokio::test]
async fn duplicate_answers_with_the_original_position() {
    let registered = employer_enrolled(2);
    let given = scheme_and(&[registered.clone(), employer_enrolled(3)]);
    let (ledger, outcome) = check(&given, registered.clone(), "duplicate").await;
    let receipt = &outcome.receipts[0];
    assert_eq!(receipt.position, Some(7));
    assert_eq!(receipt.streamversion, Some(1));
    assert_eq!(receipt.id.clone().as_deref(), registered["id"].as_str());
    assert_eq!(
        ledger.ledger.head().position,
        8,
        "a duplicate is not appended"
    );

    // Forever, not within a window: the answer survives a restart.
    let ledger = ledger.reopen();
    let outcome = ledger.submit(&registered).await;
    assert_eq!(answer(&outcome), "duplicate");
    assert_eq!(outcome.receipts[0].position, Some(7));
    assert_eq!(ledger.ledger.head().position, 8);
}

#[tokio::test]
async fn duplicate_id_conflict() {
    let registered = employer_enrolled(2);
    let given = scheme_and(std::slice::from_ref(&registered));
    let same_id_other_content = with(registered.clone(), "/data/name", json!("Another Ltd"));
    check(&given, same_id_other_content, "duplicate_id_conflict").await;
    let same_id_other_stream = with(employer_enrolled(3), "/id", registered["id"].clone());
    check(&given, same_id_other_stream, "duplicate_id_conflict").await;
    // The content that counts includes the attributes, not only `data`.
    let same_id_other_source = with(registered, "/source", json!("urn:service:other"));
    check(&given, same_id_other_source, "duplicate_id_conflict").await;
}

#[tokio::test]
async fn version_conflict() {
    let given = scheme_events();
    // Rotation 100 holds one event; employee 10 holds one.
    let release = || release_started(100, 200, 10);
    check(
        &given,
        with(release(), "/expectedversion", json!(1)),
        "accepted",
    )
    .await;
    for expected in [0, 2, 7] {
        let (_, outcome) = check(
            &given,
            with(release(), "/expectedversion", json!(expected)),
            "version_conflict",
        )
        .await;
        let error = outcome.receipts[0].error.as_ref().expect("an error");
        assert_eq!(error.current_version, Some(1), "expected {expected}");
        assert_eq!(
            outcome.rejection.as_ref().and_then(|v| v.current_version),
            Some(1)
        );
    }
    // 0 means the stream must not exist yet.
    check(
        &given,
        with(employer_enrolled(2), "/expectedversion", json!(0)),
        "accepted",
    )
    .await;
    let (_, outcome) = check(
        &given,
        with(employer_enrolled(1), "/expectedversion", json!(0)),
        "version_conflict",
    )
    .await;
    assert_eq!(
        outcome.receipts[0]
            .error
            .as_ref()
            .and_then(|e| e.current_version),
        Some(1)
    );
}

#[tokio::test]
async fn unknown_stream() {
    let given = scheme_events();
    check(&given, rotation_agreed(101, 1), "accepted").await;
    check(&given, release_started(101, 200, 10), "unknown_stream").await;
    check(&given, referred(20), "accepted").await;
    check(&given, referred(21), "unknown_stream").await;
    // A first event of the wrong type.
    check(&given, rotation_closed(101), "unknown_stream").await;
    check(&given, assessed(21, true), "unknown_stream").await;
    let enrolled_elsewhere = employer_enrolled(2);
    check(&given, retraction(&enrolled_elsewhere), "unknown_stream").await;
}

#[tokio::test]
async fn rule_violation_employer_not_enrolled() {
    let given = scheme_events();
    check(&given, employee_registered(11, 1), "accepted").await;
    check(&given, employee_registered(11, 2), "rule_violation").await;
    check(&given, rotation_agreed(101, 1), "accepted").await;
    check(&given, rotation_agreed(101, 2), "rule_violation").await;
    // An employer of another partnership is not enrolled in this one.
    let leek = [leek_registered(), in_leek(employer_enrolled(2))];
    let given = scheme_and(&leek);
    check(&given, employee_registered(11, 2), "rule_violation").await;
    check(&given, rotation_agreed(101, 2), "rule_violation").await;
    check(&given, in_leek(rotation_agreed(101, 2)), "accepted").await;
}

#[tokio::test]
async fn rule_violation_employee_of_another_employer() {
    let given = scheme_and(&[employer_enrolled(2), employee_registered(11, 2)]);
    check(&given, release_started(100, 200, 10), "accepted").await;
    check(&given, release_started(100, 200, 11), "rule_violation").await;
    // A jobseeker is not an employee, and neither is a stranger.
    check(&given, release_started(100, 200, 20), "rule_violation").await;
    check(&given, release_started(100, 200, 12), "rule_violation").await;
}

#[tokio::test]
async fn rule_violation_substitute_not_eligible() {
    let base = scheme_and(&[release_started(100, 200, 10)]);
    check(
        &base,
        substitution_started(100, 300, 20, &[200]),
        "accepted",
    )
    .await;
    // An employee is not a jobseeker; an unregistered person is nobody.
    check(
        &base,
        substitution_started(100, 300, 10, &[200]),
        "rule_violation",
    )
    .await;
    check(
        &base,
        substitution_started(100, 300, 21, &[200]),
        "rule_violation",
    )
    .await;
    // Registered but never assessed.
    let given = [base.clone(), vec![jobseeker_registered(21)]].concat();
    check(
        &given,
        substitution_started(100, 300, 21, &[200]),
        "rule_violation",
    )
    .await;
    // Assessed ineligible.
    let given = [
        base.clone(),
        vec![jobseeker_registered(21), assessed(21, false)],
    ]
    .concat();
    check(
        &given,
        substitution_started(100, 300, 21, &[200]),
        "rule_violation",
    )
    .await;
    // The latest assessment counts, whichever way it went.
    let given = [base.clone(), vec![assessed(20, false)]].concat();
    check(
        &given,
        substitution_started(100, 300, 20, &[200]),
        "rule_violation",
    )
    .await;
    let given = [
        base.clone(),
        vec![
            jobseeker_registered(21),
            assessed(21, false),
            assessed(21, true),
        ],
    ]
    .concat();
    check(
        &given,
        substitution_started(100, 300, 21, &[200]),
        "accepted",
    )
    .await;
}

#[tokio::test]
async fn rule_violation_second_active_release() {
    let given = scheme_and(&[rotation_agreed(101, 1), release_started(100, 200, 10)]);
    check(&given, release_started(100, 201, 10), "rule_violation").await;
    check(&given, release_started(101, 201, 10), "rule_violation").await;
    // A release id is used once in a rotation.
    let given_two = [given.clone(), vec![employee_registered(11, 1)]].concat();
    check(&given_two, release_started(100, 200, 11), "rule_violation").await;
    check(&given_two, release_started(100, 201, 11), "accepted").await;
    // Once the release has ended, the employee may be released again.
    let ended = [given, vec![release_ended(100, 200)]].concat();
    check(&ended, release_started(101, 201, 10), "accepted").await;
}

#[tokio::test]
async fn rule_violation_second_active_substitution() {
    let given = scheme_and(&[
        employee_registered(11, 1),
        rotation_agreed(101, 1),
        release_started(100, 200, 10),
        release_started(101, 201, 11),
        substitution_started(100, 300, 20, &[200]),
    ]);
    check(
        &given,
        substitution_started(100, 301, 20, &[200]),
        "rule_violation",
    )
    .await;
    check(
        &given,
        substitution_started(101, 301, 20, &[201]),
        "rule_violation",
    )
    .await;
    let given_two = [
        given.clone(),
        vec![jobseeker_registered(21), assessed(21, true)],
    ]
    .concat();
    check(
        &given_two,
        substitution_started(101, 301, 21, &[201]),
        "accepted",
    )
    .await;
    // Two substitutes may cover one release.
    check(
        &given_two,
        substitution_started(100, 301, 21, &[200]),
        "accepted",
    )
    .await;
    let ended = [given, vec![substitution_ended(100, 300)]].concat();
    check(
        &ended,
        substitution_started(101, 301, 20, &[201]),
        "accepted",
    )
    .await;
}

#[tokio::test]
async fn rule_violation_covers_a_release_not_active_in_the_rotation() {
    let given = scheme_and(&[
        employee_registered(11, 1),
        employee_registered(12, 1),
        rotation_agreed(101, 1),
        release_started(100, 200, 10),
        release_started(100, 201, 11),
        release_ended(100, 201),
        release_started(101, 202, 12),
    ]);
    check(
        &given,
        substitution_started(100, 300, 20, &[200]),
        "accepted",
    )
    .await;
    // Unknown, ended, in another rotation, and one bad among good ones.
    check(
        &given,
        substitution_started(100, 300, 20, &[299]),
        "rule_violation",
    )
    .await;
    check(
        &given,
        substitution_started(100, 300, 20, &[201]),
        "rule_violation",
    )
    .await;
    check(
        &given,
        substitution_started(100, 300, 20, &[202]),
        "rule_violation",
    )
    .await;
    check(
        &given,
        substitution_started(100, 300, 20, &[200, 202]),
        "rule_violation",
    )
    .await;
}

#[tokio::test]
async fn rule_violation_training_completed_or_left_twice() {
    let given = scheme_and(&[release_started(100, 200, 10)]);
    check(&given, training_completed(100, 200), "accepted").await;
    check(&given, training_left(100, 200), "accepted").await;
    check(&given, training_completed(100, 299), "rule_violation").await;
    check(&given, training_left(100, 299), "rule_violation").await;
    for first in [training_completed(100, 200), training_left(100, 200)] {
        let done = [given.clone(), vec![first]].concat();
        check(&done, training_completed(100, 200), "rule_violation").await;
        check(&done, training_left(100, 200), "rule_violation").await;
    }
    // Training belongs to the rotation that released the employee.
    let elsewhere = scheme_and(&[rotation_agreed(101, 1), release_started(100, 200, 10)]);
    check(&elsewhere, training_completed(101, 200), "rule_violation").await;
}

#[tokio::test]
async fn rule_violation_ending_what_is_not_active() {
    let given = scheme_and(&[
        release_started(100, 200, 10),
        substitution_started(100, 300, 20, &[200]),
    ]);
    check(&given, release_ended(100, 200), "accepted").await;
    check(&given, substitution_ended(100, 300), "accepted").await;
    check(&given, release_ended(100, 299), "rule_violation").await;
    check(&given, substitution_ended(100, 399), "rule_violation").await;
    // A release id is not a substitution id, nor the other way round.
    check(&given, release_ended(100, 300), "rule_violation").await;
    check(&given, substitution_ended(100, 200), "rule_violation").await;
    let ended = [
        given.clone(),
        vec![release_ended(100, 200), substitution_ended(100, 300)],
    ]
    .concat();
    check(&ended, release_ended(100, 200), "rule_violation").await;
    check(&ended, substitution_ended(100, 300), "rule_violation").await;
    let elsewhere = [given, vec![rotation_agreed(101, 1)]].concat();
    check(&elsewhere, release_ended(101, 200), "rule_violation").await;
    check(&elsewhere, substitution_ended(101, 300), "rule_violation").await;
}

#[tokio::test]
async fn rule_violation_partnership_differs_from_the_stream() {
    let given = scheme_and(&[leek_registered()]);
    check(&given, release_started(100, 200, 10), "accepted").await;
    check(
        &given,
        in_leek(release_started(100, 200, 10)),
        "rule_violation",
    )
    .await;
    check(&given, in_leek(assessed(20, true)), "rule_violation").await;
    // A person of another partnership may not be released by this one.
    let leek = [
        leek_registered(),
        in_leek(employer_enrolled(2)),
        in_leek(employee_registered(11, 2)),
        in_leek(rotation_agreed(101, 2)),
    ];
    let given = scheme_and(&leek);
    check(&given, in_leek(release_started(101, 200, 11)), "accepted").await;
    check(&given, release_started(101, 200, 11), "rule_violation").await;
}

#[tokio::test]
async fn rule_violation_partnership_not_registered() {
    check(
        &[partnership_registered()],
        employer_enrolled(1),
        "accepted",
    )
    .await;
    check(&[], employer_enrolled(1), "rule_violation").await;
    check(
        &[partnership_registered()],
        in_leek(employer_enrolled(1)),
        "rule_violation",
    )
    .await;
    check(&[], jobseeker_registered(20), "rule_violation").await;
    // A partnership registers once.
    check(
        &[partnership_registered()],
        partnership_registered(),
        "rule_violation",
    )
    .await;
}

#[tokio::test]
async fn rule_violation_closed_rotation() {
    let given = scheme_events();
    check(&given, rotation_closed(100), "accepted").await;
    let closed = scheme_and(&[rotation_closed(100)]);
    check(&closed, release_started(100, 200, 10), "rule_violation").await;
    check(&closed, rotation_closed(100), "rule_violation").await;
    // Closing one rotation leaves the others open.
    let two = scheme_and(&[rotation_agreed(101, 1), rotation_closed(100)]);
    check(&two, release_started(101, 200, 10), "accepted").await;
}

/// What was under way when a rotation closed may still be reported ending,
/// so that nobody stays on a release for good.
#[tokio::test]
async fn regression_a_closed_rotation_still_takes_late_ends() {
    let release = release_started(100, 200, 10);
    let under_way = scheme_and(&[release, rotation_closed(100)]);
    check(
        &under_way,
        rotation_event(100, "release_ended", json!({"release_id": uuid(200)})),
        "accepted",
    )
    .await;
    check(
        &under_way,
        rotation_event(
            100,
            "training_completed",
            json!({"release_id": uuid(200), "qualification_achieved": true}),
        ),
        "accepted",
    )
    .await;
}

#[tokio::test]
async fn rule_violation_retraction() {
    let enrolled = employer_enrolled(2);
    let given = scheme_and(std::slice::from_ref(&enrolled));
    check(&given, retraction(&enrolled), "accepted").await;
    // Unknown event.
    let unknown = with(retraction(&enrolled), "/data/event_id", json!(event_id(1)));
    check(&given, unknown, "rule_violation").await;
    // An event of another stream, even of the same kind.
    let other = employer_enrolled(3);
    let given_other = [given.clone(), vec![other.clone()]].concat();
    let misplaced = with(retraction(&enrolled), "/subject", other["subject"].clone());
    check(&given_other, misplaced, "rule_violation").await;
    // Twice.
    let first = retraction(&enrolled);
    let once = [given.clone(), vec![first.clone()]].concat();
    check(&once, retraction(&enrolled), "rule_violation").await;
    // A retraction itself.
    check(&once, retraction(&first), "rule_violation").await;
    // A rejected event was never committed, so there is nothing to retract.
    let rejected = with(
        employee_registered(11, 1),
        "/data/qualification_level",
        json!(9),
    );
    let (ledger, _) = check(&given, rejected.clone(), "invalid_event").await;
    check_after(&ledger, retraction(&rejected), "unknown_stream").await;
    let rejected = with(
        employee_registered(10, 1),
        "/data/qualification_level",
        json!(9),
    );
    let (ledger, _) = check(&given, rejected.clone(), "invalid_event").await;
    check_after(&ledger, retraction(&rejected), "rule_violation").await;
}

#[tokio::test]
async fn forbidden_outside_the_callers_partnerships() {
    let given = scheme_events();
    let body = || employer_enrolled(2).to_string().into_bytes();
    check_bytes(&given, body(), publisher(&["stoke"]), "accepted").await;
    check_bytes(&given, body(), publisher(&["stoke", "leek"]), "accepted").await;
    check_bytes(&given, body(), publisher(&["leek"]), "forbidden").await;
    check_bytes(&given, body(), publisher(&[]), "forbidden").await;
    let board = Caller {
        role: Role::Board,
        scope: Scope::All,
    };
    check_bytes(&given, body(), board, "forbidden").await;
    // A batch is forbidden as a whole if any of it is.
    let batch = json!([employer_enrolled(2), in_leek(employer_enrolled(3))]);
    check_bytes(
        &given,
        batch.to_string().into_bytes(),
        publisher(&["stoke"]),
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn retracting_a_release_start_frees_the_employee() {
    let release = release_started(100, 200, 10);
    let given = scheme_and(&[
        rotation_agreed(101, 1),
        release.clone(),
        retraction(&release),
    ]);
    check(&given, release_started(101, 201, 10), "accepted").await;
    // The retracted release is gone from its rotation.
    check(&given, release_ended(100, 200), "rule_violation").await;
    check(&given, training_completed(100, 200), "rule_violation").await;
}

#[tokio::test]
async fn retracting_a_release_end_reactivates_the_release() {
    let ended = release_ended(100, 200);
    let given = scheme_and(&[
        release_started(100, 200, 10),
        ended.clone(),
        retraction(&ended),
    ]);
    check(&given, release_ended(100, 200), "accepted").await;
    check(
        &given,
        substitution_started(100, 300, 20, &[200]),
        "accepted",
    )
    .await;
    check(&given, release_started(100, 201, 10), "rule_violation").await;
}

#[tokio::test]
async fn retracting_a_release_end_is_refused_once_the_employee_is_released_again() {
    let ended = release_ended(100, 200);
    let given = scheme_and(&[
        rotation_agreed(101, 1),
        release_started(100, 200, 10),
        ended.clone(),
        release_started(101, 201, 10),
    ]);
    check(&given, retraction(&ended), "rule_violation").await;
    // Once the second release has ended too, the first may come back.
    let both_ended = [given, vec![release_ended(101, 201)]].concat();
    check(&both_ended, retraction(&ended), "accepted").await;
}

#[tokio::test]
async fn retracting_a_substitution_end_reactivates_the_substitution() {
    let ended = substitution_ended(100, 300);
    let given = scheme_and(&[
        rotation_agreed(101, 1),
        release_started(100, 200, 10),
        substitution_started(100, 300, 20, &[200]),
        ended.clone(),
        retraction(&ended),
    ]);
    check(&given, substitution_ended(100, 300), "accepted").await;
    check(
        &given,
        substitution_started(100, 301, 20, &[200]),
        "rule_violation",
    )
    .await;
}

#[tokio::test]
async fn batch_is_all_or_nothing() {
    let given = scheme_events();
    let good = [employee_registered(11, 1), release_started(100, 200, 11)];
    let (ledger, outcome) = check(&given, json!(good), "accepted").await;
    // Later events of a batch may depend on earlier ones, and the batch is
    // appended in its order.
    let positions: Vec<_> = outcome.receipts.iter().map(|r| r.position).collect();
    assert_eq!(positions, [Some(7), Some(8)]);
    assert_eq!(ledger.ledger.head().position, 8);

    let bad_last = json!([good[0], good[1], release_started(100, 201, 11)]);
    let (ledger, outcome) = check(&given, bad_last, "rule_violation").await;
    assert_eq!(outcome.receipts.len(), 3);
    assert_eq!(ledger.ledger.head().position, 6);
    assert_eq!(ledger.ledger.events(0, 100).expect("events").len(), 6);
    // Nothing of the batch became state: the employee is still unknown.
    check_after(&ledger, release_started(100, 201, 11), "rule_violation").await;

    let unparsable_middle = json!([good[0], {"specversion": "1.0"}, good[1]]);
    check(&given, unparsable_middle, "invalid_event").await;
    let forward_reference = json!([good[1], good[0]]);
    check(&given, forward_reference, "rule_violation").await;
    // A duplicate inside an accepted batch points at the earlier copy.
    let (_, outcome) = check(&given, json!([good[0], good[0]]), "accepted").await;
    let statuses: Vec<_> = outcome
        .receipts
        .iter()
        .map(|r| (r.status, r.position))
        .collect();
    assert_eq!(
        statuses,
        [
            (ReceiptStatus::Accepted, Some(7)),
            (ReceiptStatus::Duplicate, Some(7))
        ]
    );
    let conflicting = with(good[0].clone(), "/data/qualification_level", json!(3));
    check(
        &given,
        json!([good[0], conflicting]),
        "duplicate_id_conflict",
    )
    .await;
}

/// Submits one more event to a ledger that [`check`] returned.
async fn check_after(ledger: &TempLedger, when: Value, expected: &str) {
    let outcome = ledger.submit(&when).await;
    assert_eq!(
        answer(&outcome),
        expected,
        "when {when}: {:?}",
        outcome.rejection
    );
}

#[tokio::test]
async fn rejections_are_kept_with_their_code_and_body() {
    let ledger = TempLedger::new();
    let bodies: [(&[u8], &str); 4] = [
        (b"{\"specversion\": ", "invalid_event"),
        (b"\xff\xfe not UTF-8 \x80", "invalid_event"),
        (br#"["a", "batch"]"#, "invalid_event"),
        (b"", "invalid_event"),
    ];
    for (body, code) in bodies {
        let outcome = ledger
            .ledger
            .submit_one(Submission::from_json(
                body.to_vec(),
                "test:bytes",
                Caller::operator(),
            ))
            .await
            .expect("the ledger answers");
        assert_eq!(answer(&outcome), code);
    }
    let not_registered = employer_enrolled(1);
    let text = not_registered.to_string();
    let outcome = ledger
        .ledger
        .submit_one(Submission::from_json(
            text.clone().into_bytes(),
            "test:rule",
            Caller::operator(),
        ))
        .await
        .expect("the ledger answers");
    assert_eq!(answer(&outcome), "rule_violation");
    let forbidden = scheme_events()[0].to_string();
    let outcome = ledger
        .ledger
        .submit_one(Submission::from_json(
            forbidden.clone().into_bytes(),
            "test:auth",
            publisher(&["leek"]),
        ))
        .await
        .expect("the ledger answers");
    assert_eq!(answer(&outcome), "forbidden");
    assert_eq!(ledger.ledger.head().position, 0);

    // Kept durably: the list survives a restart.
    let ledger = ledger.reopen();
    let records: Vec<_> = ledger
        .ledger
        .rejections(0)
        .collect::<Result<_, _>>()
        .expect("rejections");
    assert_eq!(records.len(), 6, "{records:#?}");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    let codes: Vec<String> = records.iter().map(|r| r.code.to_string()).collect();
    assert_eq!(
        codes,
        [
            "invalid_event",
            "invalid_event",
            "invalid_event",
            "invalid_event",
            "rule_violation",
            "forbidden"
        ]
    );
    assert_eq!(records[0].body.as_deref(), Some("{\"specversion\": "));
    assert_eq!(records[0].body_base64, None);
    use base64::Engine as _;
    let raw = records[1]
        .body_base64
        .as_deref()
        .expect("non-UTF-8 kept as base64");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("base64"),
        b"\xff\xfe not UTF-8 \x80"
    );
    assert_eq!(records[1].body, None);
    assert_eq!(records[2].body.as_deref(), Some(r#"["a", "batch"]"#));
    assert_eq!(records[3].body.as_deref(), Some(""));
    assert_eq!(records[4].body.as_deref(), Some(text.as_str()));
    assert_eq!(records[4].origin, "test:rule");
    assert_eq!(
        records[4].event_id.clone().as_deref(),
        not_registered["id"].as_str()
    );
    assert_eq!(records[4].partnership.as_deref(), Some("stoke"));
    assert_eq!(records[5].body.as_deref(), Some(forbidden.as_str()));
    // Kept under the caller's partnership, not the one the event names.
    assert_eq!(records[5].partnership.as_deref(), Some("leek"));
    // Paging after a sequence number.
    let later: Vec<u64> = ledger
        .ledger
        .rejections(4)
        .map(|r| r.expect("a record").seq)
        .collect();
    assert_eq!(later, [5, 6]);
}

#[tokio::test]
async fn rejected_batch_is_one_rejection_naming_the_event_at_fault() {
    let given = scheme_events();
    let culprit = release_started(100, 299, 12);
    let batch = json!([employee_registered(11, 1), culprit]);
    let (ledger, outcome) = check(&given, batch.clone(), "rule_violation").await;
    let records: Vec<_> = ledger
        .ledger
        .rejections(0)
        .collect::<Result<_, _>>()
        .expect("rejections");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body.as_deref(), Some(batch.to_string().as_str()));
    assert_eq!(
        records[0].event_id.clone().as_deref(),
        culprit["id"].as_str()
    );
    let ids: Vec<_> = outcome.receipts.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        ids,
        [
            batch[0]["id"].as_str().map(str::to_owned),
            culprit["id"].as_str().map(str::to_owned)
        ]
    );
}

#[tokio::test]
async fn expectedversion_within_a_batch_counts_the_batch_so_far() {
    let given = scheme_events();
    let started = with(release_started(100, 200, 10), "/expectedversion", json!(1));
    let ended = with(release_ended(100, 200), "/expectedversion", json!(2));
    check(&given, json!([started, ended]), "accepted").await;
    let stale = with(release_ended(100, 200), "/expectedversion", json!(1));
    let (_, outcome) = check(&given, json!([started, stale]), "version_conflict").await;
    assert_eq!(outcome.rejection.and_then(|v| v.current_version), Some(2));
}

#[tokio::test]
async fn resubmitting_an_event_with_expectedversion_is_a_duplicate_not_a_conflict() {
    // A publisher that retries after a lost answer must learn that its
    // event is in, although the stream has moved past the version it
    // expected.
    let started = with(release_started(100, 200, 10), "/expectedversion", json!(1));
    let given = scheme_and(&[started.clone(), release_ended(100, 200)]);
    let (_, outcome) = check(&given, started, "duplicate").await;
    assert_eq!(outcome.receipts[0].position, Some(7));
}

#[tokio::test]
async fn retraction_in_the_same_batch_as_its_event() {
    let release = release_started(100, 200, 10);
    let batch = json!([release, retraction(&release)]);
    let (ledger, _) = check(&scheme_events(), batch, "accepted").await;
    check_after(&ledger, release_started(100, 201, 10), "accepted").await;
}

#[tokio::test]
async fn retracting_a_substitution_start_frees_the_substitute() {
    let substitution = substitution_started(100, 300, 20, &[200]);
    let given = scheme_and(&[
        release_started(100, 200, 10),
        substitution.clone(),
        retraction(&substitution),
    ]);
    check(
        &given,
        substitution_started(100, 301, 20, &[200]),
        "accepted",
    )
    .await;
    check(&given, substitution_ended(100, 300), "rule_violation").await;
}

#[tokio::test]
async fn retracting_the_latest_assessment_restores_the_one_before() {
    let ineligible = assessed(20, false);
    let given = scheme_and(&[
        release_started(100, 200, 10),
        ineligible.clone(),
        retraction(&ineligible),
    ]);
    check(
        &given,
        substitution_started(100, 300, 20, &[200]),
        "accepted",
    )
    .await;
    let eligible = assessed(21, true);
    let given = scheme_and(&[
        release_started(100, 200, 10),
        jobseeker_registered(21),
        eligible.clone(),
        retraction(&eligible),
    ]);
    check(
        &given,
        substitution_started(100, 300, 21, &[200]),
        "rule_violation",
    )
    .await;
}

#[tokio::test]
async fn retracting_a_closure_reopens_the_rotation() {
    let closed = rotation_closed(100);
    let given = scheme_and(&[closed.clone(), retraction(&closed)]);
    check(&given, release_started(100, 200, 10), "accepted").await;
}

#[tokio::test]
async fn retracting_a_training_completion_lets_the_training_end_otherwise() {
    let completed = training_completed(100, 200);
    let given = scheme_and(&[
        release_started(100, 200, 10),
        completed.clone(),
        retraction(&completed),
    ]);
    check(&given, training_left(100, 200), "accepted").await;
}

#[tokio::test]
async fn retracting_a_registration_leaves_the_person_unregistered() {
    let registered = jobseeker_registered(21);
    let given = scheme_and(&[registered.clone(), retraction(&registered)]);
    check(&given, assessed(21, true), "rule_violation").await;
    check(&given, referred(21), "rule_violation").await;
}

#[tokio::test]
async fn a_retracted_registration_can_be_made_again() {
    let registered = jobseeker_registered(21);
    // Each event has an id of its own.
    let again = jobseeker_registered(21);
    let given = scheme_and(&[registered.clone(), retraction(&registered)]);
    check(&given, again.clone(), "accepted").await;
    // Registered again, the person is as any other; and still only once.
    let given = scheme_and(&[registered.clone(), retraction(&registered), again]);
    check(&given, assessed(21, true), "accepted").await;
    check(&given, jobseeker_registered(21), "rule_violation").await;
}

#[tokio::test]
async fn a_retracted_agreement_can_be_made_again() {
    let agreed = rotation_agreed(101, 1);
    let again = rotation_agreed(101, 1);
    let given = scheme_and(&[agreed.clone(), retraction(&agreed)]);
    check(&given, release_started(101, 201, 10), "rule_violation").await;
    check(&given, again.clone(), "accepted").await;
    let given = scheme_and(&[agreed.clone(), retraction(&agreed), again]);
    check(&given, release_started(101, 201, 10), "accepted").await;
}

#[tokio::test]
async fn version_one_substitution_is_upcast_and_checked() {
    // Version 1 of `substitution_started` named one release in `release_id`.
    let v1 = |release: u128| {
        let current = substitution_started(100, 300, 20, &[release]);
        let data = with(
            without(current["data"].clone(), "/covers"),
            "/release_id",
            json!(uuid(release)),
        );
        with(current, "/data", data)
    };
    let given = scheme_and(&[release_started(100, 200, 10)]);
    check(&given, v1(200), "accepted").await;
    check(&given, v1(299), "rule_violation").await;
    let given = scheme_and(&[release_started(100, 200, 10), v1(200)]);
    check(&given, substitution_ended(100, 300), "accepted").await;
    check(
        &given,
        substitution_started(100, 301, 20, &[200]),
        "rule_violation",
    )
    .await;
}

#[tokio::test]
async fn invalid_event_unknown_data_field() {
    let given = scheme_events();
    check(
        &given,
        with(referred(20), "/data/referred_by", json!("self")),
        "accepted",
    )
    .await;
    check(
        &given,
        with(referred(20), "/data/colour", json!("blue")),
        "invalid_event",
    )
    .await;
    check(
        &given,
        without(release_started(100, 200, 10), "/data/course/title"),
        "invalid_event",
    )
    .await;
    check(
        &given,
        with(
            release_started(100, 200, 10),
            "/data/course/rqf_level",
            json!(9),
        ),
        "invalid_event",
    )
    .await;
}
