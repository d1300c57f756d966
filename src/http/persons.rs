//! `/v1/persons/<id>` (contract section 9), admin only: subject access
//! (`GET`) and erasure (`POST .../erasure` with `{"reason"}`).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use rotation_events::ErrorCode;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::access::{Auth, require_role};
use super::error::AppError;
use super::extract::{ApiPath, JsonBody};
use crate::auth::Role;
use crate::ledger::{EraseError, LedgerError};
use crate::personal::AccessError;
use crate::rules::Violation;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureRequest {
    reason: String,
}

/// `GET /v1/persons/<id>`: everything the ledger holds about one person.
#[utoipa::path(
    get,
    path = "/v1/persons/{id}",
    tag = "persons",
    summary = "Subject access: everything the ledger holds about one person (admin)",
    params(("id" = String, Path, description = "the person's id, a UUID")),
    responses(
        (status = 200, description = "One JSON document: the person's stream with profiles opened (or erased), the rotation events and the rejections that name them", body = serde_json::Value),
        (status = 400, description = "`invalid_request`: the id is not a UUID", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        crate::http::openapi::AdminOnly,
        (status = 404, description = "`not_found`: no person of that id is known to the ledger", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Internal,
    ),
)]
pub async fn access(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, AppError> {
    require_role(&caller, &[Role::Admin], "read a person's data")?;
    let ledger = state.ledger.clone();
    let document =
        tokio::task::spawn_blocking(move || crate::personal::subject_access(&ledger, id)).await?;
    match document {
        Ok(document) => Ok(Json(document).into_response()),
        Err(AccessError::UnknownPerson(person)) => Err(AppError::not_found(format!(
            "no person {person} is known to the ledger"
        ))),
        Err(AccessError::Storage(error)) => Err(error.into()),
    }
}

/// `POST /v1/persons/<id>/erasure`: erases the person's profile; answers
/// once the erasure is durable, or with the first erasure if there was one.
#[utoipa::path(
    post,
    path = "/v1/persons/{id}/erasure",
    tag = "persons",
    summary = "Erase a person's profile: commit person.erased and destroy their data key (admin)",
    params(("id" = String, Path, description = "the person's id, a UUID")),
    request_body(content = serde_json::Value, description = "`{\"reason\": \"...\"}`, at most 500 characters", content_type = "application/json"),
    responses(
        (status = 200, description = "The erasure, durable; a second erasure answers the first", body = serde_json::Value),
        (status = 400, description = "`invalid_event`: the body is not `{\"reason\"}` or the reason is over 500 characters; or `invalid_request`: the id is not a UUID", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        crate::http::openapi::AdminOnly,
        (status = 404, description = "`not_found`: no person of that id is known to the ledger", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 4 MiB", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body not declared as JSON", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Internal,
        (status = 503, description = "`not_writer`: a follower of a ledger group; the detail names the writer's address (`Retry-After`)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn erase(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    require_role(&caller, &[Role::Admin], "erase a person's data")?;
    let request: ErasureRequest = serde_json::from_slice(&body).map_err(|e| {
        AppError::rejected(
            &Violation::new(ErrorCode::InvalidEvent, format!("the body: {e}")),
            Vec::new(),
        )
    })?;
    match state.ledger.erase(id, &request.reason).await {
        Ok(erasure) => Ok(Json(erasure).into_response()),
        Err(EraseError::UnknownPerson(person)) => Err(AppError::not_found(format!(
            "no person {person} is known to the ledger"
        ))),
        Err(error @ EraseError::InvalidReason(_)) => Err(AppError::rejected(
            &Violation::new(ErrorCode::InvalidEvent, error.to_string()),
            Vec::new(),
        )),
        Err(EraseError::Ledger(LedgerError::NotWriter)) => {
            Err(super::group::not_writer(&state).await)
        }
        Err(error) => Err(AppError::internal(error)),
    }
}
