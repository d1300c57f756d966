//! The single writer thread: it takes every submission waiting, decides
//! each (shape, time, permission, idempotency, then the domain rules),
//! stages the accepted events and the rejections of the group in one sled
//! batch, applies it, and hands it to the flusher. Deciding group N+1
//! overlaps flushing group N.

use foldhash::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rotation_events::{CommittedEvent, Envelope, EventData, EventType, LedgerAttributes, Subject};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::flusher::{Flush, FlushJob, Sinks, flush_loop};
use super::head_record::HeadFile;
use super::ids::{IdIndex, Loading as IdLoading};
use super::recent::{Recent, RecentEvent};
use super::states::{SNAPSHOT_PERIOD, SNAPSHOT_STREAMS, States};
use super::{
    Durable, LedgerError, LedgerOptions, Outcome, Receipt, ReceiptStatus, RejectionRecord, Request,
    Submission,
};
use crate::auth::Caller;
use crate::chain;
use crate::checkpoint::tree::{Frontier, Hash};
use crate::personal::{Keyring, WrappedKey};
use crate::rules::{self, StateView, StreamState, Violation};
use crate::store::{Commit, Head, IdRecord, Store, StoreError};
use rotation_events::ErrorCode;

/// The writer thread's state.
pub(super) struct Writer {
    store: Store,
    options: LedgerOptions,
    /// The state as of the last applied (not necessarily flushed) group.
    applied: Durable,
    /// Recently used stream states as stored, so that the rules rarely
    /// read and decode sled records; the dirty states come first.
    cache: HashMap<String, StreamState>,
    /// The states changed since the last snapshot, shared with the readers.
    states: Arc<States>,
    /// Events applied since the last snapshot.
    since_snapshot: u64,
    /// When the last snapshot was applied (or the writer started).
    snapshot_taken: std::time::Instant,
    /// Every applied event's id: loading since the ledger opened (see
    /// [`LedgerOptions::preload_ids`]), or else when the first submission
    /// comes; taken by the first submission, which waits for it.
    ids: Option<IdIndex>,
    /// The right edge of the Merkle tree over what is applied: each
    /// commit's new nodes go into its batch. `None` only in the bench,
    /// which measures the append path without the tree.
    frontier: Option<Frontier>,
    /// Every person's data key: a new key is committed with the first
    /// event or rejection sealed under it.
    keyring: Arc<Keyring>,
    /// The head record outside sled, rewritten by the flusher.
    head_file: HeadFile,
    /// Where storage failures are reported.
    health: Arc<super::health::Health>,
}

/// The first wait before the store is opened again after a failure...
const FIRST_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// ...doubling up to this.
const LAST_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

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

/// Moves an accepted submission's entries into its group's map. The first
/// submission of a group hands its map over whole rather than inserting
/// each entry again.
fn absorb<K: Eq + std::hash::Hash, V>(into: &mut HashMap<K, V>, from: HashMap<K, V>) {
    if into.is_empty() {
        *into = from;
    } else {
        into.extend(from);
    }
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
    /// The event's hash: its leaf in the Merkle tree.
    leaf: Hash,
}

