//! The writer's lease: key `writer` of the `<PREFIX>_LEADER` key-value
//! bucket (contract section 11), holding `{"node", "http", "expires_ms"}`.
//!
//! A node takes the lease by `create` when the key is absent (never
//! written, deleted by a clean shutdown, or aged out by the bucket's
//! `max_age`, which equals the lease), or by `update` on the revision it
//! read when that entry's `expires_ms` is past. It renews every third of
//! the lease with `update` on the revision of its last renewal, so a
//! renewal succeeds only if nobody else wrote the key meanwhile: the
//! bucket's compare-and-set is the whole election, and JetStream's Raft
//! group decides between two contenders.
//!
//! The holder never trusts the bucket alone to tell it that it lost: it
//! keeps a local deadline, the moment its last successful renewal was
//! *sent* plus the lease less [`MARGIN`]. Another node can take the lease
//! only once `expires_ms` (written from the same moment, plus the whole
//! lease) is past, so the holder has stopped acknowledging a full margin
//! before anyone else may start. Past the deadline, or on any refused
//! renewal, the holder fences itself at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::nats::Names;

/// The lease's key in the bucket.
pub(super) const KEY: &str = "writer";

/// How long before the lease's end, as the others see it, the holder
/// stops acknowledging: room for clocks that differ a little and for a
/// renewal's round trip.
pub(super) const MARGIN: Duration = Duration::from_secs(1);

/// Why the lease could not be read, taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot open the {bucket} bucket: {message}")]
    Bucket { bucket: String, message: String },
    #[error("cannot read the lease: {0}")]
    Read(String),
}

/// The lease's value in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holding node's name.
    pub node: String,
    /// Where the holder's HTTP API listens, for followers to name.
    pub http: String,
    /// Milliseconds since the Unix epoch after which others may take it.
    pub expires_ms: u64,
}

/// The `<PREFIX>_LEADER` bucket, with the lease's length.
#[derive(Debug, Clone)]
pub(super) struct Leases {
    kv: kv::Store,
    lease: Duration,
}

/// A lease this node holds: the revision its next renewal must find.
#[derive(Debug)]
pub(super) struct Held {
    revision: u64,
    /// The local deadline: past it, the node may no longer act as writer.
    deadline: Instant,
}

/// The renewal task of a held lease.
#[derive(Debug)]
pub(super) struct Kept {
    /// Cancelled when the lease is lost (refused or late renewal); the
    /// fence has run by then.
    pub(super) lost: CancellationToken,
    stop: CancellationToken,
    task: JoinHandle<Option<Held>>,
}

/// Milliseconds since the Unix epoch now.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Leases {
    /// Opens (or creates) the bucket with `replicas` and `max_age` = the
    /// lease, so a lease nobody renews also disappears by itself.
    pub(super) async fn open(
        js: &jetstream::Context,
        names: &Names,
        replicas: usize,
        lease: Duration,
    ) -> Result<Self, LeaseError> {
        let bucket = names.stream("LEADER");
        let kv = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "The ledger group's writer lease and node status".into(),
                    history: 1,
                    max_age: lease,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| LeaseError::Bucket {
                    bucket: bucket.clone(),
                    message: e.to_string(),
                })?,
        };
        Ok(Self { kv, lease })
    }

    /// The bucket, for the nodes' status entries.
    pub(super) fn store(&self) -> &kv::Store {
        &self.kv
    }

    /// The lease now, when someone holds it and it has not expired.
    pub(super) async fn holder(&self) -> Result<Option<Holder>, LeaseError> {
        Ok(self
            .read()
            .await?
            .map(|(holder, _)| holder)
            .filter(|holder| holder.expires_ms > now_ms()))
    }

    async fn read(&self) -> Result<Option<(Holder, u64)>, LeaseError> {
        let entry = self
            .kv
            .entry(KEY)
            .await
            .map_err(|e| LeaseError::Read(e.to_string()))?;
        Ok(entry.and_then(|entry| {
            if entry.operation != kv::Operation::Put {
                return None;
            }
            // An unreadable value counts as expired at once: whoever wrote
            // it is not a node of this version, and the lease must not be
            // stuck behind it.
            let holder = serde_json::from_slice(&entry.value).unwrap_or(Holder {
                node: String::new(),
                http: String::new(),
                expires_ms: 0,
            });
            Some((holder, entry.revision))
        }))
    }

    fn value(&self, node: &str, http: &str) -> (Bytes, Instant) {
        let sent = Instant::now();
        let expires_ms =
            now_ms().saturating_add(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX));
        let holder = Holder {
            node: node.to_owned(),
            http: http.to_owned(),
            expires_ms,
        };
        let bytes = serde_json::to_vec(&holder).unwrap_or_default();
        (bytes.into(), sent + self.lease.saturating_sub(MARGIN))
    }

    /// Takes the lease if nobody holds it (or its holder let it expire, or
    /// it is this node's own from before a restart). `None` when another
    /// node holds it or won the race.
    pub(super) async fn try_take(
        &self,
        node: &str,
        http: &str,
    ) -> Result<Option<Held>, LeaseError> {
        let current = self.read().await?;
        let (value, deadline) = self.value(node, http);
        let taken = match current {
            None => self.kv.create(KEY, value).await.ok(),
            Some((holder, revision)) if holder.expires_ms <= now_ms() || holder.node == node => {
                self.kv.update(KEY, value, revision).await.ok()
            }
            Some(_) => None,
        };
        Ok(taken.map(|revision| Held { revision, deadline }))
    }

    /// Renews `held`; false when another node wrote the lease since, or
    /// the answer came after the local deadline.
    pub(super) async fn renew(&self, held: &mut Held, node: &str, http: &str) -> bool {
        let (value, deadline) = self.value(node, http);
        match tokio::time::timeout_at(held.deadline, self.kv.update(KEY, value, held.revision))
            .await
        {
            Ok(Ok(revision)) => {
                held.revision = revision;
                held.deadline = deadline;
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "group: the lease renewal was refused");
                false
            }
            Err(_) => {
                tracing::warn!("group: no answer to the lease renewal before the deadline");
                false
            }
        }
    }

    /// Gives the lease up (a clean shutdown), so that a follower takes it
    /// at once instead of waiting for it to expire.
    pub(super) async fn release(&self, held: Held) {
        if let Err(error) = self
            .kv
            .delete_expect_revision(KEY, Some(held.revision))
            .await
        {
            tracing::debug!(%error, "group: the lease was not released (already lost?)");
        }
    }

    /// Renews `held` every third of the lease until `stop`, calling
    /// `fence` the moment it is lost (before [`Kept::lost`] is
    /// cancelled). The task hands the lease back when stopped while still
    /// held, so that it can be released.
    pub(super) fn keep(
        &self,
        mut held: Held,
        node: String,
        http: String,
        fence: impl FnOnce() + Send + 'static,
    ) -> Kept {
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let leases = self.clone();
        let every = self.lease / 3;
        let task = tokio::spawn({
            let lost = lost.clone();
            let stop = stop.clone();
            async move {
                let mut next = Instant::now() + every;
                let kept = loop {
                    tokio::select! {
                        () = stop.cancelled() => break true,
                        () = tokio::time::sleep_until(held.deadline) => {
                            tracing::warn!("group: the lease's local deadline passed");
                            break false;
                        }
                        () = tokio::time::sleep_until(next) => {
                            if !leases.renew(&mut held, &node, &http).await {
                                break false;
                            }
                            next += every;
                            if next < Instant::now() {
                                next = Instant::now();
                            }
                        }
                    }
                };
                if kept && Instant::now() < held.deadline {
                    return Some(held);
                }
                fence();
                lost.cancel();
                None
            }
        });
        Kept { lost, stop, task }
    }
}

