//! `export`: the evaluation dataset, a Frictionless Data Package.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use rotation_ledger::ledger::LedgerOptions;

use super::{DataDir, open_existing_with};

/// The arguments of `export`.
#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    data: DataDir,
    /// The folder to write the package into.
    #[arg(long)]
    out: PathBuf,
    /// The study's key file; pseudonyms are HMAC-SHA256 under it.
    #[arg(long)]
    key_file: PathBuf,
    /// Use only events recorded by then (RFC 3339); default the last event's recorded time.
    #[arg(long)]
    as_of: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// The day outcomes are judged at; default the as-of date.
    #[arg(long)]
    reference_date: Option<chrono::NaiveDate>,
    /// Only this partnership (repeatable); default all.
    #[arg(long = "partnership")]
    partnerships: Vec<String>,
}

/// Writes the package and prints what it holds.
pub(super) async fn run(args: ExportArgs) -> Result<ExitCode> {
    let ExportArgs {
        data,
        out,
        key_file,
        as_of,
        reference_date,
        partnerships,
    } = args;
    let key = std::fs::read(&key_file)
        .with_context(|| format!("cannot read the key file {}", key_file.display()))?;
    // One pass over the log: a small cache, and the typed data read
    // on the decoding threads.
    let ledger = open_existing_with(&data, LedgerOptions::one_pass())?;
    // By default the as-of is the last event's recorded time, not the
    // clock, so that a rerun on an unchanged log gives the same bytes.
    let as_of = match as_of {
        Some(t) => t.to_utc(),
        None => chrono::DateTime::parse_from_rfc3339(&ledger.head().recordedtime)
            .map_or(chrono::DateTime::UNIX_EPOCH, |t| t.to_utc()),
    };
    let (signer, origin) = super::checkpoint::signer(&ledger, &data, None)?;
    let options = rotation_ledger::export::ExportOptions {
        out: out.clone(),
        key: rotation_ledger::export::key_from_file(&key),
        as_of,
        reference_date: reference_date.unwrap_or_else(|| as_of.date_naive()),
        partnerships: (!partnerships.is_empty()).then(|| partnerships.into_iter().collect()),
        program_version: env!("CARGO_PKG_VERSION").to_owned(),
        checkpoint: Some(rotation_ledger::checkpoint::service::provenance_signer(
            ledger.clone(),
            signer,
            origin,
        )),
    };
    // Profiles are opened in memory, on the decoding threads, so that the
    // folding thread only folds.
    let events = ledger.replay_opened(0);
    let summary = tokio::task::spawn_blocking(move || {
        rotation_ledger::export::export_decoded(events, &options)
    })
    .await??;
    println!(
        "wrote {} (head position {}, jobseekers {}, releases {}, substitutions {})",
        out.join("datapackage.json").display(),
        summary.head_position,
        summary.rows.get("jobseekers").unwrap_or(&0),
        summary.rows.get("releases").unwrap_or(&0),
        summary.rows.get("substitutions").unwrap_or(&0),
    );
    ledger.close();
    Ok(ExitCode::SUCCESS)
}
