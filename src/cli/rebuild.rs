//! `rebuild`: the dashboards folded afresh from the whole log.

use std::process::ExitCode;

use anyhow::Result;

use super::{DataDir, open, progress_bar};

/// Folds the whole log and writes the dashboards' checkpoint.
pub(super) async fn run(data: &DataDir) -> Result<ExitCode> {
    let ledger = open(data)?;
    let head = ledger.head().position;
    let bar = progress_bar(head, "{bar:40} {pos}/{len} events ({per_sec}, {eta})");
    let position = tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        let bar = bar.clone();
        move || {
            rotation_ledger::projector::rebuild(&ledger, |position, _| bar.set_position(position))
        }
    })
    .await??;
    bar.finish_and_clear();
    println!("rebuilt the dashboards from {position} events and wrote their checkpoint");
    ledger.close();
    Ok(ExitCode::SUCCESS)
}
