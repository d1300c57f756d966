//! The dashboards' projector: after a crash, a change of definitions or a
//! bad checkpoint it ends equal to a fold of the whole log, and
//! `rotation-ledger rebuild` writes a checkpoint the projector resumes from.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use rotation_ledger::config::Config;
use rotation_ledger::ledger::{Ledger, LedgerOptions};
use rotation_ledger::projector::{
    self, CHECKPOINT, DashboardRead, DashboardView, Projector, ProjectorOptions, ProjectorTask,
};
use rotation_ledger::simulate::{Scenario, simulate};
use rotation_projections::dashboard::{Dashboards, SchemeLimits};
use tokio_util::sync::CancellationToken;

use crate::support::{TempLedger, binary};

/// A small but complete two-partnership history, about 3,200 events: a
/// fold of all of it decodes on other threads, one of half of it
/// does not.
fn history() -> Vec<String> {
    let scenario = Scenario {
        partnerships: 2,
        jobseekers: 160,
        months: 12,
        seed: 11,
        start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        invalid_rate: 0.0,
    };
    simulate(&scenario).map(|s| s.line).collect()
}

async fn load(ledger: &Ledger, lines: &[String]) {
    let summary = rotation_ledger::demo::load(ledger, lines)
        .await
        .expect("the history imports");
    assert_eq!(summary.rejected, 0, "{:?}", summary.problems);
}

/// No checkpoint but the ones a test asks for.
fn rare_checkpoints() -> ProjectorOptions {
    ProjectorOptions {
        checkpoint_interval: Duration::from_secs(3_600),
        checkpoint_max_age: Duration::from_secs(3_600),
    }
}

/// A running projector, and what stops it.
struct Running {
    projector: Projector,
    task: ProjectorTask,
    shutdown: CancellationToken,
}

async fn start(ledger: &Ledger, options: ProjectorOptions) -> Running {
    let shutdown = CancellationToken::new();
    let (projector, task) = Projector::start(ledger.clone(), config(), options, shutdown.clone())
        .await
        .unwrap();
    Running {
        projector,
        task,
        shutdown,
    }
}

impl Running {
    /// Stops it cleanly, as on SIGTERM, and waits for it to finish.
    async fn stop(self) {
        self.shutdown.cancel();
        drop(self.projector);
        self.task.join().await.unwrap();
    }
}

fn config() -> Arc<Config> {
    Arc::new(Config::default())
}

/// The version and position of the stored checkpoint.
fn checkpoint(ledger: &Ledger) -> Option<(u32, u64)> {
    let bytes = ledger.checkpoint(CHECKPOINT).expect("the store reads")?;
    Some((
        u32::from_be_bytes(bytes[..4].try_into().unwrap()),
        u64::from_be_bytes(bytes[4..12].try_into().unwrap()),
    ))
}

fn store_checkpoint(ledger: &Ledger, bytes: &[u8]) {
    ledger.save_checkpoint(CHECKPOINT, bytes, true).unwrap();
}

