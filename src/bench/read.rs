//! The read figures on the log `append_batched` built: `replay`,
//! `startup`, `projection_catchup` and `dashboard_read`.

use std::time::{Duration, Instant};

use super::raw::raw_replay;
use super::{BenchError, Figure, Result};
use crate::auth::Caller;
use crate::ledger::{Ledger, LedgerOptions, Submission};

/// `replay`: read and decode the whole log, beside a raw scan of the same
/// events decoding each as JSON.
pub(super) async fn replay(ledger: &Ledger, raw_dir: &std::path::Path) -> Result<Figure> {
    let head = ledger.head().position;
    let started = Instant::now();
    let mut count = 0u64;
    for event in ledger.events_iter(0) {
        let event = event?;
        std::hint::black_box(&event);
        count += 1;
    }
    let ours = started.elapsed();
    ensure!(count == head, "replay read {count} events of {head}");
    let (raw_count, raw_took) = tokio::task::spawn_blocking({
        let raw_dir = raw_dir.to_path_buf();
        move || raw_replay(&raw_dir)
    })
    .await??;
    Ok(Figure::new(count, ours, raw_count, raw_took))
}

/// `startup`: opening the ledger on the bench log (it reads the head),
/// beside opening a raw sled database of the same events. Neither may grow
/// with the log. Also the time until a first write (the head event again,
/// a duplicate) is answered, which includes loading the id index.
pub(super) async fn startup(
    ledger_dir: &std::path::Path,
    raw_dir: &std::path::Path,
) -> Result<Figure> {
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
    let db = sled::Config::new().path(raw_dir).open()?;
    let last = db.last()?;
    let raw = started.elapsed();
    drop((db, last));
    let mut figure = Figure::new(1, ours, 1, raw);
    figure.seconds = Some(ours.as_secs_f64());
    figure.first_write_s = Some(first_write.as_secs_f64());
    figure.unit = "opens/s";
    tracing::debug!(head, ?ours, ?raw, ?first_write, "start-up");
    Ok(figure)
}

/// `projection_catchup` and `dashboard_read`, on the log built above.
///
/// `projection_catchup` times the fold of the whole log from position 0
/// into fresh dashboards, reading and decoding included: the work of
/// `rebuild` or of a first start. Its baseline is `replay`, reading and
/// decoding the same log without folding it. The rebuild's checkpoint is
/// then written (untimed), so the projector below starts from it.
///
/// `dashboard_read` then times the projector's read of a protected
/// dashboard with the cache emptied before every read, so each read
/// computes the dashboard, applies disclosure control and serialises it:
/// the slowest a read can be (reads between two applied chunks are cache
/// hits). The partnership read is the log's largest. Its baseline is
/// serialising the same protected JSON value, already computed, with
/// `serde_json::to_vec`.
pub(super) async fn dashboards(ledger: &Ledger, replay_per_s: f64) -> Result<(Figure, Figure)> {
    use crate::projector::{DashboardRead, DashboardView, Projector, ProjectorOptions};

    let head = ledger.head().position;
    let took = tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        move || -> Result<Duration> {
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
            Ok(folded)
        }
    })
    .await??;
    let catchup_per_s = head as f64 / took.as_secs_f64().max(1e-9);
    let catchup = Figure::rates(catchup_per_s, replay_per_s);

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
    let reads = 2_000;
    let read = {
        let projector = projector.clone();
        tokio::task::spawn_blocking(move || -> Result<Figure> {
            let mut latencies = Vec::with_capacity(reads);
            let mut json = bytes::Bytes::new();
            for _ in 0..reads {
                projector.forget_cache();
                let started = Instant::now();
                let answer = projector.dashboard(partnership, DashboardView::Protected);
                latencies.push(started.elapsed());
                match answer {
                    DashboardRead::Found(bytes) => json = bytes,
                    other => {
                        return Err(BenchError::Check(format!(
                            "the bench dashboard was not found: {other:?}"
                        )));
                    }
                }
            }
            let value: serde_json::Value = serde_json::from_slice(&json)?;
            let started = Instant::now();
            for _ in 0..reads {
                std::hint::black_box(serde_json::to_vec(&value)?);
            }
            let baseline = started.elapsed();
            latencies.sort_unstable();
            let total: Duration = latencies.iter().sum();
            let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
            let per_s = reads as f64 / total.as_secs_f64().max(1e-9);
            let baseline_per_s = reads as f64 / baseline.as_secs_f64().max(1e-9);
            Ok(Figure {
                p99_ms: Some(p99.as_secs_f64() * 1_000.0),
                unit: "reads/s",
                ..Figure::rates(per_s, baseline_per_s)
            })
        })
        .await??
    };
    shutdown.cancel();
    drop(projector);
    task.join().await?;
    Ok((catchup, read))
}
