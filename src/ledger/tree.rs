//! The Merkle tree over the log as the ledger keeps it, and the ledger's
//! id: what opening a store checks or builds, and the reads behind
//! checkpoints and proofs.
//!
//! The writer adds the tree's new nodes to the same sled batch as the
//! events they cover, so the tree is never behind the log. Only complete
//! subtrees of level [`STORED_FROM_LEVEL`] and above are stored: the
//! lower ones are derived from the events' stored hashes when a proof
//! needs them (at most 2^[`STORED_FROM_LEVEL`] events a node), which keeps
//! the writes of an append to about one key for every sixteen events: the
//! tree then adds a quarter of the keys the events' own chunks take, where
//! storing from level 3 doubled them and cost `append_batched` a fifth of
//! its rate.

use uuid::Uuid;

use super::Ledger;
use crate::checkpoint::tree::{self, Frontier, Hash, NodeId, NodeSource, TreeError};
use crate::checkpoint::{LastSigned, NoteSigner, SignError};
use crate::store::{Commit, Store, StoreError};

/// The lowest level of the tree stored; levels below are derived from
/// the events. Level 5 stores a node for every 32 events and derives a
/// node from at most 32 (eight chunk reads), so a proof still reads only
/// a few dozen keys. Stores written when this was 3 keep their nodes of
/// levels 3 and 4; nothing reads them.
pub const STORED_FROM_LEVEL: u8 = 5;

/// The ledger fact naming the ledger: a UUID fixed when the store is made.
const ID_FACT: &str = "id";
/// The ledger fact saying the stored tree covers every event: set when the
/// store is made, or once the tree of a store written before the tree
/// existed has been built.
const TREE_FACT: &str = "tree";
/// The checkpoint (in the store's sense) holding the last signed size and
/// root.
const LAST_SIGNED: &str = "checkpoint.last-signed";
/// Nodes written per batch while building the tree of an older store.
const BUILD_BATCH: usize = 100_000;

/// Why a root or proof could not be read.
pub type ProofError = TreeError<StoreError>;

/// The tree as stored: levels from [`STORED_FROM_LEVEL`] read from their
/// keys, the lower ones derived from the events' hashes.
pub(crate) struct StoredTree<'a>(pub(crate) &'a Store);

impl NodeSource for StoredTree<'_> {
    type Error = StoreError;

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        if id.level >= STORED_FROM_LEVEL {
            return self.0.tree_node(id.level, id.index);
        }
        derived_node(self.0, id)
    }
}

/// A low subtree computed from the hashes of the events it covers; `None`
/// when they are not all committed.
fn derived_node(store: &Store, id: NodeId) -> Result<Option<Hash>, StoreError> {
    let count = 1u64 << id.level;
    let first = id.index << id.level;
    let mut hashes = Vec::with_capacity(count as usize);
    for item in store.events_json(first, first + count) {
        let (position, json) = item?;
        hashes.push(tree::leaf_hash(&stored_hash(position, &json)?));
    }
    if hashes.len() as u64 != count {
        return Ok(None);
    }
    while hashes.len() > 1 {
        hashes = hashes
            .chunks(2)
            .map(|pair| tree::node_hash(&pair[0], &pair[1]))
            .collect();
    }
    Ok(hashes.pop())
}

/// The 32 bytes of a stored event's `hash`. The stored form is RFC 8785,
/// so the top-level members are in key order: only `data` precedes
/// `hash`, and every member after it is a string or a number, in which an
/// unescaped `"hash":"` cannot occur. The last occurrence is therefore the
/// event's own, whatever `data` holds.
fn stored_hash(position: u64, json: &[u8]) -> Result<Hash, StoreError> {
    const MEMBER: &[u8] = b"\"hash\":\"";
    let corrupt = || StoreError::Corrupt {
        key: format!("event {position}"),
        message: "no 64-digit hex `hash`".into(),
    };
    let at = memchr::memmem::rfind(json, MEMBER).ok_or_else(corrupt)? + MEMBER.len();
    let digits = json.get(at..at + 64).ok_or_else(corrupt)?;
    let mut hash = [0; 32];
    hex::decode_to_slice(digits, &mut hash).map_err(|_| corrupt())?;
    Ok(hash)
}

/// Adds the nodes a commit completes to it, leaving out those below
/// [`STORED_FROM_LEVEL`].
pub(super) fn stage_nodes(commit: &mut Commit, nodes: &[(NodeId, Hash)]) {
    for (id, hash) in nodes {
        if id.level >= STORED_FROM_LEVEL {
            commit.tree_node(id.level, id.index, hash);
        }
    }
}

/// Makes sure the store has an id and a tree that covers its `head`
/// events (building it for a store written before the tree existed), and
/// checks that the newest stored node matches the events it covers.
/// Returns the tree's right edge, for the writer.
pub(super) fn open(store: &Store, head: u64) -> Result<Frontier, StoreError> {
    let mut facts = Commit::default();
    if store.ledger_fact(ID_FACT)?.is_none() {
        facts.ledger_fact(ID_FACT, Uuid::new_v4().as_bytes());
    }
    if store.ledger_fact(TREE_FACT)?.is_none() {
        build(store, head)?;
        facts.ledger_fact(TREE_FACT, b"1");
    }
    if !facts.is_empty() {
        store.apply(facts)?;
        store.flush()?;
    }
    let source = StoredTree(store);
    let frontier = Frontier::load(&source, head).map_err(tree_corrupt)?;
    // The newest stored node of the lowest stored level was written with
    // the newest events: derived again from them, it must be the same.
    let span = 1u64 << STORED_FROM_LEVEL;
    if head >= span {
        let id = NodeId {
            level: STORED_FROM_LEVEL,
            index: head / span - 1,
        };
        let stored = store.tree_node(id.level, id.index)?;
        let derived = derived_node(store, id)?;
        if stored.is_none() || stored != derived {
            return Err(StoreError::Corrupt {
                key: format!("tree node {}/{}", id.level, id.index),
                message: "the stored tree does not match the log".into(),
            });
        }
    }
    Ok(frontier)
}

