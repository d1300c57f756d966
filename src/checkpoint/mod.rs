//! Signed checkpoints and Merkle proofs (contract section 10): what lets
//! anyone hold the ledger to what it showed before.
//!
//! - [`tree`]: the RFC 6962 Merkle tree over the events' hashes, kept as
//!   stored complete subtrees behind [`NodeSource`]; roots of any size and
//!   inclusion and consistency proofs in O(log n) reads.
//! - [`note`]: C2SP `tlog-checkpoint` bodies signed as C2SP `signed-note`s
//!   with Ed25519, and the note format's key strings.
//! - [`keys`]: the signing key's file, generated on first start.
//! - [`audit`]: holding the ledger to a checkpoint: signature, root, chain.
//! - [`service`]: the task that signs the durable head's checkpoint after
//!   new events, at most once a second, off the append path.
//!
//! This module owns the rule that makes checkpoints worth keeping: the
//! ledger never signs a tree that does not extend the last one it signed
//! ([`sign_checkpoint`]), so any two of its checkpoints are joined by a
//! consistency proof.

pub mod audit;
pub mod keys;
pub mod note;
pub mod service;
pub mod tree;

pub use keys::{DEFAULT_KEY_FILE, KeyFileError};
pub use note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
pub use service::{CheckpointError, Checkpoints, Signed};
pub use tree::{Frontier, Hash, NodeId, NodeSource, TreeError};

/// The last checkpoint signed: kept durably, so that no later one can
/// contradict it, even across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSigned {
    /// The signed tree's size.
    pub size: u64,
    /// The signed tree's root.
    pub root: Hash,
}

impl LastSigned {
    /// The stored form: the size (8 bytes, big-endian), then the root.
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut bytes = [0; 40];
        bytes[..8].copy_from_slice(&self.size.to_be_bytes());
        bytes[8..].copy_from_slice(&self.root);
        bytes
    }

    /// Reads the stored form; `None` if it is not 40 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (size, root) = bytes.split_first_chunk::<8>()?;
        Some(Self {
            size: u64::from_be_bytes(*size),
            root: root.try_into().ok()?,
        })
    }
}

/// Why a checkpoint was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError<E: std::error::Error + 'static> {
    /// The stored tree could not give the root or the proof.
    #[error(transparent)]
    Tree(#[from] TreeError<E>),
    /// The tree does not extend the last one signed: signing it would
    /// contradict a checkpoint already given out.
    #[error(
        "the tree of size {size} does not extend the last signed tree of size {last_size}; \
         refusing to sign"
    )]
    DoesNotExtend { last_size: u64, size: u64 },
    /// The origin is not a valid first line of a note.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// Signs the checkpoint of the stored tree's first `size` leaves (`size`
/// at most `head`), if that tree extends `last`, the last one signed, or
/// is a prefix of it.
///
/// Returns the signed note and the record to keep as the new last signed
/// one; the caller stores that record durably before giving the note out.
/// The check is a consistency proof read from the stored tree and verified
/// against the recorded root, so a tree rebuilt with any leaf changed is
/// refused.
pub fn sign_checkpoint<S: NodeSource>(
    signer: &NoteSigner,
    origin: &str,
    source: &S,
    size: u64,
    head: u64,
    last: Option<&LastSigned>,
) -> Result<(String, LastSigned), SignError<S::Error>> {
    let root = tree::root(source, size, head)?;
    if let Some(last) = last {
        check_extends(source, last, size, &root, head)?;
    }
    let checkpoint = Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
    };
    if checkpoint.origin.is_empty() || checkpoint.origin.chars().any(char::is_control) {
        return Err(NoteError::MalformedCheckpoint("the origin is not one line of text").into());
    }
    let note = signer.sign_checkpoint(&checkpoint)?;
    // An earlier tree that the last signed one extends is signed (an
    // export as of a past time needs it), but the last signed stays the
    // larger one.
    let kept = match last {
        Some(last) if last.size > size => *last,
        _ => LastSigned { size, root },
    };
    Ok((note, kept))
}

