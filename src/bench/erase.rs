//! `erase`: erasures, each durable, on a log of people with profiles.
//! Each erasure commits `person.erased` and re-wraps every remaining data
//! key under a new master key in one batch (contract section 9); the
//! baseline writes the same number of key records raw, one sled batch and
//! one flush an erasure.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use super::{BenchError, Figure, Result};
use crate::auth::Caller;
use crate::ledger::{Ledger, LedgerOptions, Submission};

/// People registered (each with a profile, so a data key).
pub(super) const PEOPLE: u64 = 100_000;
/// Erasures timed.
pub(super) const ERASURES: u64 = 5;

/// The figure: erasures per second against raw key-record rewrites.
pub(super) async fn erase(root: &Path, people: u64, erasures: u64) -> Result<Figure> {
    if people < erasures {
        return Err(BenchError::Check(format!(
            "erase needs at least {erasures} people on its log (--erase-people), not {people}"
        )));
    }
    let dir = root.join("erase");
    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    let person = |n: u64| Uuid::from_u64_pair(0x0193_a3c0_0000_7000, 0x8000_0000_0000_0000 | n);
    let event = |n: u64, subject: String, event_type: &str, data: serde_json::Value| {
        json!({"specversion": "1.0",
               "id": Uuid::from_u64_pair(0x0193_a3c0_0000_7000, 0x9000_0000_0000_0000 | n),
               "source": "urn:service:bench", "type": event_type, "subject": subject,
               "time": "2025-03-03T09:00:00Z", "partnership": "bench", "data": data})
    };
    let submission = |value: serde_json::Value| {
        Submission::from_json(value.to_string().into_bytes(), "bench", Caller::operator())
    };
    let mut submissions = vec![submission(event(
        0,
        "partnership/bench".into(),
        "jobrotation.partnership.registered",
        json!({"name": "Bench", "areas": ["E06000021"], "members": []}),
    ))];
    for n in 1..=people {
        let data = json!({"role": "jobseeker", "unemployed_since": "2024-06-01",
                          "benefit": "universal_credit",
                          "profile": {"birth_year": 1970 + (n % 40), "sex": "female"}});
        submissions.push(submission(event(
            n,
            format!("person/{}", person(n)),
            "jobrotation.participant.registered",
            data,
        )));
        if submissions.len() == 5_000 {
            ledger.submit(std::mem::take(&mut submissions)).await?;
        }
    }
    ledger.submit(submissions).await?;
    let started = Instant::now();
    for n in 1..=erasures {
        ledger
            .erase(person(n), "bench")
            .await
            .map_err(|e| BenchError::Check(format!("erasure failed: {e}")))?;
    }
    let ours = started.elapsed();
    ledger.close();
    let raw_dir = root.join("erase-raw");
    let raw_took = tokio::task::spawn_blocking(move || -> Result<Duration> {
        let db = sled::open(&raw_dir)?;
        let record = [7u8; 160];
        let started = Instant::now();
        for _ in 0..erasures {
            let mut batch = sled::Batch::default();
            for n in 0..people {
                batch.insert(&n.to_be_bytes(), &record[..]);
            }
            db.apply_batch(batch)?;
            db.flush()?;
        }
        Ok(started.elapsed())
    })
    .await??;
    let rate = |took: Duration| erasures as f64 / took.as_secs_f64();
    let mut figure = Figure::rates(rate(ours), rate(raw_took));
    figure.unit = "erasures/s";
    Ok(figure)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn erase_measures_durable_erasures_beside_raw_batches() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let figure = super::erase(root.path(), 200, 2).await.expect("measured");
        assert!(
            figure.per_s > 0.0 && figure.baseline_per_s > 0.0,
            "{figure:?}"
        );
        assert_eq!(figure.unit, "erasures/s");
    }
}
