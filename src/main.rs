//! `rotation-ledger`: the command line (contract section 7). A thin edge
//! over the library: it parses arguments, opens the ledger, and prints.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rotation_ledger::bench::{self, BenchOptions};
use rotation_ledger::config::Config;
use rotation_ledger::ledger::{Ledger, LedgerOptions};
use rotation_ledger::nats::{self, NatsOptions};
use rotation_ledger::server::{self, Access, Server};
use tokio_util::sync::CancellationToken;

/// mimalloc rather than the system allocator: decoding allocates and frees
/// small objects across threads, where glibc's arenas contend and fragment
/// (export of a large log ran at half speed and twice the memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`enum mi_option_e` in mimalloc.h,
/// version 3), which the bindings do not name. A test holds it to its
/// documented default, so that another numbering is caught.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before it goes back to the
/// OS. sled allocates and frees its log buffers all the time; returned
/// sooner (mimalloc's default), they were faulted in and zeroed again at
/// every use. Measured: 110,000 page faults in a `nats_ingest` run against
/// 47,000 with this delay (the rest come where the bench changes phase),
/// and 25,600 against 805 in 300,000 appends; a fifth less system time.
/// Memory freed after a peak still goes back, 10 s later.
/// `MIMALLOC_PURGE_DELAY` in the environment takes precedence.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; called at the start of `main`,
        // before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "rotation-ledger",
    version,
    about = "An event-sourced ledger for job rotation schemes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct DataDir {
    /// Where the ledger keeps its data.
    #[arg(long = "data", value_name = "DIR", default_value = "./ledger-data")]
    dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    /// The TOML configuration (tokens, disclosure control, scheme limits). Without tokens a
    /// fresh admin token is printed and only loopback addresses are allowed.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address the HTTP API listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    #[command(flatten)]
    nats: NatsArgs,
}

