//! The PostgreSQL peer: the bench's events in the event store most users
//! would otherwise build, measured beside the ledger in the same run.
//!
//! The schema is the one Marten (`mt_events`), Emmett (`emt_messages`),
//! message-db (`messages`) and cqrs-es's postgres-es (`events`) share in
//! substance: one table of events with a global position, a unique event
//! id, a per-stream version unique within its stream, the type, the data
//! as `jsonb` and when it was recorded; here also the chain hash the
//! ledger keeps (`prevhash`, `hash`). Each append is one transaction that
//! takes the log's lock (positions and the chain are assigned under it),
//! reads the head and the streams' current versions, checks the expected
//! versions, inserts with `on conflict (id) do nothing` (idempotency) and
//! commits; the server runs with `fsync` and `synchronous_commit` on.
//!
//! Figures, each in interleaved turns with the ledger's side on a ledger
//! of its own:
//! - `postgres_append_batched`: transactions of 1,000 events;
//! - `postgres_append_single`: single-event transactions from the same
//!   number of concurrent writers as `append_single`, on as many
//!   connections;
//! - `postgres_replay`: the whole log read in order and decoded into what
//!   a whole-log reader folds, each event's attributes and its data as
//!   the type's data (`EventData`): the ledger's side is
//!   [`Ledger::replay_typed`], what the ledger's whole-log readers use
//!   (the store read on one thread, decoded on two); the peer's is one
//!   connection streaming the table, the server reading and sending while
//!   the client decodes each row, its `jsonb` with the same typed
//!   decoder. Each side has both cores.
//! - `postgres_stream_read`: one stream's events read, with the p99.

mod server;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rotation_events::{
    CommittedEvent, Envelope, EventData, EventType, InvalidEvent, LedgerAttributes, Subject,
};
use serde_json::value::RawValue;
use tokio_postgres::types::Json;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use super::pairs::Pair;
use super::{BATCH, BenchError, BenchOptions, Figure, Result, Synthetic, append, progress};
use crate::ledger::{Ledger, LedgerOptions};
use server::ThrowawayServer;

/// Turns of each figure: ledger, then peer.
const TURNS: u64 = 5;

/// The advisory lock every append transaction takes: positions are
/// gap-free and each event's hash chains to the previous one, so appends
/// are serialised, as message-db serialises the writers of one stream.
const LOG_LOCK: i64 = 0x726f_7461;

/// Streams read per turn of `postgres_stream_read`.
const STREAM_READS: usize = 200;

/// Measures the `postgres_*` figures that `options` wants, on a throwaway
/// server or the one given with `--postgres`.
pub(super) async fn figures(
    options: &BenchOptions,
    root: &Path,
) -> Result<Vec<(&'static str, Figure)>> {
    let server;
    let url = match &options.postgres {
        Some(url) => url.clone(),
        None => {
            progress(options, "peers: starting a throwaway PostgreSQL server");
            server = ThrowawayServer::start()?;
            server.url()
        }
    };
    let schema = format!(
        "rotation_bench_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let admin = connect(&url).await?;
    admin
        .batch_execute(&format!(
            "create schema {schema};
             create table {schema}.events (
                 position bigint primary key,
                 id uuid not null unique,
                 stream text not null,
                 version int not null,
                 type text not null,
                 data jsonb not null,
                 recorded timestamptz not null,
                 prevhash bytea not null,
                 hash bytea not null,
                 unique (stream, version)
             );"
        ))
        .await?;
    let measured = measure(options, root, &url, &schema).await;
    let dropped = admin
        .batch_execute(&format!("drop schema {schema} cascade"))
        .await;
    let figures = measured?;
    dropped?;
    Ok(figures)
}

async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "a PostgreSQL connection ended");
        }
    });
    Ok(client)
}

