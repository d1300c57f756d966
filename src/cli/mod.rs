//! The command line (contract section 7): the verbs' arguments, and a
//! dispatch to the file that carries each verb out. Only the binary knows
//! `clap` and `anyhow`; each verb calls the library and prints.
//!
//! - `options`: the arguments of `serve`, `demo` and `bench`, and how they
//!   become the library's plain options;
//! - `log`: the verbs on the log itself: `import`, `dump`, `verify`,
//!   `rejections`, `stats`;
//! - `live`: those of them that read, and `backup`, against a store a
//!   running server holds: they ask the server (`serve.json`);
//! - `serve`: `serve` and `demo`, which start the same way;
//! - `export`, `simulate`, `rebuild`: one verb each.

mod checkpoint;
mod export;
mod live;
mod log;
mod options;
mod person;
mod rebuild;
mod restore;
mod serve;
mod simulate;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rotation_ledger::bench;
use rotation_ledger::config::Config;
use rotation_ledger::ledger::{Ledger, LedgerOptions};

pub(crate) use checkpoint::CheckpointArgs;
pub(crate) use export::ExportArgs;
pub(crate) use options::{BenchArgs, DemoArgs, ServeArgs};
pub(crate) use simulate::SimulateArgs;

#[derive(Parser, Debug)]
#[command(
    name = "rotation-ledger",
    version,
    about = "An event-sourced ledger for job rotation schemes"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options every verb takes, before or after it (`--data DIR import
/// FILE` and `import FILE --data DIR` are the same). They are global, with
/// the ids of the verbs' own `--data` and `--config`: clap then fills a
/// verb's field from either place, the verb keeping its own default
/// (`demo` has none) when neither names it.
#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// Where the ledger keeps its data [default: ./ledger-data].
    #[arg(long = "data", id = "data", value_name = "DIR", global = true)]
    data: Option<PathBuf>,
    /// The TOML configuration (tokens, disclosure control, scheme limits).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct DataDir {
    /// Where the ledger keeps its data.
    #[arg(
        long = "data",
        id = "data",
        value_name = "DIR",
        default_value = "./ledger-data"
    )]
    pub(crate) dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Append CloudEvents from a JSON Lines file; prints `accepted N, duplicate N, rejected N`.
    #[command(
        after_help = "Exit status: 0 when every event was committed or was already \
        there; 2 when some were rejected (each named on standard error with its line and code, \
        and kept: see `rejections`), the rest being committed; 1 when the import failed."
    )]
    Import {
        #[command(flatten)]
        data: DataDir,
        /// The JSON Lines file; `-` reads standard input.
        file: PathBuf,
    },
    /// Print the committed log as JSON Lines, with positions and hashes.
    Dump {
        #[command(flatten)]
        data: DataDir,
        /// Start after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Recompute the hash chain from the first event; exits 1 if it is broken.
    /// With --checkpoint, hold the log to a signed checkpoint.
    Verify {
        #[command(flatten)]
        data: DataDir,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
        /// A signed checkpoint (a file, as `GET /v1/checkpoint` gives it): check its
        /// signature, that the log's tree at its size has its root, and the chain.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// The verifier key (`<name>+<id>+<key>`, or a file holding it); default this
        /// ledger's own checkpoint key.
        #[arg(long, value_name = "KEY", requires = "checkpoint")]
        key: Option<String>,
    },
    /// Erase a person's profile: commit `person.erased` and destroy their data key.
    Erase {
        #[command(flatten)]
        data: DataDir,
        /// The person's id (the UUID of their `person/<id>` stream).
        person: uuid::Uuid,
        /// Why (at most 500 characters), recorded in the event.
        #[arg(long)]
        reason: String,
    },
    /// Write a new ledger from this one: the same events in order, every profile sealed, a new chain.
    Reseal {
        #[command(flatten)]
        data: DataDir,
        /// The new ledger's data directory (must not hold a ledger yet).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print everything the ledger holds about one person, as one JSON document.
    Person {
        #[command(flatten)]
        data: DataDir,
        /// The person's id.
        person: uuid::Uuid,
    },
    /// Print the checkpoints' verifier key, in the note format.
    CheckpointKey(CheckpointArgs),
    /// Print an inclusion proof (JSON) of the event at a position.
    Prove {
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        /// The event's position.
        position: u64,
        /// The tree size; default the last signed checkpoint's (or the head).
        #[arg(long)]
        size: Option<u64>,
    },
    /// List rejected submissions, one line each: id, code, message.
    Rejections {
        #[command(flatten)]
        data: DataDir,
        /// Print JSON Lines with every field, the submission as received included.
        #[arg(long)]
        json: bool,
    },
    /// Counts of events, streams and rejections, and the size on disk.
    Stats {
        #[command(flatten)]
        data: DataDir,
    },
    /// Copy the ledger into a new data directory, consistently, even while a server runs on it.
    #[command(
        after_help = "With a server running on the data directory, the server makes the copy \
        (it finds it through serve.json): every key while it commits, then what changed, with \
        commits paused; otherwise this command does. The copy holds the store, the key files \
        (keys/*, mode 0600) and the checkpoint state: `verify --data OUT` accepts it and \
        `serve --data OUT` runs on it."
    )]
    Backup {
        #[command(flatten)]
        data: DataDir,
        /// The copy's data directory: new, or empty.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Serve the HTTP API and the live boards (and NATS with --nats) until Ctrl-C or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Serve a simulated two-partnership history on loopback, appending its last events slowly.
    Demo(Box<DemoArgs>),
    /// Rebuild the dashboards from the whole log and write their checkpoint.
    Rebuild {
        #[command(flatten)]
        data: DataDir,
        /// The TOML configuration: the disclosure control the dashboards are folded under.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Rebuild an empty data directory from the events the ledger published to ROTATION_LEDGER.
    #[command(
        after_help = "Every event is checked against the chain (position, prevhash, hash) as it \
        comes, and committed with the position, recorded time and hash it had. Rejections are \
        not published, so the restored ledger holds none."
    )]
    Restore {
        #[command(flatten)]
        data: DataDir,
        /// The NATS server the ledger published to, e.g. nats://127.0.0.1:4222.
        #[arg(long = "from-nats", value_name = "URL")]
        from_nats: String,
        /// The subject prefix the ledger published under (its `--nats-prefix`).
        #[arg(long = "nats-prefix", default_value = rotation_ledger::nats::DEFAULT_PREFIX)]
        nats_prefix: String,
    },
    /// Measure the ledger against raw sled (and NATS) in the same run.
    Bench(BenchArgs),
    /// Write a synthetic scheme history as CloudEvents in JSON Lines (deterministic for a seed).
    Simulate(SimulateArgs),
    /// Write an evaluation dataset: a Frictionless Data Package of pseudonymised CSV files.
    Export(ExportArgs),
}

