//! A node's store made a verified prefix of the group's stream before it
//! serves (contract section 11). The store is kept when it opens, its head
//! is within the stream, and the stream's message at that position has the
//! head's hash. Otherwise (it does not open, it holds events the stream
//! never stored, or it went another way) it is moved aside, whole, into
//! `<data>/dropped/<unix time>/` for the operator, and the node rebuilds
//! from the stream through [`Ledger::apply`].
//!
//! sled cannot truncate a log, so moving the store aside and rebuilding is
//! the one mechanism by which a node drops events: they were committed
//! here but never stored by the stream, so never acknowledged. The key
//! files stay where they are: a dropped store's data keys are wrapped
//! under this node's master key, which the next erasure rotates, so no
//! dropped copy outlives an erasure.
//!
//! A store that holds events when the group has no stream at all is not
//! dropped but refused: it is a ledger's own history, not a tail the
//! group never stored.
//!
//! The node's shared secrets (record key, checkpoint signing key) are
//! made the group's here too, before the node serves; and a kept store
//! that holds the whole stream puts the data keys the key bucket has never
//! held, so that a ledger made into a group (its log published by
//! `serve --nats` first) hands the keys of its history to the nodes that
//! rebuild from the stream.

use std::path::{Path, PathBuf};

use async_nats::jetstream;
use rotation_events::CommittedEvent;

use super::GroupError;
use super::error::patiently;
use super::follow::{apply_from_stream, stream_last};
use super::keys::{KeyBucket, SecretFiles};
use crate::ledger::{HEAD_FILE, Ledger, LedgerOptions};
use crate::nats::Names;

/// A node's ledger, ready to follow the group, and what it took.
#[derive(Debug)]
pub struct Prepared {
    pub ledger: Ledger,
    pub preparation: Preparation,
}

/// What `prepare` did to a node's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preparation {
    /// The store was a prefix of the stream: kept as it was.
    Kept { head: u64 },
    /// The store was moved aside (when there was one) and rebuilt from
    /// the stream.
    Rebuilt {
        /// Events applied from the stream.
        events: u64,
        /// Why the old store was not kept; `None` for an empty one.
        dropped: Option<Dropped>,
    },
}

/// A store moved aside, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Where it is now, for the operator.
    pub path: PathBuf,
    pub reason: DropReason,
}

/// Why a store was not a prefix of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// It did not open.
    Damaged(String),
    /// It holds `local - stored` events the stream never stored.
    Ahead { local: u64, stored: u64 },
    /// Its event at `position` is not the stream's.
    Diverged { position: u64 },
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Damaged(problem) => write!(f, "the store did not open: {problem}"),
            Self::Ahead { local, stored } => write!(
                f,
                "{} local events the group's stream never stored (never acknowledged)",
                local - stored
            ),
            Self::Diverged { position } => {
                write!(f, "its event {position} is not the group's stream's")
            }
        }
    }
}

