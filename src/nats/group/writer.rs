//! The writer's fenced publisher: every committed event to
//! `ROTATION_LEDGER` at the stream sequence equal to its position.
//!
//! It publishes as the outbox does (the same messages, read through
//! [`outbox::Feed::read`](super::super::outbox), up to a window in flight,
//! only the last message of each read asking for an ack), with one
//! difference that makes it a fence: each message carries
//! `Nats-Expected-Last-Sequence` = position − 1. JetStream stores it only
//! if the stream ends exactly at the previous position, so two writers can
//! never both extend the log; the second one's publish is refused with
//! "wrong last sequence" (JetStream error 10071). A refusal means either
//! that another writer exists or that an earlier publish of this session
//! was lost (every later one is then refused too); the stream's last
//! message tells which: when it is not this node's event at that position,
//! byte for byte, or lies beyond the local head, the publisher fences the
//! node (gate to [`Gate::Follower`], so nothing waiting is acknowledged)
//! and hands back to the run loop. It never skips ahead to fit the stream.
//!
//! Every ack moves [`Ledger::set_replicated`] to its position: one ack
//! covers the whole read before it, so an acknowledged submission waits
//! one round trip per window, not per event. A session that broke for
//! any other reason (a timeout, a reconnection) starts over from the
//! stream's last message, which must be this node's event at that
//! position.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::outbox::{AckFuture, BurstError, Feed, publish_burst};
use super::super::{Backoff, Names, SHUTDOWN_GRACE};
use crate::ledger::{Gate, Ledger};

/// How a publisher stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Published {
    /// `stop` came and everything committed was stored (or the grace
    /// period ended).
    Stopped,
    /// The stream holds what this node did not publish: another writer
    /// exists. The node is fenced.
    Fenced,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("another writer extended the stream")]
    Fenced,
    #[error("cannot reach the stream: {0}")]
    Stream(String),
    #[error("publish at {position} failed: {message}")]
    Publish { position: u64, message: String },
    #[error("the stream already held position {0}")]
    Duplicate(u64),
    #[error("the stream did not end before position {0}")]
    WrongLast(u64),
    #[error(transparent)]
    Store(#[from] crate::ledger::StoreError),
}

impl From<BurstError> for SessionError {
    fn from(error: BurstError) -> Self {
        match error {
            BurstError::Store(error) => Self::Store(error),
            BurstError::Publish { position, source } => Self::Publish {
                position,
                message: source.to_string(),
            },
            BurstError::Send { position, source } => Self::Publish {
                position,
                message: source.to_string(),
            },
        }
    }
}

/// Publishes until `stop` (then for at most [`SHUTDOWN_GRACE`] while
/// anything committed is unpublished) or until fenced.
pub(super) async fn publish(
    ledger: Ledger,
    js: jetstream::Context,
    names: Arc<Names>,
    stop: CancellationToken,
) -> Published {
    let mut backoff = Backoff::new();
    let grace = std::sync::OnceLock::new();
    loop {
        match session(&ledger, &js, &names, &stop, &grace, &mut backoff).await {
            Ok(()) => return Published::Stopped,
            Err(SessionError::Fenced) => {
                ledger.set_gate(Gate::Follower);
                tracing::warn!("group: another writer extended the stream; this node follows");
                return Published::Fenced;
            }
            // A refused expected sequence: either a publish of this session
            // was lost (every later one is refused too) or another writer
            // extended the stream. The next session's start tells which,
            // from the stream's last message.
            Err(error @ (SessionError::WrongLast(_) | SessionError::Duplicate(_))) => {
                tracing::info!(%error, "group: checking the stream's end");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => {
                tracing::warn!(%error, "group: publishing to the stream interrupted; resuming");
                if stop.is_cancelled() {
                    return Published::Stopped;
                }
                if !backoff.wait(&stop).await {
                    return Published::Stopped;
                }
            }
        }
    }
}

/// Where a session starts: the stream's last sequence, which must be at
/// most the local head and hold this node's event there.
async fn start(ledger: &Ledger, stream: &stream::Stream) -> Result<u64, SessionError> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| SessionError::Stream(e.to_string()))?;
    let last = info.state.last_sequence;
    if last == 0 {
        return Ok(0);
    }
    if last > ledger.head().position {
        return Err(SessionError::Fenced);
    }
    let message = stream
        .get_raw_message(last)
        .await
        .map_err(|e| SessionError::Stream(e.to_string()))?;
    // The stored JSON is the message's payload, byte for byte: anything
    // else there was published by another writer.
    let ours = ledger.event_json(last)?;
    if ours.as_deref() != Some(message.payload.as_ref()) {
        return Err(SessionError::Fenced);
    }
    Ok(last)
}

