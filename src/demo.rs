//! `rotation-ledger demo`: a ledger with a realistic history to look at.
//!
//! The simulator writes two partnerships' history ending today. Most of it
//! is imported at once through the ordinary import path; the last part is
//! held back and appended one event at a time, every few seconds, as
//! partner services would report it, so that an open board visibly moves.

use std::io::Cursor;
use std::time::Duration;

use chrono::{Months, NaiveDate};
use tokio_util::sync::CancellationToken;

use crate::auth::Caller;
use crate::import::{ImportError, ImportSummary};
use crate::ledger::{Ledger, LedgerError, Submission};
use crate::simulate::{Scenario, simulate};

/// The demo's history, split into what is loaded at start and what trickles in.
#[derive(Debug, Clone)]
pub struct History {
    /// Imported before serving.
    pub loaded: Vec<String>,
    /// Appended one at a time while serving.
    pub held_back: Vec<String>,
}

/// The scenario the demo shows: two partnerships over two years that end
/// on `today`, with a few bad submissions so that rejections have
/// something to show.
pub fn scenario(today: NaiveDate, seed: u64) -> Scenario {
    let months = 24;
    Scenario {
        partnerships: 2,
        jobseekers: 600,
        months,
        seed,
        // The history ends before `start + months`: a day short of today,
        // so that no effective time lies ahead of the ledger's clock.
        start: today
            .checked_sub_months(Months::new(months))
            .and_then(|d| d.pred_opt())
            .unwrap_or(today),
        invalid_rate: 0.005,
    }
}

/// The lines of `scenario`, with the last tenth (at most `max_held_back`)
/// held back.
pub fn history(scenario: &Scenario, max_held_back: usize) -> History {
    let mut loaded: Vec<String> = simulate(scenario).map(|s| s.line).collect();
    let held = (loaded.len() / 10).min(max_held_back);
    let held_back = loaded.split_off(loaded.len() - held);
    History { loaded, held_back }
}

/// Imports `lines` through the import path.
pub async fn load(ledger: &Ledger, lines: &[String]) -> Result<ImportSummary, ImportError> {
    let mut text = lines.join("\n");
    text.push('\n');
    crate::import::import(ledger, Cursor::new(text.into_bytes()), "demo", |_, _| {}).await
}

/// Appends `lines` one at a time, one every `every`, until they run out or
/// `shutdown` is cancelled. Returns how many were appended.
pub async fn trickle(
    ledger: &Ledger,
    lines: Vec<String>,
    every: Duration,
    shutdown: CancellationToken,
) -> Result<usize, LedgerError> {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the board should first show the loaded history.
    ticks.tick().await;
    let mut appended = 0;
    for line in lines {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let submission = Submission::from_json(line.into_bytes(), "demo", Caller::operator());
        let outcome = ledger.submit_one(submission).await?;
        if let Some(violation) = outcome.rejection {
            tracing::debug!(%violation, "a held-back demo event was rejected, as the simulator meant");
        }
        appended += 1;
    }
    Ok(appended)
}
