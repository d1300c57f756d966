//! The append path: the one way anything enters the log, and the reads
//! bounded by what is durable.
//!
//! HTTP, NATS, `import`, the demo and the benchmarks all hand
//! [`Submission`]s to [`Ledger::submit`]. A single writer thread owns every
//! write: it takes all submissions waiting, checks each (shape, time,
//! permission, idempotency, then the domain rules), stages the accepted
//! events and the rejections in one sled batch, and hands the batch to the
//! flusher thread, which flushes once and only then answers. Concurrent
//! writers therefore share flushes (group commit), and nothing is
//! acknowledged before it is durable.
//!
//! Readers see only what has been flushed: every read is bounded by the
//! durable head that the flusher publishes after each flush.
//!
//! The files, in the order an event meets them:
//! - `submission`: what a publisher handed in, parsed and framed on the
//!   caller's thread;
//! - `writer`: the single writer thread: idempotency, rules, the sled batch;
//! - `ids`: the in-memory id index behind idempotency;
//! - `states`: the stream states changed since the last snapshot, in
//!   memory, and their rebuilding from the tail on opening;
//! - `flusher`: the flusher thread: one flush for every group waiting, then
//!   the answers and the new durable head;
//! - `receipt`: the answers (receipts, outcomes) and the kept rejections;
//! - `recent`: the last events made durable, in memory;
//! - `reader`: every read, and the one [`Follower`] of the durable head;
//! - `tree`: the Merkle tree's stored nodes (written with the events) and
//!   the ledger's id, checked or built on opening; roots and proofs;
//! - `wraps`: the stored data keys as the keyring reads them, on first use.
//!
//! The store stays behind this front door: nothing outside the ledger
//! writes to it, and other modules keep their checkpoints through
//! [`Ledger::checkpoint`] and [`Ledger::save_checkpoint`].

mod backup;
mod erasure;
mod flusher;
mod group;
mod head_record;
mod health;
#[cfg(feature = "test-hooks")]
mod hooks;
mod ids;
mod reader;
mod receipt;
mod recent;
mod reseal;
mod restore;
mod sealing;
mod states;
mod stats;
mod submission;
mod tree;
mod wraps;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::AppendMetrics;
use crate::personal::{Keyring, MasterKeyFile, Recovery};
use crate::store::Store;

pub use crate::store::{Head, StoreError};
pub use backup::{BackupError, BackupReport, outside_key_files};
pub use erasure::{EraseError, Erasure, LEDGER_SOURCE, RETENTION_REASON};
pub use group::{Apply, Gate, KeySink};
pub use head_record::{HEAD_FILE, HeadRecord};
pub use health::{ChainCheck, HealthReport};
#[cfg(feature = "test-hooks")]
pub use hooks::{IdEntry, head_record, write_head_record};
pub use reader::{FollowedEvent, Follower};
pub use receipt::{Outcome, Receipt, ReceiptStatus, RejectionRecord};
pub use reseal::{Provenance, RESEALED_FROM, ResealError};
pub use restore::{Restore, RestoreError};
pub use states::{SNAPSHOT_EVENTS, SNAPSHOT_PERIOD, SNAPSHOT_STREAMS};
pub use stats::Stats;
pub use submission::Submission;
pub use tree::{InclusionProof, ProofError, STORED_FROM_LEVEL};

use recent::{Recent, TAIL_BYTES};
use writer::Writer;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("the store cannot write at the moment; the ledger retries it")]
    WriterStopped,
    #[error("the ledger is shutting down")]
    Closed,
    #[error("the chain is broken at position {position} ({problem}): the ledger refuses writes")]
    ChainBroken { position: u64, problem: String },
    /// A group's follower was asked to write, or the writer lost its lease
    /// before the group's stream stored what it had committed (which was
    /// therefore never acknowledged).
    #[error("this node is not the group's writer")]
    NotWriter,
    /// A group's writer could not store a new data key in the group's key
    /// bucket: nothing sealed under it was committed.
    #[error("the group's key bucket did not take a data key: {0}")]
    KeysNotShared(String),
}

/// What the writer has made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    pub head: Head,
    /// The next rejection sequence number: every one below it is durable.
    pub next_rejection: u64,
}

/// Tunables of the append path.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// The most events one group commit takes before it flushes.
    pub max_group_events: usize,
    /// sled's page cache. The working set of a serving ledger (rule state,
    /// recent events) fits well within the default; a one-pass reader such
    /// as `export` gains nothing from a large one.
    pub cache_bytes: u64,
    /// The master key's file (`[keys] master_key_file`); `None` for
    /// `keys/master.key` in the data directory.
    pub master_key_file: Option<std::path::PathBuf>,
    /// How many events may follow the last snapshot of the stream states
    /// before the next is stored: what opening replays at most.
    pub snapshot_events: u64,
    /// Whether the id index (idempotency's, in memory) starts loading as
    /// soon as the ledger opens, on a thread of its own, rather than when
    /// the first submission comes: for a ledger that serves writes. Tools
    /// that only read leave it off and never load the index.
    pub preload_ids: bool,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            max_group_events: 20_000,
            cache_bytes: 512 * 1024 * 1024,
            master_key_file: None,
            snapshot_events: SNAPSHOT_EVENTS,
            preload_ids: true,
        }
    }
}

