//! Properties of the log as a whole: whatever is appended, in whatever
//! grouping, reads back in position order without gaps, with per-stream
//! versions, a chain that verifies, and a rule state that depends only on
//! the events accepted. And `verify` finds tampering, by position.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::process::Command;

use proptest::prelude::*;
use proptest::sample::Index;
use rotation_events::CommittedEvent;
use rotation_ledger::auth::Caller;
use rotation_ledger::ledger::{Outcome, ReceiptStatus, Submission};
use rotation_ledger::rules::{Entity, StreamState};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::*;

/// One event a publisher might send, over a small world so that events
/// meet each other: employers 1 to 3, employees 10 to 14, jobseekers 20 to
/// 23 and rotations 100 to 102, some created by the setup and the rest
/// perhaps by the history. Releases and substitutions get new ids when they
/// start; the events that continue them name one started earlier (by an
/// [`Index`] into those seen so far), whether or not it was accepted.
#[derive(Debug, Clone)]
enum Template {
    Employer(u128),
    Employee(u128, u128),
    Jobseeker(u128),
    Assessed(u128, bool),
    Rotation(u128, u128),
    /// A new release in a rotation, of a person.
    Release(u128, u128),
    /// A new substitution by a jobseeker covering an earlier release, in
    /// that release's rotation or (if set) in the other one.
    Substitution(Index, u128, bool),
    TrainingCompleted(Index),
    TrainingLeft(Index),
    ReleaseEnded(Index),
    SubstitutionEnded(Index),
    Closed(u128),
    /// The template sent for the other partnership.
    Leek(Box<Template>),
}

/// The releases and substitutions a history has started so far, as
/// (rotation, id).
#[derive(Default)]
struct World {
    next: u128,
    releases: Vec<(u128, u128)>,
    substitutions: Vec<(u128, u128)>,
}

impl World {
    fn fresh(&mut self) -> u128 {
        self.next += 1;
        5_000 + self.next
    }

    /// An earlier one, or one that never started.
    fn pick(list: &[(u128, u128)], i: &Index) -> (u128, u128) {
        if list.is_empty() {
            (100, 4_999)
        } else {
            list[i.index(list.len())]
        }
    }
}

impl Template {
    fn build(&self, world: &mut World) -> Value {
        match self {
            Self::Employer(n) => employer_enrolled(*n),
            Self::Employee(n, employer) => employee_registered(*n, *employer),
            Self::Jobseeker(n) => jobseeker_registered(*n),
            Self::Assessed(n, eligible) => assessed(*n, *eligible),
            Self::Rotation(n, employer) => rotation_agreed(*n, *employer),
            Self::Release(r, person) => {
                let id = world.fresh();
                world.releases.push((*r, id));
                release_started(*r, id, *person)
            }
            Self::Substitution(i, person, elsewhere) => {
                let (r, release) = World::pick(&world.releases, i);
                let r = if *elsewhere { 201 - r } else { r };
                let id = world.fresh();
                world.substitutions.push((r, id));
                substitution_started(r, id, *person, &[release])
            }
            Self::TrainingCompleted(i) => {
                let (r, release) = World::pick(&world.releases, i);
                training_completed(r, release)
            }
            Self::TrainingLeft(i) => {
                let (r, release) = World::pick(&world.releases, i);
                training_left(r, release)
            }
            Self::ReleaseEnded(i) => {
                let (r, release) = World::pick(&world.releases, i);
                release_ended(r, release)
            }
            Self::SubstitutionEnded(i) => {
                let (r, substitution) = World::pick(&world.substitutions, i);
                substitution_ended(r, substitution)
            }
            Self::Closed(r) => rotation_closed(*r),
            Self::Leek(inner) => with(inner.build(world), "/partnership", json!("leek")),
        }
    }
}

/// The employees of each rotation's employer: rotation 100 is agreed at
/// employer 1 (employees 10 and 12), rotation 101 at employer 2 (11 and 13).
const STAFF: [[u128; 2]; 2] = [[10, 12], [11, 13]];

