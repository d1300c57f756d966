//! NATS, end to end: ingest through the durable consumer, receipts,
//! `rotation.append`, publication of committed events and rejections, and
//! what survives a ledger killed mid-ingest or a nats-server restarted
//! under it. Every test starts its own nats-server (JetStream, fsync on
//! every write) on a free port, and most run the real binary with
//! `serve --nats`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use rotation_ledger::ledger::{Ledger, LedgerOptions, Submission};
use rotation_ledger::nats::NatsOptions;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{
    self, append_log, free_port, jobseeker_registered, partnership_registered, person_event,
};
use crate::tools;

/// Each of these tests runs a nats-server and a ledger of its own and
/// measures progress against time limits; run side by side on a machine of
/// two cores they starve each other, so they take turns.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A nats-server of our own, with JetStream storing in a temporary
/// directory that outlives restarts.
struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let store = self.dir.path().join("jetstream");
        let config = self.dir.path().join("nats.conf");
        // `sync_interval: always` has no command-line flag: it makes every
        // acknowledged JetStream write durable before the ack.
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:{}\"\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                self.port, store
            ),
        )
        .expect("the nats-server configuration is written");
        let log = self.log();
        let child = Command::new(tools::nats_server())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(append_log(&log))
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        wait_for_port(self.port, "nats-server", &log);
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server without warning (SIGKILL).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ledger binary running `serve --nats` on a data directory.
struct Serve {
    child: Option<Child>,
    data: PathBuf,
    log: PathBuf,
    /// Where its HTTP API listens.
    port: u16,
}

impl Serve {
    fn start(data: &Path, nats_url: &str) -> Self {
        let port = free_port();
        let log = data.with_extension("log");
        let child = Command::new(support::binary())
            .args(["serve", "--data"])
            .arg(data)
            .args(["--http", &format!("127.0.0.1:{port}"), "--nats", nats_url])
            .env("RUST_LOG", "info")
            .stdout(append_log(&log))
            .stderr(append_log(&log))
            .spawn()
            .expect("rotation-ledger serve starts");
        wait_for_port(port, "rotation-ledger serve", &log);
        Self {
            child: Some(child),
            data: data.to_owned(),
            log,
            port,
        }
    }

