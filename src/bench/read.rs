//! The read figures on the log `append_batched` built: `replay`,
//! `startup`, `projection_catchup` and `dashboard_read`, each measured in
//! [`TURNS`] pairs of the ledger's run and its baseline's.

use std::time::{Duration, Instant};

use super::pairs::Pair;
use super::raw::raw_replay;
use super::{BenchError, Figure, Result};
use crate::store::Store;

/// Pairs of runs behind each read figure.
const TURNS: usize = 3;

/// Turns of `dashboard_read` and its baseline, and reads in each.
const READ_TURNS: usize = 5;
const READS_PER_TURN: usize = 400;
use crate::auth::Caller;
use crate::ledger::{Ledger, LedgerOptions, Submission};

/// `replay`: read and decode the whole log, beside the raw log's copy of
/// the same events read and decoded by the same reader and decoder.
pub(super) async fn replay(ledger: &Ledger, raw: &Store) -> Result<Figure> {
    let head = ledger.head().position;
    let mut pairs = Vec::with_capacity(TURNS);
    for _ in 0..TURNS {
        let started = Instant::now();
        let mut count = 0u64;
        for event in ledger.events_iter(0) {
            std::hint::black_box(&event?);
            count += 1;
        }
        let ours = started.elapsed();
        ensure!(count == head, "replay read {count} events of {head}");
        let (raw_count, raw_took) = tokio::task::spawn_blocking({
            let raw = raw.clone();
            move || raw_replay(&raw)
        })
        .await??;
        ensure!(
            raw_count == head,
            "the raw replay read {raw_count} events of {head}"
        );
        pairs.push(Pair::counted(count, ours, raw_count, raw_took));
    }
    Ok(Figure::paired(&pairs))
}

/// `startup`: opening the ledger on the bench log (it reads the head),
/// beside opening the raw log's store on the same events and reading its
/// head. Neither may grow with the log. Also the time until a first write
/// (the head event again, a duplicate) is answered, which includes loading
/// the id index.
pub(super) async fn startup(
    ledger_dir: &std::path::Path,
    raw_dir: &std::path::Path,
) -> Result<Figure> {
    let mut pairs = Vec::with_capacity(TURNS);
    let mut opens = Vec::with_capacity(TURNS);
    let mut first_writes = Vec::with_capacity(TURNS);
    for _ in 0..TURNS {
        let started = Instant::now();
        let ledger = Ledger::open(ledger_dir, LedgerOptions::default())?;
        let head = ledger.head().position;
        let ours = started.elapsed();
        let event = ledger
            .store()
            .event(head)?
            .ok_or_else(|| BenchError::Check("the bench log has no head event".to_owned()))?;
        let again = Submission::from_events(vec![event.envelope], "bench", Caller::operator());
        let outcome = ledger.submit_one(again).await?;
        let first_write = started.elapsed();
        ensure!(
            outcome.receipts[0].position == Some(head),
            "the head event was not recognised as a duplicate: {outcome:?}"
        );
        ledger.close();
        let started = Instant::now();
        let store = Store::open(raw_dir, LedgerOptions::default().cache_bytes)?;
        let raw_head = store.head()?.position;
        let raw = started.elapsed();
        drop(store);
        ensure!(
            raw_head == head,
            "the raw log holds {raw_head} events, the ledger {head}"
        );
        tracing::debug!(head, ?ours, ?raw, ?first_write, "start-up");
        pairs.push(Pair::counted(1, ours, 1, raw));
        opens.push(ours.as_secs_f64());
        first_writes.push(first_write.as_secs_f64());
    }
    let mut figure = Figure::paired(&pairs);
    figure.seconds = Some(super::pairs::median(opens));
    figure.first_write_s = Some(super::pairs::median(first_writes));
    figure.unit = "opens/s";
    Ok(figure)
}

