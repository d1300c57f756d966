//! One node's side of a ledger group (contract section 11), without NATS:
//! the gate that holds a writer's answers until the group's stream has
//! stored them and refuses a follower's writes, the apply of events
//! decided elsewhere, and the data keys that travel between nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rotation_ledger::ledger::{Gate, KeySink, LedgerError, RestoreError, Submission};
use rotation_ledger::personal::GroupKey;
use serde_json::{Value, json};
use uuid::Uuid;

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

/// The setup the tests here share: a node that has committed the
/// scheme's history as a single ledger, that history as stored, and the
/// group key beside its store.
struct Scheme {
    node: TempLedger,
    events: Vec<Vec<u8>>,
    key: GroupKey,
}

impl Scheme {
    async fn new() -> Self {
        let node = TempLedger::new();
        scheme(&node).await;
        let events = stored(&node, 0);
        let key = group_key(node.path());
        Self { node, events, key }
    }

    /// The same, made the group's writer with the stream holding its whole
    /// log; and its head.
    async fn writer() -> (TempLedger, u64) {
        let Self { node, .. } = Self::new().await;
        let head = node.ledger.head().position;
        node.ledger.set_gate(Gate::Writer { replicated: head });
        (node, head)
    }
}

#[tokio::test]
async fn a_follower_refuses_every_write_and_commits_nothing() {
    let Scheme { node, .. } = Scheme::new().await;
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
        node.ledger
            .keyring()
            .holds(uuid(20).parse().unwrap())
            .unwrap(),
        "the refused erasure destroyed no key"
    );
}

