//! Ingest: the durable pull consumer on `ROTATION_IN`, the
//! `rotation.append` responder, and the receipts both publish.
//!
//! The consumer runs in two stages joined by a short queue. The reader
//! takes every message ready (up to [`BATCH`]) and turns the lot into
//! [`Submission`]s on a blocking thread; the committer hands each lot to
//! [`Ledger::submit`] as one `Vec`, so that it shares one flush, and only
//! when `submit` has returned (every message committed or durably
//! rejected) publishes the receipts and acknowledges the messages. Up to
//! [`PIPELINE`] lots are inside the ledger at once, so that deciding one
//! overlaps flushing the one before; they enter the ledger in the order
//! they were read, which keeps a publisher's events in order.
//!
//! A lot is acknowledged with one ack, of its last message: the consumer
//! acks all (`AckPolicy::All`), and lots are answered in the order read, so
//! that ack covers the lot and every one before it. An ack for every
//! message cost JetStream about a quarter of its work for the ledger
//! (`bench`'s `nats_ingest`). Since `ROTATION_IN` keeps
//! its messages (limits retention), the ledger purges from it, about once
//! a second, everything up to the last message it has answered. A
//! work-queue `ROTATION_IN`, made by an operator or by an earlier version,
//! is used as it is: a work queue admits only explicit acks, so then every
//! message is acked, and JetStream removes it itself.
//!
//! A message is never acknowledged before the ledger answered it. When the
//! ledger cannot store (its writer stopped after a storage failure), the
//! messages are negatively acknowledged with a delay, so JetStream
//! redelivers them later. Messages a session fetched and never answered (a
//! crash, a broken connection) are delivered again, before anything newer,
//! when the next session starts (see [`in_order`]). Redelivered events are
//! answered `duplicate`, so redelivery never commits twice.
//!
//! Each inbound subject names the publisher's partnership
//! (`rotation.in.<partnership>`): the submission is made as a publisher for
//! that partnership only, so an event naming another one is `forbidden`,
//! and the receipts go back to `rotation.receipts.<partnership>` of the
//! subject, where that publisher listens.
//!
//! CloudEvents in binary mode (attributes in `ce-` headers, the data as the
//! body) are turned into structured JSON first; that JSON is what the
//! ledger sees, and what a rejection keeps.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Names};
use crate::auth::{Caller, Role, Scope};
use crate::ledger::{Ledger, LedgerError, Outcome, Receipt, Submission};

/// The durable consumer's name on `ROTATION_IN`.
pub(crate) const DURABLE: &str = "rotation-ledger";

/// The most messages one lot holds, and the size of each pull request.
pub(crate) const BATCH: usize = 1_000;

/// How many lots may be inside the ledger at once.
const PIPELINE: usize = 3;

/// How many unacknowledged messages JetStream lets the consumer hold:
/// several lots, so that the next ones are fetched while the ledger works.
const MAX_ACK_PENDING: i64 = 20_000;

/// How long JetStream waits for an ack before redelivering. A lot is
/// answered within milliseconds when the ledger is healthy, so this only
/// matters if the ledger stalls; after a crash, the next session gets back
/// what was unanswered at once (see [`in_order`]).
const ACK_WAIT: Duration = Duration::from_secs(15);

/// How often the ledger purges answered messages from `ROTATION_IN` at
/// most.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a message refused for a storage failure waits before JetStream
/// offers it again.
const NAK_DELAY: Duration = Duration::from_secs(5);

/// How long the `rotation.append` responder keeps answering requests that
/// were already on their way when shutdown began.
const APPEND_DRAIN: Duration = Duration::from_secs(1);

/// The queue group of the `rotation.append` responders.
const APPEND_GROUP: &str = "rotation-ledger";

