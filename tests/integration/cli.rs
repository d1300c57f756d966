//! The command line of contract section 7, driven as a user drives it:
//! `import`, `dump`, `verify`, `rejections`, `stats`, and `--help` for
//! every verb.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rotation_events::CommittedEvent;
use rotation_ledger::chain;
use serde_json::{Value, json};

use crate::support::*;

fn rotation_ledger(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Writes JSON Lines, one entry a line, and returns the file's path.
fn jsonl(dir: &Path, name: &str, lines: &[String]) -> String {
    let file = dir.join(name);
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(&file, body).expect("the file is written");
    path(&file).to_owned()
}

/// A ledger in `dir` that has imported `lines`, and the file it imported
/// them from. The lines are mixed ones, some refused, so `import` exits 2.
fn imported(dir: &Path, lines: &[String]) -> (PathBuf, String) {
    let data = dir.join("ledger");
    let file = jsonl(dir, "mixed.jsonl", lines);
    let out = rotation_ledger(&["import", "--data", path(&data), &file]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    (data, file)
}

/// A file of good, duplicate and bad lines; the bad ones at lines 3, 6, 8
/// and 9.
fn mixed_lines() -> Vec<String> {
    let employer = employer_enrolled(1).to_string();
    let conflicting = with(
        serde_json::from_str(&employer).expect("JSON"),
        "/data/name",
        json!("Another Ltd"),
    );
    vec![
        partnership_registered().to_string(),
        employer.clone(),
        "this is not JSON".to_owned(),
        employer,
        String::new(),
        release_started(101, 200, 10).to_string(),
        json!([employee_registered(10, 1), rotation_agreed(100, 1)]).to_string(),
        conflicting.to_string(),
        json!([jobseeker_registered(20), release_started(100, 200, 99)]).to_string(),
        jobseeker_registered(21).to_string(),
    ]
}

#[test]
fn import_counts_every_line_and_reports_the_bad_ones() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("ledger");
    let file = jsonl(dir.path(), "mixed.jsonl", &mixed_lines());
    let out = rotation_ledger(&["import", "--data", path(&data), &file]);
    // Some lines were refused: the status says so, the rest is committed.
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Events, not lines: the good batch counts two, the bad batch two.
    assert_eq!(text(&out.stdout), "accepted 5, duplicate 1, rejected 5\n");
    let stderr = text(&out.stderr);
    let problems: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
    let expected = [
        (3, "invalid_event"),
        (6, "unknown_stream"),
        (8, "duplicate_id_conflict"),
        (9, "rule_violation"),
    ];
    assert_eq!(problems.len(), expected.len(), "{stderr}");
    for (problem, (line, code)) in problems.iter().zip(expected) {
        let prefix = format!("{file}:{line}: {code}: ");
        assert!(
            problem.starts_with(&prefix),
            "{problem} should start with {prefix}"
        );
        assert!(
            problem.len() > prefix.len() + 10,
            "a reason is given: {problem}"
        );
    }

    // The last line came after every bad one, and was committed.
    let out = rotation_ledger(&["dump", "--data", path(&data)]);
    assert!(out.status.success(), "{out:?}");
    let dumped: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(dumped.len(), 5);
    assert_eq!(dumped[4]["data"]["unemployed_since"], json!("2024-06-01"));

    // Importing the same file again commits nothing: what was committed is
    // a duplicate, what was refused is refused again.
    let out = rotation_ledger(&["import", "--data", path(&data), &file]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(text(&out.stdout), "accepted 0, duplicate 6, rejected 5\n");
}

#[test]
fn reimporting_a_good_file_gives_only_duplicates() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("ledger");
    let mut lines: Vec<String> = scheme_events().iter().map(Value::to_string).collect();
    lines.push(
        json!([
            release_started(100, 200, 10),
            substitution_started(100, 300, 20, &[200])
        ])
        .to_string(),
    );
    let file = jsonl(dir.path(), "good.jsonl", &lines);
    let out = rotation_ledger(&["import", "--data", path(&data), &file]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "accepted 8, duplicate 0, rejected 0\n");
    for _ in 0..2 {
        let out = rotation_ledger(&["import", "--data", path(&data), &file]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(text(&out.stdout), "accepted 0, duplicate 8, rejected 0\n");
        assert!(!text(&out.stderr).contains(&file), "{}", text(&out.stderr));
    }
}

#[test]
fn import_reads_standard_input() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("ledger");
    let mut child = Command::new(binary())
        .args(["import", "--data", path(&data), "-"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        for event in scheme_events() {
            writeln!(stdin, "{event}").expect("written");
        }
        writeln!(stdin, "{{").expect("written");
    }
    let out = child.wait_with_output().expect("the import ends");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(text(&out.stdout), "accepted 6, duplicate 0, rejected 1\n");
    assert!(
        text(&out.stderr).contains("-:7: invalid_event: "),
        "{}",
        text(&out.stderr)
    );
}

/// Lines are submitted in chunks of a few thousand, several in flight;
/// a line that depends on the one before must still find it across a
/// chunk boundary.
#[test]
fn import_keeps_line_order_across_chunks() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("ledger");
    let partnership = partnership_registered().to_string();
    let mut lines = vec![partnership.clone(), partnership];
    let people = 2_100;
    for n in 0..people {
        lines.push(jobseeker_registered(1_000 + n).to_string());
        lines.push(assessed(1_000 + n, true).to_string());
    }
    let file = jsonl(dir.path(), "long.jsonl", &lines);
    let out = rotation_ledger(&["import", "--data", path(&data), &file]);
    assert!(out.status.success(), "{out:?}");
    let expected = format!("accepted {}, duplicate 1, rejected 0\n", 1 + 2 * people);
    assert_eq!(text(&out.stdout), expected, "{}", text(&out.stderr));
}

#[test]
fn dump_prints_positions_and_hashes_that_recompute() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, _) = imported(dir.path(), &mixed_lines());
    let out = rotation_ledger(&["dump", "--data", path(&data)]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    let mut prevhash = chain::GENESIS.to_owned();
    let mut count = 0;
    for (i, line) in stdout.lines().enumerate() {
        let value: Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(value["position"], json!(i + 1));
        let event = CommittedEvent::from_json(line.as_bytes()).expect("a committed event");
        assert_eq!(event.ledger.prevhash, prevhash, "position {}", i + 1);
        assert_eq!(chain::hash(&event), event.ledger.hash, "position {}", i + 1);
        assert_eq!(event.ledger.hash.len(), 64);
        assert!(
            event
                .ledger
                .hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        prevhash = event.ledger.hash;
        count += 1;
    }
    assert_eq!(count, 5);
    let out = rotation_ledger(&["dump", "--data", path(&data), "--after", "3"]);
    let positions: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["position"].clone())
        .collect();
    assert_eq!(positions, [json!(4), json!(5)]);
}