async fn measure(
    options: &BenchOptions,
    root: &Path,
    url: &str,
    schema: &str,
) -> Result<Vec<(&'static str, Figure)>> {
    let dir = root.join("peer-ledger");
    let _ = std::fs::remove_dir_all(&dir);
    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    let mut figures = Vec::new();
    let peer = connect(url).await?;
    let table = format!("{schema}.events");

    progress(
        options,
        &format!(
            "postgres_append_batched: {} events in batches of {BATCH}",
            options.events
        ),
    );
    let mut synthetic = Synthetic::new(1);
    let mut known = HashMap::new();
    let mut pairs = Vec::new();
    let mut made = 0;
    for turn in 0..TURNS {
        let until = options.events * (turn + 1) / TURNS;
        let n = (until - made) as usize;
        made = until;
        if n == 0 {
            continue;
        }
        let events = synthetic.take(n);
        let batches: Vec<Vec<Envelope>> = events.chunks(BATCH).map(<[_]>::to_vec).collect();
        let ours = append::ledger_batches(&ledger, batches.clone()).await?;
        let started = Instant::now();
        for batch in batches {
            append_transaction(&peer, &table, batch, &mut known).await?;
        }
        pairs.push(Pair::counted(n as u64, ours, n as u64, started.elapsed()));
    }
    let batched = Figure::paired(&pairs);
    if options.wants("postgres_append_batched") {
        figures.push(("postgres_append_batched", batched));
    }

    if options.wants("postgres_append_single") {
        progress(
            options,
            &format!(
                "postgres_append_single: {} single events from {} writers",
                options.single, options.writers
            ),
        );
        let writers = options.writers.max(1);
        let per_turn = (options.single / writers / TURNS).max(1) as usize;
        let mut clients = Vec::with_capacity(writers as usize);
        for _ in 0..writers {
            clients.push(Arc::new(connect(url).await?));
        }
        let mut ledger_sources: Vec<Synthetic> =
            (0..writers).map(|w| Synthetic::new(1_000 + w)).collect();
        // The peer's writers submit the same events, each tracking the
        // versions of its own streams.
        let mut peer_sources: Vec<(Synthetic, HashMap<String, i32>)> = (0..writers)
            .map(|w| (Synthetic::new(1_000 + w), HashMap::new()))
            .collect();
        let mut pairs = Vec::new();
        for _ in 0..TURNS {
            let (ours, back) = append::ledger_singles(&ledger, ledger_sources, per_turn).await?;
            ledger_sources = back;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for (synthetic, client) in peer_sources.into_iter().zip(&clients) {
                let client = Arc::clone(client);
                let table = table.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut synthetic, mut known) = synthetic;
                    for event in synthetic.take(per_turn) {
                        append_transaction(&client, &table, vec![event], &mut known).await?;
                    }
                    Ok::<_, BenchError>((synthetic, known))
                }));
            }
            peer_sources = Vec::with_capacity(tasks.len());
            for task in tasks {
                peer_sources.push(task.await??);
            }
            let count = per_turn as u64 * writers;
            pairs.push(Pair::counted(count, ours, count, started.elapsed()));
        }
        figures.push(("postgres_append_single", Figure::paired(&pairs)));
    }

    if options.wants("postgres_replay") {
        progress(options, "postgres_replay: the whole log, in order");
        let head = ledger.head().position;
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let mut count = 0u64;
            for event in ledger.replay_typed(0) {
                std::hint::black_box(&event?);
                count += 1;
            }
            let ours = started.elapsed();
            let started = Instant::now();
            let theirs = replay(&peer, &table).await?;
            let took = started.elapsed();
            ensure!(
                count == head && theirs == head,
                "replays read {count} and {theirs} events of {head}"
            );
            pairs.push(Pair::counted(count, ours, theirs, took));
        }
        figures.push(("postgres_replay", Figure::paired(&pairs)));
    }

    if options.wants("postgres_stream_read") {
        progress(
            options,
            "postgres_stream_read: one stream's events at a time",
        );
        figures.push((
            "postgres_stream_read",
            stream_reads(&ledger, &peer, &table).await?,
        ));
    }
    ledger.close();
    Ok(figures)
}

/// An event of a peer transaction, with the version its writer expects.
struct Row {
    envelope: Envelope,
    stream: String,
    data: serde_json::Value,
}

