//! The verbs on people's data (contract section 9): `erase`, `person`
//! (subject access), and `reseal`, which seals the profiles of a log
//! written before sealing into a new ledger.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rotation_ledger::ledger::{Ledger, LedgerOptions};

use super::{DataDir, open_existing, open_existing_with};

/// `erase`: commits `person.erased` and destroys the person's data key;
/// prints the erasure once both are durable.
pub(super) async fn erase(data: &DataDir, person: uuid::Uuid, reason: &str) -> Result<ExitCode> {
    let ledger = open_existing(data)?;
    let erasure = ledger.erase(person, reason).await;
    ledger.close();
    println!("{}", serde_json::to_string_pretty(&erasure?)?);
    Ok(ExitCode::SUCCESS)
}

/// `person`: everything the ledger holds about one person, as one JSON
/// document.
pub(super) async fn access(data: &DataDir, person: uuid::Uuid) -> Result<ExitCode> {
    let ledger = open_existing(data)?;
    let document = tokio::task::spawn_blocking(move || {
        rotation_ledger::personal::subject_access(&ledger, person)
    })
    .await??;
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(ExitCode::SUCCESS)
}

/// `reseal`: a new ledger from this one, the same events in order, every
/// profile sealed, a new chain; the new store records the old head.
pub(super) async fn reseal(data: &DataDir, out: &Path) -> Result<ExitCode> {
    let old = open_existing_with(data, LedgerOptions::one_pass())?;
    let new = Ledger::open(out, LedgerOptions::default())
        .with_context(|| format!("cannot open the new ledger in {}", out.display()))?;
    let provenance = new.reseal_from(&old, |_, _| {}).await?;
    println!(
        "resealed {} events into {}; the old head was {} at position {}",
        new.head().position,
        out.display(),
        provenance.hash,
        provenance.position
    );
    new.close();
    old.close();
    Ok(ExitCode::SUCCESS)
}
