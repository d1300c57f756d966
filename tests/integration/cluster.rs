//! A real ledger group on loopback, for the group's tests: three clustered
//! nats-servers (JetStream, `sync_interval: always`) and three
//! `rotation-ledger serve --group` nodes, each of which can be killed
//! (SIGKILL), restarted on the same store, stopped (SIGSTOP) and let go
//! (SIGCONT), and the reads the tests judge the group by: `GET /v1/group`,
//! the raw dashboards, `/healthz`, `verify` through the live verb, and
//! `ROTATION_LEDGER` read back from the cluster.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::browser::http;
use crate::support::{append_log, binary, free_port};
use crate::tools;

/// The admin token every node's configuration knows.
pub const ADMIN_TOKEN: &str = "group-admin-token";

/// Milliseconds since the Unix epoch: the clock the publisher stamps
/// receipts with, so that kills and receipts can be compared.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_millis() as u64
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to `child` with kill(1), as the
/// other process tests do, so no signal crate is needed.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "SIG{signal} could not be sent");
}

/// A server's or node's process, as a machine's: killed without warning
/// (SIGKILL), frozen (SIGSTOP: its peers see it vanish) and let go
/// (SIGCONT); killed when dropped.
#[derive(Default)]
struct Process {
    child: Option<Child>,
    /// Stopped with SIGSTOP: it would accept connections and never answer.
    stopped: bool,
}

impl Process {
    /// Started and not stopped: it answers.
    fn is_running(&self) -> bool {
        self.child.is_some() && !self.stopped
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    fn stop(&mut self) {
        signal(self.child.as_ref().expect("a running process"), "STOP");
        self.stopped = true;
    }

    fn cont(&mut self) {
        signal(self.child.as_ref().expect("a running process"), "CONT");
        self.stopped = false;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A stopped process cannot die of SIGKILL until it is let go.
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// Waits until `check` holds, polling every 100 ms; after `limit` fails
/// with `what`, and whatever `context` says then (the nodes' logs).
pub fn eventually(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; {}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One nats-server of the cluster, with a store that outlives restarts.
pub struct NatsNode {
    pub name: String,
    pub client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    dir: PathBuf,
    process: Process,
}

impl NatsNode {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    fn config(&self, routes: &[u16]) -> String {
        let routes: Vec<String> = routes
            .iter()
            .map(|port| format!("\"nats-route://127.0.0.1:{port}\""))
            .collect();
        // `sync_interval: always` has no command-line flag: it makes every
        // acknowledged JetStream write durable on disk before the ack, which
        // is what "acknowledged" means for the group (docs/cluster.md).
        format!(
            "server_name: {name}\n\
             listen: \"127.0.0.1:{client}\"\n\
             http: \"127.0.0.1:{monitor}\"\n\
             jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n\
             cluster {{\n  name: rotation\n  listen: \"127.0.0.1:{cluster}\"\n  routes: [{routes}]\n}}\n",
            name = self.name,
            client = self.client_port,
            monitor = self.monitor_port,
            cluster = self.cluster_port,
            store = self.dir.join("jetstream"),
            routes = routes.join(", "),
        )
    }

    fn log(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        assert!(
            self.process.child.is_none(),
            "{} is running already",
            self.name
        );
        let child = Command::new(tools::nats_server())
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(append_log(&self.log()))
            .spawn()
            .expect("nats-server starts");
        self.process.child = Some(child);
    }

    /// The JetStream meta leader this server knows of, if any.
    pub fn meta_leader(&self) -> Option<String> {
        let address = format!("127.0.0.1:{}", self.monitor_port);
        let (status, body) = http(&address, "GET", "/jsz", None, None).ok()?;
        if status != 200 {
            return None;
        }
        let jsz: Value = serde_json::from_str(&body).ok()?;
        jsz["meta_cluster"]["leader"]
            .as_str()
            .filter(|leader| !leader.is_empty())
            .map(str::to_owned)
    }

    /// Started and not stopped: it answers.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Kills it without warning (SIGKILL), stopped or not.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Freezes it (SIGSTOP): a partition, as its peers see it.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Lets it go on (SIGCONT).
    pub fn cont(&mut self) {
        self.process.cont();
    }
}

/// Three nats-servers clustered on loopback, JetStream on each.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts three servers and waits until they have a meta leader.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut nodes: Vec<NatsNode> = (1..=3)
            .map(|n| {
                let node_dir = dir.path().join(format!("nats{n}"));
                std::fs::create_dir_all(&node_dir).expect("the server's directory");
                NatsNode {
                    name: format!("nats{n}"),
                    client_port: free_port(),
                    cluster_port: free_port(),
                    monitor_port: free_port(),
                    dir: node_dir,
                    process: Process::default(),
                }
            })
            .collect();
        let routes: Vec<u16> = nodes.iter().map(|node| node.cluster_port).collect();
        for node in &mut nodes {
            std::fs::write(node.dir.join("nats.conf"), node.config(&routes))
                .expect("the nats-server configuration is written");
            node.spawn();
        }
        let cluster = Self { nodes, dir };
        cluster.wait_for_meta_leader();
        cluster
    }

    /// Every client URL, comma-separated, as `serve --nats` takes them.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(NatsNode::url).collect();
        urls.join(",")
    }

    /// Waits until every running server agrees on a JetStream meta leader.
    pub fn wait_for_meta_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let leaders: Vec<Option<String>> = self
                .nodes
                .iter()
                .filter(|node| node.is_running())
                .map(NatsNode::meta_leader)
                .collect();
            if leaders.iter().all(Option::is_some) && leaders.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the NATS cluster elected no meta leader ({leaders:?}); logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills server `n` (0-based) without warning.
    pub fn kill(&mut self, n: usize) {
        self.nodes[n].kill();
    }

    /// Starts server `n` again on its store and waits until it knows the
    /// cluster's meta leader again.
    pub fn restart(&mut self, n: usize) {
        self.nodes[n].spawn();
        self.wait_for_meta_leader();
    }

    pub fn stop(&mut self, n: usize) {
        self.nodes[n].stop();
    }

    pub fn cont(&mut self, n: usize) {
        self.nodes[n].cont();
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- {}\n{}", node.name, tail(&node.log_text(), 40)))
            .collect()
    }
}

impl Drop for NatsCluster {
    /// A failed test leaves the servers' logs and stores behind, and says
    /// where.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "the NATS cluster's logs and stores are kept in {}",
                self.dir.path().display()
            );
        }
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n") + "\n"
}

