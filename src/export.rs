//! The evaluation data package (contract section 8): the committed log as
//! of a recorded time, folded into rows by
//! [`rotation_projections::dataset`], pseudonymised, and written as three
//! CSV files with a Frictionless Data Package (v2) descriptor that carries
//! the tables' schemas and the export's provenance.
//!
//! This module owns the data dictionary: [`TABLES`] holds every column's
//! name, type, allowed values and description, once. The descriptor's field
//! descriptions and the column tables of `docs/datasets.md`
//! ([`data_dictionary`]) are both generated from it, and a test keeps the
//! document in step.
//!
//! Nothing written depends on when the export ran: the same log, options
//! and key give the same bytes, so an export can be reproduced and checked
//! later.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use rotation_events::{
    Benefit, CommittedEvent, EndReason, Ethnicity, InvalidEvent, ProgressionKind, ReferredBy,
    Sector, Sex, Size, Status, TypedEvent, YesNo,
};
use rotation_projections::dataset::{
    AgeBand, DEFINITIONS_VERSION, Dataset, DatasetFold, JobseekerRow, ReleaseRow, SubstitutionRow,
    TrainingOutcome,
};
use rotation_projections::outcomes::FollowUp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What to export, where, and under which key.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The directory the package is written to; created when missing.
    pub out: PathBuf,
    /// The study's pseudonymisation key: the key file's bytes without one
    /// trailing newline (see [`key_from_file`]).
    pub key: Vec<u8>,
    /// Only events recorded by then are used.
    pub as_of: DateTime<Utc>,
    /// The day outcomes are judged at.
    pub reference_date: NaiveDate,
    /// The partnerships to export; `None` exports all.
    pub partnerships: Option<BTreeSet<String>>,
    /// Recorded in the provenance, so that a reader knows which program's
    /// definitions produced the rows.
    pub program_version: String,
}

/// What an export used and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The position of the last event used (0 for an empty log).
    pub head_position: u64,
    /// Its hash (64 zeros for an empty log).
    pub head_hash: String,
    /// Rows per table: `jobseekers`, `releases`, `substitutions`.
    pub rows: BTreeMap<String, usize>,
}

/// Why an export failed. A failed export leaves no partial files: they are
/// written under temporary names, renamed into place only once all are
/// complete, the descriptor last.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the pseudonymisation key is empty")]
    EmptyKey,
    #[error("reading the log: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the log is not in position order: expected position {expected}, got {found}")]
    OutOfOrder { expected: u64, found: u64 },
    #[error("event at position {position}: recordedtime `{text}` is not RFC 3339")]
    RecordedTime {
        position: u64,
        text: String,
        #[source]
        source: chrono::ParseError,
    },
    #[error("event at position {position} cannot be read: {source}")]
    Undecodable {
        position: u64,
        #[source]
        source: InvalidEvent,
    },
    #[error("two {table} share the pseudonym {pseudonym}; export again under another key")]
    PseudonymCollision {
        table: &'static str,
        pseudonym: String,
    },
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The name of the pseudonymisation method, as the provenance records it.
pub const PSEUDONYMISATION_METHOD: &str = "HMAC-SHA256";

/// How many lower-case hex characters of the HMAC a pseudonym keeps: 64
/// bits, so that a collision among a million ids has a chance of about one
/// in 36 million (and is refused when it happens).
pub const PSEUDONYM_LENGTH: usize = 16;

/// The key id recorded in the provenance: the first 8 hex characters of the
/// key's SHA-256. It tells two keys apart without revealing either.
pub fn key_id(key: &[u8]) -> String {
    let mut id = hex::encode(Sha256::digest(key));
    id.truncate(8);
    id
}

/// The key in a key file: its bytes without one trailing newline (`\n` or
/// `\r\n`), so that a key written by an editor or by `echo` is the same key
/// as one written without it.
pub fn key_from_file(bytes: &[u8]) -> Vec<u8> {
    let key = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    key.to_vec()
}

/// Exports the committed log as a data package into `options.out`.
///
/// `events` is the committed log in position order; the writer stops at the
/// first event recorded after `as_of` (recordedtime is non-decreasing in
/// position), so reruns reproduce old exports byte for byte.
pub fn export<E: std::error::Error + Send + Sync + 'static>(
    events: impl Iterator<Item = Result<CommittedEvent, E>>,
    options: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    export_decoded(events.map(|item| item.map(TypedEvent::new)), options)
}

/// [`export`] of events whose data is already decoded.
pub fn export_decoded<E: std::error::Error + Send + Sync + 'static>(
    events: impl Iterator<Item = Result<TypedEvent, E>>,
    options: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    if options.key.is_empty() {
        return Err(ExportError::EmptyKey);
    }
    let mut fold = DatasetFold::new(options.partnerships.clone());
    let mut head_position = 0;
    let mut head_hash = crate::chain::GENESIS.to_owned();
    // The ledger commits in groups that share one recordedtime, so a time
    // already found to be within `as_of` need not be parsed again.
    let mut within: Option<String> = None;
    for decoded in events {
        let TypedEvent { event, data } = decoded.map_err(|e| ExportError::Read(Box::new(e)))?;
        let position = event.ledger.position;
        if position != head_position + 1 {
            return Err(ExportError::OutOfOrder {
                expected: head_position + 1,
                found: position,
            });
        }
        if within.as_deref() != Some(event.ledger.recordedtime.as_str()) {
            let recorded =
                DateTime::parse_from_rfc3339(&event.ledger.recordedtime).map_err(|source| {
                    ExportError::RecordedTime {
                        position,
                        text: event.ledger.recordedtime.clone(),
                        source,
                    }
                })?;
            if recorded > options.as_of {
                break;
            }
            within = Some(event.ledger.recordedtime.clone());
        }
        fold.try_apply_with(&event, || data)
            .map_err(|source| ExportError::Undecodable { position, source })?;
        head_position = position;
        head_hash = event.ledger.hash;
    }
    let folded = std::time::Instant::now();
    let dataset = fold.finish(options.reference_date);
    let finished = std::time::Instant::now();
    let summary = write_package(&dataset, options, head_position, head_hash);
    tracing::debug!(
        finish = ?(finished - folded),
        write = ?finished.elapsed(),
        "export written"
    );
    summary
}

