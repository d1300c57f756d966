//! The rules' stream states: in memory since the last snapshot, stored at
//! each snapshot, and rebuilt on opening from the events after it.
//!
//! Almost every event of a time-ordered history touches a stream that the
//! events around it do not, so storing each changed state with its group
//! cost about one sled key per event, and set the pace of an import.
//! Instead the writer keeps the states changed since the last snapshot (the
//! dirty states) here, shared with the ledger's readers, and stores them
//! all in one commit, marked with the position they reflect, every
//! [`LedgerOptions::snapshot_events`](super::LedgerOptions) events, once
//! [`SNAPSHOT_STREAMS`] streams are dirty, after [`SNAPSHOT_PERIOD`] with
//! anything dirty, and when the ledger closes. A group between snapshots
//! writes no state key at all.
//!
//! Opening replays the events after the snapshot (the tail, never more
//! than a snapshot's worth) through the rules to rebuild the dirty states,
//! so start-up does not grow with the log. After a storage failure the
//! writer rebuilds them the same way from what sled recovered, which drops
//! the states of groups that never became durable.

use std::sync::RwLock;

use foldhash::HashMap;
use rotation_events::Envelope;
use uuid::Uuid;

use super::Ledger;
use crate::rules::{self, StateView, StreamState};
use crate::store::{Commit, IdRecord, Store, StoreError};

/// How many events may follow a snapshot before the next is written: what
/// a replay on opening takes at most. Each snapshot writes one key per
/// stream changed since the last, so the larger it is, the more of a
/// stream's changes share one write: in the bench's simulated history
/// (2.9 M events, 250,000 streams) a group of 20,000 events touches 0.81
/// streams an event, 100,000 events 0.45, a million 0.16.
pub const SNAPSHOT_EVENTS: u64 = 1_000_000;

/// How many streams may be dirty before a snapshot is written, whatever
/// the events: it bounds the memory the dirty states take and the size of
/// one snapshot's commit (the writer applies it between two groups).
pub const SNAPSHOT_STREAMS: usize = 200_000;

/// How long states may stay dirty while events trickle in: a ledger
/// written slowly still has a short tail to replay after a crash.
pub const SNAPSHOT_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// The stream states changed since the last snapshot, as of the last
/// group the writer applied; every other stream's state is the store's.
#[derive(Debug, Default)]
pub(crate) struct States {
    /// A std lock: held only to look up, clone or insert, never across IO
    /// or an await. The writer is its only writer.
    dirty: RwLock<HashMap<String, StreamState>>,
    /// Set by the tests' hooks: the ledger closes as a crash would leave
    /// it, without its closing snapshot.
    #[cfg(feature = "test-hooks")]
    pub(super) skip_closing_snapshot: std::sync::atomic::AtomicBool,
}

