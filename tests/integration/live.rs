//! The read-only verbs and `backup` against a ledger that `serve` holds:
//! the same output and exit status as from the stopped store, a clear
//! refusal when the server cannot be reached, and a backup taken while
//! events are posted that holds every event acknowledged before it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::browser::http;
use crate::support::{binary, free_port, jobseeker_registered, scheme_events};

const ADMIN_TOKEN: &str = "live-admin-token";

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Runs the binary with `args`; its output, whatever the status.
fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A configuration with one admin token, in `dir`.
fn config(dir: &Path) -> PathBuf {
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[[tokens]]\nsha256 = \"{}\"\nrole = \"admin\"\npartnerships = [\"*\"]\n",
            rotation_ledger::auth::token_digest(ADMIN_TOKEN)
        ),
    )
    .unwrap();
    file
}

/// A `serve` process on `data`.
struct Serving {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Serving {
    /// Starts `serve` and waits until it answers and has written its file.
    fn start(data: &Path, config: &Path) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let log = data.with_extension(format!("{}.log", address.replace([':', '.'], "-")));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary())
            .args(["serve", "--data", path(data), "--config", path(config)])
            .args(["--http", &address])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("the binary starts");
        let serving = Self {
            child,
            address,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // A killed server's file may be there already: wait for this one's.
        let pid = serving.child.id();
        let written = || {
            std::fs::read(data.join("serve.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .is_some_and(|file| file["pid"] == pid)
        };
        // Any answer will do: a server on a broken chain answers 503, and
        // may do so from its first answer on.
        while serving.get("/healthz").0 == 0 || !written() {
            assert!(Instant::now() < deadline, "{}", serving.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        serving
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        http(&self.address, "GET", path, Some(ADMIN_TOKEN), None).unwrap_or((0, String::new()))
    }

    /// Waits until the dashboards have folded the whole log.
    fn projected(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.get_json("/healthz");
            if health["projection"] == "live"
                && health["projected_position"] == health["head_position"]
            {
                return;
            }
            assert!(Instant::now() < deadline, "{health}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// SIGTERM, and the clean exit it brings.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no clean shutdown at all.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated history imported into `data` (some of it refused, so that
/// there are rejections to list).
fn imported_history(dir: &Path, data: &Path) {
    let history = dir.join("history.jsonl");
    let simulated = run(&[
        "simulate",
        "--partnerships",
        "2",
        "--jobseekers",
        "60",
        "--months",
        "12",
        "--start",
        "2024-05-01",
        "--seed",
        "11",
        "--out",
        path(&history),
    ]);
    assert!(simulated.status.success(), "{}", stderr(&simulated));
    // Two refused lines, kept as rejections.
    let mut lines = std::fs::read_to_string(&history).unwrap();
    lines.push_str("{\"specversion\": \"1.0\", \"id\": \"not-an-event\"}\n[1, 2]\n");
    std::fs::write(&history, lines).unwrap();
    let imported = run(&["import", "--data", path(data), path(&history)]);
    assert_eq!(imported.status.code(), Some(2), "{}", stderr(&imported));
}

/// What a verb prints and how it exits; `stats`' size on disk is
/// sled's and moves as sled writes, so it is left out.
fn answer(args: &[&str]) -> (Option<i32>, String) {
    let output = run(args);
    let text = stdout(&output)
        .lines()
        .filter(|line| !line.starts_with("disk bytes"))
        .map(|line| format!("{line}\n"))
        .collect();
    (output.status.code(), text)
}

#[test]
fn read_only_verbs_answer_the_same_from_a_live_server_as_from_the_stopped_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    imported_history(dir.path(), &data);
    let config = config(dir.path());
    let d = path(&data);
    let verbs: Vec<Vec<&str>> = vec![
        vec!["dump", "--data", d],
        vec!["dump", "--data", d, "--after", "17"],
        vec!["verify", "--data", d],
        vec!["verify", "--data", d, "--json"],
        vec!["rejections", "--data", d],
        vec!["rejections", "--data", d, "--json"],
        vec!["stats", "--data", d],
        vec!["checkpoint-key", "--data", d],
        vec!["prove", "--data", d, "5", "--size", "20"],
    ];
    let stopped: Vec<_> = verbs.iter().map(|args| answer(args)).collect();
    for ((status, text), args) in stopped.iter().zip(&verbs) {
        assert_eq!(*status, Some(0), "{args:?}");
        assert!(!text.is_empty(), "{args:?} prints something");
    }
    assert!(
        stopped[4].1.lines().count() > 0,
        "the history holds rejections"
    );

    let server = Serving::start(&data, &config);
    let live: Vec<_> = verbs.iter().map(|args| answer(args)).collect();
    assert_eq!(stopped.len(), live.len());
    for ((stopped, live), args) in stopped.iter().zip(&live).zip(&verbs) {
        assert_eq!(stopped, live, "{args:?} differs against the live server");
    }
    // The server answered them: its store was held all along.
    let held = run(&["import", "--data", d, "-"]);
    assert_eq!(held.status.code(), Some(1));
    assert!(
        stderr(&held).contains(&format!(
            "is held by the server at http://{}",
            server.address
        )),
        "{}",
        stderr(&held)
    );

    // The file is its owner's alone, and its credential is no use to
    // another server; a configured admin token may not ask for a backup.
    let file = data.join("serve.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (status, body) = http(
        &server.address,
        "POST",
        "/v1/backup",
        Some(ADMIN_TOKEN),
        Some(&serde_json::json!({"out": path(&dir.path().join("copy"))})),
    )
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(!dir.path().join("copy").exists());

    server.stop();
    assert!(!file.exists(), "a clean shutdown removes serve.json");
}

#[test]
fn a_broken_chain_fails_verify_alike_on_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    imported_history(dir.path(), &data);
    {
        let ledger = rotation_ledger::ledger::Ledger::open(
            &data,
            rotation_ledger::ledger::LedgerOptions::default(),
        )
        .unwrap();
        let mut event: Value =
            serde_json::from_slice(&ledger.events_json(2).next().unwrap().unwrap().1).unwrap();
        event["source"] = Value::from("tampered");
        ledger
            .tamper(3, serde_json::to_vec(&event).unwrap().as_slice())
            .unwrap();
        ledger.close();
    }
    let d = path(&data);
    let stopped = (
        answer(&["verify", "--data", d]),
        answer(&["verify", "--data", d, "--json"]),
    );
    assert_eq!(stopped.0.0, Some(1), "{}", stopped.0.1);
    assert!(
        stopped.0.1.starts_with("broken: first bad position 3"),
        "{}",
        stopped.0.1
    );
    let server = Serving::start(&data, &config(dir.path()));
    let live = (
        answer(&["verify", "--data", d]),
        answer(&["verify", "--data", d, "--json"]),
    );
    assert_eq!(stopped, live);
    server.stop();
}

#[test]
fn a_killed_servers_file_is_ignored_and_a_held_store_without_one_says_how_to_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(dir.path());
    let d = path(&data);
    let first = Serving::start(&data, &config);
    first.kill();
    let stale =
        std::fs::read_to_string(data.join("serve.json")).expect("a killed server leaves its file");
    let verified = run(&["verify", "--data", d]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(stdout(&verified).starts_with("ok: the chain verifies; head position 0"));

    let second = Serving::start(&data, &config);
    let fresh = std::fs::read_to_string(data.join("serve.json")).unwrap();
    assert_ne!(stale, fresh, "the next server replaces the stale file");
    std::fs::remove_file(data.join("serve.json")).unwrap();
    for verb in ["verify", "dump", "rejections", "stats"] {
        let refused = run(&[verb, "--data", d]);
        assert_eq!(refused.status.code(), Some(1), "{verb}");
        let message = stderr(&refused);
        assert!(
            message.contains("is held by another process, most likely a running `serve`")
                && message.contains("GET /v1/verify"),
            "{verb}: {message}"
        );
    }
    second.stop();
}

/// Posts one registration at a time, of people from `first` on, until
/// told to stop, keeping the ids the server acknowledged, in order.
fn post_until(address: String, first: u128, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        let event = jobseeker_registered(n);
        let id = event["id"].as_str().unwrap().to_owned();
        let (status, body) = http(
            &address,
            "POST",
            "/v1/events",
            Some(ADMIN_TOKEN),
            Some(&Value::Array(vec![event])),
        )
        .expect("the server answers");
        assert_eq!(status, 200, "{body}");
        acked.lock().unwrap().push(id);
        n += 1;
    }
}

/// The ids of a data directory's events, read by `dump`.
fn dumped_ids(data: &Path) -> Vec<String> {
    let output = run(&["dump", "--data", path(data)]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_backup_taken_while_events_are_posted_holds_every_event_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let copy = dir.path().join("copy");
    let config = config(dir.path());
    let server = Serving::start(&data, &config);
    let (status, body) = http(
        &server.address,
        "POST",
        "/v1/events",
        Some(ADMIN_TOKEN),
        Some(&Value::Array(scheme_events())),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let posters: Vec<_> = (0..2_u128)
        .map(|poster| {
            let (address, stop, acked) = (server.address.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                post_until(address, 10_000 + poster * 1_000_000, stop, acked)
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 40 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before: Vec<String> = acked.lock().unwrap().clone();
    let backup = run(&["backup", "--data", path(&data), "--out", path(&copy)]);
    let during = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < during + 20 {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for poster in posters {
        poster.join().expect("every post was acknowledged");
    }
    assert!(
        backup.status.success(),
        "{}\n{}",
        stderr(&backup),
        server.log()
    );
    let report = stdout(&backup);
    assert!(report.starts_with("backed up "), "{report}");

    let copied = dumped_ids(&copy);
    for id in &before {
        assert!(
            copied.contains(id),
            "{id} was acknowledged before the backup began"
        );
    }
    assert!(
        copied.len() < 6 + acked.lock().unwrap().len(),
        "the copy stopped at a head while posting went on"
    );
    let verified = run(&["verify", "--data", path(&copy)]);
    assert!(verified.status.success(), "{}", stdout(&verified));
    #[cfg(unix)]
    for key in std::fs::read_dir(copy.join("keys")).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let key = key.unwrap();
        let mode = key.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.path().display());
    }
    assert!(
        !copy.join("serve.json").exists(),
        "the copy names no server"
    );

    // `serve` runs on the copy, at the copy's head.
    let on_copy = Serving::start(&copy, &config);
    let verdict = on_copy.get_json("/v1/verify");
    assert_eq!(verdict["ok"], true);
    assert_eq!(verdict["head_position"], copied.len());
    assert!(
        stdout(&verified).contains(verdict["head_hash"].as_str().unwrap()),
        "{}",
        stdout(&verified)
    );
    on_copy.stop();
    server.stop();
}

#[test]
fn a_backup_serves_the_same_head_and_boards_live_or_offline_and_refuses_a_used_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    imported_history(dir.path(), &data);
    let config = config(dir.path());
    let live_copy = dir.path().join("live-copy");
    let offline_copy = dir.path().join("offline-copy");
    let server = Serving::start(&data, &config);
    let backup = run(&["backup", "--data", path(&data), "--out", path(&live_copy)]);
    assert!(backup.status.success(), "{}", stderr(&backup));
    let again = run(&["backup", "--data", path(&data), "--out", path(&live_copy)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("is not empty"),
        "{}",
        stderr(&again)
    );

    let first_event: Value = serde_json::from_str(
        stdout(&run(&["dump", "--data", path(&data)]))
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let board = format!(
        "/v1/partnerships/{}/dashboard",
        first_event["partnership"].as_str().unwrap()
    );
    server.projected();
    let original_head = server.get_json("/v1/verify");
    let original_board = server.get_json(&board);
    server.stop();
    let offline = run(&[
        "backup",
        "--data",
        path(&data),
        "--out",
        path(&offline_copy),
    ]);
    assert!(offline.status.success(), "{}", stderr(&offline));

    for copy in [&live_copy, &offline_copy] {
        let on_copy = Serving::start(copy, &config);
        on_copy.projected();
        assert_eq!(
            on_copy.get_json("/v1/verify"),
            original_head,
            "{}",
            copy.display()
        );
        assert_eq!(
            on_copy.get_json(&board),
            original_board,
            "{}",
            copy.display()
        );
        on_copy.stop();
    }
}
