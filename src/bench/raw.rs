//! The raw sled baselines: the ledger's storage work with none of its
//! logic. A [`RawLog`] writes through the same store code as the ledger,
//! so every event costs the same keys (chunks of
//! [`crate::store::CHUNK_EVENTS`] events, an id run per group, the head,
//! and a snapshot at the ledger's thresholds
//! ([`crate::ledger::SNAPSHOT_EVENTS`] events,
//! [`crate::ledger::SNAPSHOT_STREAMS`] streams,
//! [`crate::ledger::SNAPSHOT_PERIOD`]): one state key per stream touched
//! since the last), with the same group commit:
//! a writer thread applies everything waiting as one batch while a flusher
//! thread makes the previous groups durable with one flush and only then
//! answers. What it leaves out is what the ledger decides: shape, time,
//! permission, idempotency, the rules, the chain hash, canonical JSON.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{BenchError, Result};
use crate::ledger::Ledger;
use crate::store::{Commit, Head, Store};

/// One event as the raw log stores it: the ledger's committed bytes and
/// what the ledger's commit writes beside them, prepared before any clock
/// starts.
#[derive(Debug, Clone)]
pub(super) struct RawEvent {
    json: bytes::Bytes,
    subject: Arc<str>,
    /// The stream's rule state as the ledger keeps it, written under the
    /// stream's key as the ledger writes it at each snapshot.
    state: Arc<serde_json::Value>,
    id: Uuid,
    streamversion: u64,
    digest: [u8; 32],
    hash: Arc<str>,
    recordedtime: Arc<str>,
}

/// The ledger's committed events `after + 1 ..= until`, with their streams'
/// states, ready for a [`RawLog`]. States are looked up once per stream
/// and kept in `states` across calls.
pub(super) fn committed(
    ledger: &Ledger,
    after: u64,
    until: u64,
    states: &mut HashMap<String, Arc<serde_json::Value>>,
) -> Result<Vec<RawEvent>> {
    let store = ledger.store();
    let mut events = Vec::with_capacity((until - after) as usize);
    for item in store.events_json(after, until) {
        let (_, json) = item?;
        let event = rotation_events::CommittedEvent::from_json(&json)
            .map_err(|e| BenchError::Check(format!("an undecodable bench event: {e}")))?;
        let subject = event.envelope.subject.to_string();
        let state = match states.get(&subject) {
            Some(state) => Arc::clone(state),
            None => {
                let state = ledger
                    .stream_state(&subject)?
                    .map(|state| serde_json::to_value(state).unwrap_or_default())
                    .unwrap_or_default();
                let state = Arc::new(state);
                states.insert(subject.clone(), Arc::clone(&state));
                state
            }
        };
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&event.ledger.hash, &mut digest)
            .map_err(|e| BenchError::Check(format!("a bench event's hash: {e}")))?;
        events.push(RawEvent {
            json: bytes::Bytes::copy_from_slice(&json),
            subject: subject.into(),
            state,
            id: event.envelope.id,
            streamversion: event.ledger.streamversion,
            digest,
            hash: event.ledger.hash.into(),
            recordedtime: event.ledger.recordedtime.into(),
        });
    }
    Ok(events)
}

/// One submission to the raw log: its events and where to answer.
struct RawRequest {
    events: Vec<RawEvent>,
    reply: oneshot::Sender<()>,
}

/// A raw group-commit log on sled: the ledger's writer and flusher threads
/// without their decisions.
pub(super) struct RawLog {
    store: Store,
    requests: Option<mpsc::Sender<RawRequest>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for RawLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawLog").finish_non_exhaustive()
    }
}

/// The most events the raw writer takes into one group, as the ledger's
/// default `max_group_events`.
const MAX_GROUP_EVENTS: usize = 20_000;

impl RawLog {
    /// Opens (or creates) a raw log in `dir`, configured as the ledger's
    /// store is.
    pub(super) fn open(dir: &Path) -> Result<Self> {
        let store = Store::open(dir, crate::ledger::LedgerOptions::default().cache_bytes)?;
        let head = store.head()?.position;
        let (requests, rx) = mpsc::channel::<RawRequest>(1024);
        let writer = std::thread::Builder::new()
            .name("raw-writer".into())
            .spawn({
                let store = store.clone();
                move || write_loop(&store, rx, head)
            })?;
        Ok(Self {
            store,
            requests: Some(requests),
            writer: Some(writer),
        })
    }

