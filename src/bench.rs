//! `rotation-ledger bench`: every speed goal measured beside its baseline,
//! the same work done raw, in the same run on the same data.
//!
//! | figure | ledger | baseline |
//! |---|---|---|
//! | `append_batched` | atomic batches of 1,000 through the append path (events made before the clock starts) | the same committed bytes inserted into sled in batches of 1,000, one flush each |
//! | `append_single` | single-event submissions from 64 concurrent writers | one sled insert plus one flush per event |
//! | `replay` | read and decode the whole log | a sled scan decoding each value as JSON |
//! | `projection_catchup` | the whole log folded into the dashboards from position 0, as a first start or `rebuild` does | `replay` |
//! | `nats_ingest` | events published to `rotation.in.<p>` with `Nats-Msg-Id` until committed and acked (`--nats URL`; `p99_ms`: publication lag, commit to arrival on `rotation.ledger.>`, with events published at `p99_at_per_s`) | a JetStream pull consumer that only acks the same messages; the two take turns, baseline first and last (3 ledger runs, 4 baseline runs, each side over all its runs; the lag over 2 runs) |
//! | `dashboard_read` | an uncached protected dashboard read (`p99_ms` too) | `serde_json::to_vec` of the same JSON value |
//!
//! The log is built by `append_batched` itself, so every later figure runs
//! on a log of `--events` events.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{Days, NaiveDate, TimeZone, Utc};
use rotation_events::Envelope;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::Caller;
use crate::ledger::{Ledger, LedgerOptions, Submission};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events in the log the figures are measured on.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Single-event submissions for `append_single`.
    #[arg(long, default_value_t = 50_000)]
    pub single: u64,
    /// Concurrent writers for `append_single`.
    #[arg(long, default_value_t = 64)]
    pub writers: u64,
    /// Where to build the logs; a temporary directory by default.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Jobseekers in the simulated history that `import` and `export` are
    /// measured on (about 28 events each).
    #[arg(long, default_value_t = 100_000)]
    pub export_jobseekers: u32,
    /// A nats-server to measure `nats_ingest` on (streams of its own, deleted afterwards).
    #[arg(long = "nats", value_name = "URL")]
    pub nats: Option<String>,
    /// Events for `nats_ingest`; by default `--events`, at most 200,000.
    #[arg(long, value_name = "N")]
    pub nats_events: Option<u64>,
    /// Measure only these figures (comma-separated names, as in the
    /// report); the log is built by `append_batched` whatever is chosen.
    #[arg(long, value_delimiter = ',', value_name = "FIGURES", value_parser = clap::builder::PossibleValuesParser::new(FIGURES))]
    pub only: Vec<String>,
}

/// Every figure's name, in the order they are measured.
const FIGURES: [&str; 9] = [
    "append_batched",
    "append_single",
    "replay",
    "projection_catchup",
    "dashboard_read",
    "startup",
    "import",
    "export",
    "nats_ingest",
];

impl BenchArgs {
    /// Whether `figure` is to be measured.
    fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }
}

/// One figure beside its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub per_s: f64,
    pub baseline_per_s: f64,
    pub ratio: f64,
    /// For latency figures: the 99th percentile of one operation, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
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
    /// What was counted, for the table.
    #[serde(skip)]
    pub unit: &'static str,
}

impl Figure {
    fn new(count: u64, took: Duration, baseline_count: u64, baseline_took: Duration) -> Self {
        Self::rates(
            count as f64 / took.as_secs_f64().max(1e-9),
            baseline_count as f64 / baseline_took.as_secs_f64().max(1e-9),
        )
    }

    /// A figure of `per_s` beside `baseline_per_s`, in events/s.
    fn rates(per_s: f64, baseline_per_s: f64) -> Self {
        Self {
            per_s,
            baseline_per_s,
            ratio: per_s / baseline_per_s,
            p99_ms: None,
            p99_at_per_s: None,
            seconds: None,
            peak_mib: None,
            linearity: None,
            first_write_s: None,
            steal_pct: None,
            unit: "events/s",
        }
    }

    /// This figure, with the steal `meter` saw since it started.
    fn stolen(mut self, meter: &StealMeter) -> Self {
        self.steal_pct = meter.percent();
        self
    }
}

