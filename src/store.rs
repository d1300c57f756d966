//! The durable log on sled: the only module that knows sled's keys.
//!
//! Everything lives in one sled tree under one-byte key prefixes. A sled
//! insert costs microseconds whatever its size, so the layout keeps the
//! number of keys per event small:
//!
//! | key | value |
//! |---|---|
//! | `E` first position (u64 BE) | a chunk: up to [`CHUNK_EVENTS`] consecutive committed events as JSON Lines |
//! | `T` subject | the stream's state (JSON) as of the last snapshot: the rule state and the positions of its events |
//! | `H` | the head: position, hash, recorded time |
//! | `J` first position (u64 BE) | an id run: id, stream version and content digest of up to [`ID_RUN_EVENTS`] consecutive events |
//! | `R` sequence (u64 BE) | a rejection record (JSON) |
//! | `N` | the next rejection sequence |
//! | `C` name | a checkpoint owned by another module (projections, outbox) |
//! | `M` level (u8) index (u64 BE) | a complete subtree of the Merkle tree, level 5 or above (3 or above in stores written before) (`crate::checkpoint`) |
//! | `L` name | the ledger's own facts: its id, whether the tree covers the log, and the position (u64 BE) the stored stream states are a snapshot of (`L` `states_snapshot`) |
//! | `K` person (16 bytes) | the person's data key, wrapped under the master key (JSON) |
//! | `P` | present once any data key was committed: the store holds sealed personal data |
//!
//! A commit (chunks, id runs, stream states, head, rejections) is one
//! `apply_batch`, which sled recovers atomically: after a crash either all
//! of it is there or none of it.
//!
//! Ids are not keys: a key per event would cost as much as the event
//! itself. The id runs hold what idempotency needs in position order, and
//! the ledger keeps an in-memory map from ids to positions, loaded from the
//! runs (see `crate::ledger`).
//!
//! Nothing written here is durable until [`Store::flush`] returns; callers
//! acknowledge nothing before it. Once a write has failed, sled answers
//! every later call with the same error; [`Store::reopen`] replaces the
//! handle that every clone shares.

use std::path::Path;

use rotation_events::{CommittedEvent, InvalidEvent, TypedEvent};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

const EVENT: u8 = b'E';
const ID_RUN: u8 = b'J';
/// The per-event id index of earlier versions, replaced by id runs.
const LEGACY_ID: u8 = b'I';
const LEGACY_INDEXED_THROUGH: &[u8] = b"X";

/// The most events one id run holds: a run of 56-byte records stays a
/// small sled value however large the commit.
pub const ID_RUN_EVENTS: usize = 1024;

/// Bytes of one id run record: id, stream version, digest.
const ID_RECORD: usize = 16 + 8 + 32;

/// The most events one chunk holds: a group commit of a thousand events
/// writes a quarter as many keys as events (sled costs about the same per
/// key whatever its size), yet a leaf page stays small. Page size bounds
/// memory on whole-log reads: sled's cache counts accesses in 256 shards
/// of 64 before it evicts, so a scan holds about 16,000 pages whatever
/// the cache's capacity (chunks of 16 held 1.1 GiB, chunks of 4 hold 0.3).
pub const CHUNK_EVENTS: usize = 4;

/// Threads decoding a [`Store::replay`].
const DECODERS: usize = 2;

/// Chunks per unit of work handed to a replay decoder: 128 events, whose
/// decoded forms stay under mimalloc's 128 KiB of a medium allocation.
const REPLAY_BATCH: usize = 32;

/// Batches queued for and from each replay decoder.
const REPLAY_QUEUE: usize = 16;
const STATE: u8 = b'T';
const REJECTION: u8 = b'R';
const HEAD: &[u8] = b"H";
const NEXT_REJECTION: &[u8] = b"N";
const CHECKPOINT: u8 = b'C';
const TREE_NODE: u8 = b'M';
const LEDGER_FACT: u8 = b'L';
const WRAPPED_KEY: u8 = b'K';
const SEALED: &[u8] = b"P";
/// The ledger fact naming the position the stored stream states are a
/// snapshot of.
const SNAPSHOT_FACT: &str = "states_snapshot";

/// How long [`Store::open`] waits for a directory lock that a just-closed
/// handle of this process is still releasing.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(sled::Error),
    /// sled found a record whose checksum fails: the files are damaged.
    #[error("the store is damaged: sled read corrupted data ({0}). {REPAIR}")]
    Damaged(sled::Error),
    /// The store opened shorter than its head record says it was.
    #[error(
        "the store in {} ends at position {found} (rejection {found_rejections}), but its head record says position {recorded} (rejection {recorded_rejections}) was durable: the store was damaged and opened short. {REPAIR}",
        dir.display()
    )]
    Short {
        dir: std::path::PathBuf,
        found: u64,
        recorded: u64,
        found_rejections: u64,
        recorded_rejections: u64,
    },
    /// The store's event at the head record's position is not the one the
    /// record names.
    #[error(
        "the store in {} holds {found} at position {position}, but its head record says hash {recorded} was durable there: the store does not chain to its head record. {REPAIR}",
        dir.display()
    )]
    Diverged {
        dir: std::path::PathBuf,
        position: u64,
        found: String,
        recorded: String,
    },
    #[error("cannot write the head record: {0}")]
    HeadRecord(std::io::Error),
    /// The database could not be opened again after a failure.
    #[error("the store is closed after a storage failure, and could not be opened again yet")]
    Closed,
    #[error("cannot sync the reopened store: {0}")]
    Reopen(std::io::Error),
    #[error("storage holds an undecodable record at {key}: {message}")]
    Corrupt { key: String, message: String },
    #[error(transparent)]
    Keys(#[from] crate::personal::KeyError),
}

