//! A damaged store is never opened short, and a broken chain is never
//! appended to: the head record outside sled, the refusals that name both
//! positions and what to do, and the chain verified while serving.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rotation_ledger::ledger::{HEAD_FILE, HeadRecord, Ledger, LedgerOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    TempLedger, admin_config, binary, jobseeker_registered, scheme, serve_listening,
};

/// What every refusal of a damaged store tells the operator to do.
const WHAT_TO_DO: &str = "rotation-ledger restore --from-nats URL";

/// A closed ledger of `batches` batches of 20 registrations after the
/// scheme's events; returns its directory and its head position.
async fn a_log(batches: u128) -> (tempfile::TempDir, u64) {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    for batch in 0..batches {
        let events: Vec<Value> = (0..20)
            .map(|i| jobseeker_registered(1_000 + batch * 20 + i))
            .collect();
        assert_eq!(ledger.code(&json!(events)).await, "accepted");
    }
    let head = ledger.ledger.head().position;
    (ledger.into_dir(), head)
}

fn rotation_ledger(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn head_record(data: &Path) -> HeadRecord {
    rotation_ledger::ledger::head_record(data)
        .expect("the head record reads")
        .expect("the head record exists")
}

fn write_head_record(data: &Path, record: &HeadRecord) {
    rotation_ledger::ledger::write_head_record(data, record).expect("the head record is written");
}

/// Flips one byte of sled's log inside the stored bytes of an early
/// event, as a failing disk would.
fn damage_an_early_event(data: &Path) {
    let log = data.join("db");
    let mut bytes = std::fs::read(&log).expect("sled's log");
    // Entity 1003's id, as the fourth registration stored it.
    let needle = crate::support::uuid(1_003);
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("the early event is in sled's log");
    bytes[at + 3] ^= 0x20;
    std::fs::write(&log, bytes).expect("the log is rewritten");
}

fn remove_snapshots(data: &Path) {
    for entry in std::fs::read_dir(data).expect("the data directory") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("snap.") {
            std::fs::remove_file(&path).expect("the snapshot is removed");
        }
    }
}

/// The case: one byte of an early event flipped and sled's
/// snapshot gone, so that sled recovers only what came before it. Every
/// verb that opens the store refuses it, naming both positions.
#[tokio::test]
async fn a_store_damaged_early_without_its_snapshot_is_refused_not_opened_short() {
    let (dir, head) = a_log(27).await;
    assert!(head >= 540, "{head}");
    assert_eq!(head_record(dir.path()).position, head);
    remove_snapshots(dir.path());
    damage_an_early_event(dir.path());
    for verb in ["verify", "dump", "stats"] {
        let out = rotation_ledger(&[verb], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb} succeeded on a damaged store");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ok: the chain verifies"),
            "{verb}"
        );
        assert!(stderr.contains(WHAT_TO_DO), "{verb}: {stderr}");
        assert!(
            stderr.contains("damaged"),
            "{verb} does not say the store is damaged: {stderr}"
        );
        if stderr.contains("opened short") {
            assert!(
                stderr.contains(&format!("position {head}")),
                "{verb} does not name the recorded position: {stderr}"
            );
        }
    }
    // `serve` does not start on it either.
    let out = Command::new(binary())
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("serve runs");
    assert!(!out.status.success(), "serve started on a damaged store");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(WHAT_TO_DO),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same flip with sled's files otherwise left as they are (a store
/// this small has no snapshot yet, so sled opens it short too): refused,
/// saying what to do. sled's bare "Read corrupted data", which a
/// snapshot makes it say instead, is mapped to the same advice (a unit
/// test in `store`).
#[tokio::test]
async fn a_damaged_store_with_its_files_left_in_place_is_refused_too() {
    let (dir, _) = a_log(27).await;
    damage_an_early_event(dir.path());
    for verb in ["verify", "dump"] {
        let out = rotation_ledger(&[verb], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb} succeeded on a damaged store");
        assert!(stderr.contains(WHAT_TO_DO), "{verb}: {stderr}");
    }
}

