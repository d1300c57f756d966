//! The append path: the one way anything enters the log.
//!
//! HTTP, NATS, `import`, the demo and the benchmarks all hand
//! [`Submission`]s to [`Ledger::submit`]. A single writer thread owns every
//! write: it takes all submissions waiting, checks each (shape, time,
//! permission, idempotency, then the domain rules), stages the accepted
//! events and the rejections in one sled batch, flushes once, and only then
//! answers. Concurrent writers therefore share flushes (group commit), and
//! nothing is acknowledged before it is durable.
//!
//! Readers see only what has been flushed: every read is bounded by the
//! durable head that the writer publishes after each flush.

use foldhash::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rotation_events::{
    CommittedEvent, Envelope, EventData, EventType, LedgerAttributes, Subject, TypedEvent,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::auth::Caller;
use crate::chain::{self, Verification, Verifier};
use crate::ids::IdIndex;
use crate::metrics::AppendMetrics;
use crate::recent::{Recent, RecentEvent, TAIL_BYTES};
use crate::rules::{self, ErrorCode, StateView, StreamState, Violation};
use crate::store::{Commit, Head, IdRecord, Store, StoreError};

/// What a publisher handed in, with where it came from: one event or an
/// all-or-nothing batch.
///
/// It is parsed when it is made, on the caller's thread, so that the single
/// writer spends its time only on what must be serial.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The bytes as received; `None` for events made in-process.
    body: Option<Vec<u8>>,
    /// The envelopes' attributes; their `data` is in `framed` and `typed`.
    envelopes: Vec<Envelope>,
    /// The RFC 8785 form of each envelope, made once here so that the
    /// writer only adds its own attributes.
    framed: Vec<chain::Framed>,
    /// Each envelope's typed data, upcast: read here rather than by the writer.
    typed: Vec<EventData>,
    /// SHA-256 of each envelope's canonical JSON, for idempotency.
    digests: Vec<[u8; 32]>,
    /// Why the bytes are not a well-formed event or batch.
    parse_error: Option<Violation>,
    /// Where it came from, for the rejection log: `http`, `nats:<subject>`,
    /// `import:<file>:<line>`.
    pub origin: String,
    pub caller: Caller,
    /// The partnership the transport names (NATS subjects do), used for
    /// rejections that cannot be parsed far enough to name one.
    pub partnership_hint: Option<String>,
}

impl Submission {
    /// Bytes as received: one CloudEvent or a JSON array of them.
    pub fn from_json(body: Vec<u8>, origin: impl Into<String>, caller: Caller) -> Self {
        let (parsed, parse_error) = parse_body(&body);
        let (envelopes, typed) = parsed.into_iter().unzip();
        Self::new(
            Some(body),
            envelopes,
            typed,
            parse_error,
            origin.into(),
            caller,
        )
    }

    /// Events already parsed in-process (the simulator, the benchmarks).
    pub fn from_events(
        envelopes: Vec<Envelope>,
        origin: impl Into<String>,
        caller: Caller,
    ) -> Self {
        let mut typed = Vec::with_capacity(envelopes.len());
        let mut parse_error = None;
        for envelope in &envelopes {
            match envelope.data() {
                Ok(data) => typed.push(data),
                Err(e) => {
                    parse_error.get_or_insert(Violation::new(ErrorCode::InvalidEvent, e.0));
                }
            }
        }
        Self::new(None, envelopes, typed, parse_error, origin.into(), caller)
    }

