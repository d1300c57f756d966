//! Every person's data key, unwrapped in memory once used: read from the
//! wrapped record the store keeps (through a [`WrapSource`]) the first
//! time it is needed, looked up by the submitters' threads to seal and by
//! readers to open, given to people who have none yet, destroyed on
//! erasure, and wrapped again under a new master key when one replaces it.
//!
//! Opening reads no wrap (but one, as a probe of the master key), so it
//! costs the same whatever the number of people; a rotation still reads
//! every wrap, as it must wrap every key again.

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

/// Unwraps `record` under `master`, which must be the key it names.
fn unwrap(master: &MasterKey, record: &WrappedKey) -> Result<Key, KeyError> {
    if record.kek != *master.id() {
        return Err(KeyError::UnknownMasterKey {
            person: record.person,
            kid: record.kid.clone(),
            kek: record.kek.clone(),
        });
    }
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

/// Where the keyring finds the wraps the store holds: the ledger
/// implements it over its store, so that this module knows nothing of
/// sled. Only committed wraps are there; a new key lives in the keyring
/// until the writer commits its wrap.
pub trait WrapSource: Send + Sync {
    /// The wrap stored for `person`, if any.
    fn wrap(&self, person: Uuid) -> Result<Option<WrappedKey>, KeyError>;

    /// Every stored wrap, in any order: for a rotation, which wraps every
    /// key again, and for the recovery of one.
    fn wraps(&self) -> Box<dyn Iterator<Item = Result<WrappedKey, KeyError>> + '_>;

    /// Everyone a wrap is stored for, without unwrapping anything.
    fn people(&self) -> Result<Vec<Uuid>, KeyError>;
}

/// Wraps held in memory: a keyring made without a store, and tests.
impl WrapSource for Vec<WrappedKey> {
    fn wrap(&self, person: Uuid) -> Result<Option<WrappedKey>, KeyError> {
        Ok(self.iter().find(|w| w.person == person).cloned())
    }

    fn wraps(&self) -> Box<dyn Iterator<Item = Result<WrappedKey, KeyError>> + '_> {
        Box::new(self.iter().cloned().map(Ok))
    }

    fn people(&self) -> Result<Vec<Uuid>, KeyError> {
        Ok(self.iter().map(|w| w.person).collect())
    }
}

/// One person's key in memory.
struct Entry {
    kid: KeyId,
    key: Key,
    /// The wrap not yet known to be durable: the writer commits it with the
    /// first event sealed under the key, in the same batch.
    uncommitted: Option<WrappedKey>,
}

/// What the keyring knows of a person. A person it knows nothing of yet
/// is looked up in the store.
enum Slot {
    /// Their key, unwrapped.
    Held(Entry),
    /// Their key was destroyed. The tombstone stays, so that a lookup
    /// never reads the stale wrap the store may still hold until the
    /// erasure's commit deletes it; only a new key replaces it.
    Destroyed,
}

impl Slot {
    fn held(&self) -> Option<&Entry> {
        match self {
            Slot::Held(entry) => Some(entry),
            Slot::Destroyed => None,
        }
    }
}

struct Inner {
    master: Arc<MasterKey>,
    /// The people looked up, given a key or erased since opening.
    keys: HashMap<Uuid, Slot>,
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

/// Every person's data key, unwrapped on first use. Lookups take a read
/// lock and the sealing itself (a microsecond) happens under it on the
/// caller's thread; a key not held yet is read and unwrapped outside any
/// lock, then kept under the write lock, as are a new person's key, an
/// erasure and a rotation.
pub struct Keyring {
    inner: RwLock<Inner>,
    /// The stored wraps of the keys not held yet.
    source: Box<dyn WrapSource>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("Keyring")
            .field("master", &inner.master.id())
            .field("known", &inner.keys.len())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// An empty keyring, with no store behind it, that wraps new keys
    /// under `master`.
    pub fn new(master: MasterKey) -> Self {
        Self::with(master, HashMap::new(), Box::new(Vec::new()))
    }

