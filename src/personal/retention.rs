//! Retention (contract section 9): with `[retention]
//! erase_profiles_after_days = N`, once a day the ledger erases the
//! profile of every person whose latest event is older than N days, each
//! with their own `person.erased` (`reason: retention`). The erasures of
//! one day share one rotation of the master key.
//!
//! The day is kept by tokio's clock, and "now" is the wall clock at start
//! plus the time tokio has seen pass since, so that a test with a paused
//! clock (`tokio::time::pause`, `advance`) drives whole days in an instant.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rotation_events::Subject;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ledger::{EraseError, Erasure, Ledger, RETENTION_REASON};
use crate::store::StoreError;

/// `[retention]` in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Erase a person's profile once their latest event is older than
    /// this many days; `None` (the default) keeps profiles.
    pub erase_profiles_after_days: Option<u32>,
}

/// How often retention runs.
pub const RETENTION_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// The people holding a profile whose latest event happened before
/// `cutoff`. Blocking.
pub fn stale_people(ledger: &Ledger, cutoff: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
    let mut stale = Vec::new();
    for person in ledger.keyring().people()? {
        let subject = Subject::Person(person).to_string();
        let Some(state) = ledger.stream_state(&subject)? else {
            continue;
        };
        let Some(last) = state.positions.last() else {
            continue;
        };
        if let Some(event) = ledger.store().event(*last)?
            && event.envelope.time < cutoff
        {
            stale.push(person);
        }
    }
    stale.sort_unstable();
    Ok(stale)
}

/// One day's retention: erases every stale profile as of `now`.
pub async fn erase_stale(
    ledger: &Ledger,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Erasure>, EraseError> {
    let cutoff = now - chrono::Duration::days(i64::from(days));
    let reader = ledger.clone();
    let stale = tokio::task::spawn_blocking(move || stale_people(&reader, cutoff))
        .await
        .map_err(|e| EraseError::NotCommitted(e.to_string()))??;
    let mut erased = Vec::with_capacity(stale.len());
    for answer in ledger.erase_all(&stale, RETENTION_REASON).await? {
        erased.push(answer?);
    }
    Ok(erased)
}

/// Runs retention at once and then every [`RETENTION_PERIOD`] until
/// `shutdown` is cancelled.
pub async fn run(ledger: Ledger, days: u32, shutdown: CancellationToken) {
    let started_wall = Utc::now();
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(RETENTION_PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let elapsed = tokio::time::Instant::now() - started;
        let now = started_wall + chrono::Duration::from_std(elapsed).unwrap_or_default();
        match erase_stale(&ledger, days, now).await {
            Ok(erased) if erased.is_empty() => {}
            Ok(erased) => tracing::info!(erased = erased.len(), "retention erased profiles"),
            Err(error) => tracing::error!(%error, "retention could not erase profiles"),
        }
    }
}