/// Why an ingest session ended.
#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error("cannot set up {what}: {message}")]
    Setup { what: &'static str, message: String },
    #[error("reading messages failed: {0}")]
    Messages(#[from] pull::MessagesError),
    #[error("the message stream ended")]
    Ended,
    #[error("the connection was interrupted; starting over")]
    Interrupted,
    #[error("the ledger cannot store: {0}")]
    Ledger(#[from] LedgerError),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One lot: the submissions, and for each the way to answer its message.
struct Lot {
    submissions: Vec<Submission>,
    inbound: Vec<Inbound>,
    /// The stream sequence of the lot's last message.
    last_sequence: Option<u64>,
}

/// How the consumer acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acking {
    /// One ack, of each lot's last message (`AckPolicy::All`).
    LastOfLot,
    /// Every message (`AckPolicy::Explicit`, as a work queue demands).
    EachMessage,
}

impl Acking {
    /// How a consumer of `policy` acknowledges.
    pub(crate) fn of(policy: consumer::AckPolicy) -> Self {
        match policy {
            consumer::AckPolicy::All => Self::LastOfLot,
            _ => Self::EachMessage,
        }
    }

    /// Whether message `index` of a lot of `len` messages is acked.
    pub(crate) fn acks(self, index: usize, len: usize) -> bool {
        self == Self::EachMessage || index + 1 == len
    }
}

struct Inbound {
    acker: jetstream::message::Acker,
    /// Where the receipts go: those of the partnership the subject names.
    receipts: async_nats::Subject,
}

/// Consumes `ROTATION_IN` until `shutdown`, starting over after errors.
///
/// A session also ends when the connection was interrupted: messages may
/// have been lost in transit then, and only a new session (see
/// [`in_order`]) gets them back in order.
pub(super) async fn consume(
    ledger: Ledger,
    js: jetstream::Context,
    names: Arc<Names>,
    mut interrupted: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        interrupted.mark_unchanged();
        let session = consume_session(
            &ledger,
            &js,
            &names,
            &mut interrupted,
            &shutdown,
            &mut backoff,
        );
        match session.await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "NATS ingest interrupted; resuming");
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        }
    }
}

/// The ack policy the consumer gets on a stream of `retention`: acks of
/// whole lots, unless a work queue demands an ack of every message.
fn ack_policy(retention: jetstream::stream::RetentionPolicy) -> consumer::AckPolicy {
    match retention {
        jetstream::stream::RetentionPolicy::WorkQueue => consumer::AckPolicy::Explicit,
        _ => consumer::AckPolicy::All,
    }
}

