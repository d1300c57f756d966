//! `GET /v1/checkpoint`, `/v1/checkpoint/key` and `/v1/proofs/*`
//! (contract section 10): for anyone holding a token, since they let a
//! reader hold the ledger to what it showed and reveal no event.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::access::Auth;
use super::error::AppError;
use super::extract::ApiQuery;
use crate::checkpoint::TreeError;
use crate::checkpoint::service::Checkpoints;
use crate::ledger::ProofError;

#[derive(Debug, Deserialize)]
pub struct InclusionQuery {
    position: u64,
    size: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

fn checkpoints(state: &AppState) -> Result<&Checkpoints, AppError> {
    state
        .checkpoints
        .as_ref()
        .ok_or_else(|| AppError::unavailable("this server signs no checkpoints", 60))
}

fn latest_size(state: &AppState) -> Result<u64, AppError> {
    checkpoints(state)?
        .latest()
        .map(|signed| signed.size)
        .ok_or_else(|| AppError::unavailable("no checkpoint is signed yet", 1))
}

/// `GET /v1/checkpoint`: the latest signed checkpoint, as a signed note.
#[utoipa::path(
    get,
    path = "/v1/checkpoint",
    tag = "checkpoints",
    summary = "The latest signed checkpoint (C2SP tlog-checkpoint in a signed note)",
    responses(
        (status = 200, description = "The signed note", body = String, content_type = "text/plain"),
        crate::http::openapi::Unauthorized,
        (status = 503, description = "`unavailable`: no checkpoint is signed yet (or this server signs none)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    Auth(_): Auth,
) -> Result<Response, AppError> {
    let signed = checkpoints(&state)?
        .latest()
        .ok_or_else(|| AppError::unavailable("no checkpoint is signed yet", 1))?;
    Ok(text(signed.note.to_string()))
}

/// `GET /v1/checkpoint/key`: the verifier key in the note format.
#[utoipa::path(
    get,
    path = "/v1/checkpoint/key",
    tag = "checkpoints",
    summary = "The checkpoints' verifier key, in the note format",
    responses(
        (status = 200, description = "`<name>+<hex key id>+<base64 key>`", body = String, content_type = "text/plain"),
        crate::http::openapi::Unauthorized,
        (status = 503, description = "`unavailable`: no checkpoint is signed yet (or this server signs none)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn key(State(state): State<AppState>, Auth(_): Auth) -> Result<Response, AppError> {
    Ok(text(format!("{}\n", checkpoints(&state)?.verifier_key())))
}

/// `GET /v1/proofs/inclusion?position=P&size=N`.
#[utoipa::path(
    get,
    path = "/v1/proofs/inclusion",
    tag = "checkpoints",
    summary = "An RFC 9162 inclusion proof",
    params(("position" = u64, Query, description = "the event's position, 1-based"), ("size" = Option<u64>, Query, description = "the tree size; default the latest checkpoint's")),
    responses(
        (status = 200, description = "`{position, size, leaf_hash, hashes}`, hashes as lower-case hex", body = serde_json::Value),
        (status = 400, description = "`invalid_request`: a position of 0 or beyond the size, a size beyond the head, `from` of 0 or greater than `to`, a missing or non-numeric parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 503, description = "`unavailable`: no checkpoint is signed yet (or this server signs none)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn inclusion(
    State(state): State<AppState>,
    Auth(_): Auth,
    ApiQuery(query): ApiQuery<InclusionQuery>,
) -> Result<Response, AppError> {
    let size = match query.size {
        Some(size) => size,
        None => latest_size(&state)?,
    };
    let ledger = state.ledger.clone();
    let proof = tokio::task::spawn_blocking(move || ledger.inclusion_proof(query.position, size))
        .await?
        .map_err(proof_error)?;
    Ok(Json(json!({
        "position": proof.position,
        "size": proof.size,
        "leaf_hash": hex::encode(proof.leaf_hash),
        "hashes": proof.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /v1/proofs/consistency?from=M&to=N`.
#[utoipa::path(
    get,
    path = "/v1/proofs/consistency",
    tag = "checkpoints",
    summary = "An RFC 9162 consistency proof",
    params(("from" = u64, Query, description = "the older tree size"), ("to" = Option<u64>, Query, description = "the newer tree size; default the latest checkpoint's")),
    responses(
        (status = 200, description = "`{from, to, hashes}`, hashes as lower-case hex", body = serde_json::Value),
        (status = 400, description = "`invalid_request`: a position of 0 or beyond the size, a size beyond the head, `from` of 0 or greater than `to`, a missing or non-numeric parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 503, description = "`unavailable`: no checkpoint is signed yet (or this server signs none)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn consistency(
    State(state): State<AppState>,
    Auth(_): Auth,
    ApiQuery(query): ApiQuery<ConsistencyQuery>,
) -> Result<Response, AppError> {
    let to = match query.to {
        Some(to) => to,
        None => latest_size(&state)?,
    };
    let ledger = state.ledger.clone();
    let from = query.from;
    let hashes = tokio::task::spawn_blocking(move || ledger.consistency_proof(from, to))
        .await?
        .map_err(proof_error)?;
    Ok(Json(json!({
        "from": from,
        "to": to,
        "hashes": hashes.iter().map(hex::encode).collect::<Vec<_>>(),
    }))
    .into_response())
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// What the caller asked wrongly is a 400 naming it; the rest is the
/// server's failure, answered without its internal text.
fn proof_error(error: ProofError) -> AppError {
    match error {
        TreeError::PositionOutOfRange { .. }
        | TreeError::SizeBeyondHead { .. }
        | TreeError::BadRange { .. } => AppError::invalid_request(error.to_string()),
        other => AppError::internal(other),
    }
}
