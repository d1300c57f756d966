//! Publication of each signed checkpoint to `rotation.checkpoints`
//! (stream `ROTATION_CHECKPOINTS`, limits retention, kept), for witnesses
//! who countersign or keep them.

use async_nats::jetstream::{self, stream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Link, Names, NatsOptions, connect};
use crate::checkpoint::Signed;

impl Names {
    fn checkpoints_subject(&self) -> String {
        format!("{}.checkpoints", self.prefix)
    }

    /// Every checkpoint, kept: a witness that was away reads the ones it
    /// missed.
    fn checkpoints_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream("CHECKPOINTS"),
            description: Some("The rotation ledger's signed checkpoints".into()),
            subjects: vec![self.checkpoints_subject()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            deny_delete: true,
            allow_direct: true,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// Publishes every checkpoint `latest` shows, the current one first,
/// until `shutdown`; a NATS outage delays publication, and the latest
/// checkpoint then goes out once it is over. In a ledger group every node
/// signs the same checkpoints; each goes out with its size as its
/// `Nats-Msg-Id`, so the stream keeps one copy of each, on `replicas`
/// servers (0: the server's default, for a single ledger).
pub async fn publish_checkpoints(
    args: NatsOptions,
    replicas: usize,
    mut latest: watch::Receiver<Option<Signed>>,
    shutdown: CancellationToken,
) {
    let Some(url) = args.url.clone() else {
        return;
    };
    let names = match Names::new(&args.nats_prefix) {
        Ok(names) => names.with_replicas(replicas),
        Err(error) => {
            tracing::error!(%error, "cannot publish checkpoints");
            return;
        }
    };
    let mut backoff = Backoff::new();
    let mut published: Option<u64> = None;
    loop {
        let session = async {
            let client = connect(&args, &url, Link::Outbox)
                .await
                .map_err(|e| e.to_string())?;
            let js = jetstream::new(client);
            js.get_or_create_stream(names.checkpoints_config())
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let signed = latest.borrow_and_update().clone();
                if let Some(signed) = signed.filter(|s| Some(s.size) != published) {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(
                        "Nats-Msg-Id",
                        format!("checkpoint-{}", signed.size).as_str(),
                    );
                    js.publish_with_headers(
                        names.checkpoints_subject(),
                        headers,
                        signed.note.to_string().into(),
                    )
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                    published = Some(signed.size);
                    backoff.reset();
                }
                if latest.changed().await.is_err() {
                    return Ok::<(), String>(());
                }
            }
        };
        let error = tokio::select! {
            () = shutdown.cancelled() => return,
            result = session => match result {
                Ok(()) => return,
                Err(error) => error,
            },
        };
        tracing::warn!(%error, "publishing checkpoints to NATS failed; retrying");
        if !backoff.wait(&shutdown).await {
            return;
        }
    }
}
