//! NATS: durable ingest from `rotation.in.<partnership>`, request-reply on
//! `rotation.append`, receipts, and gap-free publication of committed events
//! and rejections (contract section 4). The only module that knows NATS.
//!
//! Map of the module:
//! - [`ingest`]: the durable pull consumer on `ROTATION_IN` and the
//!   `rotation.append` responder. Both hand what they receive to
//!   [`Ledger::submit`] and answer (ack, reply, receipt) only after it
//!   returned, that is after the ledger's flush.
//! - [`checkpoints`]: publication of each signed checkpoint to
//!   `ROTATION_CHECKPOINTS`, for witnesses.
//! - [`restore`]: the published log read back into an empty ledger.
//! - [`outbox`]: publication of the durable log to `ROTATION_LEDGER` and of
//!   the durable rejections to `ROTATION_REJECTED`, each from its own cursor
//!   kept in the store.
//!
//! Every loop here survives NATS outages: async-nats reconnects by itself,
//! and each loop that sees an error starts over after a growing pause
//! instead of exiting. Nothing is lost meanwhile: unacknowledged messages
//! stay in `ROTATION_IN`, and the outboxes resume from their cursors.
//!
//! Shutdown runs in one order: the ingest loops stop fetching, finish the
//! submissions they hold and acknowledge them; then the outboxes get
//! [`SHUTDOWN_GRACE`] to publish what those submissions committed, persist
//! their cursors and return.

mod checkpoints;
pub mod group;
pub(crate) mod inbound;
pub(crate) mod ingest;
mod outbox;
mod restore;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;

pub use checkpoints::publish_checkpoints;
pub use restore::{RestoreFromNatsError, restore};

/// How to reach NATS and under which prefix. The command line's `--nats*`
/// flags fill it in the binary; without a URL the ledger runs without NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// The NATS server, e.g. `nats://127.0.0.1:4222` (several separated by
    /// commas).
    pub url: Option<String>,
    /// A NATS credentials file (user JWT and NKey seed), as `nsc` writes them.
    pub nats_creds: Option<PathBuf>,
    /// A file holding the NKey seed (`SU...`) to authenticate with.
    pub nats_nkey: Option<PathBuf>,
    /// The NATS user name; used only together with a password.
    pub nats_user: Option<String>,
    /// The NATS password; used only together with a user name.
    pub nats_password: Option<String>,
    /// A NATS authentication token.
    pub nats_token: Option<String>,
    /// PEM file of the certificate authorities to trust for the server's
    /// certificate.
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM file of the client certificate, for servers that verify clients;
    /// used only together with its key.
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub nats_tls_key: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    pub nats_require_tls: bool,
    /// The first token of every subject (`<prefix>.in.>`, ...) and,
    /// upper-cased, of every stream name (`<PREFIX>_IN`, ...): lets several
    /// ledgers share one NATS account.
    pub nats_prefix: String,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            url: None,
            nats_creds: None,
            nats_nkey: None,
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            nats_require_tls: false,
            nats_prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl NatsOptions {
    /// Options for one server URL and nothing else.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }
}

/// The contract's subject prefix.
pub const DEFAULT_PREFIX: &str = "rotation";

/// How long the outboxes may keep publishing after the ingest has stopped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long JetStream remembers a `Nats-Msg-Id` on `ROTATION_IN` when the
/// server cannot go without deduplication (before nats-server 2.14): as
/// little as it allows. The ledger's idempotency is permanent, so the
/// inbound stream needs none of its own, and a window swallows a
/// conflicting re-publication of an id as a "duplicate" before the ledger
/// can reject it (contract section 4). The stream is made with it and then
/// goes without any window where the server allows (see [`inbound`]).
pub const IN_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);

/// How long JetStream remembers a `Nats-Msg-Id` on the ledger's own streams.
/// The outbox re-publishes at most what it had in flight or had not yet
/// recorded in its cursor (a few thousand events, published within the
/// last seconds) when it was interrupted; a restart within the window finds
/// them deduplicated. Beyond it, the start-up reconciliation (see
/// [`outbox`]) keeps the streams free of duplicates anyway.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Why the NATS side could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("--nats-prefix `{0}` is not one subject token of a-z, 0-9, - and _")]
    Prefix(String),
    #[error("cannot read {what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

