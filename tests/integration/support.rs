//! Shared helpers: temporary ledgers, event builders, the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rotation_ledger::auth::Caller;
use rotation_ledger::ledger::{Ledger, LedgerOptions, Outcome, Submission};
use serde_json::{Value, json};

/// The `rotation-ledger` binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rotation-ledger"))
}

/// A file opened for appending, as a child process's output.
pub fn append_log(path: &Path) -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("a log file")
        .into()
}

/// A port nobody listens on at the moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A configuration with one admin token, `admin`, followed by `extra`.
pub fn admin_config(extra: &str) -> String {
    format!(
        "[[tokens]]\nsha256 = \"{}\"\nrole = \"admin\"\npartnerships = [\"*\"]\n{extra}",
        rotation_ledger::auth::token_digest("admin")
    )
}

/// `serve` of `data` under `config` on a free loopback port, its output
/// discarded and killed on drop; returns once it accepts connections,
/// with its address.
pub async fn serve_listening(data: &Path, config: &Path) -> (tokio::process::Child, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = tokio::process::Command::new(binary())
        .args(["serve", "--http", &addr, "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (child, addr)
}

/// A ledger in a fresh temporary directory, removed on drop.
pub struct TempLedger {
    pub ledger: Ledger,
    pub dir: tempfile::TempDir,
}

impl TempLedger {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("the ledger opens");
        Self { ledger, dir }
    }

    /// A ledger that stores a snapshot of its stream states every
    /// `events` events, so that tests meet snapshots and tails at once.
    pub fn snapshot_every(events: u64) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = LedgerOptions {
            snapshot_events: events,
            ..LedgerOptions::default()
        };
        let ledger = Ledger::open(dir.path(), options).expect("the ledger opens");
        Self { ledger, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Submits one event or batch as the operator and returns the outcome.
    pub async fn submit(&self, body: &Value) -> Outcome {
        self.ledger
            .submit_one(Submission::from_json(
                body.to_string().into_bytes(),
                "test",
                Caller::operator(),
            ))
            .await
            .expect("the ledger answers")
    }

    /// Submits bytes as received (they need not be JSON) as the operator.
    pub async fn submit_bytes(&self, body: Vec<u8>) -> Outcome {
        self.ledger
            .submit_one(Submission::from_json(body, "test", Caller::operator()))
            .await
            .expect("the ledger answers")
    }

    /// Submits and returns the error code, or "accepted" / "duplicate".
    pub async fn code(&self, body: &Value) -> String {
        let outcome = self.submit(body).await;
        match outcome.rejection {
            Some(v) => v.code.to_string(),
            None => serde_json::to_value(outcome.receipts[0].status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        }
    }
}

/// A deterministic UUID for test entity `n`.
pub fn uuid(n: u128) -> String {
    uuid::Uuid::from_u128(0x0193_a3c0_0000_7000_8000_0000_0000_0000 | n).to_string()
}

/// Builds CloudEvents for tests; ids are fresh v4 UUIDs unless set.
pub fn event(event_type: &str, subject: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "urn:service:test",
        "type": format!("jobrotation.{event_type}"),
        "subject": subject,
        "time": "2025-03-03T09:00:00Z",
        "partnership": "stoke",
        "data": data,
    })
}

pub fn partnership_registered() -> Value {
    event(
        "partnership.registered",
        "partnership/stoke",
        json!({"name": "Stoke-on-Trent Job Rotation", "areas": ["E06000021"], "members": [{"organisation": "Stoke Jobcentre", "kind": "jobcentre"}]}),
    )
}

pub fn employer_enrolled(n: u128) -> Value {
    event(
        "employer.enrolled",
        &format!("employer/{}", uuid(n)),
        json!({"name": "Potteries Care Ltd", "sector": "Q", "size": "medium", "area": "E06000021"}),
    )
}

pub fn employee_registered(n: u128, employer: u128) -> Value {
    event(
        "participant.registered",
        &format!("person/{}", uuid(n)),
        json!({"role": "employee", "employer": uuid(employer), "qualification_level": 2}),
    )
}

pub fn jobseeker_registered(n: u128) -> Value {
    event(
        "participant.registered",
        &format!("person/{}", uuid(n)),
        json!({"role": "jobseeker", "unemployed_since": "2024-06-01", "benefit": "universal_credit", "profile": {"birth_year": 1970, "sex": "female"}}),
    )
}

pub fn assessed(n: u128, eligible: bool) -> Value {
    event(
        "jobseeker.eligibility_assessed",
        &format!("person/{}", uuid(n)),
        json!({"eligible": eligible, "reasons": []}),
    )
}

pub fn rotation_agreed(n: u128, employer: u128) -> Value {
    event(
        "rotation.agreed",
        &format!("rotation/{}", uuid(n)),
        json!({"employer": uuid(employer), "planned_start": "2025-03-03", "planned_end": "2025-09-01"}),
    )
}

pub fn release_started(rotation: u128, release: u128, employee: u128) -> Value {
    event(
        "rotation.release_started",
        &format!("rotation/{}", uuid(rotation)),
        json!({"release_id": uuid(release), "employee": uuid(employee), "course": {"title": "Level 3 Diploma in Adult Care", "provider": "Stoke College", "rqf_level": 3, "hours_per_week": 15}, "planned_end": "2025-08-29"}),
    )
}

pub fn substitution_started(
    rotation: u128,
    substitution: u128,
    substitute: u128,
    covers: &[u128],
) -> Value {
    let covers: Vec<String> = covers.iter().map(|c| uuid(*c)).collect();
    event(
        "rotation.substitution_started",
        &format!("rotation/{}", uuid(rotation)),
        json!({"substitution_id": uuid(substitution), "substitute": uuid(substitute), "covers": covers, "hours_per_week": 15, "planned_end": "2025-08-29"}),
    )
}

pub fn rotation_event(rotation: u128, event_type: &str, data: Value) -> Value {
    event(
        &format!("rotation.{event_type}"),
        &format!("rotation/{}", uuid(rotation)),
        data,
    )
}

pub fn person_event(person: u128, event_type: &str, data: Value) -> Value {
    event(event_type, &format!("person/{}", uuid(person)), data)
}

/// A partnership with employer 1, employee 10 and eligible jobseeker 20,
/// and rotation 100 agreed at employer 1.
pub async fn scheme(ledger: &TempLedger) {
    for body in scheme_events() {
        assert_eq!(
            ledger.code(&body).await,
            "accepted",
            "setting up the scheme: {body}"
        );
    }
}

/// The events of [`scheme`], for tests that submit them themselves.
pub fn scheme_events() -> Vec<Value> {
    vec![
        partnership_registered(),
        employer_enrolled(1),
        employee_registered(10, 1),
        jobseeker_registered(20),
        assessed(20, true),
        rotation_agreed(100, 1),
    ]
}

/// `event` with the attribute or data field at the JSON Pointer `pointer`
/// set to `value`; the parent must exist.
pub fn with(mut event: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON Pointer");
    event
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} is not an object"))
        .insert(key.to_owned(), value);
    event
}

