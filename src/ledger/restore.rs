//! `rotation-ledger restore --from-nats URL`: an empty ledger filled again
//! with the events this ledger published, in position order, each checked
//! against the chain as it comes (position, `prevhash`, `hash`) and then
//! committed through the writer as it was committed first: same
//! positions, recorded times and hashes, so the Merkle tree, the id index
//! and the rules' state follow as for any commit. A restore is an
//! [`Apply`] that starts on an empty ledger.
//!
//! Rejections are not published with the log, so a restored ledger holds
//! none; nor does it hold the data keys that sealed profiles, which lived
//! only in the store.

use super::{Apply, Ledger, LedgerError};
use crate::personal::KeyError;
use crate::store::{Head, StoreError};

/// Why a restore (or an apply) stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the target ledger must be empty; it holds {0} events")]
    NotEmpty(u64),
    #[error("the published log breaks at position {position}: {problem}")]
    Broken { position: u64, problem: String },
    #[error("event {position} was not committed again: {message}")]
    Refused { position: u64, message: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The master key could not be rotated for an applied erasure.
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// A restore under way: feed it the published events in order, then
/// [`Restore::finish`].
#[derive(Debug)]
pub struct Restore {
    apply: Apply,
}

impl Ledger {
    /// Starts a restore into this ledger, which must be empty.
    pub fn restore(&self) -> Result<Restore, RestoreError> {
        let position = self.head().position;
        if position != 0 {
            return Err(RestoreError::NotEmpty(position));
        }
        Ok(Restore {
            apply: Apply::after_head(self.clone(), "restore"),
        })
    }
}

impl Restore {
    /// The position the next event must have.
    pub fn next_position(&self) -> u64 {
        self.apply.next_position()
    }

    /// Checks one published event (its stored JSON) against the chain so
    /// far, and commits it with the others of its batch.
    pub async fn push(&mut self, json: &[u8]) -> Result<(), RestoreError> {
        self.apply.push(json).await
    }

    /// Commits what is left and returns the restored head.
    pub async fn finish(mut self) -> Result<Head, RestoreError> {
        self.apply.commit().await?;
        let ledger = self.apply.ledger();
        ledger.flush()?;
        Ok(ledger.head())
    }
}