/// What an operator does about a damaged store, said by every error that
/// finds one.
pub const REPAIR: &str = "Do not serve it as it is: restore the data directory from a backup made with `rotation-ledger backup`, or rebuild it with `rotation-ledger restore --from-nats URL --data DIR` when the ledger published to ROTATION_LEDGER.";

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        // sled says only "Read corrupted data at file offset None": the
        // operator needs to hear that the store is damaged and what to do.
        match error {
            sled::Error::Corruption { .. } => Self::Damaged(error),
            other => Self::Sled(other),
        }
    }
}

/// An event's JSON as the store holds it (RFC 8785), shared with the
/// store's page rather than copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredJson(sled::IVec);

impl std::ops::Deref for StoredJson {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for StoredJson {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The head of the log: the last committed position and its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub position: u64,
    /// Lower-case hex; 64 zeros for an empty log.
    pub hash: String,
    /// When the head event was recorded; empty for an empty log.
    pub recordedtime: String,
}

impl Head {
    pub fn empty() -> Self {
        Self {
            position: 0,
            hash: crate::chain::GENESIS.to_owned(),
            recordedtime: String::new(),
        }
    }
}

/// What the id index knows of a committed event: enough to answer a
/// duplicate without reading the event itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRecord {
    pub position: u64,
    pub streamversion: u64,
    /// SHA-256 of the submitted event's canonical JSON.
    pub digest: [u8; 32],
}

impl IdRecord {
    /// Decodes record `index` of an id run whose first event is at
    /// `first`: the id and what the index knows of it.
    fn from_run(first: u64, run: &[u8], index: usize) -> Option<(Uuid, Self)> {
        let bytes = run.get(index * ID_RECORD..(index + 1) * ID_RECORD)?;
        let id = Uuid::from_slice(&bytes[..16]).ok()?;
        let record = Self {
            position: first + index as u64,
            streamversion: u64::from_be_bytes(bytes[16..24].try_into().ok()?),
            digest: bytes[24..].try_into().ok()?,
        };
        Some((id, record))
    }
}

/// The sled database behind the ledger.
#[derive(Clone)]
pub struct Store {
    /// Every clone shares one handle, so that [`Store::reopen`] replaces
    /// it for all of them.
    shared: std::sync::Arc<Shared>,
}

struct Shared {
    /// `None` only while [`Store::reopen`] could not open the database.
    /// A std lock: held to clone the handle, or to replace it.
    db: std::sync::RwLock<Option<sled::Db>>,
    dir: std::path::PathBuf,
    cache_bytes: u64,
    /// How many stream state keys every commit applied so far wrote: what
    /// the tests hold the snapshots to.
    #[cfg(feature = "test-hooks")]
    state_writes: std::sync::atomic::AtomicU64,
}

/// The records a scan reads, or the one error of a store that could not
/// be read.
enum Scan<I> {
    Reading(I),
    Failed(Option<StoreError>),
}

impl<T, I: Iterator<Item = Result<T, StoreError>>> Iterator for Scan<I> {
    type Item = Result<T, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Reading(records) => records.next(),
            Self::Failed(error) => error.take().map(Err),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// One commit's writes, applied atomically by [`Store::apply`].
#[derive(Default)]
pub struct Commit {
    batch: sled::Batch,
    /// How many events the commit holds.
    pub events: usize,
    /// How many keys it writes, events included.
    writes: usize,
    /// How many of them are stream states.
    states: u64,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit")
            .field("events", &self.events)
            .finish()
    }
}

impl Commit {
    /// Adds consecutive committed events, given as their JSON, the first at
    /// `first_position`, in chunks of at most [`CHUNK_EVENTS`].
    pub fn events(&mut self, first_position: u64, jsons: &[&[u8]]) {
        for (i, chunk) in jsons.chunks(CHUNK_EVENTS).enumerate() {
            let mut value = Vec::with_capacity(chunk.iter().map(|j| j.len() + 1).sum());
            for json in chunk {
                value.extend_from_slice(json);
                value.push(b'\n');
            }
            let first = first_position + (i * CHUNK_EVENTS) as u64;
            self.writes += 1;
            self.batch.insert(&event_key(first), value);
            self.events += chunk.len();
        }
    }

    /// Adds the id runs of consecutive committed events, the first at
    /// `first_position`: each event's id, stream version and digest, in
    /// position order.
    pub fn ids(&mut self, first_position: u64, records: &[(Uuid, u64, [u8; 32])]) {
        for (i, run) in records.chunks(ID_RUN_EVENTS).enumerate() {
            let mut value = Vec::with_capacity(run.len() * ID_RECORD);
            for (id, streamversion, digest) in run {
                value.extend_from_slice(id.as_bytes());
                value.extend_from_slice(&streamversion.to_be_bytes());
                value.extend_from_slice(digest);
            }
            let first = first_position + (i * ID_RUN_EVENTS) as u64;
            self.writes += 1;
            self.batch.insert(&seq_key(ID_RUN, first), value);
        }
    }

    /// Sets a stream's rule state.
    pub fn state<T: Serialize>(&mut self, subject: &str, state: &T) {
        let json = serde_json::to_vec(state).expect("rule state always serialises");
        self.writes += 1;
        self.states += 1;
        self.batch.insert(state_key(subject), json);
    }

