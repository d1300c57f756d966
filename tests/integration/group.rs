//! The ledger group on a real three-node JetStream cluster (contract
//! section 11): while a partner service publishes a simulated history,
//! the writer is killed twice, a nats-server is killed, and a follower is
//! cut off for longer than the lease. Afterwards every acknowledged event
//! is in `ROTATION_LEDGER` exactly once at gap-free positions, every
//! node's chain verifies, every node shows the same dashboards, each
//! failover took less than 10 s, and a follower took a write. And the
//! people's data keys: every node opens a profile the writer sealed, and
//! an erasure on the writer leaves the key on no node and nowhere in the
//! key bucket's history.
//!
//! `scripts/group-soak` runs the same steps for longer, over more events
//! (`ROTATION_GROUP_ROUNDS`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{
    LedgerGroup, NatsCluster, Stored, bucket_history, eventually, now_ms, read_ledger_stream,
    stream_state,
};
use crate::support::{binary, jobseeker_registered, scheme_events, uuid, with};
use crate::tools;

/// The lease the nodes run with (the default): a node cut off for longer
/// than this has lost it, as far as the others can tell.
const LEASE: Duration = Duration::from_secs(3);

/// The longest a partner service may wait, from the writer's death to
/// the next event accepted (issue #24).
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

/// How much work a run does: one round of disruptions over about 2,400
/// events by default; the soak repeats the round over more.
struct Scale {
    rounds: usize,
    jobseekers: u32,
    /// Events a second the publisher offers, so that it is still
    /// publishing when the last disruption ends.
    rate: u32,
}

impl Scale {
    fn from_env() -> Self {
        let rounds = std::env::var("ROTATION_GROUP_ROUNDS")
            .ok()
            .and_then(|rounds| rounds.parse().ok())
            .filter(|&rounds| rounds > 0)
            .unwrap_or(1);
        Self {
            rounds,
            jobseekers: 100 * rounds as u32,
            rate: 40,
        }
    }
}

/// `tests/group_publisher.py` publishing a history through
/// `rotation.in.*`, writing its receipts and published ids to files.
struct Publisher {
    child: Child,
    receipts: PathBuf,
    published: PathBuf,
    log: PathBuf,
}

