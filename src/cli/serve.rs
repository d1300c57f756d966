//! `serve` and `demo`: both open a ledger, take the port, start the
//! server with one shutdown path, announce where it listens (on the
//! terminal, and in `serve.json` for the other verbs), and wait.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rotation_ledger::auth::Role;
use rotation_ledger::config::{Config, TokenEntry};
use rotation_ledger::ledger::{Ledger, LedgerOptions};
use rotation_ledger::live::{Announced, ServeFile};
use rotation_ledger::nats::NatsOptions;
use rotation_ledger::server::{self, Access, Server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{DemoArgs, ServeArgs, load_config, open_with};

/// `serve`: the HTTP API, the boards and NATS until Ctrl-C or SIGTERM.
pub(super) async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let access = server::access(load_config(args.config.as_deref())?, args.http)?;
    let options = LedgerOptions {
        master_key_file: access.config.keys.master_key_file.clone(),
        ..LedgerOptions::default()
    };
    let ledger = open_with(&args.data, options)?;
    let listener = server::bind(args.http).await?;
    let running = start(&ledger, &args.data.dir, access, listener, args.nats.into()).await?;
    running.server.wait().await?;
    // The file goes before the store is free, so a verb never reads it
    // with nobody to answer.
    drop(running.announced);
    ledger.close();
    Ok(ExitCode::SUCCESS)
}

/// `demo`: a simulated history served, its last events appended slowly.
pub(super) async fn demo(args: DemoArgs) -> Result<ExitCode> {
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
    let Running {
        server,
        shutdown,
        announced,
    } = start(&ledger, &dir, access, listener, NatsOptions::default()).await?;
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
    drop(announced);
    ledger.close();
    Ok(ExitCode::SUCCESS)
}

/// A started server and the signal that stops it.
struct Running {
    server: Server,
    /// Cancelled by SIGINT or SIGTERM; whatever else runs beside the
    /// server stops on it too.
    shutdown: CancellationToken,
    /// `serve.json`, removed when this drops.
    announced: Announced,
}

/// What `serve` and `demo` share: one shutdown path on the signals, the
/// server started on the bound port, and the announcement.
async fn start(
    ledger: &Ledger,
    dir: &Path,
    access: Access,
    listener: TcpListener,
    nats: NatsOptions,
) -> Result<Running> {
    let shutdown = CancellationToken::new();
    server::cancel_on_signals(shutdown.clone());
    let Access {
        mut config,
        fresh_token,
    } = access;
    config.record_key = load_record_key(dir, &config)?;
    config.keys.checkpoint_key_file = Some(config.keys.checkpoint_key_file(dir));
    // The local credential of `serve.json`: an admin token that only this
    // server takes, and the only one that may ask for a backup.
    let local = ServeFile::new(listener.local_addr()?);
    config.tokens.push(TokenEntry {
        sha256: rotation_ledger::auth::token_digest(&local.token),
        role: Role::Admin,
        partnerships: vec!["*".to_owned()],
    });
    config.local_admin = Some(rotation_ledger::auth::token_digest(&local.token));
    let server = Server::start(ledger, Arc::new(config), listener, nats, shutdown.clone()).await?;
    let announced = local
        .write(dir)
        .context("cannot tell the other verbs where the server listens")?;
    announce(&server, ledger, dir, fresh_token.as_deref()).await;
    Ok(Running {
        server,
        shutdown,
        announced,
    })
}

/// The ledger's record-key secret for disclosure control, made on first
/// start.
pub(super) fn load_record_key(
    data: &Path,
    config: &Config,
) -> Result<rotation_ledger::record_key::RecordKeyBytes> {
    let configured = config.disclosure.record_key_file.as_deref();
    let path = rotation_ledger::record_key::path(data, configured);
    Ok(rotation_ledger::record_key::load_or_create(&path)?)
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
    // The fresh token is an admin's, which may read the events; a board
    // token may read only its partnership's dashboard.
    let api = match fresh_token {
        Some(_) => format!("{base}/v1/events"),
        None => format!("{base}/v1/partnerships/{}/dashboard", partnerships[0]),
    };
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
    println!("  API:     curl -H 'Authorization: Bearer {token}' {api}");
    println!("  Stop with Ctrl-C.");
    println!();
}
