//! The evaluation dataset through the command line, checked by the tools
//! evaluators use: `frictionless validate` and pandas.

use std::path::Path;
use std::process::Command;

use crate::support::binary;
use crate::tools;

fn run(args: &[&str]) -> String {
    run_with_status(args, 0)
}

/// Runs the binary, which must exit with `status`; returns its output.
fn run_with_status(args: &[&str], status: i32) -> String {
    let output = Command::new(binary())
        .args(args)
        .output()
        .expect("the binary runs");
    assert_eq!(
        output.status.code(),
        Some(status),
        "rotation-ledger {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// A simulated history of `jobseekers`, written as JSON Lines, imported.
/// A second history into the same ledger registers the same two
/// partnerships again, which the rules refuse: `rejected` says how many.
fn import_history(dir: &Path, data: &Path, seed: &str, jobseekers: &str, rejected: u32) {
    let history = dir.join(format!("history-{seed}.jsonl"));
    run(&[
        "simulate",
        "--partnerships",
        "2",
        "--jobseekers",
        jobseekers,
        "--months",
        "18",
        "--start",
        "2024-05-01",
        "--seed",
        seed,
        "--out",
        path(&history),
    ]);
    // `import` exits 2 when it refused some of the file.
    let status = if rejected == 0 { 0 } else { 2 };
    let summary = run_with_status(&["import", "--data", path(data), path(&history)], status);
    assert!(
        summary
            .trim_end()
            .ends_with(&format!("rejected {rejected}")),
        "the simulated history is accepted: {summary}"
    );
}

fn export(data: &Path, out: &Path, key: &Path, as_of: &str) {
    run(&[
        "export",
        "--data",
        path(data),
        "--out",
        path(out),
        "--key-file",
        path(key),
        "--as-of",
        as_of,
        "--reference-date",
        "2026-01-01",
    ]);
}

const FILES: [&str; 4] = [
    "jobseekers.csv",
    "releases.csv",
    "substitutions.csv",
    "datapackage.json",
];

#[test]
fn the_dataset_validates_and_reads_in_pandas() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    import_history(dir.path(), &data, "3", "120", 0);
    let key = dir.path().join("study.key");
    std::fs::write(&key, "a study key\n").unwrap();
    let out = dir.path().join("dataset");
    export(&data, &out, &key, "2100-01-01T00:00:00Z");

    let validated = Command::new(tools::frictionless())
        .args(["validate", "--json", path(&out.join("datapackage.json"))])
        .output()
        .expect("frictionless runs");
    let report: serde_json::Value = serde_json::from_slice(&validated.stdout).unwrap_or_else(|e| {
        panic!(
            "frictionless printed no JSON ({e}): {}",
            String::from_utf8_lossy(&validated.stderr)
        )
    });
    assert_eq!(
        report["valid"], true,
        "frictionless finds the package invalid: {report:#}"
    );

    let script = r#"
import json, sys
import pandas as pd
folder = sys.argv[1]
counts = {}
for name in ("jobseekers", "releases", "substitutions"):
    frame = pd.read_csv(f"{folder}/{name}.csv", keep_default_na=False, na_values=[""], dtype=str)
    counts[name] = len(frame)
jobseekers = pd.read_csv(f"{folder}/jobseekers.csv", keep_default_na=False, na_values=[""])
assert jobseekers["pid"].is_unique
assert set(jobseekers["age_band"].dropna()) <= {"16-24", "25-49", "50+"}
print(json.dumps(counts))
"#;
    let pandas = Command::new(tools::python())
        .args(["-c", script, path(&out)])
        .output()
        .expect("python runs");
    assert!(
        pandas.status.success(),
        "pandas cannot read the files: {}",
        String::from_utf8_lossy(&pandas.stderr)
    );
    let counts: serde_json::Value = serde_json::from_slice(&pandas.stdout).unwrap();
    let package: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("datapackage.json")).unwrap()).unwrap();
    assert_eq!(counts["jobseekers"], 120);
    assert_eq!(
        counts["jobseekers"], package["provenance"]["rows"]["jobseekers"],
        "provenance: {:#}",
        package["provenance"]
    );
    assert!(counts["substitutions"].as_u64().unwrap() > 0);
}