/// Opens the ledger in `dir` as a verified prefix of the group's stream,
/// rebuilding it from the stream when it is not one, and makes its shared
/// secrets the group's. The caller then follows from its head.
pub(crate) async fn prepare(
    dir: &Path,
    options: &LedgerOptions,
    js: &jetstream::Context,
    names: &Names,
    keys: &KeyBucket,
    secrets: &SecretFiles,
) -> Result<Prepared, GroupError> {
    let stream = patiently(|| stream_last(js, names)).await?;
    let stored = stream.unwrap_or(0);
    let (ledger, reason) = match Ledger::open(dir, options.clone()) {
        // No group has ever written here: a log of its own is not a tail
        // to drop, and the node may not serve it as the group's.
        Ok(ledger) if stream.is_none() && ledger.head().position > 0 => {
            return Err(GroupError::NoGroupLog {
                head: ledger.head().position,
                stream: names.ledger_stream(),
            });
        }
        Ok(ledger) => match patiently(|| judge(&ledger, js, names, stored)).await? {
            None => {
                let head = ledger.head().position;
                patiently(|| keys.adopt_secrets(secrets, head == 0)).await?;
                // A store that is the whole stream (a ledger made into a
                // group, or a node restarted while nothing was written)
                // puts the keys of its history the bucket lacks before
                // any node rebuilt from the stream needs them.
                if head > 0 && head == stored {
                    patiently(|| keys.share_held(&ledger)).await?;
                }
                let preparation = if head == 0 && stored > 0 {
                    Preparation::Rebuilt {
                        events: patiently(|| rebuild(&ledger, js, names, keys, stored)).await?,
                        dropped: None,
                    }
                } else {
                    Preparation::Kept { head }
                };
                return Ok(Prepared {
                    ledger,
                    preparation,
                });
            }
            Some(reason) => (Some(ledger), reason),
        },
        // A store another process holds is not damaged: never move it.
        Err(error) if Ledger::held_elsewhere(dir) => return Err(error.into()),
        Err(error) => (None, DropReason::Damaged(error.to_string())),
    };
    if let Some(ledger) = ledger {
        ledger.close();
    }
    let path = move_aside(dir)?;
    tracing::warn!(
        dropped = %path.display(),
        reason = %reason,
        "group: this node's store is not a prefix of the group's stream; \
         moved aside and rebuilt from the stream"
    );
    patiently(|| keys.adopt_secrets(secrets, true)).await?;
    let ledger = Ledger::open(dir, options.clone())?;
    // A rebuild interrupted by NATS resumes from the head it reached.
    let events = patiently(|| rebuild(&ledger, js, names, keys, stored)).await?;
    Ok(Prepared {
        ledger,
        preparation: Preparation::Rebuilt {
            events,
            dropped: Some(Dropped { path, reason }),
        },
    })
}

/// Why `ledger` is not a prefix of the stream that holds `stored`
/// events; `None` when it is one.
async fn judge(
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Names,
    stored: u64,
) -> Result<Option<DropReason>, GroupError> {
    let head = ledger.head();
    if head.position == 0 {
        return Ok(None);
    }
    if head.position > stored {
        return Ok(Some(DropReason::Ahead {
            local: head.position,
            stored,
        }));
    }
    let name = names.ledger_stream();
    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| GroupError::nats(format!("open the stream {name}"), e))?;
    let message = stream
        .get_raw_message(head.position)
        .await
        .map_err(|e| GroupError::nats(format!("read message {} of {name}", head.position), e))?;
    let same = CommittedEvent::from_json(&message.payload)
        .is_ok_and(|event| event.ledger.hash == head.hash);
    Ok((!same).then_some(DropReason::Diverged {
        position: head.position,
    }))
}

/// Applies the stream's first `stored` events to `ledger` after its head
/// (empty, or where an interrupted rebuild left it). What was applied
/// before a failure is committed, so a retry goes on from there.
async fn rebuild(
    ledger: &Ledger,
    js: &jetstream::Context,
    names: &Names,
    keys: &KeyBucket,
    stored: u64,
) -> Result<u64, GroupError> {
    let mut apply = ledger.apply()?;
    if apply.next_position() <= stored {
        keys.install_all(ledger).await?;
        let never = tokio_util::sync::CancellationToken::new();
        let applied =
            apply_from_stream(ledger, js, names, keys, &mut apply, Some(stored), &never).await;
        apply.commit().await?;
        applied?;
    }
    Ok(apply.commit().await?.position)
}

/// Moves the store's files (sled's and the head record) from `dir` into
/// `dir/dropped/<unix time>/`; the key files stay.
fn move_aside(dir: &Path) -> Result<PathBuf, GroupError> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut aside = dir.join("dropped").join(seconds.to_string());
    let mut n = 1;
    while aside.exists() {
        aside = dir.join("dropped").join(format!("{seconds}-{n}"));
        n += 1;
    }
    let failed = |source| GroupError::MoveAside {
        path: aside.clone(),
        source,
    };
    std::fs::create_dir_all(&aside).map_err(failed)?;
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let name = entry.map_err(failed)?.file_name();
        let Some(text) = name.to_str() else { continue };
        if is_store_file(text) {
            std::fs::rename(dir.join(&name), aside.join(&name)).map_err(failed)?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)?;
    Ok(aside)
}

/// The store's files in a data directory: sled's and the head record.
fn is_store_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.") || name == HEAD_FILE
}