/// One `rotation-ledger serve --group` node: its name, store and HTTP port
/// stay the same across restarts, as a machine's would.
pub struct LedgerNode {
    pub name: String,
    pub data: PathBuf,
    pub port: u16,
    log: PathBuf,
    process: Process,
}

impl LedgerNode {
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Started and not stopped: it answers.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self, urls: &str, group_key: &Path, config: &Path) {
        assert!(
            self.process.child.is_none(),
            "{} is running already",
            self.name
        );
        let child = Command::new(binary())
            .args([
                "serve",
                "--nats",
                urls,
                "--group",
                "--node-name",
                &self.name,
            ])
            .arg("--group-key")
            .arg(group_key)
            .arg("--data")
            .arg(&self.data)
            .arg("--config")
            .arg(config)
            .args(["--http", &self.address()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(append_log(&self.log))
            .stderr(append_log(&self.log))
            .spawn()
            .expect("rotation-ledger serve starts");
        self.process.child = Some(child);
    }

    /// Waits until the node answers `/healthz`: it has prepared its store
    /// against the stream and serves.
    fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if self.get("/healthz").0 == 200 {
                return;
            }
            if let Some(Ok(Some(status))) = self.process.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited with {status}; its log:\n{}",
                    self.name,
                    tail(&self.log_text(), 60)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not serve; its log:\n{}",
                self.name,
                tail(&self.log_text(), 60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One request as the admin: the status and the body, or 0 when the
    /// node did not answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        http(&self.address(), method, path, Some(ADMIN_TOKEN), body).unwrap_or((0, String::new()))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, None)
    }

    /// A GET that must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{} GET {path}: {body}", self.name);
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{} GET {path} is not JSON ({e}): {body}", self.name))
    }

    pub fn health(&self) -> Value {
        self.get_json("/healthz")
    }

    /// `GET /v1/group` as this node answers it.
    pub fn group(&self) -> Value {
        self.get_json("/v1/group")
    }

    /// This node's own role, from its own `GET /v1/group`; `None` when it
    /// does not answer or does not list itself yet.
    pub fn role(&self) -> Option<String> {
        let (status, body) = self.get("/v1/group");
        if status != 200 {
            return None;
        }
        let group: Value = serde_json::from_str(&body).ok()?;
        group["nodes"]
            .as_array()?
            .iter()
            .find(|node| node["node"] == self.name.as_str())
            .and_then(|node| node["role"].as_str())
            .map(str::to_owned)
    }

    /// A partnership's dashboard as the node serves it, the raw figures or
    /// the board's, once the dashboards are live.
    pub fn dashboard(&self, partnership: &str, raw: bool) -> String {
        let path = format!("/v1/partnerships/{partnership}/dashboard?raw={raw}");
        let (status, body) = self.get(&path);
        assert_eq!(status, 200, "{} GET {path}: {body}", self.name);
        body
    }

    /// `rotation-ledger verify --json` on the node's data directory, which
    /// the live server answers (its store is held): the exit status and
    /// the verdict.
    pub fn verify(&self) -> (Option<i32>, Value) {
        let output = Command::new(binary())
            .args(["verify", "--json", "--data"])
            .arg(&self.data)
            .stdin(Stdio::null())
            .output()
            .expect("verify runs");
        let verdict = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: verify printed no JSON ({e}): {}{}",
                self.name,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code(), verdict)
    }

    /// Kills it without warning (SIGKILL), as a dead host would, stopped
    /// or not.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Freezes it (SIGSTOP): a partition, as the others see it.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Lets it go on (SIGCONT).
    pub fn cont(&mut self) {
        self.process.cont();
    }
}