    /// The durable head now, as `GET /healthz` reports it.
    async fn head_position(&self) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("serve listens");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n\r\n")
            .await
            .expect("sent");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("an answer");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let health: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {answer}"));
        health["head_position"]
            .as_u64()
            .unwrap_or_else(|| panic!("no head_position in {health}"))
    }

    /// Kills the ledger without warning (SIGKILL), as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the ledger as a service manager would (SIGTERM) and waits.
    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM could not be sent");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("the ledger's status") {
                assert!(
                    status.success(),
                    "serve exited with {status}; log:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop on SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The committed log, as `dump` prints it; the ledger must be stopped.
    fn dump(&self) -> Vec<String> {
        dump(&self.data)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

fn dump(data: &Path) -> Vec<String> {
    let output = Command::new(support::binary())
        .args(["dump", "--data"])
        .arg(data)
        .output()
        .expect("dump runs");
    assert!(
        output.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("dump prints UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn connect(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .expect("the test connects to NATS");
    let js = jetstream::new(client.clone());
    (client, js)
}

/// What an ingest test holds while it runs: the lock that keeps NATS tests
/// apart, its own nats-server, and the ledger's directory.
struct Harness {
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
    nats: NatsServer,
    data: tempfile::TempDir,
}

impl Harness {
    fn dir(&self) -> PathBuf {
        self.data.path().join("ledger")
    }
}

/// Starts a nats-server and a `serve` on it, connects the test as a client,
/// and waits for the ledger's streams.
async fn start_ingest() -> (Harness, Serve, async_nats::Client, jetstream::Context) {
    let one_at_a_time = ONE_AT_A_TIME.lock().await;
    let harness = Harness {
        _one_at_a_time: one_at_a_time,
        nats: NatsServer::start(),
        data: tempfile::tempdir().expect("a temporary directory"),
    };
    let serve = Serve::start(&harness.dir(), &harness.nats.url());
    let (client, js) = connect(&harness.nats.url()).await;
    streams_created(&js).await;
    (harness, serve, client, js)
}

/// Waits until `check` holds, polling; fails with `what` after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ledger's durable consumer on `ROTATION_IN`.
async fn ingest_consumer(js: &jetstream::Context) -> consumer::PullConsumer {
    js.get_stream("ROTATION_IN")
        .await
        .expect("ROTATION_IN")
        .get_consumer("rotation-ledger")
        .await
        .expect("the durable consumer")
}

/// How many messages a stream holds, 0 when it does not exist (yet).
async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Every message of a stream, in sequence order, with its sequence.
async fn read_stream(js: &jetstream::Context, name: &str) -> Vec<(u64, async_nats::Message)> {
    let mut stream = js.get_stream(name).await.expect("the stream exists");
    let count = stream.info().await.expect("stream info").state.messages as usize;
    if count == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("the stream delivers")
            .expect("the stream does not end")
            .expect("a message");
        let seq = message.info().expect("message info").stream_sequence;
        out.push((seq, message.message));
    }
    out
}

fn header<'a>(message: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(async_nats::HeaderValue::as_str)
}

/// Publishes events to `rotation.in.<partnership>` with `Nats-Msg-Id`, many
/// in flight, and waits for every JetStream ack.
async fn publish(js: &jetstream::Context, partnership: &str, events: &[Value]) {
    // Fewer in flight than the context's ack permits (5,000): a publish
    // waits for a permit, which only an awaited (or dropped) ack returns.
    const IN_FLIGHT: usize = 1_000;
    let mut acks = std::collections::VecDeque::with_capacity(IN_FLIGHT);
    for event in events {
        if acks.len() == IN_FLIGHT
            && let Some(ack) = acks.pop_front()
        {
            let ack: jetstream::context::PublishAckFuture = ack;
            ack.await.expect("JetStream stores the event");
        }
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event["id"].as_str().expect("an id"));
        let ack = js
            .publish_with_headers(
                format!("rotation.in.{partnership}"),
                headers,
                event.to_string().into(),
            )
            .await
            .expect("the publish is sent");
        acks.push_back(ack);
    }
    for ack in acks {
        ack.await.expect("JetStream stores the event");
    }
}

/// A partnership, then `people` jobseekers, each registered and mentored.
fn volume(people: u128) -> Vec<Value> {
    let mut events = vec![partnership_registered()];
    for n in 0..people {
        events.push(jobseeker_registered(1_000 + n));
        events.push(person_event(
            1_000 + n,
            "jobseeker.mentoring_session",
            json!({"minutes": 45, "mentor": "union_learning_rep"}),
        ));
    }
    events
}

/// Checks that ROTATION_LEDGER is exactly the ledger's log: positions 1..n,
/// each once, in order, as stored, routed by partnership and type.
async fn assert_stream_is_the_log(js: &jetstream::Context, log: &[String]) {
    let messages = read_stream(js, "ROTATION_LEDGER").await;
    assert_eq!(
        messages.len(),
        log.len(),
        "ROTATION_LEDGER holds the whole log, once"
    );
    for (i, ((seq, message), stored)) in messages.iter().zip(log).enumerate() {
        let position = i as u64 + 1;
        assert_eq!(*seq, position, "stream sequence follows position");
        assert_eq!(
            message.payload.as_ref(),
            stored.as_bytes(),
            "position {position} is published exactly as stored"
        );
        let event: Value = serde_json::from_str(stored).expect("stored JSON");
        assert_eq!(event["position"], position, "the log itself is gap-free");
        assert_eq!(header(message, "Nats-Msg-Id"), event["id"].as_str());
        let noun_verb = event["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("jobrotation."))
            .expect("a catalogue type");
        assert_eq!(
            message.subject.as_str(),
            format!(
                "rotation.ledger.{}.{noun_verb}",
                event["partnership"].as_str().unwrap_or_default()
            )
        );
    }
}

/// Waits until the ledger has created its streams on start.
async fn streams_created(js: &jetstream::Context) {
    eventually(
        "ROTATION_IN to be created",
        Duration::from_secs(30),
        || async { js.get_stream("ROTATION_IN").await.is_ok() },
    )
    .await;
}

/// Waits until the ledger has committed and published a few hundred
/// events, so that what the test does next hits it mid-ingest.
async fn ingest_under_way(js: &jetstream::Context) {
    eventually("ingest under way", Duration::from_secs(60), || async {
        stream_len(js, "ROTATION_LEDGER").await >= 300
    })
    .await;
}

/// Waits until every published event is on ROTATION_LEDGER, stops the
/// ledger, and checks that its log holds each event exactly once and that
/// the stream is that log, in order.
async fn assert_all_committed_and_published(
    mut serve: Serve,
    js: &jetstream::Context,
    events: &[Value],
) {
    eventually(
        "the whole log on ROTATION_LEDGER",
        Duration::from_secs(120),
        || async { stream_len(js, "ROTATION_LEDGER").await >= events.len() as u64 },
    )
    .await;
    serve.terminate();
    let log = serve.dump();
    assert_log_holds_exactly(&log, events);
    assert_stream_is_the_log(js, &log).await;
}

fn ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn logged_ids(log: &[String]) -> Vec<String> {
    log.iter()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("stored JSON");
            event["id"].as_str().expect("an id").to_owned()
        })
        .collect()
}

