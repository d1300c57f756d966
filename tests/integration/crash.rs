//! Crash safety: a writer process is killed with SIGKILL at random moments,
//! again and again on the same directory, and after every kill the log
//! must hold every acknowledged event exactly once where it was
//! acknowledged, without gaps, with a chain that verifies, with every
//! atomic batch whole or absent, and with a rule state that a fresh replay
//! of the log reproduces.
//!
//! The writer is this test binary run again with only
//! [`crash_writer_process`] selected and [`WRITER_DIR`] set, so it is built
//! with the tests and drives the library's real append path. It prints a
//! line for each answer only after the answer arrives, so every line is
//! evidence of an acknowledgement.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rotation_events::CommittedEvent;
use rotation_ledger::auth::Caller;
use rotation_ledger::ledger::{Ledger, LedgerOptions, Outcome, ReceiptStatus, Submission};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::*;

/// Set in the writer process's environment: the ledger directory.
const WRITER_DIR: &str = "ROTATION_CRASH_WRITER_DIR";

/// How many events the writer process lets follow a snapshot of the
/// stream states.
const SNAPSHOT_EVENTS: u64 = 6;

/// How many times the writer is killed.
const ROUNDS: u64 = 24;

/// The setup every writer submits first, with fixed ids, so that from the
/// second run on its answers are duplicates that must name the original
/// positions.
fn setup() -> Vec<Value> {
    scheme_events()
        .into_iter()
        .enumerate()
        .map(|(i, event)| with(event, "/id", json!(event_id(i as u128 + 1))))
        .collect()
}

/// A fresh entity number, so that every run of the writer names new
/// people and rotations.
fn fresh() -> u128 {
    u128::from(rand::random::<u64>()) << 8
}

/// The writer's submissions, by kind: a single event, an atomic batch
/// whose later events depend on earlier ones (marked with a
/// `correlationid` that says how many events it holds), a batch that is
/// always refused, or a resubmitted setup event.
fn submission(kind: u32) -> Value {
    match kind {
        0 => jobseeker_registered(fresh()),
        1 => {
            let (rotation, person, release) = (fresh(), fresh(), fresh());
            let events = [
                rotation_agreed(rotation, 1),
                employee_registered(person, 1),
                release_started(rotation, release, person),
                release_ended(rotation, release),
            ];
            let mark = json!(format!("batch:{}:{}", Uuid::new_v4(), events.len()));
            Value::Array(
                events
                    .into_iter()
                    .map(|e| with(e, "/correlationid", mark.clone()))
                    .collect(),
            )
        }
        2 => {
            let person = fresh();
            json!([
                employee_registered(person, 1),
                release_started(fresh(), fresh(), person)
            ])
        }
        _ => setup()[rand::random_range(0..6)].clone(),
    }
}

/// Prints one line and flushes it, so that a kill loses at most the line
/// being written.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

fn report(outcome: &Outcome) {
    for receipt in &outcome.receipts {
        let id = receipt.id.clone().unwrap_or_default();
        match (receipt.status, receipt.position) {
            (ReceiptStatus::Accepted | ReceiptStatus::Duplicate, Some(position)) => {
                say(&format!("ack {id} {position}"));
            }
            _ => say(&format!("refused {id}")),
        }
    }
}

/// The writer process: appends until it is killed. Run as an ordinary
/// test without [`WRITER_DIR`], it does nothing.
#[test]
fn crash_writer_process() {
    let Some(dir) = std::env::var_os(WRITER_DIR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        // Snapshots of the stream states every few events, so that kills
        // land between snapshots (and in them) and opening replays a tail.
        let options = LedgerOptions {
            snapshot_events: SNAPSHOT_EVENTS,
            ..LedgerOptions::default()
        };
        let ledger = Ledger::open(Path::new(&dir), options).expect("the ledger opens");
        for event in setup() {
            let body = event.to_string().into_bytes();
            let outcome = ledger
                .submit_one(Submission::from_json(
                    body,
                    "crash:setup",
                    Caller::operator(),
                ))
                .await
                .expect("the ledger answers");
            assert!(outcome.rejection.is_none(), "{outcome:?}");
            report(&outcome);
        }
        say("ready");
        // Several submitters at once, so that kills also land while groups
        // of them are being decided and flushed together.
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    loop {
                        let kind = rand::random_range(0..10u32).min(3);
                        let body = submission(kind).to_string().into_bytes();
                        let outcome = ledger
                            .submit_one(Submission::from_json(body, "crash", Caller::operator()))
                            .await
                            .expect("the ledger answers");
                        report(&outcome);
                    }
                })
            })
            .collect();
        // The writers run until the process is killed; a writer that stops
        // early has failed.
        let ended = futures::future::select_all(writers).await;
        panic!("a writer stopped: {:?}", ended.0);
    });
}

/// What the writers have said, over every run.
#[derive(Default)]
struct Evidence {
    /// Acknowledged event ids and their positions.
    acked: HashMap<Uuid, u64>,
    /// Ids of events whose submission was refused.
    refused: HashSet<Uuid>,
}

impl Evidence {
    fn take(&mut self, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["ack", id, position] => {
                let id: Uuid = id.parse().expect("an id");
                let position: u64 = position.parse().expect("a position");
                let earlier = self.acked.insert(id, position);
                assert!(
                    earlier.is_none_or(|p| p == position),
                    "{id} acknowledged at {position} and at {earlier:?}"
                );
            }
            ["refused", id] => {
                if let Ok(id) = id.parse() {
                    self.refused.insert(id);
                }
            }
            _ => {}
        }
    }
}

