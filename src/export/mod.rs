//! The evaluation data package (contract section 8): the committed log as
//! of a recorded time, folded into rows by
//! [`rotation_projections::dataset`], pseudonymised, and written as three
//! CSV files with a Frictionless Data Package (v2) descriptor that carries
//! the tables' schemas and the export's provenance.
//!
//! This module owns the data dictionary: [`TABLES`] holds every column's
//! name, type, allowed values and description, once. The descriptor's field
//! descriptions and the column tables of `docs/datasets.md`
//! ([`data_dictionary`]) are both generated from it, and a test keeps the
//! document in step.
//!
//! Nothing written depends on when the export ran: the same log, options
//! and key give the same bytes, so an export can be reproduced and checked
//! later.
//!
//! Map of the module:
//! - this file: the entry points ([`export`], [`export_decoded`]), their
//!   options, summary and errors, and the fold of the log up to `as_of`.
//! - `dictionary`: the data dictionary, [`TABLES`], and its Markdown form.
//! - `pseudonym`: the keyed pseudonyms, the key id and key files.
//! - `cells`: one row of each table as the text of its cells.
//! - `package`: the CSV files and the descriptor written under temporary
//!   names, then renamed into place.
//! - `descriptor`: the Frictionless Data Package descriptor and its
//!   provenance.

mod cells;
mod descriptor;
mod dictionary;
mod package;
mod pseudonym;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use rotation_events::{CommittedEvent, InvalidEvent, TypedEvent};
use rotation_projections::dataset::DatasetFold;

pub use dictionary::{Column, ColumnType, TABLES, Table, data_dictionary};
pub use pseudonym::{PSEUDONYM_LENGTH, PSEUDONYMISATION_METHOD, key_from_file, key_id};

use package::write_package;

/// What to export, where, and under which key.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The directory the package is written to; created when missing.
    pub out: PathBuf,
    /// The study's pseudonymisation key: the key file's bytes without one
    /// trailing newline (see [`key_from_file`]).
    pub key: Vec<u8>,
    /// Only events recorded by then are used.
    pub as_of: DateTime<Utc>,
    /// The day outcomes are judged at.
    pub reference_date: NaiveDate,
    /// The partnerships to export; `None` exports all.
    pub partnerships: Option<BTreeSet<String>>,
    /// Recorded in the provenance, so that a reader knows which program's
    /// definitions produced the rows.
    pub program_version: String,
    /// Signs the checkpoint of the export's head for `provenance.checkpoint`;
    /// without it the provenance has none.
    pub checkpoint: Option<CheckpointSigner>,
}

/// The signed checkpoint an export's provenance carries: the ledger's
/// tree at the export's head, and the key to check its signature with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProvenanceCheckpoint {
    /// The signed note (C2SP `tlog-checkpoint` in a `signed-note`).
    pub note: String,
    /// The verifier key in the note format.
    pub verifier_key: String,
}

/// Signs the checkpoint of the tree of a given size (the export's head
/// position), or says why not.
#[derive(Clone)]
pub struct CheckpointSigner(
    pub std::sync::Arc<dyn Fn(u64) -> Result<ProvenanceCheckpoint, String> + Send + Sync>,
);

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointSigner")
    }
}

/// What an export used and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The position of the last event used (0 for an empty log).
    pub head_position: u64,
    /// Its hash (64 zeros for an empty log).
    pub head_hash: String,
    /// Rows per table: `jobseekers`, `releases`, `substitutions`.
    pub rows: BTreeMap<String, usize>,
}

/// Why an export failed. A failed export leaves no partial files: they are
/// written under temporary names, renamed into place only once all are
/// complete, the descriptor last.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the pseudonymisation key is empty")]
    EmptyKey,
    #[error("reading the log: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the log is not in position order: expected position {expected}, got {found}")]
    OutOfOrder { expected: u64, found: u64 },
    #[error("event at position {position}: recordedtime `{text}` is not RFC 3339")]
    RecordedTime {
        position: u64,
        text: String,
        #[source]
        source: chrono::ParseError,
    },
    #[error("event at position {position} cannot be read: {source}")]
    Undecodable {
        position: u64,
        #[source]
        source: InvalidEvent,
    },
    #[error("two {table} share the pseudonym {pseudonym}; export again under another key")]
    PseudonymCollision {
        table: &'static str,
        pseudonym: String,
    },
    #[error("signing the checkpoint of the export's head: {0}")]
    Checkpoint(String),
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Exports the committed log as a data package into `options.out`.
///
/// `events` is the committed log in position order; the writer stops at the
/// first event recorded after `as_of` (recordedtime is non-decreasing in
/// position), so reruns reproduce old exports byte for byte.
pub fn export<E: std::error::Error + Send + Sync + 'static>(
    events: impl Iterator<Item = Result<CommittedEvent, E>>,
    options: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    export_decoded(events.map(|item| item.map(TypedEvent::new)), options)
}

/// [`export`] of events whose data is already decoded.
pub fn export_decoded<E: std::error::Error + Send + Sync + 'static>(
    events: impl Iterator<Item = Result<TypedEvent, E>>,
    options: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    if options.key.is_empty() {
        return Err(ExportError::EmptyKey);
    }
    let mut fold = DatasetFold::new(options.partnerships.clone());
    let mut head_position = 0;
    let mut head_hash = crate::chain::GENESIS.to_owned();
    // The ledger commits in groups that share one recordedtime, so a time
    // already found to be within `as_of` need not be parsed again.
    let mut within: Option<String> = None;
    for decoded in events {
        let TypedEvent { event, data } = decoded.map_err(|e| ExportError::Read(Box::new(e)))?;
        let position = event.ledger.position;
        if position != head_position + 1 {
            return Err(ExportError::OutOfOrder {
                expected: head_position + 1,
                found: position,
            });
        }
        if within.as_deref() != Some(event.ledger.recordedtime.as_str()) {
            let recorded =
                DateTime::parse_from_rfc3339(&event.ledger.recordedtime).map_err(|source| {
                    ExportError::RecordedTime {
                        position,
                        text: event.ledger.recordedtime.clone(),
                        source,
                    }
                })?;
            if recorded > options.as_of {
                break;
            }
            within = Some(event.ledger.recordedtime.clone());
        }
        fold.try_apply_with(&event, || data)
            .map_err(|source| ExportError::Undecodable { position, source })?;
        head_position = position;
        head_hash = event.ledger.hash;
    }
    let folded = std::time::Instant::now();
    let dataset = fold.finish(options.reference_date);
    let finished = std::time::Instant::now();
    let checkpoint = options
        .checkpoint
        .as_ref()
        .map(|sign| (sign.0)(head_position))
        .transpose()
        .map_err(ExportError::Checkpoint)?;
    let summary = write_package(
        &dataset,
        options,
        head_position,
        head_hash,
        checkpoint.as_ref(),
    );
    tracing::debug!(
        finish = ?(finished - folded),
        write = ?finished.elapsed(),
        "export written"
    );
    summary
}
