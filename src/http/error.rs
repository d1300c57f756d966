//! The one error type of the HTTP API and its RFC 9457 form: every failure
//! a client sees is an `application/problem+json` body with `type`,
//! `title`, `status`, `detail` and the contract's `code`.
//!
//! Internal failures are logged here and answered with a fixed text, so
//! that no storage path, panic message or library error reaches a client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ledger::{LedgerError, Receipt};
use crate::rules::Violation;
use rotation_events::ErrorCode;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A failed request, as the client will see it.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    /// The contract's error code, or one of this API's own
    /// (`unauthorized`, `not_found`, `invalid_request`, ...).
    code: &'static str,
    detail: String,
    /// For `version_conflict`: the stream's version now.
    current_version: Option<u64>,
    /// For a rejected submission: a receipt per event, so the client knows
    /// which one failed.
    results: Option<Vec<Receipt>>,
    /// Seconds after which a retry may succeed, for 503 and 429.
    retry_after: Option<u64>,
}

impl AppError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            current_version: None,
            results: None,
            retry_after: None,
        }
    }

    /// 401: no token, or one the configuration does not know.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403: a known caller without the role or the partnership.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden.as_str(), detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this resource does not answer that method",
        )
    }

    /// 400 for a request that is malformed before any event is looked at
    /// (a query parameter, a path segment).
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes; send smaller batches"),
        )
    }

    /// 414: a request line longer than the API serves.
    pub fn uri_too_long(limit: usize) -> Self {
        Self::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request line is longer than {limit} bytes"),
        )
    }

    /// 431: a request head larger than the API serves, or with too many
    /// header fields.
    pub fn header_fields_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_fields_too_large",
            format!(
                "the request's headers are larger than {limit} bytes or more than {} fields",
                super::heads::MAX_HEADERS
            ),
        )
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
        }
    }

    /// 503 `not_writer` with `Retry-After`: a follower of a ledger group
    /// was asked for a write it does not forward; `writer` is where the
    /// group's writer listens, when one holds the lease.
    pub fn not_writer(writer: Option<&str>) -> Self {
        let detail = match writer {
            Some(http) => format!("this node follows the group's writer: send this to {http}"),
            None => "this node follows the group's writer, and none holds the lease at the moment; retry shortly".to_owned(),
        };
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_writer", detail)
        }
    }

    /// 429 with `Retry-After`: the caller has used up a quota.
    pub fn too_many_requests(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", detail)
        }
    }

    /// 500. The error is logged; the client is told only that it happened.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error answering a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the ledger could not answer; the error has been logged",
        )
    }

    /// A submission the ledger rejected, with its receipts.
    pub fn rejected(violation: &Violation, receipts: Vec<Receipt>) -> Self {
        let status = match violation.code {
            ErrorCode::InvalidEvent => StatusCode::BAD_REQUEST,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::VersionConflict | ErrorCode::DuplicateIdConflict => StatusCode::CONFLICT,
            ErrorCode::UnknownStream | ErrorCode::RuleViolation => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self {
            current_version: violation.current_version,
            results: Some(receipts),
            ..Self::new(status, violation.code.as_str(), violation.message.clone())
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<LedgerError> for AppError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Closed => Self::unavailable("the ledger is shutting down", 5),
            LedgerError::WriterStopped => {
                tracing::error!(%error, "append refused");
                Self::unavailable(
                    "the ledger cannot write at the moment: its store failed, and is retried",
                    5,
                )
            }
            LedgerError::Storage(error) => Self::internal(error),
            LedgerError::NotWriter => Self::unavailable(
                "this node is not the group's writer at the moment; retry shortly",
                1,
            ),
            LedgerError::KeysNotShared(_) => {
                tracing::error!(%error, "append refused");
                Self::unavailable(
                    "the group could not store a new data key; nothing was committed, retry shortly",
                    1,
                )
            }
            LedgerError::ChainBroken { position, .. } => {
                tracing::error!(%error, "append refused");
                Self::unavailable(
                    format!(
                        "the ledger refuses writes: its chain is broken at position {position}; an operator must restore the store"
                    ),
                    300,
                )
            }
        }
    }
}

impl From<crate::ledger::StoreError> for AppError {
    fn from(error: crate::ledger::StoreError) -> Self {
        Self::internal(error)
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::internal(error)
    }
}

/// The body of a problem response (RFC 9457).
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<&'a [Receipt]>,
}

/// A short human title per code, the same for every occurrence.
fn title(code: &str) -> &'static str {
    match code {
        "invalid_event" => "Invalid event",
        "duplicate_id_conflict" => "Event id already used with other content",
        "version_conflict" => "Stream version conflict",
        "unknown_stream" => "Unknown stream",
        "rule_violation" => "Rule violation",
        "forbidden" => "Forbidden",
        "unauthorized" => "Unauthorized",
        "not_found" => "Not found",
        "method_not_allowed" => "Method not allowed",
        "invalid_request" => "Invalid request",
        "payload_too_large" => "Payload too large",
        "uri_too_long" => "URI too long",
        "header_fields_too_large" => "Request header fields too large",
        "unsupported_media_type" => "Unsupported media type",
        "unavailable" => "Service unavailable",
        "too_many_requests" => "Too many requests",
        _ => "Internal error",
    }
}

impl AppError {
    /// The problem body (RFC 9457).
    fn problem_body(&self) -> Vec<u8> {
        let problem = Problem {
            kind: format!("urn:rotation-ledger:problem:{}", self.code),
            title: title(self.code),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            current_version: self.current_version,
            results: self.results.as_deref(),
        };
        serde_json::to_vec(&problem).unwrap_or_default()
    }

    /// The whole HTTP/1.1 response, closing the connection, for an answer
    /// written below the router (see `heads`).
    pub(crate) fn to_http1_close(&self) -> Vec<u8> {
        let body = self.problem_body();
        let mut answer = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        answer
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = self.problem_body();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rotation-ledger\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
