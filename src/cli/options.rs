//! The arguments of `serve`, `demo` and `bench`, and how they become the
//! library's plain options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use rotation_ledger::bench::{self, BenchOptions};
use rotation_ledger::nats::{self, NatsOptions};

use super::DataDir;

#[derive(Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) data: DataDir,
    /// The TOML configuration (tokens, disclosure control, scheme limits). Without tokens a
    /// fresh admin token is printed and only loopback addresses are allowed.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The address the HTTP API listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) http: SocketAddr,
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
    #[command(flatten)]
    pub(crate) group: GroupArgs,
}

/// How the node takes part in a ledger group (contract section 11);
/// flattened into `serve`'s options.
#[derive(Args, Debug, Clone)]
pub(crate) struct GroupArgs {
    /// Join the ledger group named by --nats-prefix: one writer by lease, the others follow.
    #[arg(long, requires = "url")]
    pub(crate) group: bool,
    /// Replicas of ROTATION_LEDGER and of the group's buckets.
    #[arg(long, value_name = "N", default_value_t = nats::group::DEFAULT_REPLICAS, requires = "group", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5))]
    pub(crate) replicas: usize,
    /// This node's name in the group; by default the host name and the HTTP port.
    #[arg(long = "node-name", value_name = "NAME", requires = "group")]
    pub(crate) node_name: Option<String>,
    /// The key every node of the group shares (32 bytes, mode 0600); by default
    /// keys/group.key in the data directory, made there when absent.
    #[arg(long = "group-key", value_name = "FILE", requires = "group")]
    pub(crate) group_key: Option<PathBuf>,
}

/// How to reach NATS; flattened into `serve`'s options.
#[derive(Args, Debug, Clone)]
pub(crate) struct NatsArgs {
    /// The NATS server, e.g. nats://127.0.0.1:4222 (several separated by commas); without it the ledger runs without NATS.
    #[arg(long = "nats", value_name = "URL")]
    pub(crate) url: Option<String>,
    /// A NATS credentials file (user JWT and NKey seed), as `nsc` writes them.
    #[arg(long = "nats-creds", value_name = "FILE")]
    pub(crate) nats_creds: Option<PathBuf>,
    /// A file holding the NKey seed (`SU...`) to authenticate with.
    #[arg(long = "nats-nkey", value_name = "SEED_FILE")]
    pub(crate) nats_nkey: Option<PathBuf>,
    /// The NATS user name; goes with --nats-password.
    #[arg(long = "nats-user", value_name = "USER", requires = "nats_password")]
    pub(crate) nats_user: Option<String>,
    /// The NATS password; better given through the environment.
    #[arg(
        long = "nats-password",
        value_name = "PASSWORD",
        env = "NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    pub(crate) nats_password: Option<String>,
    /// A NATS authentication token; better given through the environment.
    #[arg(
        long = "nats-token",
        value_name = "TOKEN",
        env = "NATS_TOKEN",
        hide_env_values = true
    )]
    pub(crate) nats_token: Option<String>,
    /// PEM file of the certificate authorities to trust for the server's certificate.
    #[arg(long = "nats-tls-ca", value_name = "FILE")]
    pub(crate) nats_tls_ca: Option<PathBuf>,
    /// PEM file of the client certificate, for servers that verify clients; goes with --nats-tls-key.
    #[arg(long = "nats-tls-cert", value_name = "FILE", requires = "nats_tls_key")]
    pub(crate) nats_tls_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long = "nats-tls-key", value_name = "FILE", requires = "nats_tls_cert")]
    pub(crate) nats_tls_key: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    #[arg(long = "nats-require-tls")]
    pub(crate) nats_require_tls: bool,
    /// The first token of every subject (`<prefix>.in.>`, ...) and, upper-cased,
    /// of every stream name (`<PREFIX>_IN`, ...): lets several ledgers share one NATS account.
    #[arg(long = "nats-prefix", value_name = "TOKEN", default_value = nats::DEFAULT_PREFIX)]
    pub(crate) nats_prefix: String,
}

impl From<NatsArgs> for NatsOptions {
    fn from(args: NatsArgs) -> Self {
        Self {
            url: args.url,
            nats_creds: args.nats_creds,
            nats_nkey: args.nats_nkey,
            nats_user: args.nats_user,
            nats_password: args.nats_password,
            nats_token: args.nats_token,
            nats_tls_ca: args.nats_tls_ca,
            nats_tls_cert: args.nats_tls_cert,
            nats_tls_key: args.nats_tls_key,
            nats_require_tls: args.nats_require_tls,
            nats_prefix: args.nats_prefix,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct DemoArgs {
    /// Keep the demo's ledger here; by default a temporary directory removed on exit.
    /// A ledger that already holds events is served as it is.
    #[arg(long = "data", value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
    /// The TOML configuration; without tokens a fresh admin token is printed.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The address the HTTP API listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) http: SocketAddr,
    /// Seconds between two held-back events.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.5)]
    pub(crate) every: f64,
    /// Seed of the simulated history.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// Events in the log the figures are measured on.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) events: u64,
    /// Single-event submissions for `append_single`.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) single: u64,
    /// Concurrent writers for `append_single`.
    #[arg(long, default_value_t = 64)]
    pub(crate) writers: u64,
    /// Where to build the logs; a temporary directory by default.
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Jobseekers in the simulated history that `import` and `export` are
    /// measured on (about 28 events each).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) export_jobseekers: u32,
    /// People (each with a profile) on the log that `erase` is measured on.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub(crate) erase_people: u64,
    /// A nats-server to measure `nats_ingest` on (streams of its own, deleted afterwards).
    #[arg(long = "nats", value_name = "URL")]
    pub(crate) nats: Option<String>,
    /// Events for `nats_ingest`; by default `--events`, at most 200,000.
    #[arg(long, value_name = "N")]
    pub(crate) nats_events: Option<u64>,
    /// Also measure a PostgreSQL event store on the same events, on a
    /// throwaway server of its own (Debian's `postgresql`; needs a binary
    /// built with `--features peers`).
    #[arg(long)]
    pub(crate) peers: bool,
    /// Measure the PostgreSQL peer on this existing server instead.
    #[arg(long, value_name = "URL")]
    pub(crate) postgres: Option<String>,
    /// Measure `group_append`: batched appends through a three-node ledger
    /// group on a throwaway three-server JetStream cluster of its own.
    #[arg(long)]
    pub(crate) group: bool,
    /// The nats-server (2.14 or later) that `--group` starts; by default
    /// the first on PATH, or the one under ROTATION_TOOLS.
    #[arg(long, value_name = "PATH")]
    pub(crate) nats_server: Option<PathBuf>,
    /// Measure only these figures (comma-separated names, as in the
    /// report); the log is built by `append_batched` whatever is chosen.
    #[arg(long, value_delimiter = ',', value_name = "FIGURES", value_parser = clap::builder::PossibleValuesParser::new(bench::FIGURES))]
    pub(crate) only: Vec<String>,
}

impl From<BenchArgs> for BenchOptions {
    fn from(args: BenchArgs) -> Self {
        Self {
            events: args.events,
            single: args.single,
            writers: args.writers,
            dir: args.dir,
            json: args.json,
            export_jobseekers: args.export_jobseekers,
            erase_people: args.erase_people,
            nats: args.nats,
            nats_events: args.nats_events,
            peers: args.peers,
            postgres: args.postgres,
            group: args.group,
            nats_server: args.nats_server,
            only: args.only,
        }
    }
}
