//! `rotation-ledger reseal` (contract section 9, existing logs): a new
//! ledger written from an old one, the same events in the same order,
//! every profile sealed under the new ledger's keys, and a new chain.
//! Committed bytes are never rewritten, so this is how an operator
//! replaces a log whose early events hold profiles in clear. The new
//! store records the old head's position and hash as provenance.

use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerError, Submission};
use crate::auth::Caller;
use crate::store::{Head, StoreError};

/// The checkpoint naming the ledger a resealed one was written from.
pub const RESEALED_FROM: &str = "resealed_from";

/// Events handed to the writer at a time.
const RESEAL_BATCH: usize = 2_000;

/// Where a resealed ledger came from: the old log's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub position: u64,
    pub hash: String,
    pub recordedtime: String,
}

/// Why a reseal stopped.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error("the new ledger must be empty; it holds {0} events")]
    NotEmpty(u64),
    #[error("event {position} of the old log was not accepted again: {message}")]
    Refused { position: u64, message: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl Ledger {
    /// Writes every event of `old` into this (empty) ledger, in order, each
    /// profile opened under the old keys and sealed under the new; an
    /// erased profile stays out. Records the old head as provenance.
    /// Calls `on_progress(position, head)` after each batch.
    pub async fn reseal_from(
        &self,
        old: &Ledger,
        mut on_progress: impl FnMut(u64, u64),
    ) -> Result<Provenance, ResealError> {
        let position = self.head().position;
        if position != 0 {
            return Err(ResealError::NotEmpty(position));
        }
        let Head {
            position: head,
            hash,
            recordedtime,
        } = old.head();
        let keyring = std::sync::Arc::clone(old.keyring());
        let mut events = old.replay(0);
        loop {
            let mut batch = Vec::with_capacity(RESEAL_BATCH);
            let mut positions = Vec::with_capacity(RESEAL_BATCH);
            for event in events.by_ref().take(RESEAL_BATCH) {
                let event = event?;
                let mut value = event.envelope.to_value();
                if let Ok(data) = event.envelope.data() {
                    let profile = crate::personal::profile_of(&keyring, &event, &data);
                    if let Some(fields) = value["data"].as_object_mut() {
                        fields.remove("sealed_profile");
                        if let Some(profile) = profile {
                            fields.insert(
                                "profile".into(),
                                serde_json::to_value(profile).expect("a profile serialises"),
                            );
                        }
                    }
                }
                // The copy is the ledger's own: its erasures included.
                let mut submission = Submission::from_json(
                    serde_json::to_vec(&value).expect("an event serialises"),
                    "reseal",
                    Caller::operator(),
                );
                submission.by_ledger = true;
                submission.seal(self.keyring()).map_err(StoreError::from)?;
                batch.push(submission);
                positions.push(event.ledger.position);
            }
            if batch.is_empty() {
                break;
            }
            let outcomes = self.submit_sealed(batch, None).await?;
            for (position, outcome) in positions.iter().zip(outcomes) {
                if let Some(violation) = outcome.rejection {
                    return Err(ResealError::Refused {
                        position: *position,
                        message: violation.message,
                    });
                }
            }
            on_progress(positions.last().copied().unwrap_or_default(), head);
        }
        let provenance = Provenance {
            position: head,
            hash,
            recordedtime,
        };
        let bytes = serde_json::to_vec(&provenance).expect("provenance serialises");
        self.save_checkpoint(RESEALED_FROM, &bytes, true)?;
        Ok(provenance)
    }

    /// The old log this ledger was resealed from, if it was.
    pub fn resealed_from(&self) -> Result<Option<Provenance>, StoreError> {
        Ok(self
            .checkpoint(RESEALED_FROM)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// How many committed registrations hold a profile in clear (written
    /// before sealing). Reads the whole log. Blocking.
    pub fn clear_profiles(&self) -> Result<u64, StoreError> {
        let mut clear = 0;
        for typed in self.replay_typed(0) {
            if let Ok(rotation_events::EventData::ParticipantRegistered(d)) = typed?.data
                && d.profile.is_some()
            {
                clear += 1;
            }
        }
        Ok(clear)
    }
}
