//! The outboxes: every committed event to `ROTATION_LEDGER` and every
//! rejection to `ROTATION_REJECTED`, in order, each exactly once.
//!
//! An outbox reads what the ledger has made durable after its cursor, up to
//! [`READ_CHUNK`] items at a time, and publishes them with up to [`WINDOW`]
//! unconfirmed at once. Events it follows closely come from the ledger's
//! recent tail in memory ([`Ledger::read_after`]), as the writer made
//! them; only an outbox further behind (after an outage or a restart)
//! reads them back from the store. The outboxes publish on a connection
//! of their own, beside the ingest's. Only the last message of each read
//! asks JetStream for an ack; the others are plain publishes on the same
//! connection. Each message expects its predecessor's stream sequence
//! (below), so the last one is stored only if every one before it was: its
//! ack confirms the whole read, and JetStream sends one ack where it would
//! send hundreds. The cursor moves to the highest position so confirmed
//! (acks are taken in publication order), and is written to the store's
//! checkpoint (`nats-outbox`, `nats-rejections`: a u64, big-endian)
//! every [`PERSIST_EVENTS`] positions or [`PERSIST_INTERVAL`], never per
//! event. The loop wakes on [`Ledger::subscribe`], so an event is on its way
//! to NATS as soon as it is durable.
//!
//! Three mechanisms together keep each stream an exact, in-order copy:
//!
//! - **Deduplication.** Every message carries `Nats-Msg-Id` (the event id,
//!   or the rejection's: `rejection-<seq>`, and `rejection-<node>-<store>-<seq>`
//!   on a group node, see [`rejection_origin`]) and the streams keep ids for
//!   [`DUPLICATE_WINDOW`](super::DUPLICATE_WINDOW). What a crash or an
//!   outage can make the outbox publish twice is what it had published but
//!   not yet recorded in its cursor: at most a window of in-flight publishes
//!   plus [`PERSIST_EVENTS`] or [`PERSIST_INTERVAL`] worth, all sent in the
//!   last seconds before the interruption, hence well inside the window when
//!   the ledger comes back promptly.
//! - **Reconciliation.** Whenever a publishing session starts (at start-up
//!   and after every error), the outbox reads the stream's last message and,
//!   when it is one of this ledger's, continues right after it, whatever its
//!   own cursor says. A cursor behind the stream (a crash between the ack
//!   and the cursor write, however long ago) skips ahead; a cursor ahead of
//!   the stream (a stream that lost its tail) steps back and fills the gap.
//!   This makes the guarantee independent of the deduplication window.
//! - **Expected sequence.** Each publish carries
//!   `Nats-Expected-Last-Sequence`: the stream sequence the previous
//!   position got. JetStream stores a message only right after its
//!   predecessor, so a publish that failed (an outage, a timeout, a plain
//!   publish that JetStream refused without a word) can never be overtaken
//!   by a later one that succeeded: every later one of the session fails
//!   too, the acked one among them, and the session reconciles. A stale
//!   publish that reaches the server late, after a new session re-published
//!   it, is refused. The stream therefore holds a gap-free prefix of the
//!   log at every moment.
//!
//! The outbox assumes it is the only publisher on its stream's subjects.
//! Should another one publish there, reconciliation does not recognise the
//! last message, keeps the cursor, and chains on after the foreign message.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Names, SHUTDOWN_GRACE};
use crate::ledger::Ledger;
use crate::ledger::StoreError;

/// The most publishes one outbox keeps in flight.
pub(super) const WINDOW: usize = 2048;

/// How many items one read from the store takes.
const READ_CHUNK: usize = 512;

/// The cursor is written after this many positions at the latest...
pub(super) const PERSIST_EVENTS: u64 = 4096;

/// ...or after this long, whichever comes first.
pub(super) const PERSIST_INTERVAL: Duration = Duration::from_millis(100);

/// The header naming a rejection's error code.
pub(crate) const ERROR_CODE_HEADER: &str = "Rotation-Error-Code";

/// The header holding a rejection's message.
pub(crate) const ERROR_HEADER: &str = "Rotation-Error";

/// The header naming a rejected submission's event id, whenever its body
/// holds one as a string.
pub(crate) const EVENT_ID_HEADER: &str = "Rotation-Event-Id";