impl LedgerOptions {
    /// For tools that read the log once from end to end.
    pub fn one_pass() -> Self {
        Self {
            cache_bytes: 32 * 1024 * 1024,
            preload_ids: false,
            ..Self::default()
        }
    }
}

/// What the append path keeps up besides the log itself. Every ledger
/// keeps all of it; only the bench switches a part off, on a store of its
/// own, to measure what that part costs in the same run. Neither the
/// command line nor the configuration can reach it, and a store written
/// without its tree does not open again (its stored tree would not match
/// the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upkeep {
    /// The Merkle tree's nodes, written with the events they cover.
    pub(crate) tree: bool,
    /// Profiles sealed before commit.
    pub(crate) sealing: bool,
}

impl Upkeep {
    /// What every ledger keeps up.
    pub(crate) const ALL: Self = Self {
        tree: true,
        sealing: true,
    };
}

type Reply = oneshot::Sender<Result<Vec<Outcome>, LedgerError>>;

/// Submissions on their way to the writer, with where to answer.
struct Request {
    submissions: Vec<Submission>,
    reply: Reply,
    /// A rotation of the master key to commit with the submissions (an
    /// erasure's): the re-wrapped keys and the destroyed ones' deletions.
    rotation: Option<crate::personal::Rotation>,
}

/// A handle on an open ledger; clones share it.
#[derive(Clone, Debug)]
pub struct Ledger {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    requests: mpsc::Sender<Request>,
    durable: watch::Receiver<Durable>,
    /// The last events made durable, for readers that follow the head.
    recent: Arc<Recent>,
    /// Counts every answer of [`Ledger::submit`], whichever transport asked.
    metrics: AppendMetrics,
    /// Every person's data key, shared by the submitters' threads (which
    /// seal), the writer (which commits new keys) and the readers (which
    /// open).
    keyring: Arc<Keyring>,
    /// Where the master key lives, for the rotations of erasure.
    master_key_file: MasterKeyFile,
    /// Whether submissions are sealed: always, but in the bench.
    sealing: bool,
    /// Erasures one at a time: each rotates the master key. A tokio mutex:
    /// it is held across the commit's await.
    erasures: tokio::sync::Mutex<()>,
    /// Every submission holds it shared until answered; a backup holds it
    /// alone, so that nothing is committed while the store is copied. A
    /// tokio lock, held across the commit's await, and fair: a waiting
    /// backup lets no new submission pass it.
    commits: tokio::sync::RwLock<()>,
    /// The data directory, whose key files a backup copies.
    dir: std::path::PathBuf,
    /// The chain's verification and the store's failures.
    health: Arc<health::Health>,
    /// The stream states changed since the last snapshot, kept by the
    /// writer.
    states: Arc<states::States>,
    /// The writer thread, joined by [`Ledger::close`]. A std mutex: it is
    /// taken once, never across an await.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Who may write, and how far the group's stream has stored the log
    /// (see `group`). A watch: answers waiting for the stream wake on it.
    gate: watch::Sender<group::GateState>,
    /// Where a group's writer sends new data keys (see `group`). A std
    /// lock: only cloned out, never held across an await.
    key_sink: std::sync::RwLock<Option<Arc<dyn KeySink>>>,
    /// The line submissions keep while a group's writer sends their new
    /// keys out: a fair lock, taken at a submission's first poll and
    /// released once it is queued at the writer, so that a submission
    /// waiting for the key bucket is not overtaken by a later one (a
    /// registration by the events that depend on it).
    line: tokio::sync::Mutex<()>,
}

impl Ledger {
    /// Opens the ledger in `dir` and starts its writer. Start-up reads the
    /// head and replays the events after the last snapshot of the stream
    /// states (at most [`LedgerOptions::snapshot_events`]), whatever the
    /// log's length.
    pub fn open(dir: &Path, options: LedgerOptions) -> Result<Self, StoreError> {
        Self::open_keeping(dir, options, Upkeep::ALL)
    }

