//! `rotation-ledger bench`: every speed goal measured beside its baseline,
//! the same work done raw, in the same run on the same data.
//!
//! | figure | ledger | baseline |
//! |---|---|---|
//! | `append_batched` | atomic batches of 1,000 through the append path, 4 in flight (events made before the clock starts) | the same committed events through a raw group-commit log on the same store code: the same keys per event (chunks of 4, an id run, a state key per stream touched, the head), batches of 1,000 with 4 in flight, one flush for whatever is applied |
//! | `append_batched_no_tree` | `append_batched` on a ledger of its own that keeps no Merkle tree (bench only), in the same turns; `ratio_fall` is how much lower `append_batched`'s ratio is, the median of the turns' differences | the same raw run as `append_batched`'s in each turn |
//! | `append_batched_no_sealing` | the same, on a ledger that seals no profile (bench only) | the same |
//! | `prove` | inclusion proofs of random positions against the head's size, through the call behind `GET /v1/proofs/inclusion` (`p99_ms` too) | as many stored tree nodes read straight from the store as each proof holds hashes (`baseline_p99_ms`) |
//! | `append_single` | single-event submissions from 64 concurrent writers | the same committed events submitted one by one by 64 concurrent tasks to the raw log, whose writer groups what is waiting |
//! | `replay` | read and decode the whole log | the raw log's copy read and decoded by the same reader and decoder |
//! | `projection_catchup` | the whole log folded into the dashboards from position 0, as a first start or `rebuild` does | the same log read and decoded by the same typed decoder on the same threads, not folded |
//! | `nats_ingest` | events published to `rotation.in.<p>` with `Nats-Msg-Id` until committed and acked (`--nats URL`; `p99_ms`: publication lag, commit to arrival on `rotation.ledger.>`; `p99_at_per_s` the publishing rate measured in those runs) | a JetStream pull consumer that only acks the same messages; the two take turns, baseline first and last, each ledger run paired with the baseline run after it |
//! | `dashboard_read` | an uncached read of a board's view, assembled from the tables' last releases (`p99_ms` too): the bench log's partnership, whose referrals fill every month of the board's window at any `--events` | `serde_json::to_vec` of the same JSON value |
//! | `startup` | opening the ledger on the log (and the first write answered) | opening the raw log's store on the same events and reading its head |
//! | `import` | a simulated history imported through all the rules into a fresh ledger, closed, in 3 turns | `append_batched`'s ledger side appending as many events to a fresh ledger, closed, in the same turns |
//! | `export` | the evaluation dataset, by a child process | `replay`'s ledger side |
//! | `group_append` | atomic batches of 1,000 through the writer of a three-node ledger group on a throwaway three-server JetStream cluster of its own (`--group`), each answered once the replicated stream stored it; `p99_ms`: an acknowledged single append | the same batches to a single ledger (no group) in the same run, in turns; `baseline_p99_ms`: its single append |
//! | `erase` | erasures on a log of `--erase-people` people with profiles (100,000 by default), each durable: `person.erased` and every remaining data key re-wrapped under a new master key, one batch | the same number of key records written raw, one sled batch and flush an erasure |
//!
//! Every figure with a raw baseline is measured in interleaved pairs (see
//! [`pairs`]): `per_s` and `baseline_per_s` are each side's median and
//! `ratio` the median of the pairs' ratios, with `ratio_spread` their
//! lowest and highest. The raw log is built beside the ledger's whatever
//! `--only` chooses, so that no baseline runs on a missing or empty log.
//!
//! The log is built by `append_batched` itself, so every later figure runs
//! on a log of `--events` events.
//!
//! Map of the module: this file holds the runner, its options and the
//! report; then one file per topic:
//! - [`append`]: `append_batched` (and its variants without the tree or
//!   sealing) and `append_single`.
//! - [`prove`]: `prove`, the inclusion proofs.
//! - [`read`]: `replay`, `startup`, `projection_catchup` and `dashboard_read`.
//! - [`export`]: `import` and `export`, on a simulated history.
//! - [`nats`]: `nats_ingest`, against a nats-server.
//! - [`group`]: `group_append`, on a ledger group of its own.
//! - [`raw`]: the raw log, the ledger's storage work without its logic.
//! - [`pairs`]: interleaved runs and the median of their ratios.
//! - [`synthetic`]: the cheap valid events the append figures submit.
//! - [`steal`]: the CPU steal share measured beside every figure.

