//! The `nats_ingest` figure of `rotation-ledger bench --nats URL`, and its
//! baseline, measured on the same server in the same run.
//!
//! - **Ledger**: valid synthetic events published to
//!   `<prefix>.in.<partnership>` with `Nats-Msg-Id` (many publishes in
//!   flight), consumed by [`nats::run`] on a fresh ledger, committed
//!   and acknowledged. Timed from the first publish until the consumer's ack
//!   floor covers the last message and the ledger's head holds every event.
//! - **Baseline**: the same messages published the same way to a stream of
//!   the same configuration, and a durable pull consumer with the same
//!   batches and acks that only acknowledges them (with the ledger's ack
//!   policy: one ack for each batch taken). Timed from the first publish
//!   until its ack floor covers the last message.
//! - **Rounds.** The two alternate, baseline first and last ([`ROUNDS`]
//!   ledger runs between [`ROUNDS`] + 1 baseline runs), each run on
//!   streams (and a ledger) of its own, and each side's figure is its
//!   events over its total time. The speed of a shared virtual machine
//!   drifts by tens of percent within a minute; alternating moves both
//!   sides of the ratio alike, and several runs keep one slow moment from
//!   deciding either side.
//! - **Publication lag** (p99), measured in [`LAG_ROUNDS`] further runs on
//!   fresh ledgers and streams, with events published at the goal's load
//!   of [`LAG_LOAD`] events/s (lag at full speed is mostly the queues of an
//!   overloaded machine), over the lags of all of them: from an event's
//!   `recordedtime` (set as its group commit is decided, before the flush)
//!   to its arrival on a core subscriber, for every registration
//!   (`<prefix>.ledger.*.participant.registered`): one event in twelve,
//!   spread evenly through the run, so that the observer's own load (a
//!   second delivery of every message, and its decoding, on the same two
//!   cores) does not inflate what it measures. The ledger stream must hold
//!   every event at the end of every run.
//!
//! Everything runs under a prefix of its own (`bench-<random>`), so that a
//! bench never touches the ledger's real streams; its streams are deleted
//! at the end.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{BenchError, Result, Synthetic};
use crate::ledger::{Ledger, LedgerOptions};
use crate::nats::{self, Names, NatsOptions, ingest};

/// A failed NATS request as a [`BenchError`], saying what was asked.
trait OrNats<T> {
    fn or_nats(self, what: impl Into<String>) -> Result<T>;
}

impl<T, E> OrNats<T> for std::result::Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn or_nats(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| BenchError::NatsRequest {
            what: what.into(),
            source: Box::new(source),
        })
    }
}

/// What `nats_ingest` measured.
#[derive(Debug, Clone)]
pub struct IngestMeasurement {
    /// The events of each run, the ledger's and the baseline's alike.
    pub events: u64,
    /// Each of the ledger's runs, in order.
    pub took: Vec<Duration>,
    /// Each of the baseline's runs, in order: one before the ledger's
    /// first, and one after each of the ledger's.
    pub baseline_took: Vec<Duration>,
    /// The 99th percentile of the publication lag, at `lag_load`, over
    /// every lag run.
    pub lag_p99: Duration,
    /// The p99 of each lag run alone.
    pub lag_p99_each: Vec<Duration>,
    /// The events/s published while the lag was measured: the paced
    /// publisher's measured rate (events over the time from its first
    /// publication to its last), the mean over the lag runs.
    pub lag_load: f64,
}

impl IngestMeasurement {
    /// The ledger's events/s over all its runs.
    pub fn per_s(&self) -> f64 {
        rate(self.events, &self.took)
    }

    /// The baseline's events/s over all its runs.
    pub fn baseline_per_s(&self) -> f64 {
        rate(self.events, &self.baseline_took)
    }

    /// Each ledger run's events/s beside the baseline run after it.
    pub(super) fn pairs(&self) -> Vec<super::pairs::Pair> {
        self.took
            .iter()
            .zip(self.baseline_took.iter().skip(1))
            .map(|(ours, baseline)| {
                super::pairs::Pair::counted(self.events, *ours, self.events, *baseline)
            })
            .collect()
    }
}

/// `events` per run over the runs' total time.
fn rate(events: u64, runs: &[Duration]) -> f64 {
    let total: Duration = runs.iter().sum();
    (events * runs.len() as u64) as f64 / total.as_secs_f64().max(1e-9)
}

/// How many times the ledger's figure is measured, between baseline runs.
pub const ROUNDS: usize = 3;