/// A store cut short at its end (sled's log truncated) is behind its head
/// record: refused, with both positions named.
#[tokio::test]
async fn a_store_behind_its_head_record_is_refused_with_both_positions() {
    let (dir, head) = a_log(3).await;
    // A head record from a later flush than the store holds.
    let mut record = head_record(dir.path());
    record.position = head + 7;
    write_head_record(dir.path(), &record);
    let error = Ledger::open(dir.path(), LedgerOptions::default())
        .expect_err("a store behind its head record is refused")
        .to_string();
    assert!(
        error.contains(&format!("ends at position {head}")),
        "{error}"
    );
    assert!(
        error.contains(&format!("says position {} ", head + 7)),
        "{error}"
    );
    assert!(error.contains(WHAT_TO_DO), "{error}");
    let out = rotation_ledger(&["verify"], dir.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("ends at position {head}")),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_store_whose_head_event_is_not_the_recorded_one_is_refused() {
    let (dir, head) = a_log(1).await;
    let mut record = head_record(dir.path());
    record.hash = "ab".repeat(32);
    write_head_record(dir.path(), &record);
    let error = Ledger::open(dir.path(), LedgerOptions::default())
        .expect_err("a store that does not chain to its head record is refused")
        .to_string();
    assert!(error.contains(&format!("at position {head}")), "{error}");
    assert!(error.contains(&"ab".repeat(32)), "{error}");
    assert!(error.contains(WHAT_TO_DO), "{error}");
}

/// A store written before the head record gets one; a store ahead of its
/// record (a crash between sled's flush and the record's rewrite) opens
/// and brings the record forward.
#[tokio::test]
async fn a_store_without_or_ahead_of_its_head_record_opens_and_records_its_head() {
    let (dir, head) = a_log(2).await;
    let recorded = head_record(dir.path());
    assert_eq!(recorded.position, head);
    std::fs::remove_file(dir.path().join(HEAD_FILE)).expect("removed");
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("opens");
    ledger.close();
    assert_eq!(head_record(dir.path()), recorded);

    // A record naming a hash the store does not hold there is refused.
    let mut behind = recorded.clone();
    behind.position = head - 1;
    behind.hash = "0".repeat(64);
    write_head_record(dir.path(), &behind);
    assert!(Ledger::open(dir.path(), LedgerOptions::default()).is_err());
    // The record of an earlier flush, the store being ahead of it.
    write_head_record(dir.path(), &recorded);
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("opens");
    let stored = ledger.event_json(head - 1).expect("read").expect("stored");
    ledger.close();
    let earlier: Value = serde_json::from_slice(&stored).expect("JSON");
    behind.hash = earlier["hash"].as_str().expect("a hash").to_owned();
    write_head_record(dir.path(), &behind);
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("opens ahead");
    ledger.close();
    assert_eq!(head_record(dir.path()), recorded);
}

/// The record is kept twice and rewritten in place: a copy torn by a
/// crash leaves the other, and only a file with neither copy whole is
/// refused.
#[tokio::test]
async fn a_torn_copy_of_the_head_record_leaves_the_other() {
    let (dir, head) = a_log(2).await;
    let path = dir.path().join(HEAD_FILE);
    let mut bytes = std::fs::read(&path).expect("the head record");
    assert!(bytes.len() >= 1024, "two copies of 512 bytes");
    bytes[20] ^= 0x01;
    std::fs::write(&path, &bytes).expect("written");
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("one copy is whole");
    ledger.close();
    assert_eq!(head_record(dir.path()).position, head);
    let mut bytes = std::fs::read(&path).expect("the head record");
    bytes[20] ^= 0x02;
    bytes[512 + 20] ^= 0x01;
    std::fs::write(&path, &bytes).expect("written");
    let error = Ledger::open(dir.path(), LedgerOptions::default())
        .expect_err("neither copy is whole")
        .to_string();
    assert!(error.contains("neither copy"), "{error}");
}

/// Every flush that moves the head rewrites the record before anyone is
/// answered.
#[tokio::test]
async fn every_acknowledged_commit_is_in_the_head_record() {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    for n in 0..5 {
        assert_eq!(
            ledger.code(&jobseeker_registered(2_000 + n)).await,
            "accepted"
        );
        let head = ledger.ledger.head();
        let record = head_record(ledger.path());
        assert_eq!(record.position, head.position);
        assert_eq!(record.hash, head.hash);
    }
}

/// A `serve` of a data directory, with an admin token `admin`.
struct Serve {
    child: tokio::process::Child,
    addr: String,
}

impl Serve {
    async fn start(data: &Path) -> Self {
        let config = data.with_extension("toml");
        std::fs::write(&config, admin_config("")).expect("the configuration is written");
        let (child, addr) = serve_listening(data, &config).await;
        Self { child, addr }
    }

    /// Status and body of a request.
    async fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("serve listens");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer admin\r\nContent-Type: application/cloudevents-batch+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("sent");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("an answer");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status: {answer}"));
        (status, answer)
    }
}

/// An event altered on disk with sled's checksums intact: `serve` starts,
/// finds the break in the background, and from then refuses writes,
/// reports it on `/healthz` and `/metrics`.
#[tokio::test]
async fn serve_on_a_broken_chain_refuses_writes_and_reports_unhealthy() {
    let ledger = TempLedger::new();
    scheme(&ledger).await;
    for n in 0..4 {
        assert_eq!(
            ledger.code(&jobseeker_registered(3_000 + n)).await,
            "accepted"
        );
    }
    let stored = ledger.ledger.event_json(3).expect("read").expect("stored");
    let mut event: Value = serde_json::from_slice(&stored).expect("JSON");
    // One value inside `data` changed, the record still a valid event.
    let data = event["data"].as_object_mut().expect("data");
    let (_, value) = data.iter_mut().next().expect("a data field");
    *value = json!("altered");
    ledger
        .ledger
        .tamper(3, &serde_json::to_vec(&event).expect("JSON"))
        .expect("tamper");
    let head = ledger.ledger.head().position;
    let dir = ledger.into_dir();
    let data = dir.path().to_owned();
    let mut serve = Serve::start(&data).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (status, answer) = serve.request("GET", "/healthz", "").await;
        if status == 503 {
            break answer;
        }
        assert_eq!(status, 200, "{answer}");
        assert!(
            Instant::now() < deadline,
            "the break was never reported: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(health.contains("\"chain\":\"broken\""), "{health}");
    assert!(health.contains("\"first_bad_position\":3"), "{health}");
    assert!(health.contains("broken at position 3"), "{health}");

    let body = json!([jobseeker_registered(3_100)]).to_string();
    let (status, answer) = serve.request("POST", "/v1/events", &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("position 3"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );

    let (status, metrics) = serve.request("GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("rotation_ledger_chain_ok 0"), "{metrics}");
    assert!(
        metrics.contains("rotation_ledger_chain_first_bad_position 3"),
        "{metrics}"
    );
    serve.child.kill().await.expect("serve stops");
    // Nothing was appended onto the broken chain.
    let out = rotation_ledger(&["stats"], &data);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("events      {head}\n")),
        "{out:?}"
    );
}

