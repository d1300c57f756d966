//! `rebuild`: the dashboards folded afresh from the whole log.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::{DataDir, load_config, open, progress_bar};

/// Folds the whole log under the configuration's disclosure control and
/// the ledger's record-key secret (as `serve` would), and writes the
/// dashboards' checkpoint.
pub(super) async fn run(data: &DataDir, config: Option<&Path>) -> Result<ExitCode> {
    let mut config = load_config(config)?.unwrap_or_default();
    config.record_key = super::serve::load_record_key(&data.dir, &config)?;
    let ledger = open(data)?;
    let head = ledger.head().position;
    let bar = progress_bar(head, "{bar:40} {pos}/{len} events ({per_sec}, {eta})");
    let position = tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        let bar = bar.clone();
        move || {
            rotation_ledger::projector::rebuild(&ledger, &config, |position, _| {
                bar.set_position(position)
            })
        }
    })
    .await??;
    bar.finish_and_clear();
    println!("rebuilt the dashboards from {position} events and wrote their checkpoint");
    ledger.close();
    Ok(ExitCode::SUCCESS)
}
