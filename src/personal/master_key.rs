//! The master key (the key-encryption key) and its file: created once with
//! mode 0600 in a 0700 directory, replaced only atomically, and the
//! half-done state of a rotation (`master.key.next`) that opening detects.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::KeyError;
use super::seal::{self, Key};

/// What the file says it is, so that a stray file is refused by name.
const FORMAT: &str = "rotation-ledger master key v1";

/// Names a master key without revealing it: the first 64 bits of a hash of
/// the key, in hex. Every wrapped data key records the id of the master key
/// it is wrapped under, which is how opening tells a finished rotation from
/// one that never reached the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MasterKeyId(String);

impl MasterKeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MasterKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key-encryption key: it wraps every person's data key and never
/// seals personal data itself. An external KMS or HSM would take its
/// place: [`MasterKey::wrap`](super::Keyring) and unwrap are its only uses.
pub struct MasterKey {
    id: MasterKeyId,
    key: Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        Self::from_key(seal::random_key())
    }

    fn from_key(key: Key) -> Self {
        let digest = Sha256::new()
            .chain_update(b"rotation-ledger master key id v1\0")
            .chain_update(&key[..])
            .finalize();
        Self {
            id: MasterKeyId(hex::encode(&digest[..8])),
            key,
        }
    }

    pub fn id(&self) -> &MasterKeyId {
        &self.id
    }

    pub(super) fn key(&self) -> &Key {
        &self.key
    }
}

/// The file's contents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: String,
    /// The key's id, for an operator comparing files; checked on load.
    id: MasterKeyId,
    /// The 32 bytes, base64url without padding.
    key: String,
}

/// The master keys as opening found them.
#[derive(Debug)]
pub struct MasterKeys {
    /// The key of `master.key`.
    pub current: MasterKey,
    /// The key of `master.key.next`: a rotation began and did not finish.
    pub next: Option<MasterKey>,
    /// Whether `master.key` was created by this opening.
    pub created: bool,
}

/// Where the master key lives: `keys/master.key` in the data directory by
/// default (`[keys] master_key_file`), and beside it `master.key.next`
/// while a rotation is under way.
#[derive(Debug, Clone)]
pub struct MasterKeyFile {
    path: PathBuf,
}

impl MasterKeyFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The default place: `keys/master.key` in the data directory.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join("keys").join("master.key"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file a rotation writes its new key to before the store holds
    /// anything wrapped under it.
    pub fn next_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(".next");
        self.path.with_file_name(name)
    }

    /// Reads the master key, and the next one if a rotation was left
    /// half-done. A missing file is created only when `store_holds_sealed`
    /// is false: over a store with wrapped keys or sealed profiles a new key
    /// would open nothing, so the ledger refuses to start instead.
    pub fn open(&self, store_holds_sealed: bool) -> Result<MasterKeys, KeyError> {
        let next = read(&self.next_path())?;
        let (current, created) = match read(&self.path)? {
            Some(current) => (current, false),
            None if store_holds_sealed => {
                return Err(KeyError::MissingMasterKey {
                    path: self.path.clone(),
                });
            }
            None => {
                let key = MasterKey::generate();
                write_atomically(&self.path, &key)?;
                (key, true)
            }
        };
        Ok(MasterKeys {
            current,
            next,
            created,
        })
    }

    /// Step 1 of a rotation: a fresh key made durable in `master.key.next`
    /// before anything is wrapped under it.
    pub fn begin_rotation(&self) -> Result<MasterKey, KeyError> {
        let next = MasterKey::generate();
        write_atomically(&self.next_path(), &next)?;
        Ok(next)
    }

    /// The last step of a rotation, once the store durably holds every data
    /// key wrapped under the next key: it becomes the master key, and the
    /// old one is gone from the directory.
    pub fn finish_rotation(&self) -> Result<(), KeyError> {
        let next = self.next_path();
        fs::rename(&next, &self.path).map_err(|e| io(&next, e))?;
        sync_dir(&self.path)
    }

    /// Forgets a rotation that never reached the store.
    pub fn abandon_rotation(&self) -> Result<(), KeyError> {
        let next = self.next_path();
        match fs::remove_file(&next) {
            Ok(()) => sync_dir(&self.path),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&next, e)),
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read(path: &Path) -> Result<Option<MasterKey>, KeyError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => zeroize::Zeroizing::new(text),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    let malformed = |reason: &str| KeyError::MalformedMasterKey {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let stored: Stored = serde_json::from_str(&text).map_err(|e| malformed(&e.to_string()))?;
    if stored.format != FORMAT {
        return Err(malformed(&format!("format is not `{FORMAT}`")));
    }
    let bytes = zeroize::Zeroizing::new(
        seal::decode(&stored.key).ok_or_else(|| malformed("key is not base64url"))?,
    );
    let mut key: Key = zeroize::Zeroizing::new([0; 32]);
    if bytes.len() != key.len() {
        return Err(malformed("key is not 32 bytes"));
    }
    key.copy_from_slice(&bytes);
    let master = MasterKey::from_key(key);
    if master.id != stored.id {
        return Err(malformed("id does not match the key"));
    }
    Ok(Some(master))
}

