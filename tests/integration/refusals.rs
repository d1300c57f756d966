//! Refusals a partner can find again (contract section 3): every rejected
//! submission whose body holds an `id` string is listed, returned and
//! published under it, however early its parsing stopped; and the small
//! refusals users met (duplicate keys in `data`, one id twice in a batch).

use rotation_ledger::ledger::ReceiptStatus;
use serde_json::{Value, json};

use crate::support::*;

/// Submits `body` as raw bytes and returns the outcome's receipts' ids,
/// the error code and the id the kept rejection is listed under.
async fn refused(body: &str) -> (Vec<Option<String>>, String, Option<String>) {
    let ledger = TempLedger::new();
    for event in scheme_events() {
        assert_eq!(ledger.code(&event).await, "accepted");
    }
    let outcome = ledger.submit_bytes(body.as_bytes().to_vec()).await;
    let code = outcome
        .rejection
        .as_ref()
        .map(|v| v.code.to_string())
        .unwrap_or_else(|| panic!("{body} was accepted"));
    assert!(
        outcome
            .receipts
            .iter()
            .all(|r| r.status == ReceiptStatus::Rejected)
    );
    let ids = outcome.receipts.iter().map(|r| r.id.clone()).collect();
    let records: Vec<_> = ledger
        .ledger
        .rejections(0)
        .collect::<Result<_, _>>()
        .expect("the rejections read");
    assert_eq!(records.len(), 1, "one rejection is kept");
    (ids, code, records[0].event_id.clone())
}

fn text(event: &Value) -> String {
    event.to_string()
}

#[tokio::test]
async fn a_refusal_before_the_envelope_is_whole_is_kept_under_its_id() {
    let good = employer_enrolled(2);
    let id = good["id"].as_str().unwrap().to_owned();
    let cases = [
        (
            "an unknown type",
            with(good.clone(), "/type", json!("jobrotation.employer.hired")),
        ),
        (
            "a missing data field",
            without(good.clone(), "/data/sector"),
        ),
        (
            "a subject of the wrong kind",
            with(
                good.clone(),
                "/subject",
                json!(format!("person/{}", uuid(2))),
            ),
        ),
        ("a missing source", without(good.clone(), "/source")),
    ];
    for (what, body) in cases {
        let (ids, code, listed) = refused(&text(&body)).await;
        assert_eq!(code, "invalid_event", "{what}");
        assert_eq!(listed.as_deref(), Some(id.as_str()), "{what}: listed");
        assert_eq!(ids, vec![Some(id.clone())], "{what}: returned");
    }
}

#[tokio::test]
async fn an_id_that_is_not_a_uuid_is_still_the_refusals_name() {
    let body = with(
        employer_enrolled(2),
        "/id",
        json!("order-17 from the Stoke jobcentre"),
    );
    let (ids, code, listed) = refused(&text(&body)).await;
    assert_eq!(code, "invalid_event");
    assert_eq!(listed.as_deref(), Some("order-17 from the Stoke jobcentre"));
    assert_eq!(ids, vec![Some("order-17 from the Stoke jobcentre".into())]);
}

#[tokio::test]
async fn a_body_without_a_readable_id_is_listed_without_one() {
    for body in [
        "not json at all".to_owned(),
        text(&without(employer_enrolled(2), "/id")),
        text(&with(employer_enrolled(2), "/id", json!(17))),
    ] {
        let (ids, code, listed) = refused(&body).await;
        assert_eq!(code, "invalid_event", "{body}");
        assert_eq!(listed, None, "{body}");
        assert_eq!(ids, vec![None], "{body}");
    }
}

#[tokio::test]
async fn each_event_of_a_refused_batch_is_answered_under_its_id() {
    let first = employer_enrolled(2);
    let broken = with(employer_enrolled(3), "/type", json!("jobrotation.nope"));
    let body = Value::Array(vec![first.clone(), broken.clone()]);
    let (ids, code, listed) = refused(&text(&body)).await;
    assert_eq!(code, "invalid_event");
    let expected: Vec<Option<String>> = [&first, &broken]
        .iter()
        .map(|e| e["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(listed, expected[1]);
}

#[tokio::test]
async fn rejections_lists_a_refused_submission_under_its_id() {
    let ledger = TempLedger::new();
    let body = with(employer_enrolled(2), "/type", json!("jobrotation.nope"));
    assert_eq!(ledger.code(&body).await, "invalid_event");
    let dir = ledger.into_dir();
    let output = std::process::Command::new(binary())
        .args(["rejections", "--data"])
        .arg(dir.path())
        .output()
        .expect("the binary runs");
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        listed.starts_with(body["id"].as_str().unwrap()),
        "listed: {listed}"
    );
}

#[tokio::test]
async fn duplicate_keys_inside_data_are_refused() {
    let event = employer_enrolled(2);
    let body = text(&event).replacen("\"sector\":", "\"sector\":\"C\",\"sector\":", 1);
    assert!(body.matches("\"sector\"").count() == 2, "{body}");
    let (ids, code, _) = refused(&body).await;
    assert_eq!(code, "invalid_event");
    assert_eq!(ids, vec![event["id"].as_str().map(str::to_owned)]);

    // Nested objects too.
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    let release = release_started(100, 200, 10);
    let nested = text(&release).replacen("\"title\":", "\"title\":\"x\",\"title\":", 1);
    assert!(nested.matches("\"title\"").count() == 2, "{nested}");
    let outcome = ledger.submit_bytes(nested.into_bytes()).await;
    assert_eq!(
        outcome.rejection.map(|v| v.code.to_string()).as_deref(),
        Some("invalid_event")
    );
}

#[tokio::test]
async fn one_id_twice_in_a_batch_with_other_content_is_a_conflict() {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    let first = employer_enrolled(2);
    for second in [
        with(first.clone(), "/data/name", json!("Another name")),
        with(employer_enrolled(3), "/id", first["id"].clone()),
    ] {
        let outcome = ledger
            .submit(&Value::Array(vec![first.clone(), second]))
            .await;
        assert_eq!(
            outcome.rejection.map(|v| v.code.to_string()).as_deref(),
            Some("duplicate_id_conflict")
        );
    }
}
