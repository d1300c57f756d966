//! NATS: durable ingest from `rotation.in.<partnership>`, request-reply on
//! `rotation.append`, receipts, and gap-free publication of committed events
//! and rejections (contract section 4). The only module that knows NATS.

use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;

/// How to reach NATS; flattened into `serve`'s options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NatsArgs {
    /// The NATS server, e.g. nats://127.0.0.1:4222; without it the ledger runs without NATS.
    #[arg(long = "nats", value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS is not built yet")]
    NotBuilt,
}

/// Runs the NATS side of the ledger until `shutdown` is cancelled.
pub async fn run(
    ledger: Ledger,
    args: NatsArgs,
    shutdown: CancellationToken,
) -> Result<(), NatsError> {
    let _ = (ledger, args, shutdown);
    Err(NatsError::NotBuilt)
}