impl Publisher {
    fn start(urls: &str, history: &Path, dir: &Path, rate: u32) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/group_publisher.py");
        let receipts = dir.join("receipts.jsonl");
        let published = dir.join("published.txt");
        let log = dir.join("publisher.log");
        let child = Command::new(tools::python())
            .arg(&script)
            .args(["--urls", urls, "--rate", &rate.to_string()])
            .arg("--history")
            .arg(history)
            .arg("--receipts")
            .arg(&receipts)
            .arg("--published")
            .arg(&published)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the publisher's log"))
            .spawn()
            .expect("the publisher starts");
        Self {
            child,
            receipts,
            published,
            log,
        }
    }

    /// Every receipt so far, in the order received.
    fn receipts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.receipts)
            .unwrap_or_default()
            .lines()
            // The last line may be half written.
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The ids JetStream acknowledged, in the order published.
    fn published(&self) -> Vec<String> {
        std::fs::read_to_string(&self.published)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(' '))
            .filter_map(|line| line.split(' ').next().map(str::to_owned))
            .collect()
    }

    fn accepted(&self) -> usize {
        self.receipts()
            .iter()
            .filter(|receipt| receipt["status"] == "accepted")
            .count()
    }

    /// Waits until `more` accepted receipts beyond the present ones came.
    fn wait_for_progress(&self, more: usize, what: &str, group: &LedgerGroup) {
        let target = self.accepted() + more;
        eventually(
            what,
            Duration::from_secs(60),
            || format!("publisher: {}\nlogs:\n{}", self.log_text(), group.logs()),
            || self.accepted() >= target,
        );
    }

    /// When the first accepted receipt received at or after `after_ms`
    /// came, waiting up to `limit`.
    fn next_accepted(&self, after_ms: u64, limit: Duration) -> Option<u64> {
        let deadline = Instant::now() + limit;
        loop {
            let first = self
                .receipts()
                .iter()
                .filter(|receipt| receipt["status"] == "accepted")
                .filter_map(|receipt| receipt["received_ms"].as_u64())
                .find(|&at| at >= after_ms);
            if first.is_some() || Instant::now() > deadline {
                return first;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the publisher to finish; it must succeed.
    fn finish(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the publisher's status") {
                assert!(
                    status.success(),
                    "the publisher failed: {}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the publisher did not finish; published {} so far",
                self.published().len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rotation-ledger simulate` of `jobseekers` over two partnerships into
/// `dir`: the file and the partnerships it names.
fn simulated_history(dir: &Path, jobseekers: u32) -> (PathBuf, Vec<String>) {
    let file = dir.join("history.jsonl");
    let output = Command::new(binary())
        .args(["simulate", "--partnerships", "2", "--months", "12"])
        .args(["--jobseekers", &jobseekers.to_string()])
        .arg("--out")
        .arg(&file)
        .output()
        .expect("simulate runs");
    assert!(
        output.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut partnerships = Vec::new();
    for line in std::fs::read_to_string(&file).expect("the history").lines() {
        let event: Value = serde_json::from_str(line).expect("simulate writes JSON");
        let partnership = event["partnership"].as_str().expect("a partnership");
        if !partnerships.iter().any(|known| known == partnership) {
            partnerships.push(partnership.to_owned());
        }
    }
    assert_eq!(partnerships.len(), 2, "two partnerships simulated");
    (file, partnerships)
}

/// SIGKILLs the writer and measures the time to the next accepted
/// receipt; starts the killed node again afterwards, as a follower.
fn kill_the_writer(group: &mut LedgerGroup, publisher: &Publisher) -> Duration {
    let writer = group.writer();
    let killed_at = now_ms();
    group.nodes[writer].kill();
    // Receipts the dead writer sent may still be on their way: only one
    // received after it was surely gone counts as the next.
    let dead_at = now_ms() + 200;
    let accepted_at = publisher
        .next_accepted(dead_at, Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "no event was accepted within 60 s of killing the writer {}; logs:\n{}",
                group.nodes[writer].name,
                group.logs()
            )
        });
    let failover = Duration::from_millis(accepted_at - killed_at);
    eprintln!(
        "group: killed writer {}; next accepted receipt after {failover:?}",
        group.nodes[writer].name
    );
    group.restart(writer);
    failover
}

/// SIGKILLs one nats-server while the publisher goes on, then starts it
/// again on its store.
fn kill_a_nats_server(nats: &mut NatsCluster, publisher: &Publisher, n: usize) {
    let killed_at = now_ms();
    nats.kill(n);
    publisher
        .next_accepted(killed_at + 200, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no event was accepted with {} down", nats.nodes[n].name));
    std::thread::sleep(Duration::from_secs(2));
    nats.restart(n);
    eprintln!("group: killed and restarted {}", nats.nodes[n].name);
}

/// SIGSTOPs a follower for longer than the lease, then lets it go.
fn partition_a_follower(group: &mut LedgerGroup) {
    let follower = group.follower();
    group.nodes[follower].stop();
    std::thread::sleep(LEASE * 2);
    group.nodes[follower].cont();
    eprintln!(
        "group: stopped follower {} for {:?}",
        group.nodes[follower].name,
        LEASE * 2
    );
}

/// The stream is the log: sequences 1..=n without a gap, each message the
/// event at its position, each event id once. Returns the position of
/// each event id.
fn assert_stream_is_a_gap_free_log(
    first: u64,
    last: u64,
    stored: &[Stored],
) -> HashMap<String, u64> {
    assert_eq!(first, 1, "ROTATION_LEDGER starts at sequence 1");
    assert_eq!(stored.len() as u64, last, "no sequence missing");
    let mut positions = HashMap::new();
    for (n, message) in stored.iter().enumerate() {
        assert_eq!(message.sequence, n as u64 + 1, "sequences in order, no gap");
        assert_eq!(
            message.event["position"], message.sequence,
            "message {} carries the event at its position",
            message.sequence
        );
        let id = message.event["id"]
            .as_str()
            .expect("an event id")
            .to_owned();
        let earlier = positions.insert(id.clone(), message.sequence);
        assert_eq!(earlier, None, "event {id} is in ROTATION_LEDGER twice");
        if n > 0 {
            assert_eq!(
                message.event["prevhash"],
                stored[n - 1].event["hash"],
                "message {} chains to the one before",
                message.sequence
            );
        }
    }
    positions
}

#[test]
fn a_group_loses_nothing_acknowledged_through_kills_and_a_partition() {
    let _one_at_a_time = crate::nats::ONE_AT_A_TIME.blocking_lock();
    let scale = Scale::from_env();
    let mut nats = NatsCluster::start();
    let mut group = LedgerGroup::start(&nats);
    let (history, partnerships) = simulated_history(group.dir(), scale.jobseekers);
    let mut publisher = Publisher::start(&nats.urls(), &history, group.dir(), scale.rate);
    publisher.wait_for_progress(100, "the first events accepted", &group);

    let mut failovers = Vec::new();
    for round in 0..scale.rounds {
        for _ in 0..2 {
            failovers.push(kill_the_writer(&mut group, &publisher));
            publisher.wait_for_progress(50, "events accepted after the restart", &group);
        }
        kill_a_nats_server(&mut nats, &publisher, round % 3);
        publisher.wait_for_progress(50, "events accepted after the nats-server restart", &group);
        partition_a_follower(&mut group);
        publisher.wait_for_progress(50, "events accepted after the partition", &group);
    }
    assert!(
        publisher.is_running(),
        "the publisher finished before the disruptions did: they must happen while it publishes"
    );

    // A write sent to a follower is forwarded to the writer and accepted.
    let follower = group.follower();
    let posted = with(
        jobseeker_registered(900_001),
        "/partnership",
        json!(partnerships[0]),
    );
    let (status, body) = group.nodes[follower].request("POST", "/v1/events", Some(&posted));
    assert_eq!(status, 200, "a write to follower: {body}");
    let answer: Value = serde_json::from_str(&body).expect("receipts as JSON");
    assert_eq!(
        answer["results"][0]["status"], "accepted",
        "a write to a follower: {answer}"
    );
    let posted_position = answer["results"][0]["position"]
        .as_u64()
        .expect("an accepted event's position");

    publisher.finish(Duration::from_secs(300));

    let published = publisher.published();
    let receipts = publisher.receipts();
    // The history is valid and published in order: a rejection means the
    // group decided an event out of the order it was published in.
    let rejected: Vec<&Value> = receipts
        .iter()
        .filter(|receipt| receipt["status"] == "rejected")
        .collect();
    assert!(
        rejected.is_empty(),
        "a valid history got {} rejections, the first: {:?}",
        rejected.len(),
        &rejected[..rejected.len().min(3)]
    );
    // Every event published is committed before the group is judged.
    let expected = published.iter().collect::<HashSet<_>>().len() as u64 + 1;
    eventually(
        "every published event in ROTATION_LEDGER",
        Duration::from_secs(120),
        || {
            format!(
                "ROTATION_LEDGER (first, last, messages) {:?}, expected {expected}; logs:\n{}",
                stream_state(&nats.urls(), "ROTATION_LEDGER"),
                group.logs()
            )
        },
        || {
            stream_state(&nats.urls(), "ROTATION_LEDGER")
                .is_some_and(|(_, last, _)| last >= expected)
        },
    );
    let (first, last, stored) = read_ledger_stream(&nats.urls());
    let positions = assert_stream_is_a_gap_free_log(first, last, &stored);

    // Every acknowledged event is in the log exactly once, where its
    // receipt said; a duplicate's receipt names the first one's position.
    let acknowledged: Vec<&Value> = receipts
        .iter()
        .filter(|receipt| receipt["status"] == "accepted" || receipt["status"] == "duplicate")
        .collect();
    assert!(
        acknowledged.len() * 2 > published.len(),
        "the publisher heard most receipts: {} of {}",
        acknowledged.len(),
        published.len()
    );
    for receipt in &acknowledged {
        let id = receipt["id"].as_str().expect("a receipt names its event");
        assert_eq!(
            positions.get(id).copied(),
            receipt["position"].as_u64(),
            "{receipt}: the event is in ROTATION_LEDGER at its receipt's position"
        );
    }
    for id in &published {
        assert!(positions.contains_key(id), "published event {id} was lost");
    }
    let posted_id = posted["id"].as_str().expect("an id");
    assert_eq!(positions.get(posted_id), Some(&posted_position));
    assert_eq!(
        last, expected,
        "the history and the posted event, nothing else"
    );

    // Every node holds the stream, verified, and folds it the same way.
    group.wait_caught_up(last, Duration::from_secs(120));
    let head_hash = &stored.last().expect("a non-empty log").event["hash"];
    for node in &group.nodes {
        let (code, verdict) = node.verify();
        assert_eq!(code, Some(0), "{}: verify failed: {verdict}", node.name);
        assert_eq!(verdict["ok"], true, "{}: {verdict}", node.name);
        assert_eq!(verdict["head_position"], last, "{}: {verdict}", node.name);
        assert_eq!(&verdict["head_hash"], head_hash, "{}: {verdict}", node.name);
    }
    for partnership in &partnerships {
        for raw in [true, false] {
            let boards: Vec<String> = group
                .nodes
                .iter()
                .map(|node| node.dashboard(partnership, raw))
                .collect();
            for (node, board) in group.nodes.iter().zip(&boards).skip(1) {
                assert!(
                    *board == boards[0],
                    "{}'s {partnership} dashboard (raw: {raw}) differs from {}'s:\n{board}\n{}",
                    node.name,
                    group.nodes[0].name,
                    boards[0]
                );
            }
        }
    }

    // The group's status names every node, one writer, nobody behind.
    eventually(
        "every node at lag 0 in GET /v1/group",
        Duration::from_secs(30),
        || group.nodes[follower].group().to_string(),
        || {
            let status = group.nodes[follower].group();
            let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
            nodes.len() == 3
                && nodes.iter().filter(|node| node["role"] == "writer").count() == 1
                && nodes
                    .iter()
                    .all(|node| node["lag"] == 0 && node["applied"] == last)
        },
    );

    for failover in &failovers {
        assert!(
            *failover < FAILOVER_LIMIT,
            "a failover took {failover:?}: {failovers:?}"
        );
    }
    eprintln!("group: {last} events; failovers {failovers:?}");
}

/// Posts `event` to node `n` and returns its accepted position.
fn post_accepted(group: &LedgerGroup, n: usize, event: &Value) -> u64 {
    let (status, body) = group.nodes[n].request("POST", "/v1/events", Some(event));
    assert_eq!(
        status, 200,
        "{} POST /v1/events: {body}",
        group.nodes[n].name
    );
    let answer: Value = serde_json::from_str(&body).expect("receipts as JSON");
    assert_eq!(answer["results"][0]["status"], "accepted", "{answer}");
    answer["results"][0]["position"]
        .as_u64()
        .expect("an accepted event's position")
}

/// Every node's raw dashboard of `partnership`, which must be the same.
fn assert_same_dashboards(group: &LedgerGroup, partnership: &str) {
    let boards: Vec<String> = group
        .nodes
        .iter()
        .map(|node| node.dashboard(partnership, true))
        .collect();
    for (node, board) in group.nodes.iter().zip(&boards).skip(1) {
        assert!(
            *board == boards[0],
            "{}'s dashboard differs from {}'s:\n{board}\n{}",
            node.name,
            group.nodes[0].name,
            boards[0]
        );
    }
}

#[test]
fn followers_open_profiles_and_an_erasure_destroys_the_key_everywhere() {
    let _one_at_a_time = crate::nats::ONE_AT_A_TIME.blocking_lock();
    let nats = NatsCluster::start();
    let mut group = LedgerGroup::start(&nats);
    let writer = group.writer();
    let follower = group.follower();
    for event in scheme_events() {
        post_accepted(&group, writer, &event);
    }
    // The person's profile is sealed by the writer, under a key made there,
    // though the partner sent it to a follower.
    let person = uuid(21);
    let head = post_accepted(&group, follower, &jobseeker_registered(21));
    group.wait_caught_up(head, Duration::from_secs(60));

    let held = bucket_history(&nats.urls(), "ROTATION_KEYS", &person);
    assert!(
        held.iter()
            .any(|(operation, value)| operation.is_none() && !value.is_empty()),
        "the key bucket holds the person's wrapped key: {held:?}"
    );

    let access = format!("/v1/persons/{person}");
    for node in &group.nodes {
        let document = node.get_json(&access);
        let registered = document["stream"]
            .as_array()
            .and_then(|events| events.iter().find(|e| e["data"]["role"] == "jobseeker"))
            .unwrap_or_else(|| panic!("{}: no registration in {document}", node.name));
        assert_eq!(
            registered["data"]["profile"]["sex"], "female",
            "{} opens the profile: {document}",
            node.name
        );
    }
    assert_same_dashboards(&group, "stoke");
    // A follower's dataset opens the profiles too (both jobseekers are
    // women).
    let jobseekers = group.export_jobseekers(follower);
    let mut lines = jobseekers.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let sex = header
        .iter()
        .position(|column| *column == "sex")
        .expect("a sex column");
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "two jobseekers: {jobseekers}");
    assert!(
        rows.iter().all(|row| row[sex] == "female"),
        "{}'s export opens every profile:\n{jobseekers}",
        group.nodes[follower].name
    );

    // Only the writer erases; a follower names it.
    let erasure = format!("{access}/erasure");
    let reason = json!({"reason": "the person asked"});
    let (status, body) = group.nodes[follower].request("POST", &erasure, Some(&reason));
    assert_eq!(status, 503, "an erasure sent to a follower: {body}");
    assert!(
        body.contains(&group.nodes[writer].address()),
        "the refusal names the writer's address: {body}"
    );
    let (status, body) = group.nodes[writer].request("POST", &erasure, Some(&reason));
    assert_eq!(status, 200, "the erasure: {body}");
    let erased: Value = serde_json::from_str(&body).expect("the erasure as JSON");
    let erased_at = erased["position"].as_u64().expect("the erasure's position");

    // The bucket's history holds nothing of the key: only a purge marker.
    let left = bucket_history(&nats.urls(), "ROTATION_KEYS", &person);
    assert!(
        left.iter()
            .all(|(operation, value)| operation.as_deref() == Some("PURGE") && value.is_empty()),
        "the key bucket still holds the erased key: {left:?}"
    );
    group.wait_caught_up(erased_at, Duration::from_secs(60));
    for node in &group.nodes {
        let document = node.get_json(&access);
        assert_eq!(document["erased"], true, "{}: {document}", node.name);
        assert!(
            !document.to_string().contains("\"profile\""),
            "{} still opens the erased profile: {document}",
            node.name
        );
    }
    assert_same_dashboards(&group, "stoke");
}