    /// `typed`: each envelope's typed data, as far as it reads; a
    /// submission whose data does not read all carries a `parse_error`.
    fn new(
        body: Option<Vec<u8>>,
        mut envelopes: Vec<Envelope>,
        typed: Vec<EventData>,
        parse_error: Option<Violation>,
        origin: String,
        caller: Caller,
    ) -> Self {
        let framed: Vec<chain::Framed> = envelopes
            .iter()
            .map(|e| chain::Framed::new(e, &chain::canonical_data(e)))
            .collect();
        let digests = framed.iter().map(chain::Framed::digest).collect();
        // `data` lives on in `framed` and `typed`; its tree is freed here,
        // on the thread that made it, rather than by the writer.
        for envelope in &mut envelopes {
            envelope.data = serde_json::Value::Null;
        }
        Self {
            body,
            envelopes,
            framed,
            typed,
            digests,
            parse_error,
            origin,
            caller,
            partnership_hint: None,
        }
    }

    pub fn with_partnership_hint(mut self, partnership: impl Into<String>) -> Self {
        self.partnership_hint = Some(partnership.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    Accepted,
    Duplicate,
    Rejected,
}

/// The answer for one event (contract section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: Option<Uuid>,
    pub status: ReceiptStatus,
    pub position: Option<u64>,
    pub streamversion: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Violation>,
    /// Where the receipt is published; not part of the receipt itself.
    #[serde(skip)]
    pub partnership: Option<String>,
}

/// The answer for one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub receipts: Vec<Receipt>,
    /// Why the submission was rejected as a whole, if it was.
    pub rejection: Option<Violation>,
}

impl Outcome {
    pub fn is_rejected(&self) -> bool {
        self.rejection.is_some()
    }
}

/// A rejected submission as the ledger keeps it, listable forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionRecord {
    pub seq: u64,
    /// When the ledger received it (RFC 3339).
    pub received: String,
    pub origin: String,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partnership: Option<String>,
    /// The submission as received, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The submission as received, base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("the ledger's writer has stopped after a storage failure")]
    WriterStopped,
    #[error("the ledger is shutting down")]
    Closed,
}

/// What the writer has made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    pub head: Head,
    /// The next rejection sequence number: every one below it is durable.
    pub next_rejection: u64,
}

/// Tunables of the append path.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// The most events one group commit takes before it flushes.
    pub max_group_events: usize,
    /// sled's page cache. The working set of a serving ledger (rule state,
    /// recent events) fits well within the default; a one-pass reader such
    /// as `export` gains nothing from a large one.
    pub cache_bytes: u64,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            max_group_events: 20_000,
            cache_bytes: 512 * 1024 * 1024,
        }
    }
}