#[tokio::test]
async fn a_writers_answer_waits_until_the_stream_stores_its_position() {
    let (node, before) = Scheme::writer().await;

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
    let (node, before) = Scheme::writer().await;
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
    let (node, before) = Scheme::writer().await;

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
    let Scheme { node: writer, .. } = Scheme::new().await;
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
    let Scheme { events, .. } = Scheme::new().await;

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
    let Scheme { node: other, .. } = Scheme::new().await;
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

/// The profile of `person`'s registration in `node`, opened with its keys.
fn opened_profile(node: &TempLedger, person: u128) -> Option<rotation_events::Profile> {
    let subject = format!("person/{}", uuid(person));
    let events = node.ledger.events(0, 1_000).unwrap();
    let event = events
        .iter()
        .find(|e| {
            e.envelope.subject.to_string() == subject
                && e.envelope.event_type == rotation_events::EventType::ParticipantRegistered
        })
        .expect("the registration is in the log");
    let data = event.envelope.data().unwrap();
    rotation_ledger::personal::profile_of(node.ledger.keyring(), event, &data)
}

fn group_key(dir: &std::path::Path) -> GroupKey {
    GroupKey::load(&dir.join("group.key"), true).expect("the group key is made")
}

/// Installs from `writer` every key the events lack on `follower`, as the
/// follower's apply loop does from the key bucket.
fn install_missing(writer: &TempLedger, follower: &TempLedger, events: &[Vec<u8>], key: &GroupKey) {
    for json in events {
        for person in follower.ledger.missing_keys(json) {
            let wrapped = writer
                .ledger
                .export_key(person, key)
                .unwrap()
                .expect("the writer holds it");
            assert!(follower.ledger.install_key(person, &wrapped, key).unwrap());
        }
    }
}

fn person(n: u128) -> Uuid {
    uuid(n).parse().unwrap()
}

#[tokio::test]
async fn missing_keys_names_exactly_the_people_whose_keys_are_not_here() {
    let Scheme {
        node: writer, key, ..
    } = Scheme::new().await;
    assert_eq!(writer.code(&jobseeker_registered(21)).await, "accepted");
    let events = stored(&writer, 0);

    let follower = TempLedger::new();
    let missing: Vec<Uuid> = events
        .iter()
        .flat_map(|json| follower.ledger.missing_keys(json))
        .collect();
    assert_eq!(
        missing,
        vec![person(20), person(21)],
        "the employee has no profile"
    );

    let wrapped = writer.ledger.export_key(person(20), &key).unwrap().unwrap();
    assert!(
        follower
            .ledger
            .install_key(person(20), &wrapped, &key)
            .unwrap()
    );
    assert!(
        !follower
            .ledger
            .install_key(person(20), &wrapped, &key)
            .unwrap(),
        "not new"
    );
    let missing: Vec<Uuid> = events
        .iter()
        .flat_map(|json| follower.ledger.missing_keys(json))
        .collect();
    assert_eq!(missing, vec![person(21)]);
    assert_eq!(
        writer.ledger.export_key(person(10), &key).unwrap(),
        None,
        "no key, none exported"
    );

    // A wrap for another person, or under another group key, is refused.
    let other = GroupKey::load(&follower.path().join("other.key"), true).unwrap();
    let for_21 = writer.ledger.export_key(person(21), &key).unwrap().unwrap();
    assert!(
        follower
            .ledger
            .install_key(person(20), &for_21, &key)
            .is_err()
    );
    assert!(
        follower
            .ledger
            .install_key(person(21), &for_21, &other)
            .is_err()
    );
    assert!(!follower.ledger.keyring().holds(person(21)).unwrap());
}

#[tokio::test]
async fn a_follower_opens_profiles_with_keys_installed_from_the_writer() {
    let Scheme {
        node: writer,
        events,
        key,
    } = Scheme::new().await;

    let follower = TempLedger::new();
    install_missing(&writer, &follower, &events, &key);
    apply(&follower, &events).await.unwrap();
    let profile = opened_profile(&follower, 20).expect("the profile opens");
    assert_eq!(Some(profile), opened_profile(&writer, 20));

    // The installed key was stored with the event sealed under it.
    let follower = follower.reopen();
    assert!(
        opened_profile(&follower, 20).is_some(),
        "opens after a restart"
    );

    // Without the key, the same events apply but the profile stays shut.
    let bare = TempLedger::new();
    apply(&bare, &events).await.unwrap();
    assert_eq!(bare.ledger.head(), writer.ledger.head());
    assert_eq!(opened_profile(&bare, 20), None);
}

#[tokio::test]
async fn an_applied_erasure_destroys_the_key_and_rotates_the_master_key() {
    let Scheme {
        node: writer,
        events: before,
        key,
    } = Scheme::new().await;
    let follower = TempLedger::new();
    install_missing(&writer, &follower, &before, &key);
    apply(&follower, &before).await.unwrap();
    assert!(follower.ledger.keyring().holds(person(20)).unwrap());
    let master = follower.ledger.keyring().master_key_id();

    writer.ledger.erase(person(20), "asked to").await.unwrap();
    assert_eq!(writer.code(&jobseeker_registered(21)).await, "accepted");
    let after = stored(&writer, before.len() as u64);
    install_missing(&writer, &follower, &after, &key);
    apply(&follower, &after).await.unwrap();

    assert_eq!(follower.ledger.head(), writer.ledger.head());
    assert!(
        !follower.ledger.keyring().holds(person(20)).unwrap(),
        "the key is gone"
    );
    assert_eq!(opened_profile(&follower, 20), None);
    assert_ne!(follower.ledger.keyring().master_key_id(), master, "rotated");
    assert!(
        opened_profile(&follower, 21).is_some(),
        "the later key is kept"
    );

    let follower = follower.reopen();
    assert!(
        !follower.ledger.keyring().holds(person(20)).unwrap(),
        "gone from the store"
    );
    assert!(opened_profile(&follower, 21).is_some());
    assert!(follower.ledger.verify().unwrap().ok);
}

/// A key bucket in memory, that may be told to fail.
#[derive(Debug)]
struct Bucket {
    key: GroupKey,
    keys: Mutex<HashMap<Uuid, Vec<u8>>>,
    purged: Mutex<Vec<Uuid>>,
    failing: AtomicBool,
}

impl KeySink for Bucket {
    fn publish(&self, keys: Vec<(Uuid, Vec<u8>)>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
                return Err("the bucket has no quorum".into());
            }
            self.keys.lock().unwrap().extend(keys);
            Ok(())
        })
    }

    fn purge(&self, people: Vec<Uuid>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut keys = self.keys.lock().unwrap();
            for person in &people {
                keys.remove(person);
            }
            self.purged.lock().unwrap().extend(people);
            Ok(())
        })
    }

    fn group_key(&self) -> &GroupKey {
        &self.key
    }
}

#[tokio::test]
async fn a_writer_shares_new_keys_before_committing_and_purges_erased_ones() {
    let writer = TempLedger::new();
    let bucket = Arc::new(Bucket {
        key: group_key(writer.path()),
        keys: Mutex::default(),
        purged: Mutex::default(),
        failing: AtomicBool::new(true),
    });
    writer.ledger.set_key_sink(Some(bucket.clone()));
    for body in &scheme_events()[..3] {
        assert_eq!(
            writer.code(body).await,
            "accepted",
            "no profile, no key: {body}"
        );
    }

    // The bucket fails: nothing sealed under the new key is committed.
    let head = writer.ledger.head();
    let registration = jobseeker_registered(20);
    let refused = writer.ledger.submit(vec![submission(&registration)]).await;
    assert!(
        matches!(refused, Err(LedgerError::KeysNotShared(_))),
        "{refused:?}"
    );
    assert_eq!(writer.ledger.head(), head);

    bucket.failing.store(false, Ordering::SeqCst);
    assert_eq!(writer.code(&registration).await, "accepted");
    assert_eq!(writer.code(&referred(20)).await, "accepted");
    let shared: Vec<Uuid> = bucket.keys.lock().unwrap().keys().copied().collect();
    assert_eq!(shared, vec![person(20)]);

    // What the bucket holds opens the profile on a follower.
    let follower = TempLedger::new();
    let wrapped = bucket.keys.lock().unwrap()[&person(20)].clone();
    follower
        .ledger
        .install_key(person(20), &wrapped, &bucket.key)
        .unwrap();
    apply(&follower, &stored(&writer, 0)).await.unwrap();
    assert_eq!(opened_profile(&follower, 20), opened_profile(&writer, 20));
    assert!(opened_profile(&follower, 20).is_some());

    writer.ledger.erase(person(20), "asked to").await.unwrap();
    assert!(
        bucket.keys.lock().unwrap().is_empty(),
        "no key left in the bucket"
    );
    assert_eq!(*bucket.purged.lock().unwrap(), vec![person(20)]);
}

