//! The rotation ledger service: an event-sourced ledger for job rotation
//! schemes.
//!
//! Map of the crate:
//! - [`ledger`]: the append path, the one way into the log (group commit,
//!   idempotency, rejections kept), and the reads bounded by what is durable.
//! - [`rules`]: the domain rules and the per-stream state they need.
//! - [`store`]: the sled log; the only module that knows sled's keys.
//! - [`chain`]: the hash chain and its verification.
//! - [`auth`]: roles, scopes and token digests.
//! - [`export`]: the evaluation data package: dataset rows pseudonymised,
//!   written as CSV with a Frictionless descriptor and provenance.
//! - [`import`]: JSON Lines in, through the append path.
//! - [`simulate`]: a deterministic, plausible scheme history as partner services
//!   would submit it, for the demo, imports, tests and benchmarks.
//! - [`bench`]: the figures of `rotation-ledger bench`, each beside its raw baseline.

pub mod auth;
pub mod bench;
pub mod chain;
pub mod config;
pub mod export;
pub mod import;
pub mod ledger;
pub mod nats;
pub mod rules;
pub mod simulate;
pub mod store;