/// How many runs the publication lag is measured over.
pub const LAG_ROUNDS: usize = 2;

/// The load the publication lag is paced at: the goal's 20,000 events/s.
/// The figure reports the rate actually measured.
const LAG_LOAD: f64 = 20_000.0;

/// Events published at [`LAG_LOAD`]: five seconds' worth.
const LAG_EVENTS: usize = 100_000;

/// How often a paced publisher publishes its next few events.
const TICK: Duration = Duration::from_millis(5);

/// Measures `events` events through NATS into a fresh ledger in `dir`, and
/// the raw JetStream baseline.
pub async fn ingest(url: &str, events: u64, dir: &Path) -> Result<IngestMeasurement> {
    let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let names = Arc::new(Names::new(&prefix)?);
    let client = async_nats::connect(url)
        .await
        .or_nats(format!("connect to {url}"))?;
    let js = jetstream::new(client.clone());
    let mut synthetic = Synthetic::new(7);
    let payloads: Vec<(String, bytes::Bytes)> = synthetic
        .take(events as usize)
        .into_iter()
        .map(|envelope| {
            let value = envelope.to_value();
            (
                envelope.id.to_string(),
                bytes::Bytes::from(value.to_string()),
            )
        })
        .collect();
    // The subject names the partnership the synthetic events name.
    let partnership = payloads
        .first()
        .and_then(|(_, body)| serde_json::from_slice::<serde_json::Value>(body).ok())
        .and_then(|v| v["partnership"].as_str().map(str::to_owned))
        .ok_or_else(|| BenchError::Check("no events to measure".to_owned()))?;

    // Every run has streams of its own, which it deletes when it ends, so
    // that each starts on a server holding what the first did; and the
    // ledger's runs have fresh ledgers.
    let rounds: Vec<Arc<Names>> = (1..=ROUNDS)
        .map(|round| Names::new(&format!("{prefix}-r{round}")).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let paced: Vec<Arc<Names>> = (1..=LAG_ROUNDS)
        .map(|round| Names::new(&format!("{prefix}-paced{round}")).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let result = async {
        let mut baseline_took =
            vec![baseline(&js, &names, &baseline_name(0), &partnership, &payloads).await?];
        let mut took = Vec::with_capacity(ROUNDS);
        for (round, round_names) in rounds.iter().enumerate() {
            let (ledger, _, _) = through_ledger(
                url,
                &client,
                &js,
                round_names,
                &partnership,
                &payloads,
                dir,
                None,
            )
            .await?;
            took.push(ledger);
            let base = baseline_name(round + 1);
            baseline_took.push(baseline(&js, &names, &base, &partnership, &payloads).await?);
        }
        let lag_events = &payloads[..payloads.len().min(LAG_EVENTS)];
        let mut lags = Vec::new();
        let mut lag_p99_each = Vec::with_capacity(LAG_ROUNDS);
        let mut loads = Vec::with_capacity(LAG_ROUNDS);
        for paced_names in &paced {
            let (_, mut run, load) = through_ledger(
                url,
                &client,
                &js,
                paced_names,
                &partnership,
                lag_events,
                dir,
                Some(LAG_LOAD),
            )
            .await?;
            run.sort_unstable();
            loads.push(load);
            lag_p99_each.push(p99(&run));
            lags.append(&mut run);
        }
        lags.sort_unstable();
        Ok::<_, BenchError>(IngestMeasurement {
            events,
            took,
            baseline_took,
            lag_p99: p99(&lags),
            lag_p99_each,
            lag_load: loads.iter().sum::<f64>() / loads.len().max(1) as f64,
        })
    }
    .await;
    if result.is_err() {
        // Each run deletes its streams when it ends; a failed one leaves them.
        for run in rounds.iter().chain(&paced) {
            delete_streams(&js, &ledger_streams(run)).await;
        }
        for round in 0..=ROUNDS {
            delete_streams(&js, &[names.stream(&baseline_name(round))]).await;
        }
    }
    // The baselines' streams source this one; it goes once they are gone.
    delete_streams(&js, &[names.in_anchor_stream()]).await;
    result
}

/// The name of the baseline's run `round` (0 before the ledger's first),
/// which names its stream.
fn baseline_name(round: usize) -> String {
    format!("BASE{round}")
}

/// The streams a ledger run under `names` makes.
fn ledger_streams(names: &Names) -> [String; 4] {
    [
        names.in_stream(),
        names.in_anchor_stream(),
        names.ledger_stream(),
        names.rejected_stream(),
    ]
}

/// Deletes `streams`, those that exist.
async fn delete_streams(js: &jetstream::Context, streams: &[String]) {
    for stream in streams {
        let _ = js.delete_stream(stream).await;
    }
}

/// Publishes every payload to `subject` with its id as `Nats-Msg-Id`, many
/// in flight, and waits for every ack: as fast as the server takes them,
/// or at `pace` events/s.
async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    payloads: &[(String, bytes::Bytes)],
    pace: Option<f64>,
) -> Result<u64> {
    let mut acks = futures::stream::FuturesOrdered::new();
    let mut last = 0;
    let per_tick = pace.map_or(usize::MAX, |rate| {
        ((rate * TICK.as_secs_f64()).round() as usize).max(1)
    });
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for (i, (id, body)) in payloads.iter().enumerate() {
        if i % per_tick == 0 && pace.is_some() {
            ticks.tick().await;
        }
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let ack = js
            .publish_with_headers(subject.to_owned(), headers, body.clone())
            .await
            .or_nats("publish")?;
        acks.push_back(ack.into_future());
        while acks.len() >= 1024 {
            if let Some(ack) = acks.next().await {
                last = ack.or_nats("have a publication acknowledged")?.sequence;
            }
        }
    }
    while let Some(ack) = acks.next().await {
        last = ack.or_nats("have a publication acknowledged")?.sequence;
    }
    Ok(last)
}

/// Waits until the consumer's ack floor reaches `count` messages.
async fn acked(consumer: &consumer::PullConsumer, count: u64) -> Result<()> {
    loop {
        let info = consumer
            .get_info()
            .await
            .or_nats("read the consumer's ack floor")?;
        if info.ack_floor.stream_sequence >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The raw JetStream baseline: publish, pull, ack; nothing else. `name`
/// names its stream, whose subjects are its lower-case form; the stream is
/// deleted at the end.
async fn baseline(
    js: &jetstream::Context,
    names: &Names,
    name: &str,
    partnership: &str,
    payloads: &[(String, bytes::Bytes)],
) -> Result<Duration> {
    let subjects = format!("{}.{}", names.prefix(), name.to_ascii_lowercase());
    let stream_name = names.stream(name);
    let mut config = names.in_config();
    config.name = stream_name.clone();
    config.subjects = vec![format!("{subjects}.>")];
    // The ledger's inbound settings: no duplicate window where the server
    // allows, so that the baseline tracks no ids the ledger's stream does
    // not.
    let without_window = nats::inbound::can_go_without_window(&js.client().server_info().version);
    if without_window {
        js.get_or_create_stream(names.in_anchor_config())
            .await
            .or_nats("create the baseline's anchor stream")?;
    }
    if let Some(update) = names.inbound_update(config.clone(), without_window) {
        config = update;
    }
    let retention = config.retention;
    let stream = js
        .create_stream(config)
        .await
        .or_nats("create the baseline stream")?;
    let mut consumer_config = ingest::consumer_config(names, retention);
    let acking = ingest::Acking::of(consumer_config.ack_policy);
    consumer_config.filter_subject = format!("{subjects}.>");
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer_config)
        .await
        .or_nats("create the baseline consumer")?;
    let count = payloads.len() as u64;
    let acker = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(ingest::BATCH)
                .messages()
                .await
                .or_nats("pull messages")?
                .ready_chunks(ingest::BATCH);
            let mut taken = 0u64;
            while taken < count {
                let Some(chunk) = messages.next().await else {
                    break;
                };
                let len = chunk.len();
                for (index, message) in chunk.into_iter().enumerate() {
                    let message = message.or_nats("take a message")?;
                    taken += 1;
                    if acking.acks(index, len) {
                        message
                            .ack()
                            .await
                            .map_err(|source| BenchError::NatsRequest {
                                what: "ack".to_owned(),
                                source,
                            })?;
                    }
                }
            }
            Ok::<_, BenchError>(())
        })
    };
    let started = Instant::now();
    publish_all(js, &format!("{subjects}.{partnership}"), payloads, None).await?;
    acked(&consumer, count).await?;
    let took = started.elapsed();
    acker.await??;
    delete_streams(js, &[stream_name]).await;
    Ok(took)
}

