//! The socket side of the API: accepting connections, and bounding what a
//! client that stalls can hold.
//!
//! Three limits, all from `[limits]` in the configuration:
//! - a client has `header_timeout_secs` to send a request's headers, after
//!   which its connection is closed (hyper's header read timeout);
//! - at most `max_connections` are served at once; further clients wait in
//!   the kernel's accept queue;
//! - a shutdown lets requests in flight finish for `drain_secs`, then
//!   closes whatever is still open, so that no client, however slow, keeps
//!   the process alive.
//!
//! Each request head passes [`HeadGuard`] before hyper reads it, so that a
//! request too large to serve gets a problem body like any other error
//! (see `heads`).
//!
//! Only HTTP/1.1 is spoken. Detecting HTTP/2 means reading a preface
//! before any header timeout applies, which a client could stall forever;
//! the ledger's clients (services, browsers over plain HTTP, curl) speak
//! HTTP/1.1.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::heads::HeadGuard;
use crate::config::Limits;

/// How long to wait before accepting again after `accept` failed, as it
/// does when the process runs out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs.max(1)))
        // A head the guard refuses ends the connection for hyper; with
        // half-close, hyper takes that end as the client's and still
        // finishes the answers to the requests before it. A client that
        // goes away mid-answer is noticed when a write fails (the live
        // stream writes at least every 15 s).
        .half_close(true);
    let max_connections = limits.max_connections.max(1);
    let mut connections = JoinSet::new();
    loop {
        // Finished connections are reaped here, so the set holds only
        // live ones and its length is the number served.
        while connections.try_join_next().is_some() {}
        if connections.len() >= max_connections {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = connections.join_next() => continue,
            }
        }
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let connection = builder.serve_connection(
            TokioIo::new(HeadGuard::new(stream)),
            TowerToHyperService::new(app.clone()),
        );
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    // Ends the connection after the request in flight, if
                    // any; an idle one closes at once.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "an HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    let drain = Duration::from_secs(limits.drain_secs);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            seconds = limits.drain_secs,
            "closing the connections still open after the drain period"
        );
        connections.shutdown().await;
    }
    Ok(())
}
