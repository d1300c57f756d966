//! The projection runner: keeps the board dashboards
//! ([`rotation_projections::dashboard::Dashboards`]) up to date with the
//! log, serves them from memory, and checkpoints them so that a restart
//! does not replay the whole log.
//!
//! # How it runs
//!
//! One task follows the ledger's durable head ([`Ledger::subscribe`]). When
//! the head moves it reads the new events, up to that durable head, on a
//! blocking thread (a long catch-up decodes on other threads meanwhile,
//! through the ledger's reader, [`Ledger::read_typed_after`]) and applies them in chunks of
//! [`CHUNK`] under the write lock of the served state, so that a reader
//! waits at most for one chunk, never for a whole catch-up. Only this task
//! writes the state.
//!
//! Reads ([`Projector::dashboard`]) answer the JSON of a partnership's
//! dashboard from a cache keyed by the state's *generation*, a counter
//! bumped with every applied chunk: each partnership's JSON (raw or
//! protected) is computed at most once per chunk, on the first read after
//! it, and every later read is a clone of the same bytes.
//!
//! # Checkpoints
//!
//! The state is written to the store as checkpoint [`CHECKPOINT`], in one
//! atomic commit followed by a flush on the blocking thread: a 4-byte
//! big-endian [`Dashboards::VERSION`], the 8-byte big-endian log position
//! it reflects, then the state's JSON. The position is never beyond the
//! durable head (the projector reads only durable events), so after a crash
//! the projector loads the checkpoint and catches up from its position, and
//! the result equals a fold of the whole log from position 1.
//!
//! Writing a checkpoint costs time in proportion to the state (over a
//! second for the state of a million events), while what it saves is the
//! replay of the events applied since the last one. So a checkpoint is
//! written, never sooner than [`ProjectorOptions::checkpoint_interval`]
//! after the last, once replaying the unsaved events would take ten times
//! as long as the last checkpoint took to write (judged by the time the
//! fold has spent per event), or once the last checkpoint is
//! [`ProjectorOptions::checkpoint_max_age`] old. Checkpoints thus take at
//! most about a tenth of the fold's time during a long catch-up, and
//! little when events trickle in. Shutdown writes a last one.
//!
//! A checkpoint written under another [`Dashboards::VERSION`] means other
//! facts or figures: the state is then rebuilt from position 1 aside,
//! while the old state (if it still decodes) is served, and swapped in
//! once the rebuild has reached the head.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rotation_events::TypedEvent;
use rotation_projections::dashboard::Dashboards;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::Ledger;
use crate::ledger::StoreError;

/// The name of the dashboards' checkpoint in the store.
pub const CHECKPOINT: &str = "dashboards";

/// Events applied under one hold of the write lock: small enough that a
/// reader never waits long, large enough that the lock is not the cost.
pub const CHUNK: usize = 512;

/// Tunables of the projector.
#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// The shortest time between two checkpoints.
    pub checkpoint_interval: Duration,
    /// The longest a checkpoint is left behind while something is unsaved.
    pub checkpoint_max_age: Duration,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_secs(5),
            checkpoint_max_age: Duration::from_secs(300),
        }
    }
}

/// How many times its own cost the replay a checkpoint saves must be worth.
const CHECKPOINT_PAYBACK: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("the projector's worker stopped: {0}")]
    Worker(String),
}

/// Which form of a dashboard a reader wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DashboardView {
    /// Disclosure control applied: what a board may see.
    Protected,
    /// Every count exact: for the operator.
    Raw,
}

impl DashboardView {
    fn slot(self) -> usize {
        match self {
            Self::Protected => 0,
            Self::Raw => 1,
        }
    }
}

/// The answer to a dashboard read.
#[derive(Debug, Clone, PartialEq)]
pub enum DashboardRead {
    /// The dashboard's JSON.
    Found(Bytes),
    /// The partnership has had no event.
    Unknown,
    /// The partnership is not known yet, but the projector has not caught
    /// up with the log since it started, so it may be soon.
    CatchingUp,
}

/// Where the projector stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The last log position the served dashboards reflect.
    pub position: u64,
    /// Whether the served dashboards have reached the log's head once since
    /// start (or are an older version's state kept until a rebuild is done).
    pub live: bool,
    /// Whether a rebuild under a new [`Dashboards::VERSION`] is running aside.
    pub rebuilding: bool,
    /// The checkpointed position the projector started from (0 = none).
    pub resumed_from: u64,
}