/// One append transaction: lock, head, expected versions, chain, insert
/// with `on conflict (id) do nothing`, commit. Every event here is new and
/// in order, so a duplicate or a version conflict is an error.
async fn append_transaction(
    client: &Client,
    table: &str,
    events: Vec<Envelope>,
    known: &mut HashMap<String, i32>,
) -> Result<()> {
    let rows: Vec<Row> = events
        .into_iter()
        .map(|envelope| Row {
            stream: envelope.subject.to_string(),
            data: envelope.data.clone(),
            envelope,
        })
        .collect();
    let streams: Vec<String> = rows.iter().map(|r| r.stream.clone()).collect();
    client.batch_execute("begin").await?;
    let result = async {
        client
            .execute("select pg_advisory_xact_lock($1)", &[&LOG_LOCK])
            .await?;
        let head = client
            .query_opt(
                &format!("select position, hash from {table} order by position desc limit 1"),
                &[],
            )
            .await?;
        let (mut position, mut prevhash) = match head {
            Some(row) => (row.get::<_, i64>(0), hex::encode(row.get::<_, Vec<u8>>(1))),
            None => (0, crate::chain::GENESIS.to_owned()),
        };
        let streams = &streams;
        let current = client
            .query(
                &format!(
                    "select stream, max(version) from {table} where stream = any($1) group by stream"
                ),
                &[streams],
            )
            .await?;
        let mut versions: HashMap<String, i32> = current
            .into_iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i32>(1)))
            .collect();
        let recorded: DateTime<Utc> = Utc::now();
        let recordedtime = recorded.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let n = rows.len();
        let mut positions = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut stream_names = Vec::with_capacity(n);
        let mut stream_versions = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut datas = Vec::with_capacity(n);
        let mut recordeds = Vec::with_capacity(n);
        let mut prevhashes = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for row in rows {
            // The writer expects each stream where it last left it: the
            // expected-version check of optimistic concurrency.
            let version = versions.entry(row.stream.clone()).or_insert(0);
            let seen = known.entry(row.stream.clone()).or_insert(0);
            ensure!(
                *version == *seen,
                "stream {} is at version {version}, its writer expected {seen}",
                row.stream
            );
            let expected = *version + 1;
            *version = expected;
            *seen = expected;
            position += 1;
            let mut event = CommittedEvent {
                envelope: row.envelope,
                ledger: LedgerAttributes {
                    position: position as u64,
                    streamversion: expected as u64,
                    recordedtime: recordedtime.clone(),
                    prevhash: prevhash.clone(),
                    hash: String::new(),
                },
            };
            event.ledger.hash = crate::chain::hash(&event);
            let mut raw_prev = vec![0u8; 32];
            let mut raw_hash = vec![0u8; 32];
            hex::decode_to_slice(&prevhash, &mut raw_prev)
                .map_err(|e| BenchError::Check(e.to_string()))?;
            hex::decode_to_slice(&event.ledger.hash, &mut raw_hash)
                .map_err(|e| BenchError::Check(e.to_string()))?;
            prevhash = std::mem::take(&mut event.ledger.hash);
            positions.push(position);
            ids.push(event.envelope.id);
            stream_names.push(row.stream);
            stream_versions.push(expected);
            types.push(event.envelope.event_type.as_str());
            datas.push(row.data);
            recordeds.push(recorded);
            prevhashes.push(raw_prev);
            hashes.push(raw_hash);
        }
        let inserted = client
            .execute(
                &format!(
                    "insert into {table} (position, id, stream, version, type, data, recorded, prevhash, hash)
                     select * from unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[], $5::text[],
                                          $6::jsonb[], $7::timestamptz[], $8::bytea[], $9::bytea[])
                     on conflict (id) do nothing"
                ),
                &[
                    &positions,
                    &ids,
                    &stream_names,
                    &stream_versions,
                    &types,
                    &datas,
                    &recordeds,
                    &prevhashes,
                    &hashes,
                ],
            )
            .await?;
        ensure!(
            inserted == n as u64,
            "the peer took {inserted} of {n} new events"
        );
        Ok(())
    }
    .await;
    match result {
        Ok(()) => client.batch_execute("commit").await?,
        Err(error) => {
            let _ = client.batch_execute("rollback").await;
            return Err(error);
        }
    }
    Ok(())
}

/// A row of the peer's log, decoded.
#[derive(Debug)]
#[allow(dead_code, reason = "read to be decoded, as a reader of the log would")]
struct PeerEvent<D> {
    position: i64,
    id: Uuid,
    stream: String,
    version: i32,
    event_type: EventType,
    data: D,
    recorded: DateTime<Utc>,
    prevhash: Vec<u8>,
    hash: Vec<u8>,
}

