//! Holding the ledger to a checkpoint (`rotation-ledger verify
//! --checkpoint`): the signature, the root of the log's tree at the
//! checkpoint's size, and the hash chain, each found to hold or not.
//!
//! The root is computed afresh from the events' hashes, not read from the
//! stored tree: whoever rewrote the events could have left the stored
//! nodes as they were.

use super::tree::Frontier;
use super::{Checkpoint, NoteVerifier};
use crate::ledger::{Ledger, StoreError};

/// One thing checked, and whether it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `signature`, `root` or `chain`.
    pub what: &'static str,
    pub holds: bool,
    /// What was found, in a sentence.
    pub detail: String,
}

/// Checks `note` against `verifier` and the ledger's log.
pub fn hold_to(
    ledger: &Ledger,
    note: &str,
    verifier: &NoteVerifier,
) -> Result<Vec<Finding>, StoreError> {
    let mut findings = Vec::with_capacity(3);
    let checkpoint = match verifier.open_checkpoint(note) {
        Ok(checkpoint) => {
            findings.push(Finding {
                what: "signature",
                holds: true,
                detail: format!("signed by {}", verifier.name()),
            });
            Some(checkpoint)
        }
        Err(error) => {
            findings.push(Finding {
                what: "signature",
                holds: false,
                detail: format!("not signed by {}: {error}", verifier.name()),
            });
            // The root is still worth checking: it says whether the log is
            // the one the unverified checkpoint describes.
            note.split_once("\n\n")
                .and_then(|(text, _)| Checkpoint::parse(&format!("{text}\n")).ok())
        }
    };
    findings.push(match &checkpoint {
        None => Finding {
            what: "root",
            holds: false,
            detail: "the checkpoint cannot be read".into(),
        },
        Some(checkpoint) => root_finding(ledger, checkpoint)?,
    });
    let verdict = ledger.verify()?;
    findings.push(Finding {
        what: "chain",
        holds: verdict.ok,
        detail: match verdict.first_bad_position {
            None => format!(
                "the hash chain verifies up to position {}",
                verdict.head_position
            ),
            Some(bad) => format!(
                "the hash chain breaks at position {bad}: {}",
                verdict.problem.as_deref().unwrap_or("unknown")
            ),
        },
    });
    Ok(findings)
}

fn root_finding(ledger: &Ledger, checkpoint: &Checkpoint) -> Result<Finding, StoreError> {
    let head = ledger.head().position;
    if checkpoint.size > head {
        return Ok(Finding {
            what: "root",
            holds: false,
            detail: format!(
                "the checkpoint's tree has {} events; the log only {head}",
                checkpoint.size
            ),
        });
    }
    let mut frontier = Frontier::new();
    for event in ledger.events_iter(0).take(checkpoint.size as usize) {
        let event = event?;
        let mut leaf = [0; 32];
        if hex::decode_to_slice(&event.ledger.hash, &mut leaf).is_err() {
            return Err(StoreError::Corrupt {
                key: format!("event {}", event.ledger.position),
                message: "its hash is not 64 hex digits".into(),
            });
        }
        frontier.append(&leaf);
    }
    let holds = frontier.size() == checkpoint.size && frontier.root() == checkpoint.root;
    Ok(Finding {
        what: "root",
        holds,
        detail: if holds {
            format!(
                "the log's tree of {} events has the checkpoint's root",
                checkpoint.size
            )
        } else {
            format!(
                "the log's tree of {} events does not have the checkpoint's root: \
                 the log is not the one the checkpoint describes",
                checkpoint.size
            )
        },
    })
}
