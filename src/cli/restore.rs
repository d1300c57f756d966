//! `restore --from-nats URL`: a damaged or lost store rebuilt from the
//! events the ledger published to `ROTATION_LEDGER`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use rotation_ledger::nats::{self, NatsOptions};

use super::{DataDir, open, progress_bar};

/// Refuses a target that already holds events; prints the restored head.
pub(super) async fn run(data: &DataDir, url: &str, prefix: &str) -> Result<ExitCode> {
    let ledger = open(data)?;
    let held = ledger.head().position;
    if held != 0 {
        bail!(
            "{} already holds a ledger of {held} events: restore only into an empty data directory",
            data.dir.display()
        );
    }
    let options = NatsOptions {
        nats_prefix: prefix.to_owned(),
        ..NatsOptions::for_url(url)
    };
    let bar = progress_bar(0, "{bar:40} {pos}/{len} messages ({per_sec}, {eta})");
    let head = nats::restore(&ledger, &options, |sequence, last| {
        bar.set_length(last);
        bar.set_position(sequence);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "restored {} events; head position {}, hash {}",
        head.position, head.position, head.hash
    );
    println!("rejections are not published to NATS: the restored ledger holds none");
    ledger.close();
    Ok(ExitCode::SUCCESS)
}
