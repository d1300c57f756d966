//! The append figures: `append_batched`, atomic batches of [`BATCH`]
//! through the append path, and `append_single`, single-event submissions
//! from concurrent writers; each beside a [`RawLog`] doing the same
//! storage work on the same events, the two taking turns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rotation_events::Envelope;

use super::pairs::Pair;
use super::raw::{RawEvent, RawLog, committed};
use super::{BATCH, BenchOptions, Result, Synthetic};
use crate::auth::Caller;
use crate::ledger::{Ledger, Submission};

/// Pairs of runs behind each append figure: the events are split into
/// this many turns of the ledger's side and the raw side.
pub(super) const TURNS: u64 = 5;

/// Batches in flight on either side of `append_batched`, so that preparing
/// one overlaps committing another, as several publishers would.
const IN_FLIGHT: usize = 4;

/// The pairs of `append_batched`: the ledger's beside the raw log's, and
/// each variant's (a ledger that keeps up less) beside the same raw run.
pub(super) struct Batched {
    pub(super) pairs: Vec<Pair>,
    pub(super) variants: Vec<Vec<Pair>>,
}

/// `append_batched`: `count` synthetic events in atomic batches of
/// [`BATCH`], in [`TURNS`] turns; in each turn the ledger and each of
/// `variants` append the same events, taking turns at going first, then
/// the raw log appends the ledger's committed events in batches of the same size with the same
/// number in flight. Every variant is paired with that raw run, so one run
/// shows what a part of the append path costs. Events are made before the
/// clock starts on every side.
pub(super) async fn append_batched(
    ledger: &Ledger,
    variants: &[Ledger],
    raw: &RawLog,
    count: u64,
    states: &mut HashMap<String, Arc<serde_json::Value>>,
) -> Result<Batched> {
    // Spread over the board's window: `dashboard_read` reads this log.
    let mut synthetic = Synthetic::spanning(1, count);
    let mut pairs = Vec::new();
    let mut variant_pairs: Vec<Vec<Pair>> = vec![Vec::new(); variants.len()];
    let mut made = 0;
    for turn in 0..TURNS {
        let until = count * (turn + 1) / TURNS;
        let n = until - made;
        made = until;
        if n == 0 {
            continue;
        }
        let (batches, back) = tokio::task::spawn_blocking(move || {
            let events = synthetic.take(n as usize);
            let batches: Vec<Vec<Envelope>> = events.chunks(BATCH).map(<[_]>::to_vec).collect();
            (batches, synthetic)
        })
        .await?;
        synthetic = back;
        // The ledger and its variants take turns at going first, so that
        // none always meets the write-back the previous turn left behind.
        let sides: Vec<&Ledger> = std::iter::once(ledger).chain(variants).collect();
        let mut copies: Vec<Option<Vec<Vec<Envelope>>>> = sides
            .iter()
            .skip(1)
            .map(|_| Some(batches.clone()))
            .collect();
        copies.insert(0, Some(batches));
        let mut took = vec![(0, Duration::ZERO); sides.len()];
        let (mut before, mut after) = (0, 0);
        for step in 0..sides.len() {
            let side = (step + turn as usize) % sides.len();
            let batches = copies[side].take().expect("each side appends once a turn");
            let start = sides[side].head().position;
            let elapsed = ledger_batches(sides[side], batches).await?;
            let end = sides[side].head().position;
            if side == 0 {
                (before, after) = (start, end);
            }
            took[side] = (end - start, elapsed);
        }
        let ours = took[0].1;
        let theirs = took.split_off(1);
        let events = committed(ledger, before, after, states)?;
        let batches: Vec<Vec<RawEvent>> = events.chunks(BATCH).map(<[_]>::to_vec).collect();
        let started = Instant::now();
        let mut outcomes = futures::stream::iter(batches)
            .map(|batch| raw.append(batch))
            .buffered(IN_FLIGHT);
        while let Some(outcome) = outcomes.next().await {
            outcome?;
        }
        let baseline = started.elapsed();
        pairs.push(Pair::counted(n, ours, after - before, baseline));
        for ((count, took), variant) in theirs.into_iter().zip(&mut variant_pairs) {
            variant.push(Pair::counted(count, took, after - before, baseline));
        }
    }
    Ok(Batched {
        pairs,
        variants: variant_pairs,
    })
}

/// The ledger's side of one turn: the batches submitted with
/// [`IN_FLIGHT`] in flight; returns the time until the last is
/// acknowledged.
pub(super) async fn ledger_batches(
    ledger: &Ledger,
    batches: Vec<Vec<Envelope>>,
) -> Result<Duration> {
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<Submission>(IN_FLIGHT);
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
        .buffered(IN_FLIGHT);
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
/// writers, in [`TURNS`] turns; after each of the ledger's turns, as many
/// concurrent tasks submit the same committed events one by one to the
/// raw log, whose writer groups whatever is waiting as the ledger's does.
pub(super) async fn append_single(
    options: &BenchOptions,
    ledger: &Ledger,
    raw: &Arc<RawLog>,
    states: &mut HashMap<String, Arc<serde_json::Value>>,
) -> Result<Vec<Pair>> {
    let writers = options.writers.max(1);
    let per_turn = (options.single / writers / TURNS).max(1);
    // Each writer registers its own partnership stream first, so writers
    // never contend for one stream.
    let mut sources: Vec<Synthetic> = (0..writers).map(|w| Synthetic::new(1_000 + w)).collect();
    let mut pairs = Vec::new();
    for _ in 0..TURNS {
        let before = ledger.head().position;
        let (ours, back) = ledger_singles(ledger, sources, per_turn as usize).await?;
        sources = back;
        let after = ledger.head().position;
        let events = committed(ledger, before, after, states)?;
        let mut shares: Vec<Vec<RawEvent>> = (0..writers).map(|_| Vec::new()).collect();
        for (i, event) in events.into_iter().enumerate() {
            shares[i % writers as usize].push(event);
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for share in shares {
            let raw = Arc::clone(raw);
            tasks.push(tokio::spawn(async move {
                for event in share {
                    raw.append(vec![event]).await?;
                }
                Ok::<_, super::BenchError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let count = after - before;
        pairs.push(Pair::counted(count, ours, count, started.elapsed()));
    }
    Ok(pairs)
}

/// The ledger's side of one turn of `append_single`: each source a
/// concurrent writer submitting `per_writer` single events. Returns the
/// time until the last is acknowledged, and the sources to go on with.
pub(super) async fn ledger_singles(
    ledger: &Ledger,
    sources: Vec<Synthetic>,
    per_writer: usize,
) -> Result<(Duration, Vec<Synthetic>)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut synthetic in sources {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            for event in synthetic.take(per_writer) {
                let submission = Submission::from_events(vec![event], "bench", Caller::operator());
                let outcome = ledger.submit_one(submission).await?;
                ensure!(!outcome.is_rejected(), "rejected: {:?}", outcome.rejection);
            }
            Ok(synthetic)
        }));
    }
    let mut back = Vec::with_capacity(tasks.len());
    for task in tasks {
        back.push(task.await??);
    }
    Ok((started.elapsed(), back))
}