/// How to reach NATS; flattened into `serve`'s options.
#[derive(Args, Debug, Clone)]
struct NatsArgs {
    /// The NATS server, e.g. nats://127.0.0.1:4222 (several separated by commas); without it the ledger runs without NATS.
    #[arg(long = "nats", value_name = "URL")]
    url: Option<String>,
    /// A NATS credentials file (user JWT and NKey seed), as `nsc` writes them.
    #[arg(long = "nats-creds", value_name = "FILE")]
    nats_creds: Option<PathBuf>,
    /// A file holding the NKey seed (`SU...`) to authenticate with.
    #[arg(long = "nats-nkey", value_name = "SEED_FILE")]
    nats_nkey: Option<PathBuf>,
    /// The NATS user name; goes with --nats-password.
    #[arg(long = "nats-user", value_name = "USER", requires = "nats_password")]
    nats_user: Option<String>,
    /// The NATS password; better given through the environment.
    #[arg(
        long = "nats-password",
        value_name = "PASSWORD",
        env = "NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    nats_password: Option<String>,
    /// A NATS authentication token; better given through the environment.
    #[arg(
        long = "nats-token",
        value_name = "TOKEN",
        env = "NATS_TOKEN",
        hide_env_values = true
    )]
    nats_token: Option<String>,
    /// PEM file of the certificate authorities to trust for the server's certificate.
    #[arg(long = "nats-tls-ca", value_name = "FILE")]
    nats_tls_ca: Option<PathBuf>,
    /// PEM file of the client certificate, for servers that verify clients; goes with --nats-tls-key.
    #[arg(long = "nats-tls-cert", value_name = "FILE", requires = "nats_tls_key")]
    nats_tls_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long = "nats-tls-key", value_name = "FILE", requires = "nats_tls_cert")]
    nats_tls_key: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    #[arg(long = "nats-require-tls")]
    nats_require_tls: bool,
    /// The first token of every subject (`<prefix>.in.>`, ...) and, upper-cased,
    /// of every stream name (`<PREFIX>_IN`, ...): lets several ledgers share one NATS account.
    #[arg(long = "nats-prefix", value_name = "TOKEN", default_value = nats::DEFAULT_PREFIX)]
    nats_prefix: String,
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
struct DemoArgs {
    /// Keep the demo's ledger here; by default a temporary directory removed on exit.
    /// A ledger that already holds events is served as it is.
    #[arg(long = "data", value_name = "DIR")]
    data: Option<PathBuf>,
    /// The TOML configuration; without tokens a fresh admin token is printed.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address the HTTP API listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Seconds between two held-back events.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.5)]
    every: f64,
    /// Seed of the simulated history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args, Debug, Clone)]
struct BenchArgs {
    /// Events in the log the figures are measured on.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Single-event submissions for `append_single`.
    #[arg(long, default_value_t = 50_000)]
    single: u64,
    /// Concurrent writers for `append_single`.
    #[arg(long, default_value_t = 64)]
    writers: u64,
    /// Where to build the logs; a temporary directory by default.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Jobseekers in the simulated history that `import` and `export` are
    /// measured on (about 28 events each).
    #[arg(long, default_value_t = 100_000)]
    export_jobseekers: u32,
    /// A nats-server to measure `nats_ingest` on (streams of its own, deleted afterwards).
    #[arg(long = "nats", value_name = "URL")]
    nats: Option<String>,
    /// Events for `nats_ingest`; by default `--events`, at most 200,000.
    #[arg(long, value_name = "N")]
    nats_events: Option<u64>,
    /// Measure only these figures (comma-separated names, as in the
    /// report); the log is built by `append_batched` whatever is chosen.
    #[arg(long, value_delimiter = ',', value_name = "FIGURES", value_parser = clap::builder::PossibleValuesParser::new(bench::FIGURES))]
    only: Vec<String>,
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
            nats: args.nats,
            nats_events: args.nats_events,
            only: args.only,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
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
    Verify {
        #[command(flatten)]
        data: DataDir,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
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
    /// Serve the HTTP API and the live boards (and NATS with --nats) until Ctrl-C or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Serve a simulated two-partnership history on loopback, appending its last events slowly.
    Demo(Box<DemoArgs>),
    /// Rebuild the dashboards from the whole log and write their checkpoint.
    Rebuild {
        #[command(flatten)]
        data: DataDir,
    },
    /// Measure the ledger against raw sled (and NATS) in the same run.
    Bench(BenchArgs),
    /// Write a synthetic scheme history as CloudEvents in JSON Lines (deterministic for a seed).
    Simulate {
        /// Partnerships to simulate.
        #[arg(long, default_value_t = 2)]
        partnerships: u32,
        /// Jobseekers in total, spread over the partnerships.
        #[arg(long, default_value_t = 400)]
        jobseekers: u32,
        /// Months of history.
        #[arg(long, default_value_t = 24)]
        months: u32,
        /// Seed of the random generator: the same seed gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First day of the history (YYYY-MM-DD).
        #[arg(long, default_value = "2024-01-01")]
        start: chrono::NaiveDate,
        /// Share of bad events mixed in, each with the code it should get.
        #[arg(long, default_value_t = 0.0)]
        invalid_rate: f64,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Write an evaluation dataset: a Frictionless Data Package of pseudonymised CSV files.
    Export {
        #[command(flatten)]
        data: DataDir,
        /// The folder to write the package into.
        #[arg(long)]
        out: PathBuf,
        /// The study's key file; pseudonyms are HMAC-SHA256 under it.
        #[arg(long)]
        key_file: PathBuf,
        /// Use only events recorded by then (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// The day outcomes are judged at; default the as-of date.
        #[arg(long)]
        reference_date: Option<chrono::NaiveDate>,
        /// Only this partnership (repeatable); default all.
        #[arg(long = "partnership")]
        partnerships: Vec<String>,
    },
}

fn main() -> Result<ExitCode> {
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(run(cli.command)) {
        // A closed pipe (`dump | head`) is the reader's choice, not a failure.
        Err(error)
            if error
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

/// A progress bar on a terminal, nothing otherwise (or when there is
/// nothing to measure).
fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || len == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn open(data: &DataDir) -> Result<Ledger> {
    open_with(data, LedgerOptions::default())
}

fn open_with(data: &DataDir, options: LedgerOptions) -> Result<Ledger> {
    Ledger::open(&data.dir, options)
        .with_context(|| format!("cannot open the ledger in {}", data.dir.display()))
}

/// Opens a ledger that must exist already. The verbs that only read use
/// it, because opening creates: `verify` on a mistyped path would
/// otherwise make an empty ledger there and call its chain sound.
fn open_existing(data: &DataDir) -> Result<Ledger> {
    open_existing_with(data, LedgerOptions::default())
}

fn open_existing_with(data: &DataDir, options: LedgerOptions) -> Result<Ledger> {
    if !data.dir.is_dir() {
        bail!(
            "no ledger in {}: the directory does not exist",
            data.dir.display()
        );
    }
    open_with(data, options)
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Import { data, file } => import(&data, &file).await,
        Command::Dump { data, after } => {
            let ledger = open_existing_with(&data, LedgerOptions::one_pass())?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            for item in ledger.events_json(after) {
                let (_, json) = item?;
                out.write_all(&json)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { data, json } => {
            let ledger = open_existing(&data)?;
            let verdict = ledger.verify()?;
            if json {
                println!("{}", serde_json::to_string(&verdict)?);
            } else if verdict.ok {
                println!(
                    "ok: the chain verifies; head position {}, hash {}",
                    verdict.head_position, verdict.head_hash
                );
            } else {
                println!(
                    "broken: first bad position {} ({})",
                    verdict.first_bad_position.unwrap_or_default(),
                    verdict.problem.as_deref().unwrap_or("unknown")
                );
            }
            // A broken chain is an answer, not a failure of the command,
            // but scripts need to see it.
            Ok(if verdict.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Rejections { data, json } => {
            let ledger = open_existing(&data)?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            for record in ledger.rejections(0) {
                let record = record?;
                if json {
                    serde_json::to_writer(&mut out, &record)?;
                    writeln!(out)?;
                } else {
                    let id = record
                        .event_id
                        .map_or_else(|| "-".to_owned(), |id| id.to_string());
                    writeln!(out, "{id} {} {}", record.code, record.message)?;
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats { data } => {
            let ledger = open_existing(&data)?;
            let head = ledger.head();
            let streams = ledger.stream_count();
            let rejections = ledger.rejections(0).count();
            println!("events      {}", head.position);
            println!("streams     {streams}");
            println!("rejections  {rejections}");
            println!("head hash   {}", head.hash);
            println!("recorded    {}", head.recordedtime);
            println!("disk bytes  {}", ledger.size_on_disk()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Rebuild { data } => rebuild(&data).await.map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => {
            bench::run(args.into()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            partnerships,
            jobseekers,
            months,
            seed,
            start,
            invalid_rate,
            out,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&invalid_rate),
                "--invalid-rate must lie between 0 and 1"
            );
            let scenario = rotation_ledger::simulate::Scenario {
                partnerships,
                jobseekers,
                months,
                seed,
                start,
                invalid_rate,
            };
            let sink: Box<dyn Write> = match &out {
                Some(path) => Box::new(
                    File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut sink = BufWriter::with_capacity(1 << 20, sink);
            for simulated in rotation_ledger::simulate::simulate(&scenario) {
                sink.write_all(simulated.line.as_bytes())?;
                sink.write_all(b"\n")?;
            }
            sink.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            data,
            out,
            key_file,
            as_of,
            reference_date,
            partnerships,
        } => {
            let key = std::fs::read(&key_file)
                .with_context(|| format!("cannot read the key file {}", key_file.display()))?;
            let as_of = as_of.map_or_else(chrono::Utc::now, |t| t.to_utc());
            let options = rotation_ledger::export::ExportOptions {
                out: out.clone(),
                key: rotation_ledger::export::key_from_file(&key),
                as_of,
                reference_date: reference_date.unwrap_or_else(|| as_of.date_naive()),
                partnerships: (!partnerships.is_empty())
                    .then(|| partnerships.into_iter().collect()),
                program_version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            // One pass over the log: a small cache, and the typed data read
            // on the decoding threads.
            let ledger = open_existing_with(&data, LedgerOptions::one_pass())?;
            let events = ledger.replay_typed(0);
            let summary = tokio::task::spawn_blocking(move || {
                rotation_ledger::export::export_decoded(events, &options)
            })
            .await??;
            println!(
                "wrote {} (head position {}, jobseekers {}, releases {}, substitutions {})",
                out.join("datapackage.json").display(),
                summary.head_position,
                summary.rows.get("jobseekers").unwrap_or(&0),
                summary.rows.get("releases").unwrap_or(&0),
                summary.rows.get("substitutions").unwrap_or(&0),
            );
            ledger.close();
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Exits 0 when everything was committed (or already there), 2 when some
/// of the file was rejected and the rest committed.
async fn import(data: &DataDir, file: &PathBuf) -> Result<ExitCode> {
    let ledger = open(data)?;
    let name = file.display().to_string();
    let (input, size): (Box<dyn std::io::BufRead + Send>, u64) = if name == "-" {
        (Box::new(BufReader::new(std::io::stdin())), 0)
    } else {
        let f = File::open(file).with_context(|| format!("cannot open {name}"))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(BufReader::with_capacity(1 << 20, f)), size)
    };
    let bar = progress_bar(size, "{bar:40} {bytes}/{total_bytes} {msg} ({eta})");
    let summary = rotation_ledger::import::import(&ledger, input, &name, |read, so_far| {
        bar.set_position(read);
        bar.set_message(so_far.to_string());
    })
    .await?;
    bar.finish_and_clear();
    for (line, code, message) in &summary.problems {
        eprintln!("{name}:{line}: {code}: {message}");
    }
    println!("{summary}");
    ledger.close();
    if summary.accepted + summary.duplicate + summary.rejected == 0 && size > 0 {
        bail!("{name} holds no events");
    }
    // The rest is committed; the status tells a script that part of the
    // file was refused.
    Ok(if summary.rejected > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn load_config(path: Option<&Path>) -> Result<Option<Config>> {
    Ok(path.map(Config::load).transpose()?)
}

async fn serve(args: ServeArgs) -> Result<()> {
    let access = server::access(load_config(args.config.as_deref())?, args.http)?;
    let ledger = open(&args.data)?;
    let listener = server::bind(args.http).await?;
    let shutdown = CancellationToken::new();
    server::cancel_on_signals(shutdown.clone());
    let Access {
        config,
        fresh_token,
    } = access;
    let server = Server::start(
        &ledger,
        Arc::new(config),
        listener,
        args.nats.into(),
        shutdown,
    )
    .await?;
    announce(&server, &ledger, &args.data.dir, fresh_token.as_deref()).await;
    server.wait().await?;
    ledger.close();
    Ok(())
}

async fn demo(args: DemoArgs) -> Result<()> {
    anyhow::ensure!(
        args.every.is_finite() && args.every > 0.0,
        "--every must be a positive number of seconds"
    );
    let access = server::access(load_config(args.config.as_deref())?, args.http)?;
    let temp;
    let dir = match &args.data {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("rotation-ledger-demo-")
                .tempdir()
                .context("cannot make a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let ledger = Ledger::open(&dir, LedgerOptions::default())
        .with_context(|| format!("cannot open the ledger in {}", dir.display()))?;
    // Taking the port first fails fast, before the history is made.
    let listener = server::bind(args.http).await?;
    let held_back = if ledger.head().position == 0 {
        eprintln!("demo: simulating two partnerships' history up to today");
        let scenario = rotation_ledger::demo::scenario(chrono::Utc::now().date_naive(), args.seed);
        let history =
            tokio::task::spawn_blocking(move || rotation_ledger::demo::history(&scenario, 600))
                .await?;
        let summary = rotation_ledger::demo::load(&ledger, &history.loaded).await?;
        eprintln!(
            "demo: imported {summary}; {} more events will follow, one every {}s",
            history.held_back.len(),
            args.every
        );
        history.held_back
    } else {
        eprintln!(
            "demo: {} already holds {} events; serving them as they are",
            dir.display(),
            ledger.head().position
        );
        Vec::new()
    };
    let shutdown = CancellationToken::new();
    server::cancel_on_signals(shutdown.clone());
    let Access {
        config,
        fresh_token,
    } = access;
    let server = Server::start(
        &ledger,
        Arc::new(config),
        listener,
        Default::default(),
        shutdown.clone(),
    )
    .await?;
    announce(&server, &ledger, &dir, fresh_token.as_deref()).await;
    let trickle = tokio::spawn({
        let ledger = ledger.clone();
        let every = Duration::from_secs_f64(args.every);
        async move {
            let appended =
                rotation_ledger::demo::trickle(&ledger, held_back, every, shutdown.clone()).await;
            if !shutdown.is_cancelled() {
                eprintln!("demo: the whole history is in; the boards stay as they are now");
            }
            appended
        }
    });
    server.wait().await?;
    trickle.await??;
    ledger.close();
    Ok(())
}

/// Prints where the server listens and how to open the boards, with the
/// fresh admin token when there is one, as a notebook server does.
async fn announce(server: &Server, ledger: &Ledger, dir: &Path, fresh_token: Option<&str>) {
    // The boards to list are the partnerships the dashboards know; give
    // them a moment to catch up with the log after a start.
    let head = ledger.head().position;
    let _ = tokio::time::timeout(Duration::from_secs(3), server.projector().wait_for(head)).await;
    let base = format!("http://{}", server.local_addr());
    let mut partnerships = server.projector().partnerships();
    if partnerships.is_empty() {
        partnerships.push("<partnership>".to_owned());
    }
    let token = fresh_token.unwrap_or("<board token>");
    println!();
    println!(
        "  The rotation ledger is serving {base} (data in {})",
        dir.display()
    );
    if let Some(token) = fresh_token {
        println!("  Admin token, shown only now: {token}");
    }
    println!("  Boards:");
    for slug in &partnerships {
        println!("      {base}/boards/{slug}?token={token}");
    }
    println!("  API:     curl -H 'Authorization: Bearer {token}' {base}/v1/events");
    println!("  Stop with Ctrl-C.");
    println!();
}

async fn rebuild(data: &DataDir) -> Result<()> {
    let ledger = open(data)?;
    let head = ledger.head().position;
    let bar = progress_bar(head, "{bar:40} {pos}/{len} events ({per_sec}, {eta})");
    let position = tokio::task::spawn_blocking({
        let ledger = ledger.clone();
        let bar = bar.clone();
        move || {
            rotation_ledger::projector::rebuild(&ledger, |position, _| bar.set_position(position))
        }
    })
    .await??;
    bar.finish_and_clear();
    println!("rebuilt the dashboards from {position} events and wrote their checkpoint");
    ledger.close();
    Ok(())
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

    /// mimalloc 3's purge delay is 1,000 ms unless the environment says
    /// otherwise: reading that through [`super::PURGE_DELAY`] shows the
    /// number names the option meant.
    #[test]
    fn purge_delay_names_mimallocs_option() {
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(1_000);
        // SAFETY: reads one integer option.
        #[allow(unsafe_code)]
        let value = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(value, expected);
    }
}
