//! Every person's data key, unwrapped in memory: loaded from the wrapped
//! records the store keeps, looked up by the submitters' threads to seal
//! and by readers to open, given to people who have none yet, destroyed on
//! erasure, and wrapped again under a new master key when one replaces it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rotation_events::{Profile, SealedProfile};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::master_key::{MasterKey, MasterKeyId, MasterKeys};
use super::seal::{self, Key};
use super::{GroupKey, KeyError, SealError};

/// Names a person's data key in `sealed_profile.kid` without revealing the
/// person: 128 random bits, base64url, chosen with the key and stored with
/// its wrap. A new key for the same person gets a new id, so a profile
/// sealed under an erased key never opens under its successor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    fn random() -> Self {
        let mut bytes = [0; 16];
        rand::fill(&mut bytes);
        Self(seal::encode(&bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's data key as the store keeps it: wrapped under a master key,
/// with the person and both key ids as associated data, so that a wrap
/// moved to another person, or relabelled, does not open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    pub person: Uuid,
    pub kid: KeyId,
    /// The master key it is wrapped under.
    pub kek: MasterKeyId,
    /// base64url without padding.
    pub nonce: String,
    /// base64url without padding: the data key sealed, tag included.
    pub wrapped: String,
}

fn wrap_aad(person: Uuid, kid: &KeyId, kek: &MasterKeyId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(96);
    aad.extend_from_slice(b"rotation-ledger data key v1\0");
    aad.extend_from_slice(person.as_bytes());
    aad.extend_from_slice(kid.0.as_bytes());
    aad.push(0);
    aad.extend_from_slice(kek.as_str().as_bytes());
    aad
}

fn wrap(master: &MasterKey, person: Uuid, kid: &KeyId, key: &Key) -> WrappedKey {
    let sealed = seal::seal(master.key(), &wrap_aad(person, kid, master.id()), &key[..]);
    WrappedKey {
        person,
        kid: kid.clone(),
        kek: master.id().clone(),
        nonce: seal::encode(&sealed.nonce),
        wrapped: seal::encode(&sealed.ciphertext),
    }
}

fn unwrap(master: &MasterKey, record: &WrappedKey) -> Result<Key, KeyError> {
    let undone = || KeyError::Unwrap {
        person: record.person,
        kid: record.kid.clone(),
    };
    let nonce = seal::decode(&record.nonce).ok_or_else(undone)?;
    let wrapped = seal::decode(&record.wrapped).ok_or_else(undone)?;
    let aad = wrap_aad(record.person, &record.kid, &record.kek);
    let bytes = seal::open(master.key(), &aad, &nonce, &wrapped).ok_or_else(undone)?;
    let mut key: Key = zeroize::Zeroizing::new([0; 32]);
    if bytes.len() != key.len() {
        return Err(undone());
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// One person's key in memory.
struct Entry {
    kid: KeyId,
    key: Key,
    /// The wrap not yet known to be durable: the writer commits it with the
    /// first event sealed under the key, in the same batch.
    uncommitted: Option<WrappedKey>,
}

struct Inner {
    master: Arc<MasterKey>,
    keys: HashMap<Uuid, Entry>,
}

/// What opening the keys found still to do about a rotation.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing: no rotation was under way.
    Ready,
    /// A rotation reached the store: commit these wraps (the keys the
    /// store still held under the old master key, wrapped under the next;
    /// often none), flush, then [`MasterKeyFile::finish_rotation`](super::MasterKeyFile::finish_rotation).
    /// The keyring already wraps new keys under the next master key.
    FinishRotation(Vec<WrappedKey>),
    /// A rotation never reached the store (nor the erasures it carried,
    /// which were therefore never answered):
    /// [`MasterKeyFile::abandon_rotation`](super::MasterKeyFile::abandon_rotation).
    AbandonRotation,
}

/// A rotation done in memory: what the writer commits in one batch, before
/// it finishes the rotation of the file.
#[derive(Debug)]
pub struct Rotation {
    /// Every remaining key wrapped under the next master key.
    pub rewrapped: Vec<WrappedKey>,
    /// The people whose keys were destroyed: their wraps are deleted in
    /// the same batch.
    pub destroyed: Vec<Uuid>,
}

/// Every person's data key, unwrapped. Lookups take a read lock and the
/// sealing itself (a microsecond) happens under it on the caller's thread;
/// only a new person's key, an erasure and a rotation take the write lock.
pub struct Keyring {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("Keyring")
            .field("master", &inner.master.id())
            .field("keys", &inner.keys.len())
            .finish()
    }
}

impl Keyring {
    /// An empty keyring that wraps new keys under `master`.
    pub fn new(master: MasterKey) -> Self {
        Self {
            inner: RwLock::new(Inner {
                master: Arc::new(master),
                keys: HashMap::new(),
            }),
        }
    }

    /// Unwraps every stored record, and says what is left of a rotation
    /// that did not finish. A wrap under a master key that neither file
    /// holds is an error: its data key, and the profiles under it, would be
    /// lost.
    pub fn load(
        keys: MasterKeys,
        stored: impl IntoIterator<Item = WrappedKey>,
    ) -> Result<(Self, Recovery), KeyError> {
        let MasterKeys { current, next, .. } = keys;
        let mut map = HashMap::new();
        let (mut under_current, mut under_next) = (Vec::new(), 0_usize);
        for record in stored {
            let master = if record.kek == *current.id() {
                under_current.push(record.person);
                &current
            } else if next.as_ref().is_some_and(|n| record.kek == *n.id()) {
                under_next += 1;
                next.as_ref().expect("just matched")
            } else {
                return Err(KeyError::UnknownMasterKey {
                    person: record.person,
                    kid: record.kid,
                    kek: record.kek,
                });
            };
            let key = unwrap(master, &record)?;
            map.insert(
                record.person,
                Entry {
                    kid: record.kid,
                    key,
                    uncommitted: None,
                },
            );
        }
        let Some(next) = next else {
            return Ok((Self::with(current, map), Recovery::Ready));
        };
        // The rotation's batch is atomic, so the store holds either no wrap
        // under the next key (it never committed) or none under the old one.
        // Mixed, or empty, rolling forward loses nothing and keeps whatever
        // erasure was committed.
        if under_next == 0 && !under_current.is_empty() {
            return Ok((Self::with(current, map), Recovery::AbandonRotation));
        }
        let rewrapped = under_current
            .iter()
            .map(|person| {
                let entry = &map[person];
                wrap(&next, *person, &entry.kid, &entry.key)
            })
            .collect();
        Ok((Self::with(next, map), Recovery::FinishRotation(rewrapped)))
    }

    fn with(master: MasterKey, keys: HashMap<Uuid, Entry>) -> Self {
        Self {
            inner: RwLock::new(Inner {
                master: Arc::new(master),
                keys,
            }),
        }
    }

    // A panic while holding the lock leaves the map as it was between two
    // whole operations, so the poison carries no information.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of the master key new keys are wrapped under.
    pub fn master_key_id(&self) -> MasterKeyId {
        self.read().master.id().clone()
    }

    /// How many people hold a key.
    pub fn len(&self) -> usize {
        self.read().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everyone who holds a data key.
    pub fn people(&self) -> Vec<Uuid> {
        self.read().keys.keys().copied().collect()
    }

    /// Whether `person` holds a data key.
    pub fn holds(&self, person: Uuid) -> bool {
        self.read().keys.contains_key(&person)
    }

    /// Seals `profile` (as submitted: a rejected one need not be a valid
    /// [`Profile`]) under `person`'s key, making the key if they have none.
    /// The associated data is the event's `id` and `subject`. A new key's
    /// wrap must then be committed with the event: see
    /// [`Keyring::wrap_to_commit`].
    pub fn seal(
        &self,
        person: Uuid,
        event_id: Uuid,
        subject: &str,
        profile: &Value,
    ) -> SealedProfile {
        let plaintext =
            zeroize::Zeroizing::new(serde_json::to_vec(profile).expect("a JSON value serialises"));
        {
            let inner = self.read();
            if let Some(entry) = inner.keys.get(&person) {
                return seal::seal_profile(
                    &entry.key,
                    entry.kid.as_str(),
                    event_id,
                    subject,
                    &plaintext,
                );
            }
        }
        // The key is made and wrapped outside the lock; a racing submitter
        // for the same person may have made one meanwhile, and theirs wins.
        let key = seal::random_key();
        let kid = KeyId::random();
        let mut inner = self.write();
        let master = Arc::clone(&inner.master);
        let entry = inner.keys.entry(person).or_insert_with(|| {
            let wrapped = wrap(&master, person, &kid, &key);
            Entry {
                kid,
                key,
                uncommitted: Some(wrapped),
            }
        });
        seal::seal_profile(
            &entry.key,
            entry.kid.as_str(),
            event_id,
            subject,
            &plaintext,
        )
    }

    /// [`Keyring::seal`] of a typed profile.
    pub fn seal_profile(
        &self,
        person: Uuid,
        event_id: Uuid,
        subject: &str,
        profile: &Profile,
    ) -> SealedProfile {
        let value = serde_json::to_value(profile).expect("a profile serialises");
        self.seal(person, event_id, subject, &value)
    }

    /// Opens a sealed profile as the JSON that was sealed.
    pub fn open(
        &self,
        person: Uuid,
        event_id: Uuid,
        subject: &str,
        sealed: &SealedProfile,
    ) -> Result<Value, SealError> {
        let plaintext = {
            let inner = self.read();
            let entry = inner
                .keys
                .get(&person)
                .filter(|e| e.kid.as_str() == sealed.kid)
                .ok_or(SealError::NoKey)?;
            seal::open_profile(&entry.key, event_id, subject, sealed)
                .ok_or(SealError::Unopenable)?
        };
        serde_json::from_slice(&plaintext).map_err(|_| SealError::Unopenable)
    }

    /// Opens a sealed profile as a typed [`Profile`].
    pub fn open_profile(
        &self,
        person: Uuid,
        event_id: Uuid,
        subject: &str,
        sealed: &SealedProfile,
    ) -> Result<Profile, SealError> {
        let value = self.open(person, event_id, subject, sealed)?;
        serde_json::from_value(value).map_err(|_| SealError::Unopenable)
    }

    /// The wrap of `person`'s key if it is not yet known to be durable. The
    /// writer asks when it stages an event sealed under the key, so that
    /// the wrap goes into the same batch, under the master key current at
    /// that moment (a rotation in between wraps it afresh).
    pub fn wrap_to_commit(&self, person: Uuid) -> Option<WrappedKey> {
        self.read()
            .keys
            .get(&person)
            .and_then(|e| e.uncommitted.clone())
    }

    /// After a storage failure lost commits that were never durable:
    /// every key whose wrap the store does not hold (`stored` names the
    /// people whose wraps it does) is committed again with the next event
    /// sealed under it, under the master key current now.
    pub fn recommit_missing(&self, stored: &std::collections::HashSet<Uuid>) {
        let mut inner = self.write();
        let master = Arc::clone(&inner.master);
        for (person, entry) in &mut inner.keys {
            if entry.uncommitted.is_none() && !stored.contains(person) {
                entry.uncommitted = Some(wrap(&master, *person, &entry.kid, &entry.key));
            }
        }
    }

    /// Whether `person` holds the key named `kid`.
    pub fn holds_kid(&self, person: Uuid, kid: &str) -> bool {
        self.read()
            .keys
            .get(&person)
            .is_some_and(|e| e.kid.as_str() == kid)
    }

    /// `person`'s key and its id wrapped under the group key, for the
    /// group's key bucket.
    pub fn export(&self, person: Uuid, group: &GroupKey) -> Option<Vec<u8>> {
        let inner = self.read();
        let entry = inner.keys.get(&person)?;
        let mut plaintext = zeroize::Zeroizing::new(Vec::with_capacity(32 + entry.kid.0.len()));
        plaintext.extend_from_slice(&entry.key[..]);
        plaintext.extend_from_slice(entry.kid.0.as_bytes());
        Some(group.wrap(person, &plaintext))
    }

    /// Installs a key from the group's key bucket; its wrap under the
    /// master key is committed with the first event sealed under it.
    /// Whether it was new. A person who holds another committed key keeps
    /// it: that one goes with an erasure still to be applied, and the new
    /// key is asked for again when the event sealed under it is.
    pub fn install(
        &self,
        person: Uuid,
        wrapped: &[u8],
        group: &GroupKey,
    ) -> Result<bool, KeyError> {
        let undone = || KeyError::GroupUnwrap(format!("the data key of person {person}"));
        let plaintext = group.unwrap(person, wrapped).ok_or_else(undone)?;
        let (bytes, kid) = plaintext.split_at_checked(32).ok_or_else(undone)?;
        let kid = KeyId(String::from_utf8(kid.to_vec()).map_err(|_| undone())?);
        let mut key: Key = zeroize::Zeroizing::new([0; 32]);
        key.copy_from_slice(bytes);
        let mut inner = self.write();
        // A key never committed here and not the group's was made by a
        // write this node did not decide (sealed before it lost the
        // lease): the group's key replaces it.
        if inner
            .keys
            .get(&person)
            .is_some_and(|held| held.uncommitted.is_none() || held.kid == kid)
        {
            return Ok(false);
        }
        let wrapped = wrap(&inner.master, person, &kid, &key);
        inner.keys.insert(
            person,
            Entry {
                kid,
                key,
                uncommitted: Some(wrapped),
            },
        );
        Ok(true)
    }

    /// The writer's word that `record` is durable.
    pub fn mark_committed(&self, record: &WrappedKey) {
        let mut inner = self.write();
        if let Some(entry) = inner.keys.get_mut(&record.person)
            && entry.uncommitted.as_ref() == Some(record)
        {
            entry.uncommitted = None;
        }
    }

    /// Destroys `person`'s key in memory (it is wiped as it drops); whether
    /// they had one. Copies on disk are out of reach only once the master
    /// key is rotated: see [`Keyring::rotate`].
    pub fn destroy(&self, person: Uuid) -> bool {
        self.write().keys.remove(&person).is_some()
    }

    /// Destroys the keys of `erased`, wraps every remaining key under
    /// `next`, and wraps new keys under it from now on, all under one lock,
    /// so that no key is made under the old master key after its last
    /// re-wrap.
    pub fn rotate(&self, next: MasterKey, erased: &[Uuid]) -> Rotation {
        let mut inner = self.write();
        let destroyed = erased
            .iter()
            .filter(|person| inner.keys.remove(person).is_some())
            .copied()
            .collect();
        let rewrapped = inner
            .keys
            .iter_mut()
            .map(|(person, entry)| {
                let record = wrap(&next, *person, &entry.kid, &entry.key);
                // The rotation's batch carries every wrap, a new person's
                // too, so none is left to commit with its event.
                entry.uncommitted = None;
                record
            })
            .collect();
        inner.master = Arc::new(next);
        Rotation {
            rewrapped,
            destroyed,
        }
    }
}
