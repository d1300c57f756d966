//! `rotation-ledger restore --from-nats URL`: an empty ledger filled again
//! with the events this ledger published, in position order, each checked
//! against the chain as it comes (position, `prevhash`, `hash`) and then
//! committed through the writer as it was committed first: same
//! positions, recorded times and hashes, so the Merkle tree, the id index
//! and the rules' state follow as for any commit.
//!
//! Rejections are not published with the log, so a restored ledger holds
//! none; nor does it hold the data keys that sealed profiles, which lived
//! only in the store.

use rotation_events::CommittedEvent;

use super::{Ledger, LedgerError, Submission};
use crate::chain::Verifier;
use crate::store::{Head, StoreError};

/// Events handed to the writer at a time.
const RESTORE_BATCH: usize = 2_000;

/// Why a restore stopped.
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
}

/// A restore under way: feed it the published events in order, then
/// [`Restore::finish`].
#[derive(Debug)]
pub struct Restore {
    ledger: Ledger,
    verifier: Verifier,
    /// The position the next event must have.
    next: u64,
    batch: Vec<(u64, Submission)>,
}

impl Ledger {
    /// Starts a restore into this ledger, which must be empty.
    pub fn restore(&self) -> Result<Restore, RestoreError> {
        let position = self.head().position;
        if position != 0 {
            return Err(RestoreError::NotEmpty(position));
        }
        Ok(Restore {
            ledger: self.clone(),
            verifier: Verifier::default(),
            next: 1,
            batch: Vec::with_capacity(RESTORE_BATCH),
        })
    }
}

impl Restore {
    /// The position the next event must have.
    pub fn next_position(&self) -> u64 {
        self.next
    }

    /// Checks one published event (its stored JSON) against the chain so
    /// far, and commits it with the others of its batch.
    pub async fn push(&mut self, json: &[u8]) -> Result<(), RestoreError> {
        let decoded = CommittedEvent::from_json(json).map_err(|e| e.0);
        let position = decoded
            .as_ref()
            .map_or(self.next, |event| event.ledger.position);
        self.verifier
            .check(position, decoded.as_ref().map_err(Clone::clone));
        if let Some((position, problem)) = self.verifier.problem() {
            return Err(RestoreError::Broken {
                position,
                problem: problem.to_owned(),
            });
        }
        let event = decoded.map_err(|problem| RestoreError::Broken { position, problem })?;
        self.next = position + 1;
        self.batch
            .push((position, Submission::committed(event, "restore")));
        if self.batch.len() >= RESTORE_BATCH {
            self.commit().await?;
        }
        Ok(())
    }

    /// Commits what is left and returns the restored head.
    pub async fn finish(mut self) -> Result<Head, RestoreError> {
        self.commit().await?;
        self.ledger.flush()?;
        Ok(self.ledger.head())
    }

    async fn commit(&mut self) -> Result<(), RestoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let (positions, submissions): (Vec<u64>, Vec<Submission>) =
            std::mem::take(&mut self.batch).into_iter().unzip();
        let outcomes = self.ledger.submit_sealed(submissions, None).await?;
        for (position, outcome) in positions.into_iter().zip(outcomes) {
            if let Some(violation) = outcome.rejection {
                return Err(RestoreError::Refused {
                    position,
                    message: violation.message,
                });
            }
        }
        Ok(())
    }
}
