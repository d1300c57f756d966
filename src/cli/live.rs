//! The read-only verbs against a store that a running server holds, and
//! `backup`: each finds the store held, reads the server's `serve.json`
//! (`rotation_ledger::live`) and asks the server over HTTP, printing
//! what the same verb prints from a stopped store, with the same exit
//! status.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rotation_ledger::chain::Verification;
use rotation_ledger::http::local::LocalServer;
use rotation_ledger::ledger::{BackupReport, Ledger, RejectionRecord, Stats};
use rotation_ledger::live::ServeFile;

use super::{DataDir, configured, open_existing};

/// Events or rejections a page, the server's largest.
const PAGE: usize = 10_000;

/// Where a verb finds the ledger.
pub(super) enum Where {
    /// The store is free: the verb opens it.
    Here,
    /// A server holds the store and has told how to reach it.
    Server(LocalServer),
}

/// How long a verb waits for a store's lock to go before it calls the
/// store held: a process that just closed its ledger (a script's
/// previous verb) releases it from sled's threads some milliseconds later.
const RELEASE_PATIENCE: Duration = Duration::from_secs(2);

/// Whether `data` is held by a running server, and how to reach it.
pub(super) fn locate(data: &DataDir) -> Result<Where> {
    if !Ledger::held_elsewhere(&data.dir) {
        // A file left by a killed server is stale: the store is free.
        return Ok(Where::Here);
    }
    match ServeFile::read(&data.dir)? {
        Some(file) => Ok(Where::Server(LocalServer::new(file))),
        None if !held_for_long(&data.dir) => Ok(Where::Here),
        None => Err(held(&data.dir)),
    }
}

/// Whether the store in `dir` stays held for [`RELEASE_PATIENCE`].
fn held_for_long(dir: &Path) -> bool {
    let deadline = Instant::now() + RELEASE_PATIENCE;
    while Ledger::held_elsewhere(dir) {
        if Instant::now() >= deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Refuses to open a store another process holds, saying what to do.
pub(super) fn ensure_free(dir: &Path) -> Result<()> {
    if Ledger::held_elsewhere(dir) && held_for_long(dir) {
        return Err(match ServeFile::read(dir).ok().flatten() {
            Some(file) => anyhow::anyhow!(
                "the ledger in {} is held by the server at {} (process {}): this verb cannot \
                 run beside it. `verify`, `dump`, `rejections`, `stats`, `checkpoint-key`, \
                 `prove` and `backup` ask the server themselves; for this one, stop the server first",
                dir.display(),
                file.url,
                file.pid
            ),
            None => held(dir),
        });
    }
    Ok(())
}

fn held(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "the ledger in {dir} is held by another process, most likely a running `serve`, \
         and {file} is missing, so there is no way to ask it here. Ask the server over HTTP \
         with an admin token (GET /v1/verify, /v1/events, /v1/rejections, /v1/stats), or \
         stop it and run this again; a server started by this version writes {file} once \
         it listens",
        dir = dir.display(),
        file = ServeFile::path(dir).display()
    )
}

/// `dump` from the server: pages of events up to the head of the first
/// page, so that the dump is the log as of its start, as from a stopped
/// store.
pub(super) async fn dump(server: &LocalServer, after: u64) -> Result<ExitCode> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut after = after;
    let mut until = None;
    loop {
        let page = server.events(after, PAGE).await?;
        let until = *until.get_or_insert(page.head_position);
        for event in &page.events {
            out.write_all(event.get().as_bytes())?;
            out.write_all(b"\n")?;
        }
        if page.events.is_empty() || page.next_after >= until {
            break;
        }
        after = page.next_after;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `verify`'s verdict, printed; exits 1 when the chain is broken.
pub(super) fn print_verdict(verdict: &Verification, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(verdict)?);
    } else if verdict.ok {
        println!(
            "ok: the chain verifies; head position {}, hash {}",
            verdict.head_position, verdict.head_hash
        );
    } else {
        println!(
            "broken: first bad position {} ({})",
            verdict.first_bad_position.unwrap_or_default(),
            verdict.problem.as_deref().unwrap_or("unknown")
        );
    }
    // A broken chain is an answer, not a failure of the command,
    // but scripts need to see it.
    Ok(if verdict.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `rejections` from the server, page by page.
pub(super) async fn rejections(server: &LocalServer, json: bool) -> Result<ExitCode> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut after = 0;
    loop {
        let page = server.rejections(after, PAGE).await?;
        for record in &page.rejections {
            print_rejection(&mut out, record, json)?;
        }
        if page.rejections.is_empty() {
            break;
        }
        after = page.next_after;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One line of `rejections`.
pub(super) fn print_rejection(
    out: &mut impl Write,
    record: &RejectionRecord,
    json: bool,
) -> Result<()> {
    if json {
        serde_json::to_writer(&mut *out, record)?;
        writeln!(out)?;
    } else {
        let id = record.event_id.as_deref().unwrap_or("-");
        writeln!(out, "{id} {} {}", record.code, record.message)?;
    }
    Ok(())
}

/// `stats`' lines.
pub(super) fn print_stats(stats: &Stats) {
    println!("events      {}", stats.events);
    println!("streams     {}", stats.streams);
    println!("rejections  {}", stats.rejections);
    println!("head hash   {}", stats.head_hash);
    println!("recorded    {}", stats.recordedtime);
    println!("disk bytes  {}", stats.disk_bytes);
    // Profiles committed before sealing stay in clear: the operator
    // should know how many, and where a resealed log came from.
    println!("clear profiles {}", stats.clear_profiles);
    if let Some(from) = &stats.resealed_from {
        println!(
            "resealed from position {} hash {}",
            from.position, from.hash
        );
    }
}

/// `backup`: a consistent copy into `out`, by the server that holds the
/// store, or here when none does.
pub(super) async fn backup(data: &DataDir, out: &Path) -> Result<ExitCode> {
    let out: PathBuf =
        std::path::absolute(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    if std::fs::read_dir(&out).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!(
            "{} is not empty: a backup goes into a new or empty directory",
            out.display()
        );
    }
    let report = match locate(data)? {
        Where::Server(server) => server.backup(&out).await?,
        Where::Here => {
            let ledger = open_existing(data)?;
            let outside = rotation_ledger::ledger::outside_key_files(configured(), &data.dir);
            let report = ledger.backup(&out, outside).await;
            ledger.close();
            report?
        }
    };
    print_backup(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_backup(report: &BackupReport) {
    println!(
        "backed up {} events into {}; head hash {}",
        report.head_position,
        report.out.display(),
        report.head_hash
    );
    println!(
        "copied {} store keys and {} files; commits waited {} ms",
        report.store_keys,
        report.files.len(),
        report.paused_ms
    );
}