#[test]
fn an_export_as_of_a_past_time_is_unchanged_by_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    import_history(dir.path(), &data, "4", "40", 0);
    let key = dir.path().join("study.key");
    std::fs::write(&key, "key of the first study").unwrap();
    // Recorded times have microseconds; a cut a moment from now falls
    // after every event recorded so far and before every later one.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let as_of = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let first = dir.path().join("first");
    export(&data, &first, &key, &as_of);

    import_history(dir.path(), &data, "5", "40", 2);
    let again = dir.path().join("again");
    export(&data, &again, &key, &as_of);
    let now = dir.path().join("now");
    export(&data, &now, &key, "2100-01-01T00:00:00Z");

    for file in FILES {
        let a = std::fs::read(first.join(file)).unwrap();
        let b = std::fs::read(again.join(file)).unwrap();
        assert!(a == b, "{file} differs between two exports as of {as_of}");
    }
    let before = std::fs::read(first.join("jobseekers.csv")).unwrap();
    let after = std::fs::read(now.join("jobseekers.csv")).unwrap();
    assert_ne!(before, after, "the later events are in an export as of now");

    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, "key of another study").unwrap();
    let other = dir.path().join("other");
    export(&data, &other, &other_key, &as_of);
    let pid = |folder: &Path| {
        let text = std::fs::read_to_string(folder.join("jobseekers.csv")).unwrap();
        text.lines()
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_ne!(
        pid(&first),
        pid(&other),
        "two studies' pseudonyms cannot be linked"
    );
}

#[test]
fn two_exports_without_as_of_on_an_unchanged_log_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    import_history(dir.path(), &data, "6", "20", 0);
    let key = dir.path().join("study.key");
    std::fs::write(&key, "key of the study").unwrap();
    let export_default = |name: &str| {
        let out = dir.path().join(name);
        run(&[
            "export",
            "--data",
            path(&data),
            "--out",
            path(&out),
            "--key-file",
            path(&key),
        ]);
        out
    };
    let first = export_default("first");
    // Apart in wall-clock time, if only by a little.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = export_default("second");
    for file in FILES {
        let a = std::fs::read(first.join(file)).unwrap();
        let b = std::fs::read(second.join(file)).unwrap();
        assert!(a == b, "{file} differs between two runs on the same log");
    }
    let descriptor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("datapackage.json")).unwrap()).unwrap();
    let dump = run(&["dump", "--data", path(&data)]);
    let last: serde_json::Value = serde_json::from_str(dump.lines().last().unwrap()).unwrap();
    let as_of = descriptor["provenance"]["as_of"].as_str().unwrap();
    let recorded = last["recordedtime"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(as_of).unwrap(),
        chrono::DateTime::parse_from_rfc3339(recorded).unwrap(),
        "the as-of is the last event's recorded time"
    );
}

/// The bytes of an export whose profiles are all sealed, as the export
/// wrote them before profiles were opened on the decoding threads: moving
/// the opening to other threads must change nothing in the files.
#[test]
fn an_export_of_sealed_profiles_keeps_its_bytes() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let history = dir.path().join("history.jsonl");
    run(&[
        "simulate",
        "--partnerships",
        "2",
        "--jobseekers",
        "30",
        "--months",
        "18",
        "--start",
        "2024-05-01",
        "--seed",
        "21",
        "--out",
        path(&history),
    ]);
    run(&["import", "--data", path(&data), path(&history)]);
    let stats = run(&["stats", "--data", path(&data)]);
    assert!(
        stats.lines().any(|l| l == "clear profiles 0"),
        "every profile is sealed: {stats}"
    );
    let key = dir.path().join("study.key");
    std::fs::write(&key, "pinned study key").unwrap();
    let out = dir.path().join("package");
    run(&[
        "export",
        "--data",
        path(&data),
        "--out",
        path(&out),
        "--key-file",
        path(&key),
        "--reference-date",
        "2026-01-01",
    ]);
    let jobseekers = std::fs::read_to_string(out.join("jobseekers.csv")).unwrap();
    let sexes: std::collections::BTreeSet<&str> = jobseekers
        .lines()
        .skip(1)
        .filter_map(|line| line.split(',').nth(3))
        .collect();
    assert!(
        sexes.contains("female") && sexes.contains("male"),
        "the profiles were opened: {sexes:?}"
    );
    for (file, sha256) in [
        (
            "jobseekers.csv",
            "41eece3a6ad6d8f9c3d9001186070b8bd50881bbbd4cc7a2d47911ddca03a8b7",
        ),
        (
            "releases.csv",
            "79403a0804e20f222b950a00b36125ac197da7a42c6143f3a3eb0a094f4314a2",
        ),
        (
            "substitutions.csv",
            "edfddb5995587fbaa576342b67ee2b5862c4abd8bdf36fbbcf254205a8a28a6b",
        ),
    ] {
        let bytes = std::fs::read(out.join(file)).unwrap();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            sha256,
            "{file} is not the bytes it was"
        );
    }
}