/// Carries out one verb.
pub(crate) async fn run(cli: Cli) -> Result<ExitCode> {
    // The global `--config` tells every verb where the ledger's keys are
    // (`[keys]`), not only `serve`.
    let _ = CONFIG.set(load_config(cli.common.config.as_deref())?.unwrap_or_default());
    match cli.command {
        Command::Import { data, file } => log::import(&data, &file).await,
        Command::Dump { data, after } => log::dump(&data, after).await,
        Command::Verify {
            data,
            checkpoint: Some(file),
            key,
            ..
        } => checkpoint::verify(&data, &file, key.as_deref()),
        Command::Verify { data, json, .. } => log::verify(&data, json).await,
        Command::CheckpointKey(args) => checkpoint::key(&args).await,
        Command::Erase {
            data,
            person,
            reason,
        } => person::erase(&data, person, &reason).await,
        Command::Person { data, person } => person::access(&data, person).await,
        Command::Reseal { data, out } => person::reseal(&data, &out).await,
        Command::Prove {
            checkpoint,
            position,
            size,
        } => checkpoint::prove(&checkpoint, position, size).await,
        Command::Rejections { data, json } => log::rejections(&data, json).await,
        Command::Stats { data } => log::stats(&data).await,
        Command::Backup { data, out } => live::backup(&data, &out).await,
        Command::Serve(args) => serve::serve(*args).await,
        Command::Demo(args) => serve::demo(*args).await,
        Command::Rebuild { data, config } => rebuild::run(&data, config.as_deref()).await,
        Command::Restore {
            data,
            from_nats,
            nats_prefix,
        } => restore::run(&data, &from_nats, &nats_prefix).await,
        Command::Bench(args) => {
            bench::run(args.into()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => simulate::run(args),
        Command::Export(args) => export::run(args).await,
    }
}

/// A progress bar on a terminal, nothing otherwise (or when there is
/// nothing to measure).
pub(crate) fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || len == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub(crate) fn open(data: &DataDir) -> Result<Ledger> {
    open_with(data, LedgerOptions::default())
}

/// The global `--config`, read once before the verb runs; the defaults
/// without one.
static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

/// The configuration the command line names, for the verbs that need its
/// keys (the master key, the checkpoint key) without a `--config` of
/// their own.
pub(crate) fn configured() -> &'static Config {
    CONFIG.get_or_init(Config::default)
}

pub(crate) fn open_with(data: &DataDir, mut options: LedgerOptions) -> Result<Ledger> {
    if options.master_key_file.is_none() {
        options.master_key_file = configured().keys.master_key_file.clone();
    }
    live::ensure_free(&data.dir)?;
    Ledger::open(&data.dir, options)
        .with_context(|| format!("cannot open the ledger in {}", data.dir.display()))
}

/// Opens a ledger that must exist already. The verbs that only read use
/// it, because opening creates: `verify` on a mistyped path would
/// otherwise make an empty ledger there and call its chain sound.
pub(crate) fn open_existing(data: &DataDir) -> Result<Ledger> {
    // These verbs read, or write once: the id index loads only if they do.
    let options = LedgerOptions {
        preload_ids: false,
        ..LedgerOptions::default()
    };
    open_existing_with(data, options)
}

pub(crate) fn open_existing_with(data: &DataDir, options: LedgerOptions) -> Result<Ledger> {
    if !data.dir.is_dir() {
        bail!(
            "no ledger in {}: the directory does not exist",
            data.dir.display()
        );
    }
    open_with(data, options)
}

pub(crate) fn load_config(path: Option<&Path>) -> Result<Option<Config>> {
    Ok(path.map(Config::load).transpose()?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};
    use rotation_ledger::bench::BenchOptions;
    use rotation_ledger::nats::NatsOptions;

    /// The verb's parsed arguments, or clap's refusal.
    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("rotation-ledger").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    fn nats_of(args: &[&str]) -> Result<NatsOptions, clap::Error> {
        match parse(&[&["serve"], args].concat())? {
            Command::Serve(serve) => Ok(serve.nats.into()),
            other => panic!("not serve: {other:?}"),
        }
    }

    fn bench_of(args: &[&str]) -> Result<BenchOptions, clap::Error> {
        match parse(&[&["bench"], args].concat())? {
            Command::Bench(bench) => Ok(bench.into()),
            other => panic!("not bench: {other:?}"),
        }
    }

    #[test]
    fn nats_options_parse_as_serve_flattens_them() {
        let parsed = nats_of(&[
            "--nats",
            "tls://nats.example:4222",
            "--nats-creds",
            "ledger.creds",
            "--nats-tls-ca",
            "ca.pem",
            "--nats-tls-cert",
            "client.pem",
            "--nats-tls-key",
            "client-key.pem",
            "--nats-require-tls",
        ])
        .expect("the options parse");
        assert_eq!(parsed.url.as_deref(), Some("tls://nats.example:4222"));
        assert!(parsed.nats_require_tls);
        assert_eq!(parsed.nats_prefix, "rotation");
        assert!(
            nats_of(&["--nats-tls-cert", "client.pem"]).is_err(),
            "a client certificate needs its key"
        );
        assert!(
            nats_of(&["--nats-user", "ledger"]).is_err(),
            "a user needs a password"
        );
    }

    /// The library's defaults are the command line's, so that the bench
    /// and the server run alike from code and from the shell.
    #[test]
    fn command_line_defaults_are_the_librarys() {
        // The password and token flags fall back on the environment, so
        // that a shell exporting them gives other options than the defaults.
        let from_env = ["NATS_PASSWORD", "NATS_TOKEN"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        if !from_env {
            assert_eq!(
                nats_of(&[]).expect("no flags parse"),
                NatsOptions::default()
            );
        }
        assert_eq!(
            bench_of(&[]).expect("no flags parse"),
            BenchOptions::default()
        );
    }

    #[test]
    fn bench_only_takes_the_figures_names() {
        let options = bench_of(&["--only", "replay,nats_ingest"]).expect("figure names parse");
        assert_eq!(options.only, ["replay", "nats_ingest"]);
        assert!(
            bench_of(&["--only", "replays"]).is_err(),
            "an unknown figure"
        );
    }
}
