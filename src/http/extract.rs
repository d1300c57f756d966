//! Extractors whose rejections are problem responses like every other
//! error, rather than axum's plain-text ones.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::AppError;

/// The largest body `POST /v1/events` takes.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Query parameters; a malformed one is a 400 `invalid_request`.
#[derive(Debug, Clone, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| AppError::invalid_request(rejection.body_text()))
    }
}

/// The body of `POST /v1/events`: JSON bytes, handed to the ledger as
/// received so that a rejected submission is kept exactly as it came.
/// The content type must be JSON (`application/json`,
/// `application/cloudevents+json`, `application/cloudevents-batch+json` or
/// any other `+json`); the body at most [`MAX_BODY`] bytes.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !is_json(content_type) {
            return Err(AppError::unsupported_media_type(format!(
                "send the events as application/cloudevents+json (one event) or application/cloudevents-batch+json (an array), not `{content_type}`"
            )));
        }
        Bytes::from_request(request, state)
            .await
            .map(Self)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::payload_too_large(MAX_BODY)
                } else {
                    AppError::invalid_request(rejection.body_text())
                }
            })
    }
}

/// Whether a `Content-Type` names JSON.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Path parameters; a malformed one is a 400 `invalid_request`.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| AppError::invalid_request(rejection.body_text()))
    }
}
