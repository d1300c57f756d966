//! The ledger's answers: a [`Receipt`] for every event (contract section
//! 4), an [`Outcome`] for every submission, and the [`RejectionRecord`]
//! kept durably for every refused one.

use serde::{Deserialize, Serialize};

use crate::rules::Violation;
use rotation_events::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    Accepted,
    Duplicate,
    Rejected,
}

/// The answer for one event (contract section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// The event's id; for a refused body, its `id` string as far as it
    /// reads, whether or not it is a UUID.
    pub id: Option<String>,
    pub status: ReceiptStatus,
    pub position: Option<u64>,
    pub streamversion: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Violation>,
    /// Where the receipt is published; not part of the receipt itself.
    #[serde(skip)]
    pub partnership: Option<String>,
}

/// The answer for one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub receipts: Vec<Receipt>,
    /// Why the submission was rejected as a whole, if it was.
    pub rejection: Option<Violation>,
}

impl Outcome {
    pub fn is_rejected(&self) -> bool {
        self.rejection.is_some()
    }
}

/// A rejected submission as the ledger keeps it, listable forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectionRecord {
    pub seq: u64,
    /// When the ledger received it (RFC 3339).
    pub received: String,
    pub origin: String,
    pub code: ErrorCode,
    pub message: String,
    /// The refused event's id, as the body gave it (contract section 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partnership: Option<String>,
    /// The submission as received, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The submission as received, base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}
