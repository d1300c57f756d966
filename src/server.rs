//! `rotation-ledger serve`: the ledger's dashboards, HTTP API and (when
//! asked) NATS side in one process, with one way to stop.
//!
//! Shutdown has one path. A signal (or anything else) cancels one
//! [`CancellationToken`]; HTTP stops accepting and finishes the requests
//! in flight (the live event streams end on the same token), NATS stops,
//! the projector writes its last checkpoint, and [`Server::wait`] returns,
//! after which the caller closes the ledger.
//!
//! Without configured tokens the server mints one admin token and listens
//! on loopback only, as a notebook server does; it refuses any other
//! address, since nobody could then be told apart from anybody else.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Role;
use crate::checkpoint::{self, Checkpoints};
use crate::config::{Config, TokenEntry};
use crate::http::{self, AppState};
use crate::ledger::Ledger;
use crate::nats::group::{Ended, GroupError, Node};
use crate::nats::{self, NatsError, NatsOptions};
use crate::projector::{Projector, ProjectorError, ProjectorOptions, ProjectorTask};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {0} without tokens: anyone who can reach it could read and write the ledger. \
         Give a --config with [[tokens]], or listen on a loopback address such as 127.0.0.1:8080"
    )]
    OpenWithoutTokens(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Projector(#[from] ProjectorError),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("NATS failed: {0}")]
    Nats(#[from] NatsError),
    #[error("the ledger group: {0}")]
    Group(#[from] GroupError),
    #[error("checkpoints: {0}")]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The configuration the server runs with, and the admin token it minted
/// when the configuration had none.
#[derive(Debug)]
pub struct Access {
    pub config: Config,
    /// Printed once at start; only its digest is kept.
    pub fresh_token: Option<String>,
}

/// Decides who may use a server on `addr`: the configured tokens, or a
/// fresh admin token when there are none and `addr` is loopback.
pub fn access(config: Option<Config>, addr: SocketAddr) -> Result<Access, ServerError> {
    let mut config = config.unwrap_or_default();
    if !config.tokens.is_empty() {
        return Ok(Access {
            config,
            fresh_token: None,
        });
    }
    if !addr.ip().is_loopback() {
        return Err(ServerError::OpenWithoutTokens(addr));
    }
    let token = fresh_token();
    config.tokens.push(TokenEntry {
        sha256: crate::auth::token_digest(&token),
        role: Role::Admin,
        partnerships: vec!["*".to_owned()],
    });
    Ok(Access {
        config,
        fresh_token: Some(token),
    })
}

/// A new random token: 32 bytes from the operating system's generator, in hex.
pub fn fresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Binds the HTTP listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Cancels `shutdown` on SIGINT (Ctrl-C) or SIGTERM. A second signal ends
/// the process at once, for a shutdown that hangs.
pub fn cancel_on_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutting down: finishing requests, checkpointing the dashboards");
        shutdown.cancel();
        signal().await;
        tracing::warn!("second signal: exiting without a clean shutdown");
        std::process::exit(130);
    });
}

async fn signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops the server");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    projector: Projector,
    projector_task: ProjectorTask,
    http: JoinHandle<std::io::Result<()>>,
    nats: Option<JoinHandle<Result<(), NatsError>>>,
    /// The group's run loop, when the node is one of a group's.
    group: Option<JoinHandle<Result<Ended, GroupError>>>,
    /// The checkpoint signing task (and its publisher to NATS).
    checkpoints: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl Server {
    /// Starts the projector, HTTP on `listener`, and NATS when `nats`
    /// names a server. Everything stops when `shutdown` is cancelled.
    pub async fn start(
        ledger: &Ledger,
        config: Arc<Config>,
        listener: TcpListener,
        nats: NatsOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, ServerError> {
        Self::launch(ledger, config, listener, nats, None, shutdown).await
    }

    /// Starts a node of a ledger group: as [`Server::start`], with the
    /// group's run loop in place of the single ledger's NATS side. When the
    /// node must rejoin, the loop cancels `shutdown` and
    /// [`Server::finish`] says so.
    pub async fn start_in_group(
        ledger: &Ledger,
        config: Arc<Config>,
        listener: TcpListener,
        nats: NatsOptions,
        node: Node,
        shutdown: CancellationToken,
    ) -> Result<Self, ServerError> {
        Self::launch(ledger, config, listener, nats, Some(node), shutdown).await
    }

    async fn launch(
        ledger: &Ledger,
        config: Arc<Config>,
        listener: TcpListener,
        nats: NatsOptions,
        node: Option<Node>,
        shutdown: CancellationToken,
    ) -> Result<Self, ServerError> {
        let addr = listener.local_addr().map_err(ServerError::Http)?;
        // Opening checked the tail against the head record; the rest of
        // the chain is checked while serving.
        ledger.verify_in_background();
        let (projector, projector_task) = Projector::start(
            ledger.clone(),
            Arc::clone(&config),
            ProjectorOptions::default(),
            shutdown.clone(),
        )
        .await?;
        let nats_args = nats.clone();
        let group = node.clone().map(|node| {
            let ledger = ledger.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let result = node.run(ledger, shutdown.clone()).await;
                match &result {
                    Ok(Ended::Rejoin) => shutdown.cancel(),
                    Ok(Ended::Shutdown) => {}
                    Err(error) => {
                        tracing::error!(%error, "the ledger group stopped: shutting down");
                        shutdown.cancel();
                    }
                }
                result
            })
        });
        let nats = (nats.url.is_some() && node.is_none()).then(|| {
            let ledger = ledger.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let result = nats::run(ledger, nats, shutdown.clone()).await;
                if let Err(error) = &result {
                    // An operator who asked for NATS is not served without
                    // it: stop everything and say why.
                    tracing::error!(%error, "NATS stopped: shutting down");
                    shutdown.cancel();
                }
                result
            })
        });
        if let Some(days) = config.retention.erase_profiles_after_days {
            tokio::spawn(crate::personal::retention::run(
                ledger.clone(),
                days,
                shutdown.clone(),
            ));
        }
        let mut state = AppState::new(
            ledger.clone(),
            projector.clone(),
            Arc::clone(&config),
            shutdown.clone(),
        );
        let replicas = node.as_ref().map_or(0, Node::replicas);
        if let Some(node) = node {
            state = state.with_group(node);
        }
        let mut checkpoint_tasks = Vec::new();
        if let Some(key_file) = &config.keys.checkpoint_key_file {
            let (signer, origin) =
                checkpoint::service::signer(ledger, key_file, config.checkpoint.origin.as_deref())?;
            let (checkpoints, task) =
                Checkpoints::start(ledger.clone(), signer, origin, shutdown.clone()).await?;
            checkpoint_tasks.push(task);
            if nats_args.url.is_some() {
                checkpoint_tasks.push(tokio::spawn(nats::publish_checkpoints(
                    nats_args,
                    replicas,
                    checkpoints.subscribe(),
                    shutdown.clone(),
                )));
            }
            state = state.with_checkpoints(checkpoints);
        }
        let http = tokio::spawn(http::serve(listener, state, shutdown.clone()));
        tracing::info!(%addr, "serving HTTP");
        Ok(Self {
            addr,
            projector,
            projector_task,
            http,
            nats,
            group,
            checkpoints: checkpoint_tasks,
            shutdown,
        })
    }

    /// The address HTTP listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// Waits until the server has stopped: HTTP, then NATS, then the
    /// projector's last checkpoint. A failure of any part stops the others.
    pub async fn wait(self) -> Result<(), ServerError> {
        self.finish().await.map(|_| ())
    }

    /// As [`Server::wait`], and whether a group's node must rejoin.
    pub async fn finish(self) -> Result<Ended, ServerError> {
        let http = self.http.await;
        self.shutdown.cancel();
        let nats = match self.nats {
            Some(task) => task.await.map_err(ServerError::from).and_then(|r| Ok(r?)),
            None => Ok(()),
        };
        let ended = match self.group {
            Some(task) => task.await.map_err(ServerError::from).and_then(|r| Ok(r?)),
            None => Ok(Ended::Shutdown),
        };
        for task in self.checkpoints {
            task.await?;
        }
        drop(self.projector);
        let projector = self.projector_task.join().await;
        http?.map_err(ServerError::Http)?;
        nats?;
        let ended = ended?;
        projector?;
        Ok(ended)
    }
}