fn template() -> impl Strategy<Value = Template> {
    // Mostly events that fit the world, so that histories get deep; now and
    // then anything at all, so that every rule is met from both sides.
    let release = prop_oneof![
        6 => (0u128..2, 0usize..2).prop_map(|(r, p)| Template::Release(100 + r, STAFF[r as usize][p])),
        1 => (100u128..=102, 10u128..=14).prop_map(|(r, p)| Template::Release(r, p)),
    ];
    let plain = prop_oneof![
        1 => (1u128..=3).prop_map(Template::Employer),
        1 => (10u128..=14, 1u128..=2).prop_map(|(n, e)| Template::Employee(n, e)),
        1 => (20u128..=23).prop_map(Template::Jobseeker),
        2 => (20u128..=23, prop::bool::weighted(0.8)).prop_map(|(n, e)| Template::Assessed(n, e)),
        1 => (100u128..=102, 1u128..=3).prop_map(|(n, e)| Template::Rotation(n, e)),
        8 => release,
        7 => (any::<Index>(), 20u128..=23, prop::bool::weighted(0.1))
            .prop_map(|(i, p, e)| Template::Substitution(i, p, e)),
        3 => any::<Index>().prop_map(Template::TrainingCompleted),
        2 => any::<Index>().prop_map(Template::TrainingLeft),
        6 => any::<Index>().prop_map(Template::ReleaseEnded),
        5 => any::<Index>().prop_map(Template::SubstitutionEnded),
    ];
    prop_oneof![
        50 => plain.clone(),
        1 => (100u128..=101).prop_map(Template::Closed),
        1 => plain.prop_map(|t| Template::Leek(Box::new(t))),
    ]
}

/// One submission of the random history.
#[derive(Debug, Clone)]
enum Op {
    /// A new event, perhaps with an `expectedversion`.
    Event(Template, Option<u64>),
    /// A new all-or-nothing batch.
    Batch(Vec<Template>),
    /// An earlier submission again, byte for byte.
    Resubmit(Index),
    /// An earlier event's id with other content.
    Conflict(Index),
    /// A retraction of an earlier event (accepted or not), in its stream:
    /// one of the latest six if the flag is set.
    Retract(Index, bool),
    /// Bytes that are not an event.
    Garbage,
    /// A release from start to end as a scheme lives it, one submission per
    /// event: a member of staff of a rotation's employer is released, a
    /// jobseeker perhaps substitutes, the training perhaps ends, and the
    /// substitution and the release end (mostly). Without these, random
    /// events rarely build on each other.
    Story(Story),
}

#[derive(Debug, Clone)]
struct Story {
    rotation: usize,
    staff: usize,
    substitute: Option<u128>,
    /// Completed (`Some(true)`), left (`Some(false)`) or still going.
    training: Option<bool>,
    end_substitution: bool,
    end_release: bool,
}

fn story() -> impl Strategy<Value = Story> {
    (
        0usize..2,
        0usize..2,
        proptest::option::weighted(0.7, 20u128..=23),
        proptest::option::weighted(0.7, any::<bool>()),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.85),
    )
        .prop_map(
            |(rotation, staff, substitute, training, end_substitution, end_release)| Story {
                rotation,
                staff,
                substitute,
                training,
                end_substitution,
                end_release,
            },
        )
}

impl Story {
    fn build(&self, world: &mut World) -> Vec<Value> {
        let r = 100 + self.rotation as u128;
        let release = world.fresh();
        world.releases.push((r, release));
        let mut events = vec![release_started(
            r,
            release,
            STAFF[self.rotation][self.staff],
        )];
        let substitution = self.substitute.map(|person| {
            let id = world.fresh();
            world.substitutions.push((r, id));
            events.push(substitution_started(r, id, person, &[release]));
            id
        });
        match self.training {
            Some(true) => events.push(training_completed(r, release)),
            Some(false) => events.push(training_left(r, release)),
            None => {}
        }
        if let Some(id) = substitution.filter(|_| self.end_substitution) {
            events.push(substitution_ended(r, id));
        }
        if self.end_release {
            events.push(release_ended(r, release));
        }
        events
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (template(), proptest::option::weighted(0.15, 0u64..4)).prop_map(|(t, v)| Op::Event(t, v)),
        3 => prop::collection::vec(template(), 2..4).prop_map(Op::Batch),
        2 => any::<Index>().prop_map(Op::Resubmit),
        1 => any::<Index>().prop_map(Op::Conflict),
        2 => (any::<Index>(), prop::bool::weighted(0.8)).prop_map(|(i, r)| Op::Retract(i, r)),
        1 => Just(Op::Garbage),
        4 => story().prop_map(Op::Story),
    ]
}