/// A sound chain verifies in the background and `/healthz` says so.
#[tokio::test]
async fn serve_on_a_sound_chain_reports_it_verified() {
    let (dir, head) = a_log(2).await;
    let serve = Serve::start(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = serve.request("GET", "/healthz", "").await;
        assert_eq!(status, 200, "{answer}");
        if answer.contains("\"chain\":\"verified\"") {
            assert!(
                answer.contains(&format!("\"head_position\":{head}")),
                "{answer}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never verified: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = serve.request("GET", "/metrics", "").await;
    assert!(
        metrics.contains("rotation_ledger_chain_verified 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rotation_ledger_storage_ok 1"),
        "{metrics}"
    );
}

/// A tmpfs of its own, small enough to fill; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test fills a disk of its own and needs to mount a tmpfs (run the tests as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk to the last byte with a file of its own.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler is created");
        let block = vec![0u8; 64 * 1024];
        loop {
            if let Err(error) = file.write_all(&block) {
                assert_eq!(error.raw_os_error(), Some(28), "{error}");
                break;
            }
        }
        // The last bytes, to the byte.
        while file.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The disk fills under a serving ledger: every post gets 503 with
/// `Retry-After`, `/healthz` says why, `/metrics` counts it. Once there
/// is room again the ledger writes again by itself, and nothing it
/// acknowledged is lost or committed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_the_ledger_writes_again_and_loses_nothing() {
    let disk = SmallDisk::mount("48m");
    let data = disk.path().join("ledger");
    let mut serve = Serve::start(&data).await;
    // Each jobseeker's registration, made once: a publisher posts the
    // same event (the same id) again after a refusal.
    let bodies: std::collections::HashMap<u128, String> = (5_000..8_000)
        .map(|n| (n, json!([jobseeker_registered(n)]).to_string()))
        .collect();
    let post = |n: u128| {
        let body = bodies[&n].clone();
        let serve = &serve;
        async move { serve.request("POST", "/v1/events", &body).await }
    };
    let (status, answer) = serve
        .request(
            "POST",
            "/v1/events",
            &json!([crate::support::partnership_registered()]).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let (status, answer) = post(5_000 + n).await;
        assert_eq!(status, 200, "{answer}");
        acknowledged.push(5_000 + n);
    }

    let filler = disk.fill();
    let mut refused = Vec::new();
    for n in 0..500 {
        let (status, answer) = post(6_000 + n).await;
        match status {
            200 => acknowledged.push(6_000 + n),
            503 => {
                assert!(
                    answer.to_ascii_lowercase().contains("retry-after"),
                    "{answer}"
                );
                refused.push(6_000 + n);
                if refused.len() >= 5 {
                    break;
                }
            }
            other => panic!("a full disk answered {other}: {answer}"),
        }
    }
    assert!(!refused.is_empty(), "the full disk never failed a write");
    let (status, health) = serve.request("GET", "/healthz", "").await;
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("the store cannot write"), "{health}");
    let (_, metrics) = serve.request("GET", "/metrics", "").await;
    assert!(
        metrics.contains("rotation_ledger_storage_ok 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("rotation_ledger_storage_failures_total 0"),
        "{metrics}"
    );

    std::fs::remove_file(filler).expect("room again");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, health) = serve.request("GET", "/healthz", "").await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger never wrote again: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What was refused is posted again, as a publisher would; then more.
    for n in refused.iter().copied().chain(7_000..7_010) {
        let (status, answer) = post(n).await;
        assert_eq!(status, 200, "{answer}");
        acknowledged.push(n);
    }
    serve.child.kill().await.expect("serve stops");
    let _ = serve.child.wait().await;

    let out = rotation_ledger(&["verify"], &data);
    assert!(out.status.success(), "{out:?}");
    let out = rotation_ledger(&["dump"], &data);
    assert!(out.status.success(), "{out:?}");
    let dumped: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("JSON");
            event["subject"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    for n in &acknowledged {
        let subject = format!("person/{}", crate::support::uuid(*n));
        let times = dumped.iter().filter(|s| **s == subject).count();
        assert_eq!(times, 1, "jobseeker {n} is committed {times} times");
    }
}
