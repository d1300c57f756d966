//! Writing the package: each table as a CSV file, hashed and counted as it
//! is written, then the descriptor; all under temporary names, renamed into
//! place only once every file is complete.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rotation_projections::dataset::Dataset;
use sha2::{Digest, Sha256};

use super::cells::{jobseeker_cells, release_cells, substitution_cells};
use super::descriptor::descriptor;
use super::dictionary::{TABLES, Table};
use super::pseudonym::Pseudonymiser;
use super::{ExportError, ExportOptions, ExportSummary, ProvenanceCheckpoint};

/// A writer that hashes and counts what passes through it, so that a file's
/// digest and size are known without reading it back.
struct Hashing<W> {
    inner: W,
    digest: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.digest.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file written under its temporary name, with its digest and size.
pub(super) struct Written {
    pub(super) file: String,
    pub(super) rows: usize,
    pub(super) bytes: u64,
    pub(super) sha256: String,
}

/// The temporary name a file is written under until the whole package is.
fn partial(dir: &Path, file: &str) -> PathBuf {
    dir.join(format!(".{file}.partial"))
}

/// Writes one table: the header from `table`, then one record per row,
/// sorted by the key column's pseudonym. Sorting by pseudonym also keeps
/// the order from telling anything about when entities were recorded.
///
/// Rows are sorted by reference and turned into cells one at a time, so
/// that the text of a whole table is never held in memory.
fn write_table<R>(
    dir: &Path,
    table: &Table,
    rows: &[R],
    key: impl Fn(&R) -> String,
    cells: impl Fn(&R) -> Vec<(&'static str, String)>,
) -> Result<Written, ExportError> {
    let mut sorted: Vec<(String, &R)> = rows.iter().map(|row| (key(row), row)).collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ExportError::PseudonymCollision {
            table: table.name,
            pseudonym: pair[0].0.clone(),
        });
    }

    let file = table.file();
    let path = partial(dir, &file);
    let io_error = |source: io::Error| ExportError::Io {
        path: dir.join(&file),
        source,
    };
    let handle = File::create(&path).map_err(io_error)?;
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Hashing {
            inner: BufWriter::new(handle),
            digest: Sha256::new(),
            bytes: 0,
        });
    let csv_error = |e: csv::Error| io_error(io::Error::other(e));
    writer
        .write_record(table.columns.iter().map(|c| c.name))
        .map_err(csv_error)?;
    for (_, row) in &sorted {
        let record = cells(row);
        debug_assert!(
            record
                .iter()
                .map(|(name, _)| *name)
                .eq(table.columns.iter().map(|c| c.name)),
            "the cells of {} follow its columns",
            table.name
        );
        writer
            .write_record(record.iter().map(|(_, value)| value))
            .map_err(csv_error)?;
    }
    let hashing = writer.into_inner().map_err(|e| io_error(e.into_error()))?;
    let Hashing {
        inner,
        digest,
        bytes,
    } = hashing;
    let handle = inner.into_inner().map_err(|e| io_error(e.into_error()))?;
    handle.sync_all().map_err(io_error)?;
    Ok(Written {
        file,
        rows: sorted.len(),
        bytes,
        sha256: hex::encode(digest.finalize()),
    })
}

/// The name of the descriptor file.
const DESCRIPTOR: &str = "datapackage.json";

pub(super) fn write_package(
    dataset: &Dataset,
    options: &ExportOptions,
    head_position: u64,
    head_hash: String,
    checkpoint: Option<&ProvenanceCheckpoint>,
) -> Result<ExportSummary, ExportError> {
    let dir = &options.out;
    fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        path: dir.clone(),
        source,
    })?;
    let written = match write_files(dataset, options, head_position, &head_hash, checkpoint) {
        Ok(written) => written,
        Err(error) => {
            // A failed export leaves nothing behind but what was there.
            for table in &TABLES {
                let _ = fs::remove_file(partial(dir, &table.file()));
            }
            let _ = fs::remove_file(partial(dir, DESCRIPTOR));
            return Err(error);
        }
    };
    // The descriptor goes last, so that a directory whose datapackage.json
    // is in place holds the files it describes.
    let files = written.iter().map(|w| w.file.as_str()).chain([DESCRIPTOR]);
    for file in files {
        fs::rename(partial(dir, file), dir.join(file)).map_err(|source| ExportError::Io {
            path: dir.join(file),
            source,
        })?;
    }
    Ok(ExportSummary {
        head_position,
        head_hash,
        rows: TABLES
            .iter()
            .zip(&written)
            .map(|(table, w)| (table.name.to_owned(), w.rows))
            .collect(),
    })
}

/// Writes the three tables and the descriptor under their temporary names.
fn write_files(
    dataset: &Dataset,
    options: &ExportOptions,
    head_position: u64,
    head_hash: &str,
    checkpoint: Option<&ProvenanceCheckpoint>,
) -> Result<[Written; 3], ExportError> {
    let dir = &options.out;
    let pseudonyms = Pseudonymiser::new(&options.key);
    let [jobseekers, releases, substitutions] = &TABLES;
    let p = &pseudonyms;
    // The tables are independent: each is written on a thread of its own.
    let written = std::thread::scope(|scope| {
        let jobseekers = scope.spawn(|| {
            write_table(
                dir,
                jobseekers,
                &dataset.jobseekers,
                |r| p.of(r.pid),
                |r| jobseeker_cells(r, p),
            )
        });
        let releases = scope.spawn(|| {
            write_table(
                dir,
                releases,
                &dataset.releases,
                |r| p.of(r.rid),
                |r| release_cells(r, p),
            )
        });
        let substitutions = write_table(
            dir,
            substitutions,
            &dataset.substitutions,
            |r| p.of(r.sid),
            |r| substitution_cells(r, p),
        );
        let join = |handle: std::thread::ScopedJoinHandle<'_, Result<Written, ExportError>>| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        Ok::<_, ExportError>([join(jobseekers)?, join(releases)?, substitutions?])
    })?;
    let descriptor = descriptor(options, head_position, head_hash, &written, checkpoint);
    let mut json = serde_json::to_vec_pretty(&descriptor).expect("the descriptor serialises");
    json.push(b'\n');
    fs::write(partial(dir, DESCRIPTOR), json).map_err(|source| ExportError::Io {
        path: dir.join(DESCRIPTOR),
        source,
    })?;
    Ok(written)
}
