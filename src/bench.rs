//! `rotation-ledger bench`: every speed goal measured beside its baseline,
//! the same work done raw, in the same run on the same data.
//!
//! | figure | ledger | baseline |
//! |---|---|---|
//! | `append_batched` | atomic batches of 1,000 through the append path | the same committed bytes inserted into sled in batches of 1,000, one flush each |
//! | `append_single` | single-event submissions from 64 concurrent writers | one sled insert plus one flush per event |
//! | `replay` | read and decode the whole log | a sled scan decoding each value as JSON |
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
}

/// One figure beside its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub per_s: f64,
    pub baseline_per_s: f64,
    pub ratio: f64,
    /// What was counted, for the table.
    #[serde(skip)]
    pub unit: &'static str,
}

impl Figure {
    fn new(count: u64, took: Duration, baseline_count: u64, baseline_took: Duration) -> Self {
        let per_s = count as f64 / took.as_secs_f64().max(1e-9);
        let baseline_per_s = baseline_count as f64 / baseline_took.as_secs_f64().max(1e-9);
        Self {
            per_s,
            baseline_per_s,
            ratio: per_s / baseline_per_s,
            unit: "events/s",
        }
    }
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

    progress(
        &args,
        &format!(
            "append_batched: {} events in batches of {BATCH}",
            args.events
        ),
    );
    let mut synthetic = Synthetic::new(1);
    let started = Instant::now();
    let mut appended = 0;
    while appended < args.events {
        let n = (args.events - appended).min(BATCH as u64);
        let events = synthetic.take(n as usize);
        let submission = Submission::from_events(events, "bench", Caller::operator());
        let outcome = ledger.submit_one(submission).await?;
        anyhow::ensure!(
            !outcome.is_rejected(),
            "bench events were rejected: {:?}",
            outcome.rejection
        );
        appended += n;
    }
    let ours = started.elapsed();
    let raw = tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        let raw_dir = raw_dir.clone();
        move || raw_batched(&ledger, &raw_dir)
    })
    .await??;
    figures.push((
        "append_batched",
        Figure::new(args.events, ours, args.events, raw),
    ));

    progress(
        &args,
        &format!(
            "append_single: {} single events from {} writers",
            args.single, args.writers
        ),
    );
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
        let raw_dir = raw_dir.clone();
        move || raw_single(&raw_dir)
    })
    .await??;
    figures.push((
        "append_single",
        Figure::new(single_total, ours, raw_count, raw_took),
    ));

    progress(&args, "replay: the whole log");
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
    let (raw_count, raw_took) = tokio::task::spawn_blocking(move || raw_replay(&raw_dir)).await??;
    figures.push(("replay", Figure::new(count, ours, raw_count, raw_took)));

    ledger.close();
    report(&args, &figures)
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
                "{name:<20} {:>14.0} {:>14.0} {:>7.2}   {}",
                f.per_s, f.baseline_per_s, f.ratio, f.unit
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
            batch.insert(&p.to_be_bytes(), json);
        }
        db.apply_batch(batch)?;
        db.flush()?;
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
