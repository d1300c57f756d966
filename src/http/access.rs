//! Who is asking, over HTTP: the caller behind a request, and whether its
//! role and partnerships allow what it asks.
//!
//! Every API request names its token in `Authorization: Bearer <token>`;
//! nothing else authenticates an API call, so no cookie a browser holds
//! can act on a caller's behalf.
//!
//! The board page is the one exception, because a browser cannot add a
//! header to a page's own load: it is opened as `/boards/<slug>?token=...`.
//! Its script keeps the token for the tab and sends it as a bearer token;
//! the page's answer also sets the token as an `HttpOnly`,
//! `SameSite=Strict` cookie whose path is that page alone, so that
//! reloading the page (whose script has removed the token from the
//! address) still loads it. See [`page_caller`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::AppState;
use super::error::AppError;
use crate::auth::{Caller, Role};

/// The cookie the board page sets.
pub const TOKEN_COOKIE: &str = "rotation_ledger_token";

/// The authenticated caller of a request; a missing or unknown token is
/// answered 401 before the handler runs.
#[derive(Debug, Clone)]
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = token(&parts.headers)?
            .ok_or_else(|| AppError::unauthorized("send `Authorization: Bearer <token>`"))?;
        caller(state, &token).map(Self)
    }
}

/// The caller a token stands for.
pub fn caller(state: &AppState, token: &str) -> Result<Caller, AppError> {
    state
        .config
        .caller(token)
        .ok_or_else(|| AppError::unauthorized("the token is not known to this ledger"))
}

/// The bearer token of a request, if it names one.
pub(super) fn token(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AppError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(Some(token.to_owned()))
}

/// The caller of a board page load: the `?token=` of its address, else a
/// bearer token, else the page's cookie. Returns the caller and, when the
/// token came in the address, the `Set-Cookie` value to answer with.
pub fn page_caller(
    headers: &HeaderMap,
    state: &AppState,
    query_token: Option<&str>,
    page_path: &str,
) -> Result<(Caller, Option<String>), AppError> {
    if let Some(token) = query_token.filter(|t| !t.is_empty()) {
        let caller = caller(state, token)?;
        // A token that is not a plain cookie value is still honoured; the
        // page then reloads only from its own storage.
        let cookie = is_cookie_value(token).then(|| {
            format!("{TOKEN_COOKIE}={token}; Path={page_path}; HttpOnly; SameSite=Strict")
        });
        return Ok((caller, cookie));
    }
    if let Some(token) = token(headers)? {
        return Ok((caller(state, &token)?, None));
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, token)| token.to_owned());
    match cookie {
        Some(token) => Ok((caller(state, &token)?, None)),
        None => Err(AppError::unauthorized(
            "open the board with its link, which ends in ?token=...",
        )),
    }
}

/// Whether a token can stand in a cookie as it is.
fn is_cookie_value(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b))
}

/// Refuses callers whose role is not one of `roles`.
pub fn require_role(caller: &Caller, roles: &[Role], what: &str) -> Result<(), AppError> {
    if roles.contains(&caller.role) {
        Ok(())
    } else {
        Err(AppError::forbidden(format!(
            "a {} token may not {what}",
            role_name(caller.role)
        )))
    }
}

/// Refuses callers whose role is not one of `roles` or whose partnerships
/// do not include `partnership`.
pub fn require_partnership(
    caller: &Caller,
    roles: &[Role],
    partnership: &str,
    what: &str,
) -> Result<(), AppError> {
    require_role(caller, roles, what)?;
    if caller.scope.allows(partnership) {
        Ok(())
    } else {
        Err(AppError::forbidden(format!(
            "the token may not {what} for partnership {partnership}"
        )))
    }
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Publisher => "publisher",
        Role::Board => "board",
        Role::Evaluator => "evaluator",
        Role::Admin => "admin",
    }
}
