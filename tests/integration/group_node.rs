//! One node's side of a ledger group (contract section 11), without NATS:
//! the gate that holds a writer's answers until the group's stream has
//! stored them and refuses a follower's writes, the apply of events
//! decided elsewhere, and the data keys that travel between nodes.

use std::time::Duration;

use rotation_ledger::ledger::{Gate, LedgerError, RestoreError, Submission};
use serde_json::Value;

use crate::support::*;

fn submission(body: &Value) -> Submission {
    Submission::from_json(
        body.to_string().into_bytes(),
        "test",
        rotation_ledger::auth::Caller::operator(),
    )
}

/// Every event of `from` after `after`, as stored.
fn stored(from: &TempLedger, after: u64) -> Vec<Vec<u8>> {
    from.ledger
        .events_json(after)
        .map(|e| e.expect("the event reads").1.to_vec())
        .collect()
}

/// Applies `events` to `to` and commits them.
async fn apply(to: &TempLedger, events: &[Vec<u8>]) -> Result<u64, RestoreError> {
    let mut apply = to.ledger.apply()?;
    for json in events {
        apply.push(json).await?;
    }
    Ok(apply.commit().await?.position)
}

/// Waits until `ledger`'s durable head reaches `position`.
async fn durable_at(ledger: &TempLedger, position: u64) {
    let mut durable = ledger.ledger.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        durable.wait_for(|d| d.head.position >= position),
    )
    .await
    .expect("the events become durable")
    .expect("the ledger is open");
}

#[tokio::test]
async fn a_follower_refuses_every_write_and_commits_nothing() {
    let node = TempLedger::new();
    scheme(&node).await;
    let head = node.ledger.head();
    node.ledger.set_gate(Gate::Follower);
    assert_eq!(node.ledger.gate(), Gate::Follower);

    let refused = node.ledger.submit(vec![submission(&referred(20))]).await;
    assert!(
        matches!(refused, Err(LedgerError::NotWriter)),
        "{refused:?}"
    );
    let erased = node
        .ledger
        .erase(uuid(20).parse().unwrap(), "asked to")
        .await;
    assert!(
        matches!(
            erased,
            Err(rotation_ledger::ledger::EraseError::Ledger(
                LedgerError::NotWriter
            ))
        ),
        "{erased:?}"
    );
    assert_eq!(node.ledger.head(), head, "nothing was committed");
    assert!(
        node.ledger.keyring().holds(uuid(20).parse().unwrap()),
        "the refused erasure destroyed no key"
    );
}

#[tokio::test]
async fn a_writers_answer_waits_until_the_stream_stores_its_position() {
    let node = TempLedger::new();
    scheme(&node).await;
    let before = node.ledger.head().position;
    node.ledger.set_gate(Gate::Writer { replicated: before });

    let ledger = node.ledger.clone();
    let body = referred(20);
    let answer = tokio::spawn(async move { ledger.submit_one(submission(&body)).await });
    durable_at(&node, before + 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !answer.is_finished(),
        "answered before the stream stored it"
    );

    node.ledger.set_replicated(before);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!answer.is_finished(), "answered before its own position");

    node.ledger.set_replicated(before + 1);
    let outcome = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered once stored")
        .unwrap()
        .expect("accepted");
    assert_eq!(outcome.receipts[0].position, Some(before + 1));
    assert_eq!(
        node.ledger.gate(),
        Gate::Writer {
            replicated: before + 1
        }
    );

    // The stream's acks never move it back.
    node.ledger.set_replicated(before);
    assert_eq!(
        node.ledger.gate(),
        Gate::Writer {
            replicated: before + 1
        }
    );
}