/// A handle on the running projector, for reads; clones share it.
#[derive(Debug, Clone)]
pub struct Projector {
    inner: Arc<Inner>,
}

/// The projector's task; [`ProjectorTask::join`] waits for its last
/// checkpoint after shutdown.
#[derive(Debug)]
pub struct ProjectorTask {
    handle: JoinHandle<Result<(), ProjectorError>>,
}

impl ProjectorTask {
    /// Waits for the task to end (it ends when the shutdown token it was
    /// started with is cancelled, after writing a last checkpoint).
    pub async fn join(self) -> Result<(), ProjectorError> {
        self.handle
            .await
            .map_err(|e| ProjectorError::Worker(e.to_string()))?
    }
}

#[derive(Debug)]
struct Inner {
    ledger: Ledger,
    /// For the limits the flags are judged under and for disclosure control.
    config: Arc<Config>,
    /// The served state. A std lock, not a tokio one: it is held only for
    /// one chunk's apply or one dashboard's computation, never across an
    /// await.
    served: RwLock<Served>,
    /// The served state's generation, readable without its lock so that a
    /// cache hit takes no lock but the cache's.
    generation: AtomicU64,
    /// Partnership to the JSON of each view and the generation it was
    /// computed at. Only partnerships that exist are cached, so it is
    /// bounded by their number.
    cache: Mutex<HashMap<String, [Option<Cached>; 2]>>,
    progress: watch::Sender<Progress>,
}

/// A dashboard's JSON and the generation of the state it was computed from.
type Cached = (u64, Bytes);

#[derive(Debug)]
struct Served {
    dashboards: Dashboards,
    generation: u64,
}

impl Projector {
    /// Loads the checkpoint (or starts empty), starts following the log,
    /// and returns the read handle and the task. The task writes a last
    /// checkpoint and ends when `shutdown` is cancelled.
    pub async fn start(
        ledger: Ledger,
        config: Arc<Config>,
        options: ProjectorOptions,
        shutdown: CancellationToken,
    ) -> Result<(Self, ProjectorTask), ProjectorError> {
        let loaded = {
            let ledger = ledger.clone();
            let config = Arc::clone(&config);
            tokio::task::spawn_blocking(move || load(&ledger, &config))
                .await
                .map_err(|e| ProjectorError::Worker(e.to_string()))??
        };
        let head = ledger.head().position;
        let served_position = loaded.served.position();
        let progress = Progress {
            position: served_position,
            live: loaded.aside.is_some() || served_position >= head,
            rebuilding: loaded.aside.is_some(),
            resumed_from: loaded.resumed_from,
        };
        let inner = Arc::new(Inner {
            ledger,
            config,
            served: RwLock::new(Served {
                dashboards: loaded.served,
                generation: 1,
            }),
            generation: AtomicU64::new(1),
            cache: Mutex::new(HashMap::new()),
            progress: watch::Sender::new(progress),
        });
        let worker = Worker {
            inner: Arc::clone(&inner),
            aside: loaded.aside,
            saved: loaded.resumed_from,
            saved_at: Instant::now(),
            last_cost: Duration::ZERO,
            fold_time: Duration::ZERO,
            folded: 0,
            options,
        };
        let handle = tokio::spawn(run(worker, shutdown));
        Ok((Self { inner }, ProjectorTask { handle }))
    }

