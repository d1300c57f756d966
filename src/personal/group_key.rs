//! The group key: what the nodes of a ledger group share to pass each
//! other people's data keys through the group's key bucket. Every node is
//! given the same file (`--group-key FILE`); the bucket holds each data
//! key wrapped under it, never in the clear, and the group's shared
//! secrets (the record-key secret, the checkpoint signing key) likewise.
//!
//! The file is the 32 key bytes and nothing else (`head -c 32
//! /dev/urandom`), of mode 0600: a key others may read is refused, as it
//! opens every person's data key in the bucket.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::KeyError;
use super::seal::{self, Key};

/// What [`GroupKey::check`] authenticates: the same on every node of a
/// group, so nodes compare the tags to tell they share the key.
const CHECK_LABEL: &[u8] = b"rotation-ledger group key check v1";

/// 32 random bytes, read from a file of mode 0600.
pub struct GroupKey {
    key: Key,
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
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let malformed = |reason: String| KeyError::MalformedGroupKey {
            path: path.to_owned(),
            reason,
        };
        if create {
            match make(path) {
                Ok(key) => return Ok(key),
                // Another node or process made it first: read theirs.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        let mode = fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(malformed(format!(
                "mode {:o} lets others read it; chmod 600 it",
                mode & 0o777
            )));
        }
        let bytes = Zeroizing::new(fs::read(path).map_err(io)?);
        if bytes.len() != 32 {
            return Err(malformed(format!(
                "it holds {} bytes, not the 32 of a key",
                bytes.len()
            )));
        }
        let mut key: Key = Zeroizing::new([0; 32]);
        key.copy_from_slice(&bytes);
        Ok(Self { key })
    }

    /// An HMAC-SHA256 of a fixed label under the key: equal on two nodes
    /// exactly when they hold the same key, and revealing nothing of it.
    pub fn check(&self) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]).expect("HMAC takes any key");
        mac.update(CHECK_LABEL);
        mac.finalize().into_bytes().into()
    }

    /// Seals `plaintext` for `person`'s entry of the key bucket: the nonce
    /// followed by the ciphertext, with the person as associated data so
    /// that an entry moved to another person does not open.
    pub(super) fn wrap(&self, person: Uuid, plaintext: &[u8]) -> Vec<u8> {
        self.seal(&person_aad(person), plaintext)
    }

    /// Opens what [`GroupKey::wrap`] sealed for `person`.
    pub(super) fn unwrap(&self, person: Uuid, wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.open(&person_aad(person), wrapped)
    }

    /// Seals one of the group's shared secrets for the key bucket.
    pub fn wrap_secret(&self, secret: &[u8]) -> Vec<u8> {
        self.seal(SECRET_AAD, secret)
    }

    /// Opens a shared secret from the key bucket.
    pub fn unwrap_secret(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.open(SECRET_AAD, wrapped)
            .ok_or_else(|| KeyError::GroupUnwrap("a shared secret".into()))
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let sealed = seal::seal(&self.key, aad, plaintext);
        let mut bytes = Vec::with_capacity(sealed.nonce.len() + sealed.ciphertext.len());
        bytes.extend_from_slice(&sealed.nonce);
        bytes.extend_from_slice(&sealed.ciphertext);
        bytes
    }

    fn open(&self, aad: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (nonce, ciphertext) = wrapped.split_at_checked(24)?;
        seal::open(&self.key, aad, nonce, ciphertext)
    }
}

/// The associated data of the group's shared secrets.
const SECRET_AAD: &[u8] = b"rotation-ledger group secret v1";

fn person_aad(person: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    aad.extend_from_slice(b"rotation-ledger group data key v1\0");
    aad.extend_from_slice(person.as_bytes());
    aad
}

/// Makes a fresh key at `path`, mode 0600 in a 0700 directory; fails with
/// `AlreadyExists` if the file is there, so that a key is never replaced.
fn make(path: &Path) -> std::io::Result<GroupKey> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let key = seal::random_key();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&key[..])?;
    file.sync_all()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(GroupKey { key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_key_is_private_read_back_the_same_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("group.key");
        let made = GroupKey::load(&path, true).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap().len(), 32);
        let again = GroupKey::load(&path, true).unwrap();
        assert_eq!(made.check(), again.check(), "the file was kept");
        let other = GroupKey::load(&dir.path().join("other.key"), true).unwrap();
        assert_ne!(made.check(), other.check());
    }

    #[test]
    fn a_missing_short_or_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group.key");
        assert!(matches!(
            GroupKey::load(&path, false),
            Err(KeyError::Io { .. })
        ));
        fs::write(&path, [7; 16]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let short = GroupKey::load(&path, false).unwrap_err().to_string();
        assert!(short.contains("16 bytes"), "{short}");
        fs::write(&path, [7; 32]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let readable = GroupKey::load(&path, false).unwrap_err().to_string();
        assert!(readable.contains("chmod 600"), "{readable}");
    }

    #[test]
    fn a_wrap_opens_only_for_its_person_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = GroupKey::load(&dir.path().join("a"), true).unwrap();
        let other = GroupKey::load(&dir.path().join("b"), true).unwrap();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let wrapped = key.wrap(alice, b"data key");
        assert_eq!(&key.unwrap(alice, &wrapped).unwrap()[..], b"data key");
        assert!(key.unwrap(bob, &wrapped).is_none());
        assert!(other.unwrap(alice, &wrapped).is_none());
        assert!(key.unwrap(alice, &wrapped[..20]).is_none());

        let secret = key.wrap_secret(b"record key");
        assert_eq!(&key.unwrap_secret(&secret).unwrap()[..], b"record key");
        assert!(other.unwrap_secret(&secret).is_err());
        assert!(
            key.unwrap_secret(&wrapped).is_err(),
            "a data key is no secret"
        );
    }
}
