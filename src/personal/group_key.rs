//! The group key: what the nodes of a ledger group share to pass each
//! other people's data keys through the group's key bucket. Every node is
//! given the same file (`[group] key_file`); the bucket holds each data
//! key wrapped under it, never in the clear.

use std::path::Path;

use super::KeyError;

/// 32 random bytes, read from a file of mode 0600.
pub struct GroupKey {
    _key: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupKey(..)")
    }
}

impl GroupKey {
    /// Reads the key at `path`, making it first when `create` and the
    /// file does not exist.
    pub fn load(path: &Path, create: bool) -> Result<Self, KeyError> {
        let _ = (path, create);
        todo!("ledger group: group key")
    }
}