/// The durable pull consumer's configuration, on a stream of `retention`.
pub(crate) fn consumer_config(
    names: &Names,
    retention: jetstream::stream::RetentionPolicy,
) -> pull::Config {
    pull::Config {
        durable_name: Some(DURABLE.to_owned()),
        description: Some("The rotation ledger's ingest".into()),
        filter_subject: names.in_subjects(),
        ack_policy: ack_policy(retention),
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

/// The durable consumer, made to deliver every unacknowledged message in
/// stream order.
///
/// Messages delivered to an earlier session (a ledger that crashed, or a
/// connection that broke) and never acknowledged would come back only after
/// the ack wait, behind newer ones: a jobseeker's mentoring before the
/// registration it depends on, say, rejected for it. So when the consumer
/// holds such messages, it is made again to start right after its ack
/// floor; messages acknowledged beyond the floor come again too, and are
/// answered `duplicate`.
async fn in_order(
    stream: &jetstream::stream::Stream,
    names: &Names,
    client: async_nats::Client,
) -> Result<consumer::PullConsumer, Box<dyn std::error::Error + Send + Sync>> {
    let config = consumer_config(names, stream.cached_info().config.retention);
    let Ok(existing) = stream.get_consumer::<pull::Config>(DURABLE).await else {
        return Ok(stream.get_or_create_consumer(DURABLE, config).await?);
    };
    // Acks of the last session still on their way count as acknowledged.
    client.flush().await?;
    let info = existing.get_info().await?;
    if info.num_ack_pending == 0 {
        return Ok(existing);
    }
    let start_sequence = info.ack_floor.stream_sequence + 1;
    tracing::info!(
        unacknowledged = info.num_ack_pending,
        from = start_sequence,
        "NATS: redelivering what an earlier session did not acknowledge, in order"
    );
    stream.delete_consumer(DURABLE).await?;
    let config = pull::Config {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence },
        ..config
    };
    Ok(stream.create_consumer(config).await?)
}

async fn consume_session(
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Arc<Names>,
    interrupted: &mut watch::Receiver<u64>,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), IngestError> {
    let setup = |what: &'static str| {
        move |e: &dyn std::fmt::Display| IngestError::Setup {
            what,
            message: e.to_string(),
        }
    };
    let mut stream = js
        .get_or_create_stream(names.in_config())
        .await
        .map_err(|e| setup("the inbound stream")(&e))?;
    // The inbound stream goes without deduplication where the server
    // allows, and with the smallest window elsewhere; one made by an
    // earlier version (or an operator) is brought to that, keeping the
    // rest of its configuration.
    let without_window = super::inbound::can_go_without_window(&js.client().server_info().version);
    if without_window {
        js.get_or_create_stream(names.in_anchor_config())
            .await
            .map_err(|e| setup("the inbound stream's anchor")(&e))?;
    }
    if let Some(config) = names.inbound_update(stream.cached_info().config.clone(), without_window)
    {
        tracing::info!(
            stream = %config.name,
            from = ?stream.cached_info().config.duplicate_window,
            to = ?config.duplicate_window,
            "changing the inbound stream's duplicate window: the ledger's idempotency is permanent"
        );
        js.update_stream(config)
            .await
            .map_err(|e| setup("the inbound stream's duplicate window")(&e))?;
        stream = js
            .get_stream(names.in_stream())
            .await
            .map_err(|e| setup("the inbound stream")(&e))?;
    }
    if !without_window {
        tracing::warn!(
            version = %js.client().server_info().version,
            "nats-server before 2.14 cannot keep ROTATION_IN without deduplication: \
             a re-publication within 100 ms of its id is acknowledged as a duplicate \
             and never reaches the ledger"
        );
    }
    let consumer = in_order(&stream, names, js.client())
        .await
        .map_err(|e| setup("the durable consumer")(&e))?;
    // An existing consumer acks as it was made to, whatever this version
    // would make.
    let acking = Acking::of(consumer.cached_info().config.ack_policy);
    let purges =
        stream.cached_info().config.retention == jetstream::stream::RetentionPolicy::Limits;
    // A pull must be able to carry the largest message the server admits,
    // or such a message would stall the consumer for ever.
    let max_bytes = (16 << 20).max(2 * js.client().server_info().max_payload);
    let messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .max_bytes_per_batch(max_bytes)
        .expires(Duration::from_secs(30))
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| setup("the pull")(&e))?;
    backoff.reset();

    let (lots, queued) = mpsc::channel::<Lot>(PIPELINE);
    let (answered, answered_through) = watch::channel(0);
    let reader = read(messages, lots, Arc::clone(names), interrupted, shutdown);
    let committer = commit(ledger, js.client(), queued, acking, answered);
    // The purger never ends the session: it stops with the other two.
    let purger = async {
        if purges {
            purge(&stream, names, answered_through).await;
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    let (read, commit) = tokio::select! {
        both = async { tokio::join!(reader, committer) } => both,
        never = purger => match never {},
    };
    commit?;
    read
}

/// Purges `ROTATION_IN` of the messages the ledger has answered, at most
/// every [`PURGE_INTERVAL`], until the committer stops. Everything up to
/// the last answered message is committed or durably rejected, whether or
/// not its ack reached JetStream. When an operator gave the stream other
/// subjects (or sources) too, the purge is filtered to the consumer's, so theirs stay;
/// otherwise it is not, as JetStream then drops whole blocks instead of
/// looking at each message. A purge that fails is tried again with the
/// next. Returns when the committer has stopped.
async fn purge(
    stream: &jetstream::stream::Stream,
    names: &Names,
    mut answered_through: watch::Receiver<u64>,
) {
    let ours = names.in_subjects();
    let config = &stream.cached_info().config;
    // The anchor brings nothing but `rotation.in.>`; another source may.
    let anchor = names.in_anchor_stream();
    let only_ours = config.subjects == [ours.as_str()]
        && config.sources.iter().flatten().all(|s| s.name == anchor);
    let filter = (!only_ours).then_some(ours);
    let mut purged = 0;
    while answered_through.changed().await.is_ok() {
        let through = *answered_through.borrow_and_update();
        if through <= purged {
            continue;
        }
        let request = stream.purge().sequence(through + 1);
        let request = match &filter {
            Some(filter) => request.filter(filter),
            None => request,
        };
        match request.await {
            Ok(_) => purged = through,
            Err(error) => tracing::debug!(%error, "NATS: cannot purge answered messages"),
        }
        tokio::time::sleep(PURGE_INTERVAL).await;
    }
}

/// The first stage: fetch, parse, queue. Stops fetching at shutdown.
async fn read(
    messages: pull::Stream,
    lots: mpsc::Sender<Lot>,
    names: Arc<Names>,
    interrupted: &mut watch::Receiver<u64>,
    shutdown: &CancellationToken,
) -> Result<(), IngestError> {
    let mut chunks = messages.ready_chunks(BATCH);
    loop {
        let chunk = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            _ = interrupted.changed() => return Err(IngestError::Interrupted),
            chunk = chunks.next() => chunk,
        };
        let Some(chunk) = chunk else {
            return Err(IngestError::Ended);
        };
        let mut received = Vec::with_capacity(chunk.len());
        let mut failure = None;
        for item in chunk {
            match item {
                Ok(message) => received.push(message),
                Err(error) => failure = Some(error),
            }
        }
        if !received.is_empty() {
            let names = Arc::clone(&names);
            let lot = tokio::task::spawn_blocking(move || prepare(&names, received)).await?;
            if lots.send(lot).await.is_err() {
                // The committer stopped on a ledger failure; it says why.
                return Ok(());
            }
        }
        if let Some(error) = failure {
            return Err(error.into());
        }
    }
}