    /// A partnership's dashboard as JSON.
    pub fn dashboard(&self, partnership: &str, view: DashboardView) -> DashboardRead {
        let inner = &self.inner;
        let generation = inner.generation.load(Ordering::Acquire);
        if let Some(bytes) = inner.cached(partnership, view, generation) {
            return DashboardRead::Found(bytes);
        }
        // One hold of the read lock, so that the JSON is of the generation
        // it is cached under.
        let (generation, json) = {
            let served = inner.served.read().unwrap_or_else(PoisonError::into_inner);
            let limits = inner.config.limits(partnership);
            let dashboards = &served.dashboards;
            let json = match view {
                DashboardView::Raw => dashboards
                    .dashboard(partnership, &limits)
                    .map(|d| serde_json::to_vec(&d)),
                DashboardView::Protected => dashboards
                    .board(partnership)
                    .map(|b| serde_json::to_vec(&b)),
            };
            (served.generation, json)
        };
        let Some(json) = json else {
            return if inner.progress.borrow().live {
                DashboardRead::Unknown
            } else {
                DashboardRead::CatchingUp
            };
        };
        let json = json.expect("a dashboard always serialises");
        let bytes = Bytes::from(json);
        let mut cache = inner.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut cache.entry(partnership.to_owned()).or_default()[view.slot()];
        if slot.as_ref().is_none_or(|(cached, _)| *cached < generation) {
            *slot = Some((generation, bytes.clone()));
        }
        DashboardRead::Found(bytes)
    }

    /// The partnerships the served dashboards know, in order.
    pub fn partnerships(&self) -> Vec<String> {
        self.inner
            .served
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .dashboards
            .partnerships()
    }

    /// A copy of the served state, e.g. to compare it with a fresh fold.
    pub fn snapshot(&self) -> Dashboards {
        self.inner
            .served
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .dashboards
            .clone()
    }

    pub fn progress(&self) -> Progress {
        *self.inner.progress.borrow()
    }

    /// Waits until the served dashboards reflect `position` under the
    /// current [`Dashboards::VERSION`].
    pub async fn wait_for(&self, position: u64) {
        let mut progress = self.inner.progress.subscribe();
        // The sender lives in `self.inner`, so the wait cannot fail.
        let _ = progress
            .wait_for(|p| p.position >= position && !p.rebuilding)
            .await;
    }

    /// Drops every cached dashboard, so that the next reads compute them
    /// afresh: for measuring the uncached read path.
    #[doc(hidden)]
    pub fn forget_cache(&self) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Inner {
    fn cached(&self, partnership: &str, view: DashboardView, generation: u64) -> Option<Bytes> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match &cache.get(partnership)?[view.slot()] {
            Some((cached, bytes)) if *cached == generation => Some(bytes.clone()),
            _ => None,
        }
    }
}

/// What start-up found in the store.
struct Loaded {
    /// The state to serve at once.
    served: Dashboards,
    /// A fresh state to rebuild aside, when the checkpoint is of another
    /// version but still decodes.
    aside: Option<Dashboards>,
    /// The position of a usable checkpoint of the current version.
    resumed_from: u64,
}

/// Reads the checkpoint and decides how to start.
fn load(ledger: &Ledger, config: &Config) -> Result<Loaded, ProjectorError> {
    let fresh = Loaded {
        served: fresh_dashboards(config),
        aside: None,
        resumed_from: 0,
    };
    let Some(bytes) = ledger.checkpoint(CHECKPOINT)? else {
        return Ok(fresh);
    };
    let Some((version, position, json)) = decode_header(&bytes) else {
        tracing::warn!("the dashboards' checkpoint is unreadable: rebuilding from the log");
        return Ok(fresh);
    };
    let head = ledger.head().position;
    if position > head {
        tracing::warn!(
            position,
            head,
            "the dashboards' checkpoint is ahead of the log: rebuilding from the log"
        );
        return Ok(fresh);
    }
    let state: Result<Dashboards, _> = serde_json::from_slice(json);
    match state {
        Ok(mut state)
            if version == Dashboards::VERSION
                && state.position() == position
                && state.same_control(&fresh.served) =>
        {
            control(&mut state, config);
            tracing::info!(position, "dashboards resumed from their checkpoint");
            restore_profiles(ledger, &mut state)?;
            Ok(Loaded {
                served: state,
                aside: None,
                resumed_from: position,
            })
        }
        Ok(state) => {
            tracing::info!(
                checkpoint_version = version,
                version = Dashboards::VERSION,
                "the dashboards' definitions changed: rebuilding aside, serving the old figures until then"
            );
            Ok(Loaded {
                served: state,
                aside: Some(fresh_dashboards(config)),
                resumed_from: 0,
            })
        }
        Err(error) => {
            tracing::warn!(%error, checkpoint_version = version, "the dashboards' checkpoint does not decode: rebuilding from the log");
            Ok(fresh)
        }
    }
}

