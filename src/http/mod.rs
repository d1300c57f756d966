//! The HTTP API (contract section 5): the only module that knows HTTP.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests drive it
//! with `app(state).oneshot(request)` and no socket. Every error is one
//! [`error::AppError`], answered as RFC 9457 `application/problem+json`
//! with the contract's `code`; extractors reject in the same form.
//!
//! | route | who |
//! |---|---|
//! | `POST /v1/events` | publisher, admin (each event's partnership is checked by the ledger) |
//! | `GET /v1/events?after=&limit=` | admin, evaluator (an evaluator sees its partnerships' events) |
//! | `GET /v1/streams/<kind>/<id>` | admin, publisher of the stream's partnership |
//! | `GET /v1/events/live?after=` | admin |
//! | `GET /v1/partnerships/<slug>/dashboard[?raw=true]` | board of that partnership, admin (`raw`: admin only) |
//! | `GET /boards/<slug>[?token=]` | board of that partnership, admin |
//! | `GET /assets/{board.js,board.css,chart.js}` | anyone (code, no data) |
//! | `GET /v1/rejections?after=&limit=` | admin |
//! | `GET /v1/verify` | admin |
//! | `GET /v1/checkpoint`, `/v1/checkpoint/key`, `/v1/proofs/{inclusion,consistency}` | any token |
//! | `GET /v1/persons/<id>`, `POST /v1/persons/<id>/erasure` | admin |
//! | `GET /v1/stats` | admin |
//! | `GET /v1/group` | any token (the group's nodes, roles, applied positions, lag) |
//! | `POST /v1/backup` | the local credential of `serve.json` only |
//! | `GET /healthz`, `GET /metrics` | anyone |
//! | `GET /v1/openapi.json` | anyone (the description, see [`openapi`]) |
//!
//! `docs/http.md` describes the requests and answers in full.

mod access;
mod admin;
mod admission;
mod board;
mod connections;
mod error;
mod events;
mod extract;
mod group;
mod heads;
pub mod local;
pub mod openapi;
mod persons;
mod proofs;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use access::TOKEN_COOKIE;
pub use error::{AppError, PROBLEM_JSON};
pub use extract::MAX_BODY;

use crate::config::Config;
use crate::ledger::{ChainCheck, Ledger};
use crate::metrics::{self, Positions};
use crate::projector::Projector;

/// What every handler may use; clones share it.
#[derive(Debug, Clone)]
pub struct AppState {
    ledger: Ledger,
    projector: Projector,
    config: Arc<Config>,
    /// Cancelled at shutdown: ends the live event streams, which would
    /// otherwise keep a graceful shutdown waiting forever.
    shutdown: CancellationToken,
    /// The signed checkpoints, when this server signs them.
    checkpoints: Option<crate::checkpoint::Checkpoints>,
    /// Who may post a body now; shared by every request.
    admission: Arc<admission::Admission>,
    /// This node's group, when it is one of a ledger group's: followers
    /// forward writes through it, and `GET /v1/group` reads it.
    group: Option<crate::nats::group::Node>,
}

impl AppState {
    pub fn new(
        ledger: Ledger,
        projector: Projector,
        config: Arc<Config>,
        shutdown: CancellationToken,
    ) -> Self {
        let admission = Arc::new(admission::Admission::new(
            config.limits.rejected_bytes_per_hour,
        ));
        Self {
            ledger,
            projector,
            config,
            shutdown,
            checkpoints: None,
            admission,
            group: None,
        }
    }

    /// Serves as a node of `group`.
    pub fn with_group(mut self, group: crate::nats::group::Node) -> Self {
        self.group = Some(group);
        self
    }

    /// Serves `checkpoints` and the proofs against them.
    pub fn with_checkpoints(mut self, checkpoints: crate::checkpoint::Checkpoints) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(events::append).get(events::list))
        .route("/v1/events/live", get(events::live))
        .route("/v1/streams/{kind}/{id}", get(events::stream))
        .route("/v1/rejections", get(events::rejections))
        .route("/v1/verify", get(events::verify))
        .route("/v1/checkpoint", get(proofs::checkpoint))
        .route("/v1/checkpoint/key", get(proofs::key))
        .route("/v1/proofs/inclusion", get(proofs::inclusion))
        .route("/v1/proofs/consistency", get(proofs::consistency))
        .route("/v1/partnerships/{slug}/dashboard", get(board::dashboard))
        .route("/boards/{slug}", get(board::page))
        .route("/assets/{name}", get(board::asset))
        .route("/v1/persons/{id}", get(persons::access))
        .route("/v1/persons/{id}/erasure", post(persons::erase))
        .route("/v1/stats", get(admin::stats))
        .route("/v1/backup", post(admin::backup))
        .route("/v1/group", get(group::group))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets
/// the requests in flight finish within the drain period (the live
/// streams end on the same token); `connections` holds the limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = state.config.limits.clone();
    connections::serve(listener, app(state), &limits, shutdown).await
}

/// Liveness, with where the log and the dashboards stand.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    security(()),
    summary = "Liveness (anyone)",
    responses(
        (status = 200, description = "Where the log and the dashboards stand", body = crate::http::openapi::Health),
        (status = 503, description = "The chain is broken or the store cannot write: `reason` says which", body = crate::http::openapi::Health),
    ),
)]
async fn healthz(State(state): State<AppState>) -> Response {
    let progress = state.projector.progress();
    let projection = if progress.rebuilding {
        "rebuilding"
    } else if progress.live {
        "live"
    } else {
        "catching_up"
    };
    let health = state.ledger.health();
    let (chain, first_bad_position) = match &health.chain {
        ChainCheck::Verifying => ("verifying", None),
        ChainCheck::Verified { .. } => ("verified", None),
        ChainCheck::Broken { position, .. } => ("broken", Some(*position)),
    };
    let reason = health.problem();
    let status = if reason.is_some() {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        axum::http::StatusCode::OK
    };
    let body = axum::Json(json!({
        "status": if reason.is_some() { "unavailable" } else { "ok" },
        "reason": reason,
        "chain": chain,
        "first_bad_position": first_bad_position,
        "head_position": state.ledger.head().position,
        "projected_position": progress.position,
        "projection": projection,
    }));
    (status, body).into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    security(()),
    summary = "Prometheus metrics (anyone)",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
    ),
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let positions = Positions {
        head: state.ledger.head().position,
        projected: state.projector.progress().position,
    };
    let mut text = metrics::render(state.ledger.metrics(), positions);
    text.push_str(&metrics::render_with(|registry| {
        state.admission.register(registry);
    }));
    text.push_str(&metrics::render_health(&state.ledger.health()));
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "service",
    summary = "This description (anyone)",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 description", body = serde_json::Value),
    ),
)]
/// The API's OpenAPI 3.1 description.
async fn openapi_json() -> Response {
    axum::Json(openapi::description()).into_response()
}

async fn not_found() -> AppError {
    AppError::not_found("no such resource; see docs/http.md for the routes")
}

async fn method_not_allowed() -> AppError {
    AppError::method_not_allowed()
}