impl PeerEvent<serde_json::Value> {
    /// A row with its `data` as a JSON value, as the ledger's stream read
    /// returns it.
    fn from_row(row: &tokio_postgres::Row) -> Result<Self> {
        let data = row.try_get(5)?;
        Self::with_data(row, |_| Ok(data))
    }
}

impl PeerEvent<std::result::Result<EventData, InvalidEvent>> {
    /// A row with its `data` read as the type's data, straight from the
    /// `jsonb`'s text with the ledger's own typed decoder (upcasting
    /// included), as the ledger's replay gives it.
    fn typed_from_row(row: &tokio_postgres::Row) -> Result<Self> {
        let data: Json<&RawValue> = row.try_get(5)?;
        Self::with_data(row, |event_type| {
            Ok(EventData::from_json_str(event_type, data.0.get()))
        })
    }
}

impl<D> PeerEvent<D> {
    fn with_data(
        row: &tokio_postgres::Row,
        data: impl FnOnce(EventType) -> Result<D>,
    ) -> Result<Self> {
        let type_text: &str = row.try_get(4)?;
        let event_type = EventType::parse(type_text)
            .ok_or_else(|| BenchError::Check(format!("unknown event type {type_text}")))?;
        Ok(Self {
            position: row.try_get(0)?,
            id: row.try_get(1)?,
            stream: row.try_get(2)?,
            version: row.try_get(3)?,
            event_type,
            data: data(event_type)?,
            recorded: row.try_get(6)?,
            prevhash: row.try_get(7)?,
            hash: row.try_get(8)?,
        })
    }
}

const COLUMNS: &str = "position, id, stream, version, type, data, recorded, prevhash, hash";

/// Reads the peer's whole log in position order, decoding every row as it
/// streams in, its data into the type's data as the ledger's replay does;
/// returns how many events it read.
async fn replay(client: &Client, table: &str) -> Result<u64> {
    use futures::TryStreamExt;
    let rows = client
        .query_raw(
            &format!("select {COLUMNS} from {table} order by position"),
            std::iter::empty::<i64>(),
        )
        .await?;
    futures::pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        std::hint::black_box(PeerEvent::typed_from_row(&row)?);
        count += 1;
    }
    Ok(count)
}

/// `postgres_stream_read`: the ledger's read of one stream's events beside
/// the peer's `where stream = $1 order by version`, over the log's person
/// streams, in turns; the p99 is each side's over all its reads.
async fn stream_reads(ledger: &Ledger, peer: &Client, table: &str) -> Result<Figure> {
    let mut subjects: Vec<Subject> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for event in ledger.events_iter(0) {
        let subject = event?.envelope.subject;
        if seen.insert(subject.to_string()) {
            subjects.push(subject);
        }
        if subjects.len() >= STREAM_READS {
            break;
        }
    }
    ensure!(!subjects.is_empty(), "the log has no streams to read");
    let statement = peer
        .prepare(&format!(
            "select {COLUMNS} from {table} where stream = $1 order by version"
        ))
        .await?;
    let mut ours_all = Vec::new();
    let mut theirs_all = Vec::new();
    let mut pairs = Vec::new();
    for _ in 0..TURNS {
        let mut ours = Duration::ZERO;
        for subject in &subjects {
            let started = Instant::now();
            let events = ledger.stream(subject)?;
            let took = started.elapsed();
            ensure!(!events.is_empty(), "the ledger's stream {subject} is empty");
            ours += took;
            ours_all.push(took);
        }
        let mut theirs = Duration::ZERO;
        for subject in &subjects {
            let started = Instant::now();
            let rows = peer.query(&statement, &[&subject.to_string()]).await?;
            let events = rows
                .iter()
                .map(PeerEvent::from_row)
                .collect::<Result<Vec<_>>>()?;
            let took = started.elapsed();
            ensure!(!events.is_empty(), "the peer's stream {subject} is empty");
            theirs += took;
            theirs_all.push(took);
        }
        let reads = subjects.len() as u64;
        pairs.push(Pair::counted(reads, ours, reads, theirs));
    }
    let p99 = |mut all: Vec<Duration>| {
        all.sort_unstable();
        all[(all.len() * 99 / 100).min(all.len() - 1)].as_secs_f64() * 1e3
    };
    Ok(Figure {
        p99_ms: Some(p99(ours_all)),
        baseline_p99_ms: Some(p99(theirs_all)),
        unit: "reads/s",
        ..Figure::paired(&pairs)
    })
}
