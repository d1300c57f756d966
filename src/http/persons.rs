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
use crate::ledger::EraseError;
use crate::personal::AccessError;
use crate::rules::Violation;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureRequest {
    reason: String,
}

/// `GET /v1/persons/<id>`: everything the ledger holds about one person.
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
        Err(error) => Err(AppError::internal(error)),
    }
}
