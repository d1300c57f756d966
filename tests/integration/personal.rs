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
                if memchr::memmem::find(&bytes, needle.as_bytes()).is_some() {
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