#[tokio::test]
async fn a_key_installed_early_for_a_later_registration_survives_an_earlier_erasure() {
    // Its own history: the retractions below name its events' ids.
    let writer = TempLedger::new();
    let events = scheme_events();
    for body in &events {
        assert_eq!(writer.code(body).await, "accepted", "{body}");
    }
    writer.ledger.erase(person(20), "asked to").await.unwrap();
    // Registered again: the first registration retracted, a new one made.
    assert_eq!(writer.code(&retraction(&events[4])).await, "accepted");
    assert_eq!(writer.code(&retraction(&events[3])).await, "accepted");
    assert_eq!(writer.code(&jobseeker_registered(20)).await, "accepted");
    let key = group_key(writer.path());
    // A node rebuilt from the stream: the bucket holds only the new key,
    // and its watch installs it before the log is applied.
    let follower = TempLedger::new();
    let wrapped = writer.ledger.export_key(person(20), &key).unwrap().unwrap();
    assert!(
        follower
            .ledger
            .install_key(person(20), &wrapped, &key)
            .unwrap()
    );
    let master = follower.ledger.keyring().master_key_id();
    apply(&follower, &stored(&writer, 0)).await.unwrap();

    assert_eq!(follower.ledger.head(), writer.ledger.head());
    assert_eq!(
        follower.ledger.keyring().master_key_id(),
        master,
        "nothing to destroy"
    );
    let follower = follower.reopen();
    assert!(follower.ledger.keyring().holds(person(20)).unwrap());
    let latest = |node: &TempLedger| {
        let json = stored(node, 0).pop().unwrap();
        let event = rotation_events::CommittedEvent::from_json(&json).unwrap();
        let data = event.envelope.data().unwrap();
        rotation_ledger::personal::profile_of(node.ledger.keyring(), &event, &data)
    };
    assert!(latest(&follower).is_some(), "the new registration opens");
    assert_eq!(latest(&follower), latest(&writer));
}

#[tokio::test]
async fn a_node_that_applied_a_sealed_registration_knows_its_clear_resend() {
    let writer = TempLedger::new();
    scheme(&writer).await;
    let registration = jobseeker_registered(21);
    assert_eq!(writer.code(&registration).await, "accepted");
    let events = stored(&writer, 0);
    let key = group_key(writer.path());
    let other_profile = with(
        registration.clone(),
        "/data/profile/birth_year",
        json!(1971),
    );
    let other_data = with(
        registration.clone(),
        "/data/unemployed_since",
        json!("2024-07-01"),
    );

    // On the node that sealed it.
    assert_eq!(writer.code(&registration).await, "duplicate");
    assert_eq!(writer.code(&other_profile).await, "duplicate_id_conflict");
    assert_eq!(writer.code(&other_data).await, "duplicate_id_conflict");

    // On a node that applied the sealed form, as a follower made writer
    // does: the id it stores is of that form, and the clear resend is
    // compared with the profile opened.
    let node = TempLedger::new();
    install_missing(&writer, &node, &events, &key);
    apply(&node, &events).await.unwrap();
    node.ledger.set_gate(Gate::Single);
    assert_eq!(node.code(&registration).await, "duplicate");
    assert_eq!(node.code(&other_profile).await, "duplicate_id_conflict");
    assert_eq!(node.code(&other_data).await, "duplicate_id_conflict");

    // Without the person's key the profile cannot be compared: the rest of
    // the event decides.
    let bare = TempLedger::new();
    apply(&bare, &events).await.unwrap();
    bare.ledger.set_gate(Gate::Single);
    assert_eq!(bare.code(&registration).await, "duplicate");
    assert_eq!(bare.code(&other_profile).await, "duplicate");
    assert_eq!(bare.code(&other_data).await, "duplicate_id_conflict");
    assert_eq!(
        bare.ledger.head(),
        writer.ledger.head(),
        "nothing committed"
    );
}