/// A fold made under the configuration's disclosure control and the
/// ledger's record-key secret.
pub fn fresh_dashboards(config: &Config) -> Dashboards {
    let mut dashboards = Dashboards::new();
    control(&mut dashboards, config);
    dashboards
}

/// Sets the configuration's disclosure control, scheme-rule limits and
/// the ledger's secret on a fold.
fn control(dashboards: &mut Dashboards, config: &Config) {
    dashboards.set_limits(config.partnerships.clone());
    // Without a ledger's secret (a test, the bench) the defaults are what
    // a plain fold has, so that the two compare equal.
    if config.record_key.0.is_empty() && config.disclosure == Default::default() {
        return;
    }
    if let Err(error) = dashboards.set_disclosure(&config.disclosure, secret_of(config)) {
        tracing::error!(%error, "disclosure control cannot be set: the boards use the defaults");
    }
}

/// The record-key secret's bytes; a fold outside a served ledger (a test,
/// the bench) has none and gets the public one.
fn secret_of(config: &Config) -> &[u8] {
    if config.record_key.0.is_empty() {
        b"rotation-ledger public test secret"
    } else {
        &config.record_key.0
    }
}

/// Opens again, in memory, the profiles of the registrations a checkpoint
/// holds without them (contract section 9: a checkpoint holds nothing
/// derived from a profile).
fn restore_profiles(ledger: &Ledger, dashboards: &mut Dashboards) -> Result<(), StoreError> {
    let keyring = ledger.keyring();
    for position in dashboards.registrations() {
        let Some(event) = ledger.store().event(position)? else {
            continue;
        };
        let Ok(data) = event.envelope.data() else {
            continue;
        };
        if let Some(profile) = crate::personal::profile_of(keyring, &event, &data) {
            dashboards.restore_profile(&event, &profile);
        }
    }
    Ok(())
}

/// The checkpoint's bytes: version, position, then the state's JSON.
pub fn encode_checkpoint(dashboards: &Dashboards) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 << 16);
    bytes.extend_from_slice(&Dashboards::VERSION.to_be_bytes());
    bytes.extend_from_slice(&dashboards.position().to_be_bytes());
    serde_json::to_writer(&mut bytes, dashboards).expect("the dashboards always serialise");
    bytes
}

fn decode_header(bytes: &[u8]) -> Option<(u32, u64, &[u8])> {
    let version = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let position = u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
    Some((version, position, bytes.get(12..)?))
}

/// Writes a checkpoint of `dashboards` and makes it durable. Blocking.
fn write_checkpoint(ledger: &Ledger, dashboards: &Dashboards) -> Result<(), StoreError> {
    ledger.save_checkpoint(CHECKPOINT, &encode_checkpoint(dashboards), true)
}