    /// Appends `events` and returns once they are durable.
    pub(super) async fn append(&self, events: Vec<RawEvent>) -> Result<()> {
        let (reply, answered) = oneshot::channel();
        let stopped = || BenchError::Check("the raw log's writer stopped".to_owned());
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(RawRequest { events, reply })
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())
    }

    /// The store under the raw log, for the read baselines.
    pub(super) fn store(&self) -> &Store {
        &self.store
    }
}

impl Drop for RawLog {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The raw writer: every request waiting becomes one commit, keyed as the
/// ledger keys its commits; the flusher thread answers after its flush.
fn write_loop(store: &Store, mut rx: mpsc::Receiver<RawRequest>, mut head: u64) {
    let (jobs, pending) = std::sync::mpsc::channel::<Vec<oneshot::Sender<()>>>();
    let flusher = std::thread::Builder::new()
        .name("raw-flusher".into())
        .spawn({
            let store = store.clone();
            move || {
                while let Ok(first) = pending.recv() {
                    let mut replies = first;
                    for more in pending.try_iter() {
                        replies.extend(more);
                    }
                    if let Err(error) = store.flush() {
                        tracing::error!(%error, "the raw baseline's flush failed");
                        return;
                    }
                    for reply in replies {
                        let _ = reply.send(());
                    }
                }
            }
        });
    let Ok(flusher) = flusher else {
        return;
    };
    // The streams touched since the last snapshot, as the ledger's writer
    // keeps them.
    let mut dirty: HashMap<Arc<str>, Arc<serde_json::Value>> = HashMap::new();
    let mut since_snapshot = 0;
    let mut snapshot_taken = Instant::now();
    while let Some(first) = rx.blocking_recv() {
        let mut requests = vec![first];
        let mut events = requests[0].events.len();
        while events < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(request) => {
                    events += request.events.len();
                    requests.push(request);
                }
                Err(_) => break,
            }
        }
        let group: Vec<&RawEvent> = requests.iter().flat_map(|r| &r.events).collect();
        let mut commit = Commit::default();
        let first = head + 1;
        let jsons: Vec<&[u8]> = group.iter().map(|e| &e.json[..]).collect();
        commit.events(first, &jsons);
        let records: Vec<_> = group
            .iter()
            .map(|e| (e.id, e.streamversion, e.digest))
            .collect();
        commit.ids(first, &records);
        dirty.extend(
            group
                .iter()
                .map(|e| (Arc::clone(&e.subject), Arc::clone(&e.state))),
        );
        head += group.len() as u64;
        since_snapshot += group.len() as u64;
        if let Some(last) = group.last() {
            commit.head(&Head {
                position: head,
                hash: last.hash.to_string(),
                recordedtime: last.recordedtime.to_string(),
            });
        }
        if let Err(error) = store.apply(commit) {
            tracing::error!(%error, "the raw baseline's apply failed");
            break;
        }
        if since_snapshot >= crate::ledger::SNAPSHOT_EVENTS
            || dirty.len() >= crate::ledger::SNAPSHOT_STREAMS
            || (since_snapshot > 0 && snapshot_taken.elapsed() >= crate::ledger::SNAPSHOT_PERIOD)
        {
            let mut snapshot = Commit::default();
            for (subject, state) in dirty.drain() {
                snapshot.state(&subject, &*state);
            }
            snapshot.snapshot(head);
            if let Err(error) = store.apply(snapshot) {
                tracing::error!(%error, "the raw baseline's snapshot failed");
                break;
            }
            since_snapshot = 0;
            snapshot_taken = Instant::now();
        }
        let replies = requests.into_iter().map(|r| r.reply).collect();
        if jobs.send(replies).is_err() {
            break;
        }
    }
    drop(jobs);
    let _ = flusher.join();
}

/// The baseline of `replay`: the raw log's events read and decoded by the
/// ledger's own reader and decoder.
pub(super) fn raw_replay(store: &Store) -> Result<(u64, Duration)> {
    let head = store.head()?.position;
    let started = Instant::now();
    let mut count = 0u64;
    for event in store.events(0, head) {
        std::hint::black_box(&event?);
        count += 1;
    }
    Ok((count, started.elapsed()))
}
