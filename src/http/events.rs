//! The log over HTTP: appending, reading in position order, one stream,
//! the live tail as Server-Sent Events, the rejections and the chain check.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use rotation_events::Subject;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use super::AppState;
use super::access::{Auth, require_partnership, require_role};
use super::admission::Publisher;
use super::error::AppError;
use super::extract::{ApiPath, ApiQuery, JsonBody};
use crate::auth::{Role, Scope};
use crate::ledger::StoreError;
use crate::ledger::{Durable, Ledger, LedgerError, Submission};

/// Events (or rejections) per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 1_000;
/// The largest page.
pub const MAX_LIMIT: usize = 10_000;
/// The most events one page scans for a caller limited to some
/// partnerships, so that a page over other partnerships' events stays
/// cheap; `next_after` then lets the caller go on from there.
const MAX_SCAN: usize = 100_000;
/// Events read from the store at a time for the live stream.
const LIVE_CHUNK: usize = 256;

/// `?after=<n>&limit=<n>`.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

impl Page {
    fn limit(&self) -> Result<usize, AppError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(0) => Err(AppError::invalid_request("limit must be at least 1")),
            Some(n) => Ok(n.min(MAX_LIMIT)),
        }
    }
}

/// `POST /v1/events`: one CloudEvent or an array, all or nothing. The
/// caller's role and quota are checked before the body is read.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    summary = "Append one CloudEvent or a batch (all or nothing)",
    request_body(
        content(
            (crate::http::openapi::Submission = "application/cloudevents+json"),
            (crate::http::openapi::Submission = "application/cloudevents-batch+json"),
            (crate::http::openapi::Submission = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Every event accepted or a duplicate", body = crate::http::openapi::Results),
        (status = 400, description = "`invalid_event`: not JSON, not a CloudEvent, unknown type, a missing or mistyped field, ... (`results` names the event)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 403, description = "`forbidden`: the caller may not publish for the event's partnership", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`version_conflict` (with `current_version`) or `duplicate_id_conflict`", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: a body over 4 MiB", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body not declared as JSON", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`unknown_stream` or `rule_violation`", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Internal,
        (status = 503, description = "`unavailable`: shutting down, the ledger cannot write, or (a follower of a ledger group) no writer answers at the moment (`Retry-After`)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn append(
    State(state): State<AppState>,
    publisher: Publisher,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let submission = Submission::from_json(body.to_vec(), "http", publisher.caller.clone());
    let outcome = match state.ledger.submit_one(submission).await {
        // A follower of a ledger group: the writer decides.
        Err(LedgerError::NotWriter) if state.group.is_some() => {
            return forward(&state, &publisher, body).await;
        }
        outcome => outcome?,
    };
    if let Some(violation) = &outcome.rejection {
        state.admission.rejected(&publisher.token, body.len());
        return Err(AppError::rejected(violation, outcome.receipts));
    }
    Ok(Json(json!({ "results": outcome.receipts })).into_response())
}

/// A follower's `POST /v1/events`, answered with the writer's receipts.
/// The writer takes `rotation.append` from any publisher, so the caller's
/// partnerships are checked here first, as the writer would have.
async fn forward(
    state: &AppState,
    publisher: &Publisher,
    body: bytes::Bytes,
) -> Result<Response, AppError> {
    let Some(node) = &state.group else {
        return Err(AppError::from(LedgerError::NotWriter));
    };
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
        let events = match &value {
            serde_json::Value::Array(events) => events.iter().collect(),
            event => vec![event],
        };
        for partnership in events
            .iter()
            .filter_map(|event| event.get("partnership").and_then(|p| p.as_str()))
        {
            if !publisher.caller.may_publish(partnership) {
                return Err(AppError::forbidden(format!(
                    "the caller may not publish for partnership {partnership}"
                )));
            }
        }
    }
    let length = body.len();
    match node.forward(body).await {
        Ok(forwarded) => match &forwarded.rejection {
            Some(violation) => {
                state.admission.rejected(&publisher.token, length);
                Err(AppError::rejected(violation, forwarded.receipts))
            }
            None => Ok(Json(json!({ "results": forwarded.receipts })).into_response()),
        },
        Err(error) => Err(AppError::unavailable(error.to_string(), 1)),
    }
}

/// `GET /v1/events?after=&limit=`: committed events in position order.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    summary = "Committed events in position order (admin, evaluator)",
    params(crate::http::openapi::PageParams),
    responses(
        (status = 200, description = "A page of committed events", body = crate::http::openapi::EventsPage),
        (status = 400, description = "`invalid_request`: a malformed query or path parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 403, description = "`forbidden`: an evaluator or admin token is needed", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Internal,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, AppError> {
    require_role(&caller, &[Role::Admin, Role::Evaluator], "read the log")?;
    let limit = page.limit()?;
    let ledger = state.ledger.clone();
    let body =
        tokio::task::spawn_blocking(move || read_page(&ledger, page.after, limit, &caller.scope))
            .await??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The body of a page of events, built from the stored JSON as it is.
fn read_page(
    ledger: &Ledger,
    after: u64,
    limit: usize,
    scope: &Scope,
) -> Result<Vec<u8>, StoreError> {
    let head = ledger.head().position;
    let mut body = Vec::with_capacity(limit.min(1_000) * 800 + 64);
    body.extend_from_slice(b"{\"events\":[");
    let mut next_after = after;
    let mut count = 0;
    for (scanned, item) in ledger.events_json(after).enumerate() {
        let (position, json) = item?;
        next_after = position;
        if in_scope(scope, &json) {
            if count > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&json);
            count += 1;
        }
        if count == limit || scanned + 1 >= MAX_SCAN {
            break;
        }
    }
    body.extend_from_slice(
        format!("],\"next_after\":{next_after},\"head_position\":{head}}}").as_bytes(),
    );
    Ok(body)
}

/// Whether an event's partnership is in `scope`.
fn in_scope(scope: &Scope, json: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Partnership<'a> {
        #[serde(borrow)]
        partnership: Cow<'a, str>,
    }
    match scope {
        Scope::All => true,
        Scope::Only(_) => serde_json::from_slice::<Partnership>(json)
            .is_ok_and(|event| scope.allows(&event.partnership)),
    }
}

/// `GET /v1/streams/<kind>/<id>`: one stream's events in version order.
#[utoipa::path(
    get,
    path = "/v1/streams/{kind}/{id}",
    tag = "events",
    summary = "One stream's events in version order (admin, publisher)",
    params(("kind" = String, Path, description = "partnership, employer, person or rotation"), ("id" = String, Path, description = "a slug (partnership) or a UUID")),
    responses(
        (status = 200, description = "The stream", body = crate::http::openapi::StreamEvents),
        (status = 400, description = "`invalid_request`: a malformed query or path parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 403, description = "`forbidden`: the token may not read that partnership's streams", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such stream", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Internal,
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((kind, id)): ApiPath<(String, String)>,
) -> Result<Response, AppError> {
    const ROLES: &[Role] = &[Role::Admin, Role::Publisher];
    require_role(&caller, ROLES, "read streams")?;
    let subject = Subject::parse(&format!("{kind}/{id}"))
        .map_err(|e| AppError::not_found(format!("no stream {kind}/{id}: {}", e.0)))?;
    let ledger = state.ledger.clone();
    let events = {
        let subject = subject.clone();
        tokio::task::spawn_blocking(move || ledger.stream(&subject)).await??
    };
    let Some(first) = events.first() else {
        return Err(AppError::not_found(format!("no stream {subject}")));
    };
    require_partnership(&caller, ROLES, &first.envelope.partnership, "read streams")?;
    let version = events.last().map_or(0, |e| e.ledger.streamversion);
    Ok(Json(json!({
        "subject": subject.to_string(),
        "partnership": first.envelope.partnership,
        "version": version,
        "events": events,
    }))
    .into_response())
}

/// `?after=<position>` of the live stream.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    after: Option<u64>,
}

/// `GET /v1/events/live?after=`: every committed event after `after` (or
/// after `Last-Event-ID`, which a reconnecting client sends), then each new
/// one as it becomes durable. One `committed` event per log event, its
/// `id` the position.
#[utoipa::path(
    get,
    path = "/v1/events/live",
    tag = "events",
    summary = "Server-Sent Events: catch-up, then live (admin; board: notices)",
    params(crate::http::openapi::AfterParams, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this position")),
    responses(
        (status = 200, description = "`text/event-stream`: `event: committed`, `id: <position>`, `data: <committed event>`", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_request`: a malformed query or path parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 403, description = "`forbidden`: an admin or board token is needed", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn live(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    require_role(&caller, &[Role::Admin, Role::Board], "follow the live log")?;
    // A board follows only its own partnerships, and sees that something
    // happened, not what: event data can hold personal data, which boards
    // see only through disclosure control.
    let notices_for = (caller.role == Role::Board).then(|| caller.scope.clone());
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| AppError::invalid_request("Last-Event-ID must be a log position"))
        })
        .transpose()?;
    let after = last_event_id.or(query.after).unwrap_or(0);
    let tail = Tail {
        durable: state.ledger.subscribe(),
        ledger: state.ledger.clone(),
        after,
        buffer: VecDeque::new(),
        notices_for,
    };
    let stream = futures::stream::unfold(tail, Tail::next)
        .map(Ok)
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The live stream's cursor: reads the store after `after`, then waits
/// for the durable head to move. It never holds more than one chunk, so a
/// slow client costs no memory.
struct Tail {
    ledger: Ledger,
    durable: watch::Receiver<Durable>,
    after: u64,
    buffer: VecDeque<(u64, String)>,
    /// For boards: the partnerships whose events are announced, as notices
    /// without data. `None` streams whole events.
    notices_for: Option<crate::auth::Scope>,
}

/// What a board is told of a committed event.
#[derive(Deserialize, serde::Serialize)]
struct Notice<'a> {
    #[serde(default)]
    position: u64,
    #[serde(borrow)]
    partnership: std::borrow::Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
}

impl Tail {
    async fn next(mut self) -> Option<(Event, Self)> {
        loop {
            if let Some((position, json)) = self.buffer.pop_front() {
                let event = Event::default()
                    .event("committed")
                    .id(position.to_string())
                    .data(json);
                return Some((event, self));
            }
            let head = self.durable.borrow_and_update().head.position;
            if head > self.after {
                let ledger = self.ledger.clone();
                let after = self.after;
                let chunk = tokio::task::spawn_blocking(move || {
                    ledger.read_after(after, LIVE_CHUNK).map(|events| {
                        events
                            .into_iter()
                            .map(|event| (event.position, event.json))
                            .collect::<Vec<_>>()
                    })
                })
                .await;
                let rows = match chunk {
                    Ok(Ok(rows)) => rows,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "the live stream cannot read the log");
                        return None;
                    }
                    Err(error) => {
                        tracing::error!(%error, "the live stream's reader failed");
                        return None;
                    }
                };
                for (position, json) in rows {
                    self.after = position;
                    let Some(scope) = &self.notices_for else {
                        self.buffer
                            .push_back((position, String::from_utf8_lossy(&json).into_owned()));
                        continue;
                    };
                    let Ok(notice) = serde_json::from_slice::<Notice>(&json) else {
                        continue;
                    };
                    if scope.allows(&notice.partnership) {
                        let notice = Notice { position, ..notice };
                        if let Ok(text) = serde_json::to_string(&notice) {
                            self.buffer.push_back((position, text));
                        }
                    }
                }
                continue;
            }
            if self.durable.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// `GET /v1/rejections?after=&limit=`: rejected submissions by sequence.
#[utoipa::path(
    get,
    path = "/v1/rejections",
    tag = "events",
    summary = "Rejected submissions by sequence number (admin)",
    params(crate::http::openapi::PageParams),
    responses(
        (status = 200, description = "A page of rejections", body = crate::http::openapi::RejectionsPage),
        (status = 400, description = "`invalid_request`: a malformed query or path parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        crate::http::openapi::AdminOnly,
        crate::http::openapi::Internal,
    ),
)]
pub async fn rejections(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, AppError> {
    require_role(&caller, &[Role::Admin], "read the rejections")?;
    let limit = page.limit()?;
    let ledger = state.ledger.clone();
    let records = tokio::task::spawn_blocking(move || {
        ledger
            .rejections(page.after)
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let next_after = records.last().map_or(page.after, |r| r.seq);
    Ok(Json(json!({ "rejections": records, "next_after": next_after })).into_response())
}

/// `GET /v1/verify`: the hash chain recomputed from position 1.
#[utoipa::path(
    get,
    path = "/v1/verify",
    tag = "events",
    summary = "The hash chain checked (admin)",
    responses(
        (status = 200, description = "The verdict", body = crate::http::openapi::Verdict),
        crate::http::openapi::Unauthorized,
        crate::http::openapi::AdminOnly,
        crate::http::openapi::Internal,
    ),
)]
pub async fn verify(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Response, AppError> {
    require_role(&caller, &[Role::Admin], "verify the log")?;
    let ledger = state.ledger.clone();
    let verification = tokio::task::spawn_blocking(move || ledger.verify()).await??;
    Ok(Json(verification).into_response())
}
