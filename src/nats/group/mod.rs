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

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Link, Names, NatsOptions, ingest, outbox};
use crate::ledger::{Gate, KeySink, Ledger, LedgerOptions};
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
pub use forward::{ForwardError, Forwarded};
pub use keys::SecretFiles;
pub use lease::Holder;
pub use prepare::{DropReason, Dropped, Preparation, Prepared};
pub use status::{GroupView, NodeRole, NodeStatus, NodeView};

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

/// The group key's file in the data directory when `--group-key` is not
/// given.
pub const DEFAULT_GROUP_KEY_FILE: &str = "keys/group.key";

/// Default lease (renewed every third of it).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);

/// The default node name: the host name and the HTTP port.
pub fn default_node_name(http: SocketAddr) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}-{}", http.port())
}

/// How a node's time in the group ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown,
    /// The node committed events the stream never stored (it lost the
    /// lease before they were replicated): `serve` closes the ledger and
    /// opens it again through [`Node::prepare`], which drops them.
    Rejoin,
}

/// One node of a ledger group, joined: its connection, the group's
/// buckets and what it tells the others. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: GroupOptions,
    nats: NatsOptions,
    url: String,
    http: String,
    client: async_nats::Client,
    js: jetstream::Context,
    names: Arc<Names>,
    keys: keys::KeyBucket,
    leases: lease::Leases,
    /// What this node does now, for its status entry. A std mutex: held
    /// only to copy or set the value, never across an await.
    role: Mutex<NodeRole>,
    /// Wakes the status task when the role changes, so the others see a
    /// new writer at once rather than within the next second.
    role_changed: tokio::sync::Notify,
}

impl Node {
    /// Connects to the group's NATS servers, makes (or updates) the
    /// replicated `ROTATION_LEDGER` and opens the group's buckets,
    /// checking this node's group key.
    pub async fn join(
        nats: &NatsOptions,
        options: GroupOptions,
        http: SocketAddr,
    ) -> Result<Self, GroupError> {
        let url = nats
            .url
            .clone()
            .ok_or_else(|| GroupError::nats("join a group", "--group needs --nats"))?;
        let names = Arc::new(
            Names::new(&nats.nats_prefix)
                .map_err(|e| GroupError::nats("join a group", e))?
                .with_replicas(options.replicas),
        );
        let client = super::connect(nats, &url, Link::Outbox)
            .await
            .map_err(|e| GroupError::nats("connect", e))?;
        // A cluster just started, or busy, answers its first requests
        // slowly: more patience than the default, and every step retried.
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client.clone());
        let mut backoff = super::Backoff::new();
        let never = CancellationToken::new();
        let (keys, leases) = loop {
            match Self::open_group(&js, &names, &options).await {
                Ok(opened) => break opened,
                Err(error @ GroupError::Nats { .. }) => {
                    tracing::warn!(%error, "group: cannot join yet; retrying");
                    backoff.wait(&never).await;
                }
                Err(error) => return Err(error),
            }
        };
        tracing::info!(node = %options.node, %url, replicas = options.replicas, "group: joined");
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                nats: nats.clone(),
                url,
                http: http.to_string(),
                client,
                js,
                names,
                keys,
                leases,
                role: Mutex::new(NodeRole::Follower),
                role_changed: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Makes (or updates) the replicated `ROTATION_LEDGER` and opens the
    /// key and lease buckets.
    async fn open_group(
        js: &jetstream::Context,
        names: &Names,
        options: &GroupOptions,
    ) -> Result<(keys::KeyBucket, lease::Leases), GroupError> {
        js.create_or_update_stream(names.ledger_config())
            .await
            .map_err(|e| {
                GroupError::nats(format!("make the stream {}", names.ledger_stream()), e)
            })?;
        let keys =
            keys::KeyBucket::open(js, names, options.replicas, Arc::clone(&options.group_key))
                .await?;
        let leases = lease::Leases::open(js, names, options.replicas, options.lease)
            .await
            .map_err(|e| GroupError::nats("open the lease bucket", e))?;
        Ok((keys, leases))
    }

    /// This node's name.
    /// Replicas of the group's streams and buckets.
    pub fn replicas(&self) -> usize {
        self.inner.options.replicas
    }

    pub fn name(&self) -> &str {
        &self.inner.options.node
    }

    /// Opens the ledger in `dir` as a verified prefix of the group's
    /// stream (rebuilding it when it is not one) with the group's shared
    /// secrets.
    pub async fn prepare(
        &self,
        dir: &Path,
        options: &LedgerOptions,
        secrets: &SecretFiles,
    ) -> Result<Prepared, GroupError> {
        let inner = &self.inner;
        prepare::prepare(dir, options, &inner.js, &inner.names, &inner.keys, secrets).await
    }