/// What an inbound subject (`rotation.in.<partnership>`) implies.
struct Publisher {
    subject: async_nats::Subject,
    partnership: String,
    /// A publisher for that partnership only.
    caller: Caller,
    /// `nats:<subject>`, for the rejection log.
    origin: String,
    /// Where its receipts go.
    receipts: async_nats::Subject,
}

impl Publisher {
    fn of(names: &Names, subject: &async_nats::Subject) -> Self {
        let partnership = names.partnership_of(subject.as_str());
        Self {
            subject: subject.clone(),
            partnership: partnership.to_owned(),
            caller: Caller::publisher_for(partnership),
            origin: format!("nats:{subject}"),
            receipts: names.receipts(partnership).into(),
        }
    }
}

/// Turns messages into submissions: the parsing happens here, off the
/// ledger's writer and off the async threads.
fn prepare(names: &Names, messages: Vec<jetstream::Message>) -> Lot {
    let mut submissions = Vec::with_capacity(messages.len());
    let mut inbound = Vec::with_capacity(messages.len());
    let last_sequence = messages
        .last()
        .and_then(|message| message.info().ok())
        .map(|info| info.stream_sequence);
    // A lot usually comes from one subject: what it implies is made once.
    let mut last: Option<Publisher> = None;
    for message in messages {
        let (message, acker) = message.split();
        let publisher = match &last {
            Some(known) if known.subject == message.subject => known,
            _ => last.insert(Publisher::of(names, &message.subject)),
        };
        let body = structured(&message);
        submissions.push(
            Submission::from_json(body, publisher.origin.clone(), publisher.caller.clone())
                .with_partnership_hint(publisher.partnership.clone()),
        );
        inbound.push(Inbound {
            acker,
            receipts: publisher.receipts.clone(),
        });
    }
    Lot {
        submissions,
        inbound,
        last_sequence,
    }
}

/// A lot inside the ledger, waiting for its answer.
struct Pending {
    task: JoinHandle<Result<Vec<Outcome>, LedgerError>>,
    inbound: Vec<Inbound>,
    /// The stream sequence of the lot's last message.
    last_sequence: Option<u64>,
}

