//! The boards over HTTP: a partnership's dashboard as JSON, and the live
//! page that shows it to people, with its assets compiled into the binary.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::access::{Auth, page_caller, require_partnership};
use super::error::AppError;
use super::extract::{ApiPath, ApiQuery};
use crate::auth::Role;
use crate::projector::{DashboardRead, DashboardView};

const PAGE: &str = include_str!("board/board.html");
const BOARD_JS: &[u8] = include_bytes!("board/board.js");
const BOARD_CSS: &[u8] = include_bytes!("board/board.css");
const CHART_JS: &[u8] = include_bytes!("board/chart.js");

/// `?raw=true`.
#[derive(Debug, Deserialize)]
pub struct DashboardQuery {
    #[serde(default)]
    raw: bool,
}

/// `GET /v1/partnerships/<slug>/dashboard`: the board's figures, protected
/// by disclosure control; `?raw=true` (admin only) without it.
#[utoipa::path(
    get,
    path = "/v1/partnerships/{slug}/dashboard",
    tag = "boards",
    summary = "A board's figures, disclosure control applied (board, admin)",
    params(("slug" = String, Path, description = "the partnership slug"), crate::http::openapi::RawParams),
    responses(
        (status = 200, description = "The figures (contract section 6)", body = serde_json::Value),
        (status = 400, description = "`invalid_request`: a malformed query or path parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 403, description = "`forbidden`: a board of that partnership or an admin; `raw` is for admins", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: a partnership without events", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the dashboards are catching up (`Retry-After`)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn dashboard(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<DashboardQuery>,
) -> Result<Response, AppError> {
    require_partnership(
        &caller,
        &[Role::Board, Role::Admin],
        &slug,
        "read the dashboard",
    )?;
    let view = if query.raw {
        if caller.role != Role::Admin {
            return Err(AppError::forbidden(
                "only an admin token may read a dashboard without disclosure control",
            ));
        }
        DashboardView::Raw
    } else {
        DashboardView::Protected
    };
    match state.projector.dashboard(&slug, view) {
        DashboardRead::Found(json) => Ok((
            [
                (header::CONTENT_TYPE, "application/json"),
                // Figures behind a token are never kept by shared caches.
                (header::CACHE_CONTROL, "private, no-store"),
            ],
            json,
        )
            .into_response()),
        DashboardRead::Unknown => Err(AppError::not_found(format!(
            "partnership {slug} has no events"
        ))),
        DashboardRead::CatchingUp => Err(AppError::unavailable(
            "the dashboards are catching up with the log after a start",
            1,
        )),
    }
}

/// `?token=` of a board page's address.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    token: Option<String>,
}

/// `GET /boards/<slug>`: the live dashboard page. The page itself holds no
/// figures; it fetches them with the token it was opened with.
#[utoipa::path(
    get,
    path = "/boards/{slug}",
    tag = "boards",
    summary = "The live dashboard page (board, admin)",
    params(("slug" = String, Path, description = "the partnership slug"), crate::http::openapi::TokenParams),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "`invalid_request`: a malformed query or path parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        crate::http::openapi::Unauthorized,
        (status = 403, description = "`forbidden`: a board of that partnership or an admin", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such board", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn page(
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if rotation_events::check_slug(&slug).is_err() {
        return Err(AppError::not_found(format!("no board {slug}")));
    }
    let path = format!("/boards/{slug}");
    let (caller, cookie) = page_caller(&headers, &state, query.token.as_deref(), &path)?;
    require_partnership(&caller, &[Role::Board, Role::Admin], &slug, "see the board")?;
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "private, no-store"),
            // The address may hold the token: never send it on.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        PAGE,
    )
        .into_response();
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /assets/<name>`: the page's script, style sheet and chart library.
/// They hold no data, so anyone may fetch them; they are revalidated with
/// an `ETag` after five minutes, so a new release is picked up soon.
#[utoipa::path(
    get,
    path = "/assets/{name}",
    tag = "boards",
    security(()),
    summary = "The board page's code and styles (anyone)",
    params(("name" = String, Path, description = "board.js, board.css or chart.js")),
    responses(
        (status = 200, description = "`board.js`, `chart.js` (JavaScript) or `board.css`", body = String),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 400, description = "`invalid_request`: a malformed query or path parameter", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such asset", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn asset(ApiPath(name): ApiPath<String>, headers: HeaderMap) -> Response {
    let Some((content_type, body, etag)) = lookup(&name) else {
        return AppError::not_found(format!("no asset {name}")).into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let cache = [
        (header::CACHE_CONTROL, "public, max-age=300"),
        (header::ETAG, etag),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// An asset's content type, bytes and entity tag.
fn lookup(name: &str) -> Option<(&'static str, &'static [u8], &'static str)> {
    static TAGS: OnceLock<[String; 3]> = OnceLock::new();
    let tags = TAGS.get_or_init(|| [etag(BOARD_JS), etag(BOARD_CSS), etag(CHART_JS)]);
    match name {
        "board.js" => Some(("text/javascript; charset=utf-8", BOARD_JS, &tags[0])),
        "board.css" => Some(("text/css; charset=utf-8", BOARD_CSS, &tags[1])),
        "chart.js" => Some(("text/javascript; charset=utf-8", CHART_JS, &tags[2])),
        _ => None,
    }
}

/// A strong entity tag from the content.
fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..20])
}
