//! A follower's writes sent on to the writer (contract section 11): the
//! body of a `POST /v1/events` goes to the writer as a `rotation.append`
//! request, and its reply (`{"results": [...]}`, with `"error"` when the
//! submission was rejected) is the answer. The HTTP side checks the
//! caller's scopes first, as the writer would have: `rotation.append`
//! trusts whoever may send there.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::ledger::Receipt;
use crate::rules::Violation;

/// How long a forwarded write waits for the writer's answer: its commit
/// and the stream's ack, with room for a failover in between.
pub(super) const PATIENCE: Duration = Duration::from_secs(10);

/// Why a forwarded write got no answer from the writer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no writer answers at the moment (a failover is under way)")]
    NoWriter,
    #[error("the writer did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the writer refused the write: {0}")]
    Unavailable(String),
    #[error("cannot reach the writer: {0}")]
    Nats(String),
}

/// The writer's answer to a forwarded submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    pub receipts: Vec<Receipt>,
    /// The violation that rejected the submission, if one did.
    pub rejection: Option<Violation>,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    results: Vec<Receipt>,
    #[serde(default)]
    error: Option<Value>,
}

/// Sends `body` to the writer and waits for its answer.
pub(super) async fn forward(
    client: &async_nats::Client,
    subject: String,
    body: Bytes,
) -> Result<Forwarded, ForwardError> {
    let request = async_nats::Request::new()
        .payload(body)
        .timeout(Some(PATIENCE));
    let message = client
        .send_request(subject, request)
        .await
        .map_err(|error| match error.kind() {
            async_nats::RequestErrorKind::NoResponders => ForwardError::NoWriter,
            async_nats::RequestErrorKind::TimedOut => ForwardError::TimedOut(PATIENCE),
            _ => ForwardError::Nats(error.to_string()),
        })?;
    let reply: Reply = serde_json::from_slice(&message.payload)
        .map_err(|e| ForwardError::Nats(format!("an unreadable answer: {e}")))?;
    let rejection = match reply.error {
        None => None,
        Some(error) => match serde_json::from_value::<Violation>(error.clone()) {
            Ok(violation) => Some(violation),
            // The writer could not decide (it is stopping, or lost its
            // lease): the caller retries.
            Err(_) => {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the writer cannot write at the moment")
                    .to_owned();
                return Err(ForwardError::Unavailable(message));
            }
        },
    };
    Ok(Forwarded {
        receipts: reply.results,
        rejection,
    })
}
