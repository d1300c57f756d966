//! Who may do what: roles, partnership scopes and bearer tokens (contract
//! sections 5 and 7). Tokens are known only by their SHA-256; the clear
//! token is never stored.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Publisher,
    Board,
    Evaluator,
    Admin,
}

/// The partnerships a caller may act for. The set is shared: every
/// submission carries its caller, and cloning a scope costs a count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Only(Arc<BTreeSet<String>>),
}

impl Scope {
    /// `["*"]` means every partnership.
    pub fn from_list(list: &[String]) -> Self {
        if list.iter().any(|p| p == "*") {
            Self::All
        } else {
            Self::Only(Arc::new(list.iter().cloned().collect()))
        }
    }

    pub fn allows(&self, partnership: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(partnership),
        }
    }
}

/// Whoever submits or reads: a token's holder, or the ledger's own
/// operator at the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    pub scope: Scope,
}

impl Caller {
    /// The operator at the command line (import, demo, bench).
    pub fn operator() -> Self {
        Self {
            role: Role::Admin,
            scope: Scope::All,
        }
    }

    /// A publisher for one partnership, as NATS subjects `rotation.in.<p>` imply.
    pub fn publisher_for(partnership: &str) -> Self {
        Self {
            role: Role::Publisher,
            scope: Scope::Only(Arc::new(BTreeSet::from([partnership.to_owned()]))),
        }
    }

    /// The one partnership this caller acts for, if its scope names exactly
    /// one.
    pub fn sole_partnership(&self) -> Option<&str> {
        match &self.scope {
            Scope::Only(set) if set.len() == 1 => set.first().map(String::as_str),
            _ => None,
        }
    }

    /// Whether this caller may publish events for `partnership`.
    pub fn may_publish(&self, partnership: &str) -> bool {
        matches!(self.role, Role::Publisher | Role::Admin) && self.scope.allows(partnership)
    }
}

/// Lower-case hex SHA-256 of a token, as the configuration stores it.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
