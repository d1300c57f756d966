//! The raw sled baselines: the same work as the ledger's figures, done
//! straight on a sled database with nothing of the ledger in between.

use std::time::{Duration, Instant};

use super::{BATCH, Result};
use crate::ledger::Ledger;

/// The baseline of `append_batched`: the ledger's committed bytes, inserted
/// raw into a fresh sled in batches of the same size with one flush each.
/// Only the inserts and flushes are timed.
pub(super) fn raw_batched(ledger: &Ledger, dir: &std::path::Path) -> Result<Duration> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(512 * 1024 * 1024)
        .open()?;
    let head = ledger.head().position;
    let mut took = Duration::ZERO;
    let mut position = 0;
    while position < head {
        let until = (position + BATCH as u64).min(head);
        let rows: Vec<_> = ledger
            .store()
            .events_json(position, until)
            .collect::<Result<_, _>>()?;
        let started = Instant::now();
        let mut batch = sled::Batch::default();
        for (p, json) in rows {
            batch.insert(&p.to_be_bytes(), &*json);
        }
        db.apply_batch(batch)?;
        let applied = started.elapsed();
        db.flush()?;
        tracing::trace!(apply = ?applied, flush = ?(started.elapsed() - applied), "raw batch");
        took += started.elapsed();
        position = until;
    }
    Ok(took)
}

/// The baseline of `append_single`: one insert and one flush per event, for
/// about two seconds.
pub(super) fn raw_single(dir: &std::path::Path) -> Result<(u64, Duration)> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(512 * 1024 * 1024)
        .open()?;
    let value = vec![b'x'; 700];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        db.insert((u64::MAX - count).to_be_bytes(), value.as_slice())?;
        db.flush()?;
        count += 1;
    }
    Ok((count, started.elapsed()))
}

/// The baseline of `replay`: scan and decode every value as JSON.
pub(super) fn raw_replay(dir: &std::path::Path) -> Result<(u64, Duration)> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(512 * 1024 * 1024)
        .open()?;
    let started = Instant::now();
    let mut count = 0u64;
    for item in db.range(0u64.to_be_bytes()..(u64::MAX / 2).to_be_bytes()) {
        let (_, value) = item?;
        let decoded: serde_json::Value = serde_json::from_slice(&value)?;
        std::hint::black_box(&decoded);
        count += 1;
    }
    Ok((count, started.elapsed()))
}