/// Three ledger nodes in one group on a [`NatsCluster`], sharing one group
/// key and one configuration (an admin token).
pub struct LedgerGroup {
    pub nodes: Vec<LedgerNode>,
    urls: String,
    group_key: PathBuf,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl LedgerGroup {
    /// Starts nodes `n1`, `n2` and `n3` on `nats` and waits until each
    /// serves and one of them is the writer.
    pub fn start(nats: &NatsCluster) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[[tokens]]\nsha256 = \"{}\"\nrole = \"admin\"\npartnerships = [\"*\"]\n",
                rotation_ledger::auth::token_digest(ADMIN_TOKEN)
            ),
        )
        .expect("the configuration is written");
        let group_key = dir.path().join("group.key");
        write_group_key(&group_key);
        let nodes = (1..=3)
            .map(|n| LedgerNode {
                name: format!("n{n}"),
                data: dir.path().join(format!("n{n}")),
                port: free_port(),
                log: dir.path().join(format!("n{n}.log")),
                process: Process::default(),
            })
            .collect();
        let mut group = Self {
            nodes,
            urls: nats.urls(),
            group_key,
            config,
            dir,
        };
        // The first node makes the group's streams and buckets; the others
        // start once it serves, so that what this suite judges does not
        // hang on three nodes racing to make them.
        group.spawn(0);
        group.nodes[0].wait_serving();
        for n in 1..group.nodes.len() {
            group.spawn(n);
        }
        for node in &mut group.nodes[1..] {
            node.wait_serving();
        }
        group.writer();
        group
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, n: usize) {
        let (urls, key, config) = (
            self.urls.clone(),
            self.group_key.clone(),
            self.config.clone(),
        );
        self.nodes[n].spawn(&urls, &key, &config);
    }

    /// Starts node `n` again on its store and waits until it serves.
    pub fn restart(&mut self, n: usize) {
        self.spawn(n);
        self.nodes[n].wait_serving();
    }

    /// Node `n`'s evaluation dataset, `jobseekers.csv`: the node is
    /// killed so that `export` may open its store, and started again.
    pub fn export_jobseekers(&mut self, n: usize) -> String {
        self.nodes[n].kill();
        let out = self
            .dir
            .path()
            .join(format!("export-{}", self.nodes[n].name));
        let key = self.dir.path().join("study.key");
        std::fs::write(&key, "a study key\n").expect("the study key is written");
        let output = Command::new(binary())
            .arg("export")
            .arg("--data")
            .arg(&self.nodes[n].data)
            .arg("--out")
            .arg(&out)
            .arg("--key-file")
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .expect("export runs");
        assert!(
            output.status.success(),
            "{}: export failed: {}",
            self.nodes[n].name,
            String::from_utf8_lossy(&output.stderr)
        );
        self.restart(n);
        std::fs::read_to_string(out.join("jobseekers.csv")).expect("jobseekers.csv")
    }

    /// The writer: the one running node that calls itself so, waited for
    /// (a failover takes a lease's time).
    pub fn writer(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let writers: Vec<usize> = (0..self.nodes.len())
                .filter(|&n| self.nodes[n].is_running())
                .filter(|&n| self.nodes[n].role().as_deref() == Some("writer"))
                .collect();
            if let [writer] = writers[..] {
                return writer;
            }
            assert!(
                Instant::now() < deadline,
                "no single writer ({writers:?}); logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A running node other than the writer.
    pub fn follower(&self) -> usize {
        let writer = self.writer();
        (0..self.nodes.len())
            .find(|&n| n != writer && self.nodes[n].is_running())
            .expect("a running follower")
    }

    /// Waits until every running node's durable head is `head` and its
    /// dashboards have folded all of it.
    pub fn wait_caught_up(&self, head: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            loop {
                let health = node.health();
                if health["head_position"] == head
                    && health["projection"] == "live"
                    && health["projected_position"] == head
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not catch up to {head}: {health}; its log:\n{}",
                    node.name,
                    tail(&node.log_text(), 60)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- {}\n{}", node.name, tail(&node.log_text(), 40)))
            .collect()
    }
}

impl Drop for LedgerGroup {
    /// A failed test leaves the nodes' logs and stores behind, and says
    /// where: a group's failure is seldom understood from one log's tail.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "the ledger group's logs and stores are kept in {}",
                self.dir.path().display()
            );
        }
    }
}

