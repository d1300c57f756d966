//! What the ledger knows of a ledger group (contract section 11): whether
//! this node may write, how far the group's stream has stored the log (no
//! submission is answered before it), events decided by the writer
//! applied on a follower, and the data keys that travel between nodes.
//! The NATS side (lease, stream, key bucket) is `crate::nats::group`'s.

use std::sync::Arc;

use futures::future::BoxFuture;
use uuid::Uuid;

use super::{Ledger, RestoreError};
use crate::personal::{GroupKey, KeyError};
use crate::store::Head;

/// Who may write through this ledger, and what its answers wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// A single ledger: every durable commit is answered at once.
    Single,
    /// The group's writer: a submission is answered once its events are
    /// durable here and the group's stream has stored every position up to
    /// the durable head it was answered at (`replicated`).
    Writer { replicated: u64 },
    /// A follower, or a writer that lost its lease: submissions are
    /// refused with [`LedgerError::NotWriter`](super::LedgerError::NotWriter),
    /// and every answer still waiting for the stream fails with it.
    Follower,
}

/// Where a writer's new data keys go before any event sealed under them is
/// answered, and where an erasure's destroyed keys are purged: the group's
/// key bucket.
pub trait KeySink: Send + Sync + std::fmt::Debug {
    /// Stores each person's key, wrapped under the group key.
    fn publish(&self, keys: Vec<(Uuid, Vec<u8>)>) -> BoxFuture<'_, Result<(), String>>;
    /// Removes each person's key and every earlier revision of it.
    fn purge(&self, people: Vec<Uuid>) -> BoxFuture<'_, Result<(), String>>;
}

impl Ledger {
    /// Sets who may write. Only the group's runtime calls it; a ledger
    /// opens as [`Gate::Single`].
    pub fn set_gate(&self, gate: Gate) {
        let _ = gate;
        todo!("ledger group: gate")
    }

    /// The gate now.
    pub fn gate(&self) -> Gate {
        todo!("ledger group: gate")
    }

    /// The group's stream has stored every position up to `position`:
    /// answers waiting for it go out. Ignored unless the gate is
    /// [`Gate::Writer`]; never moves back.
    pub fn set_replicated(&self, position: u64) {
        let _ = position;
        todo!("ledger group: replicated")
    }

    /// Sends new data keys to `sink` before answering, and purges erased
    /// ones there (group writer only).
    pub fn set_key_sink(&self, sink: Option<Arc<dyn KeySink>>) {
        let _ = sink;
        todo!("ledger group: key sink")
    }

    /// Starts applying events decided by the group's writer after this
    /// ledger's head.
    pub fn apply(&self) -> Result<Apply, RestoreError> {
        todo!("ledger group: apply")
    }

    /// `person`'s data key wrapped under `group_key`, for the key bucket;
    /// `None` when this ledger holds none for them.
    pub fn export_key(&self, person: Uuid, group_key: &GroupKey) -> Option<Vec<u8>> {
        let _ = (person, group_key);
        todo!("ledger group: export key")
    }

    /// Installs a key from the group's bucket (wrapped under `group_key`);
    /// it is stored with the first event applied that is sealed under it.
    /// Whether it was new here.
    pub fn install_key(
        &self,
        person: Uuid,
        wrapped: &[u8],
        group_key: &GroupKey,
    ) -> Result<bool, KeyError> {
        let _ = (person, wrapped, group_key);
        todo!("ledger group: install key")
    }

    /// The people whose profiles in `json` (a committed event) are sealed
    /// under a key this ledger does not hold: a follower waits for them in
    /// the key bucket before it applies the event.
    pub fn missing_keys(&self, json: &[u8]) -> Vec<Uuid> {
        let _ = json;
        todo!("ledger group: missing keys")
    }
}

/// Events decided by the writer, applied in order on a follower: each is
/// checked against the chain (position, `prevhash`, hash), committed with
/// the position, recorded time and hash it had, through the one write
/// path (rules state, id index, Merkle tree and keys follow; an applied
/// `person.erased` destroys the key and rotates the master key as the
/// writer's erasure did).
#[derive(Debug)]
pub struct Apply {
    _ledger: Ledger,
}

impl Apply {
    /// The position the next event must have.
    pub fn next_position(&self) -> u64 {
        todo!("ledger group: apply")
    }

    /// Checks one event (its stored JSON) against the chain and stages it;
    /// commits when a batch is full.
    pub async fn push(&mut self, json: &[u8]) -> Result<(), RestoreError> {
        let _ = json;
        todo!("ledger group: apply")
    }

    /// Commits what is staged and answers with the durable head.
    pub async fn commit(&mut self) -> Result<Head, RestoreError> {
        todo!("ledger group: apply")
    }
}