    /// A keyring over the wraps of `source`, and what is left of a
    /// rotation that did not finish. With no rotation under way, nothing
    /// is read but the first wrap, which must unwrap under the current
    /// master key: a wrong master key file is found at once. A rotation
    /// under way is recovered from every wrap (its cost is an erasure's).
    /// A wrap under a master key that neither file holds is an error: its
    /// data key, and the profiles under it, would be lost.
    pub fn load(
        keys: MasterKeys,
        source: impl WrapSource + 'static,
    ) -> Result<(Self, Recovery), KeyError> {
        let MasterKeys { current, next, .. } = keys;
        let Some(next) = next else {
            if let Some(first) = source.wraps().next() {
                unwrap(&current, &first?)?;
            }
            let keyring = Self::with(current, HashMap::new(), Box::new(source));
            return Ok((keyring, Recovery::Ready));
        };
        let mut map = HashMap::new();
        let (mut under_current, mut under_next) = (Vec::new(), 0_usize);
        for record in source.wraps() {
            let record = record?;
            let master = if record.kek == *current.id() {
                under_current.push(record.person);
                &current
            } else {
                under_next += 1;
                &next
            };
            let key = unwrap(master, &record)?;
            map.insert(
                record.person,
                Slot::Held(Entry {
                    kid: record.kid,
                    key,
                    uncommitted: None,
                }),
            );
        }
        let source = Box::new(source);
        // The rotation's batch is atomic, so the store holds either no wrap
        // under the next key (it never committed) or none under the old one.
        // Mixed, or empty, rolling forward loses nothing and keeps whatever
        // erasure was committed.
        if under_next == 0 && !under_current.is_empty() {
            return Ok((Self::with(current, map, source), Recovery::AbandonRotation));
        }
        let rewrapped = under_current
            .iter()
            .filter_map(|person| map[person].held().map(|entry| (person, entry)))
            .map(|(person, entry)| wrap(&next, *person, &entry.kid, &entry.key))
            .collect();
        Ok((
            Self::with(next, map, source),
            Recovery::FinishRotation(rewrapped),
        ))
    }