    /// [`Ledger::open`] keeping up only what `upkeep` says: for the bench.
    pub(crate) fn open_keeping(
        dir: &Path,
        options: LedgerOptions,
        upkeep: Upkeep,
    ) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        let store = Store::open(dir, options.cache_bytes)?;
        let t_store = started.elapsed();
        let master_key_file = options
            .master_key_file
            .clone()
            .map_or_else(|| MasterKeyFile::in_data_dir(dir), MasterKeyFile::new);
        let keyring = Arc::new(open_keyring(&store, &master_key_file)?);
        let t_keys = started.elapsed();
        let durable = Durable {
            head: store.head()?,
            next_rejection: store.next_rejection()?,
        };
        let head_file = head_record::HeadFile::in_data_dir(dir);
        head_file.check(&store, &durable)?;
        let t_head = started.elapsed();
        let rebuilt = states::rebuild(&store)?;
        let states = Arc::new(states::States::default());
        states.replace(rebuilt.states);
        let t_states = started.elapsed();
        let frontier = tree::open(&store, durable.head.position)?;
        // What each step of opening took, cumulative: each must stay flat
        // with the log (the states' replay is bounded by a snapshot).
        tracing::debug!(
            head = durable.head.position,
            tail = rebuilt.tail,
            store = ?t_store,
            keys = ?t_keys,
            head_check = ?t_head,
            states = ?t_states,
            tree = ?started.elapsed(),
            "ledger opened"
        );
        let (durable_tx, durable_rx) = watch::channel(durable.clone());
        let (requests, rx) = mpsc::channel(1024);
        let writer = Writer::new(
            store.clone(),
            options,
            durable,
            upkeep.tree.then_some(frontier),
            Arc::clone(&keyring),
            head_file,
        );
        let recent = Arc::new(Recent::new(TAIL_BYTES));
        let tail = Arc::clone(&recent);
        let health = Arc::new(health::Health::default());
        let writer = writer
            .with_health(Arc::clone(&health))
            .with_states(Arc::clone(&states), rebuilt.tail);
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn({
                let wake = requests.downgrade();
                move || writer.run(rx, durable_tx, tail, wake)
            })
            .map_err(|e| StoreError::Corrupt {
                key: "writer".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                store,
                requests,
                durable: durable_rx,
                recent,
                metrics: AppendMetrics::default(),
                keyring,
                master_key_file,
                sealing: upkeep.sealing,
                erasures: tokio::sync::Mutex::new(()),
                commits: tokio::sync::RwLock::new(()),
                dir: dir.to_path_buf(),
                health,
                states,
                writer: Mutex::new(Some(handle)),
                gate: watch::Sender::new(group::GateState::SINGLE),
                key_sink: std::sync::RwLock::new(None),
                line: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Appends submissions, each all-or-nothing, and answers once they are
    /// durable (committed or durably rejected).
    pub async fn submit(
        &self,
        mut submissions: Vec<Submission>,
    ) -> Result<Vec<Outcome>, LedgerError> {
        // A follower seals nothing: a data key made here would shadow the
        // one the writer makes for the same person, which the follower
        // must install from the group's bucket when the event applies.
        if self.gate() == Gate::Follower {
            return Err(LedgerError::NotWriter);
        }
        // Sealing happens here, on the submitter's thread, so that the
        // writer only commits.
        for submission in submissions.iter_mut().filter(|_| self.shared.sealing) {
            submission
                .seal(&self.shared.keyring)
                .map_err(|e| LedgerError::Storage(e.into()))?;
        }
        let line = match self.key_sink() {
            Some(_) => Some(self.shared.line.lock().await),
            None => None,
        };
        self.share_new_keys(&submissions).await?;
        self.submit_sealed_in_line(submissions, None, line).await
    }

    /// Hands sealed submissions (and a rotation, for an erasure) to the
    /// writer and waits for their durable answers, and in a group for the
    /// stream to store them (see `group`).
    async fn submit_sealed(
        &self,
        submissions: Vec<Submission>,
        rotation: Option<crate::personal::Rotation>,
    ) -> Result<Vec<Outcome>, LedgerError> {
        self.submit_sealed_in_line(submissions, rotation, None)
            .await
    }

    /// As [`Ledger::submit_sealed`], letting the submissions behind in
    /// `line` go once these are queued at the writer.
    async fn submit_sealed_in_line(
        &self,
        submissions: Vec<Submission>,
        rotation: Option<crate::personal::Rotation>,
        line: Option<tokio::sync::MutexGuard<'_, ()>>,
    ) -> Result<Vec<Outcome>, LedgerError> {
        let fenced = self.admits()?;
        let started = std::time::Instant::now();
        let (outcomes, head) = self.commit_in_line(submissions, rotation, line).await?;
        if let Some(fenced) = fenced {
            self.replicated_to(head, fenced).await?;
        }
        self.shared.metrics.record(&outcomes, started.elapsed());
        Ok(outcomes)
    }

    /// Hands sealed submissions to the writer, whatever the gate, and
    /// waits for their durable answers: with them, the durable head they
    /// were answered at.
    async fn commit_sealed(
        &self,
        submissions: Vec<Submission>,
        rotation: Option<crate::personal::Rotation>,
    ) -> Result<(Vec<Outcome>, u64), LedgerError> {
        self.commit_in_line(submissions, rotation, None).await
    }

    /// As [`Ledger::commit_sealed`], letting the submissions behind in
    /// `line` go once these are queued at the writer.
    async fn commit_in_line(
        &self,
        submissions: Vec<Submission>,
        rotation: Option<crate::personal::Rotation>,
        line: Option<tokio::sync::MutexGuard<'_, ()>>,
    ) -> Result<(Vec<Outcome>, u64), LedgerError> {
        self.shared.health.check_writable()?;
        let _commits = self.shared.commits.read().await;
        let (reply, answer) = oneshot::channel();
        self.shared
            .requests
            .send(Request {
                submissions,
                reply,
                rotation,
            })
            .await
            .map_err(|_| LedgerError::Closed)?;
        drop(line);
        let outcomes = answer.await.map_err(|_| LedgerError::Closed)??;
        // The flusher publishes the head before it answers, so this head
        // covers every event of the answer (and any duplicate's original).
        Ok((outcomes, self.shared.durable.borrow().head.position))
    }

    pub async fn submit_one(&self, submission: Submission) -> Result<Outcome, LedgerError> {
        let mut outcomes = self.submit(vec![submission]).await?;
        outcomes.pop().ok_or(LedgerError::Closed)
    }

    /// The append path's counters, for `GET /metrics`.
    pub fn metrics(&self) -> &AppendMetrics {
        &self.shared.metrics
    }

    /// Every person's data key, for readers that open profiles.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.shared.keyring
    }

    /// The durable head.
    pub fn head(&self) -> Head {
        self.shared.durable.borrow().head.clone()
    }

    /// Watches the durable state; changes after every flush.
    pub fn subscribe(&self) -> watch::Receiver<Durable> {
        self.shared.durable.clone()
    }

    /// The store, for the crate's own readers and the benchmarks; nothing
    /// outside the crate reaches it.
    pub(crate) fn store(&self) -> &Store {
        &self.shared.store
    }

    /// A checkpoint that another module keeps with the log (the
    /// dashboards', the outbox's cursor), by name.
    pub fn checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .shared
            .store
            .checkpoint(name)?
            .map(|bytes| bytes.to_vec()))
    }

    /// Writes a checkpoint by name. With `durable`, it returns only once
    /// the checkpoint is flushed (blocking); without, the next flush of
    /// the log (or sled's own, within half a second) makes it durable.
    /// Checkpoints are never part of the log: they only save work.
    pub fn save_checkpoint(
        &self,
        name: &str,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut commit = crate::store::Commit::default();
        commit.checkpoint(name, bytes);
        self.shared.store.apply(commit)?;
        if durable {
            self.shared.store.flush()?;
        }
        Ok(())
    }

    /// Makes everything written so far durable, checkpoints included.
    /// Blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.shared.store.flush()
    }

    /// Whether another process holds the store in `dir` open (a running
    /// `serve`), so that opening it here would fail on its lock.
    pub fn held_elsewhere(dir: &Path) -> bool {
        crate::store::held_elsewhere(dir)
    }

    /// The data directory the ledger was opened in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.shared.store.size_on_disk()
    }

    /// Stops accepting submissions, lets the writer finish what it holds,
    /// and waits for it when this is the last handle; otherwise the writer
    /// lives on for the other handles.
    pub fn close(self) {
        if let Ok(shared) = Arc::try_unwrap(self.shared) {
            let Shared {
                requests, writer, ..
            } = shared;
            drop(requests);
            if let Some(handle) = writer.into_inner().ok().flatten() {
                let _ = handle.join();
            }
        }
    }
}

/// Opens the master key (made on first start, refused when missing over
/// sealed data) over the stored data keys, which are read on first use,
/// and finishes or abandons a rotation that a crash interrupted.
fn open_keyring(store: &Store, file: &MasterKeyFile) -> Result<Keyring, StoreError> {
    let keys = file.open(store.holds_sealed()?)?;
    let (keyring, recovery) = Keyring::load(keys, wraps::StoredWraps(store.clone()))?;
    match recovery {
        Recovery::Ready => {}
        Recovery::AbandonRotation => file.abandon_rotation()?,
        Recovery::FinishRotation(rewrapped) => {
            let mut commit = crate::store::Commit::default();
            for record in &rewrapped {
                commit.wrapped_key(record.person, record);
            }
            store.apply(commit)?;
            store.flush()?;
            file.finish_rotation()?;
        }
    }
    Ok(keyring)
}