/// Asserts that the projector serves exactly what a fold from position 1 gives.
fn assert_equals_full_fold(projector: &Projector, ledger: &Ledger) {
    let fresh = projector::fold(ledger, &config(), |_, _| {}).expect("the log folds");
    assert_eq!(fresh.position(), ledger.head().position);
    assert!(
        projector.snapshot() == fresh,
        "the projector's state differs from a full fold"
    );
    assert!(!fresh.partnerships().is_empty());
    for partnership in fresh.partnerships() {
        let expected =
            serde_json::to_vec(&fresh.dashboard(&partnership, &SchemeLimits::default())).unwrap();
        assert_eq!(
            projector.dashboard(&partnership, DashboardView::Raw),
            DashboardRead::Found(expected.into()),
            "{partnership}"
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the ledger in `dir`, waiting for the threads of a "crashed"
/// instance to let go of its files.
fn reopen(dir: &Path) -> Ledger {
    let mut tries = 0;
    loop {
        match Ledger::open(dir, LedgerOptions::default()) {
            Ok(ledger) => return ledger,
            Err(error) if tries < 100 => {
                tries += 1;
                let _ = error;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("the ledger does not reopen: {error}"),
        }
    }
}

#[test]
fn dashboards_after_a_crash_equal_a_full_fold() {
    let dir = tempfile::tempdir().unwrap();
    let lines = history();
    let (first, second) = lines.split_at(lines.len() / 2);

    // A projector that stops cleanly leaves a checkpoint at the head.
    let first_head = runtime().block_on(async {
        let ledger = reopen(dir.path());
        load(&ledger, first).await;
        let head = ledger.head().position;
        let running = start(&ledger, rare_checkpoints()).await;
        let projector = &running.projector;
        projector.wait_for(head).await;
        running.stop().await;
        assert_eq!(checkpoint(&ledger), Some((Dashboards::VERSION, head)));
        ledger.close();
        head
    });

    // The next one applies the second half and dies with its runtime,
    // mid-flight, without a checkpoint of what it applied.
    let crashed = runtime();
    let second_head = crashed.block_on(async {
        let ledger = reopen(dir.path());
        // Never stopped: it dies with the runtime.
        let running = start(&ledger, rare_checkpoints()).await;
        let projector = &running.projector;
        assert_eq!(projector.progress().resumed_from, first_head);
        load(&ledger, second).await;
        let head = ledger.head().position;
        projector.wait_for(head).await;
        head
    });
    crashed.shutdown_timeout(Duration::from_secs(5));
    assert!(second_head > first_head);

    // Restarted, it resumes from the last checkpoint and catches up.
    runtime().block_on(async {
        let ledger = reopen(dir.path());
        assert_eq!(checkpoint(&ledger), Some((Dashboards::VERSION, first_head)));
        let running = start(&ledger, rare_checkpoints()).await;
        let projector = &running.projector;
        assert_eq!(projector.progress().resumed_from, first_head);
        projector.wait_for(second_head).await;
        assert_equals_full_fold(projector, &ledger);
        running.stop().await;
        assert_eq!(
            checkpoint(&ledger),
            Some((Dashboards::VERSION, second_head))
        );
        ledger.close();
    });
}

#[tokio::test]
async fn a_checkpoint_of_other_definitions_is_served_until_the_rebuild_is_in() {
    let temp = TempLedger::new();
    let lines = history();
    load(&temp.ledger, &lines).await;
    let head = temp.ledger.head().position;
    // An older version's state, as far as position 100.
    let mut old = Dashboards::new();
    for event in temp.ledger.events(0, 100).unwrap() {
        old.apply(&event);
    }
    let mut bytes = (Dashboards::VERSION + 1).to_be_bytes().to_vec();
    bytes.extend_from_slice(&100u64.to_be_bytes());
    bytes.extend_from_slice(&serde_json::to_vec(&old).unwrap());
    store_checkpoint(&temp.ledger, &bytes);

    let running = start(&temp.ledger, rare_checkpoints()).await;
    let projector = &running.projector;
    // This test's runtime has one thread: the rebuild has not begun yet.
    let progress = projector.progress();
    assert!(progress.rebuilding && progress.live, "{progress:?}");
    assert_eq!(
        progress.position, 100,
        "the old figures are served meanwhile"
    );
    assert_eq!(progress.resumed_from, 0);
    assert!(matches!(
        projector.dashboard("stoke", DashboardView::Raw),
        DashboardRead::Found(_)
    ));

    projector.wait_for(head).await;
    assert!(!projector.progress().rebuilding);
    assert_equals_full_fold(projector, &temp.ledger);
    running.stop().await;
    assert_eq!(checkpoint(&temp.ledger), Some((Dashboards::VERSION, head)));
}

#[tokio::test]
async fn an_unreadable_checkpoint_is_rebuilt_from_the_log() {
    let temp = TempLedger::new();
    load(&temp.ledger, &history()).await;
    let head = temp.ledger.head().position;
    for bytes in [
        &b"junk"[..],
        &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, b'{'][..],
    ] {
        store_checkpoint(&temp.ledger, bytes);
        let running = start(&temp.ledger, rare_checkpoints()).await;
        let projector = &running.projector;
        let progress = projector.progress();
        assert_eq!(progress.resumed_from, 0);
        assert!(
            !progress.live,
            "nothing is served as complete before the catch-up"
        );
        assert_eq!(
            projector.dashboard("nowhere", DashboardView::Raw),
            DashboardRead::CatchingUp
        );
        projector.wait_for(head).await;
        assert_equals_full_fold(projector, &temp.ledger);
        assert_eq!(
            projector.dashboard("nowhere", DashboardView::Raw),
            DashboardRead::Unknown
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn rebuild_writes_the_checkpoint_the_projector_resumes_from() {
    let temp = TempLedger::new();
    load(&temp.ledger, &history()).await;
    let head = temp.ledger.head().position;
    let dir = temp.into_dir();
    let output = std::process::Command::new(binary())
        .args(["rebuild", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("from {head} events")), "{stdout}");

    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    assert_eq!(checkpoint(&ledger), Some((Dashboards::VERSION, head)));
    // The projector runs as `serve` would: under the ledger's record key,
    // which `rebuild` folded under too.
    let key_file = rotation_ledger::record_key::path(dir.path(), None);
    let served = Arc::new(Config {
        record_key: rotation_ledger::record_key::load_or_create(&key_file).unwrap(),
        ..Config::default()
    });
    let shutdown = CancellationToken::new();
    let (projector, task) = Projector::start(
        ledger.clone(),
        Arc::clone(&served),
        rare_checkpoints(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert_eq!(projector.progress().resumed_from, head);
    assert!(projector.progress().live);
    let fresh = projector::fold(&ledger, &served, |_, _| {}).expect("the log folds");
    assert_eq!(fresh.position(), head);
    Running {
        projector,
        task,
        shutdown,
    }
    .stop()
    .await;
    ledger.close();
}

#[tokio::test]
async fn an_idle_projector_checkpoints_once_the_interval_has_passed() {
    let temp = TempLedger::new();
    crate::support::scheme(&temp).await;
    let options = ProjectorOptions {
        checkpoint_interval: Duration::from_secs(5),
        checkpoint_max_age: Duration::from_secs(300),
    };
    let running = start(&temp.ledger, options).await;
    running.projector.wait_for(6).await;
    tokio::time::pause();
    // Paused time moves by itself only when every task, the projector's
    // blocking steps included, waits for a timer: after this sleep the
    // projector has done all it would do up to 4.5 s after it went idle.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(checkpoint(&temp.ledger), None, "not before the interval");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(checkpoint(&temp.ledger), Some((Dashboards::VERSION, 6)));
    tokio::time::resume();
    running.stop().await;
}

/// The board's view (the protected dashboard) of `slug` as served now.
fn board_bytes(projector: &Projector, slug: &str) -> bytes::Bytes {
    match projector.dashboard(slug, DashboardView::Protected) {
        DashboardRead::Found(bytes) => bytes,
        other => panic!("no board view of {slug}: {other:?}"),
    }
}

#[tokio::test]
async fn the_same_log_gives_the_same_board_view_after_restart_rebuild_and_replay() {
    let config = Arc::new(Config {
        record_key: rotation_ledger::record_key::RecordKeyBytes(
            b"a ledger's record-key secret".to_vec(),
        ),
        ..Config::default()
    });
    let start_with = |ledger: &Ledger| {
        let shutdown = CancellationToken::new();
        let ledger = ledger.clone();
        let config = Arc::clone(&config);
        async move {
            let (projector, task) =
                Projector::start(ledger, config, rare_checkpoints(), shutdown.clone())
                    .await
                    .unwrap();
            Running {
                projector,
                task,
                shutdown,
            }
        }
    };
    let temp = TempLedger::new();
    let ledger = &temp.ledger;
    let lines = history();
    let (first, second) = lines.split_at(lines.len() / 2);

    // Half the log, checkpointed on a clean stop.
    load(ledger, first).await;
    let running = start_with(ledger).await;
    running.projector.wait_for(ledger.head().position).await;
    running.stop().await;
    let half = ledger
        .checkpoint(CHECKPOINT)
        .unwrap()
        .expect("a checkpoint");

    // The rest, folded on top of it.
    load(ledger, second).await;
    let head = ledger.head().position;
    let running = start_with(ledger).await;
    running.projector.wait_for(head).await;
    let slugs = running.projector.partnerships();
    let views = |projector: &Projector| -> Vec<bytes::Bytes> {
        slugs
            .iter()
            .map(|slug| board_bytes(projector, slug))
            .collect()
    };
    let served = views(&running.projector);
    let board: serde_json::Value = serde_json::from_slice(&served[0]).unwrap();
    assert!(
        board["releases"]
            .as_object()
            .unwrap()
            .values()
            .any(|r| r.is_object()),
        "some table was released: {board}"
    );
    running.stop().await;

    // A restart resumes from the last checkpoint.
    let running = start_with(ledger).await;
    running.projector.wait_for(head).await;
    assert_eq!(running.projector.progress().resumed_from, head);
    assert_eq!(views(&running.projector), served, "after a restart");
    running.stop().await;

    // An unreadable checkpoint means a rebuild from the whole log.
    store_checkpoint(ledger, b"not a checkpoint");
    let running = start_with(ledger).await;
    running.projector.wait_for(head).await;
    assert_eq!(running.projector.progress().resumed_from, 0);
    assert_eq!(views(&running.projector), served, "after a rebuild");
    running.stop().await;

    // The half-way checkpoint means a replay of the second half.
    store_checkpoint(ledger, &half);
    let running = start_with(ledger).await;
    running.projector.wait_for(head).await;
    assert!(running.projector.progress().resumed_from < head);
    assert_eq!(views(&running.projector), served, "after a replay");
    running.stop().await;
}
