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

/// The group's shared secrets (record key, checkpoint signing key) travel
/// through the key bucket sealed under the group key, and a MAC of a fixed
/// label under it tells a node given another group key.
impl GroupKey {
    /// HMAC-SHA256 of `label` under the group key.
    pub fn mac(&self, label: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self._key[..])
            .expect("HMAC takes a key of any length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// `secret` sealed under the group key with `aad`: the nonce, then
    /// the ciphertext.
    pub fn wrap(&self, aad: &[u8], secret: &[u8]) -> Vec<u8> {
        let sealed = super::seal::seal(&self._key, aad, secret);
        let mut wrapped = sealed.nonce.to_vec();
        wrapped.extend_from_slice(&sealed.ciphertext);
        wrapped
    }

    /// What [`GroupKey::wrap`] sealed; `None` when it does not open (another
    /// group key, other associated data, or changed bytes).
    pub fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let (nonce, ciphertext) = wrapped.split_at_checked(24)?;
        super::seal::open(&self._key, aad, nonce, ciphertext)
    }
}