/// A column type of the Frictionless Table Schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Integer,
    Number,
    Boolean,
    Date,
}

impl ColumnType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
        }
    }
}

/// One column of one file.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
    /// The values an enumerated column may take, in the contract's spelling.
    pub values: Option<fn() -> Vec<&'static str>>,
    /// Whether the column is filled in every row.
    pub required: bool,
    /// Inclusive bounds of a numeric column.
    pub range: Option<(i64, i64)>,
    /// What the column means: the data dictionary's text.
    pub description: &'static str,
}

/// One file of the package.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The resource's name, also the file's name without `.csv`.
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub columns: &'static [Column],
    /// The primary key column, by which rows are sorted.
    pub key: &'static str,
    /// `(column, table)`: the column holds a key of that table.
    pub references: &'static [(&'static str, &'static str)],
}

impl Table {
    fn file(&self) -> String {
        format!("{}.csv", self.name)
    }
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| name(*v)).collect()
}

const fn column(name: &'static str, kind: ColumnType, description: &'static str) -> Column {
    Column {
        name,
        kind,
        values: None,
        required: false,
        range: None,
        description,
    }
}

const fn required(column: Column) -> Column {
    Column {
        required: true,
        ..column
    }
}

const fn one_of(values: fn() -> Vec<&'static str>, column: Column) -> Column {
    Column {
        values: Some(values),
        ..column
    }
}

const fn within(low: i64, high: i64, column: Column) -> Column {
    Column {
        range: Some((low, high)),
        ..column
    }
}

use ColumnType::{Boolean, Date, Integer, Number, String as Text};

/// What every pseudonym looks like: [`PSEUDONYM_LENGTH`] lower-case hex
/// characters.
const PSEUDONYM_PATTERN: &str = "^[0-9a-f]{16}$";

macro_rules! status_description {
    ($months:literal) => {
        concat!(
            "Labour market status ",
            $months,
            " calendar months after the end date of the ",
            "jobseeker's last ended substitution: the status of the latest observation dated ",
            "within 31 days either side of that day (latest by date, then by order of ",
            "recording). Observations are outcome_observed events and implied ones: ",
            "hired_by_employer means employed at the substitution's end date; the progressions ",
            "permanent_job and other_job mean employed, self_employment self_employed and ",
            "education education, at their dates. not_due when the window's last day is after ",
            "the reference date; unknown when nothing was observed in the window; empty when no ",
            "substitution has ended."
        )
    };
}

fn status_values() -> Vec<&'static str> {
    let mut values = names(Status::ALL, Status::as_str);
    values.push(FollowUp::NotDue.as_str());
    values
}