/// The header naming where a rejected submission came from.
pub(crate) const ORIGIN_HEADER: &str = "Rotation-Origin";

/// What an outbox publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feed {
    /// Committed events, by position, to `ROTATION_LEDGER`.
    Events,
    /// Rejections, by sequence number, to `ROTATION_REJECTED`.
    Rejections,
}

/// Why a publishing session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot reach the stream: {0}")]
    Stream(String),
    #[error("publish at {position} failed: {source}")]
    Publish { position: u64, source: PublishError },
    #[error("publish at {position} could not be sent: {source}")]
    Send {
        position: u64,
        source: async_nats::client::PublishError,
    },
    #[error("the stream already held position {0}; reconciling")]
    Resync(u64),
    #[error("the shutdown grace period ended with publishes unanswered")]
    GraceOver,
}

/// One message to publish.
pub(super) struct Item {
    pub(super) position: u64,
    pub(super) subject: String,
    pub(super) headers: HeaderMap,
    pub(super) payload: Bytes,
}

/// What the outbox reads of a message in the stream to tell whether it is
/// the ledger's event at that position.
#[derive(Deserialize)]
struct Routing<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    position: u64,
}

impl Feed {
    fn checkpoint(self) -> &'static str {
        match self {
            Self::Events => "nats-outbox",
            Self::Rejections => "nats-rejections",
        }
    }

    fn config(self, names: &Names) -> stream::Config {
        match self {
            Self::Events => names.ledger_config(),
            Self::Rejections => names.rejected_config(),
        }
    }

    /// The last durable position of this feed.
    fn high(self, ledger: &Ledger) -> u64 {
        let durable = ledger.subscribe().borrow().clone();
        match self {
            Self::Events => durable.head.position,
            Self::Rejections => durable.next_rejection.saturating_sub(1),
        }
    }

    /// Up to `limit` durable items after `after`, in order.
    pub(super) fn read(
        self,
        ledger: &Ledger,
        names: &Names,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        match self {
            // The ledger's reader decides between the recent tail in
            // memory and the store.
            Self::Events => Ok(ledger
                .read_after(after, limit)?
                .into_iter()
                .map(|event| {
                    let subject =
                        names.ledger_subject(&event.partnership, event.event_type.noun_verb());
                    let mut id = uuid::Uuid::encode_buffer();
                    let id = event.id.hyphenated().encode_lower(&mut id);
                    message(event.position, subject, id, event.json)
                })
                .collect()),
            Self::Rejections => ledger
                .rejections(after)
                .take(limit)
                .map(|record| {
                    let record = record?;
                    Ok(rejection_item(names, &record))
                })
                .collect(),
        }
    }

    /// The position a message of the stream stands for, when it is one this
    /// ledger published: for events, the id in the message must be the id
    /// of the ledger's event at that position.
    fn position_of(self, ledger: &Ledger, names: &Names, message: &StreamMessage) -> Option<u64> {
        let msg_id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)?
            .as_str()
            .to_owned();
        match self {
            Self::Events => {
                let routing: Routing<'_> = serde_json::from_slice(&message.payload).ok()?;
                if routing.id != msg_id || routing.position > ledger.head().position {
                    return None;
                }
                let ours = ledger.event_json(routing.position).ok()??;
                let ours: Routing<'_> = serde_json::from_slice(&ours).ok()?;
                (ours.id == msg_id).then_some(routing.position)
            }
            Self::Rejections => {
                let seq = names.rejection_seq(&msg_id)?;
                (seq <= self.high(ledger)).then_some(seq)
            }
        }
    }
}

/// The checkpoint holding this store's own name among a group's: random,
/// made once, kept as long as the store.
const STORE_NAME: &str = "nats-rejection-store";

