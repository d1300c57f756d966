//! The verbs on the log itself: `import` appends, the others read
//! (`dump`, `verify`, `rejections`, `stats`), from the store or, when a
//! running server holds it, from that server (`live`).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use rotation_ledger::ledger::LedgerOptions;

use super::live::{self, Where};
use super::{DataDir, open, open_existing, open_existing_with, progress_bar};

/// `dump`: the committed log as JSON Lines.
pub(super) async fn dump(data: &DataDir, after: u64) -> Result<ExitCode> {
    if let Where::Server(server) = live::locate(data)? {
        return live::dump(&server, after).await;
    }
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
pub(super) async fn verify(data: &DataDir, json: bool) -> Result<ExitCode> {
    let verdict = match live::locate(data)? {
        Where::Server(server) => server.verify().await?,
        Where::Here => open_existing(data)?.verify()?,
    };
    live::print_verdict(&verdict, json)
}

/// `rejections`: every rejected submission, one a line.
pub(super) async fn rejections(data: &DataDir, json: bool) -> Result<ExitCode> {
    if let Where::Server(server) = live::locate(data)? {
        return live::rejections(&server, json).await;
    }
    let ledger = open_existing(data)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for record in ledger.rejections(0) {
        live::print_rejection(&mut out, &record?, json)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `stats`: counts and the size on disk.
pub(super) async fn stats(data: &DataDir) -> Result<ExitCode> {
    let stats = match live::locate(data)? {
        Where::Server(server) => server.stats().await?,
        Where::Here => open_existing(data)?.stats()?,
    };
    live::print_stats(&stats);
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