/// The three files, their columns and what each column means.
pub const TABLES: [Table; 3] = [
    Table {
        name: "jobseekers",
        title: "Jobseekers",
        description: "One row per person registered as a jobseeker, whether or not they were referred, prepared or placed as a substitute.",
        key: "pid",
        references: &[],
        columns: &[
            required(column(
                "pid",
                Text,
                "The jobseeker's pseudonym. A person has the same pseudonym in every file of an export and in every export under the same key.",
            )),
            required(column(
                "partnership",
                Text,
                "The slug of the partnership (the scheme) the jobseeker belongs to.",
            )),
            one_of(
                || names(AgeBand::ALL, AgeBand::as_str),
                column(
                    "age_band",
                    Text,
                    "Age band at referral: the year of referred_on minus the birth year, as 16-24, 25-49 or 50+. Empty when the birth year or the referral is missing, or when the difference is under 16.",
                ),
            ),
            one_of(
                || names(Sex::ALL, Sex::as_str),
                column("sex", Text, "Sex, as given at registration."),
            ),
            one_of(
                || names(Ethnicity::ALL, Ethnicity::as_str),
                column("ethnicity", Text, "Ethnic group, as given at registration."),
            ),
            one_of(
                || names(YesNo::ALL, YesNo::as_str),
                column(
                    "disability",
                    Text,
                    "Whether the jobseeker reported a disability at registration.",
                ),
            ),
            column(
                "lone_parent",
                Boolean,
                "Whether the jobseeker is a lone parent, as given at registration.",
            ),
            one_of(
                || names(YesNo::ALL, YesNo::as_str),
                column(
                    "health_condition",
                    Text,
                    "Whether the jobseeker reported a health condition at registration.",
                ),
            ),
            one_of(
                || names(Benefit::ALL, Benefit::as_str),
                column(
                    "benefit",
                    Text,
                    "The benefit the jobseeker received at registration.",
                ),
            ),
            within(
                0,
                i64::MAX,
                column(
                    "unemployed_weeks_at_referral",
                    Integer,
                    "Whole weeks (rounded down) from the unemployed_since date given at registration to referred_on. Empty when the jobseeker was not referred, or when referred_on lies before unemployed_since.",
                ),
            ),
            column(
                "referred_on",
                Date,
                "The date of the jobseeker's earliest referral.",
            ),
            one_of(
                || names(ReferredBy::ALL, ReferredBy::as_str),
                column("referred_by", Text, "Who made that referral."),
            ),
            column(
                "eligible",
                Boolean,
                "The result of the latest eligibility assessment (latest by date, then by order of recording). Empty when the jobseeker was never assessed.",
            ),
            required(column(
                "preparation_completed",
                Boolean,
                "Whether a completion of pre-employment preparation was recorded.",
            )),
            required(within(
                0,
                i64::MAX,
                column(
                    "mentoring_sessions",
                    Integer,
                    "The number of mentoring sessions recorded.",
                ),
            )),
            column(
                "first_substitution_start",
                Date,
                "The start date of the jobseeker's first substitution. Empty when none has started.",
            ),
            required(within(
                0,
                i64::MAX,
                column(
                    "substitutions",
                    Integer,
                    "The number of substitutions the jobseeker started.",
                ),
            )),
            required(column(
                "substitution_days",
                Integer,
                "The sum of days (see days in substitutions.csv) over the jobseeker's ended substitutions; 0 when none has ended.",
            )),
            one_of(
                || names(EndReason::ALL, EndReason::as_str),
                column(
                    "last_end_reason",
                    Text,
                    "The end reason of the jobseeker's last ended substitution (latest end date, then latest recorded). Empty when no substitution has ended.",
                ),
            ),
            column(
                "hired_by_host_employer",
                Boolean,
                "Whether any of the jobseeker's substitutions ended with hired_by_employer. Empty when no substitution has ended.",
            ),
            one_of(
                status_values,
                column("status_3m", Text, status_description!("3")),
            ),
            one_of(
                status_values,
                column("status_6m", Text, status_description!("6")),
            ),
            one_of(
                status_values,
                column("status_12m", Text, status_description!("12")),
            ),
            column(
                "progressed",
                Boolean,
                "Whether a progression of the jobseeker (any kind) is dated on or after first_substitution_start and on or before the reference date. Empty when no substitution has started.",
            ),
        ],
    },
    Table {
        name: "releases",
        title: "Releases",
        description: "One row per release: an employee released from work for training while a substitute covers.",
        key: "rid",
        // The released employee is not a jobseeker, so releases.pid refers
        // to no row of jobseekers.csv, and the contract keeps the package to
        // three files: the column links one employee's releases instead.
        references: &[],
        columns: &[
            required(column("rid", Text, "The release's pseudonym.")),
            required(column(
                "pid",
                Text,
                "The released employee's pseudonym. Employees are not jobseekers, so it refers to no row of jobseekers.csv; it links the releases of one employee, and a person who was both has the same pseudonym in both files.",
            )),
            column(
                "employer",
                Text,
                "The pseudonym of the employer that agreed the rotation. Empty when the rotation's agreement is not in the export.",
            ),
            one_of(
                || names(Sector::ALL, Sector::as_str),
                column(
                    "sector",
                    Text,
                    "The employer's SIC 2007 section, as given at enrolment.",
                ),
            ),
            one_of(
                || names(Size::ALL, Size::as_str),
                column(
                    "size",
                    Text,
                    "The employer's size band, as given at enrolment.",
                ),
            ),
            required(within(
                0,
                8,
                column(
                    "rqf_level",
                    Integer,
                    "The RQF level of the course the employee was released for.",
                ),
            )),
            required(within(
                0,
                168,
                column("hours_per_week", Number, "Hours of training per week."),
            )),
            required(column(
                "release_start",
                Date,
                "The date the release started.",
            )),
            column(
                "release_end",
                Date,
                "The date the release ended (the employee back at work). Empty while the release runs.",
            ),
            one_of(
                || names(TrainingOutcome::ALL, TrainingOutcome::as_str),
                column(
                    "training_outcome",
                    Text,
                    "completed or left when training_completed or training_left was recorded; ongoing when neither was and the release has not ended. Empty when the release ended with no training outcome recorded.",
                ),
            ),
            column(
                "qualification_achieved",
                Boolean,
                "Whether the completed training led to the qualification. Empty unless training_outcome is completed.",
            ),
            required(column(
                "progressed_12m",
                Boolean,
                "Whether a progression of the employee is dated from release_start to 12 calendar months after release_end (to the reference date while the release runs), and not after the reference date.",
            )),
            one_of(
                || names(ProgressionKind::ALL, ProgressionKind::as_str),
                column(
                    "progression_kind",
                    Text,
                    "The kind of the earliest such progression (earliest by date, then by order of recording). Empty when progressed_12m is false.",
                ),
            ),
        ],
    },
    Table {
        name: "substitutions",
        title: "Substitutions",
        description: "One row per substitution: a jobseeker working as the substitute for one or more released employees.",
        key: "sid",
        references: &[("pid", "jobseekers")],
        columns: &[
            required(column("sid", Text, "The substitution's pseudonym.")),
            required(column(
                "pid",
                Text,
                "The substitute's pseudonym; refers to pid in jobseekers.csv.",
            )),
            column(
                "employer",
                Text,
                "The pseudonym of the host employer, who agreed the rotation. Empty when the rotation's agreement is not in the export.",
            ),
            one_of(
                || names(Sector::ALL, Sector::as_str),
                column(
                    "sector",
                    Text,
                    "The host employer's SIC 2007 section, as given at enrolment.",
                ),
            ),
            required(column("start", Date, "The date the substitution started.")),
            column(
                "end",
                Date,
                "The date the substitution ended. Empty while it runs.",
            ),
            column(
                "days",
                Integer,
                "end minus start, in days. Empty while the substitution runs.",
            ),
            required(within(
                0,
                168,
                column(
                    "hours_per_week",
                    Number,
                    "Hours per week the substitute works.",
                ),
            )),
            one_of(
                || names(EndReason::ALL, EndReason::as_str),
                column(
                    "end_reason",
                    Text,
                    "Why the substitution ended. Empty while it runs.",
                ),
            ),
            required(within(
                0,
                i64::MAX,
                column(
                    "covers",
                    Integer,
                    "How many releases the substitution covers (distinct releases, retracted ones left out).",
                ),
            )),
        ],
    },
];

/// The column tables of the data dictionary in `docs/datasets.md`, as
/// Markdown, generated from [`TABLES`].
pub fn data_dictionary() -> String {
    let mut out = String::new();
    for table in &TABLES {
        out.push_str(&format!(
            "### `{}`\n\n{}\n\n",
            table.file(),
            table.description
        ));
        out.push_str(&format!(
            "Key: `{}`, one row per value, rows sorted by it.",
            table.key
        ));
        for (column, target) in table.references {
            out.push_str(&format!(" `{column}` refers to `{target}.{column}`."));
        }
        out.push_str("\n\n| column | type | values | always filled | description |\n");
        out.push_str("|---|---|---|---|---|\n");
        for c in table.columns {
            let values = match (c.values, c.range) {
                (Some(values), _) => values()
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                (None, Some((low, i64::MAX))) => format!("{low} or more"),
                (None, Some((low, high))) => format!("{low} to {high}"),
                (None, None) if PSEUDONYMISED.contains(&c.name) => "16 hex characters".to_owned(),
                (None, None) => String::new(),
            };
            let filled = if c.required { "yes" } else { "" };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                c.name,
                c.kind.as_str(),
                values,
                filled,
                c.description
            ));
        }
        out.push('\n');
    }
    out
}

