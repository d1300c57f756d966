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
use rotation_ledger::nats::group::{self, Ended, GroupOptions, Node, Preparation, SecretFiles};
use rotation_ledger::personal::GroupKey;
use rotation_ledger::server::{self, Access, Server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{DemoArgs, ServeArgs, load_config, open_with};

/// `serve`: the HTTP API, the boards and NATS until Ctrl-C or SIGTERM.
pub(super) async fn serve(args: ServeArgs) -> Result<ExitCode> {
    if args.group.group {
        return serve_in_group(args).await;
    }
    let access = server::access(load_config(args.config.as_deref())?, args.http)?;
    let options = LedgerOptions {
        master_key_file: access.config.keys.master_key_file.clone(),
        ..LedgerOptions::default()
    };
    let ledger = open_with(&args.data, options)?;
    let listener = server::bind(args.http).await?;
    let shutdown = CancellationToken::new();
    server::cancel_on_signals(shutdown.clone());
    let running = start(
        &ledger,
        &args.data.dir,
        access,
        listener,
        args.nats.into(),
        None,
        shutdown,
    )
    .await?;
    running.server.wait().await?;
    // The file goes before the store is free, so a verb never reads it
    // with nobody to answer.
    drop(running.announced);
    ledger.close();
    Ok(ExitCode::SUCCESS)
}

/// `serve --group`: a node of a ledger group. Its store is made a verified
/// prefix of the group's stream before it serves; when it must rejoin (it
/// lost the lease with events the stream never stored), it closes the
/// ledger, prepares it again (which drops them) and serves again on the
/// same address.
async fn serve_in_group(args: ServeArgs) -> Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let dir = args.data.dir.clone();
    let nats: NatsOptions = args.nats.clone().into();
    let group_key_file = args
        .group
        .group_key
        .clone()
        .unwrap_or_else(|| dir.join(group::DEFAULT_GROUP_KEY_FILE));
    let group_key = GroupKey::load(&group_key_file, args.group.group_key.is_none())
        .with_context(|| format!("cannot load the group key {}", group_key_file.display()))?;
    let options = GroupOptions {
        node: args
            .group
            .node_name
            .clone()
            .unwrap_or_else(|| group::default_node_name(args.http)),
        replicas: args.group.replicas,
        lease: group::DEFAULT_LEASE,
        group_key: Arc::new(group_key),
    };
    super::live::ensure_free(&dir)?;
    let node = Node::join(&nats, options, args.http).await?;
    let shutdown = CancellationToken::new();
    server::cancel_on_signals(shutdown.clone());
    let mut config = config.unwrap_or_default();
    // Every node signs the same checkpoints: one origin for the group.
    if config.checkpoint.origin.is_none() {
        config.checkpoint.origin = Some(format!("rotation-ledger/{}", nats.nats_prefix));
    }
    let secrets = SecretFiles {
        record_key: rotation_ledger::record_key::path(
            &dir,
            config.disclosure.record_key_file.as_deref(),
        ),
        checkpoint_key: config.keys.checkpoint_key_file(&dir),
        checkpoint_name: config.checkpoint.origin.clone().unwrap_or_default(),
    };
    let ledger_options = LedgerOptions {
        master_key_file: config.keys.master_key_file.clone(),
        ..LedgerOptions::default()
    };
    let mut access = Some(server::access(Some(config.clone()), args.http)?);
    loop {
        let prepared = node.prepare(&dir, &ledger_options, &secrets).await?;
        match &prepared.preparation {
            Preparation::Kept { head } => {
                eprintln!("group: node {} joins with {head} events", node.name());
            }
            Preparation::Rebuilt { events, dropped } => {
                eprintln!(
                    "group: node {} rebuilt {events} events from the group's stream",
                    node.name()
                );
                if let Some(dropped) = dropped {
                    eprintln!(
                        "group: the old store is kept in {} ({})",
                        dropped.path.display(),
                        dropped.reason
                    );
                }
            }
        }
        let ledger = prepared.ledger;
        let listener = server::bind(args.http).await?;
        // The fresh token is printed only once; later rounds keep it.
        let round_access = match access.take() {
            Some(access) => access,
            None => server::Access {
                config: config.clone(),
                fresh_token: None,
            },
        };
        let round = shutdown.child_token();
        let running = start(
            &ledger,
            &dir,
            round_access,
            listener,
            nats.clone(),
            Some(node.clone()),
            round,
        )
        .await?;
        let ended = running.server.finish().await?;
        drop(running.announced);
        ledger.close();
        if ended != Ended::Rejoin || shutdown.is_cancelled() {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("group: rejoining: the store is checked against the stream again");
    }
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
    let shutdown = CancellationToken::new();
    server::cancel_on_signals(shutdown.clone());
    let Running {
        server,
        shutdown,
        announced,
    } = start(
        &ledger,
        &dir,
        access,
        listener,
        NatsOptions::default(),
        None,
        shutdown,
    )
    .await?;
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
    node: Option<Node>,
    shutdown: CancellationToken,
) -> Result<Running> {
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
    let config = Arc::new(config);
    let server = match node {
        Some(node) => {
            Server::start_in_group(ledger, config, listener, nats, node, shutdown.clone()).await?
        }
        None => Server::start(ledger, config, listener, nats, shutdown.clone()).await?,
    };
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