    /// Marks the stream states written so far (this commit's and the
    /// earlier ones') as a snapshot of the log up to `position`.
    pub fn snapshot(&mut self, position: u64) {
        self.writes += 1;
        self.batch.insert(
            named_key(LEDGER_FACT, SNAPSHOT_FACT),
            &position.to_be_bytes(),
        );
    }

    pub fn head(&mut self, head: &Head) {
        let json = serde_json::to_vec(head).expect("a head always serialises");
        self.writes += 1;
        self.batch.insert(HEAD, json);
    }

    /// Adds a rejection record under sequence number `seq`.
    pub fn rejection<T: Serialize>(&mut self, seq: u64, record: &T) {
        let json = serde_json::to_vec(record).expect("a rejection always serialises");
        self.writes += 1;
        self.batch.insert(&seq_key(REJECTION, seq), json);
        self.writes += 1;
        self.batch.insert(NEXT_REJECTION, &(seq + 1).to_be_bytes());
    }

    /// Sets a checkpoint owned by another module.
    pub fn checkpoint(&mut self, name: &str, value: &[u8]) {
        self.writes += 1;
        self.batch.insert(checkpoint_key(name), value);
    }

    /// Adds a complete subtree of the Merkle tree.
    pub fn tree_node(&mut self, level: u8, index: u64, hash: &[u8; 32]) {
        self.writes += 1;
        self.batch.insert(&tree_node_key(level, index), hash);
    }

    /// Sets one of the ledger's own facts.
    pub fn ledger_fact(&mut self, name: &str, value: &[u8]) {
        self.writes += 1;
        self.batch.insert(named_key(LEDGER_FACT, name), value);
    }

    /// Stores a person's wrapped data key (committed with the first event
    /// or rejection sealed under it, or re-wrapped by a rotation), and
    /// marks the store as holding sealed personal data.
    pub fn wrapped_key<T: Serialize>(&mut self, person: Uuid, record: &T) {
        let json = serde_json::to_vec(record).expect("a wrapped key always serialises");
        self.writes += 2;
        self.batch.insert(&wrapped_key_key(person)[..], json);
        self.batch.insert(SEALED, &[1][..]);
    }

    /// Deletes a person's wrapped data key (erasure).
    pub fn remove_wrapped_key(&mut self, person: Uuid) {
        self.writes += 1;
        self.batch.remove(&wrapped_key_key(person)[..]);
    }

    /// Whether the commit writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }
}

fn wrapped_key_key(person: Uuid) -> [u8; 17] {
    let mut key = [WRAPPED_KEY; 17];
    key[1..].copy_from_slice(person.as_bytes());
    key
}

fn event_key(position: u64) -> [u8; 9] {
    seq_key(EVENT, position)
}

fn seq_key(prefix: u8, n: u64) -> [u8; 9] {
    let mut key = [prefix; 9];
    key[1..].copy_from_slice(&n.to_be_bytes());
    key
}

fn state_key(subject: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(subject.len() + 1);
    key.push(STATE);
    key.extend_from_slice(subject.as_bytes());
    key
}

fn checkpoint_key(name: &str) -> Vec<u8> {
    named_key(CHECKPOINT, name)
}

fn named_key(prefix: u8, name: &str) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(name.as_bytes());
    key
}

fn tree_node_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [TREE_NODE; 10];
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

fn decode_u64(bytes: &[u8], key: &str) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            key: key.to_owned(),
            message: format!("expected 8 bytes, found {}", bytes.len()),
        })
}

/// Decodes a stored JSON value, naming `key` if it does not decode.
fn decode_json<T: DeserializeOwned>(bytes: &[u8], key: impl Into<String>) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.into(),
        message: e.to_string(),
    })
}