impl States {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, StreamState>> {
        self.dirty
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, StreamState>> {
        self.dirty
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A stream's state if it changed since the last snapshot.
    pub(super) fn dirty(&self, subject: &str) -> Option<StreamState> {
        self.read().get(subject).cloned()
    }

    /// How many streams changed since the last snapshot.
    pub(super) fn dirty_count(&self) -> usize {
        self.read().len()
    }

    /// Keeps the states an applied group changed.
    pub(super) fn keep(&self, changed: impl IntoIterator<Item = (String, StreamState)>) {
        self.write().extend(changed);
    }

    /// Stages every dirty state into `commit`, to be marked as a snapshot.
    pub(super) fn stage_all(&self, commit: &mut Commit) {
        for (subject, state) in self.read().iter() {
            commit.state(subject, state);
        }
    }

    /// Takes the dirty states, once a snapshot holding them is applied.
    pub(super) fn take(&self) -> HashMap<String, StreamState> {
        std::mem::take(&mut *self.write())
    }

    /// Puts rebuilt states in place of the dirty ones.
    pub(super) fn replace(&self, states: HashMap<String, StreamState>) {
        *self.write() = states;
    }

    /// A stream's state as of the last applied group: the dirty one, or
    /// else the store's.
    pub(super) fn get(
        &self,
        store: &Store,
        subject: &str,
    ) -> Result<Option<StreamState>, StoreError> {
        match self.dirty(subject) {
            Some(state) => Ok(Some(state)),
            None => store.state(subject),
        }
    }
}

/// What opening rebuilt: the dirty states and how many events the tail
/// held.
pub(super) struct Rebuilt {
    pub(super) states: HashMap<String, StreamState>,
    pub(super) tail: u64,
}

/// Rebuilds the dirty states by replaying the events after the stored
/// snapshot through the rules. A store written before snapshots kept every
/// state current with its head: it gets a snapshot at its head first, so
/// that a later crash replays from there.
pub(super) fn rebuild(store: &Store) -> Result<Rebuilt, StoreError> {
    let head = store.head()?.position;
    let Some(from) = store.snapshot()? else {
        let mut commit = Commit::default();
        commit.snapshot(head);
        store.apply(commit)?;
        store.flush()?;
        return Ok(Rebuilt {
            states: HashMap::default(),
            tail: 0,
        });
    };
    let mut replay = Replay {
        store,
        states: HashMap::default(),
        subject: String::new(),
        tail_ids: HashMap::default(),
    };
    for event in store.events(from, head) {
        let event = event?;
        let position = event.ledger.position;
        let corrupt = |message: String| StoreError::Corrupt {
            key: format!("event {position}"),
            message: format!("replayed after the snapshot at {from}: {message}"),
        };
        let data = event.envelope.data().map_err(|e| corrupt(e.0))?;
        replay.subject = event.envelope.subject.key();
        let mut changes = match rules::decide(&mut replay, &event.envelope, &data)? {
            Ok(changes) => changes,
            Err(violation) => return Err(corrupt(format!("the rules refuse it: {violation}"))),
        };
        let own = &mut changes[0].1;
        own.positions.push(position);
        if own.version != event.ledger.streamversion {
            return Err(corrupt(format!(
                "it was committed at stream version {}, the replay gives {}",
                event.ledger.streamversion, own.version
            )));
        }
        replay.states.extend(changes);
        replay.tail_ids.insert(event.envelope.id, position);
    }
    Ok(Rebuilt {
        states: replay.states,
        tail: head - from,
    })
}

/// The rules' view during a replay: the states replayed so far, then the
/// store's. Every event replayed was accepted once, so a retraction's
/// target is in the retraction's own stream: it is looked for there rather
/// than in the id index, which the writer loads only before its first write.
struct Replay<'a> {
    store: &'a Store,
    states: HashMap<String, StreamState>,
    /// The stream of the event being replayed.
    subject: String,
    /// The positions of the tail's events so far, by id.
    tail_ids: HashMap<Uuid, u64>,
}

impl Replay<'_> {
    fn positions(&self, subject: &str) -> Result<Vec<u64>, StoreError> {
        Ok(match self.states.get(subject) {
            Some(state) => state.positions.clone(),
            None => self
                .store
                .state::<StreamState>(subject)?
                .map(|state| state.positions)
                .unwrap_or_default(),
        })
    }
}

impl StateView for Replay<'_> {
    fn stream(&mut self, subject: &str) -> Result<Option<StreamState>, StoreError> {
        match self.states.get(subject) {
            Some(state) => Ok(Some(state.clone())),
            None => self.store.state(subject),
        }
    }

    fn id(&mut self, id: Uuid) -> Result<Option<IdRecord>, StoreError> {
        let mut candidates = self.positions(&self.subject)?;
        candidates.extend(self.tail_ids.get(&id));
        for position in candidates {
            if let Some((found, record)) = self.store.id_record(position)?
                && found == id
            {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    fn stream_events(&mut self, subject: &str) -> Result<Vec<Envelope>, StoreError> {
        let mut out = Vec::new();
        for position in self.positions(subject)? {
            if let Some(event) = self.store.event(position)? {
                out.push(event.envelope);
            }
        }
        Ok(out)
    }
}

impl Ledger {
    /// A stream's rule state as of the last applied group (the durable
    /// head, or the groups being flushed after it): readers bound the
    /// positions it lists by the durable head.
    pub(crate) fn stream_state(&self, subject: &str) -> Result<Option<StreamState>, StoreError> {
        self.shared.states.get(self.store(), subject)
    }

    /// Every stream's rule state, in subject order.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn all_stream_states(&self) -> Result<Vec<(String, StreamState)>, StoreError> {
        let mut all: std::collections::BTreeMap<String, StreamState> =
            self.store().states().collect::<Result<_, _>>()?;
        all.extend(self.shared.states.read().clone());
        Ok(all.into_iter().collect())
    }

    /// How many streams the log holds: the stored states, and the dirty
    /// ones of streams made since the last snapshot.
    pub(crate) fn count_streams(&self) -> usize {
        let stored = self
            .store()
            .states::<serde::de::IgnoredAny>()
            .filter(Result::is_ok)
            .count();
        let dirty: Vec<String> = self.shared.states.read().keys().cloned().collect();
        let new = dirty
            .iter()
            .filter(|subject| {
                matches!(
                    self.store().state::<serde::de::IgnoredAny>(subject),
                    Ok(None)
                )
            })
            .count();
        stored + new
    }
}