/// Checks that the log holds every published event exactly once.
fn assert_log_holds_exactly(log: &[String], published: &[Value]) {
    let logged = logged_ids(log);
    let unique: HashSet<String> = logged.iter().cloned().collect();
    assert_eq!(unique.len(), logged.len(), "no event is committed twice");
    assert_eq!(
        unique,
        ids(published),
        "every published event is committed, and nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_commits_acks_publishes_receipts_and_the_log_in_order() {
    let (_harness, mut serve, client, js) = start_ingest().await;
    let mut receipts = client
        .subscribe("rotation.receipts.stoke")
        .await
        .expect("a receipts subscription");
    client.flush().await.expect("the subscription is in place");

    let events = volume(300);
    publish(&js, "stoke", &events).await;

    let mut seen = HashSet::new();
    while seen.len() < events.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), receipts.next())
            .await
            .expect("a receipt for every event")
            .expect("the subscription lives");
        let receipt: Value = serde_json::from_slice(&message.payload).expect("a JSON receipt");
        assert_eq!(receipt["status"], "accepted", "{receipt}");
        assert!(receipt["position"].as_u64().is_some(), "{receipt}");
        seen.insert(receipt["id"].as_str().expect("an id").to_owned());
    }
    assert_eq!(seen, ids(&events));

    eventually(
        "every inbound message to be acked",
        Duration::from_secs(30),
        || async {
            let Ok(stream) = js.get_stream("ROTATION_IN").await else {
                return false;
            };
            let Ok(mut consumer) = stream
                .get_consumer::<consumer::pull::Config>("rotation-ledger")
                .await
            else {
                return false;
            };
            consumer.info().await.is_ok_and(|i| {
                i.num_ack_pending == 0
                    && i.num_pending == 0
                    && i.ack_floor.stream_sequence == events.len() as u64
            })
        },
    )
    .await;
    // One ack a lot; what was answered is purged from ROTATION_IN.
    let mut consumer = ingest_consumer(&js).await;
    let config = &consumer.info().await.expect("consumer info").config;
    assert_eq!(config.ack_policy, consumer::AckPolicy::All);
    let mut stream = js.get_stream("ROTATION_IN").await.expect("ROTATION_IN");
    let retention = stream.info().await.expect("stream info").config.retention;
    assert_eq!(retention, jetstream::stream::RetentionPolicy::Limits);
    eventually(
        "ROTATION_IN purged of the answered messages",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_IN").await == 0 },
    )
    .await;
    eventually(
        "the log on ROTATION_LEDGER",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_LEDGER").await == events.len() as u64 },
    )
    .await;

    // rotation.append: an all-or-nothing batch, then a rejected one.
    let batch = json!([
        jobseeker_registered(5_000),
        person_event(5_000, "jobseeker.referred", json!({"referred_by": "self"}))
    ]);
    let reply = client
        .request("rotation.append", batch.to_string().into())
        .await
        .expect("rotation.append answers");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("a JSON reply");
    let results = reply["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{reply}");
    assert!(results.iter().all(|r| r["status"] == "accepted"), "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    let orphan = person_event(6_000, "jobseeker.referred", json!({"referred_by": "self"}));
    let reply = client
        .request("rotation.append", orphan.to_string().into())
        .await
        .expect("rotation.append answers");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("a JSON reply");
    assert_eq!(reply["error"]["code"], "unknown_stream", "{reply}");
    assert_eq!(reply["results"][0]["status"], "rejected", "{reply}");
    let total = events.len() as u64 + 2;
    eventually(
        "the appended events on ROTATION_LEDGER",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_LEDGER").await == total },
    )
    .await;

    serve.terminate();
    let log = serve.dump();
    assert_eq!(log.len() as u64, total);
    assert_stream_is_the_log(&js, &log).await;
    // Published in the order the ledger committed them, which for one
    // publisher is the order published.
    assert_eq!(
        logged_ids(&log)[..events.len()],
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()[..]
    );
}

