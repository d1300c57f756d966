//! Personal data sealed per person (contract section 9): the master key
//! and its file ([`MasterKeyFile`]), every person's data key
//! ([`Keyring`], stored as [`WrappedKey`]s), and the sealing of profiles
//! into `data.sealed_profile` and their opening.
//!
//! Each person's profile is sealed with XChaCha20-Poly1305 under a random
//! 256-bit data key of their own, with the event's `id` and `subject` as
//! associated data. Each data key is stored wrapped (sealed again) under
//! the master key, with the person, the key's id and the master key's id as
//! associated data. Erasing a person destroys their data key, so their
//! profile no longer opens anywhere, while the log, its hashes and its
//! positions stay as they were.
//!
//! # Where things live
//!
//! - The master key: `keys/master.key` in the data directory (or
//!   `[keys] master_key_file`), mode 0600 in a 0700 directory, written
//!   atomically. Opening over a store that holds wrapped keys or sealed
//!   profiles without it is refused ([`KeyError::MissingMasterKey`]).
//! - The wrapped data keys: in the store, committed in the same batch as
//!   the first event sealed under each ([`Keyring::wrap_to_commit`]), so a
//!   crash leaves neither a sealed profile without its key nor a key
//!   without its event.
//! - The data keys in clear: only in this process's memory, each unwrapped
//!   when first used, wiped when dropped.
//! - In a ledger group, each data key also in the group's key bucket,
//!   wrapped under the [`GroupKey`] every node holds, and purged from it
//!   (every revision) by an erasure before it is answered.
//!
//! # Erasure and the rotation of the master key
//!
//! The store (sled) keeps old versions of values in its segments until it
//! reclaims them, so deleting a wrapped key does not put it out of reach:
//! an old copy, wrapped under the master key, may be read back. Erasure
//! therefore also replaces the master key, and every remaining data key is
//! wrapped again under the new one. Once the old master key's file is gone,
//! every copy of the erased key, in any segment, is wrapped under a key
//! that no longer exists. The steps, each durable before the next:
//!
//! 1. [`MasterKeyFile::begin_rotation`] writes a fresh key to
//!    `master.key.next` (temporary file, fsync, rename, fsync the
//!    directory).
//! 2. [`Keyring::rotate`] destroys the erased people's keys in memory and
//!    wraps every remaining key under the next master key. The writer
//!    commits, in one batch: the `person.erased` events, the deletion of
//!    the erased people's wraps, and every re-wrapped key; then flushes.
//! 3. [`MasterKeyFile::finish_rotation`] renames `master.key.next` over
//!    `master.key` and fsyncs the directory. Only now is the erasure
//!    answered.
//!
//! Every wrap names the master key it is under, which is how opening
//! ([`Keyring::load`]) tells how far a crash let a rotation go when it
//! finds `master.key.next`:
//!
//! - wraps under the old key only: step 2 never committed, so neither did
//!   the erasures, which were never answered; the rotation is abandoned
//!   ([`Recovery::AbandonRotation`]: delete `master.key.next`);
//! - otherwise (wraps under the next key, or none at all): step 2
//!   committed; any wrap still under the old key is wrapped again, then
//!   step 3 is done ([`Recovery::FinishRotation`]).
//!
//! Several erasures may share one rotation: its cost is one unwrap and one
//! wrap per remaining person, whatever the number erased.
//!
//! # Where an external KMS or HSM would plug in
//!
//! [`MasterKey`] is the only holder of the key-encryption key, and it is
//! used only to wrap and unwrap data keys (on a key's first use, in
//! [`Keyring::seal`] for a new person, and in [`Keyring::rotate`]). A KMS
//! would replace the master key's file and those two operations; the data
//! keys, the sealing and the store's records stay as they are.

mod access;
mod group_key;
mod keyring;
mod master_key;
mod open;
pub mod retention;
mod seal;

use std::path::PathBuf;

use uuid::Uuid;

pub use access::{AccessError, subject_access};
pub use group_key::GroupKey;
pub use keyring::{KeyId, Keyring, Recovery, Rotation, WrapSource, WrappedKey};
pub use master_key::{MasterKey, MasterKeyFile, MasterKeyId, MasterKeys};
pub use open::{open_typed, profile_of};
pub use seal::ALG;

/// Why the keys could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the store holds sealed personal data but the master key file {path} is missing; \
         restore it (a new key would open nothing), or point [keys] master_key_file at it"
    )]
    MissingMasterKey { path: PathBuf },
    #[error("master key file {path}: {reason}")]
    MalformedMasterKey { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data key {} of person {person} is wrapped under master key {kek}, \
         which neither master.key nor master.key.next holds", kid.as_str()
    )]
    UnknownMasterKey {
        person: Uuid,
        kid: KeyId,
        kek: MasterKeyId,
    },
    #[error("the data key {} of person {person} does not unwrap: the record was changed", kid.as_str())]
    Unwrap { person: Uuid, kid: KeyId },
    #[error("group key file {path}: {reason}")]
    MalformedGroupKey { path: PathBuf, reason: String },
    /// An entry of the group's key bucket that the group key does not
    /// open: another group's key, or changed bytes.
    #[error("{0} from the group's key bucket does not open under this node's group key")]
    GroupUnwrap(String),
    /// The store could not be read for a wrapped data key.
    #[error("the stored data keys cannot be read: {0}")]
    Stored(String),
}

/// Why a sealed profile does not open. Either way it counts as not
/// recorded; the difference matters only to a subject access request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The person's key, of that id, is gone: the profile was erased.
    #[error("the profile's key is destroyed: the profile was erased")]
    NoKey,
    /// The key is there but the profile does not open under it: another
    /// event's associated data, another algorithm, or changed bytes.
    #[error("the profile does not open under its key")]
    Unopenable,
    /// The store could not be read for the profile's key: neither erased
    /// nor opened, until the store works again.
    #[error("the profile's key cannot be read from the store at the moment")]
    Unreadable,
}

#[cfg(test)]
mod tests;