/// What names a group node's rejections in `ROTATION_REJECTED`: its node
/// name and its store's name (made and flushed on first use). Each node
/// numbers its rejections itself, so the number alone would meet another
/// node's, or the same node's from before a rebuild (which starts the
/// numbers again), within the stream's duplicate window and be dropped as
/// a duplicate. A restart of the same store names them as before, so a
/// rejection published again after a crash is still recognised.
pub(super) fn rejection_origin(ledger: &Ledger, node: &str) -> Result<String, StoreError> {
    let store = match ledger.checkpoint(STORE_NAME)? {
        Some(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => {
            let made = format!("{:016x}", rand::random::<u64>());
            ledger.save_checkpoint(STORE_NAME, made.as_bytes(), true)?;
            made
        }
    };
    // A header value is one line; the name's other characters stay, as
    // the store's part already keeps two nodes apart.
    let node: String = node
        .chars()
        .map(|c| if c.is_control() || c == ' ' { '_' } else { c })
        .collect();
    Ok(format!("{node}-{store}"))
}

/// A committed event's message, deduplicated by its id.
fn message(position: u64, subject: String, id: &str, payload: Bytes) -> Item {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    Item {
        position,
        subject,
        headers,
        payload,
    }
}

/// A rejection as a message: the submission as received, with its code and
/// reason in headers.
fn rejection_item(names: &Names, record: &crate::ledger::RejectionRecord) -> Item {
    use base64::Engine as _;
    let payload = match (&record.body, &record.body_base64) {
        (Some(text), _) => Bytes::copy_from_slice(text.as_bytes()),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::copy_from_slice(encoded.as_bytes())),
        (None, None) => Bytes::new(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        names.rejection_id(record.seq),
    );
    headers.insert(ERROR_CODE_HEADER, record.code.as_str());
    headers.insert(ERROR_HEADER, header_text(&record.message));
    headers.insert(ORIGIN_HEADER, header_text(&record.origin));
    if let Some(id) = &record.event_id {
        headers.insert(EVENT_ID_HEADER, header_text(id));
    }
    Item {
        position: record.seq,
        subject: names.rejected_subject(record.partnership.as_deref()),
        headers,
        payload,
    }
}

/// Text fit for a header value: one line, at most 1,000 bytes.
pub(crate) fn header_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 1000 {
        let mut end = 1000;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// Runs one outbox until `drain` is cancelled and the grace period allows
/// no more.
pub(super) async fn run(
    feed: Feed,
    ledger: Ledger,
    js: jetstream::Context,
    names: Arc<Names>,
    drain: CancellationToken,
) {
    let mut cursor = Cursor::load(&ledger, feed.checkpoint());
    let mut backoff = Backoff::new();
    let deadline = Deadline::new(drain);
    loop {
        let result = session(
            feed,
            &ledger,
            &js,
            &names,
            &deadline,
            &mut cursor,
            &mut backoff,
        )
        .await;
        cursor.persist(&ledger);
        let error = match result {
            Ok(()) => break,
            Err(error) => error,
        };
        // A duplicate ack or a refused expected sequence means the stream
        // holds more than this session assumed (a late publish of an earlier
        // session, or another publisher): reconcile again at once.
        let moved = match &error {
            SessionError::Resync(_) => true,
            SessionError::Publish { source, .. } => {
                source.kind() == PublishErrorKind::WrongLastSequence
            }
            _ => false,
        };
        if moved {
            tracing::info!(feed = ?feed, %error, "outbox reconciling with the stream");
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        tracing::warn!(feed = ?feed, %error, cursor = cursor.position, "NATS outbox interrupted; resuming");
        if deadline.token.is_cancelled() || !backoff.wait(&deadline.token).await {
            break;
        }
    }
    let flushing = ledger.clone();
    match tokio::task::spawn_blocking(move || flushing.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "cannot flush the outbox cursor"),
        Err(error) => tracing::error!(%error, "cannot flush the outbox cursor"),
    }
    tracing::info!(feed = ?feed, cursor = cursor.position, "outbox stopped");
}

/// The shutdown signal and the end of the grace period it starts.
struct Deadline {
    token: CancellationToken,
    at: std::sync::OnceLock<Instant>,
}

impl Deadline {
    fn new(token: CancellationToken) -> Self {
        Self {
            token,
            at: std::sync::OnceLock::new(),
        }
    }

    /// The end of the grace period, once shutdown has begun.
    fn at(&self) -> Option<Instant> {
        if self.token.is_cancelled() {
            Some(*self.at.get_or_init(|| Instant::now() + SHUTDOWN_GRACE))
        } else {
            None
        }
    }
}

/// The durable cursor: the last position JetStream acknowledged, and what
/// of it the store holds.
struct Cursor {
    name: &'static str,
    position: u64,
    persisted: u64,
    since: Instant,
}

impl Cursor {
    fn load(ledger: &Ledger, name: &'static str) -> Self {
        let position = match ledger.checkpoint(name) {
            Ok(Some(bytes)) => match <[u8; 8]>::try_from(bytes.as_ref()) {
                Ok(bytes) => u64::from_be_bytes(bytes),
                Err(_) => {
                    tracing::warn!(
                        name,
                        "outbox cursor unreadable; reconciling from the stream"
                    );
                    0
                }
            },
            Ok(None) => 0,
            Err(error) => {
                tracing::warn!(name, %error, "outbox cursor unreadable; reconciling from the stream");
                0
            }
        };
        Self {
            name,
            position,
            persisted: position,
            since: Instant::now(),
        }
    }

    /// Writes the cursor if it moved. Applied, not flushed: the ledger's
    /// next flush (or sled's own, within half a second) makes it durable,
    /// and a lost write only means reconciling from the stream.
    fn persist(&mut self, ledger: &Ledger) {
        self.since = Instant::now();
        if self.position == self.persisted {
            return;
        }
        match ledger.save_checkpoint(self.name, &self.position.to_be_bytes(), false) {
            Ok(()) => self.persisted = self.position,
            Err(error) => {
                tracing::error!(name = self.name, %error, "cannot write the outbox cursor")
            }
        }
    }

    fn due(&self) -> bool {
        self.position != self.persisted
            && (self.position - self.persisted.min(self.position) >= PERSIST_EVENTS
                || self.since.elapsed() >= PERSIST_INTERVAL)
    }
}

/// Where a session starts: the last position the stream holds (or the
/// cursor when it cannot tell) and the stream's last sequence.
async fn reconcile(
    feed: Feed,
    ledger: &Ledger,
    names: &Names,
    stream: &stream::Stream,
    cursor: u64,
) -> Result<(u64, u64), SessionError> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| SessionError::Stream(e.to_string()))?;
    let state = &info.state;
    let last_seq = state.last_sequence;
    if last_seq == 0 {
        if cursor > 0 {
            tracing::info!(feed = ?feed, stream = %info.config.name, cursor, "the stream is new: publishing from the start");
        }
        return Ok((0, 0));
    }
    if state.messages == 0 {
        return Ok((cursor, last_seq));
    }
    let last = match stream.get_raw_message(last_seq).await {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(feed = ?feed, %error, "cannot read the stream's last message; keeping the cursor");
            return Ok((cursor, last_seq));
        }
    };
    match feed.position_of(ledger, names, &last) {
        Some(position) => {
            if position != cursor {
                tracing::info!(feed = ?feed, cursor, stream_holds = position, "outbox cursor reconciled with the stream");
            }
            Ok((position, last_seq))
        }
        None => {
            tracing::warn!(feed = ?feed, stream = %info.config.name, "the stream's last message is not this ledger's; keeping the cursor");
            Ok((cursor, last_seq))
        }
    }
}

