//! The id index: which event, if any, holds an id, for idempotency forever.
//!
//! A sled key per event would cost the append path as much as storing the
//! event itself (random keys, one leaf update each). Instead each commit
//! writes its events' ids, stream versions and digests as id runs in
//! position order (see `crate::store`), in the same atomic batch as the
//! events, and the writer keeps an in-memory map from a keyed 64-bit hash
//! of each id to its position: 16 bytes an event, plus the map's slack.
//!
//! A hit is confirmed against the run record at that position, so hash
//! collisions cost a read, never a wrong answer; colliding ids keep all
//! their positions. The hash is keyed per process, so publishers cannot
//! choose ids that collide.
//!
//! A ledger that writes loads the map from the runs on a thread of its
//! own as soon as it opens ([`Loading`]), so that a first write arriving
//! later finds it ready; one arriving earlier waits for it. Read-only
//! tools never load it, unless they write after all: then the first
//! submission loads it. Runs missing at the end of the log (a store
//! written before runs existed) are rebuilt from the events first.

use foldhash::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use uuid::Uuid;

use crate::chain;
use crate::store::{Commit, IdRecord, Store, StoreError};

/// Ids to positions, for the ledger's writer.
pub struct IdIndex {
    /// SipHash with a key of this process: publishers choose ids, and must
    /// not be able to choose colliding ones. The maps below, keyed by its
    /// output, use a fast hash.
    hasher: std::hash::RandomState,
    /// Keyed hash of an id to the position of the first event with that hash.
    positions: HashMap<u64, u64>,
    /// Further positions of hashes shared by several ids.
    collisions: HashMap<u64, Vec<u64>>,
}

impl std::fmt::Debug for IdIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdIndex")
            .field("ids", &self.positions.len())
            .finish_non_exhaustive()
    }
}

/// Events read at a time when runs are rebuilt from the log.
const REBUILD_CHUNK: u64 = 4096;

impl IdIndex {
    /// Loads the map from the store's id runs, rebuilding the runs of any
    /// events at the end of the log that have none.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let never = AtomicBool::new(false);
        Ok(Self::load_unless(store, &never)?.expect("never stopped"))
    }

    /// [`IdIndex::load`], given up (`None`) once `stop` is set: the ledger
    /// closed before it needed the index.
    fn load_unless(store: &Store, stop: &AtomicBool) -> Result<Option<Self>, StoreError> {
        let started = std::time::Instant::now();
        let mut index = Self {
            hasher: std::hash::RandomState::new(),
            positions: HashMap::default(),
            collisions: HashMap::default(),
        };
        let mut covered = 0;
        for run in store.id_runs() {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let (first, ids) = run?;
            if ids.is_empty() {
                continue;
            }
            index.positions.reserve(ids.len());
            for (i, id) in ids.iter().enumerate() {
                index.insert(*id, first + i as u64);
            }
            covered = first + ids.len() as u64 - 1;
        }
        let head = store.head()?.position;
        if covered < head && !index.rebuild(store, covered, head, stop)? {
            return Ok(None);
        }
        tracing::info!(
            ids = index.len(),
            took = ?started.elapsed(),
            "id index loaded"
        );
        Ok(Some(index))
    }

    /// Writes the runs of events `after + 1 ..= head` from the events
    /// themselves, and drops the per-event index of earlier versions;
    /// false when `stop` gave it up (the runs written so far stay valid).
    fn rebuild(
        &mut self,
        store: &Store,
        after: u64,
        head: u64,
        stop: &AtomicBool,
    ) -> Result<bool, StoreError> {
        tracing::info!(
            from = after + 1,
            to = head,
            "rebuilding id runs from the log"
        );
        let mut from = after;
        while from < head {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let until = (from + REBUILD_CHUNK).min(head);
            let mut records = Vec::with_capacity((until - from) as usize);
            for event in store.events(from, until) {
                let event = event?;
                let data = chain::canonical_data(&event.envelope);
                let digest = chain::digest(&event.envelope, &data);
                self.insert(event.envelope.id, event.ledger.position);
                records.push((event.envelope.id, event.ledger.streamversion, digest));
            }
            let mut commit = Commit::default();
            commit.ids(from + 1, &records);
            store.apply(commit)?;
            from = until;
        }
        let removed = store.remove_legacy_ids()?;
        if removed > 0 {
            tracing::info!(
                keys = removed,
                "removed the per-event id index of an earlier version"
            );
        }
        store.flush()?;
        Ok(true)
    }

    /// Records that the event at `position` has `id`.
    pub fn insert(&mut self, id: Uuid, position: u64) {
        self.insert_hashed(self.hasher.hash_one(id), position);
    }

    fn insert_hashed(&mut self, hash: u64, position: u64) {
        use std::collections::hash_map::Entry;
        match self.positions.entry(hash) {
            Entry::Vacant(slot) => {
                slot.insert(position);
            }
            // The map is only ever given new ids: this is another id with
            // the same hash.
            Entry::Occupied(_) => self.collisions.entry(hash).or_default().push(position),
        }
    }

    /// The committed event with `id`, if there is one: confirmed against
    /// its id run record.
    pub fn get(&self, store: &Store, id: Uuid) -> Result<Option<IdRecord>, StoreError> {
        self.get_hashed(store, self.hasher.hash_one(id), id)
    }

    fn get_hashed(
        &self,
        store: &Store,
        hash: u64,
        id: Uuid,
    ) -> Result<Option<IdRecord>, StoreError> {
        let Some(first) = self.positions.get(&hash) else {
            return Ok(None);
        };
        let more = self.collisions.get(&hash).into_iter().flatten();
        for position in std::iter::once(first).chain(more) {
            match store.id_record(*position)? {
                Some((found, record)) if found == id => return Ok(Some(record)),
                Some(_) => {}
                None => {
                    return Err(StoreError::Corrupt {
                        key: format!("id run of position {position}"),
                        message: "the id index names a position without a record".into(),
                    });
                }
            }
        }
        Ok(None)
    }

    /// How many ids the map holds.
    fn len(&self) -> usize {
        self.positions.len() + self.collisions.values().map(Vec::len).sum::<usize>()
    }
}

