//! The verbs on the log itself: `import` appends, the others read
//! (`dump`, `verify`, `rejections`, `stats`).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use rotation_ledger::ledger::LedgerOptions;

use super::{DataDir, open, open_existing, open_existing_with, progress_bar};

/// `dump`: the committed log as JSON Lines.
pub(super) fn dump(data: &DataDir, after: u64) -> Result<ExitCode> {
    let ledger = open_existing_with(data, LedgerOptions::one_pass())?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for item in ledger.events_json(after) {
        let (_, json) = item?;
        out.write_all(&json)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `verify`: the hash chain recomputed; exits 1 when it is broken.
pub(super) fn verify(data: &DataDir, json: bool) -> Result<ExitCode> {
    let ledger = open_existing(data)?;
    let verdict = ledger.verify()?;
    if json {
        println!("{}", serde_json::to_string(&verdict)?);
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

/// `rejections`: every rejected submission, one a line.
pub(super) fn rejections(data: &DataDir, json: bool) -> Result<ExitCode> {
    let ledger = open_existing(data)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for record in ledger.rejections(0) {
        let record = record?;
        if json {
            serde_json::to_writer(&mut out, &record)?;
            writeln!(out)?;
        } else {
            let id = record
                .event_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string());
            writeln!(out, "{id} {} {}", record.code, record.message)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `stats`: counts and the size on disk.
pub(super) fn stats(data: &DataDir) -> Result<ExitCode> {
    let ledger = open_existing(data)?;
    let head = ledger.head();
    let streams = ledger.stream_count();
    let rejections = ledger.rejections(0).count();
    println!("events      {}", head.position);
    println!("streams     {streams}");
    println!("rejections  {rejections}");
    println!("head hash   {}", head.hash);
    println!("recorded    {}", head.recordedtime);
    println!("disk bytes  {}", ledger.size_on_disk()?);
    // Profiles committed before sealing stay in clear: the operator
    // should know how many, and where a resealed log came from.
    println!("clear profiles {}", ledger.clear_profiles()?);
    if let Some(from) = ledger.resealed_from()? {
        println!(
            "resealed from position {} hash {}",
            from.position, from.hash
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Exits 0 when everything was committed (or already there), 2 when some
/// of the file was rejected and the rest committed.
pub(super) async fn import(data: &DataDir, file: &PathBuf) -> Result<ExitCode> {
    let ledger = open(data)?;
    let name = file.display().to_string();
    let (input, size): (Box<dyn std::io::BufRead + Send>, u64) = if name == "-" {
        (Box::new(BufReader::new(std::io::stdin())), 0)
    } else {
        let f = File::open(file).with_context(|| format!("cannot open {name}"))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(BufReader::with_capacity(1 << 20, f)), size)
    };
    let bar = progress_bar(size, "{bar:40} {bytes}/{total_bytes} {msg} ({eta})");
    let summary = rotation_ledger::import::import(&ledger, input, &name, |read, so_far| {
        bar.set_position(read);
        bar.set_message(so_far.to_string());
    })
    .await?;
    bar.finish_and_clear();
    for (line, code, message) in &summary.problems {
        eprintln!("{name}:{line}: {code}: {message}");
    }
    println!("{summary}");
    ledger.close();
    if summary.accepted + summary.duplicate + summary.rejected == 0 && size > 0 {
        bail!("{name} holds no events");
    }
    // The rest is committed; the status tells a script that part of the
    // file was refused.
    Ok(if summary.rejected > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