/// The ack of a read's last message: its position and the stream's answer.
pub(super) type AckFuture = BoxFuture<'static, (u64, Result<PublishAck, PublishError>)>;

/// Why a burst of publishes stopped.
#[derive(Debug)]
pub(super) enum BurstError {
    Store(StoreError),
    Publish {
        position: u64,
        source: PublishError,
    },
    Send {
        position: u64,
        source: async_nats::client::PublishError,
    },
}

impl From<StoreError> for BurstError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<BurstError> for SessionError {
    fn from(error: BurstError) -> Self {
        match error {
            BurstError::Store(error) => Self::Store(error),
            BurstError::Publish { position, source } => Self::Publish { position, source },
            BurstError::Send { position, source } => Self::Send { position, source },
        }
    }
}

/// Publishes `feed`'s items after `*next` up to `high`, read in chunks of
/// [`READ_CHUNK`] while there is a backlog (one store read per event would
/// cost more than the publish) and fewer than [`WINDOW`] are unconfirmed
/// past `confirmed`. Each message expects `expected(position)` as the
/// stream's last sequence; only a chunk's last asks for an ack, pushed on
/// `inflight`, the others are plain publishes on the same connection.
/// Moves `*next` to the last position sent. The ledger's outboxes and a
/// group's writer publish through it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn publish_burst(
    feed: Feed,
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Names,
    high: u64,
    confirmed: u64,
    next: &mut u64,
    mut expected: impl FnMut(u64) -> u64,
    inflight: &mut FuturesOrdered<AckFuture>,
) -> Result<(), BurstError> {
    loop {
        let unconfirmed = usize::try_from(*next - confirmed).unwrap_or(usize::MAX);
        let room = WINDOW.saturating_sub(unconfirmed);
        let backlog = usize::try_from(high.saturating_sub(*next)).unwrap_or(usize::MAX);
        let take = room.min(READ_CHUNK).min(backlog);
        if take == 0 || take < READ_CHUNK.min(backlog) {
            return Ok(());
        }
        let items = feed.read(ledger, names, *next, take)?;
        let Some(last) = items.last().map(|item| item.position) else {
            return Ok(());
        };
        for item in items {
            let position = item.position;
            let mut headers = item.headers;
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
                async_nats::HeaderValue::from(expected(position)),
            );
            if position == last {
                let publish = PublishMessage::build()
                    .payload(item.payload)
                    .headers(headers);
                let ack = js
                    .send_publish(item.subject, publish)
                    .await
                    .map_err(|source| BurstError::Publish { position, source })?;
                inflight.push_back(Box::pin(async move { (position, ack.await) }));
            } else {
                js.client()
                    .publish_with_headers(item.subject, headers, item.payload)
                    .await
                    .map_err(|source| BurstError::Send { position, source })?;
            }
            *next = position;
        }
    }
}