/// What applying a group gave: each request's outcomes, and the events
/// committed, in position order.
struct Applied {
    outcomes: Vec<Vec<Outcome>>,
    recent: Vec<RecentEvent>,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        options: LedgerOptions,
        applied: Durable,
        frontier: Option<Frontier>,
        keyring: Arc<Keyring>,
        head_file: HeadFile,
    ) -> Self {
        Self {
            store,
            options,
            applied,
            cache: HashMap::default(),
            states: Arc::default(),
            since_snapshot: 0,
            snapshot_taken: std::time::Instant::now(),
            ids: None,
            frontier,
            keyring,
            head_file,
            health: Arc::default(),
        }
    }

    /// Reports storage failures to `health`.
    pub(super) fn with_health(self, health: Arc<super::health::Health>) -> Self {
        Self { health, ..self }
    }

    /// Keeps the dirty states in `states`, rebuilt from a tail of `tail`
    /// events after the last snapshot.
    pub(super) fn with_states(self, states: Arc<States>, tail: u64) -> Self {
        Self {
            states,
            since_snapshot: tail,
            ..self
        }
    }

    /// Decides and applies groups while the flusher makes the previous ones
    /// durable: deciding group N+1 overlaps flushing group N. Answers are
    /// sent only by the flusher, after a flush that began after the group
    /// was applied; sled recovers its log in order, so a durable group
    /// implies every earlier one is durable too.
    pub(super) fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        published: watch::Sender<Durable>,
        recent: Arc<Recent>,
        wake: mpsc::WeakSender<Request>,
    ) {
        let (jobs, pending) = std::sync::mpsc::channel::<Flush>();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flusher = {
            let store = self.store.clone();
            let failed = Arc::clone(&failed);
            let head_file = self.head_file.clone();
            let health = Arc::clone(&self.health);
            std::thread::Builder::new()
                .name("ledger-flusher".into())
                .spawn(move || {
                    let sinks = Sinks {
                        published: &published,
                        recent: &recent,
                        health: &health,
                        wake: &wake,
                    };
                    flush_loop(&store, &head_file, &pending, &sinks, &failed);
                })
        };
        let flusher = match flusher {
            Ok(handle) => handle,
            Err(error) => {
                tracing::error!(%error, "cannot start the flusher thread");
                return;
            }
        };
        // Started at once, so that a first write arriving after start-up
        // does not pay for it; a failure to start leaves it to that write.
        let mut loading = self
            .options
            .preload_ids
            .then(|| IdLoading::start(self.store.clone()).ok())
            .flatten();
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
                let loaded = match loading.take() {
                    Some(loading) => loading.wait(),
                    None => IdIndex::load(&self.store),
                };
                match loaded {
                    Ok(ids) => self.ids = Some(ids),
                    Err(error) => {
                        tracing::error!(%error, "cannot load the id index: the ledger stops accepting writes");
                        self.health.storage_failed(error.to_string());
                        failed.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
            }
            if failed.load(std::sync::atomic::Ordering::Acquire) {
                for request in requests {
                    let _ = request.reply.send(Err(LedgerError::WriterStopped));
                }
                if self.recover(&mut rx, &jobs, &failed) {
                    continue;
                }
                break;
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
                    if jobs.send(Flush::Group(job)).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "storage failure: writes are refused until the store works again");
                    self.health.storage_failed(error.to_string());
                    failed.store(true, std::sync::atomic::Ordering::Release);
                    for request in requests {
                        let _ = request.reply.send(Err(LedgerError::WriterStopped));
                    }
                    if !self.recover(&mut rx, &jobs, &failed) {
                        break;
                    }
                }
            }
        }
        drop(jobs);
        if let Some(loading) = loading {
            loading.cancel();
        }
        let _ = flusher.join();
        if !failed.load(std::sync::atomic::Ordering::Acquire) {
            self.closing_snapshot();
        }
    }

    /// Keeps an applied group's changed states among the dirty ones, and
    /// stores them all as a snapshot when one is due.
    fn keep_states(
        &mut self,
        changed: HashMap<String, StreamState>,
        events: usize,
        position: u64,
    ) -> Result<(), StoreError> {
        self.states.keep(changed);
        self.since_snapshot += events as u64;
        let due = self.since_snapshot >= self.options.snapshot_events
            || self.states.dirty_count() >= SNAPSHOT_STREAMS
            || (self.since_snapshot > 0 && self.snapshot_taken.elapsed() >= SNAPSHOT_PERIOD);
        if due {
            self.snapshot(position)?;
        }
        Ok(())
    }

    /// Applies every dirty state, marked as the snapshot of the log up to
    /// `position` (the last applied group's head), in a commit of its own:
    /// sled recovers commits in order, so a recovered snapshot never
    /// covers a group that was lost.
    fn snapshot(&mut self, position: u64) -> Result<(), StoreError> {
        let mut commit = Commit::default();
        self.states.stage_all(&mut commit);
        commit.snapshot(position);
        self.store.apply(commit)?;
        let stored = self.states.take();
        if self.cache.len() + stored.len() > CACHE_STREAMS {
            self.cache.clear();
        }
        self.cache.extend(stored);
        self.since_snapshot = 0;
        self.snapshot_taken = std::time::Instant::now();
        Ok(())
    }

    /// Stores the last snapshot when the ledger closes, every group being
    /// flushed, so that the next opening replays nothing.
    fn closing_snapshot(&mut self) {
        #[cfg(feature = "test-hooks")]
        if self
            .states
            .skip_closing_snapshot
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        if self.since_snapshot == 0 {
            return;
        }
        let position = self.applied.head.position;
        if let Err(error) = self.snapshot(position).and_then(|()| self.store.flush()) {
            tracing::warn!(%error, "the closing snapshot failed: the next opening replays the tail");
        }
    }

    /// After a storage failure: waits until the flusher has answered
    /// every group applied before it, then opens the store again, after
    /// 100 ms and then twice as long each time up to 5 s, until it works.
    /// Meanwhile every request is answered at once with
    /// [`LedgerError::WriterStopped`] (503 with `Retry-After`). Returns
    /// false when the ledger was closed meanwhile.
    fn recover(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        jobs: &std::sync::mpsc::Sender<Flush>,
        failed: &std::sync::atomic::AtomicBool,
    ) -> bool {
        let (done, answered) = std::sync::mpsc::channel();
        if jobs.send(Flush::Barrier(done)).is_err() || answered.recv().is_err() {
            return false;
        }
        let mut backoff = FIRST_RETRY;
        loop {
            let until = std::time::Instant::now() + backoff;
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                match rx.try_recv() {
                    Ok(request) => {
                        let _ = request.reply.send(Err(LedgerError::WriterStopped));
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(left.min(std::time::Duration::from_millis(20)));
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return false,
                }
            }
            match self.reopen() {
                Ok(durable) => {
                    tracing::info!(
                        position = durable.head.position,
                        "the store works again: the ledger resumes writing"
                    );
                    failed.store(false, std::sync::atomic::Ordering::Release);
                    self.health.storage_recovered();
                    return jobs.send(Flush::Recovered(durable)).is_ok();
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "the store still fails");
                    self.health.storage_still_failing(error.to_string());
                    backoff = (backoff * 2).min(LAST_RETRY);
                }
            }
        }
    }

    /// Opens the store again and takes up its state: what sled recovered
    /// is a prefix of what was applied, never less than what was
    /// acknowledged (the head record says how much that was). Rewriting
    /// the record is the probe that the disk takes writes again.
    fn reopen(&mut self) -> Result<Durable, StoreError> {
        self.store.reopen()?;
        let durable = Durable {
            head: self.store.head()?,
            next_rejection: self.store.next_rejection()?,
        };
        self.head_file.check(&self.store, &durable)?;
        self.head_file
            .write(&super::head_record::HeadRecord::from(&durable))?;
        if self.frontier.is_some() {
            self.frontier = Some(super::tree::open(&self.store, durable.head.position)?);
        }
        // A data key marked committed with a group that never became
        // durable must be committed again with the next event sealed
        // under it.
        let stored = self
            .store
            .wrapped_keys::<WrappedKey>()
            .map(|record| record.map(|wrap| wrap.person))
            .collect::<Result<std::collections::HashSet<_>, _>>()?;
        self.keyring.recommit_missing(&stored);
        // The dirty states of groups that never became durable go: the
        // states are those of the recovered log's tail.
        let rebuilt = super::states::rebuild(&self.store)?;
        self.states.replace(rebuilt.states);
        self.since_snapshot = rebuilt.tail;
        self.ids = None;
        self.cache.clear();
        self.applied = durable.clone();
        Ok(durable)
    }

    /// Decides every submission of the group and applies one batch.
    fn commit_group(&mut self, requests: &[Request]) -> Result<Applied, StoreError> {
        let t_start = std::time::Instant::now();
        let now = Utc::now();
        let mut head_digest = [0; 32];
        hex::decode_to_slice(&self.applied.head.hash, &mut head_digest).map_err(|e| {
            StoreError::Corrupt {
                key: "head".into(),
                message: format!("the head's hash is not 64 hex digits: {e}"),
            }
        })?;
        let mut group = Group {
            overlay: Overlay::default(),
            head: self.applied.head.clone(),
            head_digest,
            next_rejection: self.applied.next_rejection,
            recordedtime: recorded_time(now, &self.applied.head.recordedtime),
            now,
        };
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            let mut answers = Vec::with_capacity(request.submissions.len());
            for submission in &request.submissions {
                answers.push(self.decide_submission(submission, &mut group)?);
            }
            outcomes.push(answers);
        }
        let Group {
            overlay: group,
            head,
            next_rejection,
            ..
        } = group;
        let keys = self.keys_to_commit(requests);
        if group.staged.is_empty() && group.rejections.is_empty() && keys.is_empty() {
            return Ok(Applied {
                outcomes,
                recent: Vec::new(),
            });
        }
        let t_decided = std::time::Instant::now();
        let mut commit = Commit::default();
        let first = self.applied.head.position + 1;
        // Positions are consecutive: the group's events end at its head.
        debug_assert_eq!(
            head.position,
            self.applied.head.position + group.staged.len() as u64,
            "a group's events take the positions after the applied head"
        );
        debug_assert_eq!(
            next_rejection,
            self.applied.next_rejection + group.rejections.len() as u64,
            "rejection sequence numbers are consecutive"
        );
        let jsons: Vec<&[u8]> = group.staged.iter().map(|s| s.json.as_slice()).collect();
        commit.events(first, &jsons);
        let records: Vec<_> = group
            .staged
            .iter()
            .map(|s| (s.id, s.streamversion, s.digest))
            .collect();
        commit.ids(first, &records);
        if let Some(frontier) = &mut self.frontier {
            let mut nodes = Vec::with_capacity(group.staged.len() * 2);
            for staged in &group.staged {
                frontier.append_into(&staged.leaf, &mut nodes);
            }
            super::tree::stage_nodes(&mut commit, &nodes);
        }
        for record in &group.rejections {
            commit.rejection(record.seq, record);
        }
        commit.head(&head);
        for record in &keys {
            commit.wrapped_key(record.person, record);
        }
        for request in requests {
            for person in request.rotation.iter().flat_map(|r| &r.destroyed) {
                commit.remove_wrapped_key(*person);
            }
        }
        debug_assert!(!commit.is_empty(), "a commit is never empty");
        let t_built = std::time::Instant::now();
        self.store.apply(commit)?;
        // A later group is durable only after this one, so a key marked
        // committed here is durable before any later event sealed under it.
        for record in &keys {
            self.keyring.mark_committed(record);
        }
        tracing::trace!(
            events = group.staged.len(),
            decide = ?(t_decided - t_start),
            build = ?(t_built - t_decided),
            apply = ?t_built.elapsed(),
            "group applied"
        );
        self.keep_states(group.states, group.staged.len(), head.position)?;
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

    /// The wraps the group must commit: each new data key that sealed a
    /// submission of it (whether accepted or kept as a rejection), and the
    /// keys an erasure's rotation wrapped again.
    fn keys_to_commit(&self, requests: &[Request]) -> Vec<WrappedKey> {
        let mut keys: Vec<WrappedKey> = requests
            .iter()
            .flat_map(|r| &r.submissions)
            .flat_map(|s| &s.sealed_for)
            .filter_map(|person| self.keyring.wrap_to_commit(*person))
            .collect();
        for rotation in requests.iter().filter_map(|r| r.rotation.as_ref()) {
            keys.extend(rotation.rewrapped.iter().cloned());
        }
        keys
    }

    /// Decides one submission, all-or-nothing: its events join the group,
    /// or it is rejected as a whole and kept as a rejection.
    fn decide_submission(
        &mut self,
        submission: &Submission,
        group: &mut Group,
    ) -> Result<Outcome, StoreError> {
        let mut deciding = Deciding {
            pending: Overlay::default(),
            head: group.head.clone(),
            head_digest: group.head_digest,
            now: group.now,
            recordedtime: &group.recordedtime,
        };
        let mut receipts = Vec::with_capacity(submission.envelopes.len());
        let mut failure = submission.parse_error.clone().map(|v| {
            (
                submission.unparsed.failed,
                submission.unparsed.failed_id(),
                v,
            )
        });
        if failure.is_none() {
            for (index, (((envelope, digest), framed), data)) in submission
                .envelopes
                .iter()
                .zip(&submission.digests)
                .zip(&submission.framed)
                .zip(&submission.typed)
                .enumerate()
            {
                let candidate = Candidate {
                    envelope,
                    data,
                    digest: *digest,
                    framed,
                    by_ledger: submission.by_ledger,
                    partner_sealed: submission.partner_sealed.get(index) == Some(&true),
                    replica: submission.replica.get(index),
                };
                match self.decide_event(
                    &candidate,
                    &submission.caller,
                    &group.overlay,
                    &mut deciding,
                )? {
                    Ok(receipt) => receipts.push(receipt),
                    Err(violation) => {
                        failure = Some((index, Some(envelope.id.to_string()), violation));
                        break;
                    }
                }
            }
        }
        let Some((failed_index, failed_id, violation)) = failure else {
            let Deciding {
                pending,
                head,
                head_digest,
                ..
            } = deciding;
            absorb(&mut group.overlay.states, pending.states);
            absorb(&mut group.overlay.ids, pending.ids);
            group.overlay.staged.extend(pending.staged);
            group.head = head;
            group.head_digest = head_digest;
            return Ok(Outcome {
                receipts,
                rejection: None,
            });
        };
        let (receipts, record) = rejection(
            submission,
            (failed_index, failed_id),
            &violation,
            group.now,
            group.next_rejection,
        );
        group.overlay.rejections.push(record);
        group.next_rejection += 1;
        Ok(Outcome {
            receipts,
            rejection: Some(violation),
        })
    }

    /// Decides one event of a submission against the store, the group so
    /// far and the submission's own earlier events; an accepted event
    /// joins `deciding`, sealed onto its chain.
    fn decide_event(
        &mut self,
        candidate: &Candidate<'_>,
        caller: &Caller,
        group: &Overlay,
        deciding: &mut Deciding<'_>,
    ) -> Result<Result<Receipt, Violation>, StoreError> {
        let Candidate {
            envelope,
            data,
            digest,
            framed,
            by_ledger,
            partner_sealed,
            replica,
        } = *candidate;
        // A restored event was judged when it was first committed; only
        // its place in the chain and the rules' state are checked again.
        if replica.is_none()
            && let Err(e) = envelope.check_time(deciding.now)
        {
            return Ok(Err(Violation::new(ErrorCode::InvalidEvent, e.0)));
        }
        if envelope.event_type == EventType::PersonErased && !by_ledger {
            return Ok(Err(Violation::new(
                ErrorCode::Forbidden,
                "jobrotation.person.erased is committed by the ledger itself",
            )));
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
            states: &self.states,
            cache: &mut self.cache,
            ids,
            group,
            pending: &deciding.pending,
        };
        if let Some(record) = view.id(envelope.id)?
            && replica.is_none()
        {
            if record.digest != digest
                && !resends(&self.store, &self.keyring, candidate, record.position)?
            {
                return Ok(Err(Violation::new(
                    ErrorCode::DuplicateIdConflict,
                    format!(
                        "id {} was committed at position {} with other content",
                        envelope.id, record.position
                    ),
                )));
            }
            return Ok(Ok(Receipt {
                id: Some(envelope.id.to_string()),
                status: ReceiptStatus::Duplicate,
                position: Some(record.position),
                streamversion: Some(record.streamversion),
                error: None,
                partnership: Some(envelope.partnership.clone()),
            }));
        }
        if let Some(replica) = replica {
            if let Some(violation) = out_of_place(replica, &deciding.head, view.id(envelope.id)?) {
                return Ok(Err(violation));
            }
        } else if partner_sealed {
            return Ok(Err(super::sealing::partner_sealed()));
        }
        let mut changes = match rules::decide(&mut view, envelope, data)? {
            Ok(changes) => changes,
            Err(violation) => return Ok(Err(violation)),
        };
        debug_assert!(!changes.is_empty(), "an accepted event changes its stream");
        let head = &mut deciding.head;
        let position = head.position + 1;
        changes[0].1.positions.push(position);
        let streamversion = changes[0].1.version;
        debug_assert_eq!(
            changes[0].1.positions.len() as u64,
            streamversion,
            "stream versions are consecutive: one position for each version"
        );
        let recordedtime = replica.map_or(deciding.recordedtime, |r| r.recordedtime.as_str());
        let place = chain::Place {
            position,
            streamversion,
            recordedtime,
        };
        let sealed = chain::seal(framed, place, &deciding.head_digest);
        if let Some(replica) = replica
            && (replica.hash != sealed.hash || replica.streamversion != streamversion)
        {
            return Ok(Err(Violation::new(
                ErrorCode::InvalidEvent,
                format!(
                    "the event at position {position} does not restore as it was committed: its hash or stream version differs"
                ),
            )));
        }
        head.hash = sealed.hash;
        deciding.head_digest = sealed.digest;
        head.position = position;
        head.recordedtime = recordedtime.to_owned();
        deciding.pending.states.extend(changes);
        let record = IdRecord {
            position,
            streamversion,
            digest,
        };
        deciding.pending.ids.insert(envelope.id, record);
        deciding.pending.staged.push(Staged {
            subject: envelope.subject.clone(),
            json: sealed.json,
            id: envelope.id,
            partnership: envelope.partnership.clone(),
            event_type: envelope.event_type,
            streamversion,
            // What is stored is derived from no clear profile.
            digest: if sealed_here(candidate) {
                framed.digest()
            } else {
                digest
            },
            leaf: sealed.digest,
        });
        Ok(Ok(Receipt {
            id: Some(envelope.id.to_string()),
            status: ReceiptStatus::Accepted,
            position: Some(position),
            streamversion: Some(streamversion),
            error: None,
            partnership: Some(envelope.partnership.clone()),
        }))
    }
}