/// `projection_catchup` and `dashboard_read`, on the log built above.
///
/// `projection_catchup` times the fold of the whole log from position 0
/// into fresh dashboards, reading and decoding included: the work of
/// `rebuild` or of a first start. Its baseline reads and decodes the same
/// log with the same reader and typed decoder (on the same decoding
/// threads) without folding it. The rebuild's checkpoint is then written
/// (untimed), so the projector below starts from it.
///
/// `dashboard_read` then times the projector's read of the board's view
/// (what a board token gets) with the cache emptied before every read, so
/// each read assembles the view from every table's last release (cell-key
/// perturbation, threshold, rounding and interval audit were applied when
/// the fold made the release, inside `projection_catchup`, never on a
/// read) and serialises it: the slowest a read can be (reads between two
/// applied chunks are cache hits). The partnership read is the log's
/// largest: its totals, every group breakdown, and a monthly row for each
/// of the [`SPAN_MONTHS`](super::synthetic::SPAN_MONTHS) months the bench
/// log covers at any size ([`super::Synthetic::spanning`]), so the
/// read at 1 M events assembles the same rows as at 10 M. (It has no
/// sectors and no flags: the synthetic history has no rotations.) Its
/// baseline is serialising the same protected JSON value, already
/// computed, with `serde_json::to_vec`; the two take turns.
pub(super) async fn dashboards(ledger: &Ledger) -> Result<(Figure, Figure)> {
    use crate::projector::{DashboardRead, DashboardView, Projector, ProjectorOptions};

    let head = ledger.head().position;
    let pairs = tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        move || -> Result<Vec<Pair>> {
            let mut pairs = Vec::with_capacity(TURNS);
            for _ in 0..TURNS {
                let started = Instant::now();
                let mut folded = Duration::ZERO;
                crate::projector::rebuild(
                    &ledger,
                    &crate::config::Config::default(),
                    |position, head| {
                        if position == head {
                            folded = started.elapsed();
                        }
                    },
                )?;
                let started = Instant::now();
                let mut decoded = 0u64;
                for event in ledger.store().replay_typed(0, head) {
                    std::hint::black_box(&event?);
                    decoded += 1;
                }
                let baseline = started.elapsed();
                ensure!(decoded == head, "the typed replay read {decoded} of {head}");
                pairs.push(Pair::counted(head, folded, decoded, baseline));
            }
            Ok(pairs)
        }
    })
    .await??;
    let catchup = Figure::paired(&pairs);

    let shutdown = tokio_util::sync::CancellationToken::new();
    let (projector, task) = Projector::start(
        ledger.clone(),
        std::sync::Arc::new(crate::config::Config::default()),
        ProjectorOptions::default(),
        shutdown.clone(),
    )
    .await?;
    projector.wait_for(head).await;
    let partnership = "bench-1";
    let read = {
        let projector = projector.clone();
        tokio::task::spawn_blocking(move || -> Result<Figure> {
            let read_once = || -> Result<bytes::Bytes> {
                projector.forget_cache();
                match projector.dashboard(partnership, DashboardView::Protected) {
                    DashboardRead::Found(bytes) => Ok(bytes),
                    other => Err(BenchError::Check(format!(
                        "the bench dashboard was not found: {other:?}"
                    ))),
                }
            };
            let value: serde_json::Value = serde_json::from_slice(&read_once()?)?;
            let mut latencies = Vec::with_capacity(READS_PER_TURN * READ_TURNS);
            let mut pairs = Vec::with_capacity(READ_TURNS);
            for _ in 0..READ_TURNS {
                let mut ours = Duration::ZERO;
                for _ in 0..READS_PER_TURN {
                    let started = Instant::now();
                    std::hint::black_box(read_once()?);
                    let took = started.elapsed();
                    latencies.push(took);
                    ours += took;
                }
                let started = Instant::now();
                for _ in 0..READS_PER_TURN {
                    std::hint::black_box(serde_json::to_vec(&value)?);
                }
                let reads = READS_PER_TURN as u64;
                pairs.push(Pair::counted(reads, ours, reads, started.elapsed()));
            }
            latencies.sort_unstable();
            let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
            Ok(Figure {
                p99_ms: Some(p99.as_secs_f64() * 1_000.0),
                unit: "reads/s",
                ..Figure::paired(&pairs)
            })
        })
        .await??
    };
    shutdown.cancel();
    drop(projector);
    task.join().await?;
    Ok((catchup, read))
}
