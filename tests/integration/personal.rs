//! Personal data (contract section 9): profiles sealed before they reach
//! the disk, erasure that destroys a key and leaves the chain intact, and
//! subject access.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::*;

fn rotation_ledger(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A jobseeker registration whose profile holds every field, with values
/// that appear nowhere else in the ledger.
fn profiled(n: u128) -> Value {
    event(
        "participant.registered",
        &format!("person/{}", uuid(n)),
        json!({"role": "jobseeker", "unemployed_since": "2024-06-01", "benefit": "universal_credit",
               "profile": {"birth_year": 1961, "sex": "prefer_not_to_say", "ethnicity": "mixed",
                           "disability": "yes", "lone_parent": true, "health_condition": "yes"}}),
    )
}

/// The profile's field names as they would be written in JSON, and its
/// values that no other event carries.
const CLEAR: &[&str] = &[
    "\"profile\"",
    "\"birth_year\"",
    "\"sex\"",
    "\"ethnicity\"",
    "\"disability\"",
    "\"lone_parent\"",
    "\"health_condition\"",
    "prefer_not_to_say",
    "1961",
];

/// Every file under `dir` that holds one of `needles`, with the needle.
fn files_holding(dir: &Path, needles: &[&str]) -> Vec<String> {
    let needles: Vec<&[u8]> = needles.iter().map(|n| n.as_bytes()).collect();
    files_holding_bytes(dir, &needles)
}

/// [`files_holding`] for needles that need not be text.
fn files_holding_bytes(dir: &Path, needles: &[&[u8]]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("the directory reads") {
            let entry = entry.expect("an entry");
            let file = entry.path();
            if file.is_dir() {
                pending.push(file);
                continue;
            }
            let bytes = std::fs::read(&file).expect("the file reads");
            for needle in needles {
                if memchr::memmem::find(&bytes, needle).is_some() {
                    let needle = String::from_utf8(needle.to_vec())
                        .unwrap_or_else(|_| format!("0x{}", hex::encode(needle)));
                    found.push(format!("{} holds {needle}", file.display()));
                }
            }
        }
    }
    found
}

fn import_file(dir: &Path, lines: &[Value]) -> String {
    let file = dir.join("events.jsonl");
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, body).expect("the file is written");
    path(&file).to_owned()
}

#[test]
fn an_import_leaves_no_profile_in_clear_in_any_file_of_the_data_directory() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let data = work.path().join("ledger");
    let lines = vec![
        partnership_registered(),
        profiled(20),
        profiled(21),
        // Rejected: the whole batch fails on its second event, so the
        // profile is kept only in the rejection's body.
        json!([profiled(22), release_started(101, 200, 10)]),
    ];
    let file = import_file(work.path(), &lines);
    let out = rotation_ledger(&["import", "--data", path(&data), &file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("accepted 3, duplicate 0, rejected 2"),
        "{out:?}"
    );

    assert_eq!(files_holding(&data, CLEAR), Vec::<String>::new());
    // Nor the digest of a registration in clear, which would let anyone
    // holding the files confirm a guess at its profile.
    let digests: Vec<[u8; 32]> = lines[1..3]
        .iter()
        .map(|line| {
            let envelope = rotation_events::Envelope::from_value(line.clone()).expect("valid");
            let data = rotation_ledger::chain::canonical_data(&envelope);
            rotation_ledger::chain::digest(&envelope, &data)
        })
        .collect();
    let needles: Vec<&[u8]> = digests.iter().map(|d| d.as_slice()).collect();
    assert_eq!(files_holding_bytes(&data, &needles), Vec::<String>::new());
    let dump = rotation_ledger(&["dump", "--data", path(&data)]);
    let dumped = String::from_utf8_lossy(&dump.stdout);
    assert_eq!(dumped.matches("\"sealed_profile\"").count(), 2, "{dumped}");
    assert!(!dumped.contains("\"profile\""), "{dumped}");
    let rejections = rotation_ledger(&["rejections", "--data", path(&data), "--json"]);
    let rejections = String::from_utf8_lossy(&rejections.stdout);
    assert!(rejections.contains("sealed_profile"), "{rejections}");
    assert!(!rejections.contains("birth_year"), "{rejections}");

    // The same clear events again are duplicates: the idempotency digest
    // is of the event as submitted, not of its sealed form.
    let again = rotation_ledger(&["import", "--data", path(&data), &file]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("accepted 0, duplicate 3, rejected 2"),
        "{again:?}"
    );
    let verify = rotation_ledger(&["verify", "--data", path(&data)]);
    assert!(verify.status.success(), "{verify:?}");
}

