//! The contract's error codes (section 3): every refusal carries exactly
//! one. Defined here, beside the events they refuse, so that partner
//! services that depend on this crate match on the same codes the ledger
//! answers with.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why the ledger refused a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not a CloudEvent, an unknown type, a missing or mistyped
    /// field, a subject of the wrong kind, a time too far ahead.
    InvalidEvent,
    /// An id already committed with other content.
    DuplicateIdConflict,
    /// `expectedversion` differs from the stream's version.
    VersionConflict,
    /// An event for a stream that does not exist yet, or a first event of
    /// the wrong type.
    UnknownStream,
    /// A reference or lifecycle rule is broken.
    RuleViolation,
    /// The caller may not publish for that partnership.
    Forbidden,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 6] = [
        Self::InvalidEvent,
        Self::DuplicateIdConflict,
        Self::VersionConflict,
        Self::UnknownStream,
        Self::RuleViolation,
        Self::Forbidden,
    ];

    /// The code as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidEvent => "invalid_event",
            Self::DuplicateIdConflict => "duplicate_id_conflict",
            Self::VersionConflict => "version_conflict",
            Self::UnknownStream => "unknown_stream",
            Self::RuleViolation => "rule_violation",
            Self::Forbidden => "forbidden",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_serialise_as_the_contract_spells_them() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("serialises");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).expect("reads back");
            assert_eq!(back, code);
        }
    }
}