/// The ledger's figure: publish (as fast as the server takes it, or at
/// `pace` events/s), and wait until every event is committed and
/// acknowledged; meanwhile record the publication lag of every sampled
/// event. The streams under `names` are deleted at the end. Returns the
/// time, the lags and the measured publishing rate.
#[allow(clippy::too_many_arguments)]
async fn through_ledger(
    url: &str,
    client: &async_nats::Client,
    js: &jetstream::Context,
    names: &Arc<Names>,
    partnership: &str,
    payloads: &[(String, bytes::Bytes)],
    dir: &Path,
    pace: Option<f64>,
) -> Result<(Duration, Vec<Duration>, f64)> {
    let dir = dir.join("nats-ledger");
    let _ = std::fs::remove_dir_all(&dir);
    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    let shutdown = CancellationToken::new();
    let options = NatsOptions {
        nats_prefix: names.prefix().to_owned(),
        ..NatsOptions::for_url(url)
    };
    let nats = tokio::spawn(nats::run(ledger.clone(), options, shutdown.clone()));
    let count = payloads.len() as u64;

    let sampled = payloads
        .iter()
        .filter(|(_, body)| recorded_type(body) == Some(SAMPLED))
        .count();
    // The observer is a client of its own, as a subscriber to the ledger's
    // stream would be, not the publishing partner's connection.
    let observer = async_nats::connect(url)
        .await
        .or_nats(format!("connect to {url}"))?;
    let mut published = observer
        .subscribe(format!("{}.ledger.*.{SAMPLED_SUBJECT}", names.prefix()))
        .await
        .or_nats("subscribe to the ledger stream")?;
    observer.flush().await.or_nats("flush the observer")?;
    let lags = tokio::spawn(async move {
        let mut lags = Vec::with_capacity(sampled);
        while lags.len() < sampled {
            let Some(message) = published.next().await else {
                break;
            };
            let arrived = chrono::Utc::now();
            let recorded = recorded_time(&message.payload);
            if let Some(recorded) = recorded {
                lags.push((arrived - recorded.to_utc()).to_std().unwrap_or_default());
            }
        }
        lags
    });

    // The ledger creates its stream and consumer; wait for them.
    let consumer = loop {
        if let Ok(stream) = js.get_stream(names.in_stream()).await
            && let Ok(consumer) = stream
                .get_consumer::<consumer::pull::Config>(ingest::DURABLE)
                .await
        {
            break consumer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    client.flush().await.or_nats("flush the publisher")?;

    let started = Instant::now();
    publish_all(
        js,
        &format!("{}.in.{partnership}", names.prefix()),
        payloads,
        pace,
    )
    .await?;
    let published_per_s = count as f64 / started.elapsed().as_secs_f64().max(1e-9);
    acked(&consumer, count).await?;
    while ledger.head().position < count {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();

    let lags = tokio::time::timeout(Duration::from_secs(60), lags)
        .await
        .map_err(|_| {
            BenchError::Check("not every sampled event was published within a minute".to_owned())
        })??;
    let stored = loop {
        let mut stream = js
            .get_stream(names.ledger_stream())
            .await
            .or_nats("find the ledger stream")?;
        let stored = stream
            .info()
            .await
            .or_nats("read the ledger stream")?
            .state
            .messages;
        if stored >= count || started.elapsed() > took + Duration::from_secs(60) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    shutdown.cancel();
    nats.await??;
    ledger.close();
    delete_streams(js, &ledger_streams(names)).await;
    ensure!(
        lags.len() == sampled && sampled > 0,
        "{} of {sampled} sampled events were published",
        lags.len()
    );
    ensure!(
        stored == count,
        "the ledger stream holds {stored} of {count} events"
    );
    Ok((took, lags, published_per_s))
}

/// The 99th percentile of sorted, non-empty `lags`.
fn p99(lags: &[Duration]) -> Duration {
    lags[(lags.len() * 99 / 100).min(lags.len() - 1)]
}

/// The event type whose events the lag is measured on, and its subject.
const SAMPLED: &str = "jobrotation.participant.registered";
const SAMPLED_SUBJECT: &str = "participant.registered";

/// The `type` of a submitted event, found without decoding the rest.
fn recorded_type(json: &[u8]) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        event_type: &'a str,
    }
    serde_json::from_slice::<Typed<'_>>(json)
        .ok()
        .map(|t| t.event_type)
}

/// The `recordedtime` of a committed event, found without decoding the
/// rest of it, so that measuring the lag costs little beside what it
/// measures.
fn recorded_time(json: &[u8]) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    const KEY: &[u8] = b"\"recordedtime\":\"";
    let start = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = json[start..].iter().position(|b| *b == b'"')?;
    let text = std::str::from_utf8(&json[start..start + len]).ok()?;
    chrono::DateTime::parse_from_rfc3339(text).ok()
}
