//! Who may hand the ledger a body at all, decided before a byte of it is
//! read: callers that may not publish are refused outright, and publishers
//! whose rejections have used up their hourly quota are told to wait.
//!
//! A rejected submission is kept durably with its whole body (contract
//! section 3), so every body the ledger reads can grow the store. A board
//! token travels in page links, and an evaluator's is handed to analysts:
//! if their posts were read and rejected like a publisher's, anyone holding
//! one could fill the disk. And a real publisher that keeps sending garbage
//! is bounded by a quota of rejected bytes per token and hour.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::AppState;
use super::access::{self, role_name};
use super::error::AppError;
use crate::auth::{Caller, Role};

/// How long a quota window lasts.
const WINDOW: Duration = Duration::from_secs(3_600);

type Labels = Vec<(&'static str, &'static str)>;

/// The gate's state: the rejected bytes of each token in its current hour,
/// and what the gate has refused.
#[derive(Debug)]
pub struct Admission {
    /// Rejected bytes allowed per token per window.
    quota: u64,
    /// By token digest: a `std` mutex, held only to add or compare numbers.
    windows: Mutex<HashMap<String, Window>>,
    /// Posts refused because the token's role may not publish, by role.
    refused: Family<Labels, Counter>,
    /// Posts refused because the token's quota was used up.
    over_quota: Counter,
    /// Bytes of rejected submissions counted against quotas.
    rejected_bytes: Counter,
}

/// One token's quota window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    rejected_bytes: u64,
}

impl Admission {
    pub fn new(quota: u64) -> Self {
        Self {
            quota,
            windows: Mutex::new(HashMap::new()),
            refused: Family::default(),
            over_quota: Counter::default(),
            rejected_bytes: Counter::default(),
        }
    }

    /// When the token may post again, if its quota is used up.
    fn wait(&self, token: &str, now: Instant) -> Option<Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let window = windows.get(token).copied()?;
        let ends = window.started + WINDOW;
        if now >= ends {
            windows.remove(token);
            return None;
        }
        (window.rejected_bytes >= self.quota).then(|| ends - now)
    }

    /// Counts a rejected body of `bytes` against the token's quota.
    pub fn rejected(&self, token: &str, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.rejected_bytes.inc_by(bytes);
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let window = windows.entry(token.to_owned()).or_insert(Window {
            started: now,
            rejected_bytes: 0,
        });
        if now >= window.started + WINDOW {
            *window = Window {
                started: now,
                rejected_bytes: 0,
            };
        }
        window.rejected_bytes = window.rejected_bytes.saturating_add(bytes);
    }

    /// Adds the gate's counters to a scrape.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "publish_refused",
            "Posts of events refused before their body was read, because the token's role may not publish",
            self.refused.clone(),
        );
        registry.register(
            "publish_over_quota",
            "Posts of events refused with 429 because the token's rejected bytes this hour reached the quota",
            self.over_quota.clone(),
        );
        registry.register(
            "rejected_bytes",
            "Bytes of rejected submissions counted against the tokens' hourly quotas",
            self.rejected_bytes.clone(),
        );
    }
}

/// A caller allowed to post a body now, and the key of its quota.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub caller: Caller,
    /// The token's digest, which keys its quota.
    pub token: String,
}

impl FromRequestParts<AppState> for Publisher {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = access::token(&parts.headers)?
            .ok_or_else(|| AppError::unauthorized("send `Authorization: Bearer <token>`"))?;
        let caller = access::caller(state, &token)?;
        let admission = &state.admission;
        if !matches!(caller.role, Role::Publisher | Role::Admin) {
            let role = role_name(caller.role);
            tracing::warn!(
                role,
                "refused a post of events from a token that may not publish; its body was not read"
            );
            admission.refused.get_or_create(&vec![("role", role)]).inc();
            return Err(AppError::forbidden(format!(
                "a {role} token may not publish events"
            )));
        }
        let token = crate::auth::token_digest(&token);
        if let Some(wait) = admission.wait(&token, Instant::now()) {
            admission.over_quota.inc();
            let seconds = wait.as_secs().max(1);
            tracing::warn!(
                seconds,
                "refused a post of events: the token's rejected bytes reached the hourly quota"
            );
            return Err(AppError::too_many_requests(
                format!(
                    "this token's rejected submissions reached {} bytes this hour; fix what is rejected (GET /v1/rejections) and retry after {seconds} s",
                    admission.quota
                ),
                seconds,
            ));
        }
        Ok(Self { caller, token })
    }
}