/// The columns that hold pseudonyms rather than values.
const PSEUDONYMISED: [&str; 4] = ["pid", "rid", "sid", "employer"];

/// Keyed HMAC-SHA256 over an id's canonical text.
#[derive(Clone)]
struct Pseudonymiser {
    /// The MAC with the key already absorbed; each pseudonym starts from a
    /// copy, so the key is hashed once, not once per id.
    mac: Hmac<Sha256>,
}

impl Pseudonymiser {
    fn new(key: &[u8]) -> Self {
        Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The pseudonym of `id`: the HMAC of its lower-case hyphenated form,
    /// as lower-case hex, cut to [`PSEUDONYM_LENGTH`] characters.
    fn of(&self, id: Uuid) -> String {
        let mut buffer = Uuid::encode_buffer();
        let text = id.hyphenated().encode_lower(&mut buffer);
        let mut mac = self.mac.clone();
        mac.update(text.as_bytes());
        let mut pseudonym = hex::encode(mac.finalize().into_bytes());
        pseudonym.truncate(PSEUDONYM_LENGTH);
        pseudonym
    }
}

fn cell<T: Display>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn jobseeker_cells(row: &JobseekerRow, p: &Pseudonymiser) -> Vec<(&'static str, String)> {
    vec![
        ("pid", p.of(row.pid)),
        ("partnership", row.partnership.clone()),
        ("age_band", cell(row.age_band.map(AgeBand::as_str))),
        ("sex", cell(row.sex)),
        ("ethnicity", cell(row.ethnicity)),
        ("disability", cell(row.disability)),
        ("lone_parent", cell(row.lone_parent)),
        ("health_condition", cell(row.health_condition)),
        ("benefit", cell(row.benefit)),
        (
            "unemployed_weeks_at_referral",
            cell(row.unemployed_weeks_at_referral),
        ),
        ("referred_on", cell(row.referred_on)),
        ("referred_by", cell(row.referred_by)),
        ("eligible", cell(row.eligible)),
        (
            "preparation_completed",
            row.preparation_completed.to_string(),
        ),
        ("mentoring_sessions", row.mentoring_sessions.to_string()),
        (
            "first_substitution_start",
            cell(row.first_substitution_start),
        ),
        ("substitutions", row.substitutions.to_string()),
        ("substitution_days", row.substitution_days.to_string()),
        ("last_end_reason", cell(row.last_end_reason)),
        ("hired_by_host_employer", cell(row.hired_by_host_employer)),
        ("status_3m", cell(row.status_3m.map(FollowUp::as_str))),
        ("status_6m", cell(row.status_6m.map(FollowUp::as_str))),
        ("status_12m", cell(row.status_12m.map(FollowUp::as_str))),
        ("progressed", cell(row.progressed)),
    ]
}

fn release_cells(row: &ReleaseRow, p: &Pseudonymiser) -> Vec<(&'static str, String)> {
    vec![
        ("rid", p.of(row.rid)),
        ("pid", p.of(row.pid)),
        ("employer", cell(row.employer.map(|e| p.of(e)))),
        ("sector", cell(row.sector)),
        ("size", cell(row.size)),
        ("rqf_level", row.rqf_level.to_string()),
        ("hours_per_week", row.hours_per_week.to_string()),
        ("release_start", row.release_start.to_string()),
        ("release_end", cell(row.release_end)),
        (
            "training_outcome",
            cell(row.training_outcome.map(TrainingOutcome::as_str)),
        ),
        ("qualification_achieved", cell(row.qualification_achieved)),
        ("progressed_12m", row.progressed_12m.to_string()),
        ("progression_kind", cell(row.progression_kind)),
    ]
}

fn substitution_cells(row: &SubstitutionRow, p: &Pseudonymiser) -> Vec<(&'static str, String)> {
    vec![
        ("sid", p.of(row.sid)),
        ("pid", p.of(row.pid)),
        ("employer", cell(row.employer.map(|e| p.of(e)))),
        ("sector", cell(row.sector)),
        ("start", row.start.to_string()),
        ("end", cell(row.end)),
        ("days", cell(row.days)),
        ("hours_per_week", row.hours_per_week.to_string()),
        ("end_reason", cell(row.end_reason)),
        ("covers", row.covers.to_string()),
    ]
}

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
struct Written {
    file: String,
    rows: usize,
    bytes: u64,
    sha256: String,
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

fn write_package(
    dataset: &Dataset,
    options: &ExportOptions,
    head_position: u64,
    head_hash: String,
) -> Result<ExportSummary, ExportError> {
    let dir = &options.out;
    fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        path: dir.clone(),
        source,
    })?;
    let written = match write_files(dataset, options, head_position, &head_hash) {
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
    let descriptor = descriptor(options, head_position, head_hash, &written);
    let mut json = serde_json::to_vec_pretty(&descriptor).expect("the descriptor serialises");
    json.push(b'\n');
    fs::write(partial(dir, DESCRIPTOR), json).map_err(|source| ExportError::Io {
        path: dir.join(DESCRIPTOR),
        source,
    })?;
    Ok(written)
}

/// The Data Package descriptor. Structs rather than a JSON map keep the
/// properties in a reader's order (name and schema first, provenance last).
#[derive(Serialize)]
struct Package<'a> {
    #[serde(rename = "$schema")]
    profile: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    resources: Vec<Resource<'a>>,
    provenance: Provenance<'a>,
}

