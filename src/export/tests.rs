//! End-to-end tests of the export: a hand-built log exported, and the
//! files and descriptor read back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use rotation_events::CommittedEvent;
use rotation_projections::dataset::DEFINITIONS_VERSION;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::pseudonym::{PSEUDONYMISED, Pseudonymiser};
use super::*;

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
    log.push(
        "employer.enrolled",
        format!("employer/{EMPLOYER}"),
        "2025-01-06",
        json!({"name": "Stoke Care Homes", "sector": "Q", "size": "medium", "area": "E06000021"}),
    );
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
    log.push(
        "rotation.agreed",
        format!("rotation/{ROTATION}"),
        "2025-01-20",
        json!({"employer": EMPLOYER, "planned_start": "2025-02-03", "planned_end": "2025-07-31"}),
    );
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
        checkpoint: None,
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
    let package: Value = serde_json::from_str(&read(dir.path(), "datapackage.json")).expect("JSON");
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