/// A history: each op with whether it waits for every earlier answer
/// before it is sent. Ops that do not wait go to the writer together, so
/// that they are decided in one group commit or in pipelined ones.
fn history() -> impl Strategy<Value = Vec<(Op, bool)>> {
    prop::collection::vec((op(), proptest::bool::weighted(0.3)), 1..48)
}

/// The bodies of a history, with deterministic ids: the setup first (a
/// scheme with a second rotation and a registered `leek`), then the ops.
fn bodies(history: &[(Op, bool)]) -> Vec<(Vec<u8>, bool)> {
    let mut counter = 0;
    let mut fresh = |event: Value| {
        counter += 1;
        with(event, "/id", json!(event_id(counter)))
    };
    let mut world = World::default();
    let mut events: Vec<Value> = Vec::new();
    let mut out: Vec<(Vec<u8>, bool)> = Vec::new();
    let leek = with(
        with(partnership_registered(), "/partnership", json!("leek")),
        "/subject",
        json!("partnership/leek"),
    );
    let setup = [
        scheme_events(),
        vec![
            leek,
            employer_enrolled(2),
            employee_registered(11, 2),
            employee_registered(12, 1),
            employee_registered(13, 2),
            jobseeker_registered(21),
            jobseeker_registered(23),
            assessed(23, true),
            rotation_agreed(101, 2),
        ],
    ]
    .concat();
    for event in setup {
        let event = fresh(event);
        out.push((event.to_string().into_bytes(), true));
        events.push(event);
    }
    let setup = events.len();
    for (op, wait) in history {
        if let Op::Story(story) = op {
            for (i, event) in story.build(&mut world).into_iter().enumerate() {
                let event = fresh(event);
                out.push((event.to_string().into_bytes(), *wait && i == 0));
                events.push(event);
            }
            continue;
        }
        let body = match op {
            Op::Event(t, expected) => {
                let mut event = fresh(t.build(&mut world));
                if let Some(v) = expected {
                    event = with(event, "/expectedversion", json!(v));
                }
                events.push(event.clone());
                event.to_string().into_bytes()
            }
            Op::Batch(ts) => {
                let batch: Vec<Value> = ts.iter().map(|t| fresh(t.build(&mut world))).collect();
                events.extend(batch.iter().cloned());
                Value::Array(batch).to_string().into_bytes()
            }
            Op::Resubmit(i) => out[i.index(out.len())].0.clone(),
            Op::Conflict(i) => {
                let earlier = events[i.index(events.len())].clone();
                let event = with(earlier, "/time", json!("2025-03-04T10:00:00Z"));
                event.to_string().into_bytes()
            }
            Op::Retract(i, recent) => {
                // Mostly one of the latest events of the history, which are
                // the ones a publisher corrects; a retracted setup would end
                // the story early.
                let latest = (events.len() - setup).min(6);
                let target = if *recent && latest > 0 {
                    &events[events.len() - 1 - i.index(latest)]
                } else {
                    &events[i.index(events.len())]
                };
                let event = fresh(retraction(target));
                events.push(event.clone());
                event.to_string().into_bytes()
            }
            Op::Garbage => b"{\"specversion\": \"1.0\", ".to_vec(),
            Op::Story(_) => unreachable!("stories are expanded above"),
        };
        out.push((body, *wait));
    }
    out
}

/// Submits the bodies in order: each run of bodies that do not wait is
/// sent at once, as separate requests, so that the writer groups them as
/// it finds them.
async fn run(ledger: &TempLedger, bodies: &[(Vec<u8>, bool)]) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(bodies.len());
    let mut start = 0;
    while start < bodies.len() {
        let mut end = start + 1;
        while end < bodies.len() && !bodies[end].1 {
            end += 1;
        }
        let requests = bodies[start..end].iter().map(|(body, _)| {
            ledger.ledger.submit_one(Submission::from_json(
                body.clone(),
                "proptest",
                Caller::operator(),
            ))
        });
        // `join_all` polls in order, so the requests reach the writer in
        // the order of the history.
        for outcome in futures::future::join_all(requests).await {
            outcomes.push(outcome.expect("the ledger answers"));
        }
        start = end;
    }
    outcomes
}

