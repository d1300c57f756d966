//! Two nodes of a ledger group on one nats-server (`--replicas 1`): the
//! writer takes the lease, the other follows and serves the same log and
//! dashboards, a write sent to the follower is accepted through the
//! writer, `GET /v1/group` shows both, and a writer killed without warning
//! is replaced within 10 s. The three-node suite is `group`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::http;
use crate::support::{self, append_log, binary, free_port};
use crate::tools;

const TOKEN: &str = "pair-admin";

struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn nats_server(dir: &Path, port: u16) -> Process {
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
            dir.join("jetstream")
        ),
    )
    .expect("the configuration is written");
    let log = dir.join("nats.log");
    let child = Command::new(tools::nats_server())
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(append_log(&log))
        .spawn()
        .expect("nats-server starts");
    let process = Process { child, log };
    eventually(Duration::from_secs(10), "nats-server listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    process
}

fn node(dir: &Path, name: &str, port: u16, nats: &str) -> Process {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(binary())
        .args(["serve", "--nats", nats, "--group", "--replicas", "1"])
        .args(["--node-name", name])
        .arg("--group-key")
        .arg(dir.join("group.key"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--data")
        .arg(dir.join(name))
        .args(["--http", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stdout(append_log(&log))
        .stderr(append_log(&log))
        .spawn()
        .expect("serve --group starts");
    Process { child, log }
}

fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

fn get(port: u16, path: &str) -> (u16, String) {
    http(&format!("127.0.0.1:{port}"), "GET", path, Some(TOKEN), None).unwrap_or((0, String::new()))
}

fn post(port: u16, body: &Value) -> (u16, String) {
    http(
        &format!("127.0.0.1:{port}"),
        "POST",
        "/v1/events",
        Some(TOKEN),
        Some(body),
    )
    .unwrap_or((0, String::new()))
}

fn role(port: u16, name: &str) -> Option<String> {
    let (status, body) = get(port, "/v1/group");
    if status != 200 {
        return None;
    }
    let group: Value = serde_json::from_str(&body).ok()?;
    group["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node"] == name)
        .and_then(|n| n["role"].as_str())
        .map(str::to_owned)
}

fn head(port: u16) -> u64 {
    let (_, body) = get(port, "/healthz");
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|h| h["head_position"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_follower_serves_the_writers_log_forwards_writes_and_takes_over_when_it_dies() {
    // Its failover is timed: it takes its turn with the other NATS tests.
    let _one_at_a_time = crate::nats::ONE_AT_A_TIME.blocking_lock();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let nats_port = free_port();
    let _nats = nats_server(dir.path(), nats_port);
    let nats = format!("nats://127.0.0.1:{nats_port}");
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[[tokens]]\nsha256 = \"{}\"\nrole = \"admin\"\npartnerships = [\"*\"]\n",
            rotation_ledger::auth::token_digest(TOKEN)
        ),
    )
    .expect("the configuration is written");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let key: [u8; 32] = rand::random();
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.path().join("group.key"))
            .and_then(|mut file| file.write_all(&key))
            .expect("the group key is written");
    }
    let (a_port, b_port) = (free_port(), free_port());
    let mut a = node(dir.path(), "a", a_port, &nats);
    let logs = |a: &Process, b: Option<&Process>| {
        format!(
            "a:\n{}\nb:\n{}",
            a.log_text(),
            b.map(Process::log_text).unwrap_or_default()
        )
    };
    eventually(Duration::from_secs(60), "a becomes the writer", || {
        role(a_port, "a").as_deref() == Some("writer")
    });
    let b = node(dir.path(), "b", b_port, &nats);
    eventually(Duration::from_secs(60), "b follows", || {
        role(b_port, "b").as_deref() == Some("follower")
    });

    let events = support::scheme_events();
    // A registration with a profile, sealed by the writer under a key made
    // there, though it is sent to the follower.
    let late = [support::jobseeker_registered(21)];
    let (status, body) = post(a_port, &Value::Array(events));
    assert_eq!(
        status,
        200,
        "the writer accepts: {body}\n{}",
        logs(&a, Some(&b))
    );
    let written = head(a_port);
    assert!(written > 0);
    eventually(
        Duration::from_secs(20),
        "b applies the writer's log",
        || head(b_port) == written,
    );
    assert_eq!(
        get(a_port, "/v1/events").1,
        get(b_port, "/v1/events").1,
        "both serve the same events"
    );
    // A write sent to the follower is answered with the writer's receipts.
    let (status, body) = post(b_port, &late[0]);
    assert_eq!(
        status,
        200,
        "the follower forwards: {body}\n{}",
        logs(&a, Some(&b))
    );
    let receipts: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(receipts["results"][0]["status"], "accepted", "{receipts}");
    eventually(
        Duration::from_secs(20),
        "both hold the forwarded event",
        || head(a_port) == written + 1 && head(b_port) == written + 1,
    );
    // The follower opens the profile the writer sealed.
    for (n, port) in [(20, a_port), (20, b_port), (21, a_port), (21, b_port)] {
        let person = format!("/v1/persons/{}", support::uuid(n));
        let (_, body) = get(port, &person);
        let document: Value = serde_json::from_str(&body).expect("JSON");
        let sex = document["stream"]
            .as_array()
            .and_then(|events| events.iter().find(|e| e["data"]["role"] == "jobseeker"))
            .map(|e| e["data"]["profile"]["sex"].clone());
        assert_eq!(
            sex,
            Some(json!("female")),
            "{port} opens the profile: {document}\n{}",
            logs(&a, Some(&b))
        );
    }

    let slug = late[0]["partnership"]
        .as_str()
        .expect("a partnership")
        .to_owned();
    let dashboard = format!("/v1/partnerships/{slug}/dashboard?raw=true");
    eventually(Duration::from_secs(20), "the same dashboards", || {
        let (a_board, b_board) = (get(a_port, &dashboard), get(b_port, &dashboard));
        a_board.0 == 200 && a_board == b_board
    });

    let roles = |group: &Value| -> Vec<(String, Value)> {
        group["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| {
                        (
                            n["node"].as_str().unwrap_or("").to_owned(),
                            n["role"].clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let expected = [
        ("a".to_owned(), json!("writer")),
        ("b".to_owned(), json!("follower")),
    ];
    let mut group = Value::Null;
    eventually(
        Duration::from_secs(5),
        "b's GET /v1/group shows both",
        || {
            group = serde_json::from_str(&get(b_port, "/v1/group").1).unwrap_or(Value::Null);
            roles(&group) == expected
        },
    );
    assert_eq!(group["writer"]["node"], "a", "{group}");

    // An erasure is not forwarded: the follower names the writer.
    let (status, body) = http(
        &format!("127.0.0.1:{b_port}"),
        "POST",
        &format!("/v1/persons/{}/erasure", support::uuid(20)),
        Some(TOKEN),
        Some(&json!({"reason": "asked"})),
    )
    .expect("b answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("not_writer") && body.contains(&format!("127.0.0.1:{a_port}")),
        "{body}"
    );

    // The writer dies without a word: the follower takes over and accepts.
    a.kill();
    let killed = Instant::now();
    let next = support::jobseeker_registered(9_001);
    eventually(
        Duration::from_secs(10),
        "b accepts after the writer died",
        || post(b_port, &next).0 == 200,
    );
    let failover = killed.elapsed();
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}\n{}",
        logs(&a, Some(&b))
    );
    assert_eq!(role(b_port, "b").as_deref(), Some("writer"));
    eprintln!("failover after SIGKILL: {failover:?}");
}