/// A group commit being decided: what it stages, the head it leads to, and
/// what every decision in it shares.
struct Group {
    overlay: Overlay,
    head: Head,
    /// The bytes of the head's hash: the next event's `prevhash`.
    head_digest: [u8; 32],
    next_rejection: u64,
    /// When the group is decided: the clock every event's time is judged by.
    now: DateTime<Utc>,
    /// The recorded time of every event the group commits.
    recordedtime: String,
}

/// One submission's decision in the making: its own accepted events, kept
/// apart until the whole submission is accepted.
struct Deciding<'g> {
    pending: Overlay,
    /// The head after the submission's events so far.
    head: Head,
    /// The bytes of that head's hash.
    head_digest: [u8; 32],
    now: DateTime<Utc>,
    recordedtime: &'g str,
}

/// One event of a submission, as the submitter's thread prepared it.
#[derive(Clone, Copy)]
struct Candidate<'s> {
    envelope: &'s Envelope,
    data: &'s EventData,
    /// SHA-256 of the event's canonical form, for idempotency.
    digest: [u8; 32],
    framed: &'s chain::Framed,
    /// Whether the ledger itself made it.
    by_ledger: bool,
    /// Whether it came with a `sealed_profile` of its own.
    partner_sealed: bool,
    /// For a restore: the attributes it was committed with.
    replica: Option<&'s LedgerAttributes>,
}