/// Checks the log of `ledger` against the answers it gave, and returns
/// the committed events.
fn check_log(
    ledger: &TempLedger,
    bodies: &[(Vec<u8>, bool)],
    outcomes: &[Outcome],
) -> Vec<CommittedEvent> {
    let log: Vec<CommittedEvent> = ledger
        .ledger
        .events_iter(0)
        .collect::<Result<_, _>>()
        .expect("the log reads back");
    let head = ledger.ledger.head();
    // What a follower of the head reads (from the recent tail, all of a
    // log this small) is what the store holds, byte for byte, with the
    // attributes the outbox routes by.
    if head.position > 0 {
        let recent = ledger
            .ledger
            .read_after(0, usize::MAX)
            .expect("the follower reads");
        let stored: Vec<_> = ledger
            .ledger
            .events_json(0)
            .collect::<Result<_, _>>()
            .expect("the log reads back");
        assert_eq!(recent.len(), stored.len());
        for ((recent, (position, json)), event) in recent.iter().zip(&stored).zip(&log) {
            assert_eq!(recent.position, *position);
            assert_eq!(&recent.json[..], &json[..]);
            assert_eq!(recent.id, event.envelope.id);
            assert_eq!(recent.partnership, event.envelope.partnership);
            assert_eq!(recent.event_type, event.envelope.event_type);
        }
    }
    let positions: Vec<u64> = log.iter().map(|e| e.ledger.position).collect();
    assert_eq!(
        positions,
        (1..=head.position).collect::<Vec<_>>(),
        "positions are 1..n"
    );
    match log.last() {
        Some(last) => assert_eq!(
            (last.ledger.position, &last.ledger.hash),
            (head.position, &head.hash)
        ),
        None => assert_eq!(head.position, 0),
    }
    // Recorded time never decreases with position, so that an as-of cut
    // is a prefix of the log.
    for pair in log.windows(2) {
        let [a, b] = pair else { unreachable!() };
        let time = |e: &CommittedEvent| {
            chrono::DateTime::parse_from_rfc3339(&e.ledger.recordedtime).expect("RFC 3339")
        };
        assert!(
            time(a) <= time(b),
            "recordedtime goes back at {}",
            b.ledger.position
        );
    }
    if let Some(last) = log.last() {
        assert_eq!(head.recordedtime, last.ledger.recordedtime);
    }
    let mut by_id = HashMap::new();
    for event in &log {
        let earlier = by_id.insert(event.envelope.id, event.ledger.position);
        assert_eq!(earlier, None, "id {} committed twice", event.envelope.id);
    }
    // Every answer agrees with the log.
    let mut accepted = 0;
    let mut rejected = 0;
    for ((body, _), outcome) in bodies.iter().zip(outcomes) {
        if outcome.rejection.is_some() {
            rejected += 1;
        }
        for receipt in &outcome.receipts {
            match receipt.status {
                ReceiptStatus::Accepted | ReceiptStatus::Duplicate => {
                    let id: uuid::Uuid = receipt
                        .id
                        .as_deref()
                        .expect("receipts of committed events name them")
                        .parse()
                        .expect("a committed event's id is a UUID");
                    let position = receipt.position.expect("a position");
                    assert_eq!(
                        by_id.get(&id),
                        Some(&position),
                        "{}",
                        String::from_utf8_lossy(body)
                    );
                    let event = &log[position as usize - 1];
                    assert_eq!(receipt.streamversion, Some(event.ledger.streamversion));
                    if receipt.status == ReceiptStatus::Accepted {
                        accepted += 1;
                    }
                }
                ReceiptStatus::Rejected => {
                    assert!(
                        outcome.rejection.is_some(),
                        "a rejected receipt in an accepted submission"
                    );
                }
            }
        }
    }
    assert_eq!(
        accepted,
        log.len(),
        "every committed event was answered accepted once"
    );
    let stored_rejections = ledger.ledger.rejections(0).count();
    assert_eq!(stored_rejections, rejected, "every rejection is kept");
    // Stream versions count 1..k in position order, and a stream reads back
    // as exactly its events.
    let mut streams: BTreeMap<String, Vec<&CommittedEvent>> = BTreeMap::new();
    for event in &log {
        streams
            .entry(event.envelope.subject.to_string())
            .or_default()
            .push(event);
    }
    for (subject, events) in &streams {
        let versions: Vec<u64> = events.iter().map(|e| e.ledger.streamversion).collect();
        assert_eq!(
            versions,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "{subject}"
        );
        let stream = ledger
            .ledger
            .stream(&events[0].envelope.subject)
            .expect("the stream reads back");
        assert_eq!(stream.iter().collect::<Vec<_>>(), *events, "{subject}");
    }
    let stated: HashSet<String> = states(&ledger.ledger).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        stated,
        streams.keys().cloned().collect(),
        "a rule state for each stream"
    );
    check_pointers(&states(&ledger.ledger));
    let verdict = ledger.ledger.verify().expect("verify runs");
    assert!(verdict.ok, "{verdict:?}");
    assert_eq!(verdict.head_position, head.position);
    log
}