/// `event` without the attribute or data field at `pointer`.
pub fn without(mut event: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON Pointer");
    event
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} is not an object"))
        .remove(key);
    event
}

/// A deterministic event id for test event `n`, distinct from entity ids.
pub fn event_id(n: u128) -> String {
    uuid::Uuid::from_u128(0x0193_a3c0_0000_7000_9000_0000_0000_0000 | n).to_string()
}

/// Retracts `target` in its own stream.
pub fn retraction(target: &Value) -> Value {
    let subject = target["subject"].as_str().expect("a subject");
    event(
        "ledger.retracted",
        subject,
        json!({"event_id": target["id"], "reason": "entered in error"}),
    )
}

pub fn release_ended(rotation: u128, release: u128) -> Value {
    rotation_event(
        rotation,
        "release_ended",
        json!({"release_id": uuid(release)}),
    )
}

pub fn training_completed(rotation: u128, release: u128) -> Value {
    rotation_event(
        rotation,
        "training_completed",
        json!({"release_id": uuid(release), "qualification_achieved": true}),
    )
}

pub fn training_left(rotation: u128, release: u128) -> Value {
    rotation_event(
        rotation,
        "training_left",
        json!({"release_id": uuid(release), "reason": "caring responsibilities"}),
    )
}

pub fn substitution_ended(rotation: u128, substitution: u128) -> Value {
    rotation_event(
        rotation,
        "substitution_ended",
        json!({"substitution_id": uuid(substitution), "reason": "completed"}),
    )
}