/// The second stage: submit lots in order, with up to [`PIPELINE`] inside
/// the ledger, and answer each when the ledger has. `answered` follows the
/// stream sequence of the last message answered.
async fn commit(
    ledger: &Ledger,
    client: async_nats::Client,
    mut lots: mpsc::Receiver<Lot>,
    acking: Acking,
    answered: watch::Sender<u64>,
) -> Result<(), IngestError> {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut open = true;
    let mut failure = None;
    loop {
        if !open && pending.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            done = async {
                match pending.front_mut() {
                    Some(lot) => (&mut lot.task).await,
                    None => std::future::pending().await,
                }
            }, if !pending.is_empty() => {
                let Some(Pending { inbound, last_sequence, .. }) = pending.pop_front() else { continue };
                let result = done.map_err(IngestError::from).and_then(|r| r.map_err(IngestError::from));
                match result {
                    Ok(outcomes) => {
                        answer(&client, inbound, outcomes, acking).await;
                        if let Some(sequence) = last_sequence {
                            answered.send_replace(sequence);
                        }
                    }
                    Err(error) => {
                        // The ledger stops at its first storage failure, so
                        // no lot behind this one commits either: giving
                        // them all back keeps the order.
                        refuse(inbound).await;
                        if failure.is_none() {
                            failure = Some(error);
                        }
                        // Take no more lots: the queue closes, the reader
                        // stops, and the session starts over after a pause.
                        lots.close();
                    }
                }
            }
            lot = lots.recv(), if open && pending.len() < PIPELINE => match lot {
                // After a failure, lots still queued go back unsubmitted.
                Some(lot) if failure.is_some() => refuse(lot.inbound).await,
                Some(lot) => pending.push_back(Pending {
                    task: start(ledger, lot.submissions).await,
                    inbound: lot.inbound,
                    last_sequence: lot.last_sequence,
                }),
                None => open = false,
            },
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Hands submissions to the ledger now and lets them finish on a task.
///
/// The submission is polled once here, before anything submitted later
/// exists, and that one poll queues it at the ledger: either its request
/// enters the ledger's queue, or (the queue being full) it waits for room
/// in line, and tokio's bounded queues admit waiting senders in order. The
/// poll runs unconstrained by tokio's cooperative budget, which could
/// otherwise make it return before it has queued anything. So lots enter
/// the ledger in the order read, although several wait for their flush at
/// once.
async fn start(
    ledger: &Ledger,
    submissions: Vec<Submission>,
) -> JoinHandle<Result<Vec<Outcome>, LedgerError>> {
    let ledger = ledger.clone();
    let mut submit = Box::pin(async move { ledger.submit(submissions).await });
    let first = tokio::task::unconstrained(submit.as_mut());
    match futures::poll!(first) {
        std::task::Poll::Ready(result) => tokio::spawn(async move { result }),
        std::task::Poll::Pending => tokio::spawn(submit),
    }
}

/// Publishes the receipts of a lot the ledger answered, then acks it: its
/// last message, or each, as `acking` says.
async fn answer(
    client: &async_nats::Client,
    inbound: Vec<Inbound>,
    outcomes: Vec<Outcome>,
    acking: Acking,
) {
    let len = inbound.len();
    for (index, (inbound, outcome)) in inbound.into_iter().zip(outcomes).enumerate() {
        publish_receipts(client, &inbound.receipts, &outcome.receipts).await;
        if !acking.acks(index, len) {
            continue;
        }
        if let Err(error) = inbound.acker.ack().await {
            // Redelivery follows, answered `duplicate`: nothing is lost.
            tracing::warn!(%error, "NATS: cannot ack a committed message");
        }
    }
}

/// Gives a lot back to JetStream for later redelivery.
async fn refuse(inbound: Vec<Inbound>) {
    for inbound in inbound {
        if let Err(error) = inbound.acker.ack_with(AckKind::Nak(Some(NAK_DELAY))).await {
            tracing::debug!(%error, "NATS: cannot nak; the ack wait redelivers it");
        }
    }
}

async fn publish_receipts(
    client: &async_nats::Client,
    subject: &async_nats::Subject,
    receipts: &[Receipt],
) {
    for receipt in receipts {
        match serde_json::to_vec(receipt) {
            Ok(body) => {
                if let Err(error) = client.publish(subject.clone(), body.into()).await {
                    tracing::debug!(%error, "NATS: cannot publish a receipt");
                }
            }
            Err(error) => tracing::error!(%error, "a receipt does not serialise"),
        }
    }
}

/// The body of a message as a structured-mode CloudEvent: the payload as
/// is, unless the headers carry the event in binary mode.
fn structured(message: &async_nats::Message) -> Vec<u8> {
    let Some(headers) = &message.headers else {
        return message.payload.to_vec();
    };
    let mut attributes = Map::new();
    let mut content_type = None;
    for (name, values) in headers.iter() {
        let Some(value) = values.last() else { continue };
        let name = AsRef::<str>::as_ref(name).to_ascii_lowercase();
        if let Some(attribute) = name
            .strip_prefix("ce-")
            .or_else(|| name.strip_prefix("ce_"))
        {
            let value = value.as_str();
            // Header values are text; the contract's one integer extension
            // is turned back into a number.
            let value = match (attribute, value.parse::<u64>()) {
                ("expectedversion", Ok(n)) => Value::from(n),
                _ => Value::from(value),
            };
            attributes.insert(attribute.to_owned(), value);
        } else if name == "content-type" {
            content_type = Some(value.as_str().to_owned());
        }
    }
    if !attributes.contains_key("specversion") {
        return message.payload.to_vec();
    }
    if let Some(content_type) = content_type {
        attributes
            .entry("datacontenttype")
            .or_insert(Value::from(content_type));
    }
    if !message.payload.is_empty() {
        match serde_json::from_slice::<Value>(&message.payload) {
            Ok(data) => {
                attributes.insert("data".into(), data);
            }
            Err(_) => {
                use base64::Engine as _;
                attributes.insert(
                    "data_base64".into(),
                    Value::from(base64::engine::general_purpose::STANDARD.encode(&message.payload)),
                );
            }
        }
    }
    serde_json::to_vec(&Value::Object(attributes)).unwrap_or_else(|_| message.payload.to_vec())
}

/// Answers `rotation.append` requests until `shutdown`, starting over after
/// errors.
pub(super) async fn serve_append(
    ledger: Ledger,
    client: async_nats::Client,
    names: Arc<Names>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        match append_session(&ledger, &client, &names, &shutdown).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "NATS append interrupted; resuming");
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Who asks on `rotation.append`: any partnership's publisher. Who may send
/// there at all is the NATS account's permissions' business.
fn append_caller() -> Caller {
    Caller {
        role: Role::Publisher,
        scope: Scope::All,
    }
}

async fn append_session(
    ledger: &Ledger,
    client: &async_nats::Client,
    names: &Names,
    shutdown: &CancellationToken,
) -> Result<(), IngestError> {
    let subscriber = client
        .queue_subscribe(names.append(), APPEND_GROUP.to_owned())
        .await
        .map_err(|e| IngestError::Setup {
            what: "the append subscription",
            message: e.to_string(),
        })?;
    let mut requests = subscriber.ready_chunks(256);
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        let chunk = match draining {
            None => tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // Stop taking new requests but answer those already
                    // delivered.
                    if let Err(error) = requests.get_mut().drain().await {
                        tracing::debug!(%error, "NATS: cannot drain the append subscription");
                        return Ok(());
                    }
                    draining = Some(tokio::time::Instant::now() + APPEND_DRAIN);
                    continue;
                }
                chunk = requests.next() => chunk,
            },
            Some(until) => match tokio::time::timeout_at(until, requests.next()).await {
                Ok(chunk) => chunk,
                Err(_) => return Ok(()),
            },
        };
        let Some(chunk) = chunk else {
            return if draining.is_some() {
                Ok(())
            } else {
                Err(IngestError::Ended)
            };
        };
        let (submissions, replies): (Vec<Submission>, Vec<_>) = chunk
            .into_iter()
            .map(|message| {
                let body = structured(&message);
                let submission = Submission::from_json(
                    body,
                    format!("nats:{}", message.subject.as_str()),
                    append_caller(),
                );
                (submission, message.reply)
            })
            .unzip();
        match ledger.submit(submissions).await {
            Ok(outcomes) => {
                for (outcome, reply) in outcomes.iter().zip(replies) {
                    if let Some(reply) = reply {
                        respond(client, reply, &append_reply(outcome)).await;
                    }
                    for receipt in &outcome.receipts {
                        let partnership = receipt.partnership.as_deref().unwrap_or("");
                        let subject = names.receipts(partnership).into();
                        publish_receipts(client, &subject, std::slice::from_ref(receipt)).await;
                    }
                }
            }
            Err(error) => {
                let body = json!({"error": {"code": "unavailable", "message": error.to_string()}});
                for reply in replies.into_iter().flatten() {
                    respond(client, reply, &body).await;
                }
                return Err(error.into());
            }
        }
    }
}

/// The reply to one `rotation.append` request: the receipts, and the error
/// that rejected the submission, if one did.
fn append_reply(outcome: &Outcome) -> Value {
    match &outcome.rejection {
        None => json!({"results": outcome.receipts}),
        Some(violation) => json!({"error": violation, "results": outcome.receipts}),
    }
}

async fn respond(client: &async_nats::Client, reply: async_nats::Subject, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    if let Err(error) = client.publish(reply, bytes.into()).await {
        tracing::debug!(%error, "NATS: cannot send a reply");
    }
}