/// The subjects and stream names, all derived from one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
    streams: String,
    /// Replicas of the streams this ledger makes; 0 leaves it to the
    /// server (one). A group's (`--replicas`).
    replicas: usize,
    /// What names this ledger's rejections in `ROTATION_REJECTED` among
    /// other ledgers': a group node's name and store (see
    /// [`outbox::rejection_origin`]). `None` for a single ledger, the only
    /// publisher of its rejections.
    rejection_origin: Option<String>,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Result<Self, NatsError> {
        let valid = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(NatsError::Prefix(prefix.to_owned()));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            streams: prefix.to_ascii_uppercase().replace('-', "_"),
            replicas: 0,
            rejection_origin: None,
        })
    }

    /// The same names, for streams made with `replicas`.
    pub(crate) fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// The same names, for the rejections of the ledger `origin` names.
    pub(crate) fn with_rejection_origin(mut self, origin: String) -> Self {
        self.rejection_origin = Some(origin);
        self
    }

    /// The `Nats-Msg-Id` of this ledger's rejection `seq`:
    /// `rejection-<seq>` for a single ledger (contract), and
    /// `rejection-<origin>-<seq>` for a group node, whose sequence numbers
    /// are its own and would otherwise meet another node's in the
    /// stream's duplicate window.
    fn rejection_id(&self, seq: u64) -> String {
        match &self.rejection_origin {
            Some(origin) => format!("rejection-{origin}-{seq}"),
            None => format!("rejection-{seq}"),
        }
    }

    /// The sequence number of a rejection this ledger published, from its
    /// `Nats-Msg-Id`; `None` for another ledger's.
    fn rejection_seq(&self, msg_id: &str) -> Option<u64> {
        let rest = msg_id.strip_prefix("rejection-")?;
        let seq = match &self.rejection_origin {
            Some(origin) => rest.strip_prefix(origin.as_str())?.strip_prefix('-')?,
            None => rest,
        };
        // Digits only: `u64::from_str` would take a leading `+` too.
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        seq.parse().ok()
    }

    /// The first token of every subject.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn stream(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.streams)
    }

    pub(crate) fn in_stream(&self) -> String {
        self.stream("IN")
    }

    pub(crate) fn in_subjects(&self) -> String {
        format!("{}.in.>", self.prefix)
    }

    /// The partnership an inbound subject names: its third token.
    fn partnership_of<'s>(&self, subject: &'s str) -> &'s str {
        subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix(".in."))
            .and_then(|rest| rest.split('.').next())
            .unwrap_or("")
    }

    pub(crate) fn append(&self) -> String {
        format!("{}.append", self.prefix)
    }

    fn receipts(&self, partnership: &str) -> String {
        format!("{}.receipts.{}", self.prefix, routable(partnership))
    }

    pub(crate) fn ledger_stream(&self) -> String {
        self.stream("LEDGER")
    }

    pub(crate) fn ledger_subjects(&self) -> String {
        format!("{}.ledger.>", self.prefix)
    }

    /// Made for every published event: concatenated, not formatted.
    fn ledger_subject(&self, partnership: &str, noun_verb: &str) -> String {
        let partnership = routable(partnership);
        let mut subject = String::with_capacity(
            self.prefix.len() + partnership.len() + noun_verb.len() + ".ledger..".len(),
        );
        for part in [&self.prefix, ".ledger.", partnership, ".", noun_verb] {
            subject.push_str(part);
        }
        subject
    }

    pub(crate) fn rejected_stream(&self) -> String {
        self.stream("REJECTED")
    }

    fn rejected_subjects(&self) -> String {
        format!("{}.rejected.>", self.prefix)
    }

    fn rejected_subject(&self, partnership: Option<&str>) -> String {
        format!(
            "{}.rejected.{}",
            self.prefix,
            routable(partnership.unwrap_or(""))
        )
    }

    /// The inbound stream: kept without age limit while the ledger is
    /// away, and purged by the ledger of what it has answered (see
    /// `ingest`). Limits retention, not a work queue: a work queue admits
    /// only a consumer that acks each message, and an ack for every message
    /// cost JetStream about a quarter of its work for the ledger.
    pub(crate) fn in_config(&self) -> stream::Config {
        stream::Config {
            name: self.in_stream(),
            description: Some("CloudEvents published to the rotation ledger".into()),
            subjects: vec![self.in_subjects()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: IN_DUPLICATE_WINDOW,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// The published log: kept for ever, and neither messages nor the
    /// whole may be deleted, as the log itself.
    pub(crate) fn ledger_config(&self) -> stream::Config {
        stream::Config {
            name: self.ledger_stream(),
            description: Some(
                "Every committed event of the rotation ledger, in position order".into(),
            ),
            subjects: vec![self.ledger_subjects()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    fn rejected_config(&self) -> stream::Config {
        stream::Config {
            name: self.rejected_stream(),
            description: Some("Submissions the rotation ledger rejected, as received".into()),
            subjects: vec![self.rejected_subjects()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            deny_delete: true,
            allow_direct: true,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// A partnership as a subject token: a valid slug, or `_unknown`, so that a
/// malformed partnership never makes an invalid or wildcard subject.
fn routable(partnership: &str) -> &str {
    if rotation_events::check_slug(partnership).is_ok() {
        partnership
    } else {
        "_unknown"
    }
}

/// A pause that doubles after each failure, from 100 ms up to 5 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// Waits the next pause; false when `stop` came first.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
        }
    }
}

/// Runs the NATS side of the ledger until `shutdown` is cancelled. Returns
/// at once when no URL is given.
pub async fn run(
    ledger: Ledger,
    options: NatsOptions,
    shutdown: CancellationToken,
) -> Result<(), NatsError> {
    let Some(url) = options.url.clone() else {
        return Ok(());
    };
    let names = Arc::new(Names::new(&options.nats_prefix)?);
    let (interruptions, interrupted) = watch::channel(0);
    let client = connect(&options, &url, Link::Ingest(interruptions)).await?;
    let js = jetstream::new(client.clone());
    // The outboxes publish on a connection of their own: their messages do
    // not queue behind the ingest's acks and receipts, and nats-server
    // reads the two connections in parallel.
    let publisher = connect(&options, &url, Link::Outbox).await?;
    let outbox_js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        // Both outboxes keep up to `outbox::WINDOW` publishes in flight;
        // room for both, so that neither ever waits on the other's acks.
        .max_ack_inflight(4 * outbox::WINDOW)
        .backpressure_on_inflight(true)
        .build(publisher.clone());
    tracing::info!(%url, prefix = %options.nats_prefix, "NATS: ingest, append and outboxes starting");

    let drain = CancellationToken::new();
    let consume = tokio::spawn(ingest::consume(
        ledger.clone(),
        js.clone(),
        Arc::clone(&names),
        interrupted,
        shutdown.clone(),
    ));
    let append = tokio::spawn(ingest::serve_append(
        ledger.clone(),
        client.clone(),
        Arc::clone(&names),
        shutdown.clone(),
    ));
    let events = tokio::spawn(outbox::run(
        outbox::Feed::Events,
        ledger.clone(),
        outbox_js.clone(),
        Arc::clone(&names),
        drain.clone(),
    ));
    let rejections = tokio::spawn(outbox::run(
        outbox::Feed::Rejections,
        ledger,
        outbox_js,
        names,
        drain.clone(),
    ));

    shutdown.cancelled().await;
    for (name, task) in [("ingest", consume), ("append", append)] {
        if let Err(error) = task.await {
            tracing::error!(%error, "NATS {name} task failed");
        }
    }
    // Only now: what the ingest committed while stopping is published too.
    drain.cancel();
    for (name, task) in [("ledger outbox", events), ("rejection outbox", rejections)] {
        if let Err(error) = task.await {
            tracing::error!(%error, "NATS {name} task failed");
        }
    }
    if let Err(error) = client.flush().await {
        tracing::warn!(%error, "NATS: could not flush the last receipts");
    }
    if let Err(error) = publisher.flush().await {
        tracing::warn!(%error, "NATS: could not flush the last publishes");
    }
    tracing::info!("NATS stopped");
    Ok(())
}

/// The ledger's two connections.
#[derive(Debug)]
enum Link {
    /// The ingest's, with the count of the moments messages may have been
    /// lost in transit: disconnections, and subscriptions that fell behind.
    Ingest(watch::Sender<u64>),
    /// The outboxes'.
    Outbox,
}

/// Connects with the options given. The connection is made in the
/// background and retried for ever, so that the ledger starts (and serves
/// HTTP) while NATS is still down; every loop waits for it by retrying.
async fn connect(
    settings: &NatsOptions,
    url: &str,
    link: Link,
) -> Result<async_nats::Client, NatsError> {
    let readable = |what: &'static str, path: &PathBuf| {
        std::fs::metadata(path)
            .map(|_| ())
            .map_err(|source| NatsError::File {
                what,
                path: path.clone(),
                source,
            })
    };
    let (name, waiting, interruptions) = match link {
        Link::Ingest(interruptions) => ("rotation-ledger", "ingest waits", Some(interruptions)),
        Link::Outbox => ("rotation-ledger-outbox", "publication waits", None),
    };
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        // async-nats logs every event itself; these add what they mean
        // for the ledger.
        .event_callback(move |event| {
            let interruptions = interruptions.clone();
            async move {
                let interrupted = || {
                    if let Some(interruptions) = &interruptions {
                        interruptions.send_modify(|n| *n += 1);
                    }
                };
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected: {waiting}, nothing is lost");
                        interrupted();
                    }
                    async_nats::Event::SlowConsumer(sid) => {
                        tracing::warn!(sid, "NATS: a subscription fell behind");
                        interrupted();
                    }
                    _ => {}
                }
            }
        });
    if let Some(path) = &settings.nats_creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| NatsError::File {
                what: "the NATS credentials file",
                path: path.clone(),
                source,
            })?;
    }
    if let Some(path) = &settings.nats_nkey {
        let seed = std::fs::read_to_string(path).map_err(|source| NatsError::File {
            what: "the NKey seed file",
            path: path.clone(),
            source,
        })?;
        options = options.nkey(seed.trim().to_owned());
    }
    if let (Some(user), Some(password)) = (&settings.nats_user, &settings.nats_password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &settings.nats_token {
        options = options.token(token.clone());
    }
    if let Some(path) = &settings.nats_tls_ca {
        readable("the CA file", path)?;
        options = options.add_root_certificates(path.clone());
    }
    if let (Some(cert), Some(key)) = (&settings.nats_tls_cert, &settings.nats_tls_key) {
        readable("the client certificate", cert)?;
        readable("the client key", key)?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if settings.nats_require_tls {
        options = options.require_tls(true);
    }
    let addresses: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            NatsError::Connect(async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::ServerParse,
                e,
            ))
        })?;
    Ok(options.connect(addresses).await?)
}