/// The group key every node is given: 32 random bytes, mode 0600.
fn write_group_key(path: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key: [u8; 32] = rand::random();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(&key))
        .expect("the group key is written");
}

/// A client of the cluster, through whichever of `urls` (comma-separated)
/// answers.
async fn connect(urls: &str) -> async_nats::Client {
    let servers: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|url| url.parse().expect("a NATS URL"))
        .collect();
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .expect("the test connects to NATS")
}

/// A stream's first and last sequence and its message count, as the
/// cluster reports them; `None` while it does not exist.
pub fn stream_state(urls: &str, name: &str) -> Option<(u64, u64, u64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = connect(urls).await;
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(name).await.ok()?;
        let state = stream.info().await.ok()?.state.clone();
        Some((state.first_sequence, state.last_sequence, state.messages))
    })
}

/// One message of `ROTATION_LEDGER`: its stream sequence and the committed
/// event it carries.
pub struct Stored {
    pub sequence: u64,
    pub event: Value,
}

/// Every message of `ROTATION_LEDGER`, in sequence order, read from the
/// cluster through an ordered consumer, with the stream's first and last
/// sequence.
pub fn read_ledger_stream(urls: &str) -> (u64, u64, Vec<Stored>) {
    use async_nats::jetstream::{self, consumer};
    use futures::StreamExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = connect(urls).await;
        let js = jetstream::new(client);
        let mut stream = js
            .get_stream("ROTATION_LEDGER")
            .await
            .expect("ROTATION_LEDGER exists");
        let state = stream.info().await.expect("stream info").state.clone();
        let mut out = Vec::with_capacity(state.messages as usize);
        if state.messages == 0 {
            return (state.first_sequence, state.last_sequence, out);
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("an ordered consumer");
        let mut messages = consumer.messages().await.expect("messages");
        while (out.len() as u64) < state.messages {
            let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
                .await
                .expect("the stream delivers")
                .expect("the stream does not end")
                .expect("a message");
            let sequence = message.info().expect("message info").stream_sequence;
            let event = serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
                panic!(
                    "ROTATION_LEDGER message {sequence} is not JSON ({e}): {}",
                    String::from_utf8_lossy(&message.payload)
                )
            });
            out.push(Stored { sequence, event });
        }
        (state.first_sequence, state.last_sequence, out)
    })
}

/// Every message a key-value bucket's stream holds for `key`, oldest
/// first: the `KV-Operation` header (absent for a put) and the value. A
/// purge leaves one marker without a value, and nothing before it.
pub fn bucket_history(urls: &str, bucket: &str, key: &str) -> Vec<(Option<String>, Vec<u8>)> {
    use async_nats::jetstream::{self, consumer};
    use futures::StreamExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = connect(urls).await;
        let js = jetstream::new(client);
        let stream = js
            .get_stream(format!("KV_{bucket}"))
            .await
            .unwrap_or_else(|e| panic!("the bucket {bucket} exists: {e}"));
        let mut consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                filter_subject: format!("$KV.{bucket}.{key}"),
                ..Default::default()
            })
            .await
            .expect("an ordered consumer");
        let count = consumer.info().await.expect("consumer info").num_pending;
        let mut out = Vec::new();
        if count == 0 {
            return out;
        }
        let mut messages = consumer.messages().await.expect("messages");
        while (out.len() as u64) < count {
            let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
                .await
                .expect("the bucket delivers")
                .expect("the bucket does not end")
                .expect("a message");
            let operation = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("KV-Operation"))
                .map(|value| value.as_str().to_owned());
            out.push((operation, message.payload.to_vec()));
        }
        out
    })
}
