//! The stream states kept in memory between snapshots: a group writes no
//! state key, a snapshot writes each changed stream once, and opening
//! after a crash between snapshots replays the tail into the same states
//! a fresh replay of the log gives.

use rotation_events::CommittedEvent;
use rotation_ledger::ledger::ReceiptStatus;
use serde_json::Value;

use crate::support::*;

/// The whole durable log of `ledger`.
fn log(ledger: &TempLedger) -> Vec<CommittedEvent> {
    let head = ledger.ledger.head().position;
    ledger
        .ledger
        .events(0, head as usize)
        .expect("the log reads back")
}

/// How many streams [`scheme`] makes.
fn scheme_streams() -> usize {
    let subjects: std::collections::BTreeSet<String> = scheme_events()
        .iter()
        .map(|e| e["subject"].to_string())
        .collect();
    subjects.len()
}

/// Submits `events` as one atomic batch, which the writer commits as one
/// group, and checks every event is accepted.
async fn accepted_batch(ledger: &TempLedger, events: Vec<Value>) {
    let count = events.len();
    let outcome = ledger.submit(&Value::Array(events)).await;
    assert_eq!(outcome.rejection, None);
    assert_eq!(outcome.receipts.len(), count);
    assert!(
        outcome
            .receipts
            .iter()
            .all(|r| r.status == ReceiptStatus::Accepted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_a_thousand_new_streams_writes_no_state_key() {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    let before = ledger.ledger.state_keys_written();
    accepted_batch(&ledger, (1000..2000).map(jobseeker_registered).collect()).await;
    assert_eq!(
        ledger.ledger.state_keys_written() - before,
        0,
        "a group between snapshots keeps its states in memory"
    );
    // Every reader sees the states all the same.
    assert_eq!(ledger.ledger.stream_count(), 1000 + scheme_streams());
    let subject = rotation_events::Subject::Person(uuid::Uuid::parse_str(&uuid(1500)).unwrap());
    assert_eq!(ledger.ledger.stream(&subject).expect("a stream").len(), 1);
    let states_before = states(&ledger.ledger);

    // Closing stores them, each stream once, and opening replays nothing.
    let ledger = ledger.reopen();
    assert_eq!(states(&ledger.ledger), states_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_writes_each_changed_stream_once() {
    let ledger = TempLedger::snapshot_every(600);
    scheme(&ledger).await;
    accepted_batch(&ledger, (1000..1100).map(jobseeker_registered).collect()).await;
    let before = ledger.ledger.state_keys_written();
    // Five groups of 100 events on the same 100 streams: the fifth ends at
    // 606 events since opening, past the snapshot's 600.
    for _ in 0..5 {
        accepted_batch(&ledger, (1000..1100).map(referred).collect()).await;
    }
    let written = ledger.ledger.state_keys_written() - before;
    assert_eq!(
        written,
        100 + scheme_streams() as u64,
        "one key for each stream changed since the last snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_snapshots_replays_the_tail_into_the_same_states() {
    // Snapshots every 7 events, and a crash 5 events after the last one;
    // the tail holds a retraction, which re-folds its stream from events
    // both before and after the snapshot.
    let ledger = TempLedger::snapshot_every(7);
    scheme(&ledger).await;
    let rotation = 100;
    let mut assessments = Vec::new();
    for person in 30..34 {
        assert_eq!(ledger.code(&jobseeker_registered(person)).await, "accepted");
        let assessment = assessed(person, true);
        assert_eq!(ledger.code(&assessment).await, "accepted");
        assessments.push(assessment);
    }
    let started = release_started(rotation, 200, 10);
    assert_eq!(ledger.code(&started).await, "accepted");
    assert_eq!(ledger.code(&retraction(&started)).await, "accepted");
    assert_eq!(
        ledger.code(&release_started(rotation, 201, 10)).await,
        "accepted",
        "the retracted release freed its employee"
    );
    // An assessment stored in the snapshot at 14, retracted in the tail.
    assert_eq!(ledger.code(&retraction(&assessments[1])).await, "accepted");
    let head = ledger.ledger.head();
    assert_eq!(head.position, 18);
    let before = states(&ledger.ledger);

    let ledger = ledger.reopen_after_crash();
    assert_eq!(ledger.ledger.head(), head);
    assert_eq!(states(&ledger.ledger), before, "the tail replayed");
    let fresh = replay_accepted(&log(&ledger)).await;
    assert_eq!(states(&ledger.ledger), states(&fresh.ledger));

    // And the rules go on from the replayed state.
    assert_eq!(
        ledger.code(&release_started(rotation, 202, 10)).await,
        "rule_violation",
        "employee 10 is on release 201"
    );
    assert_eq!(
        ledger.code(&jobseeker_registered(30)).await,
        "rule_violation"
    );
    assert_eq!(
        ledger
            .code(&substitution_started(rotation, 300, 31, &[201]))
            .await,
        "rule_violation",
        "jobseeker 31's assessment was retracted"
    );
    assert_eq!(
        ledger
            .code(&substitution_started(rotation, 301, 32, &[201]))
            .await,
        "accepted"
    );
}