/// Whether the tree of `size` leaves with root `root` extends `last`.
fn check_extends<S: NodeSource>(
    source: &S,
    last: &LastSigned,
    size: u64,
    root: &Hash,
    head: u64,
) -> Result<(), SignError<S::Error>> {
    let refused = SignError::DoesNotExtend {
        last_size: last.size,
        size,
    };
    let extends = match last.size {
        _ if last.size > head => false,
        _ if last.size > size && size == 0 => true,
        _ if last.size > size => {
            let proof = tree::consistency_proof(source, size, last.size, head)?;
            tree::verify_consistency(size, root, last.size, &last.root, &proof)
        }
        0 => last.root == tree::empty_root(),
        _ if last.size == size => last.root == *root,
        _ => {
            let proof = tree::consistency_proof(source, last.size, size, head)?;
            tree::verify_consistency(last.size, &last.root, size, root, &proof)
        }
    };
    if extends { Ok(()) } else { Err(refused) }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use sha2::Digest;

    use super::*;

    #[derive(Default)]
    struct Nodes(HashMap<NodeId, Hash>);

    impl NodeSource for Nodes {
        type Error = Infallible;

        fn node(&self, id: NodeId) -> Result<Option<Hash>, Infallible> {
            Ok(self.0.get(&id).copied())
        }
    }

    /// A stored tree over leaves `0 .. count`, leaf `changed` (if any)
    /// replaced, as a log rebuilt with one event changed would be.
    fn stored(count: u8, changed: Option<u8>) -> Nodes {
        let mut frontier = Frontier::new();
        let mut nodes = Nodes::default();
        for i in 0..count {
            let leaf = [if Some(i) == changed { 0xff } else { i }; 32];
            nodes.0.extend(frontier.append(&leaf));
        }
        nodes
    }

    const ORIGIN: &str = "rotation-ledger/test";

    #[test]
    fn a_tree_that_extends_the_last_signed_one_is_signed() {
        let signer = NoteSigner::generate(ORIGIN).unwrap();
        let nodes = stored(40, None);
        let (note, first) = sign_checkpoint(&signer, ORIGIN, &nodes, 17, 40, None).unwrap();
        let checkpoint = signer.verifier().open_checkpoint(&note).unwrap();
        assert_eq!((checkpoint.size, checkpoint.root), (first.size, first.root));
        assert_eq!(LastSigned::from_bytes(&first.to_bytes()), Some(first));
        let (_, second) = sign_checkpoint(&signer, ORIGIN, &nodes, 40, 40, Some(&first)).unwrap();
        assert_eq!(second.size, 40);
        let (_, same) = sign_checkpoint(&signer, ORIGIN, &nodes, 40, 40, Some(&second)).unwrap();
        assert_eq!(same, second);
        let (_, kept) = sign_checkpoint(&signer, ORIGIN, &nodes, 9, 40, Some(&second)).unwrap();
        assert_eq!(
            kept, second,
            "an earlier prefix is signed; the last signed stays"
        );
        let empty = LastSigned {
            size: 0,
            root: tree::empty_root(),
        };
        assert!(sign_checkpoint(&signer, ORIGIN, &nodes, 1, 40, Some(&empty)).is_ok());
    }

    #[test]
    fn a_rebuilt_or_shorter_tree_is_not_signed() {
        let signer = NoteSigner::generate(ORIGIN).unwrap();
        let (_, last) = sign_checkpoint(&signer, ORIGIN, &stored(30, None), 30, 30, None).unwrap();
        for (nodes, size) in [
            (stored(45, Some(3)), 45),
            (stored(30, Some(29)), 30),
            (stored(45, Some(3)), 29),
        ] {
            assert!(matches!(
                sign_checkpoint(&signer, ORIGIN, &nodes, size, 45, Some(&last)),
                Err(SignError::DoesNotExtend { last_size: 30, .. })
            ));
        }
    }

    /// The vectors `scripts/verify_checkpoint_test.py` checks with its own
    /// code: a checkpoint this module signed, and proofs from the stored
    /// tree, so the outsider's verifier is held to what the ledger makes.
    /// Regenerate with `UPDATE_VECTORS=1 cargo test --lib checkpoint`.
    #[test]
    fn the_outsider_verifier_vectors_are_current() {
        let signer = NoteSigner::new(ORIGIN, [7; 32]).unwrap();
        let size = 37;
        let leaves: Vec<Hash> = (0..size)
            .map(|i: u64| sha2::Sha256::digest(i.to_be_bytes()).into())
            .collect();
        let mut frontier = Frontier::new();
        let mut nodes = Nodes::default();
        for leaf in &leaves {
            nodes.0.extend(frontier.append(leaf));
        }
        let hex_all = |hashes: Vec<Hash>| hashes.iter().map(hex::encode).collect::<Vec<_>>();
        let (note, _) = sign_checkpoint(&signer, ORIGIN, &nodes, size, size, None).unwrap();
        let (old, _) = sign_checkpoint(&signer, ORIGIN, &nodes, 20, size, None).unwrap();
        let inclusion: Vec<_> = [1, 2, 19, 32, 37]
            .into_iter()
            .map(|position| {
                serde_json::json!({
                    "position": position,
                    "size": size,
                    "event_hash": hex::encode(leaves[position as usize - 1]),
                    "hashes": hex_all(tree::inclusion_proof(&nodes, position, size, size).unwrap()),
                })
            })
            .collect();
        let consistency: Vec<_> = [1, 4, 20, 33, 37]
            .into_iter()
            .map(|from| {
                serde_json::json!({
                    "from": from,
                    "from_root": hex::encode(tree::root(&nodes, from, size).unwrap()),
                    "to": size,
                    "hashes": hex_all(tree::consistency_proof(&nodes, from, size, size).unwrap()),
                })
            })
            .collect();
        let vectors = serde_json::json!({
            "verifier_key": signer.verifier().to_string(),
            "checkpoint": note,
            "older_checkpoint": old,
            "inclusion": inclusion,
            "consistency": consistency,
        });
        let text = serde_json::to_string_pretty(&vectors).unwrap() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts/testdata/checkpoint_vectors.json");
        if std::env::var_os("UPDATE_VECTORS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == text,
            "stale {}: run UPDATE_VECTORS=1 cargo test --lib checkpoint",
            path.display()
        );
    }

    #[test]
    fn an_origin_of_more_than_one_line_is_refused() {
        let signer = NoteSigner::generate(ORIGIN).unwrap();
        let nodes = stored(3, None);
        for origin in ["", "two\nlines"] {
            assert!(sign_checkpoint(&signer, origin, &nodes, 3, 3, None).is_err());
        }
    }
}