/// The rule state agrees with itself: a person points at a release (or
/// substitution) exactly when that release is active in its rotation with
/// them as the employee (or substitute). Retractions re-fold rotations and
/// mend these pointers, which is where they could drift apart.
fn check_pointers(states: &[(String, StreamState)]) {
    let mut rotations_say = BTreeSet::new();
    let mut people_say = BTreeSet::new();
    for (subject, state) in states {
        match &state.entity {
            Entity::Rotation(rotation) => {
                let id: Uuid = subject["rotation/".len()..].parse().expect("a rotation id");
                for (release, r) in rotation.releases.iter().filter(|(_, r)| r.active) {
                    rotations_say.insert((r.employee, true, id, *release));
                }
                for (substitution, s) in rotation.substitutions.iter().filter(|(_, s)| s.active) {
                    rotations_say.insert((s.substitute, false, id, *substitution));
                }
            }
            Entity::Person(person) => {
                let id: Uuid = subject["person/".len()..].parse().expect("a person id");
                if let Some(a) = person.active_release {
                    people_say.insert((id, true, a.rotation, a.id));
                }
                if let Some(a) = person.active_substitution {
                    people_say.insert((id, false, a.rotation, a.id));
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        people_say, rotations_say,
        "persons and rotations disagree on what is active"
    );
}

async fn property(history: Vec<(Op, bool)>) {
    let bodies = bodies(&history);
    // Snapshots of the stream states every few events, so that most
    // histories cross some and end between two.
    let ledger = TempLedger::snapshot_every(5);
    let outcomes = run(&ledger, &bodies).await;
    let log = check_log(&ledger, &bodies, &outcomes);

    // A fresh ledger given only the accepted events, in order, as one
    // group, accepts every one at the same position and ends in the same
    // rule state.
    let fresh = replay_accepted(&log).await;
    assert_eq!(
        states(&ledger.ledger),
        states(&fresh.ledger),
        "the rule state depends only on the accepted events"
    );

    // And so does the state after a crash between snapshots, rebuilt
    // from the tail after the last one, and after a restart.
    let before = states(&ledger.ledger);
    let head = ledger.ledger.head();
    let ledger = ledger.reopen_after_crash();
    assert_eq!(ledger.ledger.head(), head);
    assert_eq!(states(&ledger.ledger), before);
    let ledger = ledger.reopen();
    assert_eq!(states(&ledger.ledger), before);
    // Resubmitting every submission that was not rejected commits nothing
    // new: each event is a duplicate at the place it first had.
    let (committed, answered): (Vec<_>, Vec<_>) = bodies
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.rejection.is_none())
        .map(|((body, wait), outcome)| ((body.clone(), *wait), outcome))
        .unzip();
    let again = run(&ledger, &committed).await;
    for (outcome, first) in again.iter().zip(answered) {
        assert_eq!(outcome.receipts.len(), first.receipts.len());
        for (receipt, original) in outcome.receipts.iter().zip(&first.receipts) {
            assert_eq!(receipt.status, ReceiptStatus::Duplicate);
            assert_eq!(receipt.position, original.position);
        }
    }
    assert_eq!(ledger.ledger.head(), head);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_history_reads_back_in_order_with_a_consistent_state(history in history()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(property(history));
    }
}

/// Concurrent resubmissions of one event, arriving while the first copy
/// is being committed, are answered `duplicate` at its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resubmissions_commit_once() {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    for round in 0..40 {
        let event = jobseeker_registered(1000 + round);
        let body = event.to_string().into_bytes();
        let copies = (0..6).map(|_| {
            let ledger = ledger.ledger.clone();
            let body = body.clone();
            tokio::spawn(async move {
                ledger
                    .submit_one(Submission::from_json(body, "test", Caller::operator()))
                    .await
                    .expect("the ledger answers")
            })
        });
        let outcomes: Vec<Outcome> = futures::future::join_all(copies)
            .await
            .into_iter()
            .map(|o| o.expect("the task ends"))
            .collect();
        let accepted = outcomes
            .iter()
            .filter(|o| o.receipts[0].status == ReceiptStatus::Accepted)
            .count();
        assert_eq!(accepted, 1, "round {round}: {outcomes:?}");
        let positions: HashSet<_> = outcomes.iter().map(|o| o.receipts[0].position).collect();
        assert_eq!(positions.len(), 1, "round {round}: {outcomes:?}");
    }
    assert_eq!(ledger.ledger.head().position, 46);
}