/// Measures the share of the machine's CPU time stolen by a hypervisor
/// from its start on, read from `/proc/stat`.
struct StealMeter {
    start: Option<CpuTicks>,
}

/// The machine's CPU time since boot, in clock ticks, over all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTicks {
    steal: u64,
    total: u64,
}

impl CpuTicks {
    fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// From the `cpu` line of `/proc/stat`: user, nice, system, idle,
    /// iowait, irq, softirq, steal (guest time is already in user and
    /// nice, so it is not added again).
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        let ticks = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|tick| tick.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            steal: *ticks.get(7)?,
            total: ticks.iter().sum(),
        })
    }
}

impl StealMeter {
    fn start() -> Self {
        Self {
            start: CpuTicks::now(),
        }
    }

    fn percent(&self) -> Option<f64> {
        steal_percent(self.start?, CpuTicks::now()?)
    }
}

fn steal_percent(start: CpuTicks, end: CpuTicks) -> Option<f64> {
    let total = end.total.checked_sub(start.total).filter(|&t| t > 0)?;
    let steal = end.steal.checked_sub(start.steal)?;
    Some(100.0 * steal as f64 / total as f64)
}

const BATCH: usize = 1_000;

pub async fn run(args: BenchArgs) -> Result<()> {
    let temp;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot make a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let mut figures: Vec<(&'static str, Figure)> = Vec::new();
    let ledger_dir = root.join("ledger");
    let raw_dir = root.join("raw");
    let _ = std::fs::remove_dir_all(&ledger_dir);
    let _ = std::fs::remove_dir_all(&raw_dir);
    let ledger = Ledger::open(&ledger_dir, LedgerOptions::default())?;

    let meter = StealMeter::start();
    progress(
        &args,
        &format!(
            "append_batched: {} events in batches of {BATCH}",
            args.events
        ),
    );
    let ours = append_batches(&ledger, args.events).await?;
    // The raw log is also what the replay baseline scans.
    if args.wants("append_batched") || args.wants("replay") {
        let raw = tokio::task::spawn_blocking({
            let ledger = ledger.clone();
            let raw_dir = raw_dir.clone();
            move || raw_batched(&ledger, &raw_dir)
        })
        .await??;
        figures.push((
            "append_batched",
            Figure::new(args.events, ours, args.events, raw).stolen(&meter),
        ));
    }

    if args.wants("append_single") {
        let meter = StealMeter::start();
        progress(
            &args,
            &format!(
                "append_single: {} single events from {} writers",
                args.single, args.writers
            ),
        );
        figures.push((
            "append_single",
            append_single(&args, &ledger, &raw_dir)
                .await?
                .stolen(&meter),
        ));
    }

    let mut replay_per_s = None;
    if args.wants("replay") || args.wants("projection_catchup") || args.wants("export") {
        progress(&args, "replay: the whole log");
        let meter = StealMeter::start();
        let replay = replay(&ledger, &raw_dir).await?.stolen(&meter);
        replay_per_s = Some(replay.per_s);
        figures.push(("replay", replay));
    }

    if args.wants("projection_catchup") || args.wants("dashboard_read") {
        progress(&args, "projection_catchup: the dashboards from position 0");
        let meter = StealMeter::start();
        let (catchup, read) = dashboards(&ledger, replay_per_s.unwrap_or(f64::NAN)).await?;
        figures.push(("projection_catchup", catchup.stolen(&meter)));
        progress(&args, "dashboard_read: the dashboard read path");
        figures.push(("dashboard_read", read.stolen(&meter)));
    }

    ledger.close();

    if args.wants("startup") {
        progress(&args, "startup: reopening the ledger on that log");
        let meter = StealMeter::start();
        let startup = startup(&ledger_dir, &raw_dir).await?.stolen(&meter);
        figures.push(("startup", startup));
    }

    if args.wants("import") || args.wants("export") {
        // The ledger's side of append_batched, measured whatever was chosen.
        let batched = args.events as f64 / ours.as_secs_f64().max(1e-9);
        progress(
            &args,
            &format!(
                "import: a simulated history of {} jobseekers",
                args.export_jobseekers
            ),
        );
        let meter = StealMeter::start();
        let (import, events) = import_history(&root, args.export_jobseekers, batched).await?;
        figures.push(("import", import.stolen(&meter)));
        if args.wants("export") {
            progress(
                &args,
                &format!("export: the evaluation dataset of {events} events"),
            );
            let replay = replay_per_s.unwrap_or(f64::NAN);
            let meter = StealMeter::start();
            let export = export_dataset(&root, events, replay)?.stolen(&meter);
            figures.push(("export", export));
        }
    }

    if let Some(url) = args.nats.as_ref().filter(|_| args.wants("nats_ingest")) {
        let events = args.nats_events.unwrap_or(args.events.min(200_000));
        progress(
            &args,
            &format!("nats_ingest: {events} events through {url}"),
        );
        let meter = StealMeter::start();
        let measured = crate::nats::bench::ingest(url, events, &root).await?;
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
            &args,
            &format!(
                "nats_ingest: ledger {} events/s; baseline {} events/s (in turns, baseline first); lag p99 {lags} ms; each figure is over all its runs",
                rates(&measured.took),
                rates(&measured.baseline_took),
            ),
        );
        let mut figure = Figure::rates(measured.per_s(), measured.baseline_per_s()).stolen(&meter);
        figure.p99_ms = Some(measured.lag_p99.as_secs_f64() * 1e3);
        figure.p99_at_per_s = Some(measured.lag_load);
        figures.push(("nats_ingest", figure));
    }
    report(&args, &figures)
}

