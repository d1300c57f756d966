//! `simulate`: a synthetic scheme history as CloudEvents in JSON Lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

/// The arguments of `simulate`.
#[derive(Args, Debug)]
pub(crate) struct SimulateArgs {
    /// Partnerships to simulate.
    #[arg(long, default_value_t = 2)]
    partnerships: u32,
    /// Jobseekers in total, spread over the partnerships.
    #[arg(long, default_value_t = 400)]
    jobseekers: u32,
    /// Months of history.
    #[arg(long, default_value_t = 24)]
    months: u32,
    /// Seed of the random generator: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First day of the history (YYYY-MM-DD).
    #[arg(long, default_value = "2024-01-01")]
    start: chrono::NaiveDate,
    /// Share of bad events mixed in, each with the code it should get.
    #[arg(long, default_value_t = 0.0)]
    invalid_rate: f64,
    /// Write here instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// Writes the history; the same seed gives the same bytes.
pub(super) fn run(args: SimulateArgs) -> Result<ExitCode> {
    let SimulateArgs {
        partnerships,
        jobseekers,
        months,
        seed,
        start,
        invalid_rate,
        out,
    } = args;
    anyhow::ensure!(
        (0.0..=1.0).contains(&invalid_rate),
        "--invalid-rate must lie between 0 and 1"
    );
    let scenario = rotation_ledger::simulate::Scenario {
        partnerships,
        jobseekers,
        months,
        seed,
        start,
        invalid_rate,
    };
    let sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = BufWriter::with_capacity(1 << 20, sink);
    for simulated in rotation_ledger::simulate::simulate(&scenario) {
        sink.write_all(simulated.line.as_bytes())?;
        sink.write_all(b"\n")?;
    }
    sink.flush()?;
    Ok(ExitCode::SUCCESS)
}
