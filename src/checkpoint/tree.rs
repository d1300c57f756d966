//! The RFC 6962 / RFC 9162 Merkle tree over the log, kept as stored
//! complete subtrees.
//!
//! Leaf `i` is the 32-byte `hash` of the event at position `i + 1`. The
//! tree is never held in memory: every complete subtree, node `(level L,
//! index k)` over leaves `k * 2^L .. (k + 1) * 2^L - 1`, is written once,
//! when its last leaf is appended, and never changes afterwards, as in
//! tlog tiles. Appending `n` leaves therefore writes about `2n` nodes
//! ([`Frontier::append`] returns them, so the caller stores them in the
//! same batch as the events), and the root of any earlier size, an
//! inclusion proof or a consistency proof reads O(log n) stored nodes
//! through a [`NodeSource`], never the leaves.
//!
//! Which nodes a proof needs is `ct-merkle`'s to say
//! ([`ct_merkle::indices_for_inclusion_proof`] and
//! [`ct_merkle::indices_for_consistency_proof`], which exist for trees kept
//! outside memory); this module only maps its node indices to stored
//! subtrees. Proofs are checked by `ct-merkle` too.

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::digest::Output;
use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf, a node or a root.
pub type Hash = [u8; 32];

/// A complete subtree: the root of leaves `index * 2^level ..= (index + 1)
/// * 2^level - 1`. Level 0 is the leaf hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// The subtree's height: it covers `2^level` leaves.
    pub level: u8,
    /// Its place among the subtrees of that level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The first leaf the subtree covers.
    fn first_leaf(self) -> u64 {
        self.index << self.level
    }
}

/// Where the stored nodes are read from. The store implements it over its
/// keys; tests over a map.
pub trait NodeSource {
    /// The storage's own error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stored hash of a complete subtree, `None` when it was never
    /// written.
    fn node(&self, id: NodeId) -> Result<Option<Hash>, Self::Error>;
}

/// Why a root or proof could not be given.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E: std::error::Error + 'static> {
    /// A position of 0 or beyond the size asked about.
    #[error("position {position} is not in a tree of size {size}")]
    PositionOutOfRange { position: u64, size: u64 },
    /// A size beyond what has been appended.
    #[error("size {size} is beyond the tree's size {head}")]
    SizeBeyondHead { size: u64, head: u64 },
    /// A consistency proof asked from a larger size to a smaller one, or
    /// from the empty tree, which RFC 9162 gives no proof for.
    #[error("no consistency proof from size {from} to size {to}")]
    BadRange { from: u64, to: u64 },
    /// A node the tree's size says was written is missing: the stored tree
    /// does not match the log.
    #[error("stored tree node (level {}, index {}) is missing", .0.level, .0.index)]
    MissingNode(NodeId),
    /// The storage failed.
    #[error("reading the stored tree")]
    Storage(#[source] E),
}

/// RFC 6962's leaf hash: `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &Hash) -> Hash {
    Sha256::new_with_prefix([0x00])
        .chain_update(leaf)
        .finalize()
        .into()
}