/// Resubmissions sent one after another, each before the previous answer
/// arrives, are decided in separate, pipelined group commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_resubmissions_commit_once() {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    for round in 0..40 {
        let body = jobseeker_registered(1000 + round).to_string().into_bytes();
        let mut answers = Vec::new();
        for _ in 0..4 {
            let ledger = ledger.ledger.clone();
            let body = body.clone();
            answers.push(tokio::spawn(async move {
                ledger
                    .submit_one(Submission::from_json(body, "test", Caller::operator()))
                    .await
                    .expect("the ledger answers")
            }));
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
        let mut statuses = Vec::new();
        for answer in answers {
            let outcome = answer.await.expect("the task ends");
            statuses.push((outcome.receipts[0].status, outcome.receipts[0].position));
        }
        let accepted = statuses
            .iter()
            .filter(|s| s.0 == ReceiptStatus::Accepted)
            .count();
        assert_eq!(accepted, 1, "round {round}: {statuses:?}");
    }
    let log: Vec<_> = ledger
        .ledger
        .events_iter(0)
        .collect::<Result<_, _>>()
        .expect("log");
    let ids: HashSet<_> = log.iter().map(|e| e.envelope.id).collect();
    assert_eq!(ids.len(), log.len(), "no id committed twice");
    assert_eq!(log.len(), 46);
}

/// A store whose id runs are missing (written before they existed) has
/// them rebuilt from its events when the writer next starts: every event
/// submitted again is a duplicate at its position, and other content under
/// a known id is still a conflict.
#[tokio::test]
async fn missing_id_runs_are_rebuilt_from_the_log() {
    let ledger = small_log().await;
    let log: Vec<CommittedEvent> = ledger
        .ledger
        .events_iter(0)
        .collect::<Result<_, _>>()
        .expect("log");
    let removed = ledger.ledger.forget_id_runs().expect("runs removed");
    assert!(removed > 0, "the log had no id runs");
    assert_eq!(ledger.ledger.id_entry(1).expect("read"), None);

    let reopened = ledger.reopen();
    for event in &log {
        let body = serde_json::to_value(&event.envelope).expect("JSON");
        let outcome = reopened.submit(&body).await;
        let receipt = &outcome.receipts[0];
        assert_eq!(
            (receipt.status, receipt.position),
            (ReceiptStatus::Duplicate, Some(event.ledger.position)),
            "{}",
            event.envelope.id
        );
    }
    let mut altered = serde_json::to_value(&log[3].envelope).expect("JSON");
    altered["source"] = json!("urn:service:someone-else");
    assert_eq!(reopened.code(&altered).await, "duplicate_id_conflict");
    for event in &log {
        let entry = reopened
            .ledger
            .id_entry(event.ledger.position)
            .expect("read")
            .expect("the run was rebuilt");
        assert_eq!(entry.id, event.envelope.id);
        assert_eq!(entry.streamversion, event.ledger.streamversion);
    }
    assert_eq!(reopened.ledger.head().position, log.len() as u64);
}

/// A ledger with the scheme and two releases: 10 events, the last four
/// submitted as one batch so that they are stored together.
async fn small_log() -> TempLedger {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    let batch = json!([
        employee_registered(11, 1),
        release_started(100, 200, 10),
        release_started(100, 201, 11),
        substitution_started(100, 300, 20, &[200, 201]),
    ]);
    assert_eq!(ledger.code(&batch).await, "accepted");
    ledger
}