    fn with(master: MasterKey, keys: HashMap<Uuid, Slot>, source: Box<dyn WrapSource>) -> Self {
        Self {
            inner: RwLock::new(Inner {
                master: Arc::new(master),
                keys,
            }),
            source,
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

    /// Runs `f` on `person`'s key (`None` when they hold none), reading and
    /// unwrapping its stored wrap first if the keyring does not know them
    /// yet. The store is read outside the lock; whatever the keyring
    /// learnt meanwhile (a key made, installed, destroyed, or loaded by a
    /// rotation) wins over what was read, so a destroyed key is never
    /// brought back from a wrap read before its destruction.
    fn with_key<T>(
        &self,
        person: Uuid,
        f: impl FnOnce(Option<&Entry>) -> T,
    ) -> Result<T, KeyError> {
        let master = {
            let inner = self.read();
            if let Some(slot) = inner.keys.get(&person) {
                return Ok(f(slot.held()));
            }
            Arc::clone(&inner.master)
        };
        let read = self.source.wrap(person).and_then(|stored| {
            stored
                .map(|record| {
                    Ok(Entry {
                        key: unwrap(&master, &record)?,
                        kid: record.kid,
                        uncommitted: None,
                    })
                })
                .transpose()
        });
        let mut inner = self.write();
        if let Some(slot) = inner.keys.get(&person) {
            return Ok(f(slot.held()));
        }
        // A rotation since the read wrapped every stored key again under
        // another master key (and then holds them all, so the slot above
        // is found): what was read under the old one is read again.
        if !Arc::ptr_eq(&inner.master, &master) {
            drop(inner);
            return self.with_key(person, f);
        }
        match read? {
            Some(entry) => {
                let slot = inner.keys.entry(person).or_insert(Slot::Held(entry));
                Ok(f(slot.held()))
            }
            None => Ok(f(None)),
        }
    }

    /// The id of the master key new keys are wrapped under.
    pub fn master_key_id(&self) -> MasterKeyId {
        self.read().master.id().clone()
    }

    /// How many people hold a key. It reads every stored wrap's person.
    pub fn len(&self) -> Result<usize, KeyError> {
        Ok(self.people()?.len())
    }

    pub fn is_empty(&self) -> Result<bool, KeyError> {
        Ok(self.len()? == 0)
    }

    /// Everyone who holds a data key, in person order: those the store
    /// holds a wrap for, and those whose new key is not committed yet,
    /// less the erased.
    pub fn people(&self) -> Result<Vec<Uuid>, KeyError> {
        let stored = self.source.people()?;
        let inner = self.read();
        let mut people: Vec<Uuid> = stored
            .into_iter()
            .filter(|person| !matches!(inner.keys.get(person), Some(Slot::Destroyed)))
            .chain(
                inner
                    .keys
                    .iter()
                    .filter(|(_, slot)| slot.held().is_some())
                    .map(|(person, _)| *person),
            )
            .collect();
        people.sort_unstable();
        people.dedup();
        Ok(people)
    }

    /// Whether `person` holds a data key.
    pub fn holds(&self, person: Uuid) -> Result<bool, KeyError> {
        self.with_key(person, |entry| entry.is_some())
    }

    /// Seals `profile` (as submitted: a rejected one need not be a valid
    /// [`Profile`]) under `person`'s key, making the key if they have none.
    /// The associated data is the event's `id` and `subject`. A new key's
    /// wrap must then be committed with the event: see
    /// [`Keyring::wrap_to_commit`]. Fails only when the store cannot say
    /// whether they hold a key: a new one would replace theirs.
    pub fn seal(
        &self,
        person: Uuid,
        event_id: Uuid,
        subject: &str,
        profile: &Value,
    ) -> Result<SealedProfile, KeyError> {
        let plaintext =
            zeroize::Zeroizing::new(serde_json::to_vec(profile).expect("a JSON value serialises"));
        let sealed = self.with_key(person, |entry| {
            entry.map(|entry| {
                seal::seal_profile(
                    &entry.key,
                    entry.kid.as_str(),
                    event_id,
                    subject,
                    &plaintext,
                )
            })
        })?;
        if let Some(sealed) = sealed {
            return Ok(sealed);
        }
        // The key is made outside the lock; a racing submitter for the same
        // person may have made one meanwhile, and theirs wins. The store
        // holds no wrap for them: only this keyring's keys are committed.
        let key = seal::random_key();
        let kid = KeyId::random();
        let mut inner = self.write();
        let master = Arc::clone(&inner.master);
        let slot = inner.keys.entry(person).or_insert(Slot::Destroyed);
        if let Slot::Destroyed = slot {
            let wrapped = wrap(&master, person, &kid, &key);
            *slot = Slot::Held(Entry {
                kid,
                key,
                uncommitted: Some(wrapped),
            });
        }
        let entry = slot.held().expect("a key was just made");
        Ok(seal::seal_profile(
            &entry.key,
            entry.kid.as_str(),
            event_id,
            subject,
            &plaintext,
        ))
    }

    /// [`Keyring::seal`] of a typed profile.
    pub fn seal_profile(
        &self,
        person: Uuid,
        event_id: Uuid,
        subject: &str,
        profile: &Profile,
    ) -> Result<SealedProfile, KeyError> {
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
        self.try_open(person, event_id, subject, sealed)
            .map_err(|error| {
                tracing::warn!(%error, %person, "a data key could not be read");
                SealError::Unreadable
            })?
    }

    /// [`Keyring::open`], failing with the store's own error when the
    /// person's key cannot be read, for callers that must not go on then.
    pub fn try_open(
        &self,
        person: Uuid,
        event_id: Uuid,
        subject: &str,
        sealed: &SealedProfile,
    ) -> Result<Result<Value, SealError>, KeyError> {
        let plaintext = self.with_key(person, |entry| {
            let entry = entry
                .filter(|e| e.kid.as_str() == sealed.kid)
                .ok_or(SealError::NoKey)?;
            seal::open_profile(&entry.key, event_id, subject, sealed).ok_or(SealError::Unopenable)
        })?;
        Ok(plaintext.and_then(|plaintext| {
            serde_json::from_slice(&plaintext).map_err(|_| SealError::Unopenable)
        }))
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
    /// that moment (a rotation in between wraps it afresh). A key not held
    /// in memory is a stored one, so this never reads the store.
    pub fn wrap_to_commit(&self, person: Uuid) -> Option<WrappedKey> {
        self.read()
            .keys
            .get(&person)
            .and_then(Slot::held)
            .and_then(|e| e.uncommitted.clone())
    }

    /// After a storage failure lost commits that were never durable:
    /// every key whose wrap the store does not hold (`stored` names the
    /// people whose wraps it does) is committed again with the next event
    /// sealed under it, under the master key current now. Only keys held
    /// in memory can be missing: the others were read from the store.
    pub fn recommit_missing(&self, stored: &std::collections::HashSet<Uuid>) {
        let mut inner = self.write();
        let master = Arc::clone(&inner.master);
        for (person, slot) in &mut inner.keys {
            if let Slot::Held(entry) = slot
                && entry.uncommitted.is_none()
                && !stored.contains(person)
            {
                entry.uncommitted = Some(wrap(&master, *person, &entry.kid, &entry.key));
            }
        }
    }

    /// Whether `person` holds the key named `kid`.
    pub fn holds_kid(&self, person: Uuid, kid: &str) -> Result<bool, KeyError> {
        self.with_key(person, |entry| entry.is_some_and(|e| e.kid.as_str() == kid))
    }

    /// `person`'s key and its id wrapped under the group key, for the
    /// group's key bucket.
    pub fn export(&self, person: Uuid, group: &GroupKey) -> Result<Option<Vec<u8>>, KeyError> {
        self.with_key(person, |entry| {
            let entry = entry?;
            let mut plaintext = zeroize::Zeroizing::new(Vec::with_capacity(32 + entry.kid.0.len()));
            plaintext.extend_from_slice(&entry.key[..]);
            plaintext.extend_from_slice(entry.kid.0.as_bytes());
            Some(group.wrap(person, &plaintext))
        })
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
        // A committed key not held yet is read first, so that it is kept.
        self.with_key(person, |_| ())?;
        let mut inner = self.write();
        // A key never committed here and not the group's was made by a
        // write this node did not decide (sealed before it lost the
        // lease): the group's key replaces it.
        if inner
            .keys
            .get(&person)
            .and_then(Slot::held)
            .is_some_and(|held| held.uncommitted.is_none() || held.kid == kid)
        {
            return Ok(false);
        }
        let wrapped = wrap(&inner.master, person, &kid, &key);
        inner.keys.insert(
            person,
            Slot::Held(Entry {
                kid,
                key,
                uncommitted: Some(wrapped),
            }),
        );
        Ok(true)
    }

    /// The writer's word that `record` is durable.
    pub fn mark_committed(&self, record: &WrappedKey) {
        let mut inner = self.write();
        if let Some(Slot::Held(entry)) = inner.keys.get_mut(&record.person)
            && entry.uncommitted.as_ref() == Some(record)
        {
            entry.uncommitted = None;
        }
    }

    /// Destroys `person`'s key in memory (it is wiped as it drops); whether
    /// they had one. Copies on disk are out of reach only once the master
    /// key is rotated: see [`Keyring::rotate`].
    pub fn destroy(&self, person: Uuid) -> Result<bool, KeyError> {
        let held = self.holds(person)?;
        self.write().keys.insert(person, Slot::Destroyed);
        Ok(held)
    }

    /// Destroys the keys of `erased`, wraps every remaining key under
    /// `next`, and wraps new keys under it from now on. Every stored key
    /// not held yet is read and unwrapped first, outside the lock (the
    /// erasures' turn keeps rotations one at a time); the rest happens
    /// under one lock, so that no key is made under the old master key
    /// after its last re-wrap. Afterwards the keyring holds every key: the
    /// store's wraps stay under the old master key until the rotation's
    /// commit, and none is read again meanwhile.
    pub fn rotate(&self, next: MasterKey, erased: &[Uuid]) -> Result<Rotation, KeyError> {
        let master = Arc::clone(&self.read().master);
        let mut loaded = Vec::new();
        for record in self.source.wraps() {
            let record = record?;
            if self.read().keys.contains_key(&record.person) {
                continue;
            }
            let key = unwrap(&master, &record)?;
            loaded.push((
                record.person,
                Entry {
                    kid: record.kid,
                    key,
                    uncommitted: None,
                },
            ));
        }
        let mut inner = self.write();
        for (person, entry) in loaded {
            inner.keys.entry(person).or_insert(Slot::Held(entry));
        }
        let destroyed = erased
            .iter()
            .filter(|person| {
                matches!(
                    inner.keys.insert(**person, Slot::Destroyed),
                    Some(Slot::Held(_))
                )
            })
            .copied()
            .collect();
        let rewrapped = inner
            .keys
            .iter_mut()
            .filter_map(|(person, slot)| match slot {
                Slot::Held(entry) => Some((person, entry)),
                Slot::Destroyed => None,
            })
            .map(|(person, entry)| {
                let record = wrap(&next, *person, &entry.kid, &entry.key);
                // The rotation's batch carries every wrap, a new person's
                // too, so none is left to commit with its event.
                entry.uncommitted = None;
                record
            })
            .collect();
        inner.master = Arc::new(next);
        Ok(Rotation {
            rewrapped,
            destroyed,
        })
    }
}