impl LedgerOptions {
    /// For tools that read the log once from end to end.
    pub fn one_pass() -> Self {
        Self {
            cache_bytes: 32 * 1024 * 1024,
            ..Self::default()
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Outcome>, LedgerError>>;

struct Request {
    submissions: Vec<Submission>,
    reply: Reply,
}

/// A handle on an open ledger; clones share it.
#[derive(Clone, Debug)]
pub struct Ledger {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    requests: mpsc::Sender<Request>,
    durable: watch::Receiver<Durable>,
    /// The last events made durable, for readers that follow the head.
    recent: Arc<Recent>,
    /// Counts every answer of [`Ledger::submit`], whichever transport asked.
    metrics: AppendMetrics,
    /// The writer thread, joined by [`Ledger::close`]. A std mutex: it is
    /// taken once, never across an await.
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Ledger {
    /// Opens the ledger in `dir` and starts its writer. Start-up reads the
    /// head and nothing else, whatever the log's length.
    pub fn open(dir: &Path, options: LedgerOptions) -> Result<Self, StoreError> {
        let store = Store::open(dir, options.cache_bytes)?;
        let durable = Durable {
            head: store.head()?,
            next_rejection: store.next_rejection()?,
        };
        let (durable_tx, durable_rx) = watch::channel(durable.clone());
        let (requests, rx) = mpsc::channel(1024);
        let writer = Writer {
            store: store.clone(),
            options,
            applied: durable,
            cache: HashMap::default(),
            ids: None,
        };
        let recent = Arc::new(Recent::new(TAIL_BYTES));
        let tail = Arc::clone(&recent);
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(rx, durable_tx, tail))
            .map_err(|e| StoreError::Corrupt {
                key: "writer".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                store,
                requests,
                durable: durable_rx,
                recent,
                metrics: AppendMetrics::default(),
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Appends submissions, each all-or-nothing, and answers once they are
    /// durable (committed or durably rejected).
    pub async fn submit(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, LedgerError> {
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        self.shared
            .requests
            .send(Request { submissions, reply })
            .await
            .map_err(|_| LedgerError::Closed)?;
        let outcomes = answer.await.map_err(|_| LedgerError::Closed)??;
        self.shared.metrics.record(&outcomes, started.elapsed());
        Ok(outcomes)
    }

    /// The append path's counters, for `GET /metrics`.
    pub fn metrics(&self) -> &AppendMetrics {
        &self.shared.metrics
    }

    pub async fn submit_one(&self, submission: Submission) -> Result<Outcome, LedgerError> {
        let mut outcomes = self.submit(vec![submission]).await?;
        outcomes.pop().ok_or(LedgerError::Closed)
    }

    /// The durable head.
    pub fn head(&self) -> Head {
        self.shared.durable.borrow().head.clone()
    }

    /// Watches the durable state; changes after every flush.
    pub fn subscribe(&self) -> watch::Receiver<Durable> {
        self.shared.durable.clone()
    }

    /// The durable events after `after` up to `until`, from memory, when
    /// they are recent enough to be held there (see [`crate::recent`]);
    /// `None` when they must be read from the store.
    pub fn recent_events(&self, after: u64, until: u64) -> Option<Vec<RecentEvent>> {
        self.shared.recent.range(after, until)
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Durable committed events after `after`, at most `limit`.
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<CommittedEvent>, StoreError> {
        self.events_iter(after).take(limit).collect()
    }

    /// Durable committed events after `after`, up to the durable head now.
    pub fn events_iter(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<CommittedEvent, StoreError>> + use<> {
        self.shared.store.events(after, self.head().position)
    }

    /// Durable committed events after `after`, up to the durable head now,
    /// decoded in parallel: for whole-log replays.
    pub fn replay(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<CommittedEvent, StoreError>> + use<> {
        self.shared.store.replay(after, self.head().position)
    }

    /// [`Ledger::replay`] of events with their typed data, read straight
    /// from the stored bytes: what folds replay.
    pub fn replay_typed(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<TypedEvent, StoreError>> + use<> {
        self.shared.store.replay_typed(after, self.head().position)
    }

    /// One stream's durable events, in version order.
    pub fn stream(&self, subject: &Subject) -> Result<Vec<CommittedEvent>, StoreError> {
        let head = self.head().position;
        let mut out = Vec::new();
        let state: Option<StreamState> = self.shared.store.state(&subject.to_string())?;
        for position in state.map(|s| s.positions).unwrap_or_default() {
            if position > head {
                break;
            }
            if let Some(event) = self.shared.store.event(position)? {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// Durable rejection records after sequence `after`.
    pub fn rejections(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<RejectionRecord, StoreError>> + use<> {
        let next = self.shared.durable.borrow().next_rejection;
        self.shared
            .store
            .rejections(after)
            .take_while(move |item| item.as_ref().map_or(true, |(seq, _)| *seq < next))
            .map(|item| {
                let (seq, bytes) = item?;
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    key: format!("rejection {seq}"),
                    message: e.to_string(),
                })
            })
    }

    /// Recomputes the hash chain from position 1 up to the durable head.
    pub fn verify(&self) -> Result<Verification, StoreError> {
        let head = self.head();
        let mut verifier = Verifier::default();
        for item in self.shared.store.events_json(0, head.position) {
            let (position, bytes) = item?;
            let decoded = CommittedEvent::from_json(&bytes).map_err(|e| e.0);
            verifier.check(position, decoded.as_ref().map_err(Clone::clone));
        }
        Ok(verifier.finish(head.position, &head.hash))
    }

    /// Stops accepting submissions, lets the writer finish what it holds,
    /// and waits for it when this is the last handle; otherwise the writer
    /// lives on for the other handles.
    pub fn close(self) {
        if let Ok(shared) = Arc::try_unwrap(self.shared) {
            let Shared {
                requests, writer, ..
            } = shared;
            drop(requests);
            if let Some(handle) = writer.into_inner().ok().flatten() {
                let _ = handle.join();
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    store: Store,
    options: LedgerOptions,
    /// The state as of the last applied (not necessarily flushed) group.
    applied: Durable,
    /// Recently used stream states, kept in step with what is applied, so
    /// that the rules rarely read and decode sled records.
    cache: HashMap<String, StreamState>,
    /// Every applied event's id; loaded when the first submission comes,
    /// so that reads and read-only tools never pay for it.
    ids: Option<IdIndex>,
}

/// How many stream states the writer keeps in memory before it starts the
/// cache afresh.
const CACHE_STREAMS: usize = 200_000;

/// One group commit in the making.
#[derive(Default)]
struct Overlay {
    states: HashMap<String, StreamState>,
    ids: HashMap<Uuid, IdRecord>,
    staged: Vec<Staged>,
    rejections: Vec<RejectionRecord>,
}

/// An accepted event of the group: its stream, the JSON to store, and what
/// the id index keeps of it.
struct Staged {
    subject: Subject,
    json: Vec<u8>,
    id: Uuid,
    partnership: String,
    event_type: EventType,
    streamversion: u64,
    digest: [u8; 32],
}

/// An applied group waiting for its flush.
struct FlushJob {
    replies: Vec<(Reply, Vec<Outcome>)>,
    applied: Durable,
    /// The group's events, for the recent tail once they are durable.
    recent: Vec<RecentEvent>,
    /// The group's submissions, dropped by the flusher after it answered:
    /// freeing what other threads allocated is not the writer's time.
    spent: Vec<Vec<Submission>>,
}

/// What applying a group gave: each request's outcomes, and the events
/// committed, in position order.
struct Applied {
    outcomes: Vec<Vec<Outcome>>,
    recent: Vec<RecentEvent>,
}

impl Writer {
    /// Decides and applies groups while the flusher makes the previous ones
    /// durable: deciding group N+1 overlaps flushing group N. Answers are
    /// sent only by the flusher, after a flush that began after the group
    /// was applied; sled recovers its log in order, so a durable group
    /// implies every earlier one is durable too.
    fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        published: watch::Sender<Durable>,
        recent: Arc<Recent>,
    ) {
        let (jobs, pending) = std::sync::mpsc::channel::<FlushJob>();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flusher = {
            let store = self.store.clone();
            let failed = Arc::clone(&failed);
            std::thread::Builder::new()
                .name("ledger-flusher".into())
                .spawn(move || flush_loop(&store, &pending, &published, &recent, &failed))
        };
        let flusher = match flusher {
            Ok(handle) => handle,
            Err(error) => {
                tracing::error!(%error, "cannot start the flusher thread");
                return;
            }
        };
        while let Some(first) = rx.blocking_recv() {
            let mut requests = vec![first];
            let mut events: usize = requests[0].submissions.len();
            while events < self.options.max_group_events {
                match rx.try_recv() {
                    Ok(request) => {
                        events += request.submissions.len();
                        requests.push(request);
                    }
                    Err(_) => break,
                }
            }
            if self.ids.is_none() && !failed.load(std::sync::atomic::Ordering::Acquire) {
                match IdIndex::load(&self.store) {
                    Ok(ids) => self.ids = Some(ids),
                    Err(error) => {
                        tracing::error!(%error, "cannot load the id index: the ledger stops accepting writes");
                        failed.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
            }
            if failed.load(std::sync::atomic::Ordering::Acquire) {
                for request in requests {
                    let _ = request.reply.send(Err(LedgerError::WriterStopped));
                }
                continue;
            }
            match self.commit_group(&requests) {
                Ok(Applied { outcomes, recent }) => {
                    let (replies, spent): (Vec<_>, Vec<_>) = requests
                        .into_iter()
                        .zip(outcomes)
                        .map(|(request, outcomes)| ((request.reply, outcomes), request.submissions))
                        .unzip();
                    let job = FlushJob {
                        replies,
                        applied: self.applied.clone(),
                        recent,
                        spent,
                    };
                    if jobs.send(job).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "storage failure: the ledger stops accepting writes");
                    failed.store(true, std::sync::atomic::Ordering::Release);
                    for request in requests {
                        let _ = request.reply.send(Err(LedgerError::WriterStopped));
                    }
                }
            }
        }
        drop(jobs);
        let _ = flusher.join();
    }

    /// Decides every submission of the group and applies one batch.
    fn commit_group(&mut self, requests: &[Request]) -> Result<Applied, StoreError> {
        let t_start = std::time::Instant::now();
        let mut group = Overlay::default();
        let mut head = self.applied.head.clone();
        let now = Utc::now();
        let recordedtime = recorded_time(now, &head.recordedtime);
        let mut next_rejection = self.applied.next_rejection;
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            let mut answers = Vec::with_capacity(request.submissions.len());
            for submission in &request.submissions {
                let outcome = self.decide_submission(
                    submission,
                    &mut group,
                    &mut head,
                    now,
                    &recordedtime,
                    &mut next_rejection,
                )?;
                answers.push(outcome);
            }
            outcomes.push(answers);
        }
        if group.staged.is_empty() && group.rejections.is_empty() {
            return Ok(Applied {
                outcomes,
                recent: Vec::new(),
            });
        }
        let t_decided = std::time::Instant::now();
        let mut commit = Commit::default();
        let first = self.applied.head.position + 1;
        let jsons: Vec<&[u8]> = group.staged.iter().map(|s| s.json.as_slice()).collect();
        commit.events(first, &jsons);
        let records: Vec<_> = group
            .staged
            .iter()
            .map(|s| (s.id, s.streamversion, s.digest))
            .collect();
        commit.ids(first, &records);
        for (subject, state) in &group.states {
            commit.state(subject, state);
        }
        for record in &group.rejections {
            commit.rejection(record.seq, record);
        }
        commit.head(&head);
        let t_built = std::time::Instant::now();
        self.store.apply(commit)?;
        tracing::trace!(
            events = group.staged.len(),
            decide = ?(t_decided - t_start),
            build = ?(t_built - t_decided),
            apply = ?t_built.elapsed(),
            "group applied"
        );
        if self.cache.len() + group.states.len() > CACHE_STREAMS {
            self.cache.clear();
        }
        self.cache.extend(group.states);
        if let Some(ids) = &mut self.ids {
            for (id, record) in group.ids {
                ids.insert(id, record.position);
            }
        }
        self.applied = Durable {
            head,
            next_rejection,
        };
        let recent = group
            .staged
            .into_iter()
            .zip(first..)
            .map(|(staged, position)| RecentEvent {
                position,
                id: staged.id,
                partnership: staged.partnership,
                event_type: staged.event_type,
                json: Bytes::from(staged.json),
            })
            .collect();
        Ok(Applied { outcomes, recent })
    }

    fn decide_submission(
        &mut self,
        submission: &Submission,
        group: &mut Overlay,
        head: &mut Head,
        now: DateTime<Utc>,
        recordedtime: &str,
        next_rejection: &mut u64,
    ) -> Result<Outcome, StoreError> {
        let envelopes = &submission.envelopes;
        let mut pending = Overlay::default();
        let mut pending_head = head.clone();
        let mut receipts = Vec::with_capacity(envelopes.len());
        let mut failure = submission.parse_error.clone().map(|v| (None, v));
        if failure.is_none() {
            for (((envelope, digest), framed), typed) in envelopes
                .iter()
                .zip(&submission.digests)
                .zip(&submission.framed)
                .zip(&submission.typed)
            {
                let verdict = self.decide_event(
                    envelope,
                    typed,
                    *digest,
                    framed,
                    &submission.caller,
                    group,
                    &mut pending,
                    &mut pending_head,
                    now,
                    recordedtime,
                )?;
                match verdict {
                    Ok(receipt) => receipts.push(receipt),
                    Err(violation) => {
                        failure = Some((Some(envelope.id), violation));
                        break;
                    }
                }
            }
        }
        let Some((failed_id, violation)) = failure else {
            group.states.extend(pending.states);
            group.ids.extend(pending.ids);
            group.staged.extend(pending.staged);
            *head = pending_head;
            return Ok(Outcome {
                receipts,
                rejection: None,
            });
        };
        // A rejection (the body as received) is kept and published under
        // the partnership it belongs to: the one its events name, unless the
        // caller may not publish for that one. A forbidden submission
        // belongs to the partnership it came from (the NATS subject's, or
        // the caller's only one), so that nobody can make their messages
        // reach another partnership's subscribers.
        let partnership = if violation.code == ErrorCode::Forbidden {
            submission
                .partnership_hint
                .clone()
                .or_else(|| submission.caller.sole_partnership().map(str::to_owned))
        } else {
            envelopes
                .first()
                .map(|e| e.partnership.clone())
                .or_else(|| submission.partnership_hint.clone())
        };
        let receipts = if envelopes.is_empty() {
            vec![Receipt {
                id: None,
                status: ReceiptStatus::Rejected,
                position: None,
                streamversion: None,
                error: Some(violation.clone()),
                partnership: partnership.clone(),
            }]
        } else {
            envelopes
                .iter()
                .map(|e| Receipt {
                    id: Some(e.id),
                    status: ReceiptStatus::Rejected,
                    position: None,
                    streamversion: None,
                    error: Some(if Some(e.id) == failed_id || failed_id.is_none() {
                        violation.clone()
                    } else {
                        Violation::new(
                            violation.code,
                            format!(
                                "not committed: event {} of the same batch was rejected: {}",
                                failed_id.unwrap_or_default(),
                                violation.message
                            ),
                        )
                    }),
                    partnership: Some(e.partnership.clone()),
                })
                .collect()
        };
        let (body, body_base64) = match &submission.body {
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => (Some(text.to_owned()), None),
                Err(_) => {
                    use base64::Engine as _;
                    (
                        None,
                        Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    )
                }
            },
            None => (serde_json::to_string(envelopes).ok(), None),
        };
        group.rejections.push(RejectionRecord {
            seq: *next_rejection,
            received: now.to_rfc3339_opts(SecondsFormat::Micros, true),
            origin: submission.origin.clone(),
            code: violation.code,
            message: violation.message.clone(),
            event_id: failed_id,
            partnership,
            body,
            body_base64,
        });
        *next_rejection += 1;
        Ok(Outcome {
            receipts,
            rejection: Some(violation),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_event(
        &mut self,
        envelope: &Envelope,
        data: &EventData,
        digest: [u8; 32],
        framed: &chain::Framed,
        caller: &Caller,
        group: &Overlay,
        pending: &mut Overlay,
        head: &mut Head,
        now: DateTime<Utc>,
        recordedtime: &str,
    ) -> Result<Result<Receipt, Violation>, StoreError> {
        if let Err(e) = envelope.check_time(now) {
            return Ok(Err(Violation::new(ErrorCode::InvalidEvent, e.0)));
        }
        if !caller.may_publish(&envelope.partnership) {
            return Ok(Err(Violation::new(
                ErrorCode::Forbidden,
                format!(
                    "the caller may not publish for partnership {}",
                    envelope.partnership
                ),
            )));
        }
        // `run` loads the index before the first group.
        let Some(ids) = &self.ids else {
            return Err(StoreError::Corrupt {
                key: "id index".into(),
                message: "not loaded".into(),
            });
        };
        let mut view = View {
            store: &self.store,
            cache: &mut self.cache,
            ids,
            group,
            pending,
        };
        if let Some(record) = view.id(envelope.id)? {
            if record.digest != digest {
                return Ok(Err(Violation::new(
                    ErrorCode::DuplicateIdConflict,
                    format!(
                        "id {} was committed at position {} with other content",
                        envelope.id, record.position
                    ),
                )));
            }
            return Ok(Ok(Receipt {
                id: Some(envelope.id),
                status: ReceiptStatus::Duplicate,
                position: Some(record.position),
                streamversion: Some(record.streamversion),
                error: None,
                partnership: Some(envelope.partnership.clone()),
            }));
        }
        let changes = match rules::decide(&mut view, envelope, data)? {
            Ok(changes) => changes,
            Err(violation) => return Ok(Err(violation)),
        };
        let mut changes = changes;
        changes[0].1.positions.push(head.position + 1);
        let streamversion = changes[0].1.version;
        let ledger = LedgerAttributes {
            position: head.position + 1,
            streamversion,
            recordedtime: recordedtime.to_owned(),
            prevhash: std::mem::take(&mut head.hash),
            hash: String::new(),
        };
        let (hash, json) = chain::seal(framed, &ledger);
        head.position = ledger.position;
        head.hash = hash;
        head.recordedtime = recordedtime.to_owned();
        pending.states.extend(changes);
        let record = IdRecord {
            position: ledger.position,
            streamversion,
            digest,
        };
        pending.ids.insert(envelope.id, record);
        let receipt = Receipt {
            id: Some(envelope.id),
            status: ReceiptStatus::Accepted,
            position: Some(record.position),
            streamversion: Some(streamversion),
            error: None,
            partnership: Some(envelope.partnership.clone()),
        };
        pending.staged.push(Staged {
            subject: envelope.subject.clone(),
            json,
            id: envelope.id,
            partnership: envelope.partnership.clone(),
            event_type: envelope.event_type,
            streamversion,
            digest,
        });
        Ok(Ok(receipt))
    }
}

/// The flusher thread: takes every applied group waiting, flushes once,
/// publishes the new durable state, and answers.
fn flush_loop(
    store: &Store,
    jobs: &std::sync::mpsc::Receiver<FlushJob>,
    published: &watch::Sender<Durable>,
    recent: &Recent,
    failed: &std::sync::atomic::AtomicBool,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        if failed.load(std::sync::atomic::Ordering::Acquire) {
            for job in batch {
                for (reply, _) in job.replies {
                    let _ = reply.send(Err(LedgerError::WriterStopped));
                }
            }
            continue;
        }
        let t_flush = std::time::Instant::now();
        match store.flush() {
            Ok(()) => {
                tracing::trace!(jobs = batch.len(), flush = ?t_flush.elapsed(), "flushed");
                // Durable now: into the tail before the head announces them.
                for job in &mut batch {
                    recent.extend(std::mem::take(&mut job.recent));
                }
                if let Some(last) = batch.last() {
                    published.send_if_modified(|durable| {
                        let changed = *durable != last.applied;
                        *durable = last.applied.clone();
                        changed
                    });
                }
                let mut spent = Vec::with_capacity(batch.len());
                for job in batch {
                    for (reply, outcomes) in job.replies {
                        let _ = reply.send(Ok(outcomes));
                    }
                    spent.push(job.spent);
                }
                // Only now, with every answer sent.
                drop(spent);
            }
            Err(error) => {
                tracing::error!(%error, "flush failed: the ledger stops accepting writes");
                failed.store(true, std::sync::atomic::Ordering::Release);
                for job in batch {
                    for (reply, _) in job.replies {
                        let _ = reply.send(Err(LedgerError::WriterStopped));
                    }
                }
            }
        }
    }
}

/// The recorded time of a commit: now, but never before the previous
/// commit's, so that recorded time never decreases with position and an
/// as-of cut is a prefix of the log.
fn recorded_time(now: DateTime<Utc>, previous: &str) -> String {
    let previous = DateTime::parse_from_rfc3339(previous)
        .map(|t| t.to_utc())
        .ok();
    let time = previous.map_or(now, |p| p.max(now));
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a body into envelopes with their typed data. An unparseable
/// event rejects the whole submission; the envelopes that did parse are
/// still returned so that their receipts can name them.
fn parse_body(bytes: &[u8]) -> (Vec<(Envelope, EventData)>, Option<Violation>) {
    let invalid = |message: String| Some(Violation::new(ErrorCode::InvalidEvent, message));
    if bytes.trim_ascii_start().first() != Some(&b'[') {
        return match Envelope::from_json_typed(bytes) {
            Ok(parsed) => (vec![parsed], None),
            Err(e) => (Vec::new(), invalid(e.0)),
        };
    }
    let items: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(bytes) {
        Ok(items) => items,
        Err(e) => return (Vec::new(), invalid(format!("not JSON: {e}"))),
    };
    if items.is_empty() {
        return (Vec::new(), invalid("an empty batch holds no events".into()));
    }
    let mut parsed = Vec::with_capacity(items.len());
    let mut error = None;
    for (i, item) in items.into_iter().enumerate() {
        match Envelope::from_json_typed(item.get().as_bytes()) {
            Ok(event) => parsed.push(event),
            Err(e) if error.is_none() => error = invalid(format!("[{i}] {}", e.0)),
            Err(_) => {}
        }
    }
    (parsed, error)
}

/// The rules' view: this submission's changes, then the group's, then the
/// store's.
struct View<'a> {
    store: &'a Store,
    cache: &'a mut HashMap<String, StreamState>,
    ids: &'a IdIndex,
    group: &'a Overlay,
    pending: &'a Overlay,
}

impl StateView for View<'_> {
    fn stream(&mut self, subject: &str) -> Result<Option<StreamState>, StoreError> {
        if let Some(state) = self
            .pending
            .states
            .get(subject)
            .or_else(|| self.group.states.get(subject))
        {
            return Ok(Some(state.clone()));
        }
        if let Some(state) = self.cache.get(subject) {
            return Ok(Some(state.clone()));
        }
        let state: Option<StreamState> = self.store.state(subject)?;
        if let Some(state) = &state {
            self.cache.insert(subject.to_owned(), state.clone());
        }
        Ok(state)
    }

    fn id(&mut self, id: Uuid) -> Result<Option<IdRecord>, StoreError> {
        let known = self
            .pending
            .ids
            .get(&id)
            .or_else(|| self.group.ids.get(&id));
        if let Some(record) = known {
            return Ok(Some(*record));
        }
        self.ids.get(self.store, id)
    }

    fn stream_events(&mut self, subject: &str) -> Result<Vec<Envelope>, StoreError> {
        let mut out = Vec::new();
        // The applied events first: the cache holds applied states only.
        let applied = match self.cache.get(subject) {
            Some(state) => Some(state.positions.clone()),
            None => self
                .store
                .state::<StreamState>(subject)?
                .map(|state| state.positions),
        };
        for position in applied.unwrap_or_default() {
            if let Some(event) = self.store.event(position)? {
                out.push(event.envelope);
            }
        }
        for staged in self.group.staged.iter().chain(&self.pending.staged) {
            if staged.subject.to_string() == subject {
                let event =
                    CommittedEvent::from_json(&staged.json).map_err(|e| StoreError::Corrupt {
                        key: format!("staged event of {subject}"),
                        message: e.0,
                    })?;
                out.push(event.envelope);
            }
        }
        Ok(out)
    }
}