/// Returns a [`BenchError::Check`] with the formatted message from the
/// enclosing function unless `condition` holds: a figure measured on
/// events the ledger refused, or on a log it did not read whole, would be
/// a wrong figure.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err($crate::bench::BenchError::Check(format!($($message)+)));
        }
    };
}

mod append;
mod erase;
mod export;
mod group;
pub mod nats;
mod pairs;
#[cfg(feature = "peers")]
mod peers;
mod prove;
mod raw;
mod read;
mod steal;
mod synthetic;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::import::ImportError;
use crate::ledger::{Ledger, LedgerError, LedgerOptions, StoreError, Upkeep};
use crate::nats::NatsError;
use crate::projector::ProjectorError;
use steal::StealMeter;
pub use synthetic::Synthetic;

/// What to measure and on how much; the command line's `bench` flags fill
/// it in the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Events in the log the figures are measured on.
    pub events: u64,
    /// Single-event submissions for `append_single`.
    pub single: u64,
    /// Concurrent writers for `append_single`.
    pub writers: u64,
    /// Where to build the logs; a temporary directory when `None`.
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    pub json: bool,
    /// Jobseekers in the simulated history that `import` and `export` are
    /// measured on (about 28 events each).
    pub export_jobseekers: u32,
    /// People (each with a profile) on the log that `erase` is measured on.
    pub erase_people: u64,
    /// A nats-server to measure `nats_ingest` on (streams of its own,
    /// deleted afterwards); without it `nats_ingest` is not measured.
    pub nats: Option<String>,
    /// Events for `nats_ingest`; by default `events`, at most 200,000.
    pub nats_events: Option<u64>,
    /// Measure the PostgreSQL peer on a throwaway server of its own
    /// (`postgres_*` figures; needs the `peers` feature).
    pub peers: bool,
    /// Measure the PostgreSQL peer on this existing server instead (a
    /// `tokio-postgres` connection string or URL); it works in a schema of
    /// its own and drops it afterwards.
    pub postgres: Option<String>,
    /// Measure `group_append` on a three-node ledger group with a
    /// three-server JetStream cluster of its own.
    pub group: bool,
    /// The nats-server binary `group_append` starts; by default the first
    /// on `PATH`, or the one under `ROTATION_TOOLS`.
    pub nats_server: Option<PathBuf>,
    /// Measure only these figures (names from [`FIGURES`]); all when empty.
    /// The log is built by `append_batched` whatever is chosen.
    pub only: Vec<String>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            events: 1_000_000,
            single: 50_000,
            writers: 64,
            dir: None,
            json: false,
            export_jobseekers: 100_000,
            erase_people: erase::PEOPLE,
            nats: None,
            nats_events: None,
            peers: false,
            postgres: None,
            group: false,
            nats_server: None,
            only: Vec::new(),
        }
    }
}

/// Why a bench run stopped before its report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Projector(#[from] ProjectorError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The bench's ledger group failed.
    #[error(transparent)]
    Group(#[from] crate::nats::group::GroupError),
    /// A JetStream request of `nats_ingest` or its baseline failed.
    #[error("NATS: cannot {what}: {source}")]
    NatsRequest {
        what: String,
        source: async_nats::Error,
    },
    /// The raw sled baselines' own database failed.
    #[error("the raw sled baseline failed: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("cannot make a temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("a bench task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The PostgreSQL peer failed.
    #[cfg(feature = "peers")]
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The throwaway PostgreSQL server could not be started.
    #[error("the throwaway PostgreSQL server: {0}")]
    PostgresServer(String),
    /// What was measured is not what was meant: events refused, a log not
    /// read whole, a child process failed.
    #[error("{0}")]
    Check(String),
}

/// The bench's results.
type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Every figure's name, in the order they are measured.
pub const FIGURES: [&str; 18] = [
    "append_batched",
    "append_batched_no_tree",
    "append_batched_no_sealing",
    "prove",
    "append_single",
    "replay",
    "projection_catchup",
    "dashboard_read",
    "startup",
    "import",
    "export",
    "nats_ingest",
    "group_append",
    "erase",
    "postgres_append_batched",
    "postgres_append_single",
    "postgres_replay",
    "postgres_stream_read",
];

impl BenchOptions {
    /// Whether `figure` is to be measured.
    fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }
}