/// `append_single`: single-event submissions from `--writers` concurrent
/// writers, beside one raw sled insert plus flush per event.
async fn append_single(
    args: &BenchArgs,
    ledger: &Ledger,
    raw_dir: &std::path::Path,
) -> Result<Figure> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per_writer = args.single / args.writers.max(1);
    for w in 0..args.writers {
        let ledger = ledger.clone();
        let mut synthetic = Synthetic::new(1_000 + w);
        tasks.push(tokio::spawn(async move {
            // Each writer registers its own partnership stream first, so
            // writers never contend for one stream.
            for event in synthetic.take(per_writer as usize) {
                let submission = Submission::from_events(vec![event], "bench", Caller::operator());
                let outcome = ledger.submit_one(submission).await?;
                anyhow::ensure!(!outcome.is_rejected(), "rejected: {:?}", outcome.rejection);
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let ours = started.elapsed();
    let single_total = per_writer * args.writers;
    let (raw_count, raw_took) = tokio::task::spawn_blocking({
        let raw_dir = raw_dir.to_path_buf();
        move || raw_single(&raw_dir)
    })
    .await??;
    Ok(Figure::new(single_total, ours, raw_count, raw_took))
}

/// `replay`: read and decode the whole log, beside a raw scan of the same
/// events decoding each as JSON.
async fn replay(ledger: &Ledger, raw_dir: &std::path::Path) -> Result<Figure> {
    let head = ledger.head().position;
    let started = Instant::now();
    let mut count = 0u64;
    for event in ledger.events_iter(0) {
        let event = event?;
        std::hint::black_box(&event);
        count += 1;
    }
    let ours = started.elapsed();
    anyhow::ensure!(count == head, "replay read {count} events of {head}");
    let (raw_count, raw_took) = tokio::task::spawn_blocking({
        let raw_dir = raw_dir.to_path_buf();
        move || raw_replay(&raw_dir)
    })
    .await??;
    Ok(Figure::new(count, ours, raw_count, raw_took))
}

/// `startup`: opening the ledger on the bench log (it reads the head),
/// beside opening a raw sled database of the same events. Neither may grow
/// with the log. Also the time until a first write (the head event again,
/// a duplicate) is answered, which includes loading the id index.
async fn startup(ledger_dir: &std::path::Path, raw_dir: &std::path::Path) -> Result<Figure> {
    let started = Instant::now();
    let ledger = Ledger::open(ledger_dir, LedgerOptions::default())?;
    let head = ledger.head().position;
    let ours = started.elapsed();
    let event = ledger
        .store()
        .event(head)?
        .context("the bench log has a head event")?;
    let again = Submission::from_events(vec![event.envelope], "bench", Caller::operator());
    let outcome = ledger.submit_one(again).await?;
    let first_write = started.elapsed();
    anyhow::ensure!(
        outcome.receipts[0].position == Some(head),
        "the head event was not recognised as a duplicate: {outcome:?}"
    );
    ledger.close();
    let started = Instant::now();
    let db = sled::Config::new().path(raw_dir).open()?;
    let last = db.last()?;
    let raw = started.elapsed();
    drop((db, last));
    let mut figure = Figure::new(1, ours, 1, raw);
    figure.seconds = Some(ours.as_secs_f64());
    figure.first_write_s = Some(first_write.as_secs_f64());
    figure.unit = "opens/s";
    tracing::debug!(head, ?ours, ?raw, ?first_write, "start-up");
    Ok(figure)
}

/// `import`: a realistic simulated history, every line through all the
/// rules, beside `append_batched` of the same run. Returns the figure and
/// the number of events committed.
async fn import_history(
    root: &std::path::Path,
    jobseekers: u32,
    batched_per_s: f64,
) -> Result<(Figure, u64)> {
    use std::io::Write;
    let months = 36;
    let start = Utc::now().date_naive() - chrono::Months::new(months + 1);
    let scenario = crate::simulate::Scenario {
        partnerships: 4,
        jobseekers,
        months,
        seed: 7,
        start,
        invalid_rate: 0.0,
    };
    let path = root.join("history.jsonl");
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        for simulated in crate::simulate::simulate(&scenario) {
            out.write_all(simulated.line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    let dir = root.join("import");
    let _ = std::fs::remove_dir_all(&dir);
    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
    let started = Instant::now();
    let summary = crate::import::import(&ledger, input, "history.jsonl", |_, _| {}).await?;
    let took = started.elapsed();
    anyhow::ensure!(
        summary.rejected == 0,
        "the simulated history was not accepted in full: {:?}",
        summary.problems.first()
    );
    ledger.close();
    let lines = summary.accepted + summary.duplicate;
    let per_s = lines as f64 / took.as_secs_f64().max(1e-9);
    Ok((Figure::rates(per_s, batched_per_s), summary.accepted))
}

/// `export`: the evaluation dataset of the imported history, written by a
/// child `rotation-ledger export` so that its time and peak memory are its
/// own; beside `replay`'s events/s. It is run on half the log too (as of
/// the middle event's recorded time) to show the cost is linear.
fn export_dataset(root: &std::path::Path, events: u64, replay_per_s: f64) -> Result<Figure> {
    let dir = root.join("import");
    let key = root.join("study.key");
    std::fs::write(&key, b"bench study key")?;
    let middle = {
        let ledger = Ledger::open(&dir, LedgerOptions::default())?;
        let event = ledger.store().event(events / 2)?;
        ledger.close();
        event.map(|e| e.ledger.recordedtime)
    };
    let run = |as_of: Option<&str>| -> Result<(Duration, f64)> {
        let out = root.join("dataset");
        let _ = std::fs::remove_dir_all(&out);
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .arg("export")
            .arg("--data")
            .arg(&dir)
            .arg("--out")
            .arg(&out)
            .arg("--key-file")
            .arg(&key)
            .stdout(std::process::Stdio::null());
        if let Some(as_of) = as_of {
            command.arg("--as-of").arg(as_of);
        }
        let started = Instant::now();
        let child = command.spawn()?;
        let (status, peak_kib) = wait_with_peak(child)?;
        let took = started.elapsed();
        anyhow::ensure!(status == 0, "export exited with status {status}");
        Ok((took, peak_kib as f64 / 1024.0))
    };
    let (took, peak_mib) = run(None)?;
    let mut figure = Figure::rates(events as f64 / took.as_secs_f64().max(1e-9), replay_per_s);
    figure.seconds = Some(took.as_secs_f64());
    figure.peak_mib = Some(peak_mib);
    if let Some(middle) = middle {
        let (half, _) = run(Some(&middle))?;
        let per_event_half = half.as_secs_f64() / (events / 2).max(1) as f64;
        let per_event_whole = took.as_secs_f64() / events.max(1) as f64;
        figure.linearity = Some(per_event_half / per_event_whole);
    }
    Ok(figure)
}

/// Waits for a child and returns its exit status and peak resident set
/// size in KiB: the kernel's high-water mark (`VmHWM`), read every few
/// milliseconds until the child exits.
fn wait_with_peak(mut child: std::process::Child) -> Result<(i32, u64)> {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait()? {
            return Ok((status.code().unwrap_or(-1), peak));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Appends `count` synthetic events in atomic batches of [`BATCH`], with a
/// few batches in flight so that preparing them overlaps committing them,
/// as several publishers would. The events are made before the clock
/// starts, as the baseline's bytes are: what is timed is the ledger's work
/// from the submitted events to their acknowledgement. Returns that time.
async fn append_batches(ledger: &Ledger, count: u64) -> Result<Duration> {
    use futures::StreamExt;
    let batches = tokio::task::spawn_blocking(move || {
        let mut synthetic = Synthetic::new(1);
        let mut batches = Vec::with_capacity(count.div_ceil(BATCH as u64) as usize);
        let mut made = 0;
        while made < count {
            let n = (count - made).min(BATCH as u64);
            batches.push(synthetic.take(n as usize));
            made += n;
        }
        batches
    })
    .await?;
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<Submission>(4);
    let producer = tokio::task::spawn_blocking(move || {
        for events in batches {
            let submission = Submission::from_events(events, "bench", Caller::operator());
            if tx.blocking_send(submission).is_err() {
                break;
            }
        }
    });
    let mut outcomes = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|submission| ledger.submit_one(submission))
        .buffered(4);
    while let Some(outcome) = outcomes.next().await {
        let outcome = outcome?;
        anyhow::ensure!(
            !outcome.is_rejected(),
            "bench events were rejected: {:?}",
            outcome.rejection
        );
    }
    producer.await?;
    Ok(started.elapsed())
}

fn progress(args: &BenchArgs, message: &str) {
    if !args.json {
        eprintln!("bench: {message}");
    }
}

fn report(args: &BenchArgs, figures: &[(&'static str, Figure)]) -> Result<()> {
    if args.json {
        let object: serde_json::Map<String, serde_json::Value> = figures
            .iter()
            .map(|(name, figure)| Ok(((*name).to_owned(), serde_json::to_value(figure)?)))
            .collect::<Result<_>>()?;
        println!("{}", serde_json::Value::Object(object));
    } else {
        println!(
            "{:<20} {:>14} {:>14} {:>7}",
            "figure", "per_s", "baseline_per_s", "ratio"
        );
        for (name, f) in figures {
            println!(
                "{name:<20} {:>14.0} {:>14.0} {:>7.2}   {}{}",
                f.per_s,
                f.baseline_per_s,
                f.ratio,
                f.unit,
                [
                    f.p99_ms.map(|ms| format!(", p99 {ms:.3} ms")),
                    f.p99_at_per_s.map(|l| format!(" at {l:.0} events/s")),
                    f.seconds.map(|s| format!(", {s:.3} s")),
                    f.peak_mib.map(|m| format!(", peak {m:.0} MiB")),
                    f.linearity
                        .map(|l| format!(", half/whole per event {l:.2}")),
                    f.first_write_s
                        .map(|s| format!(", first write answered after {s:.3} s")),
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

/// The baseline of `append_batched`: the ledger's committed bytes, inserted
/// raw into a fresh sled in batches of the same size with one flush each.
/// Only the inserts and flushes are timed.
fn raw_batched(ledger: &Ledger, dir: &std::path::Path) -> Result<Duration> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(512 * 1024 * 1024)
        .open()?;
    let head = ledger.head().position;
    let mut took = Duration::ZERO;
    let mut position = 0;
    while position < head {
        let until = (position + BATCH as u64).min(head);
        let rows: Vec<_> = ledger
            .store()
            .events_json(position, until)
            .collect::<Result<_, _>>()?;
        let started = Instant::now();
        let mut batch = sled::Batch::default();
        for (p, json) in rows {
            batch.insert(&p.to_be_bytes(), &*json);
        }
        db.apply_batch(batch)?;
        let applied = started.elapsed();
        db.flush()?;
        tracing::trace!(apply = ?applied, flush = ?(started.elapsed() - applied), "raw batch");
        took += started.elapsed();
        position = until;
    }
    Ok(took)
}

/// The baseline of `append_single`: one insert and one flush per event, for
/// about two seconds.
fn raw_single(dir: &std::path::Path) -> Result<(u64, Duration)> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(512 * 1024 * 1024)
        .open()?;
    let value = vec![b'x'; 700];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        db.insert((u64::MAX - count).to_be_bytes(), value.as_slice())?;
        db.flush()?;
        count += 1;
    }
    Ok((count, started.elapsed()))
}

/// The baseline of `replay`: scan and decode every value as JSON.
fn raw_replay(dir: &std::path::Path) -> Result<(u64, Duration)> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(512 * 1024 * 1024)
        .open()?;
    let started = Instant::now();
    let mut count = 0u64;
    for item in db.range(0u64.to_be_bytes()..(u64::MAX / 2).to_be_bytes()) {
        let (_, value) = item?;
        let decoded: serde_json::Value = serde_json::from_slice(&value)?;
        std::hint::black_box(&decoded);
        count += 1;
    }
    Ok((count, started.elapsed()))
}

/// A cheap source of valid events for the append figures: one partnership,
/// then jobseekers who are registered, referred, assessed and mentored.
/// Every event passes the rules in order.
#[derive(Debug)]
pub struct Synthetic {
    seed: u64,
    partnership: String,
    emitted: u64,
    person: Uuid,
    step: u32,
    base: chrono::DateTime<Utc>,
}

/// Events per synthetic jobseeker: registration, referral, assessment, then mentoring.
const STEPS: u32 = 12;

impl Synthetic {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            partnership: format!("bench-{seed}"),
            emitted: 0,
            person: Uuid::nil(),
            step: STEPS,
            base: Utc
                .with_ymd_and_hms(2025, 1, 6, 9, 0, 0)
                .single()
                .unwrap_or_default(),
        }
    }

    fn id(&self, n: u64) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.seed.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    pub fn take(&mut self, n: usize) -> Vec<Envelope> {
        (0..n).map(|_| self.next_event()).collect()
    }

    fn next_event(&mut self) -> Envelope {
        self.emitted += 1;
        let id = self.id(self.emitted);
        let time = self.base + chrono::TimeDelta::seconds(self.emitted as i64);
        let (event_type, subject, data) = if self.emitted == 1 {
            (
                "jobrotation.partnership.registered",
                format!("partnership/{}", self.partnership),
                json!({"name": "Bench partnership", "areas": ["E06000021"], "members": [{"organisation": "Bench Jobcentre", "kind": "jobcentre"}]}),
            )
        } else {
            if self.step >= STEPS {
                self.step = 0;
                self.person = self.id(u64::MAX - self.emitted);
            }
            self.step += 1;
            let subject = format!("person/{}", self.person);
            let unemployed_since = NaiveDate::from_ymd_opt(2024, 3, 1)
                .and_then(|d| d.checked_sub_days(Days::new(self.emitted % 300)))
                .unwrap_or_default();
            match self.step {
                1 => (
                    "jobrotation.participant.registered",
                    subject,
                    json!({"role": "jobseeker", "unemployed_since": unemployed_since, "benefit": "universal_credit", "qualification_level": 2, "profile": {"birth_year": 1970 + (self.emitted % 40) as i32, "sex": "female", "disability": "no", "lone_parent": false}}),
                ),
                2 => (
                    "jobrotation.jobseeker.referred",
                    subject,
                    json!({"referred_by": "jobcentre"}),
                ),
                3 => (
                    "jobrotation.jobseeker.eligibility_assessed",
                    subject,
                    json!({"eligible": true, "reasons": []}),
                ),
                _ => (
                    "jobrotation.jobseeker.mentoring_session",
                    subject,
                    json!({"minutes": 45, "mentor": "union_learning_rep"}),
                ),
            }
        };
        let value = json!({
            "specversion": "1.0",
            "id": id,
            "source": "urn:service:bench-jobcentre",
            "type": event_type,
            "subject": subject,
            "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "partnership": self.partnership,
            "datacontenttype": "application/json",
            "data": data,
        });
        Envelope::from_value(value).expect("synthetic events are well-formed")
    }
}

/// `projection_catchup` and `dashboard_read`, on the log built above.
///
/// `projection_catchup` times the fold of the whole log from position 0
/// into fresh dashboards, reading and decoding included: the work of
/// `rebuild` or of a first start. Its baseline is `replay`, reading and
/// decoding the same log without folding it. The rebuild's checkpoint is
/// then written (untimed), so the projector below starts from it.
///
/// `dashboard_read` then times the projector's read of a protected
/// dashboard with the cache emptied before every read, so each read
/// computes the dashboard, applies disclosure control and serialises it:
/// the slowest a read can be (reads between two applied chunks are cache
/// hits). The partnership read is the log's largest. Its baseline is
/// serialising the same protected JSON value, already computed, with
/// `serde_json::to_vec`.
async fn dashboards(ledger: &Ledger, replay_per_s: f64) -> Result<(Figure, Figure)> {
    use crate::projector::{DashboardRead, DashboardView, Projector, ProjectorOptions};

    let head = ledger.head().position;
    let took = tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        move || -> Result<Duration> {
            let started = Instant::now();
            let mut folded = Duration::ZERO;
            crate::projector::rebuild(&ledger, |position, head| {
                if position == head {
                    folded = started.elapsed();
                }
            })?;
            Ok(folded)
        }
    })
    .await??;
    let catchup_per_s = head as f64 / took.as_secs_f64().max(1e-9);
    let catchup = Figure::rates(catchup_per_s, replay_per_s);

    let shutdown = tokio_util::sync::CancellationToken::new();
    let (projector, task) = Projector::start(
        ledger.clone(),
        std::sync::Arc::new(crate::config::Config::default()),
        ProjectorOptions::default(),
        shutdown.clone(),
    )
    .await?;
    projector.wait_for(head).await;
    let partnership = "bench-1";
    let reads = 2_000;
    let read = {
        let projector = projector.clone();
        tokio::task::spawn_blocking(move || -> Result<Figure> {
            let mut latencies = Vec::with_capacity(reads);
            let mut json = bytes::Bytes::new();
            for _ in 0..reads {
                projector.forget_cache();
                let started = Instant::now();
                let answer = projector.dashboard(partnership, DashboardView::Protected);
                latencies.push(started.elapsed());
                match answer {
                    DashboardRead::Found(bytes) => json = bytes,
                    other => anyhow::bail!("the bench dashboard was not found: {other:?}"),
                }
            }
            let value: serde_json::Value = serde_json::from_slice(&json)?;
            let started = Instant::now();
            for _ in 0..reads {
                std::hint::black_box(serde_json::to_vec(&value)?);
            }
            let baseline = started.elapsed();
            latencies.sort_unstable();
            let total: Duration = latencies.iter().sum();
            let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
            let per_s = reads as f64 / total.as_secs_f64().max(1e-9);
            let baseline_per_s = reads as f64 / baseline.as_secs_f64().max(1e-9);
            Ok(Figure {
                p99_ms: Some(p99.as_secs_f64() * 1_000.0),
                unit: "reads/s",
                ..Figure::rates(per_s, baseline_per_s)
            })
        })
        .await??
    };
    shutdown.cancel();
    drop(projector);
    task.join().await?;
    Ok((catchup, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_read_the_machine_line_of_proc_stat() {
        let stat = "cpu  100 5 50 800 10 1 2 32 7 0\ncpu0 50 2 25 400 5 0 1 16 3 0\nintr 1\n";
        let ticks = CpuTicks::parse(stat).expect("a cpu line");
        assert_eq!(ticks.steal, 32);
        // Guest time (7) is already counted in user time.
        assert_eq!(ticks.total, 100 + 5 + 50 + 800 + 10 + 1 + 2 + 32);
        assert_eq!(CpuTicks::parse("intr 1\n"), None);
        assert_eq!(
            CpuTicks::parse("cpu  1 2 3\n"),
            None,
            "a line without steal"
        );
    }

    #[test]
    fn steal_is_the_share_of_cpu_time_in_between() {
        let start = CpuTicks {
            steal: 10,
            total: 1_000,
        };
        let end = CpuTicks {
            steal: 60,
            total: 1_200,
        };
        assert_eq!(steal_percent(start, end), Some(25.0));
        assert_eq!(steal_percent(start, start), None, "no time passed");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_reports_its_cpu_time() {
        let ticks = CpuTicks::now().expect("/proc/stat on Linux");
        assert!(ticks.total > 0 && ticks.steal <= ticks.total);
    }
}