#[tokio::test]
async fn a_duplicate_of_an_unstored_event_waits_too() {
    let node = TempLedger::new();
    scheme(&node).await;
    let before = node.ledger.head().position;
    node.ledger.set_gate(Gate::Writer { replicated: before });
    let body = referred(20);

    let ledger = node.ledger.clone();
    let first_body = body.clone();
    let first = tokio::spawn(async move { ledger.submit_one(submission(&first_body)).await });
    durable_at(&node, before + 1).await;
    let ledger = node.ledger.clone();
    let again = tokio::spawn(async move { ledger.submit_one(submission(&body)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!first.is_finished() && !again.is_finished());

    node.ledger.set_replicated(before + 1);
    let first = first.await.unwrap().expect("accepted");
    let again = again.await.unwrap().expect("answered");
    assert_eq!(first.receipts[0].position, Some(before + 1));
    assert_eq!(again.receipts[0].position, Some(before + 1));
    assert_eq!(node.ledger.head().position, before + 1, "committed once");
}

#[tokio::test]
async fn losing_the_lease_fails_every_answer_still_waiting() {
    let node = TempLedger::new();
    scheme(&node).await;
    let before = node.ledger.head().position;
    node.ledger.set_gate(Gate::Writer { replicated: before });

    let ledger = node.ledger.clone();
    let body = referred(20);
    let waiting_body = body.clone();
    let waiting = tokio::spawn(async move { ledger.submit_one(submission(&waiting_body)).await });
    durable_at(&node, before + 1).await;
    // Fenced and at once the writer again: the answer still fails, as the
    // event was committed under the lost lease.
    node.ledger.set_gate(Gate::Follower);
    node.ledger.set_gate(Gate::Writer {
        replicated: before + 1,
    });
    let failed = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered at once")
        .unwrap();
    assert!(matches!(failed, Err(LedgerError::NotWriter)), "{failed:?}");

    // Once the stream holds it, a resend is answered as a duplicate.
    let again = node.ledger.submit_one(submission(&body)).await.unwrap();
    assert_eq!(again.receipts[0].position, Some(before + 1));
}

#[tokio::test]
async fn a_single_ledger_answers_without_waiting_for_any_stream() {
    let node = TempLedger::new();
    assert_eq!(node.ledger.gate(), Gate::Single);
    node.ledger.set_replicated(7);
    assert_eq!(node.ledger.gate(), Gate::Single, "no stream to follow");
    scheme(&node).await;
    assert_eq!(node.ledger.head().position, scheme_events().len() as u64);
}

#[tokio::test]
async fn an_apply_of_a_writers_events_gives_the_same_log() {
    let writer = TempLedger::new();
    scheme(&writer).await;
    for body in [
        referred(20),
        release_started(100, 200, 10),
        release_ended(100, 200),
    ] {
        assert_eq!(writer.code(&body).await, "accepted", "{body}");
    }
    let events = stored(&writer, 0);

    let follower = TempLedger::new();
    // A follower writes through apply only; its gate does not stop it.
    follower.ledger.set_gate(Gate::Follower);
    // In two parts: the second apply starts at the head the first left.
    let head = apply(&follower, &events[..4]).await.unwrap();
    assert_eq!(head, 4);
    let head = apply(&follower, &events[4..]).await.unwrap();
    assert_eq!(head, events.len() as u64);

    assert_eq!(follower.ledger.head(), writer.ledger.head());
    let (ours, theirs) = (
        follower.ledger.verify().unwrap(),
        writer.ledger.verify().unwrap(),
    );
    assert!(ours.ok, "{ours:?}");
    assert_eq!(ours.head_hash, theirs.head_hash);
    assert_eq!(stored(&follower, 0), events, "stored byte for byte");
    assert_eq!(states(&follower.ledger), states(&writer.ledger));

    // The rules' state followed: the writer's next event is accepted here.
    let follower = follower.reopen();
    follower.ledger.set_gate(Gate::Single);
    assert_eq!(follower.code(&rotation_closed(100)).await, "accepted");
}

#[tokio::test]
async fn an_apply_refuses_a_broken_chain_naming_the_position() {
    let writer = TempLedger::new();
    scheme(&writer).await;
    let events = stored(&writer, 0);

    // A gap: position 3 missing.
    let follower = TempLedger::new();
    let mut gap = events[..2].to_vec();
    gap.extend_from_slice(&events[3..]);
    match apply(&follower, &gap).await {
        Err(RestoreError::Broken { position, problem }) => {
            assert_eq!(position, 3, "{problem}");
            assert!(problem.contains("expected position 3"), "{problem}");
        }
        other => panic!("a gap was applied: {other:?}"),
    }

    // Changed content at position 4.
    let follower = TempLedger::new();
    let mut changed = events.clone();
    let text = String::from_utf8(changed[3].clone()).unwrap();
    changed[3] = text.replacen("2025-03-03", "2025-03-04", 1).into_bytes();
    assert_ne!(changed[3], events[3]);
    match apply(&follower, &changed).await {
        Err(RestoreError::Broken { position, problem }) => {
            assert_eq!(position, 4, "{problem}");
        }
        other => panic!("a changed event was applied: {other:?}"),
    }
    assert!(follower.ledger.head().position <= 3);

    // An event of another log entirely, after this head.
    let other = TempLedger::new();
    scheme(&other).await;
    let follower = TempLedger::new();
    apply(&follower, &events[..2]).await.unwrap();
    match apply(&follower, &stored(&other, 2)).await {
        Err(RestoreError::Broken { position, problem }) => {
            assert_eq!(position, 3);
            assert!(problem.contains("prevhash"), "{problem}");
        }
        other => panic!("another log's event was applied: {other:?}"),
    }
    assert_eq!(follower.ledger.head().position, 2);
}
