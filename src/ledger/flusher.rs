//! The flusher thread: takes every applied group waiting, flushes once,
//! puts the groups' events into the recent tail, publishes the new durable
//! head, and only then answers.

use tokio::sync::watch;

use super::head_record::{HeadFile, HeadRecord};
use super::health::Health;
use super::recent::{Recent, RecentEvent};
use super::{Durable, LedgerError, Outcome, Reply, Submission};
use crate::store::Store;

/// An applied group waiting for its flush.
pub(super) struct FlushJob {
    pub(super) replies: Vec<(Reply, Vec<Outcome>)>,
    pub(super) applied: Durable,
    /// The group's events, for the recent tail once they are durable.
    pub(super) recent: Vec<RecentEvent>,
    /// The group's submissions, dropped by the flusher after it answered:
    /// freeing what other threads allocated is not the writer's time.
    pub(super) spent: Vec<Vec<Submission>>,
}

/// Where the flusher reports what it made durable, and its failures.
pub(super) struct Sinks<'a> {
    pub(super) published: &'a watch::Sender<Durable>,
    pub(super) recent: &'a Recent,
    pub(super) health: &'a Health,
}

/// Flushes every group waiting at once, rewrites the head record when the
/// head moved, publishes the new durable state, and answers.
pub(super) fn flush_loop(
    store: &Store,
    head_file: &HeadFile,
    jobs: &std::sync::mpsc::Receiver<FlushJob>,
    sinks: &Sinks<'_>,
    failed: &std::sync::atomic::AtomicBool,
) {
    let Sinks {
        published,
        recent,
        health,
    } = *sinks;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        if failed.load(std::sync::atomic::Ordering::Acquire) {
            for job in batch {
                for (reply, _) in job.replies {
                    let _ = reply.send(Err(LedgerError::WriterStopped));
                }
            }
            continue;
        }
        let t_flush = std::time::Instant::now();
        let flushed = store.flush().and_then(|()| {
            // The head record follows the store, and is written before
            // anyone hears of the new head: it is never ahead of sled.
            match batch.last() {
                Some(last) if *published.borrow() != last.applied => {
                    head_file.write(&HeadRecord::from(&last.applied))
                }
                _ => Ok(()),
            }
        });
        match flushed {
            Ok(()) => {
                tracing::trace!(jobs = batch.len(), flush = ?t_flush.elapsed(), "flushed");
                // Durable now: into the tail before the head announces them.
                for job in &mut batch {
                    recent.extend(std::mem::take(&mut job.recent));
                }
                if let Some(last) = batch.last() {
                    published.send_if_modified(|durable| {
                        let changed = *durable != last.applied;
                        *durable = last.applied.clone();
                        changed
                    });
                }
                let mut spent = Vec::with_capacity(batch.len());
                for job in batch {
                    for (reply, outcomes) in job.replies {
                        let _ = reply.send(Ok(outcomes));
                    }
                    spent.push(job.spent);
                }
                // Only now, with every answer sent.
                drop(spent);
            }
            Err(error) => {
                tracing::error!(%error, "flush failed: the ledger stops accepting writes");
                health.storage_failed(error.to_string());
                failed.store(true, std::sync::atomic::Ordering::Release);
                for job in batch {
                    for (reply, _) in job.replies {
                        let _ = reply.send(Err(LedgerError::WriterStopped));
                    }
                }
            }
        }
    }
}