impl Store {
    /// Opens (or creates) the database in `dir` (see [`open_db`]).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = open_db(dir, cache_bytes)?;
        Ok(Self {
            shared: std::sync::Arc::new(Shared {
                db: std::sync::RwLock::new(Some(db)),
                dir: dir.to_owned(),
                cache_bytes,
                #[cfg(feature = "test-hooks")]
                state_writes: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Opens the database again, for every clone: after a failed write
    /// sled answers every later call with the same error, so a store
    /// that has room again is reached only through a new handle. What
    /// sled then recovers is a prefix of what was applied, synced before
    /// anything is built on it. Blocking; the old handle must be gone
    /// first, as it holds the directory's lock.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self
            .shared
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(slot.take());
        let db = open_db(&self.shared.dir, self.shared.cache_bytes)?;
        std::fs::File::open(self.shared.dir.join("db"))
            .and_then(|log| log.sync_all())
            .map_err(StoreError::Reopen)?;
        *slot = Some(db);
        Ok(())
    }

    /// The shared handle.
    fn db(&self) -> Result<sled::Db, StoreError> {
        self.shared
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// What `read` reads from the database, or the error of a store that
    /// cannot be read.
    fn scan<T, I>(&self, read: impl FnOnce(sled::Db) -> I) -> Scan<I>
    where
        I: Iterator<Item = Result<T, StoreError>>,
    {
        match self.db() {
            Ok(db) => Scan::Reading(read(db)),
            Err(error) => Scan::Failed(Some(error)),
        }
    }

    /// Applies a commit atomically. Not durable until [`Store::flush`].
    pub fn apply(&self, commit: Commit) -> Result<(), StoreError> {
        self.db()?.apply_batch(commit.batch)?;
        #[cfg(feature = "test-hooks")]
        self.shared
            .state_writes
            .fetch_add(commit.states, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// How many stream state keys the commits applied through this handle
    /// have written.
    #[cfg(feature = "test-hooks")]
    pub fn state_writes(&self) -> u64 {
        self.shared
            .state_writes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The position the stored stream states are a snapshot of, if one
    /// was ever marked. Stores written before snapshots kept every state
    /// current with every commit, and have none.
    pub fn snapshot(&self) -> Result<Option<u64>, StoreError> {
        match self.db()?.get(named_key(LEDGER_FACT, SNAPSHOT_FACT))? {
            None => Ok(None),
            Some(bytes) => decode_u64(&bytes, "snapshot").map(Some),
        }
    }

    /// Makes every applied commit durable. Blocking: call it from a
    /// blocking thread, never from an async task.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db()?.flush()?;
        Ok(())
    }

    pub fn head(&self) -> Result<Head, StoreError> {
        match self.db()?.get(HEAD)? {
            None => Ok(Head::empty()),
            Some(bytes) => decode_json(&bytes, "head"),
        }
    }

    pub fn next_rejection(&self) -> Result<u64, StoreError> {
        match self.db()?.get(NEXT_REJECTION)? {
            None => Ok(1),
            Some(bytes) => decode_u64(&bytes, "next rejection"),
        }
    }

    /// The id run record of the event at `position`: its id, stream
    /// version and digest.
    pub fn id_record(&self, position: u64) -> Result<Option<(Uuid, IdRecord)>, StoreError> {
        let Some((key, run)) = self
            .db()?
            .get_lt(seq_key(ID_RUN, position.saturating_add(1)))?
        else {
            return Ok(None);
        };
        if key.first() != Some(&ID_RUN) {
            return Ok(None);
        }
        let first = decode_u64(&key[1..], "id run key")?;
        let index = (position - first) as usize;
        if index >= run.len() / ID_RECORD {
            return Ok(None);
        }
        IdRecord::from_run(first, &run, index)
            .map(Some)
            .ok_or_else(|| corrupt_run(first))
    }

    /// Every id run in position order, as (first position, ids): what the
    /// in-memory id map is loaded from.
    pub fn id_runs(&self) -> impl Iterator<Item = Result<(u64, Vec<Uuid>), StoreError>> + '_ {
        self.scan(|db| {
            db.scan_prefix([ID_RUN])
                .map(|item| item.map_err(StoreError::from))
        })
        .map(|item: Result<(sled::IVec, sled::IVec), StoreError>| {
            let (key, run) = item?;
            let first = decode_u64(&key[1..], "id run key")?;
            if run.len() % ID_RECORD != 0 {
                return Err(corrupt_run(first));
            }
            let ids = (0..run.len() / ID_RECORD)
                .map(|i| {
                    IdRecord::from_run(first, &run, i)
                        .map(|(id, _)| id)
                        .ok_or_else(|| corrupt_run(first))
                })
                .collect::<Result<_, _>>()?;
            Ok((first, ids))
        })
    }

    /// Removes the per-event id index of earlier versions, if it is there.
    /// Returns how many keys were removed.
    pub fn remove_legacy_ids(&self) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let mut batch = sled::Batch::default();
            let mut keys = 0;
            for item in self.db()?.scan_prefix([LEGACY_ID]).keys().take(10_000) {
                batch.remove(item?);
                keys += 1;
            }
            if keys == 0 {
                break;
            }
            self.db()?.apply_batch(batch)?;
            removed += keys;
        }
        if self.db()?.remove(LEGACY_INDEXED_THROUGH)?.is_some() {
            removed += 1;
        }
        Ok(removed)
    }

    /// A stream's rule state, if the stream exists.
    pub fn state<T: DeserializeOwned>(&self, subject: &str) -> Result<Option<T>, StoreError> {
        match self.db()?.get(state_key(subject))? {
            None => Ok(None),
            Some(bytes) => decode_json(&bytes, format!("state {subject}")).map(Some),
        }
    }

    /// Every stream's rule state, in subject order.
    pub fn states<T: DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<(String, T), StoreError>> + '_ {
        self.scan(|db| {
            db.scan_prefix([STATE])
                .map(|item| item.map_err(StoreError::from))
        })
        .map(|item: Result<(sled::IVec, sled::IVec), StoreError>| {
            let (key, value) = item?;
            let subject = String::from_utf8_lossy(&key[1..]).into_owned();
            let state = decode_json(&value, format!("state {subject}"))?;
            Ok((subject, state))
        })
    }

    /// The raw JSON of the event at `position`.
    pub fn event_json(&self, position: u64) -> Result<Option<StoredJson>, StoreError> {
        if position == 0 {
            return Ok(None);
        }
        let Some((key, chunk)) = self.db()?.get_lt(event_key(position + 1))? else {
            return Ok(None);
        };
        if key.first() != Some(&EVENT) {
            return Ok(None);
        }
        let first = decode_u64(&key[1..], "event key")?;
        Ok(lines(&chunk)
            .nth((position - first) as usize)
            .map(|(offset, len)| StoredJson(chunk.subslice(offset, len))))
    }

    pub fn event(&self, position: u64) -> Result<Option<CommittedEvent>, StoreError> {
        self.event_json(position)?
            .map(|bytes| decode_event(position, &bytes))
            .transpose()
    }

    /// Raw event JSON from `after + 1` up to and including `until`, in
    /// position order.
    pub fn events_json(
        &self,
        after: u64,
        until: u64,
    ) -> impl Iterator<Item = Result<(u64, StoredJson), StoreError>> + use<> {
        let wanted = after.saturating_add(1)..=until;
        self.chunks(after, until).flat_map(move |item| {
            let rows: Vec<Result<(u64, StoredJson), StoreError>> = match item {
                Err(e) => vec![Err(e)],
                Ok(chunk) => chunk
                    .events(&wanted)
                    .map(|(position, offset, len)| {
                        Ok((position, StoredJson(chunk.value.subslice(offset, len))))
                    })
                    .collect(),
            };
            rows
        })
    }

    /// The chunks holding the events from `after + 1` up to and including
    /// `until`, in position order, as sled holds them.
    fn chunks(
        &self,
        after: u64,
        until: u64,
    ) -> impl Iterator<Item = Result<Chunk, StoreError>> + use<> {
        let start = after.saturating_add(1);
        let empty = after >= until;
        self.scan(|db| {
            // The chunk holding `start` begins at or before it.
            let first_key = match db.get_lt(event_key(start.saturating_add(1))) {
                Ok(Some((key, _))) if key.first() == Some(&EVENT) => key.to_vec(),
                _ => event_key(start).to_vec(),
            };
            db.range(first_key..=event_key(until).to_vec()).map(|item| {
                let (key, value) = item?;
                let first = decode_u64(&key[1..], "event key")?;
                Ok(Chunk { first, value })
            })
        })
        .take_while(move |_| !empty)
    }

    /// Decoded events from `after + 1` up to and including `until`, in
    /// position order, decoded on [`DECODERS`] threads while the caller
    /// works on the previous ones: for whole-log replays (export, projection
    /// catch-up), where decoding JSON is most of the cost. Dropping the
    /// iterator stops the threads.
    pub fn replay(
        &self,
        after: u64,
        until: u64,
    ) -> impl Iterator<Item = Result<CommittedEvent, StoreError>> + use<> {
        self.replay_with(after, until, decode_event)
    }

    /// [`Store::replay`] of events with their typed data, read straight
    /// from the stored bytes (no JSON tree of the data is built): what
    /// folds replay.
    pub fn replay_typed(
        &self,
        after: u64,
        until: u64,
    ) -> impl Iterator<Item = Result<TypedEvent, StoreError>> + use<> {
        self.replay_with(after, until, |position, bytes| {
            TypedEvent::from_json(bytes).map_err(|e| corrupt_event(position, e))
        })
    }

    /// [`Store::replay_typed`] with `then` applied to each event on the
    /// decoding threads too, so that the caller's thread only folds.
    pub fn replay_typed_then<F>(
        &self,
        after: u64,
        until: u64,
        then: F,
    ) -> impl Iterator<Item = Result<TypedEvent, StoreError>> + use<F>
    where
        F: Fn(TypedEvent) -> TypedEvent + Send + Clone + 'static,
    {
        self.replay_with(after, until, move |position, bytes| {
            TypedEvent::from_json(bytes)
                .map(&then)
                .map_err(|e| corrupt_event(position, e))
        })
    }

    /// [`Store::replay`] with a decoder of one's own, given each event's
    /// position and stored JSON, run on the decoding threads.
    ///
    /// The reader hands the decoders whole chunks as sled holds them, so
    /// that it does nothing per event (no slice of its own, no count of a
    /// shared page), and each batch stays small: a batch of decoded events
    /// beyond about 128 KiB is an allocation of its own, which the
    /// allocator returns and fetches again, zeroed, batch after batch.
    fn replay_with<T, F>(
        &self,
        after: u64,
        until: u64,
        decode: F,
    ) -> impl Iterator<Item = Result<T, StoreError>> + use<T, F>
    where
        T: Send + 'static,
        F: Fn(u64, &[u8]) -> Result<T, StoreError> + Send + Clone + 'static,
    {
        type Raw = Vec<Result<Chunk, StoreError>>;
        let wanted = after.saturating_add(1)..=until;
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for _ in 0..DECODERS {
            let (to_decoder, from_reader) = std::sync::mpsc::sync_channel::<Raw>(REPLAY_QUEUE);
            let (to_caller, from_decoder) =
                std::sync::mpsc::sync_channel::<Vec<Result<T, StoreError>>>(REPLAY_QUEUE);
            let decode = decode.clone();
            let wanted = wanted.clone();
            spawn("replay-decoder", move || {
                for raw in from_reader {
                    let mut decoded = Vec::with_capacity(REPLAY_BATCH * CHUNK_EVENTS);
                    for chunk in raw {
                        match chunk {
                            Err(e) => decoded.push(Err(e)),
                            Ok(chunk) => decoded.extend(chunk.events(&wanted).map(
                                |(position, offset, len)| {
                                    decode(position, &chunk.value[offset..offset + len])
                                },
                            )),
                        }
                    }
                    if to_caller.send(decoded).is_err() {
                        return;
                    }
                }
            });
            inputs.push(to_decoder);
            outputs.push(from_decoder);
        }
        let chunks = self.chunks(after, until);
        spawn("replay-reader", move || {
            let mut chunks = chunks.peekable();
            let mut turn = 0;
            while chunks.peek().is_some() {
                let batch: Vec<_> = chunks.by_ref().take(REPLAY_BATCH).collect();
                // Batches go round-robin, so the caller reads them back in
                // order by visiting the decoders in the same rotation.
                if inputs[turn % DECODERS].send(batch).is_err() {
                    return;
                }
                turn += 1;
            }
        });
        let mut turn = 0;
        std::iter::from_fn(move || {
            let batch = outputs[turn % DECODERS].recv().ok()?;
            turn += 1;
            Some(batch)
        })
        .flatten()
    }

    /// Decoded events from `after + 1` up to and including `until`.
    pub fn events(
        &self,
        after: u64,
        until: u64,
    ) -> impl Iterator<Item = Result<CommittedEvent, StoreError>> + use<> {
        self.events_json(after, until)
            .map(|item| item.and_then(|(position, bytes)| decode_event(position, &bytes)))
    }

    /// Rejection records from sequence `after + 1`, in order.
    pub fn rejections(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + use<> {
        self.scan(|db| {
            db.range(seq_key(REJECTION, after.saturating_add(1))..seq_key(REJECTION + 1, 0))
                .map(|item| item.map_err(StoreError::from))
        })
        .map(|item: Result<(sled::IVec, sled::IVec), StoreError>| {
            let (key, value) = item?;
            Ok((decode_u64(&key[1..], "rejection key")?, value))
        })
    }

    /// Every wrapped data key, in person order.
    pub fn wrapped_keys<T: DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<T, StoreError>> + '_ {
        self.scan(|db| {
            db.scan_prefix([WRAPPED_KEY])
                .values()
                .map(|item| item.map_err(StoreError::from))
        })
        .map(|value: Result<sled::IVec, StoreError>| decode_json(&value?, "wrapped key"))
    }

    /// The wrapped data key stored for `person`, if any: one `get`.
    pub fn wrapped_key<T: DeserializeOwned>(&self, person: Uuid) -> Result<Option<T>, StoreError> {
        let Some(value) = self.db()?.get(wrapped_key_key(person))? else {
            return Ok(None);
        };
        decode_json(&value, "wrapped key").map(Some)
    }

    /// Everyone a wrapped data key is stored for, in person order, read
    /// from the keys alone.
    pub fn wrapped_key_people(&self) -> impl Iterator<Item = Result<Uuid, StoreError>> + '_ {
        self.scan(|db| {
            db.scan_prefix([WRAPPED_KEY])
                .keys()
                .map(|item| item.map_err(StoreError::from))
        })
        .map(|key: Result<sled::IVec, StoreError>| {
            let key = key?;
            Uuid::from_slice(&key[1..]).map_err(|e| StoreError::Corrupt {
                key: "wrapped key".into(),
                message: e.to_string(),
            })
        })
    }

    /// Whether any data key was ever committed: then profiles are sealed
    /// and the master key file must be there.
    pub fn holds_sealed(&self) -> Result<bool, StoreError> {
        Ok(self.db()?.contains_key(SEALED)?
            || self.db()?.scan_prefix([WRAPPED_KEY]).next().is_some())
    }

    pub fn checkpoint(&self, name: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.db()?.get(checkpoint_key(name))?)
    }

