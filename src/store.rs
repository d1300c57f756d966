//! The durable log on sled: the only module that knows sled's keys.
//!
//! Everything lives in one sled tree under one-byte key prefixes, so that a
//! commit (events, their indexes, the rule state they change, the new head
//! and any rejections) is one `apply_batch`, which sled recovers atomically:
//! after a crash either all of a commit is there or none of it.
//!
//! | key | value |
//! |---|---|
//! | `E` position (u64 BE) | the committed event's JSON |
//! | `I` event id (16 bytes) | position, stream version, content digest |
//! | `T` subject | the stream's state (JSON): the rule state and the positions of its events |
//! | `R` sequence (u64 BE) | a rejection record (JSON) |
//! | `H` | the head: position, hash, recorded time |
//! | `N` | the next rejection sequence |
//! | `C` name | a checkpoint owned by another module (projections, outbox) |
//!
//! Nothing written here is durable until [`Store::flush`] returns; callers
//! acknowledge nothing before it.

use std::path::Path;

use rotation_events::CommittedEvent;
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

const EVENT: u8 = b'E';
const ID: u8 = b'I';
const STATE: u8 = b'T';
const REJECTION: u8 = b'R';
const HEAD: &[u8] = b"H";
const NEXT_REJECTION: &[u8] = b"N";
const CHECKPOINT: u8 = b'C';

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage holds an undecodable record at {key}: {message}")]
    Corrupt { key: String, message: String },
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
    fn encode(&self) -> [u8; 48] {
        let mut out = [0; 48];
        out[..8].copy_from_slice(&self.position.to_be_bytes());
        out[8..16].copy_from_slice(&self.streamversion.to_be_bytes());
        out[16..].copy_from_slice(&self.digest);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            position: u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?),
            streamversion: u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?),
            digest: bytes.get(16..48)?.try_into().ok()?,
        })
    }
}

/// The sled database behind the ledger.
#[derive(Clone)]
pub struct Store {
    /// sled handles are cheap clones of one shared database.
    db: sled::Db,
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
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit")
            .field("events", &self.events)
            .finish()
    }
}

impl Commit {
    /// Adds a committed event with its id index. The stream index is the
    /// stream's state, which lists its positions.
    pub fn event(&mut self, event: &CommittedEvent, json: &[u8], digest: [u8; 32]) {
        let position = event.ledger.position;
        self.writes += 1;
        self.batch.insert(&event_key(position), json);
        let record = IdRecord {
            position,
            streamversion: event.ledger.streamversion,
            digest,
        };
        self.writes += 1;
        self.batch
            .insert(&id_key(event.envelope.id), &record.encode()[..]);
        self.events += 1;
    }

    /// Sets a stream's rule state.
    pub fn state<T: Serialize>(&mut self, subject: &str, state: &T) {
        let json = serde_json::to_vec(state).expect("rule state always serialises");
        self.writes += 1;
        self.batch.insert(state_key(subject), json);
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

    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }
}

fn event_key(position: u64) -> [u8; 9] {
    seq_key(EVENT, position)
}

fn seq_key(prefix: u8, n: u64) -> [u8; 9] {
    let mut key = [prefix; 9];
    key[1..].copy_from_slice(&n.to_be_bytes());
    key
}

fn id_key(id: Uuid) -> [u8; 17] {
    let mut key = [ID; 17];
    key[1..].copy_from_slice(id.as_bytes());
    key
}

fn state_key(subject: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(subject.len() + 1);
    key.push(STATE);
    key.extend_from_slice(subject.as_bytes());
    key
}

fn checkpoint_key(name: &str) -> Vec<u8> {
    let mut key = vec![CHECKPOINT];
    key.extend_from_slice(name.as_bytes());
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

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // sled's page cache; the working set of rule state and recent
            // events fits well within this.
            .cache_capacity(512 * 1024 * 1024)
            .open()?;
        Ok(Self { db })
    }

    /// Applies a commit atomically. Not durable until [`Store::flush`].
    pub fn apply(&self, commit: Commit) -> Result<(), StoreError> {
        self.db.apply_batch(commit.batch)?;
        Ok(())
    }

    /// Makes every applied commit durable. Blocking: call it from a
    /// blocking thread, never from an async task.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn head(&self) -> Result<Head, StoreError> {
        match self.db.get(HEAD)? {
            None => Ok(Head::empty()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                key: "head".into(),
                message: e.to_string(),
            }),
        }
    }

    pub fn next_rejection(&self) -> Result<u64, StoreError> {
        match self.db.get(NEXT_REJECTION)? {
            None => Ok(1),
            Some(bytes) => decode_u64(&bytes, "next rejection"),
        }
    }

    pub fn id(&self, id: Uuid) -> Result<Option<IdRecord>, StoreError> {
        match self.db.get(id_key(id))? {
            None => Ok(None),
            Some(bytes) => IdRecord::decode(&bytes)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt {
                    key: format!("id {id}"),
                    message: "short id record".into(),
                }),
        }
    }

    /// A stream's rule state, if the stream exists.
    pub fn state<T: DeserializeOwned>(&self, subject: &str) -> Result<Option<T>, StoreError> {
        match self.db.get(state_key(subject))? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: format!("state {subject}"),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Every stream's rule state, in subject order.
    pub fn states<T: DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<(String, T), StoreError>> + '_ {
        self.db.scan_prefix([STATE]).map(|item| {
            let (key, value) = item?;
            let subject = String::from_utf8_lossy(&key[1..]).into_owned();
            let state = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                key: format!("state {subject}"),
                message: e.to_string(),
            })?;
            Ok((subject, state))
        })
    }

    /// The raw JSON of the event at `position`.
    pub fn event_json(&self, position: u64) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.db.get(event_key(position))?)
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
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + use<> {
        let range = event_key(after.saturating_add(1))..=event_key(until);
        let empty = after >= until;
        self.db
            .range(range)
            .take_while(move |_| !empty)
            .map(|item| {
                let (key, value) = item?;
                Ok((decode_u64(&key[1..], "event key")?, value))
            })
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
        self.db
            .range(seq_key(REJECTION, after.saturating_add(1))..seq_key(REJECTION + 1, 0))
            .map(|item| {
                let (key, value) = item?;
                Ok((decode_u64(&key[1..], "rejection key")?, value))
            })
    }

    pub fn checkpoint(&self, name: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.db.get(checkpoint_key(name))?)
    }

    /// Overwrites the stored bytes of one event, bypassing every check. Only
    /// for tests of `verify` that simulate tampering with the disk.
    #[doc(hidden)]
    pub fn tamper(&self, position: u64, json: &[u8]) -> Result<(), StoreError> {
        self.db.insert(event_key(position), json)?;
        self.db.flush()?;
        Ok(())
    }

    /// Bytes on disk, as sled reports them.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

fn decode_event(position: u64, bytes: &[u8]) -> Result<CommittedEvent, StoreError> {
    CommittedEvent::from_json(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("event {position}"),
        message: e.0,
    })
}