/// RFC 6962's interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new_with_prefix([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the empty tree: `SHA-256()` of nothing (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The right edge of the tree: the roots of the complete subtrees that
/// make up its leaves, one for each bit set in its size, largest first.
/// This is all an appender needs in memory; it is loaded from the stored
/// nodes in O(log n) reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    /// How many leaves the tree holds.
    size: u64,
    /// The complete subtrees along the right edge, largest (leftmost) first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of a stored tree of `size` leaves.
    pub fn load<S: NodeSource>(source: &S, size: u64) -> Result<Self, TreeError<S::Error>> {
        let peaks = peaks(0, size)
            .map(|id| read(source, id))
            .collect::<Result<_, _>>()?;
        Ok(Self { size, peaks })
    }

    /// How many leaves the tree holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree's root hash.
    pub fn root(&self) -> Hash {
        fold_peaks(self.peaks.iter().copied())
    }

    /// Appends one leaf (an event's `hash`) and returns the complete
    /// subtrees it completes, level 0 first: the caller writes them.
    pub fn append(&mut self, leaf: &Hash) -> Vec<(NodeId, Hash)> {
        let mut written = Vec::with_capacity(2);
        self.append_into(leaf, &mut written);
        written
    }

    /// Appends one leaf, adding the nodes it completes to `written`, so a
    /// batch of leaves gathers its nodes in one vector.
    pub fn append_into(&mut self, leaf: &Hash, written: &mut Vec<(NodeId, Hash)>) {
        let mut id = NodeId {
            level: 0,
            index: self.size,
        };
        let mut hash = leaf_hash(leaf);
        written.push((id, hash));
        // Each trailing one bit of the old size is a peak of the same height
        // as the subtree just completed: they merge into the next level.
        while id.index & 1 == 1 {
            let left = self.peaks.pop().expect("a set bit of the size has a peak");
            hash = node_hash(&left, &hash);
            id = NodeId {
                level: id.level + 1,
                index: id.index >> 1,
            };
            written.push((id, hash));
        }
        self.peaks.push(hash);
        self.size += 1;
    }
}

/// The root of the tree's first `size` leaves, `size` at most `head`.
pub fn root<S: NodeSource>(source: &S, size: u64, head: u64) -> Result<Hash, TreeError<S::Error>> {
    check_size(size, head)?;
    subtree_root(source, 0, size)
}

/// An RFC 9162 §2.1.3 inclusion proof for the leaf at `position`
/// (1-based, as the log counts) in the tree of `size` leaves: the sibling
/// hashes from the leaf up.
pub fn inclusion_proof<S: NodeSource>(
    source: &S,
    position: u64,
    size: u64,
    head: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    check_size(size, head)?;
    if position == 0 || position > size {
        return Err(TreeError::PositionOutOfRange { position, size });
    }
    ct_merkle::indices_for_inclusion_proof(size, position - 1)
        .into_iter()
        .map(|node| in_order_root(source, node, size))
        .collect()
}

/// An RFC 9162 §2.1.4 consistency proof from the tree of `from` leaves to
/// the tree of `to` leaves. It is empty when the sizes are equal.
pub fn consistency_proof<S: NodeSource>(
    source: &S,
    from: u64,
    to: u64,
    head: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    check_size(to, head)?;
    if from == 0 || from > to {
        return Err(TreeError::BadRange { from, to });
    }
    ct_merkle::indices_for_consistency_proof(from, to - from)
        .into_iter()
        .map(|node| in_order_root(source, node, to))
        .collect()
}

/// Whether `proof` shows the leaf (an event's `hash`) at `position` in the
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    position: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if position == 0 || position > size {
        return false;
    }
    let root = RootHash::<Sha256>::new(*digest(root), size);
    let proof = InclusionProof::<Sha256>::from_digests(proof.iter().map(digest));
    root.verify_inclusion(leaf, position - 1, &proof).is_ok()
}

/// Whether `proof` shows the tree of `from` leaves with root `from_root` a
/// prefix of the tree of `to` leaves with root `to_root`.
pub fn verify_consistency(
    from: u64,
    from_root: &Hash,
    to: u64,
    to_root: &Hash,
    proof: &[Hash],
) -> bool {
    if from == 0 || from > to {
        return false;
    }
    let old = RootHash::<Sha256>::new(*digest(from_root), from);
    let new = RootHash::<Sha256>::new(*digest(to_root), to);
    let proof = ConsistencyProof::<Sha256>::from_digests(proof.iter().map(digest));
    new.verify_consistency(&old, &proof).is_ok()
}

/// A hash as `ct-merkle` takes it.
fn digest(hash: &Hash) -> &Output<Sha256> {
    Output::<Sha256>::from_slice(hash)
}

fn check_size<E: std::error::Error>(size: u64, head: u64) -> Result<(), TreeError<E>> {
    if size > head {
        return Err(TreeError::SizeBeyondHead { size, head });
    }
    Ok(())
}