/// Starts a nats-server with `ROTATION_IN` made beforehand as an operator
/// would, and a `serve` on it that publishes 200 events through it.
async fn ingest_through_an_existing_rotation_in(
    config: jetstream::stream::Config,
) -> (Harness, Serve, jetstream::Context, Vec<Value>) {
    let one_at_a_time = ONE_AT_A_TIME.lock().await;
    let harness = Harness {
        _one_at_a_time: one_at_a_time,
        nats: NatsServer::start(),
        data: tempfile::tempdir().expect("a temporary directory"),
    };
    let (_client, js) = connect(&harness.nats.url()).await;
    js.create_stream(config)
        .await
        .expect("an operator's ROTATION_IN");
    let serve = Serve::start(&harness.dir(), &harness.nats.url());
    streams_created(&js).await;
    let events = volume(200);
    publish(&js, "stoke", &events).await;
    eventually(
        "the events on ROTATION_LEDGER",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_LEDGER").await == events.len() as u64 },
    )
    .await;
    (harness, serve, js, events)
}

/// A `ROTATION_IN` made as a work queue (by an operator, or by an earlier
/// version) stays one: the consumer acks every message, and JetStream
/// removes each once acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_queue_rotation_in_is_used_with_an_ack_for_every_message() {
    let (_harness, mut serve, js, events) =
        ingest_through_an_existing_rotation_in(jetstream::stream::Config {
            name: "ROTATION_IN".into(),
            subjects: vec!["rotation.in.>".into()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await;
    let mut consumer = ingest_consumer(&js).await;
    let config = &consumer.info().await.expect("consumer info").config;
    assert_eq!(config.ack_policy, consumer::AckPolicy::Explicit);
    eventually(
        "every message acked and removed",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_IN").await == 0 },
    )
    .await;
    serve.terminate();
    assert_log_holds_exactly(&serve.dump(), &events);
}

/// The purge of answered messages spares subjects an operator added to
/// `ROTATION_IN` for other uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_rotation_in_spares_an_operators_other_subjects() {
    let (_harness, mut serve, js, events) =
        ingest_through_an_existing_rotation_in(jetstream::stream::Config {
            name: "ROTATION_IN".into(),
            subjects: vec!["rotation.in.>".into(), "partners.audit.>".into()],
            ..Default::default()
        })
        .await;
    js.publish("partners.audit.stoke", "kept".into())
        .await
        .expect("a publish")
        .await
        .expect("stored");
    let more = volume(250).split_off(events.len());
    publish(&js, "stoke", &more).await;
    eventually(
        "ROTATION_IN purged of the answered messages",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_IN").await == 1 },
    )
    .await;
    let left = read_stream(&js, "ROTATION_IN").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.subject.as_str(), "partners.audit.stoke");
    assert_eq!(left[0].1.payload.as_ref(), b"kept");
    serve.terminate();
    assert_log_holds_exactly(&serve.dump(), &[events, more].concat());
}