/// The id index loading on a thread of its own, started when a ledger
/// that writes opens. Nothing is committed before the writer takes the
/// index, so the log it loads does not move meanwhile.
pub(super) struct Loading {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<Option<IdIndex>, StoreError>>,
}

impl Loading {
    /// Starts loading the index of `store`.
    pub(super) fn start(store: Store) -> Result<Self, StoreError> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("ledger-ids".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || IdIndex::load_unless(&store, &stop)
            })
            .map_err(|e| StoreError::Corrupt {
                key: "id index".into(),
                message: format!("cannot start the loading thread: {e}"),
            })?;
        Ok(Self { stop, thread })
    }

    /// The index, once loaded: the first submission waits here.
    pub(super) fn wait(self) -> Result<IdIndex, StoreError> {
        let loaded = self.thread.join().map_err(|_| StoreError::Corrupt {
            key: "id index".into(),
            message: "the loading thread panicked".into(),
        })?;
        Ok(loaded?.expect("only a cancelled load stops"))
    }

    /// Gives the load up and waits for its thread, which holds the store
    /// open: the ledger is closing.
    pub(super) fn cancel(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids whose hashes collide keep all their positions, and each is
    /// found at its own.
    #[test]
    fn colliding_hashes_keep_every_id() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path(), 1 << 20).expect("the store opens");
        let ids: Vec<Uuid> = (1..=3u128).map(Uuid::from_u128).collect();
        let records: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u64 + 1, [i as u8; 32]))
            .collect();
        let mut commit = Commit::default();
        commit.ids(1, &records);
        store.apply(commit).expect("the runs are written");

        let mut index = IdIndex::load(&store).expect("the index loads");
        assert_eq!(index.len(), 3);
        // Make the first two share a hash, as if the hasher had collided.
        index.positions.clear();
        index.insert_hashed(7, 1);
        index.insert_hashed(7, 2);
        index.insert(ids[2], 3);
        assert_eq!(index.len(), 3);
        for (id, position) in [(ids[0], 1), (ids[1], 2)] {
            let found = index.get_hashed(&store, 7, id).expect("reads");
            assert_eq!(found.map(|r| r.position), Some(position));
        }
        let other = Uuid::from_u128(99);
        assert_eq!(index.get_hashed(&store, 7, other).expect("reads"), None);
        assert_eq!(index.get(&store, other).expect("reads"), None);
        let third = index.get(&store, ids[2]).expect("reads").expect("found");
        assert_eq!((third.position, third.streamversion), (3, 3));
        assert_eq!(third.digest, [2; 32]);
    }

    /// The index loaded on its own thread is the whole index; a load
    /// given up (the ledger closing first) ends and lets the store go.
    #[test]
    fn a_load_in_the_background_is_whole_and_one_given_up_ends() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path(), 1 << 20).expect("the store opens");
        let ids: Vec<Uuid> = (1..=3000u128).map(Uuid::from_u128).collect();
        let records: Vec<_> = ids.iter().map(|id| (*id, 1, [0; 32])).collect();
        let mut commit = Commit::default();
        commit.ids(1, &records);
        store.apply(commit).expect("the runs are written");

        let index = Loading::start(store.clone())
            .expect("starts")
            .wait()
            .expect("loads");
        assert_eq!(index.len(), ids.len());
        let last = index.get(&store, ids[2999]).expect("reads");
        assert_eq!(last.map(|r| r.position), Some(3000));

        Loading::start(store.clone()).expect("starts").cancel();
    }
}