/// One figure beside its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The ledger's rate: the median over its runs.
    pub per_s: f64,
    /// The baseline's rate: the median over its runs.
    pub baseline_per_s: f64,
    /// The median of the pairs' ratios (ledger run over the baseline run
    /// that followed it), or the one ratio of a figure not measured in pairs.
    pub ratio: f64,
    /// The lowest and highest ratio of the pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_spread: Option<[f64; 2]>,
    /// How many pairs of runs the ratio is the median of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<usize>,
    /// For latency figures: the 99th percentile of one operation, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// For latency figures against a peer: the peer's 99th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_p99_ms: Option<f64>,
    /// For a latency measured at a set load: that load, events/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_at_per_s: Option<f64>,
    /// For whole runs (start-up, export): how long one took, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// For export: the peak resident memory of the exporting process, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_mib: Option<f64>,
    /// For export: seconds per million events on half the log over the
    /// same on the whole log; 1.0 is exactly linear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linearity: Option<f64>,
    /// For start-up: seconds from opening until the first write is
    /// answered (the writer loads the id index first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_write_s: Option<f64>,
    /// The share of the machine's CPU time a hypervisor took while the
    /// figure and its baseline were measured (steal), in %: figures from a
    /// shared virtual machine are comparable only at similar steal. None
    /// where the system does not say (`/proc/stat`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steal_pct: Option<f64>,
    /// For a figure measured without a part of the append path: how much
    /// lower `append_batched`'s ratio is with that part, the median of the
    /// turns' differences (each turn's two ratios share one raw run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_fall: Option<f64>,
    /// What was counted, for the table.
    #[serde(skip)]
    pub unit: &'static str,
}

impl Figure {
    /// A figure of `per_s` beside `baseline_per_s`, in events/s.
    pub(crate) fn rates(per_s: f64, baseline_per_s: f64) -> Self {
        Self {
            per_s,
            baseline_per_s,
            ratio: per_s / baseline_per_s,
            ratio_spread: None,
            pairs: None,
            p99_ms: None,
            baseline_p99_ms: None,
            p99_at_per_s: None,
            seconds: None,
            peak_mib: None,
            linearity: None,
            first_write_s: None,
            steal_pct: None,
            ratio_fall: None,
            unit: "events/s",
        }
    }

    /// This figure, with the steal `meter` saw since it started.
    fn stolen(mut self, meter: &StealMeter) -> Self {
        self.steal_pct = meter.percent();
        self
    }
}

/// Events in each atomic batch of `append_batched` and its baseline.
const BATCH: usize = 1_000;

/// The variants of `append_batched`: a ledger keeping up everything but one
/// part of the append path.
const UPKEEP_VARIANTS: [(&str, Upkeep); 2] = [
    (
        "append_batched_no_tree",
        Upkeep {
            tree: false,
            sealing: true,
        },
    ),
    (
        "append_batched_no_sealing",
        Upkeep {
            tree: true,
            sealing: false,
        },
    ),
];