#[tokio::test]
async fn a_partner_submitting_a_sealed_profile_is_refused() {
    let ledger = TempLedger::new();
    ledger.submit(&partnership_registered()).await;
    let sealed = with(
        without(profiled(30), "/data/profile"),
        "/data/sealed_profile",
        json!({"alg": "XChaCha20-Poly1305", "kid": "abcd", "nonce": "abcd", "ciphertext": "abcd"}),
    );
    assert_eq!(ledger.code(&sealed).await, "invalid_event");
}

#[test]
fn a_store_with_sealed_profiles_and_no_master_key_is_refused() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let data = work.path().join("ledger");
    let file = import_file(work.path(), &[partnership_registered(), profiled(20)]);
    let out = rotation_ledger(&["import", "--data", path(&data), &file]);
    assert!(out.status.success(), "{out:?}");
    std::fs::remove_file(data.join("keys").join("master.key")).expect("the key file existed");
    let out = rotation_ledger(&["dump", "--data", path(&data)]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key file"), "{stderr}");
    assert!(!data.join("keys").join("master.key").exists());
}

#[test]
fn every_verb_finds_the_master_key_the_configuration_names() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let data = work.path().join("ledger");
    let key = work.path().join("elsewhere").join("master.key");
    let config = work.path().join("ledger.toml");
    std::fs::write(
        &config,
        format!(
            "[keys]\nmaster_key_file = {:?}\n",
            key.display().to_string()
        ),
    )
    .expect("the configuration is written");
    let file = import_file(work.path(), &[partnership_registered(), profiled(20)]);
    let out = rotation_ledger(&[
        "--config",
        path(&config),
        "import",
        "--data",
        path(&data),
        &file,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(key.exists(), "the key is where the configuration says");
    assert!(!data.join("keys").join("master.key").exists());
    let id = person(20).to_string();
    let out = rotation_ledger(&[
        "person",
        &id,
        "--data",
        path(&data),
        "--config",
        path(&config),
    ]);
    assert!(out.status.success(), "{out:?}");
    let document: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(document.to_string().contains("birth_year"), "{document}");
    let out = rotation_ledger(&["person", &id, "--data", path(&data)]);
    assert!(
        !out.status.success(),
        "without the configuration the key is not found"
    );
}

/// A ledger holding a partnership, two jobseekers with profiles (20, 21)
/// and an employee without one (10), each referred.
async fn people() -> TempLedger {
    let ledger = TempLedger::new();
    for event in [
        partnership_registered(),
        employer_enrolled(1),
        employee_registered(10, 1),
        profiled(20),
        profiled(21),
        referred(20),
        referred(21),
    ] {
        assert_eq!(ledger.code(&event).await, "accepted", "{event}");
    }
    ledger
}

fn person(n: u128) -> uuid::Uuid {
    uuid(n).parse().expect("a UUID")
}

fn raw_dashboard(ledger: &rotation_ledger::ledger::Ledger) -> Value {
    let dashboards = rotation_ledger::projector::fold(ledger, &Default::default(), |_, _| {})
        .expect("the log folds");
    let dashboard = dashboards
        .dashboard("stoke", &Default::default())
        .expect("stoke has a dashboard");
    serde_json::to_value(dashboard).expect("a dashboard serialises")
}

#[tokio::test]
async fn erasure_destroys_the_key_and_leaves_the_chain_and_the_counts() {
    let temp = people().await;
    let ledger = &temp.ledger;
    let key_file = temp.path().join("keys").join("master.key");
    let old_key = std::fs::read_to_string(&key_file).expect("the master key file");
    let before = raw_dashboard(ledger);
    assert_eq!(
        before["by_group"]["sex"]["prefer_not_to_say"]["referred"], 2,
        "{before}"
    );

    let erasure = ledger
        .erase(person(20), "the person asked")
        .await
        .expect("erased");
    assert!(erasure.erased_now);
    assert_eq!(erasure.position, 8);

    // The old master key is gone from the directory; no copy of the
    // erased key can be unwrapped, and its wrap is deleted.
    let new_key = std::fs::read_to_string(&key_file).expect("the master key file");
    assert_ne!(old_key, new_key);
    assert!(!temp.path().join("keys").join("master.key.next").exists());
    let old_material = serde_json::from_str::<Value>(&old_key).expect("JSON")["key"]
        .as_str()
        .expect("the key file holds its key")
        .to_owned();
    assert_eq!(
        files_holding(temp.path(), &[&old_material]),
        Vec::<String>::new()
    );

    // The board files the erased person under not_recorded at once; every
    // count of events stays.
    let after = raw_dashboard(ledger);
    assert_eq!(after["totals"], before["totals"]);
    assert_eq!(
        after["by_group"]["sex"]["prefer_not_to_say"]["referred"], 1,
        "{after}"
    );
    assert_eq!(
        after["by_group"]["sex"]["not_recorded"]["referred"], 1,
        "{after}"
    );

    // Subject access shows the profile erased, the other person's opened.
    let erased = rotation_ledger::personal::subject_access(ledger, person(20)).expect("a document");
    assert_eq!(erased["erased"], true);
    assert_eq!(erased["stream"][0]["data"]["erased"], true, "{erased}");
    assert_eq!(erased["stream"].as_array().map(Vec::len), Some(3));
    let kept = rotation_ledger::personal::subject_access(ledger, person(21)).expect("a document");
    assert_eq!(kept["erased"], false);
    assert_eq!(
        kept["stream"][0]["data"]["profile"]["birth_year"], 1961,
        "{kept}"
    );

    // Erasing twice answers the first erasure.
    let again = ledger.erase(person(20), "again").await.expect("answered");
    assert_eq!(
        (again.id, again.position, again.erased_now),
        (erasure.id, 8, false)
    );
    assert_eq!(again.reason, "the person asked");
    assert_eq!(ledger.head().position, 8);

    // Reopened from its files: the remaining key opens, the erased one
    // does not, and the chain is intact.
    let temp = temp.reopen();
    let kept =
        rotation_ledger::personal::subject_access(&temp.ledger, person(21)).expect("a document");
    assert_eq!(
        kept["stream"][0]["data"]["profile"]["sex"], "prefer_not_to_say",
        "{kept}"
    );
    let erased =
        rotation_ledger::personal::subject_access(&temp.ledger, person(20)).expect("a document");
    assert_eq!(erased["stream"][0]["data"]["erased"], true, "{erased}");
    assert!(temp.ledger.verify().expect("verifies").ok);
}

/// Opening reads no data key: each is read from the store and unwrapped
/// when first used. Reopened, every profile opens; erasing a person whose
/// key was never read since opening still makes their profile unopenable;
/// and the erasure's rotation wraps again the keys never read, which open
/// after the next reopening (the old master key being gone).
#[tokio::test]
async fn keys_never_read_since_opening_open_erase_and_rotate() {
    let temp = TempLedger::new();
    let mut events = vec![partnership_registered()];
    events.extend((20..=23).map(profiled));
    for event in events {
        assert_eq!(temp.code(&event).await, "accepted", "{event}");
    }
    let everyone: Vec<uuid::Uuid> = (20..=23).map(person).collect();
    let profile_of = |ledger: &rotation_ledger::ledger::Ledger, n: u128| {
        let document =
            rotation_ledger::personal::subject_access(ledger, person(n)).expect("a document");
        document["stream"][0]["data"].clone()
    };

    let temp = temp.reopen();
    assert_eq!(temp.ledger.keyring().people().expect("reads"), everyone);
    for n in 20..=23 {
        assert_eq!(profile_of(&temp.ledger, n)["profile"]["birth_year"], 1961);
    }

    let temp = temp.reopen();
    let erasure = temp
        .ledger
        .erase(person(20), "the person asked")
        .await
        .expect("erased");
    assert!(erasure.erased_now);
    assert!(!temp.ledger.keyring().holds(person(20)).expect("reads"));
    assert_eq!(profile_of(&temp.ledger, 20)["erased"], true);

    let temp = temp.reopen();
    assert_eq!(
        temp.ledger.keyring().people().expect("reads"),
        everyone[1..]
    );
    assert_eq!(profile_of(&temp.ledger, 20)["erased"], true);
    for n in 21..=23 {
        assert_eq!(profile_of(&temp.ledger, n)["profile"]["birth_year"], 1961);
    }
    assert!(temp.ledger.verify().expect("verifies").ok);
}

#[tokio::test]
async fn erasure_refuses_unknown_people_and_long_reasons_and_records_people_without_a_profile() {
    let temp = people().await;
    let ledger = &temp.ledger;
    assert!(matches!(
        ledger.erase(person(99), "no such person").await,
        Err(rotation_ledger::ledger::EraseError::UnknownPerson(_))
    ));
    assert!(matches!(
        ledger.erase(person(20), &"x".repeat(501)).await,
        Err(rotation_ledger::ledger::EraseError::InvalidReason(_))
    ));
    let erasure = ledger
        .erase(person(10), "no profile")
        .await
        .expect("recorded");
    assert!(erasure.erased_now);
    let stream = ledger
        .stream(&rotation_events::Subject::Person(person(10)))
        .expect("the stream reads");
    let last = stream.last().expect("events");
    assert_eq!(
        last.envelope.event_type.as_str(),
        "jobrotation.person.erased"
    );
    assert_eq!(last.envelope.source, rotation_ledger::ledger::LEDGER_SOURCE);
}

#[tokio::test]
async fn a_partner_publishing_an_erasure_is_forbidden() {
    let temp = people().await;
    let erased = person_event(20, "person.erased", json!({"reason": "mine"}));
    assert_eq!(temp.code(&erased).await, "forbidden");
}

#[tokio::test]
async fn a_dashboards_checkpoint_holds_no_profile_and_loads_with_the_profiles_opened() {
    let temp = people().await;
    let before = raw_dashboard(&temp.ledger);
    rotation_ledger::projector::rebuild(&temp.ledger, &Default::default(), |_, _| {})
        .expect("rebuilt");
    temp.ledger.flush().expect("flushed");
    let checkpoint = temp
        .ledger
        .checkpoint(rotation_ledger::projector::CHECKPOINT)
        .expect("reads")
        .expect("written");
    for needle in CLEAR {
        assert!(
            memchr::memmem::find(&checkpoint, needle.as_bytes()).is_none(),
            "the checkpoint holds {needle}"
        );
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (projector, task) = rotation_ledger::projector::Projector::start(
        temp.ledger.clone(),
        std::sync::Arc::new(rotation_ledger::config::Config::default()),
        Default::default(),
        shutdown.clone(),
    )
    .await
    .expect("the projector starts");
    assert_eq!(projector.progress().position, temp.ledger.head().position);
    let served = serde_json::to_value(
        projector
            .snapshot()
            .dashboard("stoke", &Default::default())
            .expect("a dashboard"),
    )
    .expect("serialises");
    assert_eq!(served["by_group"], before["by_group"]);
    shutdown.cancel();
    task.join().await.expect("the projector stops");
}

/// `event` at `time` (RFC 3339).
fn at(event: Value, time: chrono::DateTime<chrono::Utc>) -> Value {
    with(
        event,
        "/time",
        json!(time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    )
}

/// Waits (without timers, so that a paused clock stays put) until the
/// log's head reaches `position`.
async fn head_reaches(ledger: &rotation_ledger::ledger::Ledger, position: u64) {
    let mut durable = ledger.subscribe();
    while durable.borrow_and_update().head.position < position {
        durable.changed().await.expect("the ledger is open");
    }
}

#[tokio::test(start_paused = true)]
async fn retention_erases_each_stale_profile_once_a_day() {
    let now = chrono::Utc::now();
    let days = |n: f64| chrono::Duration::seconds((n * 86_400.0) as i64);
    let temp = TempLedger::new();
    let ledger = &temp.ledger;
    for event in [
        partnership_registered(),
        at(profiled(20), now - days(60.0)),
        at(profiled(21), now - days(60.0)),
        at(referred(21), now - days(29.5)),
        at(profiled(22), now - days(1.0)),
    ] {
        assert_eq!(temp.code(&event).await, "accepted", "{event}");
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(rotation_ledger::personal::retention::run(
        ledger.clone(),
        30,
        shutdown.clone(),
    ));

    // At once: only person 20's latest event is over 30 days old.
    head_reaches(ledger, 6).await;
    let keyring = ledger.keyring();
    assert!(!keyring.holds(person(20)).unwrap());
    assert!(keyring.holds(person(21)).unwrap() && keyring.holds(person(22)).unwrap());

    // A day later person 21's latest event is 30.5 days old.
    tokio::time::advance(rotation_ledger::personal::retention::RETENTION_PERIOD).await;
    head_reaches(ledger, 7).await;
    assert!(!keyring.holds(person(21)).unwrap());
    assert!(keyring.holds(person(22)).unwrap());
    for n in [20, 21] {
        let stream = ledger
            .stream(&rotation_events::Subject::Person(person(n)))
            .expect("reads");
        let erased = stream.last().expect("events");
        assert_eq!(
            erased.envelope.event_type.as_str(),
            "jobrotation.person.erased"
        );
        assert_eq!(erased.envelope.data["reason"], "retention");
    }
    shutdown.cancel();
    task.await.expect("retention stops");
    assert_eq!(ledger.head().position, 7);
}

/// The figures of every partnership's raw dashboard, without `as_of`
/// (a resealed log has other recorded times and hashes).
fn figures(dir: &Path) -> Vec<Value> {
    let ledger = rotation_ledger::ledger::Ledger::open(dir, Default::default()).expect("opens");
    let dashboards =
        rotation_ledger::projector::fold(&ledger, &Default::default(), |_, _| {}).expect("folds");
    let figures = dashboards
        .partnerships()
        .iter()
        .map(|p| {
            let mut value = serde_json::to_value(
                dashboards
                    .dashboard(p, &Default::default())
                    .expect("a dashboard"),
            )
            .expect("serialises");
            value.as_object_mut().expect("an object").remove("as_of");
            value
        })
        .collect();
    ledger.close();
    figures
}

#[test]
fn a_resealed_log_verifies_and_gives_the_same_figures_and_cells() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let (old, new) = (work.path().join("old"), work.path().join("new"));
    let history = work.path().join("history.jsonl");
    let out = rotation_ledger(&[
        "simulate",
        "--jobseekers",
        "60",
        "--months",
        "12",
        "--out",
        path(&history),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = rotation_ledger(&["import", "--data", path(&old), path(&history)]);
    assert!(out.status.success(), "{out:?}");
    // One person erased before the reseal stays erased after it.
    let registered = std::fs::read_to_string(&history)
        .expect("reads")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|e| e["data"]["profile"].is_object() && e["data"]["role"] == "jobseeker")
        .expect("a jobseeker with a profile");
    let erased = registered["subject"].as_str().expect("a subject");
    let erased = erased.strip_prefix("person/").expect("a person");
    let out = rotation_ledger(&["erase", erased, "--reason", "asked", "--data", path(&old)]);
    assert!(out.status.success(), "{out:?}");

    let out = rotation_ledger(&["reseal", "--data", path(&old), "--out", path(&new)]);
    assert!(out.status.success(), "{out:?}");
    let verify = rotation_ledger(&["verify", "--data", path(&new)]);
    assert!(verify.status.success(), "{verify:?}");

    let old_stats =
        String::from_utf8_lossy(&rotation_ledger(&["stats", "--data", path(&old)]).stdout)
            .into_owned();
    let new_stats =
        String::from_utf8_lossy(&rotation_ledger(&["stats", "--data", path(&new)]).stdout)
            .into_owned();
    let line = |stats: &str, name: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
    };
    assert_eq!(line(&old_stats, "events"), line(&new_stats, "events"));
    assert_eq!(line(&new_stats, "clear profiles"), "0");
    assert_eq!(
        line(&new_stats, "resealed from"),
        format!(
            "position {} hash {}",
            line(&old_stats, "events"),
            line(&old_stats, "head hash")
        )
    );
    assert_ne!(line(&old_stats, "head hash"), line(&new_stats, "head hash"));

    assert_eq!(figures(&old), figures(&new));
    let key = work.path().join("study.key");
    std::fs::write(&key, "a study key").expect("written");
    for (data, package) in [(&old, "old.pkg"), (&new, "new.pkg")] {
        let out = rotation_ledger(&[
            "export",
            "--data",
            path(data),
            "--out",
            path(&work.path().join(package)),
            "--key-file",
            path(&key),
            "--reference-date",
            "2025-06-30",
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    for file in ["jobseekers.csv", "releases.csv", "substitutions.csv"] {
        let read = |package: &str| {
            std::fs::read_to_string(work.path().join(package).join(file)).expect("the file")
        };
        assert_eq!(read("old.pkg"), read("new.pkg"), "{file}");
    }
}
