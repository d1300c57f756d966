//! A follower against one nats-server of the test's own: a single ledger
//! publishes its log with the outbox (`serve --nats`) and puts its data
//! keys in the group's bucket; a second ledger prepares, follows and
//! catches up from the stream, and opens the profiles with the keys from
//! the bucket.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::super::keys::{KeyBucket, SecretFiles};
use super::super::prepare::{DropReason, Preparation, prepare};
use super::super::{GroupError, follow::last_sequence};
use super::{catch_up, follow};
use crate::auth::Caller;
use crate::ledger::{Ledger, LedgerOptions, Submission};
use crate::nats::group::test_server::NatsServer;
use crate::nats::{Names, NatsOptions};
use crate::personal::GroupKey;

/// The writer of these tests: a single ledger publishing with the outbox,
/// its new data keys going to the bucket.
struct Writer {
    ledger: Ledger,
    stop: CancellationToken,
    outbox: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Everything a test needs: the server, the writer, and a connection.
struct Group {
    nats: NatsServer,
    js: jetstream::Context,
    names: Names,
    group_key: Arc<GroupKey>,
    _key_dir: tempfile::TempDir,
}

impl Group {
    async fn start() -> Self {
        let nats = NatsServer::start();
        let client = async_nats::connect(nats.url()).await.expect("connected");
        let key_dir = tempfile::tempdir().expect("a temporary directory");
        let group_key =
            Arc::new(GroupKey::load(&key_dir.path().join("group.key"), true).expect("a group key"));
        Self {
            js: jetstream::new(client),
            names: Names::new("rotation").expect("a valid prefix"),
            nats,
            group_key,
            _key_dir: key_dir,
        }
    }

    async fn bucket(&self) -> KeyBucket {
        KeyBucket::open(&self.js, &self.names, 1, Arc::clone(&self.group_key))
            .await
            .expect("the key bucket opens")
    }

    async fn writer(&self) -> Writer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("opens");
        ledger.set_key_sink(Some(Arc::new(self.bucket().await)));
        let stop = CancellationToken::new();
        let outbox = tokio::spawn({
            let (ledger, stop) = (ledger.clone(), stop.clone());
            let options = NatsOptions::for_url(self.nats.url());
            async move {
                crate::nats::run(ledger, options, stop)
                    .await
                    .expect("NATS runs")
            }
        });
        Writer {
            ledger,
            stop,
            outbox,
            _dir: dir,
        }
    }