pub fn rotation_closed(rotation: u128) -> Value {
    rotation_event(rotation, "closed", json!({}))
}

pub fn referred(person: u128) -> Value {
    person_event(
        person,
        "jobseeker.referred",
        json!({"referred_by": "jobcentre"}),
    )
}

impl TempLedger {
    /// Closes the ledger and opens it again on the same directory, as a
    /// restarted service would.
    pub fn reopen(self) -> Self {
        let Self { ledger, dir } = self;
        ledger.close();
        let ledger =
            Ledger::open(dir.path(), LedgerOptions::default()).expect("the ledger reopens");
        Self { ledger, dir }
    }

    /// Closes the ledger as a crash after its last flush would leave it
    /// (without the closing snapshot of its stream states) and opens it
    /// again: opening replays the tail after the last snapshot.
    pub fn reopen_after_crash(self) -> Self {
        let Self { ledger, dir } = self;
        ledger.close_without_snapshot();
        let ledger =
            Ledger::open(dir.path(), LedgerOptions::default()).expect("the ledger reopens");
        Self { ledger, dir }
    }

    /// Closes the ledger, so that another process may open its directory.
    pub fn into_dir(self) -> tempfile::TempDir {
        let Self { ledger, dir } = self;
        ledger.close();
        dir
    }
}

/// Every stream's rule state, in subject order.
pub fn states(ledger: &Ledger) -> Vec<(String, rotation_ledger::rules::StreamState)> {
    ledger.stream_states().expect("rule states decode")
}

/// A fresh ledger given `log`'s events, in order, as one group: each must
/// be accepted at the position it had in `log`.
pub async fn replay_accepted(log: &[rotation_events::CommittedEvent]) -> TempLedger {
    let fresh = TempLedger::new();
    let replay = log
        .iter()
        .map(|e| {
            // A sealed profile opens only under the keys of the ledger
            // that sealed it, and a partner may not submit one: the
            // replay carries the rest of the event.
            let mut value = e.envelope.to_value();
            if let Some(data) = value["data"].as_object_mut() {
                data.remove("sealed_profile");
            }
            Submission::from_json(value.to_string().into_bytes(), "replay", Caller::operator())
        })
        .collect();
    let answers = fresh
        .ledger
        .submit(replay)
        .await
        .expect("the ledger answers");
    assert_eq!(answers.len(), log.len(), "one answer per replayed event");
    for (event, outcome) in log.iter().zip(&answers) {
        assert_eq!(
            outcome.rejection,
            None,
            "replaying {}",
            event.envelope.to_value()
        );
        assert_eq!(outcome.receipts[0].position, Some(event.ledger.position));
    }
    fresh
}

/// RFC 9162 §2.1.1's Merkle Tree Hash of events' hashes (hex), computed
/// here from the definition, apart from the ledger's stored tree.
pub fn merkle_root(event_hashes: &[String]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => Sha256::new_with_prefix([0])
                .chain_update(leaves[0])
                .finalize()
                .into(),
            n => {
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                Sha256::new_with_prefix([1])
                    .chain_update(mth(&leaves[..k]))
                    .chain_update(mth(&leaves[k..]))
                    .finalize()
                    .into()
            }
        }
    }
    let leaves: Vec<[u8; 32]> = event_hashes
        .iter()
        .map(|hash| {
            let mut leaf = [0; 32];
            hex::decode_to_slice(hash, &mut leaf).expect("an event hash is 64 hex digits");
            leaf
        })
        .collect();
    mth(&leaves)
}