/// One publishing session: reconcile, then publish until an error or the
/// end of the grace period.
async fn session(
    feed: Feed,
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Names,
    deadline: &Deadline,
    cursor: &mut Cursor,
    backoff: &mut Backoff,
) -> Result<(), SessionError> {
    let stream = js
        .get_or_create_stream(feed.config(names))
        .await
        .map_err(|e| SessionError::Stream(e.to_string()))?;
    let (start, mut last_seq) = reconcile(feed, ledger, names, &stream, cursor.position).await?;
    cursor.position = start;
    let mut next = start;
    let mut inflight: FuturesOrdered<AckFuture> = FuturesOrdered::new();
    let mut durable = ledger.subscribe();
    let mut watching = true;
    let mut tick = tokio::time::interval(PERSIST_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let high = feed.high(ledger);
        publish_burst(
            feed,
            ledger,
            js,
            names,
            high,
            cursor.position,
            &mut next,
            |_| {
                let expected = last_seq;
                last_seq += 1;
                expected
            },
            &mut inflight,
        )
        .await?;
        let until = deadline.at();
        if until.is_some() && next == cursor.position && next >= feed.high(ledger) {
            return Ok(());
        }
        tokio::select! {
            biased;
            Some((position, ack)) = inflight.next(), if !inflight.is_empty() => {
                let ack = ack.map_err(|source| SessionError::Publish { position, source })?;
                cursor.position = position;
                backoff.reset();
                if ack.duplicate {
                    // The stream held it already, so the sequences the
                    // publishes after it expect are off by one.
                    return Err(SessionError::Resync(position));
                }
                if cursor.due() {
                    cursor.persist(ledger);
                }
            }
            changed = durable.changed(), if watching => {
                // A closed ledger stops waking us; the tick still does.
                watching = changed.is_ok();
            }
            _ = tick.tick() => {
                if cursor.due() {
                    cursor.persist(ledger);
                }
            }
            () = deadline.token.cancelled(), if until.is_none() => {}
            () = tokio::time::sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => {
                return Err(SessionError::GraceOver);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Caller;
    use crate::ledger::{LedgerOptions, Submission};
    use crate::nats::group::test_server::NatsServer;

    /// A ledger that has rejected one submission: its rejection 1.
    async fn rejecting(dir: &std::path::Path) -> Ledger {
        let ledger = Ledger::open(dir, LedgerOptions::default()).expect("opens");
        let refused = Submission::from_json(b"not an event".to_vec(), "test", Caller::operator());
        let outcomes = ledger.submit(vec![refused]).await.expect("answered");
        assert!(outcomes[0].rejection.is_some(), "the submission is refused");
        assert_eq!(ledger.rejections(0).count(), 1);
        ledger
    }

    /// Runs the rejection outbox until it has published what is durable.
    async fn publish_rejections(ledger: &Ledger, js: &jetstream::Context, names: &Arc<Names>) {
        let drain = CancellationToken::new();
        drain.cancel();
        let published = run(
            Feed::Rejections,
            ledger.clone(),
            js.clone(),
            Arc::clone(names),
            drain,
        );
        tokio::time::timeout(Duration::from_secs(20), published)
            .await
            .expect("the outbox stops within its grace");
    }

    async fn message_ids(js: &jetstream::Context, names: &Names) -> Vec<String> {
        let stream = js
            .get_stream(names.rejected_stream())
            .await
            .expect("the stream");
        let last = stream
            .get_info()
            .await
            .expect("its state")
            .state
            .last_sequence;
        let mut ids = Vec::new();
        for seq in 1..=last {
            let message = stream.get_raw_message(seq).await.expect("a message");
            let id = message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .expect("a message id");
            ids.push(id.as_str().to_owned());
        }
        ids
    }

    #[tokio::test]
    async fn rejections_of_two_nodes_with_the_same_number_both_reach_the_stream() {
        let server = NatsServer::start();
        let js = jetstream::new(async_nats::connect(server.url()).await.expect("connects"));
        let names = Names::new("rtwo").expect("a valid prefix");
        let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (n1, n2) = (rejecting(dir1.path()).await, rejecting(dir2.path()).await);
        let named = |ledger: &Ledger, node: &str| {
            let origin = rejection_origin(ledger, node).expect("the store's name");
            Arc::new(names.clone().with_rejection_origin(origin))
        };
        let (names1, names2) = (named(&n1, "n1"), named(&n2, "n2"));
        publish_rejections(&n1, &js, &names1).await;
        publish_rejections(&n2, &js, &names2).await;
        let ids = message_ids(&js, &names).await;
        assert_eq!(ids, [names1.rejection_id(1), names2.rejection_id(1)]);
        assert!(ids[0].starts_with("rejection-n1-") && ids[0].ends_with("-1"));
        assert!(ids[1].starts_with("rejection-n2-") && ids[1].ends_with("-1"));

        // n1 restarts having lost its cursor; the stream's last message is
        // n2's, so n1 sends its rejection 1 again, under the same id, and
        // the stream drops the repeat.
        n1.close();
        let n1 = Ledger::open(dir1.path(), LedgerOptions::default()).expect("opens again");
        let again = named(&n1, "n1");
        assert_eq!(again.rejection_id(1), names1.rejection_id(1));
        n1.save_checkpoint("nats-rejections", &0u64.to_be_bytes(), true)
            .expect("the cursor is reset");
        publish_rejections(&n1, &js, &again).await;
        assert_eq!(message_ids(&js, &names).await, ids);
        n1.close();
        n2.close();
    }

    #[test]
    fn a_rejection_id_is_read_back_only_by_the_ledger_that_named_it() {
        let single = Names::new("rotation").expect("a valid prefix");
        let n1 = single.clone().with_rejection_origin("n1-00ff".into());
        let n1b = single.clone().with_rejection_origin("n1-b-00ff".into());
        assert_eq!(single.rejection_id(7), "rejection-7");
        assert_eq!(n1.rejection_id(7), "rejection-n1-00ff-7");
        for (names, id, seq) in [
            (&single, "rejection-7", Some(7)),
            (&single, "rejection-n1-00ff-7", None),
            (&single, "rejection-+7", None),
            (&n1, "rejection-n1-00ff-7", Some(7)),
            (&n1, "rejection-7", None),
            (&n1, "rejection-n1-b-00ff-7", None),
            (&n1b, "rejection-n1-b-00ff-7", Some(7)),
            (&n1b, "rejection-n1-00ff-7", None),
        ] {
            assert_eq!(names.rejection_seq(id), seq, "{id}");
        }
    }
}
