//! The service's Prometheus metrics: what the append path counts as it
//! answers, and the text a scrape of `GET /metrics` returns.
//!
//! The append counters live in [`AppendMetrics`], which the ledger owns and
//! updates in [`crate::ledger::Ledger::submit`], so that HTTP, NATS,
//! `import` and the demo are counted alike. Everything that can be read off
//! the ledger or the projector when a scrape comes (the head, the projected
//! position, the lag between them) is read then rather than kept twice.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ledger::{Outcome, ReceiptStatus};

/// The content type of what [`render`] writes: Prometheus text 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, &'static str)>;

/// What the append path counts. The handles are shared counters: clones
/// count into the same metric.
#[derive(Debug, Clone)]
pub struct AppendMetrics {
    /// Events answered, by receipt status (`accepted`, `duplicate`,
    /// `rejected`).
    events: Family<Labels, Counter>,
    /// Rejected submissions by the contract's error code.
    rejections: Family<Labels, Counter>,
    /// Seconds from handing submissions to the writer to their answer,
    /// flush included: the latency a publisher sees.
    latency: Histogram,
}

impl Default for AppendMetrics {
    fn default() -> Self {
        Self {
            events: Family::default(),
            rejections: Family::default(),
            // From 0.25 ms to about 8 s, doubling: a group commit takes a
            // few milliseconds, a large import batch seconds.
            latency: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
        }
    }
}

impl AppendMetrics {
    /// Counts the answers to one call of the append path and how long it took.
    pub fn record(&self, outcomes: &[Outcome], latency: Duration) {
        self.latency.observe(latency.as_secs_f64());
        for outcome in outcomes {
            for receipt in &outcome.receipts {
                let status = match receipt.status {
                    ReceiptStatus::Accepted => "accepted",
                    ReceiptStatus::Duplicate => "duplicate",
                    ReceiptStatus::Rejected => "rejected",
                };
                self.events.get_or_create(&vec![("status", status)]).inc();
            }
            if let Some(violation) = &outcome.rejection {
                self.rejections
                    .get_or_create(&vec![("code", violation.code.as_str())])
                    .inc();
            }
        }
    }
}

/// What a scrape reads off the ledger and the projector at that moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Positions {
    /// The durable head: the number of events committed.
    pub head: u64,
    /// The last position the dashboards have applied.
    pub projected: u64,
}

/// The Prometheus text of every metric.
pub fn render(append: &AppendMetrics, positions: Positions) -> String {
    let mut registry = Registry::with_prefix("rotation_ledger");
    registry.register(
        "appended_events",
        "Events answered by the append path, by receipt status",
        append.events.clone(),
    );
    registry.register(
        "rejections",
        "Rejected submissions, by error code",
        append.rejections.clone(),
    );
    registry.register(
        "append_duration_seconds",
        "Time from submission to durable answer",
        append.latency.clone(),
    );
    let committed: Counter = Counter::default();
    committed.inc_by(positions.head);
    registry.register(
        "events_committed",
        "Events committed to the log (the durable head position)",
        committed,
    );
    let projected: Gauge = Gauge::default();
    projected.set(i64::try_from(positions.projected).unwrap_or(i64::MAX));
    registry.register(
        "projected_position",
        "The last log position the dashboards have applied",
        projected,
    );
    let lag: Gauge = Gauge::default();
    lag.set(i64::try_from(positions.head.saturating_sub(positions.projected)).unwrap_or(i64::MAX));
    registry.register(
        "projection_lag_events",
        "Committed events the dashboards have not applied yet (head minus projected position)",
        lag,
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// The Prometheus text of metrics kept outside the append path (the HTTP
/// gate's refusals), registered by `register` under the same prefix; it
/// follows [`render`]'s text in a scrape.
pub fn render_with(register: impl FnOnce(&mut Registry)) -> String {
    let mut registry = Registry::with_prefix("rotation_ledger");
    register(&mut registry);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// The Prometheus text of the ledger's health: whether the chain verified
/// (and where it breaks), and the store's failures.
pub fn render_health(health: &crate::ledger::HealthReport) -> String {
    use crate::ledger::ChainCheck;
    let mut registry = Registry::with_prefix("rotation_ledger");
    let chain_ok: Gauge = Gauge::default();
    chain_ok.set(i64::from(!matches!(
        health.chain,
        ChainCheck::Broken { .. }
    )));
    registry.register(
        "chain_ok",
        "0 when the chain is broken (writes are refused), 1 otherwise",
        chain_ok,
    );
    let verified: Gauge = Gauge::default();
    verified.set(i64::from(matches!(
        health.chain,
        ChainCheck::Verified { .. }
    )));
    registry.register(
        "chain_verified",
        "1 once the whole chain verified after start",
        verified,
    );
    let bad: Gauge = Gauge::default();
    if let ChainCheck::Broken { position, .. } = health.chain {
        bad.set(i64::try_from(position).unwrap_or(i64::MAX));
    }
    registry.register(
        "chain_first_bad_position",
        "The first position where the chain breaks; 0 when it does not",
        bad,
    );
    let storage_ok: Gauge = Gauge::default();
    storage_ok.set(i64::from(health.storage_failure.is_none()));
    registry.register(
        "storage_ok",
        "0 while the store cannot write (the writer retries), 1 otherwise",
        storage_ok,
    );
    let failures: Counter = Counter::default();
    failures.inc_by(health.storage_failures);
    registry.register(
        "storage_failures",
        "Failed flushes or applies of the store since start",
        failures,
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}