    /// The group as `GET /v1/group` shows it.
    pub async fn view(&self, ledger: &Ledger) -> GroupView {
        let inner = &self.inner;
        let writer = inner.leases.holder().await.unwrap_or_default();
        let mut nodes = status::read(inner.leases.store()).await.unwrap_or_default();
        // This node's own entry is now, whatever the bucket says.
        nodes.retain(|n| n.node != inner.options.node);
        nodes.push(self.status(ledger));
        GroupView::of(inner.options.node.clone(), writer, nodes)
    }

    /// The writer's HTTP address, when a writer holds the lease.
    pub async fn writer_http(&self) -> Option<String> {
        self.inner
            .leases
            .holder()
            .await
            .ok()
            .flatten()
            .map(|holder| holder.http)
    }

    /// Sends a submission's body to the writer (`rotation.append`) and
    /// waits for its receipts.
    pub async fn forward(&self, body: Bytes) -> Result<Forwarded, ForwardError> {
        let inner = &self.inner;
        forward::forward(&inner.client, inner.names.append(), body).await
    }

    fn role(&self) -> NodeRole {
        *self.inner.role.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_role(&self, role: NodeRole) {
        *self.inner.role.lock().unwrap_or_else(|e| e.into_inner()) = role;
        self.inner.role_changed.notify_one();
    }

    fn status(&self, ledger: &Ledger) -> NodeStatus {
        NodeStatus {
            node: self.inner.options.node.clone(),
            role: self.role(),
            applied: ledger.head().position,
            http: self.inner.http.clone(),
            updated_ms: lease::now_ms(),
        }
    }

    /// Drives the node's roles until `shutdown` (or until it must
    /// rejoin): follow while another node holds the lease; on taking it,
    /// catch up, then write; on losing it, stop acknowledging at once
    /// and follow again.
    pub async fn run(
        &self,
        ledger: Ledger,
        shutdown: CancellationToken,
    ) -> Result<Ended, GroupError> {
        ledger.set_gate(Gate::Follower);
        let stop_status = CancellationToken::new();
        let status_task =
            tokio::spawn(self.clone().put_status(ledger.clone(), stop_status.clone()));
        let watch_keys = tokio::spawn(keys::watch(
            ledger.clone(),
            self.inner.keys.clone(),
            stop_status.clone(),
        ));
        let ended = self.roles(&ledger, &shutdown).await;
        stop_status.cancel();
        let _ = status_task.await;
        let _ = watch_keys.await;
        ended
    }

    async fn roles(
        &self,
        ledger: &Ledger,
        shutdown: &CancellationToken,
    ) -> Result<Ended, GroupError> {
        let inner = &self.inner;
        loop {
            self.set_role(NodeRole::Follower);
            let held = match self.follow_until_leased(ledger, shutdown).await {
                Ok(Some(held)) => held,
                Ok(None) => return Ok(Ended::Shutdown),
                // The store is not a prefix of the stream: only prepare,
                // which rebuilds it, can mend that.
                Err(error @ GroupError::Apply(_)) => {
                    tracing::warn!(%error, "group: the stream does not follow this node's log; rejoining");
                    return Ok(Ended::Rejoin);
                }
                Err(error) => return Err(error),
            };
            match follow::catch_up(ledger, &inner.js, &inner.names, &inner.keys).await {
                Ok(head) => {
                    tracing::info!(node = %inner.options.node, head = head.position, "group: took the lease; writing");
                    // Holding the whole stream now, the writer puts every
                    // key of its history the bucket lacks (a ledger made
                    // into a group that did not start as the stream's
                    // whole). A failure costs only those profiles on the
                    // other nodes, until the next writer tries again.
                    if let Err(error) = inner.keys.share_held(ledger).await {
                        tracing::warn!(%error, "group: cannot put this ledger's data keys in the key bucket");
                    }
                }
                Err(GroupError::AheadOfStream { head, stored }) => {
                    tracing::warn!(
                        head,
                        stored,
                        "group: this node holds events the stream never stored; rejoining"
                    );
                    inner.leases.release(held).await;
                    return Ok(Ended::Rejoin);
                }
                Err(error) => {
                    inner.leases.release(held).await;
                    return Err(error);
                }
            }
            match self.write(ledger, held, shutdown).await? {
                Some(ended) => return Ok(ended),
                None => continue,
            }
        }
    }

    /// Follows the stream, trying the lease every third of it; the lease
    /// once taken, `None` at shutdown.
    async fn follow_until_leased(
        &self,
        ledger: &Ledger,
        shutdown: &CancellationToken,
    ) -> Result<Option<lease::Held>, GroupError> {
        let inner = &self.inner;
        let stop = shutdown.child_token();
        let following = tokio::spawn({
            let (ledger, node, stop) = (ledger.clone(), self.clone(), stop.clone());
            async move {
                let inner = &node.inner;
                follow::follow(&ledger, &inner.js, &inner.names, &inner.keys, &stop).await
            }
        });
        let mut tick = tokio::time::interval(inner.options.lease / 3);
        let held = loop {
            tokio::select! {
                () = shutdown.cancelled() => break None,
                _ = tick.tick() => {
                    match inner.leases.try_take(&inner.options.node, &inner.http).await {
                        Ok(Some(held)) => break Some(held),
                        Ok(None) => {}
                        Err(error) => tracing::debug!(%error, "group: cannot read the lease"),
                    }
                }
            }
            if following.is_finished() {
                break None;
            }
        };
        stop.cancel();
        let followed = following.await.map_err(|e| GroupError::nats("follow", e))?;
        if let Err(error) = followed {
            if let Some(held) = held {
                inner.leases.release(held).await;
            }
            return Err(error);
        }
        Ok(held)
    }

    /// Writes while the lease holds: the fenced publisher, the ingest of
    /// `ROTATION_IN`, `rotation.append` and the rejection outbox. `None`
    /// when the lease was lost and the node may follow again.
    async fn write(
        &self,
        ledger: &Ledger,
        held: lease::Held,
        shutdown: &CancellationToken,
    ) -> Result<Option<Ended>, GroupError> {
        let inner = &self.inner;
        // This node's rejections are named apart from every other node's.
        let origin = match outbox::rejection_origin(ledger, &inner.options.node) {
            Ok(origin) => origin,
            Err(error) => {
                inner.leases.release(held).await;
                return Err(error.into());
            }
        };
        let rejection_names = Arc::new(inner.names.as_ref().clone().with_rejection_origin(origin));
        let head = ledger.head().position;
        ledger.set_gate(Gate::Writer { replicated: head });
        let sink: Arc<dyn KeySink> = Arc::new(inner.keys.clone());
        ledger.set_key_sink(Some(sink));
        let kept = inner
            .leases
            .keep(held, inner.options.node.clone(), inner.http.clone(), {
                let ledger = ledger.clone();
                move || ledger.set_gate(Gate::Follower)
            });
        self.set_role(NodeRole::Writer);

        let (interruptions, interrupted) = watch::channel(0);
        let ingest_client = super::connect(&inner.nats, &inner.url, Link::Ingest(interruptions))
            .await
            .map_err(|e| GroupError::nats("connect the ingest", e))?;
        let publisher = super::connect(&inner.nats, &inner.url, Link::Outbox)
            .await
            .map_err(|e| GroupError::nats("connect the publisher", e))?;
        let publish_js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(4 * outbox::WINDOW)
            .backpressure_on_inflight(true)
            .build(publisher.clone());
        let stop_ingest = CancellationToken::new();
        let drain = CancellationToken::new();
        let consume = tokio::spawn(ingest::consume(
            ledger.clone(),
            jetstream::new(ingest_client.clone()),
            Arc::clone(&inner.names),
            interrupted,
            stop_ingest.clone(),
        ));
        let append = tokio::spawn(ingest::serve_append(
            ledger.clone(),
            ingest_client.clone(),
            Arc::clone(&inner.names),
            stop_ingest.clone(),
        ));
        let mut events = tokio::spawn(writer::publish(
            ledger.clone(),
            publish_js.clone(),
            Arc::clone(&inner.names),
            drain.clone(),
        ));
        let rejections = tokio::spawn(outbox::run(
            outbox::Feed::Rejections,
            ledger.clone(),
            publish_js,
            rejection_names,
            drain.clone(),
        ));

        let mut fenced = false;
        let clean = tokio::select! {
            () = shutdown.cancelled() => true,
            () = kept.lost.cancelled() => false,
            published = &mut events => {
                fenced = matches!(published, Ok(writer::Published::Fenced));
                false
            }
        };
        if !clean {
            // Nothing more is acknowledged from here on.
            ledger.set_gate(Gate::Follower);
            tracing::warn!(node = %inner.options.node, "group: lost the lease; following");
        }
        self.set_role(NodeRole::Follower);
        stop_ingest.cancel();
        for task in [consume, append] {
            if let Err(error) = task.await {
                tracing::error!(%error, "group: an ingest task failed");
            }
        }
        // What the ingest committed while stopping is published too, when
        // the lease still holds.
        drain.cancel();
        if !fenced && let Err(error) = (&mut events).await {
            tracing::error!(%error, "group: the publisher failed");
        }
        if let Err(error) = rejections.await {
            tracing::error!(%error, "group: the rejection outbox failed");
        }
        let _ = ingest_client.flush().await;
        let _ = publisher.flush().await;
        ledger.set_key_sink(None);
        ledger.set_gate(Gate::Follower);
        if let Some(held) = kept.stop().await {
            inner.leases.release(held).await;
        }
        if clean {
            return Ok(Some(Ended::Shutdown));
        }
        if self.holds_only_stored(ledger).await? {
            Ok(None)
        } else {
            tracing::warn!(node = %inner.options.node, "group: this node committed events the stream did not store; rejoining");
            Ok(Some(Ended::Rejoin))
        }
    }

    /// Whether this node's head is in the stream, as this node has it: a
    /// writer that lost its lease may hold events the stream never stored,
    /// beyond its end or (another writer having gone on since) in place of
    /// the stream's own.
    async fn holds_only_stored(&self, ledger: &Ledger) -> Result<bool, GroupError> {
        let inner = &self.inner;
        let head = ledger.head().position;
        if head == 0 {
            return Ok(true);
        }
        if head > follow::last_sequence(&inner.js, &inner.names).await? {
            return Ok(false);
        }
        let name = inner.names.ledger_stream();
        let stream = inner
            .js
            .get_stream(&name)
            .await
            .map_err(|e| GroupError::nats(format!("open the stream {name}"), e))?;
        let message = stream
            .get_raw_message(head)
            .await
            .map_err(|e| GroupError::nats(format!("read message {head} of {name}"), e))?;
        Ok(ledger.event_json(head)?.as_deref() == Some(message.payload.as_ref()))
    }

    /// Puts this node's status every [`status::EVERY`] until `stop`.
    async fn put_status(self, ledger: Ledger, stop: CancellationToken) {
        let mut tick = tokio::time::interval(status::EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.inner.role_changed.notified() => {}
                _ = tick.tick() => {}
            }
            status::put(self.inner.leases.store(), &self.status(&ledger)).await;
        }
    }
}