/// A tabular resource. It says so three ways: `type: table` is Data Package
/// v2's, the resource's own `$schema` lets readers that look at resources
/// alone find its version, and the v1 `profile` lets v1 readers (such as
/// R's frictionless 1.x) read its schema; v2 readers ignore the `profile`
/// when `$schema` is present.
#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "$schema")]
    profile_url: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    profile: &'static str,
    path: &'a str,
    title: &'static str,
    description: &'static str,
    format: &'static str,
    mediatype: &'static str,
    encoding: &'static str,
    bytes: u64,
    hash: String,
    schema: TableSchema,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TableSchema {
    fields: Vec<Field>,
    primary_key: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    foreign_keys: Vec<ForeignKey>,
    missing_values: [&'static str; 1],
}

#[derive(Serialize)]
struct Field {
    name: &'static str,
    #[serde(rename = "type")]
    kind: ColumnType,
    description: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    categories: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Constraints::is_empty")]
    constraints: Constraints,
}

#[derive(Serialize, Default)]
struct Constraints {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unique: bool,
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    values: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pattern: Option<&'static str>,
}

impl Constraints {
    fn is_empty(&self) -> bool {
        !self.required
            && !self.unique
            && self.values.is_none()
            && self.minimum.is_none()
            && self.maximum.is_none()
            && self.pattern.is_none()
    }
}

#[derive(Serialize)]
struct ForeignKey {
    fields: [&'static str; 1],
    reference: Reference,
}

#[derive(Serialize)]
struct Reference {
    resource: &'static str,
    fields: [&'static str; 1],
}

#[derive(Serialize)]
struct Provenance<'a> {
    head_position: u64,
    head_hash: &'a str,
    as_of: String,
    reference_date: String,
    /// `null` when every partnership was exported.
    partnerships: Option<&'a BTreeSet<String>>,
    definitions_version: &'static str,
    program: &'static str,
    program_version: &'a str,
    pseudonymisation: Pseudonymisation,
    rows: BTreeMap<&'static str, usize>,
    sha256: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct Pseudonymisation {
    method: &'static str,
    key_id: String,
    columns: [&'static str; 4],
    input: &'static str,
    output: &'static str,
}

fn field(column: &Column, table: &Table) -> Field {
    let values = column.values.map(|values| values());
    let is_pseudonym = PSEUDONYMISED.contains(&column.name);
    Field {
        name: column.name,
        kind: column.kind,
        description: column.description,
        categories: values.clone(),
        constraints: Constraints {
            required: column.required,
            unique: column.name == table.key,
            values,
            minimum: column.range.map(|(low, _)| low),
            maximum: column
                .range
                .and_then(|(_, high)| (high != i64::MAX).then_some(high)),
            pattern: is_pseudonym.then_some(PSEUDONYM_PATTERN),
        },
    }
}

fn descriptor<'a>(
    options: &'a ExportOptions,
    head_position: u64,
    head_hash: &'a str,
    written: &'a [Written; 3],
) -> Package<'a> {
    let resources = TABLES
        .iter()
        .zip(written)
        .map(|(table, w)| Resource {
            profile_url: "https://datapackage.org/profiles/2.0/dataresource.json",
            name: table.name,
            kind: "table",
            profile: "tabular-data-resource",
            path: &w.file,
            title: table.title,
            description: table.description,
            format: "csv",
            mediatype: "text/csv",
            encoding: "utf-8",
            bytes: w.bytes,
            hash: format!("sha256:{}", w.sha256),
            schema: TableSchema {
                fields: table.columns.iter().map(|c| field(c, table)).collect(),
                primary_key: vec![table.key],
                foreign_keys: table
                    .references
                    .iter()
                    .map(|(column, target)| ForeignKey {
                        fields: [column],
                        reference: Reference {
                            resource: target,
                            fields: [column],
                        },
                    })
                    .collect(),
                missing_values: [""],
            },
        })
        .collect();
    Package {
        profile: "https://datapackage.org/profiles/2.0/datapackage.json",
        name: "rotation-ledger-evaluation",
        title: "Job rotation evaluation dataset",
        description: "Jobseekers, releases and substitutions of job rotation schemes, folded from the rotation ledger's committed events as recorded by as_of, with outcomes judged at reference_date. Identifiers are keyed pseudonyms. The definitions of every column are in the field descriptions and in the project's docs/datasets.md.",
        resources,
        provenance: Provenance {
            head_position,
            head_hash,
            as_of: options.as_of.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            reference_date: options.reference_date.to_string(),
            partnerships: options.partnerships.as_ref(),
            definitions_version: DEFINITIONS_VERSION,
            program: "rotation-ledger",
            program_version: &options.program_version,
            pseudonymisation: Pseudonymisation {
                method: PSEUDONYMISATION_METHOD,
                key_id: key_id(&options.key),
                columns: PSEUDONYMISED,
                input: "the id as a lower-case hyphenated UUID",
                output: "the first 16 lower-case hex characters of the HMAC",
            },
            rows: TABLES
                .iter()
                .zip(written)
                .map(|(table, w)| (table.name, w.rows))
                .collect(),
            sha256: written
                .iter()
                .map(|w| (w.file.as_str(), w.sha256.as_str()))
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const EMPLOYER: Uuid = Uuid::from_u128(0xE0);
    const ROTATION: Uuid = Uuid::from_u128(0xA0);
    const EMPLOYEE: Uuid = Uuid::from_u128(0xB0);
    const RELEASE: Uuid = Uuid::from_u128(0xD0);

    /// A committed log built by hand; each event is recorded one hour after
    /// the previous one, from 1 January 2026.
    #[derive(Default)]
    struct Log(Vec<CommittedEvent>);

    impl Log {
        fn push(&mut self, event_type: &str, subject: String, date: &str, data: Value) -> Uuid {
            let position = self.0.len() as u64 + 1;
            let id = Uuid::from_u128((1 << 64) | u128::from(position));
            let recorded = recorded_at(position);
            let event = json!({
                "specversion": "1.0",
                "id": id,
                "source": "urn:service:test",
                "type": format!("jobrotation.{event_type}"),
                "subject": subject,
                "time": format!("{date}T09:30:00Z"),
                "partnership": "stoke",
                "position": position,
                "streamversion": 1,
                "recordedtime": recorded.to_rfc3339_opts(SecondsFormat::Micros, true),
                "prevhash": format!("{:064x}", position - 1),
                "hash": format!("{position:064x}"),
                "data": data,
            });
            let bytes = serde_json::to_vec(&event).expect("JSON");
            self.0
                .push(CommittedEvent::from_json(&bytes).expect("a committed event"));
            id
        }

        fn events(&self) -> impl Iterator<Item = Result<CommittedEvent, io::Error>> + use<> {
            self.0.clone().into_iter().map(Ok)
        }
    }

    fn recorded_at(position: u64) -> DateTime<Utc> {
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("a time");
        start + chrono::TimeDelta::hours(position as i64)
    }

    fn person(n: u128) -> Uuid {
        Uuid::from_u128(0xC000 + n)
    }

    /// One rotation with a release, three jobseekers (one placed and hired,
    /// one placed and still working, one never placed) and the outcomes that
    /// fill most columns.
    fn history() -> Log {
        let mut log = Log::default();
        log.push("employer.enrolled", format!("employer/{EMPLOYER}"), "2025-01-06",
            json!({"name": "Stoke Care Homes", "sector": "Q", "size": "medium", "area": "E06000021"}));
        log.push(
            "participant.registered",
            format!("person/{EMPLOYEE}"),
            "2025-01-06",
            json!({"role": "employee", "employer": EMPLOYER}),
        );
        for (n, born) in [(1, 1990), (2, 2003), (3, 1968)] {
            log.push("participant.registered", format!("person/{}", person(n)), "2025-01-06",
                json!({"role": "jobseeker", "unemployed_since": "2024-03-01", "benefit": "universal_credit",
                       "profile": {"birth_year": born, "sex": "female", "disability": "no", "lone_parent": n == 1}}));
            log.push(
                "jobseeker.referred",
                format!("person/{}", person(n)),
                "2025-01-10",
                json!({"referred_by": "jobcentre"}),
            );
            log.push(
                "jobseeker.eligibility_assessed",
                format!("person/{}", person(n)),
                "2025-01-13",
                json!({"eligible": n != 3, "reasons": []}),
            );
        }
        log.push(
            "jobseeker.preparation_completed",
            format!("person/{}", person(1)),
            "2025-01-28",
            json!({"provider": "Stoke College"}),
        );
        log.push(
            "jobseeker.mentoring_session",
            format!("person/{}", person(1)),
            "2025-02-10",
            json!({"minutes": 45, "mentor": "union_learning_rep"}),
        );
        log.push("rotation.agreed", format!("rotation/{ROTATION}"), "2025-01-20",
            json!({"employer": EMPLOYER, "planned_start": "2025-02-03", "planned_end": "2025-07-31"}));
        log.push("rotation.release_started", format!("rotation/{ROTATION}"), "2025-02-03",
            json!({"release_id": RELEASE, "employee": EMPLOYEE,
                   "course": {"title": "Level 3 Diploma in Adult Care", "provider": "Stoke College", "rqf_level": 3, "hours_per_week": 7.5},
                   "planned_end": "2025-07-31"}));
        for n in [1, 2] {
            log.push("rotation.substitution_started", format!("rotation/{ROTATION}"), "2025-02-03",
                json!({"substitution_id": Uuid::from_u128(0xF0 + n), "substitute": person(n), "covers": [RELEASE],
                       "hours_per_week": 18.5, "planned_end": "2025-07-31"}));
        }
        log.push(
            "rotation.training_completed",
            format!("rotation/{ROTATION}"),
            "2025-06-27",
            json!({"release_id": RELEASE, "qualification_achieved": true}),
        );
        log.push(
            "rotation.release_ended",
            format!("rotation/{ROTATION}"),
            "2025-06-30",
            json!({"release_id": RELEASE}),
        );
        log.push(
            "rotation.substitution_ended",
            format!("rotation/{ROTATION}"),
            "2025-06-30",
            json!({"substitution_id": Uuid::from_u128(0xF1), "reason": "hired_by_employer"}),
        );
        log.push(
            "person.outcome_observed",
            format!("person/{}", person(1)),
            "2025-09-29",
            json!({"status": "employed", "source": "employer"}),
        );
        log.push(
            "person.progressed",
            format!("person/{EMPLOYEE}"),
            "2025-10-01",
            json!({"kind": "promotion"}),
        );
        log
    }

    fn options(out: &Path, key: &[u8]) -> ExportOptions {
        ExportOptions {
            out: out.to_owned(),
            key: key.to_vec(),
            as_of: "2026-06-01T00:00:00Z".parse().expect("a time"),
            reference_date: "2026-03-01".parse().expect("a date"),
            partnerships: None,
            program_version: "0.1.0".to_owned(),
        }
    }

    const FILES: [&str; 4] = [
        "jobseekers.csv",
        "releases.csv",
        "substitutions.csv",
        "datapackage.json",
    ];

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).expect("an exported file")
    }

    /// The rows of one CSV file as maps from column name to cell.
    fn rows(dir: &Path, file: &str) -> Vec<BTreeMap<String, String>> {
        let mut reader = csv::Reader::from_path(dir.join(file)).expect("a CSV file");
        let header: Vec<String> = reader
            .headers()
            .expect("a header")
            .iter()
            .map(str::to_owned)
            .collect();
        reader
            .records()
            .map(|r| {
                let record = r.expect("a record");
                header
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_owned))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn reruns_are_byte_identical() {
        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let log = history();
        let first = export(log.events(), &options(a.path(), b"study key")).expect("export");
        let second = export(log.events(), &options(b.path(), b"study key")).expect("export");
        assert_eq!(first, second);
        for file in FILES {
            assert_eq!(
                fs::read(a.path().join(file)).ok(),
                fs::read(b.path().join(file)).ok(),
                "{file}"
            );
        }
        // Nothing else is left behind, in particular no temporary files.
        let mut names: Vec<String> = fs::read_dir(a.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "datapackage.json",
                "jobseekers.csv",
                "releases.csv",
                "substitutions.csv"
            ]
        );
    }

    #[test]
    fn as_of_cuts_off_events_recorded_later() {
        let mut log = history();
        let used = log.0.len() as u64;
        // Recorded after the cut-off although it happened long before it.
        log.push(
            "person.outcome_observed",
            format!("person/{}", person(1)),
            "2025-09-30",
            json!({"status": "unemployed", "source": "survey"}),
        );
        let dir = tempfile::tempdir().expect("dir");
        let mut options = options(dir.path(), b"study key");
        options.as_of = recorded_at(used);
        let summary = export(log.events(), &options).expect("export");
        assert_eq!(summary.head_position, used);
        assert_eq!(summary.head_hash, format!("{used:064x}"));
        let jobseekers = rows(dir.path(), "jobseekers.csv");
        let placed = jobseekers
            .iter()
            .find(|r| r["hired_by_host_employer"] == "true");
        assert_eq!(placed.map(|r| r["status_3m"].as_str()), Some("employed"));

        // The same export from the log as it stood then is the same package.
        let then = tempfile::tempdir().expect("dir");
        let earlier = Log(log.0[..used as usize].to_vec());
        export(
            earlier.events(),
            &ExportOptions {
                out: then.path().to_owned(),
                ..options.clone()
            },
        )
        .expect("export");
        for file in FILES {
            assert_eq!(read(dir.path(), file), read(then.path(), file), "{file}");
        }

        // A second later, the late observation is used.
        let later = tempfile::tempdir().expect("dir");
        options.out = later.path().to_owned();
        options.as_of = recorded_at(used + 1);
        let summary = export(log.events(), &options).expect("export");
        assert_eq!(summary.head_position, used + 1);
        let jobseekers = rows(later.path(), "jobseekers.csv");
        let placed = jobseekers
            .iter()
            .find(|r| r["hired_by_host_employer"] == "true");
        assert_eq!(placed.map(|r| r["status_3m"].as_str()), Some("unemployed"));
    }

    #[test]
    fn pseudonyms_are_keyed_hmacs_that_differ_by_key() {
        // The pseudonym of 00000000-0000-0000-0000-00000000c001 under the key
        // "study key", computed independently (Python's hmac module).
        let expected = "371a7354bdf67a84";
        assert_eq!(Pseudonymiser::new(b"study key").of(person(1)), expected);

        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let log = history();
        export(log.events(), &options(a.path(), b"study key")).expect("export");
        export(log.events(), &options(b.path(), b"another study")).expect("export");
        for file in ["jobseekers.csv", "releases.csv", "substitutions.csv"] {
            let (left, right) = (rows(a.path(), file), rows(b.path(), file));
            assert_eq!(left.len(), right.len());
            for column in PSEUDONYMISED {
                let values = |rows: &[BTreeMap<String, String>]| -> BTreeSet<String> {
                    rows.iter()
                        .filter_map(|r| r.get(column))
                        .filter(|v| !v.is_empty())
                        .cloned()
                        .collect()
                };
                let (l, r) = (values(&left), values(&right));
                assert!(l.is_disjoint(&r), "{file}.{column} links across keys");
                assert!(l.iter().all(|v| {
                    v.len() == 16
                        && v.bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                }));
            }
            let text = read(a.path(), file);
            for id in [
                EMPLOYER,
                ROTATION,
                EMPLOYEE,
                RELEASE,
                person(1),
                person(2),
                person(3),
            ] {
                assert!(!text.contains(&id.to_string()), "{file} shows a raw id");
            }
        }
        assert!(
            rows(a.path(), "jobseekers.csv")
                .iter()
                .any(|r| r["pid"] == expected)
        );
        let substitutes: BTreeSet<String> = rows(a.path(), "substitutions.csv")
            .into_iter()
            .map(|r| r["pid"].clone())
            .collect();
        let jobseekers: BTreeSet<String> = rows(a.path(), "jobseekers.csv")
            .into_iter()
            .map(|r| r["pid"].clone())
            .collect();
        assert!(
            substitutes.is_subset(&jobseekers),
            "substitutions.pid refers to jobseekers.pid"
        );
    }

    #[test]
    fn the_datapackage_describes_the_files_and_their_provenance() {
        let dir = tempfile::tempdir().expect("dir");
        let key = b"a study key that must never be written";
        let options = options(dir.path(), key);
        let summary = export(history().events(), &options).expect("export");
        let text = read(dir.path(), "datapackage.json");
        assert!(!text.contains(std::str::from_utf8(key).expect("text")));
        let package: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            package["$schema"],
            "https://datapackage.org/profiles/2.0/datapackage.json"
        );

        let provenance = &package["provenance"];
        assert_eq!(provenance["head_position"], json!(summary.head_position));
        assert_eq!(provenance["head_hash"], json!(summary.head_hash));
        assert_eq!(provenance["as_of"], "2026-06-01T00:00:00Z");
        assert_eq!(provenance["reference_date"], "2026-03-01");
        assert_eq!(provenance["definitions_version"], DEFINITIONS_VERSION);
        assert_eq!(provenance["program_version"], "0.1.0");
        assert_eq!(provenance["pseudonymisation"]["method"], "HMAC-SHA256");
        assert_eq!(provenance["pseudonymisation"]["key_id"], json!(key_id(key)));
        assert_eq!(
            provenance["rows"],
            json!({"jobseekers": 3, "releases": 1, "substitutions": 2})
        );
        assert_eq!(
            summary.rows,
            BTreeMap::from([
                ("jobseekers".to_owned(), 3),
                ("releases".to_owned(), 1),
                ("substitutions".to_owned(), 2)
            ])
        );

        let resources = package["resources"].as_array().expect("resources");
        assert_eq!(resources.len(), 3);
        for (resource, table) in resources.iter().zip(&TABLES) {
            assert_eq!(resource["type"], "table");
            assert_eq!(
                resource["$schema"],
                "https://datapackage.org/profiles/2.0/dataresource.json"
            );
            let file = table.file();
            let bytes = fs::read(dir.path().join(&file)).expect("file");
            let sha256 = hex::encode(Sha256::digest(&bytes));
            assert_eq!(resource["path"], json!(file));
            assert_eq!(resource["bytes"], json!(bytes.len()));
            assert_eq!(resource["hash"], json!(format!("sha256:{sha256}")));
            assert_eq!(provenance["sha256"][&file], json!(sha256));
            assert_eq!(resource["schema"]["primaryKey"], json!([table.key]));
            assert_eq!(resource["schema"]["missingValues"], json!([""]));
            let fields: Vec<&str> = resource["schema"]["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .map(|f| f["name"].as_str().expect("a name"))
                .collect();
            let header = read(dir.path(), &file).lines().next().map(str::to_owned);
            assert_eq!(header, Some(fields.join(",")));
        }
        assert_eq!(
            resources[2]["schema"]["foreignKeys"],
            json!([{"fields": ["pid"], "reference": {"resource": "jobseekers", "fields": ["pid"]}}])
        );
        assert!(resources[1]["schema"].get("foreignKeys").is_none());

        // Set EXPORT_TEST_KEEP=DIR to keep this export for checking by hand,
        // e.g. with `frictionless validate DIR/datapackage.json`.
        if let Some(keep) = std::env::var_os("EXPORT_TEST_KEEP") {
            export(
                history().events(),
                &ExportOptions {
                    out: keep.into(),
                    ..options
                },
            )
            .expect("export");
        }
    }

    #[test]
    fn cells_follow_the_columns_and_required_ones_are_filled() {
        let dir = tempfile::tempdir().expect("dir");
        export(history().events(), &options(dir.path(), b"study key")).expect("export");
        for table in &TABLES {
            let keys: Vec<String> = rows(dir.path(), &table.file())
                .into_iter()
                .map(|r| r[table.key].clone())
                .collect();
            assert!(
                keys.is_sorted(),
                "{} is sorted by {}",
                table.name,
                table.key
            );
            for row in rows(dir.path(), &table.file()) {
                let names: Vec<&str> = row.keys().map(String::as_str).collect();
                let mut columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
                columns.sort_unstable();
                assert_eq!(names, columns);
                for c in table.columns.iter().filter(|c| c.required) {
                    assert!(
                        !row[c.name].is_empty(),
                        "{}.{} is empty",
                        table.name,
                        c.name
                    );
                }
                for c in table.columns {
                    if let (Some(values), false) = (c.values, row[c.name].is_empty()) {
                        assert!(
                            values().contains(&row[c.name].as_str()),
                            "{}.{}",
                            table.name,
                            c.name
                        );
                    }
                }
            }
        }
        let jobseekers = rows(dir.path(), "jobseekers.csv");
        let never_placed = jobseekers
            .iter()
            .find(|r| r["substitutions"] == "0")
            .expect("a row");
        assert_eq!(never_placed["status_3m"], "");
        assert_eq!(never_placed["eligible"], "false");
        assert_eq!(never_placed["age_band"], "50+");
        let hired = jobseekers
            .iter()
            .find(|r| r["hired_by_host_employer"] == "true")
            .expect("a row");
        assert_eq!(hired["status_3m"], "employed");
        assert_eq!(hired["status_12m"], "not_due");
        assert_eq!(hired["substitution_days"], "147");
    }

    #[test]
    fn the_partnership_option_selects_rows() {
        let dir = tempfile::tempdir().expect("dir");
        let mut options = options(dir.path(), b"study key");
        options.partnerships = Some(BTreeSet::from(["leeds".to_owned()]));
        let summary = export(history().events(), &options).expect("export");
        assert_eq!(summary.rows.values().sum::<usize>(), 0);
        // The log used is the whole log, whichever partnerships are kept.
        assert_eq!(summary.head_position, history().0.len() as u64);
        let package: Value =
            serde_json::from_str(&read(dir.path(), "datapackage.json")).expect("JSON");
        assert_eq!(package["provenance"]["partnerships"], json!(["leeds"]));
    }

    #[test]
    fn a_log_out_of_order_or_an_empty_key_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let mut log = history();
        log.0.swap(3, 4);
        let refused = export(log.events(), &options(dir.path(), b"study key"));
        assert!(matches!(
            refused,
            Err(ExportError::OutOfOrder {
                expected: 4,
                found: 5
            })
        ));
        let refused = export(history().events(), &options(dir.path(), b""));
        assert!(matches!(refused, Err(ExportError::EmptyKey)));
        let failing = std::iter::once(Err::<CommittedEvent, _>(io::Error::other("disk")));
        let refused = export(failing, &options(dir.path(), b"study key"));
        assert!(matches!(refused, Err(ExportError::Read(_))));
        assert!(
            fs::read_dir(dir.path()).expect("dir").next().is_none(),
            "nothing written"
        );
    }

    #[test]
    fn an_empty_log_gives_empty_tables_with_headers() {
        let dir = tempfile::tempdir().expect("dir");
        let summary = export(Log::default().events(), &options(dir.path(), b"k")).expect("export");
        assert_eq!(
            (summary.head_position, summary.head_hash.as_str()),
            (0, crate::chain::GENESIS)
        );
        assert_eq!(read(dir.path(), "releases.csv").lines().count(), 1);
    }

    #[test]
    fn key_ids_and_key_files() {
        // SHA-256("abc") = ba7816bf…
        assert_eq!(key_id(b"abc"), "ba7816bf");
        assert_eq!(key_from_file(b"abc\n"), b"abc");
        assert_eq!(key_from_file(b"abc\r\n"), b"abc");
        assert_eq!(key_from_file(b"abc\n\n"), b"abc\n");
        assert_eq!(key_from_file(b"abc"), b"abc");
    }

    /// The column tables in `docs/datasets.md` are generated from
    /// [`TABLES`]. Run with `UPDATE_DOCS=1` to rewrite them after changing a
    /// column.
    #[test]
    fn the_data_dictionary_in_the_docs_is_current() {
        const START: &str = "<!-- columns: generated from src/export.rs, do not edit -->\n";
        const END: &str = "<!-- end of columns -->";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/datasets.md");
        let docs = fs::read_to_string(&path).expect("docs/datasets.md");
        let (before, rest) = docs.split_once(START).expect("the start marker");
        let (current, after) = rest.split_once(END).expect("the end marker");
        let wanted = data_dictionary();
        if current != wanted {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                fs::write(&path, format!("{before}{START}{wanted}{END}{after}"))
                    .expect("write docs");
                return;
            }
            panic!("docs/datasets.md is out of date: run the tests with UPDATE_DOCS=1");
        }
        for table in &TABLES {
            for column in table.columns {
                assert!(
                    docs.contains(column.description),
                    "{}.{}",
                    table.name,
                    column.name
                );
            }
        }
    }
}
