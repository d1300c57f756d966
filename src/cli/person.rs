//! The verbs on one person's data (contract section 9): `erase` and
//! `person` (subject access).

use std::process::ExitCode;

use anyhow::Result;

use super::{DataDir, open_existing};

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
