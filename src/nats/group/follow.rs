//! A follower's apply of the group's log (contract section 11): every
//! message of `ROTATION_LEDGER` after this node's head, in stream order
//! (the stream's sequence is the ledger's position), through
//! [`Ledger::apply`], which checks each event's position, `prevhash` and
//! hash and commits it through the one write path. A message's data keys
//! are installed from the key bucket before the event applies, so its
//! profiles open here as on the writer.
//!
//! A follower commits whenever the stream has nothing more pending for it
//! (so it stays within milliseconds of the writer) and when a batch is
//! full (so a long stream is caught up in large batches).

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::GroupError;
use super::keys::KeyBucket;
use crate::ledger::{Apply, Head, Ledger};
use crate::nats::{Backoff, Names};

/// Applies the stream to `ledger` as it grows, until `stop`; then commits
/// what it staged and returns. NATS failures are waited out (the consumer
/// starts again after the last event applied); an event that does not
/// apply is an error: this node's store is not a prefix of the stream,
/// and only `prepare` can mend it.
pub(super) async fn follow(
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Names,
    keys: &KeyBucket,
    stop: &CancellationToken,
) -> Result<(), GroupError> {
    let mut apply = ledger.apply()?;
    let mut backoff = Backoff::new();
    loop {
        let applied = apply_from_stream(ledger, js, names, keys, &mut apply, None, stop).await;
        apply.commit().await?;
        match applied {
            Ok(_) => return Ok(()),
            Err(GroupError::Nats { what, message }) => {
                tracing::warn!(%what, %message, "group: following paused; starting over");
                if !backoff.wait(stop).await {
                    return Ok(());
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// Applies the stream to its last message as read now, commits, and
/// returns the head: what a node does on taking the lease, before it
/// writes. Refuses a node whose log is ahead of the stream.
pub(super) async fn catch_up(
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Names,
    keys: &KeyBucket,
) -> Result<Head, GroupError> {
    let last = last_sequence(js, names).await?;
    let head = ledger.head().position;
    if head > last {
        return Err(GroupError::AheadOfStream { head, stored: last });
    }
    let mut apply = ledger.apply()?;
    if head < last {
        let never = CancellationToken::new();
        apply_from_stream(ledger, js, names, keys, &mut apply, Some(last), &never).await?;
    }
    Ok(apply.commit().await?)
}

/// The stream's last sequence, 0 when it holds nothing or does not exist
/// yet (no writer has published).
pub(super) async fn last_sequence(
    js: &jetstream::Context,
    names: &Names,
) -> Result<u64, GroupError> {
    Ok(stream_last(js, names).await?.unwrap_or(0))
}

/// The stream's last sequence; `None` when there is no stream at all.
pub(super) async fn stream_last(
    js: &jetstream::Context,
    names: &Names,
) -> Result<Option<u64>, GroupError> {
    let name = names.ledger_stream();
    match js.get_stream(&name).await {
        Ok(mut stream) => Ok(Some(
            stream
                .info()
                .await
                .map_err(|e| GroupError::nats(format!("read the stream {name}"), e))?
                .state
                .last_sequence,
        )),
        Err(error) if stream_missing(&error) => Ok(None),
        Err(error) => Err(GroupError::nats(format!("read the stream {name}"), error)),
    }
}

/// Whether the stream was not found (as opposed to not reached).
pub(super) fn stream_missing(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Reads the stream from `apply`'s next position and applies each
/// message, committing whenever nothing more is pending; returns when
/// `until` is applied, or when `stop` is cancelled. Every message must
/// carry the sequence `apply` expects: the stream's sequence is the
/// position.
pub(super) async fn apply_from_stream(
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Names,
    keys: &KeyBucket,
    apply: &mut Apply,
    until: Option<u64>,
    stop: &CancellationToken,
) -> Result<(), GroupError> {
    let name = names.ledger_stream();
    let failed = |what: &str, error: &dyn std::fmt::Display| {
        GroupError::nats(format!("{what} the stream {name}"), error)
    };
    let stream = loop {
        match js.get_stream(&name).await {
            Ok(stream) => break stream,
            // No writer has published yet: wait for the first.
            Err(error) if stream_missing(&error) && until.is_none() => {
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                }
            }
            Err(error) => return Err(failed("open", &error)),
        }
    };
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: apply.next_position(),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| failed("follow", &e))?;
    let mut messages = reader.messages().await.map_err(|e| failed("follow", &e))?;
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            message = messages.next() => message,
        };
        let Some(message) = message else {
            return Err(failed("follow", &"the consumer ended"));
        };
        let message = message.map_err(|e| failed("read", &e))?;
        let info = message.info().map_err(|e| failed("read", &e))?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let expected = apply.next_position();
        if sequence != expected {
            return Err(failed(
                "read",
                &format!("message {sequence} came where {expected} was expected"),
            ));
        }
        keys.install_missing(ledger, &message.payload).await?;
        apply.push(&message.payload).await?;
        if until.is_some_and(|last| sequence >= last) {
            return Ok(());
        }
        if pending == 0 {
            apply.commit().await?;
        }
    }
}

#[cfg(test)]
mod tests;