/// Runs the writer once, kills it, and adds what it said to `evidence`.
fn run_and_kill(dir: &Path, rng: &mut StdRng, evidence: &mut Evidence) {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "crash::crash_writer_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_DIR, dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the writer starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, heard) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdout.read_until(b'\n', &mut line) {
                // A line cut short by the kill proves nothing.
                Ok(_) if line.last() == Some(&b'\n') => {
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    if lines.send(text).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    // Most kills land while the writers are busy; one in four may land
    // while the ledger is still opening (and re-indexing after the last
    // kill).
    let early = rng.random_range(0..4) == 0;
    let delay = Duration::from_millis(rng.random_range(10..=300));
    let mut said = Vec::new();
    if !early {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match heard.recv_timeout(left) {
                Ok(line) if line == "ready" => break,
                Ok(line) => said.push(line),
                Err(e) => panic!("the writer never became ready: {e}"),
            }
        }
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    child.wait().expect("the writer is reaped");
    reader.join().expect("the reader ends");
    said.extend(heard.try_iter());
    for line in &said {
        evidence.take(line);
    }
}

/// Opens the directory as a restarted service would and checks the log
/// against the evidence; returns the committed events.
async fn check_after_crash(dir: &Path, evidence: &Evidence, round: u64) -> Vec<CommittedEvent> {
    let ledger =
        Ledger::open(dir, LedgerOptions::default()).expect("the ledger reopens after a kill");
    let log: Vec<CommittedEvent> = ledger
        .events_iter(0)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("round {round}: the log reads back: {e}"));
    let head = ledger.head();
    let positions: Vec<u64> = log.iter().map(|e| e.ledger.position).collect();
    assert_eq!(
        positions,
        (1..=head.position).collect::<Vec<_>>(),
        "round {round}: gap-free"
    );
    let mut at = HashMap::new();
    for event in &log {
        let earlier = at.insert(event.envelope.id, event.ledger.position);
        assert_eq!(
            earlier, None,
            "round {round}: {} committed twice",
            event.envelope.id
        );
    }
    for (id, position) in &evidence.acked {
        assert_eq!(
            at.get(id),
            Some(position),
            "round {round}: acknowledged {id} lost or moved"
        );
    }
    for id in &evidence.refused {
        assert!(
            !at.contains_key(id),
            "round {round}: refused {id} was committed"
        );
    }
    // Batches are whole, and contiguous.
    let mut batches: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in &log {
        if let Some(mark) = &event.envelope.correlationid {
            batches.entry(mark).or_default().push(event.ledger.position);
        }
    }
    for (mark, positions) in &batches {
        let size: usize = mark
            .rsplit(':')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a batch mark");
        assert_eq!(
            positions.len(),
            size,
            "round {round}: batch {mark} is partial"
        );
        assert_eq!(
            positions[size - 1] - positions[0],
            size as u64 - 1,
            "round {round}: batch {mark} interleaved"
        );
    }
    // Stream versions are gap-free too.
    let mut versions: HashMap<String, u64> = HashMap::new();
    for event in &log {
        let version = versions
            .entry(event.envelope.subject.to_string())
            .or_default();
        *version += 1;
        assert_eq!(
            event.ledger.streamversion, *version,
            "round {round}: {}",
            event.envelope.subject
        );
    }
    // The id index agrees with the log: every committed event, submitted
    // again, is a duplicate at its own position.
    let again = log
        .iter()
        .map(|e| Submission::from_events(vec![e.envelope.clone()], "check", Caller::operator()))
        .collect();
    let outcomes = ledger.submit(again).await.expect("the ledger answers");
    for (event, outcome) in log.iter().zip(&outcomes) {
        let receipt = &outcome.receipts[0];
        assert_eq!(
            (receipt.status, receipt.position, receipt.streamversion),
            (
                ReceiptStatus::Duplicate,
                Some(event.ledger.position),
                Some(event.ledger.streamversion)
            ),
            "round {round}: id index of {}",
            event.envelope.id
        );
    }
    let verdict = ledger.verify().expect("verify runs");
    assert!(verdict.ok, "round {round}: {verdict:?}");
    // The Merkle tree was written in the same batches as the events: after
    // the kill it is still the tree of exactly the log that survived.
    let hashes: Vec<String> = log.iter().map(|e| e.ledger.hash.clone()).collect();
    assert_eq!(
        ledger
            .tree_root(head.position)
            .expect("the tree's root reads"),
        crate::support::merkle_root(&hashes),
        "round {round}: the stored tree is the log's"
    );
    let seqs: Vec<u64> = ledger
        .rejections(0)
        .map(|r| r.expect("a rejection record").seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "round {round}: rejections"
    );
    // No closing snapshot: the next writer, and the last opening, replay
    // the tail the kills left.
    ledger.close_without_snapshot();
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rng = StdRng::seed_from_u64(0x5eed_2025);
    let mut evidence = Evidence::default();
    let mut log = Vec::new();
    for round in 1..=ROUNDS {
        run_and_kill(dir.path(), &mut rng, &mut evidence);
        log = check_after_crash(dir.path(), &evidence, round).await;
    }
    let acked = evidence.acked.len() - setup().len();
    assert!(
        acked > 50,
        "the writers had only {acked} events acknowledged in {ROUNDS} runs"
    );
    assert!(
        log.iter().any(|e| e.envelope.correlationid.is_some()),
        "no batch was committed"
    );
    assert!(!evidence.refused.is_empty(), "no batch was refused");

    // The rule state after all the kills is what the log implies.
    let crashed = Ledger::open(dir.path(), LedgerOptions::default()).expect("the ledger reopens");
    let fresh = replay_accepted(&log).await;
    assert_eq!(states(&crashed), states(&fresh.ledger));
    crashed.close();
}