    /// A stored complete subtree of the Merkle tree.
    pub fn tree_node(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let Some(bytes) = self.db()?.get(tree_node_key(level, index))? else {
            return Ok(None);
        };
        bytes
            .as_ref()
            .try_into()
            .map(Some)
            .map_err(|_| StoreError::Corrupt {
                key: format!("tree node {level}/{index}"),
                message: format!("expected 32 bytes, found {}", bytes.len()),
            })
    }

    /// One of the ledger's own facts.
    pub fn ledger_fact(&self, name: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.db()?.get(named_key(LEDGER_FACT, name))?)
    }

    /// Overwrites the stored bytes of one event, bypassing every check. Only
    /// for tests of `verify` that simulate tampering with the disk.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn tamper(&self, position: u64, json: &[u8]) -> Result<(), StoreError> {
        let Some((key, chunk)) = self.db()?.get_lt(event_key(position + 1))? else {
            return Ok(());
        };
        let first = decode_u64(&key[1..], "event key")?;
        let mut value = Vec::with_capacity(chunk.len() + json.len());
        for (i, (offset, len)) in lines(&chunk).enumerate() {
            if first + i as u64 == position {
                value.extend_from_slice(json);
            } else {
                value.extend_from_slice(&chunk[offset..offset + len]);
            }
            value.push(b'\n');
        }
        self.db()?.insert(key, value)?;
        self.db()?.flush()?;
        Ok(())
    }

    /// Removes every id run, as in a store written before they existed.
    /// Only for tests of their rebuild. Returns how many were removed.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn forget_id_runs(&self) -> Result<u64, StoreError> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for key in self.db()?.scan_prefix([ID_RUN]).keys() {
            batch.remove(key?);
            removed += 1;
        }
        self.db()?.apply_batch(batch)?;
        self.db()?.flush()?;
        Ok(removed)
    }

    /// Removes every stored tree node and the fact that the tree covers
    /// the log, as in a store written before the tree existed. Only for
    /// tests of its rebuild. Returns how many nodes were removed.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn forget_tree(&self) -> Result<u64, StoreError> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for key in self.db()?.scan_prefix([TREE_NODE]).keys() {
            batch.remove(key?);
            removed += 1;
        }
        batch.remove(named_key(LEDGER_FACT, "tree"));
        self.db()?.apply_batch(batch)?;
        self.db()?.flush()?;
        Ok(removed)
    }

    /// Bytes on disk, as sled reports them.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db()?.size_on_disk()?)
    }
}