#[test]
fn rejections_lists_every_refused_line() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lines = mixed_lines();
    let (data, file) = imported(dir.path(), &lines);

    let out = rotation_ledger(&["rejections", "--data", path(&data)]);
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let codes: Vec<&str> = listed
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_event",
            "unknown_stream",
            "duplicate_id_conflict",
            "rule_violation"
        ]
    );
    // Unparsable input names no event; the others name the event at fault.
    assert!(listed[0].starts_with("- "), "{}", listed[0]);
    let culprit: Value = serde_json::from_str(&lines[8]).expect("JSON");
    assert!(
        listed[3].starts_with(culprit[1]["id"].as_str().expect("an id")),
        "{}",
        listed[3]
    );

    let out = rotation_ledger(&["rejections", "--json", "--data", path(&data)]);
    assert!(out.status.success(), "{out:?}");
    let records: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(records.len(), 4);
    for (record, (line, code)) in records.iter().zip([
        (3, "invalid_event"),
        (6, "unknown_stream"),
        (8, "duplicate_id_conflict"),
        (9, "rule_violation"),
    ]) {
        assert_eq!(record["code"], json!(code));
        assert_eq!(record["origin"], json!(format!("import:{file}:{line}")));
        // A body holding a profile is kept with the profile sealed
        // (contract section 9); any other exactly as it was read.
        let read = &lines[line - 1];
        if read.contains("\"profile\"") {
            let kept: Value =
                serde_json::from_str(record["body"].as_str().expect("a body")).expect("JSON");
            let mut sent: Value = serde_json::from_str(read).expect("JSON");
            let sealed = kept[0]["data"]["sealed_profile"].clone();
            assert!(sealed["ciphertext"].is_string(), "{kept}");
            let data = sent[0]["data"].as_object_mut().expect("data");
            data.remove("profile");
            data.insert("sealed_profile".into(), sealed);
            assert_eq!(kept, sent, "the line, its profile sealed");
        } else {
            assert_eq!(record["body"], json!(read), "the line as it was read");
        }
        assert!(record["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        records.iter().map(|r| r["seq"].clone()).collect::<Vec<_>>(),
        [json!(1), json!(2), json!(3), json!(4)]
    );
}

#[test]
fn stats_counts_events_and_rejections() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, _) = imported(dir.path(), &mixed_lines());
    let out = rotation_ledger(&["stats", "--data", path(&data)]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    let figure = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .to_owned()
    };
    assert_eq!(figure("events"), "5");
    assert_eq!(figure("rejections"), "4");
    // Partnership, employer, employee, rotation, jobseeker 21.
    assert_eq!(figure("streams"), "5");
}