/// Why a restored event cannot take the next place in the chain, if it
/// cannot: it must follow the head exactly, and its id must be new.
fn out_of_place(
    replica: &LedgerAttributes,
    head: &Head,
    known: Option<IdRecord>,
) -> Option<Violation> {
    let problem = if replica.position != head.position + 1 {
        format!(
            "position {} does not follow the head at {}",
            replica.position, head.position
        )
    } else if replica.prevhash != head.hash {
        format!(
            "the prevhash of position {} is not the hash of the event before it",
            replica.position
        )
    } else if let Some(record) = known {
        format!(
            "its id was already committed at position {}",
            record.position
        )
    } else {
        return None;
    };
    Some(Violation::new(ErrorCode::InvalidEvent, problem))
}

/// Whether this ledger sealed the candidate's profile on submission: its
/// clear form's digest is then kept in memory only until it is committed.
fn sealed_here(candidate: &Candidate<'_>) -> bool {
    candidate.replica.is_none()
        && !candidate.partner_sealed
        && matches!(candidate.data, EventData::ParticipantRegistered(d) if d.sealed_profile.is_some())
}

/// Whether `candidate`, whose id is committed at `position` under another
/// digest, is still the same event: the committed form of a sealed event
/// resent, or a clear profile resent whose committed form is sealed.
fn resends(
    store: &Store,
    keyring: &Keyring,
    candidate: &Candidate<'_>,
    position: u64,
) -> Result<bool, StoreError> {
    if candidate.partner_sealed {
        return Ok(committed_digest(store, position)? == Some(candidate.digest));
    }
    if !sealed_here(candidate) {
        return Ok(false);
    }
    let Some(committed) = store.event(position)? else {
        return Ok(false);
    };
    Ok(super::sealing::resends_clear(
        keyring,
        committed,
        candidate.framed,
        candidate.digest,
    )?)
}