/// Opens (or creates) the database in `dir`.
///
/// sled releases its directory lock from background threads some
/// milliseconds after the last handle is dropped, so a ledger reopened
/// right after [`crate::ledger::Ledger::close`] may find the lock still
/// held. Lock contention is therefore retried for up to
/// [`LOCK_PATIENCE`]; a directory held by a live process still fails.
fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Pages larger than a quarter segment go to separate blob
            // files, which are slow to write and read; 8 MiB segments
            // keep every chunk of events inline.
            .segment_size(8 * 1024 * 1024)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Keys copied by [`Store::copy_to`] in one batch of the copy.
const COPY_BATCH: usize = 4_096;

/// The prefixes whose keys are written once and never changed: event
/// chunks and id runs are keyed by the first position of the commit that
/// wrote them, rejections by their sequence, tree nodes are complete
/// subtrees. A copy's second pass takes only the new ones.
const APPEND_ONLY: [u8; 4] = [EVENT, ID_RUN, REJECTION, TREE_NODE];

/// The groups of append-only keys, each in the order its keys are
/// written: one a prefix, and one a tree level (a commit writes nodes of
/// several levels, and level-major order is not the order of writing).
fn append_only_groups() -> impl Iterator<Item = Vec<u8>> {
    [EVENT, ID_RUN, REJECTION]
        .into_iter()
        .map(|prefix| vec![prefix])
        .chain((0..=u8::MAX).map(|level| vec![TREE_NODE, level]))
}

