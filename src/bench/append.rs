//! The append figures: `append_batched`, atomic batches of [`BATCH`]
//! through the append path, and `append_single`, single-event submissions
//! from concurrent writers.

use std::time::{Duration, Instant};

use super::raw::raw_single;
use super::{BATCH, BenchOptions, Figure, Result, Synthetic};
use crate::auth::Caller;
use crate::ledger::{Ledger, Submission};

/// Appends `count` synthetic events in atomic batches of [`BATCH`], with a
/// few batches in flight so that preparing them overlaps committing them,
/// as several publishers would. The events are made before the clock
/// starts, as the baseline's bytes are: what is timed is the ledger's work
/// from the submitted events to their acknowledgement. Returns that time.
pub(super) async fn append_batches(ledger: &Ledger, count: u64) -> Result<Duration> {
    use futures::StreamExt;
    let batches = tokio::task::spawn_blocking(move || {
        let mut synthetic = Synthetic::new(1);
        let mut batches = Vec::with_capacity(count.div_ceil(BATCH as u64) as usize);
        let mut made = 0;
        while made < count {
            let n = (count - made).min(BATCH as u64);
            batches.push(synthetic.take(n as usize));
            made += n;
        }
        batches
    })
    .await?;
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<Submission>(4);
    let producer = tokio::task::spawn_blocking(move || {
        for events in batches {
            let submission = Submission::from_events(events, "bench", Caller::operator());
            if tx.blocking_send(submission).is_err() {
                break;
            }
        }
    });
    let mut outcomes = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|submission| ledger.submit_one(submission))
        .buffered(4);
    while let Some(outcome) = outcomes.next().await {
        let outcome = outcome?;
        ensure!(
            !outcome.is_rejected(),
            "bench events were rejected: {:?}",
            outcome.rejection
        );
    }
    producer.await?;
    Ok(started.elapsed())
}

/// `append_single`: single-event submissions from `--writers` concurrent
/// writers, beside one raw sled insert plus flush per event.
pub(super) async fn append_single(
    options: &BenchOptions,
    ledger: &Ledger,
    raw_dir: &std::path::Path,
) -> Result<Figure> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per_writer = options.single / options.writers.max(1);
    for w in 0..options.writers {
        let ledger = ledger.clone();
        let mut synthetic = Synthetic::new(1_000 + w);
        tasks.push(tokio::spawn(async move {
            // Each writer registers its own partnership stream first, so
            // writers never contend for one stream.
            for event in synthetic.take(per_writer as usize) {
                let submission = Submission::from_events(vec![event], "bench", Caller::operator());
                let outcome = ledger.submit_one(submission).await?;
                ensure!(!outcome.is_rejected(), "rejected: {:?}", outcome.rejection);
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let ours = started.elapsed();
    let single_total = per_writer * options.writers;
    let (raw_count, raw_took) = tokio::task::spawn_blocking({
        let raw_dir = raw_dir.to_path_buf();
        move || raw_single(&raw_dir)
    })
    .await??;
    Ok(Figure::new(single_total, ours, raw_count, raw_took))
}
