//! The flusher thread: takes every applied group waiting, flushes once,
//! rewrites the head record, puts the groups' events into the recent
//! tail, publishes the new durable head, and only then answers.
//!
//! When a flush fails, it answers every group then waiting or still to
//! come with an error (nothing of them is acknowledged), reports the
//! failure and wakes the writer, which opens the store again with
//! back-off (see `writer`). The writer's [`Flush::Barrier`] tells it when
//! every group applied before the failure has been answered, and
//! [`Flush::Recovered`] what the reopened store holds.

use tokio::sync::watch;

use super::head_record::{HeadFile, HeadRecord};
use super::health::Health;
use super::recent::{Recent, RecentEvent};
use super::{Durable, LedgerError, Outcome, Reply, Request, Submission};
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

/// What the writer hands the flusher, in order.
pub(super) enum Flush {
    /// An applied group, to flush and answer.
    Group(FlushJob),
    /// Answered once every message before it has been dealt with.
    Barrier(std::sync::mpsc::Sender<()>),
    /// The durable state of a store opened again after a failure.
    Recovered(Durable),
}

/// Where the flusher reports what it made durable, and its failures.
pub(super) struct Sinks<'a> {
    pub(super) published: &'a watch::Sender<Durable>,
    pub(super) recent: &'a Recent,
    pub(super) health: &'a Health,
    /// Wakes the writer after a failure; weak, so that it never keeps the
    /// ledger's request channel open.
    pub(super) wake: &'a tokio::sync::mpsc::WeakSender<Request>,
}

/// Flushes every group waiting at once, rewrites the head record when the
/// head moved, publishes the new durable state, and answers.
pub(super) fn flush_loop(
    store: &Store,
    head_file: &HeadFile,
    jobs: &std::sync::mpsc::Receiver<Flush>,
    sinks: &Sinks<'_>,
    failed: &std::sync::atomic::AtomicBool,
) {
    let Sinks {
        published,
        recent,
        health,
        wake,
    } = *sinks;
    // Messages taken from the channel behind a control message, which
    // must wait their turn.
    let mut queued = std::collections::VecDeque::new();
    loop {
        let Some(first) = queued.pop_front().or_else(|| jobs.recv().ok()) else {
            break;
        };
        let first = match first {
            Flush::Group(job) => job,
            Flush::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
            Flush::Recovered(durable) => {
                published.send_if_modified(|published| {
                    let changed = *published != durable;
                    *published = durable;
                    changed
                });
                continue;
            }
        };
        let mut batch = vec![first];
        if queued.is_empty() {
            for next in jobs.try_iter() {
                match next {
                    Flush::Group(job) if queued.is_empty() => batch.push(job),
                    other => queued.push_back(other),
                }
            }
        }
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
                tracing::error!(%error, "flush failed: writes are refused until the store works again");
                health.storage_failed(error.to_string());
                failed.store(true, std::sync::atomic::Ordering::Release);
                for job in batch {
                    for (reply, _) in job.replies {
                        let _ = reply.send(Err(LedgerError::WriterStopped));
                    }
                }
                // An empty request wakes the writer if it waits for one.
                if let Some(requests) = wake.upgrade() {
                    let (reply, _) = tokio::sync::oneshot::channel();
                    let _ = requests.try_send(Request {
                        submissions: Vec::new(),
                        reply,
                        rotation: None,
                    });
                }
            }
        }
    }
}
