//! The `import` and `export` figures, on a realistic simulated history
//! rather than the synthetic log: every line goes through all the rules,
//! and the dataset has every table to fill.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::pairs::Pair;
use super::synthetic::Synthetic;
use super::{BATCH, Figure, Result};
use crate::ledger::{Ledger, LedgerOptions};

/// Turns of `import`: each imports the history into a fresh ledger and
/// appends as many synthetic events to another fresh ledger with
/// `append_batched`'s ledger side, the two taking turns at going first.
const IMPORT_TURNS: usize = 3;

/// `import`: a realistic simulated history, every line through all the
/// rules, in [`IMPORT_TURNS`] pairs with `append_batched`'s ledger side
/// appending as many events to a fresh ledger; both sides' times include
/// closing, which stores the last snapshot of the stream states. The last
/// import is left in `root/import` for `export`. Returns the figure and
/// the number of events committed.
pub(super) async fn import_history(
    root: &std::path::Path,
    jobseekers: u32,
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
    // Every line is an event: the baseline appends as many.
    let mut lines: u64 = 0;
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        for simulated in crate::simulate::simulate(&scenario) {
            out.write_all(simulated.line.as_bytes())?;
            out.write_all(b"\n")?;
            lines += 1;
        }
        out.flush()?;
    }
    let mut pairs = Vec::with_capacity(IMPORT_TURNS);
    let mut accepted = 0;
    for turn in 0..IMPORT_TURNS {
        // The two sides take turns at going first.
        let (imported, appended) = if turn % 2 == 0 {
            let imported = import_once(root, &path).await?;
            (imported, append_batched_fresh(root, lines).await?)
        } else {
            let appended = append_batched_fresh(root, lines).await?;
            (import_once(root, &path).await?, appended)
        };
        let (baseline_count, baseline_took) = appended;
        pairs.push(Pair::counted(
            imported.lines,
            imported.took,
            baseline_count,
            baseline_took,
        ));
        accepted = imported.accepted;
    }
    Ok((Figure::paired(&pairs), accepted))
}

/// What one import of the history did.
struct Imported {
    /// Lines taken: accepted or duplicate.
    lines: u64,
    accepted: u64,
    /// Including the close.
    took: Duration,
}

/// One import of the history at `path` into a fresh `root/import`, closed.
async fn import_once(root: &std::path::Path, path: &std::path::Path) -> Result<Imported> {
    let dir = root.join("import");
    let _ = std::fs::remove_dir_all(&dir);
    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let started = Instant::now();
    let summary = crate::import::import(&ledger, input, "history.jsonl", |_, _| {}).await?;
    // Closing stores the last snapshot of the stream states: part of the
    // import's work, so it is timed with it.
    ledger.close();
    let took = started.elapsed();
    ensure!(
        summary.rejected == 0,
        "the simulated history was not accepted in full: {:?}",
        summary.problems.first()
    );
    Ok(Imported {
        lines: summary.accepted + summary.duplicate,
        accepted: summary.accepted,
        took,
    })
}

/// `append_batched`'s ledger side on a fresh ledger: `count` synthetic
/// events (made before the clock starts) in batches of [`BATCH`], closed
/// as the import is; the events committed and how long it took.
async fn append_batched_fresh(root: &std::path::Path, count: u64) -> Result<(u64, Duration)> {
    let dir = root.join("import-baseline");
    let _ = std::fs::remove_dir_all(&dir);
    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    let batches = tokio::task::spawn_blocking(move || {
        let events = Synthetic::spanning(1, count).take(count as usize);
        events.chunks(BATCH).map(<[_]>::to_vec).collect::<Vec<_>>()
    })
    .await?;
    let started = Instant::now();
    super::append::ledger_batches(&ledger, batches).await?;
    let committed = ledger.head().position;
    ledger.close();
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((committed, took))
}

/// `export`: the evaluation dataset of the imported history, written by a
/// child `rotation-ledger export` so that its time and peak memory are its
/// own; beside `replay`'s events/s. It is run on half the log too (as of
/// the middle event's recorded time) to show the cost is linear.
pub(super) fn export_dataset(
    root: &std::path::Path,
    events: u64,
    replay_per_s: f64,
) -> Result<Figure> {
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
        ensure!(status == 0, "export exited with status {status}");
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
