//! `rotation-ledger restore --from-nats URL`: the published log read back
//! from `ROTATION_LEDGER`, every message in stream order through an
//! ordered (ephemeral) consumer, into an empty ledger's [`Restore`], which
//! checks each event's place in the chain before it commits it.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use super::{Link, Names, NatsError, NatsOptions, connect};
use crate::ledger::{Head, Ledger, RestoreError};

/// How long the stream may take to answer before the restore gives up:
/// the connection itself is retried in the background.
const REACH: Duration = Duration::from_secs(30);

/// Why a restore from NATS stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreFromNatsError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("cannot read the stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

/// Fills the empty `ledger` with every event of `ROTATION_LEDGER`, in
/// order, and returns its head. Calls `on_progress(position, last)` now
/// and then, `last` being the stream's last sequence when it started.
pub async fn restore(
    ledger: &Ledger,
    options: &NatsOptions,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<Head, RestoreFromNatsError> {
    let mut restore = ledger.restore()?;
    let url = options.url.clone().unwrap_or_default();
    let names = Names::new(&options.nats_prefix)?;
    let client = connect(options, &url, Link::Outbox).await?;
    let js = jetstream::new(client);
    let name = names.ledger_stream();
    let failed = |message: String| RestoreFromNatsError::Stream {
        stream: name.clone(),
        message,
    };
    let mut stream = tokio::time::timeout(REACH, js.get_stream(&name))
        .await
        .map_err(|_| failed(format!("no answer within {REACH:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    let last = stream
        .info()
        .await
        .map_err(|e| failed(e.to_string()))?
        .state
        .last_sequence;
    if last > 0 {
        let reader = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut messages = reader.messages().await.map_err(|e| failed(e.to_string()))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| failed(e.to_string()))?;
            let sequence = message
                .info()
                .map_err(|e| failed(e.to_string()))?
                .stream_sequence;
            restore.push(&message.payload).await?;
            if sequence % 10_000 == 0 {
                on_progress(sequence, last);
            }
            if sequence >= last {
                break;
            }
        }
    }
    let head = restore.finish().await?;
    on_progress(last, last);
    Ok(head)
}