/// Builds and stores the tree of the first `head` events.
fn build(store: &Store, head: u64) -> Result<(), StoreError> {
    if head > 0 {
        tracing::info!(
            events = head,
            "building the Merkle tree of a store written before it"
        );
    }
    let mut frontier = Frontier::new();
    let mut nodes = Vec::new();
    for item in store.events_json(0, head) {
        let (position, json) = item?;
        frontier.append_into(&stored_hash(position, &json)?, &mut nodes);
        if nodes.len() >= BUILD_BATCH {
            let mut commit = Commit::default();
            stage_nodes(&mut commit, &nodes);
            store.apply(commit)?;
            nodes.clear();
        }
    }
    let mut commit = Commit::default();
    stage_nodes(&mut commit, &nodes);
    store.apply(commit)?;
    if frontier.size() != head {
        return Err(StoreError::Corrupt {
            key: "events".into(),
            message: format!(
                "the head is {head} but {} events are stored",
                frontier.size()
            ),
        });
    }
    Ok(())
}

fn tree_corrupt(error: ProofError) -> StoreError {
    match error {
        TreeError::Storage(error) => error,
        other => StoreError::Corrupt {
            key: "tree".into(),
            message: other.to_string(),
        },
    }
}

/// An inclusion proof (contract section 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub position: u64,
    pub size: u64,
    /// RFC 6962's hash of the leaf: `SHA-256(0x00 || event hash)`.
    pub leaf_hash: Hash,
    pub hashes: Vec<Hash>,
}

impl Ledger {
    /// The ledger's id: a UUID fixed when its store was made.
    pub fn ledger_id(&self) -> Result<Uuid, StoreError> {
        let bytes = self
            .store()
            .ledger_fact(ID_FACT)?
            .ok_or_else(|| StoreError::Corrupt {
                key: "ledger id".into(),
                message: "missing".into(),
            })?;
        Uuid::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            key: "ledger id".into(),
            message: e.to_string(),
        })
    }

    /// The root of the tree of the first `size` events, `size` at most the
    /// durable head.
    pub fn tree_root(&self, size: u64) -> Result<Hash, ProofError> {
        tree::root(&StoredTree(self.store()), size, self.head().position)
    }

    /// The inclusion proof of the event at `position` in the tree of
    /// `size` events.
    pub fn inclusion_proof(&self, position: u64, size: u64) -> Result<InclusionProof, ProofError> {
        let source = StoredTree(self.store());
        let hashes = tree::inclusion_proof(&source, position, size, self.head().position)?;
        let leaf_hash = source
            .node(NodeId {
                level: 0,
                index: position - 1,
            })
            .map_err(TreeError::Storage)?
            .ok_or(TreeError::MissingNode(NodeId {
                level: 0,
                index: position - 1,
            }))?;
        Ok(InclusionProof {
            position,
            size,
            leaf_hash,
            hashes,
        })
    }

    /// The consistency proof from the tree of `from` events to that of
    /// `to` events.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        tree::consistency_proof(&StoredTree(self.store()), from, to, self.head().position)
    }

    /// The last checkpoint signed, as kept durably.
    pub fn last_signed(&self) -> Result<Option<LastSigned>, StoreError> {
        Ok(self
            .store()
            .checkpoint(LAST_SIGNED)?
            .and_then(|bytes| LastSigned::from_bytes(&bytes)))
    }

    /// Signs the checkpoint of the tree of `size` events if it extends the
    /// last one signed, and keeps it durably as the last signed before
    /// returning the note. Blocking.
    pub fn sign_checkpoint(
        &self,
        signer: &NoteSigner,
        origin: &str,
        size: u64,
    ) -> Result<String, SignError<StoreError>> {
        let last = self.last_signed().map_err(TreeError::Storage)?;
        let (note, signed) = crate::checkpoint::sign_checkpoint(
            signer,
            origin,
            &StoredTree(self.store()),
            size,
            self.head().position,
            last.as_ref(),
        )?;
        if last != Some(signed) {
            self.save_checkpoint(LAST_SIGNED, &signed.to_bytes(), true)
                .map_err(TreeError::Storage)?;
        }
        Ok(note)
    }

    /// Removes the stored tree, as in a store written before it existed.
    #[cfg(feature = "test-hooks")]
    pub fn forget_tree(&self) -> Result<u64, StoreError> {
        self.store().forget_tree()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_found_after_a_data_member_of_the_same_name() {
        let hash = "ab".repeat(32);
        let json = format!(
            r#"{{"data":{{"hash":"{zeros}"}},"hash":"{hash}","id":"x"}}"#,
            zeros = "0".repeat(64)
        );
        assert_eq!(stored_hash(1, json.as_bytes()).unwrap(), [0xab; 32]);
        assert!(stored_hash(1, br#"{"data":{}}"#).is_err());
    }
}
