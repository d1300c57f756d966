//! Why a node of a ledger group could not follow the group's stream,
//! catch up with it or prepare its store: what `serve --group` reports
//! before it stops; and the patience with which a starting node waits
//! out NATS errors first (a cluster electing its leaders answers nothing
//! for some seconds).

use crate::ledger::{RestoreError, StoreError};

/// Why a node could not follow, catch up or prepare.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// A JetStream request failed (the connection itself is retried in
    /// the background).
    #[error("NATS: cannot {what}: {message}")]
    Nats { what: String, message: String },
    /// An event of the stream did not apply: it does not follow this
    /// node's log (the store is not a prefix of the stream).
    #[error(transparent)]
    Apply(#[from] RestoreError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Key(#[from] crate::personal::KeyError),
    /// The node committed events the stream never stored: it may not
    /// write, and rejoins through `prepare`.
    #[error("this node holds {head} events but the group's stream only {stored}: it rejoins")]
    AheadOfStream { head: u64, stored: u64 },
    /// The node holds a log of its own but the group has no stream yet.
    #[error(
        "this node holds {head} events but the group has no stream {stream}: \
         to make a group of this ledger, publish its log first (serve --nats without \
         --group until {stream} holds every event); to join a group, start from an \
         empty data directory"
    )]
    NoGroupLog { head: u64, stream: String },
    /// The node was given another group key than the group's.
    #[error(
        "this node's group key is not the group's (its check value in the key bucket differs): \
         copy the group key file from a running node (--group-key, mode 0600) and start again"
    )]
    WrongGroupKey,
    /// A secret every node must share differs here, and the store was
    /// built with it.
    #[error(
        "{what} {} differs from the group's and this node's store was built with it: \
         move the data directory aside (or empty it) and start again, so that the node \
         rebuilds from the group's stream with the group's secrets", path.display()
    )]
    SecretDiffers {
        what: &'static str,
        path: std::path::PathBuf,
    },
    /// A shared secret could not be read, written or unwrapped.
    #[error("{what} {}: {message}", path.display())]
    Secret {
        what: &'static str,
        path: std::path::PathBuf,
        message: String,
    },
    /// The store could not be moved aside for a rebuild.
    #[error("cannot move the store aside into {}: {source}", path.display())]
    MoveAside {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl GroupError {
    /// A failed JetStream request: what was asked and why it failed.
    pub(super) fn nats(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Nats {
            what: what.into(),
            message: error.to_string(),
        }
    }
}

/// How long a starting node retries a JetStream request that fails before
/// it gives up: long enough for a cluster that has just started to elect
/// its meta leader and the stream's.
pub(super) const START_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `attempt` until it succeeds, fails with something other than a
/// NATS error, or [`START_PATIENCE`] has passed, waiting more after each
/// failure.
pub(super) async fn patiently<T, Attempt>(
    mut attempt: impl FnMut() -> Attempt,
) -> Result<T, GroupError>
where
    Attempt: std::future::Future<Output = Result<T, GroupError>>,
{
    let deadline = tokio::time::Instant::now() + START_PATIENCE;
    let mut backoff = crate::nats::Backoff::new();
    let never = tokio_util::sync::CancellationToken::new();
    loop {
        match attempt().await {
            Err(GroupError::Nats { what, message }) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%what, %message, "group: NATS not ready yet; retrying");
                backoff.wait(&never).await;
            }
            done => return done,
        }
    }
}
