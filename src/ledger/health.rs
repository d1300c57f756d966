//! What the ledger knows of its own soundness: whether the whole chain
//! verified (checked in the background after start), and whether the store
//! writes. `GET /healthz`, `GET /metrics` and the append path read it.
//!
//! A broken chain stops every write: appending onto a chain that no longer
//! verifies would bury the damage under events that seem sound.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Ledger, LedgerError};

/// Where the background verification of the chain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    /// Not started, or still running.
    Verifying,
    /// The chain verified up to this position.
    Verified { position: u64 },
    /// The chain breaks at `position`.
    Broken { position: u64, problem: String },
}

/// The ledger's health as `/healthz` and `/metrics` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub chain: ChainCheck,
    /// Why the store cannot write, while it cannot.
    pub storage_failure: Option<String>,
    /// Storage failures since start.
    pub storage_failures: u64,
}

impl HealthReport {
    /// Why the ledger is unhealthy, or `None` when it is healthy.
    pub fn problem(&self) -> Option<String> {
        if let ChainCheck::Broken { position, problem } = &self.chain {
            return Some(format!(
                "the chain is broken at position {position}: {problem}"
            ));
        }
        self.storage_failure
            .as_ref()
            .map(|reason| format!("the store cannot write: {reason}"))
    }
}

/// Shared by every handle of a ledger.
#[derive(Debug)]
pub(super) struct Health {
    /// A std mutex: held only to copy or replace the value.
    chain: Mutex<ChainCheck>,
    storage_failure: Mutex<Option<String>>,
    storage_failures: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            chain: Mutex::new(ChainCheck::Verifying),
            storage_failure: Mutex::new(None),
            storage_failures: AtomicU64::new(0),
        }
    }
}

impl Health {
    fn chain(&self) -> ChainCheck {
        self.chain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_chain(&self, check: ChainCheck) {
        *self
            .chain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = check;
    }

    /// Refuses writes onto a broken chain, and, at once, while the store
    /// cannot write.
    pub(super) fn check_writable(&self) -> Result<(), LedgerError> {
        if let ChainCheck::Broken { position, problem } = self.chain() {
            return Err(LedgerError::ChainBroken { position, problem });
        }
        let failing = self
            .storage_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if failing {
            return Err(LedgerError::WriterStopped);
        }
        Ok(())
    }

    /// The store failed: counted, and reported until it writes again.
    pub(super) fn storage_failed(&self, reason: String) {
        self.storage_failures.fetch_add(1, Ordering::Relaxed);
        *self
            .storage_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    }

    /// The store still fails: the reason is kept, not counted again.
    pub(super) fn storage_still_failing(&self, reason: String) {
        *self
            .storage_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    }

    /// The store writes again.
    pub(super) fn storage_recovered(&self) {
        *self
            .storage_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn report(&self) -> HealthReport {
        HealthReport {
            chain: self.chain(),
            storage_failure: self
                .storage_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            storage_failures: self.storage_failures.load(Ordering::Relaxed),
        }
    }
}

impl Ledger {
    /// The ledger's health now.
    pub fn health(&self) -> HealthReport {
        self.shared.health.report()
    }

    /// Verifies the whole chain on a thread of its own (at replay speed)
    /// and records the verdict: a broken chain stops every write, and is
    /// logged at error. Opening has already checked the tail against the
    /// head record; this finds damage further back.
    pub fn verify_in_background(&self) {
        let ledger = self.clone();
        let started = std::thread::Builder::new()
            .name("ledger-verify".into())
            .spawn(move || {
                let began = std::time::Instant::now();
                let check = match ledger.verify() {
                    Ok(verdict) if verdict.ok => ChainCheck::Verified {
                        position: verdict.head_position,
                    },
                    Ok(verdict) => ChainCheck::Broken {
                        position: verdict.first_bad_position.unwrap_or_default(),
                        problem: verdict.problem.unwrap_or_default(),
                    },
                    Err(error) => ChainCheck::Broken {
                        position: 0,
                        problem: format!("the chain could not be read: {error}"),
                    },
                };
                match &check {
                    ChainCheck::Broken { position, problem } => tracing::error!(
                        position,
                        %problem,
                        "the chain is broken: the ledger refuses writes until the store is restored"
                    ),
                    ChainCheck::Verified { position } => tracing::info!(
                        position,
                        elapsed = ?began.elapsed(),
                        "chain verified"
                    ),
                    ChainCheck::Verifying => {}
                }
                ledger.shared.health.set_chain(check);
            });
        if let Err(error) = started {
            tracing::error!(%error, "cannot start the chain's verification");
        }
    }
}