    /// Waits until the stream holds `position`.
    async fn stored(&self, position: u64) {
        let started = Instant::now();
        while last_sequence(&self.js, &self.names).await.unwrap_or(0) < position {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the outbox publishes {position}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn prepare(&self, dir: &Path) -> Result<(Ledger, Preparation), GroupError> {
        let secrets = SecretFiles {
            record_key: dir.join("keys/disclosure.key"),
            checkpoint_key: dir.join("keys/checkpoint.key"),
            checkpoint_name: "rotation-ledger/test-group".into(),
        };
        let keys = self.bucket().await;
        prepare(
            dir,
            &LedgerOptions::default(),
            &self.js,
            &self.names,
            &keys,
            &secrets,
        )
        .await
        .map(|prepared| (prepared.ledger, prepared.preparation))
    }
}

impl Writer {
    async fn stop(self) {
        self.stop.cancel();
        self.outbox.await.expect("the outbox stops");
        self.ledger.close();
    }
}

fn person(n: u64) -> Uuid {
    Uuid::from_u64_pair(0x0193_a3c0_0000_7000, 0x8000_0000_0000_0000 | n)
}

fn submission(n: u64, subject: String, event_type: &str, data: Value) -> Submission {
    let event = json!({"specversion": "1.0",
        "id": Uuid::from_u64_pair(0x0193_a3c0_0000_7000, 0x9000_0000_0000_0000 | n),
        "source": "urn:service:test", "type": event_type, "subject": subject,
        "time": "2025-03-03T09:00:00Z", "partnership": "north", "data": data});
    Submission::from_json(event.to_string().into_bytes(), "test", Caller::operator())
}

fn partnership() -> Submission {
    submission(
        0,
        "partnership/north".into(),
        "jobrotation.partnership.registered",
        json!({"name": "North", "areas": ["E06000021"], "members": []}),
    )
}

/// Person `n` registered with a profile, so with a data key of their own.
fn registered(n: u64) -> Submission {
    submission(
        n,
        format!("person/{}", person(n)),
        "jobrotation.participant.registered",
        json!({"role": "jobseeker", "unemployed_since": "2024-06-01",
               "benefit": "universal_credit",
               "profile": {"birth_year": 1970 + n, "sex": "female"}}),
    )
}

async fn submit(ledger: &Ledger, submissions: Vec<Submission>) {
    for outcome in ledger.submit(submissions).await.expect("submitted") {
        assert!(
            outcome.rejection.is_none(),
            "accepted: {:?}",
            outcome.rejection
        );
    }
}

/// Waits until `follower` reaches `writer`'s head, then compares hashes.
async fn reaches(follower: &Ledger, writer: &Ledger) {
    let started = Instant::now();
    while follower.head().position < writer.head().position {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the follower keeps up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(follower.head(), writer.head());
}

/// The raw dashboard of the partnership, folded from `ledger`'s log with
/// the profiles it opens.
fn dashboard(ledger: &Ledger) -> rotation_projections::dashboard::Dashboard {
    let config = crate::config::Config::default();
    crate::projector::fold(ledger, &config, |_, _| {})
        .expect("folded")
        .dashboard("north", &Default::default())
        .expect("the partnership has a dashboard")
}

/// The profile person `n` registered with, as the follower opens it.
fn profile(ledger: &Ledger, n: u64) -> Value {
    let document = crate::personal::subject_access(ledger, person(n)).expect("the person is known");
    document["stream"][0]["data"]["profile"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_applies_the_stream_opens_profiles_and_loses_erased_keys() {
    let group = Group::start().await;
    let writer = group.writer().await;
    submit(
        &writer.ledger,
        vec![partnership(), registered(1), registered(2)],
    )
    .await;
    group.stored(3).await;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let (follower, preparation) = group.prepare(dir.path()).await.expect("prepared");
    assert_eq!(
        preparation,
        Preparation::Rebuilt {
            events: 3,
            dropped: None
        }
    );
    assert_eq!(follower.head(), writer.ledger.head());
    assert_eq!(
        profile(&follower, 1)["birth_year"],
        1971,
        "opened with the bucket's key"
    );

    let stop = CancellationToken::new();
    let keys = group.bucket().await;
    let watching = tokio::spawn(super::super::keys::watch(
        follower.clone(),
        keys.clone(),
        stop.clone(),
    ));
    let following = tokio::spawn({
        let (follower, js, names, stop) = (
            follower.clone(),
            group.js.clone(),
            group.names.clone(),
            stop.clone(),
        );
        async move { follow(&follower, &js, &names, &keys, &stop).await }
    });
    // A write refused here (the writer decides it) leaves no key of this
    // node's own to shadow the writer's.
    follower.set_gate(crate::ledger::Gate::Follower);
    let refused = follower.submit(vec![registered(3)]).await;
    assert!(
        matches!(refused, Err(crate::ledger::LedgerError::NotWriter)),
        "{refused:?}"
    );
    submit(&writer.ledger, vec![registered(3), registered(4)]).await;
    reaches(&follower, &writer.ledger).await;
    assert_eq!(profile(&follower, 3)["birth_year"], 1973);
    assert_eq!(profile(&follower, 4)["birth_year"], 1974);
    assert_eq!(dashboard(&follower), dashboard(&writer.ledger));

    writer
        .ledger
        .erase(person(1), "asked to be forgotten")
        .await
        .expect("erased");
    reaches(&follower, &writer.ledger).await;
    assert!(
        !follower.keyring().holds(person(1)).unwrap(),
        "the follower destroyed the key"
    );
    let document = crate::personal::subject_access(&follower, person(1)).expect("known");
    assert_eq!(document["erased"], true);
    assert_eq!(
        profile(&follower, 2)["birth_year"],
        1972,
        "the others still open"
    );

    let bucket = group
        .js
        .get_key_value("ROTATION_KEYS")
        .await
        .expect("the bucket");
    let mut history = bucket
        .history(person(1).to_string())
        .await
        .expect("its history");
    let mut entries = 0;
    while let Some(entry) = history.next().await {
        let entry = entry.expect("an entry");
        entries += 1;
        assert_eq!(
            entry.operation,
            kv::Operation::Purge,
            "only the purge is left"
        );
        assert!(entry.value.is_empty(), "no revision holds the erased key");
    }
    assert_eq!(entries, 1);

    stop.cancel();
    following
        .await
        .expect("joined")
        .expect("followed until stopped");
    watching.await.expect("joined");
    // Caught up again on taking the lease: nothing more to apply.
    submit(&writer.ledger, vec![registered(5)]).await;
    group.stored(writer.ledger.head().position).await;
    let head = catch_up(&follower, &group.js, &group.names, &group.bucket().await)
        .await
        .expect("caught up");
    assert_eq!(head, writer.ledger.head());
    writer.stop().await;
    follower.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_rebuilds_a_store_with_an_unreplicated_tail_or_damage() {
    let group = Group::start().await;
    let writer = group.writer().await;
    submit(
        &writer.ledger,
        vec![partnership(), registered(1), registered(2)],
    )
    .await;
    group.stored(3).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (node, _) = group.prepare(dir.path()).await.expect("prepared");
    // Committed here, never stored by the stream: never acknowledged.
    submit(&node, vec![registered(9)]).await;
    assert_eq!(node.head().position, 4);
    let refused = catch_up(&node, &group.js, &group.names, &group.bucket().await).await;
    assert!(
        matches!(
            refused,
            Err(GroupError::AheadOfStream { head: 4, stored: 3 })
        ),
        "a node ahead of the stream may not write: {refused:?}"
    );
    node.close();

    let (node, preparation) = group.prepare(dir.path()).await.expect("prepared again");
    let Preparation::Rebuilt {
        events: 3,
        dropped: Some(dropped),
    } = preparation
    else {
        panic!("rebuilt from the stream, the tail dropped: {preparation:?}");
    };
    assert_eq!(
        dropped.reason,
        DropReason::Ahead {
            local: 4,
            stored: 3
        }
    );
    assert!(dropped.path.starts_with(dir.path().join("dropped")));
    assert!(
        dropped.path.join("db").exists(),
        "the old store is kept for the operator"
    );
    assert_eq!(node.head(), writer.ledger.head());
    assert_eq!(profile(&node, 2)["birth_year"], 1972);
    node.close();

    let (node, preparation) = group.prepare(dir.path()).await.expect("kept");
    assert_eq!(preparation, Preparation::Kept { head: 3 });
    node.close();

    std::fs::write(
        dir.path().join(crate::ledger::HEAD_FILE),
        b"not a head record",
    )
    .expect("damaged");
    let (node, preparation) = group.prepare(dir.path()).await.expect("rebuilt");
    assert!(
        matches!(&preparation, Preparation::Rebuilt { events: 3, dropped: Some(d) }
            if matches!(d.reason, DropReason::Damaged(_))),
        "{preparation:?}"
    );
    assert_eq!(node.head(), writer.ledger.head());
    node.close();
    writer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_one_group_key_and_one_set_of_secrets() {
    let group = Group::start().await;
    group.bucket().await;
    let other_dir = tempfile::tempdir().expect("a temporary directory");
    let other = Arc::new(GroupKey::load(&other_dir.path().join("group.key"), true).expect("a key"));
    let refused = KeyBucket::open(&group.js, &group.names, 1, other).await;
    assert!(
        matches!(refused, Err(GroupError::WrongGroupKey)),
        "{refused:?}"
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("copy the group key file"),
        "the message says what to do"
    );

    // A ledger's own history is not dropped when no group has a stream.
    let own = tempfile::tempdir().expect("a temporary directory");
    let ledger = Ledger::open(own.path(), LedgerOptions::default()).expect("opens");
    submit(&ledger, vec![partnership()]).await;
    ledger.close();
    let refused = group.prepare(own.path()).await;
    assert!(
        matches!(refused, Err(GroupError::NoGroupLog { head: 1, .. })),
        "{refused:?}"
    );
    assert!(!own.path().join("dropped").exists());

    // The first node's secrets become the group's; the next node's files
    // are written from the bucket.
    let writer = group.writer().await;
    submit(&writer.ledger, vec![partnership()]).await;
    group.stored(1).await;
    let first = tempfile::tempdir().expect("a temporary directory");
    let (ledger, _) = group.prepare(first.path()).await.expect("prepared");
    ledger.close();
    let second = tempfile::tempdir().expect("a temporary directory");
    let (ledger, _) = group.prepare(second.path()).await.expect("prepared");
    ledger.close();
    for file in ["keys/disclosure.key", "keys/checkpoint.key"] {
        let read = |dir: &Path| std::fs::read(dir.join(file)).expect("the secret's file");
        assert_eq!(
            read(first.path()),
            read(second.path()),
            "{file} is the group's"
        );
    }

    // A node whose store was built with other secrets refuses to serve.
    std::fs::write(second.path().join("keys/disclosure.key"), [7u8; 32]).expect("replaced");
    let refused = group.prepare(second.path()).await;
    assert!(
        matches!(refused, Err(GroupError::SecretDiffers { .. })),
        "{refused:?}"
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("move the data directory aside"),
        "the message says what to do"
    );
    writer.stop().await;
}