/// Also the regression test of redelivery out of order: messages the dead
/// ledger had fetched used to come back only after the ack wait, behind
/// newer ones, and a mentoring session was rejected for arriving before its
/// jobseeker's registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_killed_mid_ingest_loses_and_duplicates_nothing() {
    let (harness, mut serve, _client, js) = start_ingest().await;

    let events = volume(1_500);
    let publisher = {
        let js = js.clone();
        let events = events.clone();
        tokio::spawn(async move {
            for chunk in events.chunks(250) {
                publish(&js, "stoke", chunk).await;
            }
        })
    };
    ingest_under_way(&js).await;
    serve.kill();
    // What the store holds now is what was committed when it was killed.
    let at_kill = serve.dump().len();
    assert!(
        at_kill < events.len(),
        "killed mid-ingest: {at_kill} of {} events were in",
        events.len()
    );
    publisher
        .await
        .expect("the publisher finishes while the ledger is down");

    // What the dead ledger had fetched comes back first, in order.
    let serve = Serve::start(&harness.dir(), &harness.nats.url());
    assert_all_committed_and_published(serve, &js, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_ingest_publishes_what_it_committed_and_resumes() {
    let (harness, mut serve, _client, js) = start_ingest().await;

    let events = volume(1_500);
    publish(&js, "stoke", &events).await;
    ingest_under_way(&js).await;
    serve.terminate();
    let committed = serve.dump();
    // The head at the signal was at most what the store holds after it.
    assert!(
        committed.len() < events.len(),
        "stopped mid-ingest: {} of {} events were in",
        committed.len(),
        events.len()
    );
    assert_eq!(
        stream_len(&js, "ROTATION_LEDGER").await,
        committed.len() as u64,
        "everything committed before the stop is published before it returns"
    );

    let serve = Serve::start(&harness.dir(), &harness.nats.url());
    assert_all_committed_and_published(serve, &js, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restarted_mid_ingest_loses_and_duplicates_nothing() {
    let (mut harness, serve, client, js) = start_ingest().await;

    let events = volume(2_000);
    let (before, after) = events.split_at(2_501);
    publish(&js, "stoke", before).await;
    ingest_under_way(&js).await;
    harness.nats.kill();
    // The head can only have grown since the outage began, so a head short
    // of what was published shows the outage came mid-ingest.
    let at_outage = serve.head_position().await;
    assert!(
        at_outage < before.len() as u64,
        "NATS stopped mid-ingest: {at_outage} of {} events were in",
        before.len()
    );
    harness.nats.spawn();
    // The ledger sees the outage and reconnects; so does this client.
    eventually(
        "the test client to reconnect",
        Duration::from_secs(30),
        || async { client.connection_state() == async_nats::connection::State::Connected },
    )
    .await;
    eventually("JetStream back", Duration::from_secs(30), || async {
        js.get_stream("ROTATION_IN").await.is_ok()
    })
    .await;
    publish(&js, "stoke", after).await;
    assert_all_committed_and_published(serve, &js, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_rejected_with_their_codes_and_ingest_goes_on() {
    let (_harness, mut serve, client, js) = start_ingest().await;

    let not_json = b"this is not JSON {".to_vec();
    let wrong_type = support::event("nonsense.happened", "partnership/stoke", json!({}))
        .to_string()
        .into_bytes();
    // Large but under the server's max_payload; unknown attributes are invalid.
    let mut huge = support::event("partnership.registered", "partnership/stoke", json!({}));
    huge["padding"] = Value::from("x".repeat(900 * 1024));
    let huge = huge.to_string().into_bytes();
    let mut foreign = partnership_registered();
    foreign["partnership"] = Value::from("leeds");
    foreign["subject"] = Value::from("partnership/leeds");
    let foreign = foreign.to_string().into_bytes();
    let good = partnership_registered();

    let poison = [
        (not_json.clone(), "invalid_event", "stoke"),
        (wrong_type.clone(), "invalid_event", "stoke"),
        (huge.clone(), "invalid_event", "stoke"),
        // Under the publisher's partnership, not the one its event names:
        // nobody's messages reach another partnership's subscribers.
        (foreign.clone(), "forbidden", "stoke"),
    ];
    for (body, _, _) in &poison {
        js.publish("rotation.in.stoke", body.clone().into())
            .await
            .expect("sent")
            .await
            .expect("stored");
    }
    publish(&js, "stoke", std::slice::from_ref(&good)).await;

    eventually(
        "the good event after the poison",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_LEDGER").await == 1 },
    )
    .await;
    eventually(
        "four rejections on ROTATION_REJECTED",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_REJECTED").await == 4 },
    )
    .await;
    let rejected = read_stream(&js, "ROTATION_REJECTED").await;
    for (i, ((seq, message), (body, code, partnership))) in rejected.iter().zip(&poison).enumerate()
    {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(
            message.subject.as_str(),
            format!("rotation.rejected.{partnership}")
        );
        assert_eq!(
            header(message, "Rotation-Error-Code"),
            Some(*code),
            "rejection {seq}"
        );
        assert!(
            !header(message, "Rotation-Error")
                .unwrap_or_default()
                .is_empty()
        );
        assert_eq!(
            header(message, "Nats-Msg-Id"),
            Some(format!("rejection-{seq}").as_str())
        );
        // Findable under the id the publisher gave, even when the rest of
        // the message did not read (an unknown type, a foreign partnership).
        let id = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        assert_eq!(i > 0, id.is_some(), "rejection {seq}");
        assert_eq!(header(message, "Rotation-Event-Id"), id.as_deref());
        assert_eq!(
            message.payload.as_ref(),
            body.as_slice(),
            "rejection {seq} keeps the message as received"
        );
    }
    // Nothing is left unacknowledged: poison does not block the consumer.
    let consumer = ingest_consumer(&js).await;
    eventually("every message acked", Duration::from_secs(30), || async {
        consumer
            .get_info()
            .await
            .is_ok_and(|i| i.num_ack_pending == 0 && i.num_pending == 0)
    })
    .await;
    drop(client);
    serve.terminate();
    assert_eq!(serve.dump().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_partner_service_publishes_cloudevents() {
    let (harness, mut serve, _client, js) = start_ingest().await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nats_publisher.py");
    let output = tokio::process::Command::new(tools::python())
        .arg(&script)
        .args([
            "--url",
            &harness.nats.url(),
            "--partnership",
            "stoke",
            "--people",
            "50",
        ])
        .output()
        .await
        .expect("the publisher runs");
    assert!(
        output.status.success(),
        "the publisher failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let published: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        published.len(),
        101,
        "a partnership and 50 jobseekers twice"
    );
    eventually(
        "the partner's events on ROTATION_LEDGER",
        Duration::from_secs(60),
        || async { stream_len(&js, "ROTATION_LEDGER").await == published.len() as u64 },
    )
    .await;
    serve.terminate();
    let log = serve.dump();
    assert_eq!(
        logged_ids(&log),
        published,
        "committed in the order published, binary and structured alike"
    );
    assert_stream_is_the_log(&js, &log).await;
}

/// Runs the NATS side in-process on a ledger until `stop` is cancelled.
fn run_in_process(
    ledger: &Ledger,
    url: &str,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let ledger = ledger.clone();
    let stop = stop.clone();
    let options = NatsOptions::for_url(url);
    tokio::spawn(async move {
        rotation_ledger::nats::run(ledger, options, stop)
            .await
            .expect("the NATS side runs");
    })
}

async fn submit_all(ledger: &Ledger, events: &[Value]) {
    let submissions = events
        .iter()
        .map(|e| {
            Submission::from_json(
                e.to_string().into_bytes(),
                "test",
                rotation_ledger::auth::Caller::operator(),
            )
        })
        .collect();
    let outcomes = ledger
        .submit(submissions)
        .await
        .expect("the ledger answers");
    assert!(outcomes.iter().all(|o| !o.is_rejected()), "{outcomes:?}");
}

/// Writes the outbox cursor back to 0, as if it had never been written.
fn forget_outbox_cursor(ledger: &Ledger) {
    ledger
        .save_checkpoint("nats-outbox", &0u64.to_be_bytes(), true)
        .expect("the cursor is written and flushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_behind_the_stream_past_the_dedup_window_skips_ahead() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    // A stream whose dedup window is far shorter than the ledger's, so that
    // only reconciliation can keep re-published events out.
    js.create_stream(stream::Config {
        name: "ROTATION_LEDGER".into(),
        subjects: vec!["rotation.ledger.>".into()],
        duplicate_window: Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .expect("the stream is created");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("the ledger opens");
    let events = volume(100);
    submit_all(&ledger, &events[..101]).await;

    let stop = CancellationToken::new();
    let task = run_in_process(&ledger, &nats.url(), &stop);
    eventually(
        "the first events published",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_LEDGER").await == 101 },
    )
    .await;
    stop.cancel();
    task.await.expect("the NATS side stops");

    forget_outbox_cursor(&ledger);
    tokio::time::sleep(Duration::from_secs(1)).await;
    submit_all(&ledger, &events[101..]).await;
    let stop = CancellationToken::new();
    let task = run_in_process(&ledger, &nats.url(), &stop);
    eventually("the rest published", Duration::from_secs(30), || async {
        stream_len(&js, "ROTATION_LEDGER").await >= events.len() as u64
    })
    .await;
    // Time for any re-publication to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    task.await.expect("the NATS side stops");
    let log: Vec<String> = ledger
        .events_json(0)
        .map(|row| String::from_utf8(row.expect("a row").1.to_vec()).expect("UTF-8"))
        .collect();
    assert_stream_is_the_log(&js, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_republishes_the_whole_log_into_a_recreated_stream() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let nats = NatsServer::start();
    let (_client, js) = connect(&nats.url()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("the ledger opens");
    let events = volume(50);
    submit_all(&ledger, &events).await;

    let stop = CancellationToken::new();
    let task = run_in_process(&ledger, &nats.url(), &stop);
    eventually("the log published", Duration::from_secs(30), || async {
        stream_len(&js, "ROTATION_LEDGER").await == events.len() as u64
    })
    .await;
    stop.cancel();
    task.await.expect("the NATS side stops");

    js.delete_stream("ROTATION_LEDGER")
        .await
        .expect("the stream is deleted");
    let stop = CancellationToken::new();
    let task = run_in_process(&ledger, &nats.url(), &stop);
    eventually(
        "the log published again",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_LEDGER").await == events.len() as u64 },
    )
    .await;
    stop.cancel();
    task.await.expect("the NATS side stops");
    let log: Vec<String> = ledger
        .events_json(0)
        .map(|row| String::from_utf8(row.expect("a row").1.to_vec()).expect("UTF-8"))
        .collect();
    assert_stream_is_the_log(&js, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_nats_ingest_measures_on_streams_of_its_own_and_removes_them() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let measured = rotation_ledger::bench::nats::ingest(&nats.url(), 2_000, dir.path())
        .await
        .expect("the figure is measured");
    assert_eq!(measured.events, 2_000);
    let runs = |took: &[Duration]| took.iter().filter(|t| **t > Duration::ZERO).count();
    assert_eq!(
        runs(&measured.took),
        rotation_ledger::bench::nats::ROUNDS,
        "the ledger ran every round: {measured:?}"
    );
    assert_eq!(
        runs(&measured.baseline_took),
        rotation_ledger::bench::nats::ROUNDS + 1,
        "the baseline ran before the first round and after each: {measured:?}"
    );
    assert_eq!(
        measured.lag_p99_each.len(),
        rotation_ledger::bench::nats::LAG_ROUNDS,
        "{measured:?}"
    );
    assert!(measured.per_s() > 0.0 && measured.baseline_per_s() > 0.0);
    assert!(measured.lag_p99 < Duration::from_secs(10), "{measured:?}");
    let (_client, js) = connect(&nats.url()).await;
    let left: Vec<String> = js
        .stream_names()
        .filter_map(|n| async { n.ok() })
        .collect()
        .await;
    assert!(
        left.is_empty(),
        "the bench leaves no streams behind: {left:?}"
    );
}

/// Contract section 4: a re-publication of an id with other content is
/// never swallowed by JetStream's deduplication, however soon it is sent:
/// an existing `ROTATION_IN` with the old two-minute window loses it when
/// the ledger starts, and a conflict sent at once is rejected, kept and
/// published, while a copy with the same content is only a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_republication_reaches_the_ledger_and_is_rejected() {
    let (harness, mut serve, js, events) =
        ingest_through_an_existing_rotation_in(jetstream::stream::Config {
            name: "ROTATION_IN".into(),
            subjects: vec!["rotation.in.>".into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await;
    let mut stream = js.get_stream("ROTATION_IN").await.expect("ROTATION_IN");
    let config = stream.info().await.expect("stream info").config.clone();
    assert_eq!(config.duplicate_window, Duration::ZERO, "no window at all");
    let sources: Vec<String> = config
        .sources
        .unwrap_or_default()
        .into_iter()
        .map(|source| source.name)
        .collect();
    assert_eq!(sources, ["ROTATION_IN_ANCHOR"]);

    let (client, _) = connect(&harness.nats.url()).await;
    let mut receipts = client
        .subscribe("rotation.receipts.stoke")
        .await
        .expect("a receipts subscription");
    client.flush().await.expect("the subscription is in place");
    // A new event, then at once its correction and a plain copy, all under
    // the same id: well within any window JetStream could keep.
    // Another mentoring session of a registered jobseeker, under a new id.
    let id = uuid::Uuid::new_v4().to_string();
    let original = support::with(events[2].clone(), "/id", Value::from(id.clone()));
    let corrected = support::with(
        original.clone(),
        "/source",
        Value::from("urn:service:corrected"),
    );
    let started = std::time::Instant::now();
    for body in [&original, &corrected, &original] {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let ack = js
            .publish_with_headers("rotation.in.stoke", headers, body.to_string().into())
            .await
            .expect("sent")
            .await
            .expect("stored");
        assert!(!ack.duplicate, "JetStream swallowed a re-publication");
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "the three were sent within the smallest window: {:?}",
        started.elapsed()
    );
    let mut answers = Vec::new();
    while answers.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(30), receipts.next())
            .await
            .expect("a receipt for every message")
            .expect("the subscription lives");
        let receipt: Value = serde_json::from_slice(&message.payload).expect("a JSON receipt");
        assert_eq!(receipt["id"], id.as_str(), "{receipt}");
        answers.push((
            receipt["status"].as_str().unwrap_or_default().to_owned(),
            receipt["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    assert_eq!(
        answers,
        vec![
            ("accepted".to_owned(), String::new()),
            ("rejected".to_owned(), "duplicate_id_conflict".to_owned()),
            ("duplicate".to_owned(), String::new()),
        ]
    );
    eventually(
        "the conflict on ROTATION_REJECTED",
        Duration::from_secs(30),
        || async { stream_len(&js, "ROTATION_REJECTED").await == 1 },
    )
    .await;
    let published = read_stream(&js, "ROTATION_REJECTED").await;
    let rejection = &published[0].1;
    assert_eq!(
        header(rejection, "Rotation-Error-Code"),
        Some("duplicate_id_conflict")
    );
    assert_eq!(header(rejection, "Rotation-Event-Id"), Some(id.as_str()));
    serve.terminate();

    let listed = Command::new(support::binary())
        .args(["rejections", "--data"])
        .arg(harness.dir())
        .output()
        .expect("rejections runs");
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 1, "{listed}");
    assert!(
        lines[0].starts_with(&format!("{id} duplicate_id_conflict ")),
        "{listed}"
    );

    let mut expected = events;
    expected.push(original);
    assert_log_holds_exactly(&serve.dump(), &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_checkpoint_is_published_for_witnesses() {
    let (harness, _serve, _client, js) = start_ingest().await;
    eventually("the first checkpoint", Duration::from_secs(20), || async {
        stream_len(&js, "ROTATION_CHECKPOINTS").await >= 1
    })
    .await;
    let events = volume(20);
    publish(&js, "stoke", &events).await;
    let size = events.len().to_string();
    eventually(
        "the checkpoint of the new head",
        Duration::from_secs(30),
        || {
            let js = js.clone();
            let size = size.clone();
            async move {
                read_stream(&js, "ROTATION_CHECKPOINTS")
                    .await
                    .iter()
                    .any(|(_, m)| String::from_utf8_lossy(&m.payload).lines().nth(1) == Some(&size))
            }
        },
    )
    .await;
    let info = js
        .get_stream("ROTATION_CHECKPOINTS")
        .await
        .expect("the stream")
        .info()
        .await
        .expect("its info")
        .config
        .clone();
    assert_eq!(info.retention, jetstream::stream::RetentionPolicy::Limits);
    assert_eq!(info.subjects, vec!["rotation.checkpoints".to_owned()]);
    // The running server holds the store; its key file is read directly.
    let verifier = rotation_ledger::checkpoint::keys::load(
        &harness
            .dir()
            .join(rotation_ledger::checkpoint::DEFAULT_KEY_FILE),
    )
    .expect("the ledger's key")
    .verifier();
    for (_, message) in read_stream(&js, "ROTATION_CHECKPOINTS").await {
        verifier
            .open_checkpoint(&String::from_utf8_lossy(&message.payload))
            .expect("every published checkpoint is signed by the ledger's key");
    }
}

/// A store lost after the ledger published its log to `ROTATION_LEDGER`
/// is rebuilt from the stream: every event at its position with its hash,
/// `verify` ok, the same head; and `restore` refuses a store that holds
/// events already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_rebuilds_a_deleted_store_from_rotation_ledger() {
    let (harness, mut serve, _client, js) = start_ingest().await;
    let events = volume(150);
    publish(&js, "stoke", &events).await;
    assert_all_committed_and_published_without_stopping(&js, &events).await;
    serve.terminate();
    let log = serve.dump();
    let verified = |data: &Path| {
        let out = Command::new(support::binary())
            .args(["verify", "--json", "--data"])
            .arg(data)
            .output()
            .expect("verify runs");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<Value>(&out.stdout).expect("a JSON verdict")
    };
    let before = verified(&harness.dir());

    std::fs::remove_dir_all(harness.dir()).expect("the store is deleted");
    let restore = |data: &Path| {
        Command::new(support::binary())
            .args(["restore", "--from-nats", &harness.nats.url(), "--data"])
            .arg(data)
            .output()
            .expect("restore runs")
    };
    let out = restore(&harness.dir());
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("head position {}", log.len())),
        "{out:?}"
    );
    let after = verified(&harness.dir());
    assert_eq!(after["ok"], json!(true), "{after}");
    assert_eq!(after["head_position"], before["head_position"]);
    assert_eq!(after["head_hash"], before["head_hash"]);
    assert_eq!(dump(&harness.dir()), log, "every event as it was stored");

    let out = restore(&harness.dir());
    assert!(!out.status.success(), "restore wrote into a full store");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a ledger"),
        "{out:?}"
    );
}

/// Waits until every event is on ROTATION_LEDGER.
async fn assert_all_committed_and_published_without_stopping(
    js: &jetstream::Context,
    events: &[Value],
) {
    eventually(
        "the whole log on ROTATION_LEDGER",
        Duration::from_secs(120),
        || async { stream_len(js, "ROTATION_LEDGER").await >= events.len() as u64 },
    )
    .await;
}