impl Kept {
    /// Stops renewing; the lease, when still held.
    pub(super) async fn stop(self) -> Option<Held> {
        self.stop.cancel();
        self.task.await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::nats::group::test_server::NatsServer;

    const LEASE: Duration = Duration::from_secs(2);

    async fn leases(server: &NatsServer) -> Leases {
        let client = async_nats::connect(server.url()).await.expect("connects");
        let js = jetstream::new(client);
        let names = Names::new("leasetest").expect("a valid prefix");
        Leases::open(&js, &names, 1, LEASE).await.expect("bucket")
    }

    #[tokio::test]
    async fn one_of_two_contenders_wins_and_the_other_takes_over_after_expiry() {
        let server = NatsServer::start();
        let a = leases(&server).await;
        let b = leases(&server).await;
        let (first, second) = tokio::join!(a.try_take("a", "h:a"), b.try_take("b", "h:b"));
        let (first, second) = (first.expect("reads"), second.expect("reads"));
        assert!(
            first.is_some() != second.is_some(),
            "exactly one contender wins"
        );
        let (winner, loser, loser_name, held) = match (first, second) {
            (Some(held), None) => (&a, &b, "b", held),
            (None, Some(held)) => (&b, &a, "a", held),
            _ => unreachable!(),
        };
        let fenced = Arc::new(AtomicBool::new(false));
        let kept = winner.keep(held, "w".into(), "h:w".into(), {
            let fenced = Arc::clone(&fenced);
            move || fenced.store(true, Ordering::SeqCst)
        });
        // Renewals keep it for longer than a lease.
        tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
        assert!(
            loser
                .try_take(loser_name, "h")
                .await
                .expect("reads")
                .is_none()
        );
        assert!(!fenced.load(Ordering::SeqCst));
        // The winner stops renewing without releasing (as a killed node).
        assert!(kept.stop().await.is_some(), "still held when stopped");
        let stopped = Instant::now();
        loop {
            if loser
                .try_take(loser_name, "h")
                .await
                .expect("reads")
                .is_some()
            {
                break;
            }
            assert!(
                stopped.elapsed() < LEASE + Duration::from_secs(1),
                "the loser takes the lease within the lease and a second"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(stopped.elapsed() >= LEASE - MARGIN, "not before it expired");
    }

    #[tokio::test]
    async fn a_holder_whose_renewal_is_refused_fences_itself() {
        let server = NatsServer::start();
        let a = leases(&server).await;
        let held = a.try_take("a", "h:a").await.expect("reads").expect("free");
        // Someone else overwrites the key: the next renewal's revision no
        // longer matches.
        a.store()
            .put(KEY, Bytes::from_static(b"{}"))
            .await
            .expect("written");
        let fenced = Arc::new(AtomicBool::new(false));
        let kept = a.keep(held, "a".into(), "h:a".into(), {
            let fenced = Arc::clone(&fenced);
            move || fenced.store(true, Ordering::SeqCst)
        });
        tokio::time::timeout(LEASE, kept.lost.cancelled())
            .await
            .expect("the loss is reported within one lease");
        assert!(fenced.load(Ordering::SeqCst), "fenced before reporting");
        assert!(kept.stop().await.is_none());
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once() {
        let server = NatsServer::start();
        let a = leases(&server).await;
        let b = leases(&server).await;
        let held = a.try_take("a", "h:a").await.expect("reads").expect("free");
        assert!(b.try_take("b", "h:b").await.expect("reads").is_none());
        a.release(held).await;
        let taken = b.try_take("b", "h:b").await.expect("reads");
        assert!(taken.is_some(), "released, so free at once");
        assert_eq!(
            b.holder().await.expect("reads").map(|h| h.node).as_deref(),
            Some("b")
        );
    }
}
