//! `rotation-ledger import FILE.jsonl`: CloudEvents from JSON Lines, each
//! line one submission through the ordinary append path.
//!
//! Lines are sent in chunks so that many share one flush; a bad line is
//! reported with its number and reason and never stops the import.

use std::io::BufRead;

use futures::StreamExt;
use serde::Serialize;

use crate::auth::Caller;
use crate::ledger::{Ledger, LedgerError, ReceiptStatus, Submission};

/// Lines per submitted chunk: enough to amortise a flush, small enough to
/// keep memory flat.
const CHUNK_LINES: usize = 2_000;

/// Chunks in flight at once, so that reading and parsing overlap the
/// writer's work.
const IN_FLIGHT: usize = 3;

/// Chunks parsed at once: parsing (JSON, validation, canonical form) costs
/// as much as committing, so it runs beside the writer on every core.
const PARSERS: usize = 2;

/// Bytes read so far, and the chunk's lines with their numbers.
type RawChunk = (u64, Vec<(usize, Vec<u8>)>);

/// Parses a chunk of lines into submissions, each named by its line.
fn parse((read, lines): RawChunk, name: &str) -> (u64, Vec<(usize, Submission)>) {
    let submissions = lines
        .into_iter()
        .map(|(number, line)| {
            let origin = format!("import:{name}:{number}");
            (
                number,
                Submission::from_json(line, origin, Caller::operator()),
            )
        })
        .collect();
    (read, submissions)
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    /// The rejected lines: (line number, code, message).
    #[serde(skip)]
    pub problems: Vec<(usize, String, String)>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted {}, duplicate {}, rejected {}",
            self.accepted, self.duplicate, self.rejected
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the input: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Imports JSON Lines from `input`. `name` names the source in rejection
/// records; `on_progress` is told how many bytes have been read so far.
pub async fn import(
    ledger: &Ledger,
    input: impl BufRead + Send + 'static,
    name: &str,
    mut on_progress: impl FnMut(u64, &ImportSummary),
) -> Result<ImportSummary, ImportError> {
    let name: std::sync::Arc<str> = name.into();
    // Reading runs on a blocking thread; its chunks of raw lines are parsed
    // on the blocking pool, several at once, and come back in order.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<RawChunk>>(IN_FLIGHT);
    let reader = tokio::task::spawn_blocking(move || {
        let mut input = input;
        let mut chunk = Vec::with_capacity(CHUNK_LINES);
        let mut read: u64 = 0;
        let mut number = 0;
        loop {
            let mut line = Vec::new();
            let n = match input.read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if n == 0 {
                break;
            }
            read += n as u64;
            number += 1;
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            chunk.push((number, line));
            if chunk.len() == CHUNK_LINES
                && tx
                    .blocking_send(Ok((read, std::mem::take(&mut chunk))))
                    .is_err()
            {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok((read, chunk)));
        }
    });
    let mut summary = ImportSummary::default();
    let mut answers = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|chunk| {
            let name = std::sync::Arc::clone(&name);
            tokio::task::spawn_blocking(move || chunk.map(|raw| parse(raw, &name)))
        })
        .buffered(PARSERS)
        .map(|parsed| async move {
            let (read, lines) = parsed.map_err(|e| std::io::Error::other(e.to_string()))??;
            let (numbers, submissions): (Vec<_>, Vec<_>) = lines.into_iter().unzip();
            let outcomes = ledger.submit(submissions).await?;
            Ok::<_, ImportError>((read, numbers, outcomes))
        })
        .buffered(IN_FLIGHT);
    while let Some(answer) = answers.next().await {
        let (read, numbers, outcomes) = answer?;
        for (number, outcome) in numbers.into_iter().zip(outcomes) {
            for receipt in &outcome.receipts {
                match receipt.status {
                    ReceiptStatus::Accepted => summary.accepted += 1,
                    ReceiptStatus::Duplicate => summary.duplicate += 1,
                    ReceiptStatus::Rejected => summary.rejected += 1,
                }
            }
            if let Some(violation) = outcome.rejection {
                summary
                    .problems
                    .push((number, violation.code.to_string(), violation.message));
            }
        }
        on_progress(read, &summary);
    }
    drop(answers);
    reader
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(summary)
}
