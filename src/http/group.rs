//! `GET /v1/group` (contract section 11): the ledger group's nodes, their
//! roles, applied positions and lag behind the writer, and the lease's
//! holder. A ledger without a group answers as one node of role `single`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::access::Auth;
use super::error::AppError;
use crate::nats::group::GroupView;

/// `GET /v1/group`: any token.
#[utoipa::path(
    get,
    path = "/v1/group",
    tag = "service",
    summary = "The ledger group's nodes, roles, applied positions and lag (any token)",
    responses(
        (status = 200, description = "Every node that reported within the lease, and the writer", body = crate::http::openapi::Group),
        crate::http::openapi::Unauthorized,
    ),
)]
pub async fn group(
    State(state): State<AppState>,
    Auth(_caller): Auth,
) -> Result<Response, AppError> {
    let view = match &state.group {
        Some(node) => node.view(&state.ledger).await,
        None => GroupView::single(String::new(), state.ledger.head().position),
    };
    Ok(Json(view).into_response())
}

/// The answer to a write a follower does not forward: 503 `not_writer`,
/// naming the writer's HTTP address when one holds the lease.
pub(super) async fn not_writer(state: &AppState) -> AppError {
    let writer = match &state.group {
        Some(node) => node.writer_http().await,
        None => None,
    };
    AppError::not_writer(writer.as_deref())
}