/// A nats-server of the test's own (JetStream in a temporary directory,
/// `sync_interval: always`), from `$ROTATION_TOOLS/venv/bin/nats-server`.
#[cfg(test)]
pub(crate) mod test_server {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub(crate) struct NatsServer {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    }

    fn binary() -> PathBuf {
        let tools = std::env::var_os("ROTATION_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools"));
        let path = tools.join("venv/bin/nats-server");
        assert!(
            path.exists(),
            "nats-server not found at {}: run ./scripts/test, which installs it (or set ROTATION_TOOLS)",
            path.display()
        );
        path
    }

    impl NatsServer {
        pub(crate) fn start() -> Self {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let config = dir.path().join("nats.conf");
            std::fs::write(
                &config,
                format!(
                    "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                    dir.path().join("jetstream")
                ),
            )
            .expect("the configuration is written");
            let child = Command::new(binary())
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts");
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "nats-server listens within 10 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Self {
                child,
                port,
                _dir: dir,
            }
        }

        pub(crate) fn url(&self) -> String {
            format!("nats://127.0.0.1:{}", self.port)
        }
    }

    impl Drop for NatsServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The small history the group's unit tests submit: the partnership
/// `north` and three jobseekers.
#[cfg(test)]
pub(crate) mod test_history {
    use serde_json::{Value, json};
    use uuid::Uuid;