/// A copy of a store in the making ([`Store::copy_to`], then
/// [`Store::finish_copy`]).
#[derive(Debug)]
pub struct StoreCopy {
    copy: Store,
    /// The last key of each append-only group before the first pass began:
    /// the first pass copied every key up to it, since they never change.
    marks: Vec<(Vec<u8>, Option<sled::IVec>)>,
    /// The keys written to the copy, both passes.
    keys: u64,
}

impl Store {
    /// The first pass of a copy into a new store in `dir`: every key, while
    /// commits go on. sled's iterators are no snapshot, so the copy is not
    /// yet consistent: [`Store::finish_copy`], with commits paused, makes it so.
    pub fn copy_to(&self, dir: &Path) -> Result<StoreCopy, StoreError> {
        let db = self.db()?;
        let marks = append_only_groups()
            .map(|group| {
                let last = db.scan_prefix(&group).next_back().transpose()?;
                Ok((group, last.map(|(key, _)| key)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let copy = Self::open(dir, 64 * 1024 * 1024)?;
        let copy_db = copy.db()?;
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        let mut keys = 0;
        for item in db.iter() {
            let (key, value) = item?;
            batch.insert(key, value);
            pending += 1;
            keys += 1;
            if pending == COPY_BATCH {
                copy_db.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        copy_db.apply_batch(batch)?;
        Ok(StoreCopy { copy, marks, keys })
    }

    /// The second pass, with commits paused: the append-only keys written
    /// since the first began, and every other key brought level (changed
    /// ones rewritten, removed ones removed). Flushes the copy and returns
    /// how many keys were written and the copy's head.
    pub fn finish_copy(&self, copy: StoreCopy) -> Result<(u64, Head), StoreError> {
        use std::ops::Bound;
        let StoreCopy {
            copy,
            marks,
            mut keys,
        } = copy;
        let db = self.db()?;
        let copy_db = copy.db()?;
        let mut batch = sled::Batch::default();
        for (group, mark) in marks {
            let since = match mark {
                Some(last) => db
                    .range((Bound::Excluded(last), Bound::Unbounded))
                    .take_while(move |item| {
                        item.as_ref()
                            .map_or(true, |(key, _)| key.starts_with(&group))
                    })
                    .collect::<Vec<_>>(),
                None => db.scan_prefix(&group).collect(),
            };
            for item in since {
                let (key, value) = item?;
                batch.insert(key, value);
                keys += 1;
            }
        }
        // The other keys lie between the append-only prefixes.
        let mut bounds = APPEND_ONLY;
        bounds.sort_unstable();
        let mut from: Option<u8> = None;
        for until in bounds.iter().copied().map(Some).chain([None]) {
            let range = (
                from.map_or(Bound::Unbounded, |b| {
                    Bound::Included(sled::IVec::from(&[b + 1]))
                }),
                until.map_or(Bound::Unbounded, |b| {
                    Bound::Excluded(sled::IVec::from(&[b]))
                }),
            );
            for item in db.range(range.clone()) {
                let (key, value) = item?;
                if copy_db.get(&key)?.as_ref() != Some(&value) {
                    batch.insert(key, value);
                    keys += 1;
                }
            }
            for item in copy_db.range(range) {
                let (key, _) = item?;
                if !db.contains_key(&key)? {
                    batch.remove(key);
                }
            }
            from = until;
        }
        copy_db.apply_batch(batch)?;
        copy_db.flush()?;
        let head = copy.head()?;
        Ok((keys, head))
    }
}

/// Whether another process holds the store in `dir` open: sled keeps an
/// exclusive lock on its `db` file while a handle is open, and the lock
/// goes with the process, so a killed server holds nothing.
pub fn held_elsewhere(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join("db")) else {
        return false;
    };
    // Through fs2 by name: newer standard libraries have a method of the
    // same name, with another error type.
    match fs2::FileExt::try_lock_shared(&file) {
        // The lock is released when `file` closes, at once.
        Ok(()) => false,
        Err(error) => error.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Starts a named thread of a replay.
fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .expect("the system can start a thread");
}

/// One stored chunk: the position of its first event and its JSON Lines.
struct Chunk {
    first: u64,
    value: sled::IVec,
}

impl Chunk {
    /// The position, offset and length of each of the chunk's events
    /// within `wanted`.
    fn events<'a>(
        &'a self,
        wanted: &'a std::ops::RangeInclusive<u64>,
    ) -> impl Iterator<Item = (u64, usize, usize)> + 'a {
        lines(&self.value)
            .enumerate()
            .map(|(i, (offset, len))| (self.first + i as u64, offset, len))
            .filter(|(position, _, _)| wanted.contains(position))
    }
}

/// The (offset, length) of each line of a chunk, without its newline.
/// Compact JSON never holds a raw newline, so lines are events.
fn lines(chunk: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset >= chunk.len() {
            return None;
        }
        let len = memchr::memchr(b'\n', &chunk[offset..]).unwrap_or(chunk.len() - offset);
        let line = (offset, len);
        offset += len + 1;
        Some(line)
    })
}

fn decode_event(position: u64, bytes: &[u8]) -> Result<CommittedEvent, StoreError> {
    CommittedEvent::from_json(bytes).map_err(|e| corrupt_event(position, e))
}

fn corrupt_run(first: u64) -> StoreError {
    StoreError::Corrupt {
        key: format!("id run {first}"),
        message: "not a whole number of id records".into(),
    }
}

fn corrupt_event(position: u64, error: InvalidEvent) -> StoreError {
    StoreError::Corrupt {
        key: format!("event {position}"),
        message: error.0,
    }
}

#[cfg(test)]
mod tests {
    use super::{Commit, Head, REPAIR, Store, StoreError};

    /// Every key and value of a store, in key order.
    fn contents(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        store
            .db()
            .unwrap()
            .iter()
            .map(|item| {
                let (key, value) = item.unwrap();
                (key.to_vec(), value.to_vec())
            })
            .collect()
    }

    fn head(position: u64) -> Head {
        Head {
            position,
            hash: format!("{position:064x}"),
            recordedtime: "2026-12-06T00:00:00Z".into(),
        }
    }

    /// What changes between a copy's two passes reaches the copy: new
    /// chunks, rejections and tree nodes of a level the first pass saw or
    /// not, a stream state rewritten, a wrapped key removed, a new head.
    #[test]
    fn a_copys_second_pass_brings_every_change_since_the_first() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let store = Store::open(dirs[0].path(), 8 << 20).unwrap();
        let mut first = Commit::default();
        first.events(1, &[b"{\"a\":1}", b"{\"a\":2}"]);
        first.state("person/1", &serde_json::json!({"version": 1}));
        first.wrapped_key(
            uuid::Uuid::from_u128(7),
            &serde_json::json!({"wrapped": "k"}),
        );
        first.rejection(1, &serde_json::json!({"code": "invalid_event"}));
        first.tree_node(4, 0, &[1; 32]);
        first.head(&head(2));
        store.apply(first).unwrap();

        let copy = store.copy_to(&dirs[1].path().join("copy")).unwrap();
        let mut second = Commit::default();
        second.events(3, &[b"{\"a\":3}"]);
        second.state("person/1", &serde_json::json!({"version": 2}));
        second.remove_wrapped_key(uuid::Uuid::from_u128(7));
        second.rejection(2, &serde_json::json!({"code": "forbidden"}));
        second.tree_node(3, 0, &[2; 32]);
        second.tree_node(5, 0, &[3; 32]);
        second.head(&head(3));
        store.apply(second).unwrap();

        let (_, copied_head) = store.finish_copy(copy).unwrap();
        assert_eq!(copied_head, head(3));
        let copy = Store::open(&dirs[1].path().join("copy"), 8 << 20);
        // The copy's handle is still being released by sled's threads;
        // `open` waits for it.
        assert_eq!(contents(&copy.unwrap()), contents(&store));
    }

    /// A replay hands its decoders whole chunks, and chunks start where
    /// commits did, not every [`super::CHUNK_EVENTS`] positions: whatever
    /// the range, each event from `after + 1` through `until` is decoded
    /// once, in order, as the ordered read gives it, across many batches
    /// and starting or ending inside a chunk.
    #[test]
    fn a_replay_decodes_each_event_of_its_range_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let events: Vec<Vec<u8>> = (1..=1_000u64)
            .map(|p| format!("{{\"position\":{p}}}").into_bytes())
            .collect();
        let mut first = 0;
        for size in [1, 3, 7, 2, 250, 5, 600, 1, 131].into_iter().cycle() {
            let last = (first + size).min(events.len());
            let jsons: Vec<&[u8]> = events[first..last].iter().map(Vec::as_slice).collect();
            let mut commit = Commit::default();
            commit.events(first as u64 + 1, &jsons);
            store.apply(commit).unwrap();
            first = last;
            if first == events.len() {
                break;
            }
        }
        let ranges = [
            (0, 1_000),
            (0, 1),
            (1, 3),
            (2, 7),
            (3, 4),
            (5, 999),
            (130, 700),
            (999, 1_000),
            (1_000, 1_000),
            (7, 5),
        ];
        for (after, until) in ranges {
            let expected: Vec<(u64, Vec<u8>)> = (after + 1..=until)
                .map(|p| (p, events[p as usize - 1].clone()))
                .collect();
            let replayed: Vec<(u64, Vec<u8>)> = store
                .replay_with(after, until, |p, bytes| Ok((p, bytes.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(replayed, expected, "replay after {after} until {until}");
            let read: Vec<(u64, Vec<u8>)> = store
                .events_json(after, until)
                .map(|row| row.map(|(p, json)| (p, json.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(read, expected, "read after {after} until {until}");
        }
    }

    /// sled's own words for a failed checksum ("Read corrupted data at
    /// file offset None") become a refusal that says what to do.
    #[test]
    fn sled_corruption_says_the_store_is_damaged_and_what_to_do() {
        let error = StoreError::from(sled::Error::Corruption { at: None, bt: () });
        assert!(matches!(error, StoreError::Damaged(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("the store is damaged"), "{message}");
        assert!(message.contains(REPAIR), "{message}");
        let other = StoreError::from(sled::Error::Unsupported("x".into()));
        assert!(matches!(other, StoreError::Sled(_)), "{other:?}");
    }
}