pub async fn run(options: BenchOptions) -> Result<()> {
    ensure!(
        options.group || !options.only.iter().any(|f| f == "group_append"),
        "group_append is measured on a ledger group of the bench's own: add --group"
    );
    let temp;
    let root = match &options.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().map_err(BenchError::TempDir)?;
            temp.path().to_path_buf()
        }
    };
    let mut figures: Vec<(&'static str, Figure)> = Vec::new();
    let ledger_dir = root.join("ledger");
    let raw_dir = root.join("raw");
    let _ = std::fs::remove_dir_all(&ledger_dir);
    let _ = std::fs::remove_dir_all(&raw_dir);
    let ledger = Ledger::open(&ledger_dir, LedgerOptions::default())?;
    // The raw log is built beside the ledger's whatever is chosen: the
    // baselines of the read figures and of start-up read it.
    let raw = std::sync::Arc::new(raw::RawLog::open(&raw_dir)?);
    let mut states = std::collections::HashMap::new();

    let meter = StealMeter::start();
    progress(
        &options,
        &format!(
            "append_batched: {} events in batches of {BATCH}, in {} turns with the raw log",
            options.events,
            append::TURNS
        ),
    );
    // The variants keep up less than a ledger does, each in a store of its
    // own, so that one run shows what the tree and sealing cost.
    let mut variants = Vec::new();
    for (name, upkeep) in UPKEEP_VARIANTS {
        if options.wants(name) {
            let dir = root.join(name);
            let _ = std::fs::remove_dir_all(&dir);
            let ledger = Ledger::open_keeping(&dir, LedgerOptions::default(), upkeep)?;
            variants.push((name, ledger));
        }
    }
    let others: Vec<Ledger> = variants.iter().map(|(_, l)| l.clone()).collect();
    let appended =
        append::append_batched(&ledger, &others, &raw, options.events, &mut states).await?;
    drop(others);
    let batched = Figure::paired(&appended.pairs).stolen(&meter);
    if options.wants("append_batched") {
        figures.push(("append_batched", batched));
    }
    for ((name, variant), pairs) in variants.into_iter().zip(&appended.variants) {
        variant.close();
        let _ = std::fs::remove_dir_all(root.join(name));
        let mut figure = Figure::paired(pairs).stolen(&meter);
        figure.ratio_fall = Some(pairs::median(
            pairs
                .iter()
                .zip(&appended.pairs)
                .map(|(without, with)| without.ours / without.baseline - with.ours / with.baseline)
                .collect(),
        ));
        figures.push((name, figure));
    }

    if options.wants("prove") {
        progress(
            &options,
            &format!(
                "prove: {} inclusion proofs at {} events, in {} turns with raw node reads",
                prove::PROOFS * prove::TURNS,
                ledger.head().position,
                prove::TURNS
            ),
        );
        let meter = StealMeter::start();
        let proving = ledger.clone();
        let figure = tokio::task::spawn_blocking(move || prove::prove(&proving)).await??;
        figures.push(("prove", figure.stolen(&meter)));
    }

    if options.wants("append_single") {
        let meter = StealMeter::start();
        progress(
            &options,
            &format!(
                "append_single: {} single events from {} writers, in {} turns with the raw log",
                options.single,
                options.writers,
                append::TURNS
            ),
        );
        let pairs = append::append_single(&options, &ledger, &raw, &mut states).await?;
        figures.push(("append_single", Figure::paired(&pairs).stolen(&meter)));
    }

    let mut replay_per_s = None;
    if options.wants("replay") || options.wants("export") {
        progress(&options, "replay: the whole log");
        let meter = StealMeter::start();
        let replay = read::replay(&ledger, raw.store()).await?.stolen(&meter);
        replay_per_s = Some(replay.per_s);
        figures.push(("replay", replay));
    }
    drop(states);
    drop(raw);

    if options.wants("projection_catchup") || options.wants("dashboard_read") {
        progress(
            &options,
            "projection_catchup: the dashboards from position 0",
        );
        let meter = StealMeter::start();
        let (catchup, read) = read::dashboards(&ledger).await?;
        if options.wants("projection_catchup") {
            figures.push(("projection_catchup", catchup.stolen(&meter)));
        }
        if options.wants("dashboard_read") {
            progress(&options, "dashboard_read: the dashboard read path");
            figures.push(("dashboard_read", read.stolen(&meter)));
        }
    }

    ledger.close();

    if options.wants("startup") {
        progress(&options, "startup: reopening the ledger on that log");
        let meter = StealMeter::start();
        let startup = read::startup(&ledger_dir, &raw_dir).await?.stolen(&meter);
        figures.push(("startup", startup));
    }

    if options.wants("import") || options.wants("export") {
        progress(
            &options,
            &format!(
                "import: a simulated history of {} jobseekers, in turns with append_batched on as many events",
                options.export_jobseekers
            ),
        );
        let meter = StealMeter::start();
        let (import, events) = export::import_history(&root, options.export_jobseekers).await?;
        figures.push(("import", import.stolen(&meter)));
        if options.wants("export") {
            progress(
                &options,
                &format!("export: the evaluation dataset of {events} events"),
            );
            let replay = replay_per_s.unwrap_or(f64::NAN);
            let meter = StealMeter::start();
            let export = export::export_dataset(&root, events, replay)?.stolen(&meter);
            figures.push(("export", export));
        }
    }

    if options.wants("erase") {
        progress(
            &options,
            &format!(
                "erase: erasures on a log of {} people",
                options.erase_people
            ),
        );
        let meter = StealMeter::start();
        let figure = erase::erase(&root, options.erase_people, erase::ERASURES)
            .await?
            .stolen(&meter);
        figures.push(("erase", figure));
    }

    if let Some(url) = options
        .nats
        .as_ref()
        .filter(|_| options.wants("nats_ingest"))
    {
        let events = options.nats_events.unwrap_or(options.events.min(200_000));
        progress(
            &options,
            &format!("nats_ingest: {events} events through {url}"),
        );
        let meter = StealMeter::start();
        let measured = nats::ingest(url, events, &root).await?;
        let rates = |runs: &[Duration]| {
            runs.iter()
                .map(|took| format!("{:.0}", events as f64 / took.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let lags = measured
            .lag_p99_each
            .iter()
            .map(|p99| format!("{:.1}", p99.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ");
        progress(
            &options,
            &format!(
                "nats_ingest: ledger {} events/s; baseline {} events/s (in turns, baseline first); lag p99 {lags} ms at a measured {:.0} events/s; each ratio pairs a ledger run with the baseline run after it",
                rates(&measured.took),
                rates(&measured.baseline_took),
                measured.lag_load,
            ),
        );
        let mut figure = Figure::paired(&measured.pairs()).stolen(&meter);
        figure.p99_ms = Some(measured.lag_p99.as_secs_f64() * 1e3);
        figure.p99_at_per_s = Some(measured.lag_load);
        figures.push(("nats_ingest", figure));
    }
    if options.group && options.wants("group_append") {
        let events = options.events.min(200_000);
        let server = group::nats_server(options.nats_server.as_deref())?;
        progress(
            &options,
            &format!(
                "group_append: {events} events in batches of {BATCH} through a three-node group on {}, in {} turns with a single ledger; then {} single appends on each",
                server.display(),
                append::TURNS,
                group::SINGLES
            ),
        );
        let meter = StealMeter::start();
        let measured = group::group_append(&server, events, &root).await?;
        let mut figure = Figure::paired(&measured.pairs).stolen(&meter);
        figure.p99_ms = Some(measured.p99.as_secs_f64() * 1e3);
        figure.baseline_p99_ms = Some(measured.baseline_p99.as_secs_f64() * 1e3);
        figures.push(("group_append", figure));
    }
    if options.peers || options.postgres.is_some() {
        let meter = StealMeter::start();
        let peers = peer_figures(&options, &root).await?;
        figures.extend(peers.into_iter().map(|(name, f)| (name, f.stolen(&meter))));
    }
    report(&options, &figures)
}

/// The `postgres_*` figures, when the binary was built with the peer.
#[cfg(feature = "peers")]
async fn peer_figures(
    options: &BenchOptions,
    root: &std::path::Path,
) -> Result<Vec<(&'static str, Figure)>> {
    peers::figures(options, root).await
}

/// Without the `peers` feature there is no PostgreSQL client to measure with.
#[cfg(not(feature = "peers"))]
async fn peer_figures(
    _: &BenchOptions,
    _: &std::path::Path,
) -> Result<Vec<(&'static str, Figure)>> {
    Err(BenchError::Check(
        "this binary was built without the PostgreSQL peer: build it with `cargo build --release --features peers` to use `bench --peers` or `bench --postgres URL`".to_owned(),
    ))
}

fn progress(options: &BenchOptions, message: &str) {
    if !options.json {
        eprintln!("bench: {message}");
    }
}

fn report(options: &BenchOptions, figures: &[(&'static str, Figure)]) -> Result<()> {
    if options.json {
        let object: serde_json::Map<String, serde_json::Value> = figures
            .iter()
            .map(|(name, figure)| Ok(((*name).to_owned(), serde_json::to_value(figure)?)))
            .collect::<Result<_>>()?;
        println!("{}", serde_json::Value::Object(object));
    } else {
        println!(
            "{:<26} {:>14} {:>14} {:>7}",
            "figure", "per_s", "baseline_per_s", "ratio"
        );
        for (name, f) in figures {
            println!(
                "{name:<26} {:>14.0} {:>14.0} {:>7.2}   {}{}",
                f.per_s,
                f.baseline_per_s,
                f.ratio,
                f.unit,
                [
                    f.ratio_spread.zip(f.pairs).map(|([low, high], pairs)| {
                        format!(", ratio {low:.2} to {high:.2} over {pairs} pairs")
                    }),
                    f.p99_ms.map(|ms| format!(", p99 {ms:.3} ms")),
                    f.baseline_p99_ms
                        .map(|ms| format!(" (baseline p99 {ms:.3} ms)")),
                    f.p99_at_per_s.map(|l| format!(" at {l:.0} events/s")),
                    f.seconds.map(|s| format!(", {s:.3} s")),
                    f.peak_mib.map(|m| format!(", peak {m:.0} MiB")),
                    f.linearity
                        .map(|l| format!(", half/whole per event {l:.2}")),
                    f.first_write_s
                        .map(|s| format!(", first write answered after {s:.3} s")),
                    f.ratio_fall.map(|d| {
                        format!(
                            ", append_batched's ratio is {d:.2} lower with it (median of turns)"
                        )
                    }),
                    f.steal_pct.map(|p| format!("; CPU steal {p:.0} %")),
                ]
                .into_iter()
                .flatten()
                .collect::<String>()
            );
        }
    }
    Ok(())
}