fn rotation_ledger(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

#[tokio::test]
async fn verify_finds_the_tampered_position() {
    for position in [1u64, 4, 7, 8, 10] {
        let ledger = small_log().await;
        let sound = ledger.ledger.verify().expect("verify runs");
        assert!(sound.ok && sound.first_bad_position.is_none(), "{sound:?}");
        assert_eq!(sound.head_position, 10);

        // Change one value inside `data`, keeping the record valid JSON
        // and a valid committed event.
        let stored = ledger
            .ledger
            .event_json(position)
            .expect("read")
            .expect("stored");
        let mut event: Value = serde_json::from_slice(&stored).expect("JSON");
        let data = event["data"].as_object_mut().expect("data");
        let (key, value) = data.iter_mut().next().expect("a data field");
        *value = match value {
            Value::String(s) => json!(format!("{s} (altered)")),
            _ => json!("altered"),
        };
        let key = key.clone();
        ledger
            .ledger
            .tamper(position, &serde_json::to_vec(&event).expect("JSON"))
            .expect("tamper");
        let verdict = ledger.ledger.verify().expect("verify runs");
        assert!(
            !verdict.ok,
            "altering data.{key} at {position} goes unnoticed"
        );
        assert_eq!(verdict.first_bad_position, Some(position), "{verdict:?}");

        let dir = ledger.into_dir();
        let data_dir = dir.path().to_str().expect("UTF-8 path");
        let out = rotation_ledger(&["verify", "--data", data_dir]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("first bad position {position} ")),
            "{stdout}"
        );
        let out = rotation_ledger(&["verify", "--json", "--data", data_dir]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let verdict: Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
        assert_eq!(verdict["ok"], json!(false));
        assert_eq!(verdict["first_bad_position"], json!(position));
        assert_eq!(verdict["head_position"], json!(10));
    }
}

#[tokio::test]
async fn verify_checks_content_not_bytes() {
    // The chain covers the canonical form, so a record rewritten with its
    // keys in another order and other spacing still verifies.
    let ledger = small_log().await;
    let stored = ledger.ledger.event_json(5).expect("read").expect("stored");
    let event: serde_json::Map<String, Value> = serde_json::from_slice(&stored).expect("JSON");
    let members: Vec<String> = event
        .iter()
        .rev()
        .map(|(k, v)| format!("{}: {v}", json!(k)))
        .collect();
    let rewritten = format!("{{ {} }}", members.join(", "));
    assert_ne!(rewritten.as_bytes(), &stored[..]);
    ledger
        .ledger
        .tamper(5, rewritten.as_bytes())
        .expect("tamper");
    let verdict = ledger.ledger.verify().expect("verify runs");
    assert!(verdict.ok, "{verdict:?}");
    // But a changed hash is a changed event.
    let mut event: Value = serde_json::from_slice(&stored).expect("JSON");
    event["hash"] = json!("0".repeat(64));
    ledger
        .ledger
        .tamper(5, &serde_json::to_vec(&event).expect("JSON"))
        .expect("tamper");
    assert_eq!(
        ledger
            .ledger
            .verify()
            .expect("verify runs")
            .first_bad_position,
        Some(5)
    );
}

#[tokio::test]
async fn untouched_log_verifies() {
    let ledger = small_log().await;
    let head = ledger.ledger.head();
    let dir = ledger.into_dir();
    let data_dir = dir.path().to_str().expect("UTF-8 path");
    let out = rotation_ledger(&["verify", "--data", data_dir]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("ok"), "{stdout}");
    assert!(stdout.contains(&head.hash), "{stdout}");
    let out = rotation_ledger(&["verify", "--json", "--data", data_dir]);
    assert!(out.status.success(), "{out:?}");
    let verdict: Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
    assert_eq!(
        verdict,
        json!({"ok": true, "head_position": 10, "head_hash": head.hash, "first_bad_position": null})
    );
    // An empty ledger verifies too.
    let empty = TempLedger::new().into_dir();
    let out = rotation_ledger(&[
        "verify",
        "--data",
        empty.path().to_str().expect("UTF-8 path"),
    ]);
    assert!(out.status.success(), "{out:?}");
}

/// Regression: sled releases its directory lock from a background thread
/// after the last handle is dropped, so opening a ledger right after
/// `close` used to fail now and then with "could not acquire lock".
#[tokio::test]
async fn reopening_right_after_close_is_not_refused_by_the_directory_lock() {
    let mut ledger = TempLedger::new();
    scheme(&ledger).await;
    // The race is narrow; a hundred rounds lose it often enough to notice.
    for round in 0..100u128 {
        let outcome = ledger.code(&jobseeker_registered(1000 + round)).await;
        assert_eq!(outcome, "accepted");
        ledger = ledger.reopen();
    }
    assert_eq!(ledger.ledger.head().position, 106);
}