/// Writes `key` to `path` so that the file is either absent, the old one,
/// or complete: a temporary file (0600) written and synced, renamed into
/// place, and the directory synced so the rename survives a crash.
fn write_atomically(path: &Path, key: &MasterKey) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(dir, e))?;
    let stored = Stored {
        format: FORMAT.to_owned(),
        id: key.id.clone(),
        key: seal::encode(&key.key[..]),
    };
    let text = zeroize::Zeroizing::new(
        serde_json::to_string(&stored).expect("the key file serialises") + "\n",
    );
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_first_opening_creates_the_key_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let file = MasterKeyFile::in_data_dir(dir.path());
        let first = file.open(false).unwrap();
        assert!(first.created && first.next.is_none());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(file.path()), 0o600);
        assert_eq!(mode(&dir.path().join("keys")), 0o700);
        let again = file.open(true).unwrap();
        assert!(!again.created);
        assert_eq!(again.current.id(), first.current.id());
    }

    #[test]
    fn a_missing_key_over_sealed_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = MasterKeyFile::in_data_dir(dir.path());
        let err = file.open(true).unwrap_err();
        assert!(matches!(err, KeyError::MissingMasterKey { .. }), "{err}");
        assert!(err.to_string().contains("master.key"), "{err}");
        assert!(!file.path().exists());
    }

    #[test]
    fn a_rotation_replaces_the_key_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let file = MasterKeyFile::in_data_dir(dir.path());
        let old = file.open(false).unwrap().current;
        let next = file.begin_rotation().unwrap();
        let half_done = file.open(true).unwrap();
        assert_eq!(half_done.current.id(), old.id());
        assert_eq!(half_done.next.unwrap().id(), next.id());
        file.finish_rotation().unwrap();
        let done = file.open(true).unwrap();
        assert_eq!(done.current.id(), next.id());
        assert!(done.next.is_none());

        file.begin_rotation().unwrap();
        file.abandon_rotation().unwrap();
        let abandoned = file.open(true).unwrap();
        assert_eq!(abandoned.current.id(), next.id());
        assert!(abandoned.next.is_none());
    }

    #[test]
    fn a_key_file_that_was_changed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = MasterKeyFile::in_data_dir(dir.path());
        file.open(false).unwrap();
        let text = fs::read_to_string(file.path()).unwrap();
        let other = MasterKey::generate();
        let changed = text.replace(
            &text[text.find("\"key\":\"").unwrap() + 7..text.len() - 3],
            &seal::encode(&other.key[..]),
        );
        fs::write(file.path(), changed).unwrap();
        let err = file.open(true).unwrap_err();
        assert!(err.to_string().contains("id does not match"), "{err}");
    }
}