/// The hash of the node `ct-merkle` numbers `node` (in-order: leaf `i` is
/// `2i`, a node of level `L` has `L` trailing one bits) in the tree of
/// `size` leaves. Nodes on the right edge may be incomplete at that size;
/// their hash is then that of the leaves they hold.
fn in_order_root<S: NodeSource>(
    source: &S,
    node: u64,
    size: u64,
) -> Result<Hash, TreeError<S::Error>> {
    let level = node.trailing_ones();
    let first = (node >> (level + 1)) << level;
    let end = first.saturating_add(1 << level).min(size);
    subtree_root(source, first, end)
}

/// The Merkle Tree Hash of leaves `first .. end`, where `first` is aligned
/// to the largest power of two not above `end - first` (as every subtree of
/// an RFC 6962 tree is): the complete subtrees that make it up, folded
/// from the right.
fn subtree_root<S: NodeSource>(
    source: &S,
    first: u64,
    end: u64,
) -> Result<Hash, TreeError<S::Error>> {
    if first == end {
        return Ok(empty_root());
    }
    let peaks = peaks(first, end)
        .map(|id| read(source, id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_peaks(peaks))
}

/// The complete subtrees that make up leaves `first .. end`, largest first.
fn peaks(first: u64, end: u64) -> impl Iterator<Item = NodeId> {
    let count = end - first;
    let mut start = first;
    (0..u64::BITS).rev().filter_map(move |level| {
        if count & (1 << level) == 0 {
            return None;
        }
        let id = NodeId {
            level: level as u8,
            index: start >> level,
        };
        debug_assert_eq!(id.first_leaf(), start, "subtrees are aligned");
        start += 1 << level;
        Some(id)
    })
}

/// The root over peaks given largest first: each peak is the left sibling
/// of all the smaller ones together (RFC 6962 splits at the largest power
/// of two below the size).
fn fold_peaks(peaks: impl IntoIterator<Item = Hash, IntoIter: DoubleEndedIterator>) -> Hash {
    peaks
        .into_iter()
        .rev()
        .reduce(|right, left| node_hash(&left, &right))
        .unwrap_or_else(empty_root)
}

fn read<S: NodeSource>(source: &S, id: NodeId) -> Result<Hash, TreeError<S::Error>> {
    source
        .node(id)
        .map_err(TreeError::Storage)?
        .ok_or(TreeError::MissingNode(id))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::convert::Infallible;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use sigstore_types::Sha256Hash;

    use super::*;

    /// Stored nodes in a map, counting reads.
    #[derive(Default)]
    struct Nodes {
        nodes: HashMap<NodeId, Hash>,
        reads: Cell<usize>,
    }

    impl NodeSource for Nodes {
        type Error = Infallible;

        fn node(&self, id: NodeId) -> Result<Option<Hash>, Infallible> {
            self.reads.set(self.reads.get() + 1);
            Ok(self.nodes.get(&id).copied())
        }
    }

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count)
            .map(|i| Sha256::digest(i.to_be_bytes()).into())
            .collect()
    }

    /// The stored tree of `leaves`, each node written exactly once.
    fn stored(leaves: &[Hash]) -> Nodes {
        let mut frontier = Frontier::new();
        let mut nodes = Nodes::default();
        for leaf in leaves {
            for (id, hash) in frontier.append(leaf) {
                assert!(
                    nodes.nodes.insert(id, hash).is_none(),
                    "{id:?} written twice"
                );
            }
        }
        nodes
    }

    /// RFC 9162 §2.1.1's MTH, from the leaves.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n);
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// The largest power of two smaller than `n`.
    fn split(n: usize) -> usize {
        1 << (usize::BITS - 1 - (n - 1).leading_zeros())
    }

    /// RFC 9162 §2.1.3.1's PATH(m, D[n]).
    fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n == 1 {
            return Vec::new();
        }
        let k = split(n);
        if m < k {
            let mut proof = path(m, &leaves[..k]);
            proof.push(mth(&leaves[k..]));
            proof
        } else {
            let mut proof = path(m - k, &leaves[k..]);
            proof.push(mth(&leaves[..k]));
            proof
        }
    }

    /// RFC 9162 §2.1.4.1's SUBPROOF(m, D[n], b).
    fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = split(n);
        if m <= k {
            let mut proof = subproof(m, &leaves[..k], whole);
            proof.push(mth(&leaves[k..]));
            proof
        } else {
            let mut proof = subproof(m - k, &leaves[k..], false);
            proof.push(mth(&leaves[..k]));
            proof
        }
    }

    fn sigstore(hashes: &[Hash]) -> Vec<Sha256Hash> {
        hashes.iter().copied().map(Sha256Hash::new).collect()
    }

    /// Checks the stored tree's inclusion proof against the RFC's
    /// algorithm, `ct-merkle`'s verifier and sigstore's.
    fn check_inclusion(nodes: &Nodes, all: &[Hash], position: u64, size: u64) {
        let prefix = &all[..size as usize];
        let root_hash = mth(prefix);
        let proof = inclusion_proof(nodes, position, size, all.len() as u64).unwrap();
        let index = position as usize - 1;
        assert_eq!(proof, path(index, prefix), "PATH({position}, {size})");
        let leaf = &all[index];
        assert!(verify_inclusion(leaf, position, size, &proof, &root_hash));
        sigstore_merkle::verify_inclusion_proof(
            &Sha256Hash::new(leaf_hash(leaf)),
            position - 1,
            size,
            &sigstore(&proof),
            &Sha256Hash::new(root_hash),
        )
        .unwrap_or_else(|error| panic!("sigstore refuses PATH({position}, {size}): {error}"));
    }

    fn check_consistency(nodes: &Nodes, all: &[Hash], from: u64, to: u64) {
        let (old, new) = (mth(&all[..from as usize]), mth(&all[..to as usize]));
        let proof = consistency_proof(nodes, from, to, all.len() as u64).unwrap();
        let expected = subproof(from as usize, &all[..to as usize], true);
        assert_eq!(proof, expected, "PROOF({from}, {to})");
        assert!(verify_consistency(from, &old, to, &new, &proof));
        let (old, new) = (Sha256Hash::new(old), Sha256Hash::new(new));
        sigstore_merkle::verify_consistency_proof(from, to, &sigstore(&proof), &old, &new)
            .unwrap_or_else(|error| panic!("sigstore refuses PROOF({from}, {to}): {error}"));
    }

    #[test]
    fn the_root_of_every_prefix_is_the_rfc_root() {
        let all = leaves(140);
        let nodes = stored(&all);
        let mut frontier = Frontier::new();
        for size in 0..=all.len() {
            let expected = mth(&all[..size]);
            assert_eq!(
                root(&nodes, size as u64, 140).unwrap(),
                expected,
                "size {size}"
            );
            assert_eq!(frontier.root(), expected, "frontier at {size}");
            assert_eq!(Frontier::load(&nodes, size as u64).unwrap(), frontier);
            if let Some(leaf) = all.get(size) {
                frontier.append(leaf);
            }
        }
    }

    #[test]
    fn appending_writes_each_complete_subtree_once() {
        for count in [1, 2, 3, 7, 8, 100, 1024, 1025] {
            let nodes = stored(&leaves(count));
            // A tree of n leaves has 2n - popcount(n) complete subtrees.
            let expected = 2 * count - u64::from(count.count_ones());
            assert_eq!(nodes.nodes.len() as u64, expected, "{count} leaves");
        }
    }

    #[test]
    fn proofs_for_all_small_sizes_match_the_rfc_and_verify_elsewhere() {
        let all = leaves(70);
        let nodes = stored(&all);
        for size in 1..=70 {
            for position in 1..=size {
                check_inclusion(&nodes, &all, position, size);
            }
            for from in 1..=size {
                check_consistency(&nodes, &all, from, size);
            }
        }
    }

    #[test]
    fn proofs_for_random_larger_sizes_match_the_rfc_and_verify_elsewhere() {
        let all = leaves(3000);
        let nodes = stored(&all);
        let mut rng = StdRng::seed_from_u64(6962);
        for _ in 0..60 {
            let size = rng.random_range(71..=3000);
            check_inclusion(&nodes, &all, rng.random_range(1..=size), size);
            check_consistency(&nodes, &all, rng.random_range(1..=size), size);
        }
    }

    #[test]
    fn proofs_read_a_logarithmic_number_of_nodes() {
        let head = 100_003;
        let nodes = stored(&leaves(head));
        for (position, size) in [(1, head), (head, head), (77_777, 99_999), (5, 65_537)] {
            nodes.reads.set(0);
            inclusion_proof(&nodes, position, size, head).unwrap();
            assert!(nodes.reads.get() <= 2 * 17, "{} reads", nodes.reads.get());
            nodes.reads.set(0);
            consistency_proof(&nodes, position.min(size - 1), size, head).unwrap();
            assert!(nodes.reads.get() <= 2 * 17, "{} reads", nodes.reads.get());
        }
    }

    #[test]
    fn forged_proofs_and_roots_do_not_verify() {
        let all = leaves(21);
        let nodes = stored(&all);
        let root_hash = root(&nodes, 21, 21).unwrap();
        let mut proof = inclusion_proof(&nodes, 6, 21, 21).unwrap();
        assert!(verify_inclusion(&all[5], 6, 21, &proof, &root_hash));
        assert!(!verify_inclusion(&all[6], 6, 21, &proof, &root_hash));
        assert!(!verify_inclusion(&all[5], 7, 21, &proof, &root_hash));
        // A proof binds the size only through its length and the root: the
        // checkpoint's signature is what fixes the size.
        assert!(!verify_inclusion(&all[5], 6, 16, &proof, &root_hash));
        proof[1][0] ^= 1;
        assert!(!verify_inclusion(&all[5], 6, 21, &proof, &root_hash));

        let old = root(&nodes, 13, 21).unwrap();
        let mut proof = consistency_proof(&nodes, 13, 21, 21).unwrap();
        assert!(verify_consistency(13, &old, 21, &root_hash, &proof));
        assert!(!verify_consistency(13, &root_hash, 21, &root_hash, &proof));
        assert!(!verify_consistency(12, &old, 21, &root_hash, &proof));
        proof[0][31] ^= 1;
        assert!(!verify_consistency(13, &old, 21, &root_hash, &proof));
        assert!(verify_consistency(21, &root_hash, 21, &root_hash, &[]));
        assert!(!verify_consistency(21, &old, 21, &root_hash, &[]));
    }

    #[test]
    fn bad_positions_and_sizes_are_refused() {
        let nodes = stored(&leaves(10));
        let refused = |result: Result<Vec<Hash>, TreeError<Infallible>>| result.unwrap_err();
        assert!(matches!(
            refused(inclusion_proof(&nodes, 0, 10, 10)),
            TreeError::PositionOutOfRange { .. }
        ));
        assert!(matches!(
            refused(inclusion_proof(&nodes, 6, 5, 10)),
            TreeError::PositionOutOfRange { .. }
        ));
        assert!(matches!(
            refused(inclusion_proof(&nodes, 1, 11, 10)),
            TreeError::SizeBeyondHead { .. }
        ));
        assert!(matches!(
            refused(consistency_proof(&nodes, 6, 5, 10)),
            TreeError::BadRange { .. }
        ));
        assert!(matches!(
            refused(consistency_proof(&nodes, 0, 5, 10)),
            TreeError::BadRange { .. }
        ));
        assert!(matches!(
            refused(consistency_proof(&nodes, 5, 11, 10)),
            TreeError::SizeBeyondHead { .. }
        ));
    }

    #[test]
    fn a_missing_node_is_named() {
        let mut nodes = stored(&leaves(8));
        let lost = NodeId { level: 2, index: 1 };
        nodes.nodes.remove(&lost);
        assert!(root(&nodes, 8, 8).is_ok(), "the root of 8 is stored whole");
        assert!(root(&nodes, 7, 8).is_ok());
        assert!(matches!(
            inclusion_proof(&nodes, 1, 8, 8),
            Err(TreeError::MissingNode(id)) if id == lost
        ));
    }
}