/// Folds the whole log into fresh dashboards, telling `on_progress` the
/// position reached and the head every chunk. Blocking.
pub fn fold(
    ledger: &Ledger,
    config: &Config,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<Dashboards, StoreError> {
    let head = ledger.head().position;
    let mut dashboards = fresh_dashboards(config);
    for_each_chunk(ledger, 0, |chunk| {
        for event in chunk {
            dashboards.apply_typed(event);
        }
        on_progress(dashboards.position(), head);
        Ok::<_, StoreError>(true)
    })?;
    Ok(dashboards)
}

/// `rotation-ledger rebuild`: folds the whole log afresh and writes the
/// checkpoint. Returns the position the checkpoint reflects. Blocking; the
/// ledger must not be served meanwhile (the store's lock sees to that).
pub fn rebuild(
    ledger: &Ledger,
    config: &Config,
    on_progress: impl FnMut(u64, u64),
) -> Result<u64, StoreError> {
    let dashboards = fold(ledger, config, on_progress)?;
    write_checkpoint(ledger, &dashboards)?;
    Ok(dashboards.position())
}

fn read_chunk(
    events: &mut impl Iterator<Item = Result<TypedEvent, StoreError>>,
) -> Result<Vec<TypedEvent>, StoreError> {
    events.take(CHUNK).collect()
}

/// Hands the durable events after `after` to `apply` in chunks, in
/// position order, until the head as it is now or until `apply` answers
/// `false`. The ledger's reader decides where the events come from; a long
/// read decodes on other threads while `apply` folds, so that catching up
/// costs about the larger of decoding and folding rather than their sum.
/// Blocking.
fn for_each_chunk<E: From<StoreError>>(
    ledger: &Ledger,
    after: u64,
    mut apply: impl FnMut(Vec<TypedEvent>) -> Result<bool, E>,
) -> Result<(), E> {
    let mut events = ledger.read_typed_after(after);
    let keyring = ledger.keyring();
    loop {
        // Profiles are opened here, in memory, as the fold takes them.
        let chunk: Vec<TypedEvent> = read_chunk(&mut events)?
            .into_iter()
            .map(|typed| crate::personal::open_typed(keyring, typed))
            .collect();
        if chunk.is_empty() || !apply(chunk)? {
            // Dropping a replay stops its threads.
            return Ok(());
        }
    }
}

/// The task's own state, moved to a blocking thread for each step.
struct Worker {
    inner: Arc<Inner>,
    /// A rebuild under a new version, folded aside until it reaches the head.
    aside: Option<Dashboards>,
    /// The position of the last checkpoint written or loaded.
    saved: u64,
    saved_at: Instant,
    /// How long the last checkpoint took to write (zero before the first).
    last_cost: Duration,
    /// Time spent applying events, and how many, to judge what replaying
    /// the unsaved ones would cost.
    fold_time: Duration,
    folded: u64,
    options: ProjectorOptions,
}

impl Worker {
    /// The position of the state being folded.
    fn position(&self) -> u64 {
        match &self.aside {
            Some(aside) => aside.position(),
            None => self.inner.progress.borrow().position,
        }
    }

    fn checkpoint_due(&self) -> bool {
        self.next_checkpoint()
            .is_some_and(|due| Instant::now() >= due)
    }

    /// When the next checkpoint falls due, if anything is unsaved: after
    /// the interval if it would already pay for itself, else at the
    /// latest age (or sooner, when more events arrive: the projector asks
    /// again after every chunk).
    fn next_checkpoint(&self) -> Option<Instant> {
        let unsaved = self.position().saturating_sub(self.saved);
        if unsaved == 0 {
            return None;
        }
        let replay = if self.folded == 0 {
            Duration::ZERO
        } else {
            self.fold_time.mul_f64(unsaved as f64 / self.folded as f64)
        };
        Some(self.saved_at + checkpoint_wait(replay, self.last_cost, &self.options))
    }

    /// Applies what the log holds beyond the state, checkpointing on the
    /// way when one is due. Blocking.
    fn catch_up(&mut self, shutdown: &CancellationToken) -> Result<(), ProjectorError> {
        let ledger = self.inner.ledger.clone();
        for_each_chunk(&ledger, self.position(), |chunk| {
            self.apply(chunk);
            if self.checkpoint_due() {
                self.checkpoint()?;
            }
            Ok::<_, ProjectorError>(!shutdown.is_cancelled())
        })?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if let Some(aside) = self.aside.take() {
            self.swap_in(aside);
            self.checkpoint()?;
        } else {
            self.inner.progress.send_if_modified(|p| {
                let changed = !p.live;
                p.live = true;
                changed
            });
        }
        Ok(())
    }

    fn apply(&mut self, chunk: Vec<TypedEvent>) {
        let started = Instant::now();
        let count = chunk.len() as u64;
        self.apply_chunk(chunk);
        self.fold_time += started.elapsed();
        self.folded += count;
    }

    fn apply_chunk(&mut self, chunk: Vec<TypedEvent>) {
        if let Some(aside) = &mut self.aside {
            for event in chunk {
                aside.apply_typed(event);
            }
            return;
        }
        let position = {
            let mut served = self
                .inner
                .served
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for event in chunk {
                served.dashboards.apply_typed(event);
            }
            served.generation += 1;
            self.inner
                .generation
                .store(served.generation, Ordering::Release);
            served.dashboards.position()
        };
        self.inner.progress.send_modify(|p| p.position = position);
    }

    /// Serves a finished rebuild.
    fn swap_in(&mut self, rebuilt: Dashboards) {
        let position = rebuilt.position();
        {
            let mut served = self
                .inner
                .served
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            served.dashboards = rebuilt;
            served.generation += 1;
            self.inner
                .generation
                .store(served.generation, Ordering::Release);
        }
        tracing::info!(position, "dashboards rebuilt under the new definitions");
        self.inner.progress.send_modify(|p| {
            p.position = position;
            p.live = true;
            p.rebuilding = false;
        });
    }

    /// Writes the state being folded as the checkpoint. Blocking.
    fn checkpoint(&mut self) -> Result<(), ProjectorError> {
        let started = Instant::now();
        let position = match &self.aside {
            Some(aside) => {
                write_checkpoint(&self.inner.ledger, aside)?;
                aside.position()
            }
            None => {
                // Only this worker writes the served state, so holding the
                // read lock while writing blocks no one.
                let served = self
                    .inner
                    .served
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                write_checkpoint(&self.inner.ledger, &served.dashboards)?;
                served.dashboards.position()
            }
        };
        let cost = started.elapsed();
        self.saved = position;
        self.saved_at = Instant::now();
        self.last_cost = cost;
        tracing::debug!(position, ?cost, "dashboards checkpointed");
        Ok(())
    }
}

/// How long after the last checkpoint the next one falls due, given what
/// replaying the unsaved events would cost and what the last checkpoint
/// cost to write.
fn checkpoint_wait(replay: Duration, last_cost: Duration, options: &ProjectorOptions) -> Duration {
    if replay >= last_cost * CHECKPOINT_PAYBACK {
        options.checkpoint_interval
    } else {
        options.checkpoint_max_age.max(options.checkpoint_interval)
    }
}

/// Runs a blocking step of the worker on a blocking thread and hands the
/// worker back.
async fn blocking<T: Send + 'static>(
    mut worker: Worker,
    step: impl FnOnce(&mut Worker) -> T + Send + 'static,
) -> Result<(Worker, T), ProjectorError> {
    tokio::task::spawn_blocking(move || {
        let out = step(&mut worker);
        (worker, out)
    })
    .await
    .map_err(|e| ProjectorError::Worker(e.to_string()))
}