    use crate::auth::Caller;
    use crate::ledger::Submission;

    /// The `n`th person of the history.
    pub(crate) fn person(n: u64) -> Uuid {
        Uuid::from_u64_pair(0x0193_a3c0_0000_7000, 0x8000_0000_0000_0000 | n)
    }

    /// An event of `north`, its id numbered `n`.
    pub(crate) fn event(n: u64, subject: String, event_type: &str, data: Value) -> Submission {
        let event = json!({"specversion": "1.0",
            "id": Uuid::from_u64_pair(0x0193_a3c0_0000_7000, 0x9000_0000_0000_0000 | n),
            "source": "urn:service:test", "type": event_type, "subject": subject,
            "time": "2025-03-03T09:00:00Z", "partnership": "north", "data": data});
        Submission::from_json(event.to_string().into_bytes(), "test", Caller::operator())
    }

    /// The partnership and three jobseekers, each with `profile` (sealed
    /// when it is committed) if one is given.
    pub(crate) fn history(profile: Option<Value>) -> Vec<Submission> {
        let mut events = vec![event(
            0,
            "partnership/north".into(),
            "jobrotation.partnership.registered",
            json!({"name": "North", "areas": ["E06000021"], "members": []}),
        )];
        events.extend((1..=3).map(|n| {
            let mut data = json!({"role": "jobseeker", "unemployed_since": "2024-06-01",
                "benefit": "universal_credit"});
            if let Some(profile) = &profile {
                data["profile"] = profile.clone();
            }
            event(
                n,
                format!("person/{}", person(n)),
                "jobrotation.participant.registered",
                data,
            )
        }));
        events
    }
}