/// The idempotency digest of the event committed at `position`, in its
/// committed (sealed) form.
fn committed_digest(store: &Store, position: u64) -> Result<Option<[u8; 32]>, StoreError> {
    Ok(store.event(position)?.map(|event| {
        chain::Framed::new(&event.envelope, &chain::canonical_data(&event.envelope)).digest()
    }))
}

/// The receipts of a rejected submission and the record kept of it.
///
/// A rejection (the body as received) is kept and published under the
/// partnership it belongs to: the one its events name, unless the caller
/// may not publish for that one. A forbidden submission belongs to the
/// partnership it came from (the NATS subject's, or the caller's only
/// one), so that nobody can make their messages reach another
/// partnership's subscribers.
fn rejection(
    submission: &Submission,
    (failed, failed_id): (usize, Option<String>),
    violation: &Violation,
    now: DateTime<Utc>,
    seq: u64,
) -> (Vec<Receipt>, RejectionRecord) {
    let envelopes = &submission.envelopes;
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
    // Every event is answered under its id: the parsed envelopes', or, when
    // the body did not parse, the ids it holds as far as they read.
    let ids: Vec<Option<String>> = if submission.parse_error.is_some() {
        submission.unparsed.ids.clone()
    } else {
        envelopes.iter().map(|e| Some(e.id.to_string())).collect()
    };
    let partnership_of = |i: usize| {
        (submission.parse_error.is_none())
            .then(|| envelopes.get(i).map(|e| e.partnership.clone()))
            .flatten()
            .or_else(|| partnership.clone())
    };
    let receipts = if ids.is_empty() {
        vec![Receipt {
            id: None,
            status: ReceiptStatus::Rejected,
            position: None,
            streamversion: None,
            error: Some(violation.clone()),
            partnership: partnership.clone(),
        }]
    } else {
        ids.into_iter()
            .enumerate()
            .map(|(i, id)| Receipt {
                id,
                status: ReceiptStatus::Rejected,
                position: None,
                streamversion: None,
                error: Some(if i == failed {
                    violation.clone()
                } else {
                    Violation::new(
                        violation.code,
                        format!(
                            "not committed: event {} of the same batch was rejected: {}",
                            failed_id.as_deref().unwrap_or("-"),
                            violation.message
                        ),
                    )
                }),
                partnership: partnership_of(i),
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
    let record = RejectionRecord {
        seq,
        received: now.to_rfc3339_opts(SecondsFormat::Micros, true),
        origin: submission.origin.clone(),
        code: violation.code,
        message: violation.message.clone(),
        event_id: failed_id,
        partnership,
        body,
        body_base64,
    };
    (receipts, record)
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

/// The rules' view: this submission's changes, then the group's, then the
/// store's.
struct View<'a> {
    store: &'a Store,
    states: &'a States,
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
        if let Some(state) = self.states.dirty(subject) {
            return Ok(Some(state));
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
        // The applied events first: the dirty states and the cache hold
        // applied states only.
        let applied = match self.states.dirty(subject) {
            Some(state) => Some(state.positions),
            None => match self.cache.get(subject) {
                Some(state) => Some(state.positions.clone()),
                None => self
                    .store
                    .state::<StreamState>(subject)?
                    .map(|state| state.positions),
            },
        };
        for position in applied.unwrap_or_default() {
            if let Some(event) = self.store.event(position)? {
                out.push(event.envelope);
            }
        }
        // Parsed once, so that the group's staged events are compared
        // without formatting each one's subject.
        let wanted = Subject::parse(subject).ok();
        for staged in self.group.staged.iter().chain(&self.pending.staged) {
            if Some(&staged.subject) == wanted.as_ref() {
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
