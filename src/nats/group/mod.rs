//! The ledger group (contract section 11): several ledgers on a NATS
//! JetStream cluster, one writer by lease, `ROTATION_LEDGER` (replicated,
//! file storage) as the group's log, and followers that apply it and serve
//! every read. JetStream's Raft groups do the replication and decide the
//! order; nothing here is a consensus protocol.
//!
//! - `lease`: the writer's lease in the `<PREFIX>_LEADER` key-value bucket,
//!   taken and renewed by compare-and-set on the entry's revision.
//! - `writer`: the writer's publisher: each committed event to
//!   `ROTATION_LEDGER` with `Nats-Expected-Last-Sequence` = position − 1,
//!   pipelined; the stream's acks move [`Ledger::set_replicated`], and a
//!   refused expected sequence fences the node.
//! - `follow`: a follower's apply of `ROTATION_LEDGER` to its store
//!   ([`Ledger::apply`]), and the catch-up to the stream's last message on
//!   taking the lease.
//! - `keys`: the `<PREFIX>_KEYS` bucket of data keys wrapped under the
//!   group key: the writer's [`KeySink`](crate::ledger::KeySink), and every
//!   node's watch that installs new keys and destroys purged ones.
//! - `prepare`: before a node serves, its store checked against the
//!   stream, and rebuilt from it when it is not a prefix of it (an
//!   unreplicated tail, damage, or nothing at all).
//! - `status`: each node's role and applied position, for `GET /v1/group`.
//! - `forward`: a follower's writes sent on to the writer over
//!   `rotation.append`.
//!
//! `run` drives the roles: follow until the lease can be taken, catch up,
//! write while the lease holds; on losing it, stop acknowledging at once
//! and follow again (or ask `serve` to reopen the node, when it committed
//! events the stream never stored).

use std::sync::Arc;
use std::time::Duration;

use crate::personal::GroupKey;

mod error;
mod follow;
mod forward;
mod keys;
mod lease;
mod prepare;
mod status;
mod writer;

pub use error::GroupError;
pub use keys::SecretFiles;
pub use prepare::{DropReason, Dropped, Preparation, Prepared};

/// How a node takes part in a group (`serve --group`).
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// This node's name in the group: unique, stable across restarts
    /// (`--node-name`; by default the host name and the HTTP port).
    pub node: String,
    /// Replicas of `ROTATION_LEDGER` and of the group's buckets.
    pub replicas: usize,
    /// How long a lease lasts after its last renewal.
    pub lease: Duration,
    /// The key the nodes share to pass data keys through the key bucket.
    pub group_key: Arc<GroupKey>,
}

/// Default replicas (`--replicas`).
pub const DEFAULT_REPLICAS: usize = 3;

/// Default lease (renewed every third of it).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
