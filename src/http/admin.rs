//! The operator's routes that the read-only verbs need from a running
//! server and that no other route answers: `GET /v1/stats` (what `stats`
//! prints) and `POST /v1/backup` (a consistent copy, see
//! `crate::ledger::backup`).
//!
//! A backup writes files on the server's machine, so only the local
//! admin credential of `serve.json` may ask for one (`crate::live`): a
//! configured admin token reaches the server from elsewhere, and its
//! holder has no business naming the server's directories.

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::access::{Auth, require_role, token};
use super::error::AppError;
use super::extract::JsonBody;
use crate::auth::Role;
use crate::ledger::BackupError;

/// `GET /v1/stats`: the ledger's counts.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "service",
    summary = "Counts of events, streams and rejections, and the size on disk (admin)",
    responses(
        (status = 200, description = "The counts `rotation-ledger stats` prints", body = crate::http::openapi::Stats),
        crate::http::openapi::Unauthorized,
        crate::http::openapi::AdminOnly,
        crate::http::openapi::Internal,
    ),
)]
pub async fn stats(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Response, AppError> {
    require_role(&caller, &[Role::Admin], "read the ledger's counts")?;
    let ledger = state.ledger.clone();
    let stats = tokio::task::spawn_blocking(move || ledger.stats()).await??;
    Ok(Json(stats).into_response())
}

/// `{"out": "/absolute/directory"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    out: PathBuf,
}

/// `POST /v1/backup`: a consistent copy of the ledger into a directory
/// of the server's machine, answered once it is durable.
#[utoipa::path(
    post,
    path = "/v1/backup",
    tag = "service",
    summary = "A consistent copy of the ledger into a new directory on the server's machine (the local credential of serve.json only)",
    request_body(content = crate::http::openapi::BackupRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The copy is made and durable", body = crate::http::openapi::BackupReport),
        (status = 400, description = "`invalid_request`: not `{\"out\"}` with an absolute path, or the directory is not empty", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 403, description = "`forbidden`: only the server's local credential may ask", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body not declared as JSON", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal`: the copy failed, logged", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the commits in flight did not finish in time (`Retry-After`)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn backup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Auth(_known): Auth,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let digest = token(&headers)?.map(|t| crate::auth::token_digest(&t));
    if digest.is_none() || digest != state.config.local_admin {
        return Err(AppError::forbidden(
            "only the local credential in serve.json may ask for a backup",
        ));
    }
    let request: BackupRequest = serde_json::from_slice(&body)
        .map_err(|e| AppError::invalid_request(format!("the body: {e}")))?;
    if !request.out.is_absolute() {
        return Err(AppError::invalid_request(
            "`out` must be an absolute path on the server's machine",
        ));
    }
    let outside = crate::ledger::outside_key_files(&state.config, state.ledger.dir());
    match state.ledger.backup(&request.out, outside).await {
        Ok(report) => {
            tracing::info!(out = %report.out.display(), head = report.head_position, paused_ms = report.paused_ms, "backup made");
            Ok(Json(report).into_response())
        }
        Err(error @ BackupError::NotEmpty(_)) => Err(AppError::invalid_request(error.to_string())),
        Err(error @ BackupError::Busy(_)) => Err(AppError::unavailable(error.to_string(), 5)),
        Err(error) => Err(AppError::internal(error)),
    }
}