async fn session(
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Names,
    stop: &CancellationToken,
    grace: &std::sync::OnceLock<Instant>,
    backoff: &mut Backoff,
) -> Result<(), SessionError> {
    let stream = js
        .get_stream(names.ledger_stream())
        .await
        .map_err(|e| SessionError::Stream(e.to_string()))?;
    let mut confirmed = start(ledger, &stream).await?;
    ledger.set_replicated(confirmed);
    let mut next = confirmed;
    let mut inflight: FuturesOrdered<AckFuture> = FuturesOrdered::new();
    let mut durable = ledger.subscribe();
    let mut watching = true;
    loop {
        let high = ledger.head().position;
        publish_burst(
            Feed::Events,
            ledger,
            js,
            names,
            high,
            confirmed,
            &mut next,
            |position| position - 1,
            &mut inflight,
        )
        .await?;
        let until = stop
            .is_cancelled()
            .then(|| *grace.get_or_init(|| Instant::now() + SHUTDOWN_GRACE));
        if until.is_some() && inflight.is_empty() && next >= ledger.head().position {
            return Ok(());
        }
        tokio::select! {
            biased;
            Some((position, ack)) = inflight.next(), if !inflight.is_empty() => {
                match ack {
                    Ok(ack) if !ack.duplicate => {
                        confirmed = position;
                        ledger.set_replicated(position);
                        backoff.reset();
                    }
                    Ok(_) => return Err(SessionError::Duplicate(position)),
                    Err(error) if matches!(error.kind(), PublishErrorKind::WrongLastSequence) => {
                        return Err(SessionError::WrongLast(position));
                    }
                    Err(error) => {
                        return Err(SessionError::Publish {
                            position,
                            message: error.to_string(),
                        });
                    }
                }
            }
            changed = durable.changed(), if watching => {
                watching = changed.is_ok();
            }
            () = stop.cancelled(), if until.is_none() => {}
            () = tokio::time::sleep(Duration::from_millis(100)), if !watching => {}
            () = tokio::time::sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerOptions;
    use crate::nats::group::test_history::history;
    use crate::nats::group::test_server::NatsServer;

    async fn stream(server: &NatsServer, prefix: &str) -> (jetstream::Context, Arc<Names>) {
        let client = async_nats::connect(server.url()).await.expect("connects");
        let js = jetstream::new(client);
        let names = Arc::new(Names::new(prefix).expect("a valid prefix"));
        js.create_stream(names.ledger_config())
            .await
            .expect("the stream is made");
        (js, names)
    }

    #[tokio::test]
    async fn answers_wait_for_the_stream_which_holds_each_event_at_its_position() {
        let server = NatsServer::start();
        let (js, names) = stream(&server, "wtest").await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("opens");
        ledger.set_gate(Gate::Writer { replicated: 0 });
        let stop = CancellationToken::new();
        let publisher = tokio::spawn(publish(
            ledger.clone(),
            js.clone(),
            Arc::clone(&names),
            stop.clone(),
        ));
        for outcome in ledger.submit(history(None)).await.expect("answered") {
            assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
        }
        // Answered, so stored: the stream holds every position already.
        let mut stored = js
            .get_stream(names.ledger_stream())
            .await
            .expect("the stream");
        let last = stored.info().await.expect("its state").state.last_sequence;
        assert_eq!(last, ledger.head().position);
        for position in 1..=last {
            let message = stored.get_raw_message(position).await.expect("a message");
            let ours = ledger
                .event_json(position)
                .expect("reads")
                .expect("an event");
            assert_eq!(
                message.payload.as_ref(),
                ours.as_ref(),
                "position {position}"
            );
        }
        stop.cancel();
        assert_eq!(publisher.await.expect("joins"), Published::Stopped);
        ledger.close();
    }

    #[tokio::test]
    async fn a_stream_another_writer_extended_fences_the_node() {
        let server = NatsServer::start();
        let (js, names) = stream(&server, "wfence").await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("opens");
        // Committed here as a single ledger: nothing waits for the stream.
        for outcome in ledger.submit(history(None)).await.expect("answered") {
            assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
        }
        // Another writer stored its own first event.
        js.publish("wfence.ledger.north.partnership.registered", "{}".into())
            .await
            .expect("sent")
            .await
            .expect("stored");
        ledger.set_gate(Gate::Writer { replicated: 0 });
        let published = tokio::time::timeout(
            Duration::from_secs(10),
            publish(ledger.clone(), js, names, CancellationToken::new()),
        )
        .await
        .expect("the publisher stops");
        assert_eq!(published, Published::Fenced);
        assert_eq!(
            ledger.gate(),
            Gate::Follower,
            "fenced: nothing is acknowledged"
        );
        ledger.close();
    }
}
