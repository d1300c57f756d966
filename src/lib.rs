//! The rotation ledger service: an event-sourced ledger for job rotation
//! schemes.
//!
//! Map of the crate:
//! - [`ledger`]: the append path, the one way into the log (group commit,
//!   idempotency, rejections kept), and the reads bounded by what is durable.
//! - [`rules`]: the domain rules and the per-stream state they need.
//! - [`store`]: the sled log; the only module that knows sled's keys.
//! - [`chain`]: the hash chain and its verification.
//! - [`checkpoint`]: the Merkle tree over the log, its proofs, and signed
//!   checkpoints.
//! - [`auth`]: roles, scopes and token digests.
//! - [`personal`]: personal data sealed per person: the master key, the
//!   data keys, sealing and opening profiles, erasure by key destruction.
//! - [`export`]: the evaluation data package: dataset rows pseudonymised,
//!   written as CSV with a Frictionless descriptor and provenance.
//! - [`import`]: JSON Lines in, through the append path.
//! - [`projector`]: the board dashboards kept up to date with the log,
//!   served from memory and checkpointed in the store.
//! - [`http`]: the HTTP API and the board page; the only module that knows
//!   HTTP.
//! - [`live`]: `serve.json`, the address and local admin credential a
//!   running server leaves for the verbs that cannot open its store.
//! - [`metrics`]: the append path's counters and the Prometheus text.
//! - [`server`]: `serve`: the projector, HTTP and NATS with one shutdown path.
//! - [`demo`]: `demo`: a simulated history served, its tail appended slowly.
//! - [`simulate`]: a deterministic, plausible scheme history as partner services
//!   would submit it, for the demo, imports, tests and benchmarks.
//! - [`bench`]: the figures of `rotation-ledger bench`, each beside its raw baseline.

pub mod auth;
pub mod bench;
pub mod chain;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod export;
pub mod http;
pub mod import;
pub mod ledger;
pub mod live;
pub mod metrics;
pub mod nats;
pub mod personal;
pub mod projector;
pub mod record_key;
pub mod rules;
pub mod server;
pub mod simulate;
pub(crate) mod store;