/// The projector's task: follows the durable head until `shutdown`, then
/// writes a last checkpoint.
async fn run(mut worker: Worker, shutdown: CancellationToken) -> Result<(), ProjectorError> {
    let mut durable = worker.inner.ledger.subscribe();
    loop {
        let head = durable.borrow_and_update().head.position;
        // A rebuild aside is swapped in by a catch-up, even one with
        // nothing left to read.
        if head > worker.position() || worker.aside.is_some() {
            let token = shutdown.clone();
            let (back, result) = blocking(worker, move |w| w.catch_up(&token)).await?;
            worker = back;
            if let Err(error) = result {
                tracing::error!(%error, "the dashboards cannot follow the log; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        } else if worker.checkpoint_due() {
            let (back, result) = blocking(worker, Worker::checkpoint).await?;
            worker = back;
            if let Err(error) = result {
                tracing::error!(%error, "cannot checkpoint the dashboards");
            }
        }
        let next_checkpoint = worker.next_checkpoint();
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = durable.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = sleep_until(next_checkpoint), if next_checkpoint.is_some() => {}
        }
    }
    if worker.position() > worker.saved {
        let (_, result) = blocking(worker, Worker::checkpoint).await?;
        result?;
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(replay_ms: u64, last_cost_ms: u64, expected_s: u64) {
        let options = ProjectorOptions {
            checkpoint_interval: Duration::from_secs(5),
            checkpoint_max_age: Duration::from_secs(300),
        };
        let wait = checkpoint_wait(
            Duration::from_millis(replay_ms),
            Duration::from_millis(last_cost_ms),
            &options,
        );
        assert_eq!(
            wait,
            Duration::from_secs(expected_s),
            "replay {replay_ms} ms, last checkpoint {last_cost_ms} ms"
        );
    }

    #[test]
    fn a_checkpoint_waits_until_it_pays_for_itself_or_grows_old() {
        // The first checkpoint: nothing is known of its cost.
        check(0, 0, 5);
        check(1, 0, 5);
        // A cheap checkpoint is written as often as the interval allows.
        check(50, 5, 5);
        // A costly one waits until the replay it saves is worth ten of it,
        check(1_700, 1_700, 300);
        check(16_999, 1_700, 300);
        check(17_000, 1_700, 5);
        // and never longer than the age limit.
        check(0, 60_000, 300);
    }
}