#[test]
fn every_verb_has_help() {
    let out = rotation_ledger(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    let verbs: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|verb| verb != "help")
        .collect();
    for verb in ["import", "dump", "verify", "rejections", "stats"] {
        assert!(
            verbs.iter().any(|v| v == verb),
            "{verb} missing from {help}"
        );
    }
    for verb in &verbs {
        let out = rotation_ledger(&[verb, "--help"]);
        assert!(out.status.success(), "{verb} --help: {out:?}");
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!("Usage: rotation-ledger {verb}")),
            "{verb}: {stdout}"
        );
    }
    for verb in ["import", "dump", "verify", "rejections", "stats"] {
        let out = rotation_ledger(&[verb, "--help"]);
        assert!(
            text(&out.stdout).contains("--data <DIR>"),
            "{verb}: {out:?}"
        );
    }
}

/// Regression: the reading verbs opened (and so created) whatever
/// directory `--data` named, so `verify` on a mistyped path created an
/// empty ledger there and reported a sound chain.
#[test]
fn reading_verbs_refuse_a_missing_data_directory() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("ledger-dta");
    for verb in ["verify", "dump", "rejections", "stats"] {
        let out = rotation_ledger(&[verb, "--data", path(&missing)]);
        assert!(!out.status.success(), "{verb}: {out:?}");
        assert!(text(&out.stdout).is_empty(), "{verb}: {out:?}");
        assert!(
            text(&out.stderr).contains(path(&missing)),
            "{verb}: {out:?}"
        );
        assert!(!missing.exists(), "{verb} created {}", missing.display());
    }
    // Importing is how a ledger comes to be, so `import` still creates it.
    let file = jsonl(
        dir.path(),
        "one.jsonl",
        &[partnership_registered().to_string()],
    );
    let out = rotation_ledger(&["import", "--data", path(&missing), &file]);
    assert!(out.status.success(), "{out:?}");
    let out = rotation_ledger(&["verify", "--data", path(&missing)]);
    assert!(out.status.success(), "{out:?}");
}

/// A partnership slug outside `[a-z0-9-]{1,40}` in the configuration could
/// never match an event: `serve` refuses it at start-up, naming the entry.
#[test]
fn serve_refuses_a_configuration_with_a_bad_partnership_slug() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let digest = "a".repeat(64);
    for (config, named) in [
        (
            format!(
                "[[tokens]]\nsha256 = \"{digest}\"\nrole = \"board\"\npartnerships = [\"Stoke!\"]\n"
            ),
            "[[tokens]] entry 1: partnership `Stoke!`",
        ),
        (
            "[partnerships.\"Stoke!\"]\nmin_unemployed_weeks = 26\nmax_substitution_weeks = 26\n"
                .to_owned(),
            "[partnerships.\"Stoke!\"]",
        ),
    ] {
        let file = dir.path().join("ledger.toml");
        std::fs::write(&file, config).unwrap();
        let out = rotation_ledger(&[
            "serve",
            "--http",
            "127.0.0.1:0",
            "--data",
            path(&dir.path().join("ledger")),
            "--config",
            path(&file),
        ]);
        assert!(!out.status.success(), "{out:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(named), "{named}: {stderr}");
        assert!(stderr.contains("not a partnership slug"), "{stderr}");
    }
}

/// Users and scripts write common options first, as with `git -C`:
/// `--data` and `--config` work before or after every verb.
#[test]
fn common_options_work_before_or_after_every_verb() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("ledger");
    let file = jsonl(dir.path(), "one.jsonl", &mixed_lines()[..1]);

    let before = rotation_ledger(&["--data", path(&data), "import", &file]);
    assert!(before.status.success(), "{before:?}");
    let after = rotation_ledger(&["stats", "--data", path(&data)]);
    assert!(text(&after.stdout).contains("events      1"), "{after:?}");
    let before = rotation_ledger(&["--data", path(&data), "stats"]);
    assert_eq!(text(&before.stdout), text(&after.stdout));

    let config = dir.path().join("ledger.toml");
    std::fs::write(&config, "[disclosure]\nthreshold = 10\n").unwrap();
    let help = text(&rotation_ledger(&["--help"]).stdout);
    let verbs: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|verb| *verb != "help")
        .collect();
    assert!(verbs.len() >= 10, "{help}");
    for verb in verbs {
        let usage = text(&rotation_ledger(&[verb, "--help"]).stdout);
        for option in ["--data <DIR>", "--config <FILE>"] {
            assert!(usage.contains(option), "{verb} --help lacks {option}");
        }
        for args in [
            vec![
                "--data",
                path(&data),
                "--config",
                path(&config),
                verb,
                "--help",
            ],
            vec![
                verb,
                "--help",
                "--data",
                path(&data),
                "--config",
                path(&config),
            ],
        ] {
            let out = rotation_ledger(&args);
            assert!(out.status.success(), "{args:?}: {out:?}");
        }
    }
}
