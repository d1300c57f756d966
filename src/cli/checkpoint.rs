//! The checkpoint verbs (contract section 10): `checkpoint-key`, `prove`,
//! and `verify --checkpoint`, which holds the log to a signed checkpoint.
//! The first two also ask a running server that holds the store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use rotation_ledger::ledger::Ledger;

use super::live::{self, Where};
use super::{DataDir, load_config, open_existing};

/// Where a verb finds the checkpoint key and origin.
#[derive(Args, Debug, Clone)]
pub(crate) struct CheckpointArgs {
    #[command(flatten)]
    pub(crate) data: DataDir,
    /// The TOML configuration, for `[keys] checkpoint_key_file` and `[checkpoint] origin`.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// `checkpoint-key`: the verifier key in the note format.
/// A running server answers with its own key, unless `--config` names
/// another.
pub(super) async fn key(args: &CheckpointArgs) -> Result<ExitCode> {
    if args.config.is_none()
        && let Where::Server(server) = live::locate(&args.data)?
    {
        print!("{}", server.checkpoint_key().await?);
        return Ok(ExitCode::SUCCESS);
    }
    let ledger = open_existing(&args.data)?;
    let (signer, _) = signer(&ledger, &args.data, args.config.as_deref())?;
    println!("{}", signer.verifier());
    Ok(ExitCode::SUCCESS)
}

/// `prove`: an inclusion proof of the event at `position`, as JSON.
/// A running server answers with a proof against its latest checkpoint
/// when no size is given.
pub(super) async fn prove(
    args: &CheckpointArgs,
    position: u64,
    size: Option<u64>,
) -> Result<ExitCode> {
    if let Where::Server(server) = live::locate(&args.data)? {
        println!("{}", server.inclusion_proof(position, size).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let ledger = open_existing(&args.data)?;
    let size = match size {
        Some(size) => size,
        None => match ledger.last_signed()? {
            Some(last) => last.size,
            None => ledger.head().position,
        },
    };
    let proof = ledger.inclusion_proof(position, size)?;
    let hex_all = |hashes: &[[u8; 32]]| hashes.iter().map(hex::encode).collect::<Vec<_>>();
    println!(
        "{}",
        serde_json::json!({
            "position": proof.position,
            "size": proof.size,
            "leaf_hash": hex::encode(proof.leaf_hash),
            "hashes": hex_all(&proof.hashes),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// The checkpoint signing key (generated on first use) and origin, from
/// `config` or else the command line's configuration.
pub(super) fn signer(
    ledger: &Ledger,
    data: &DataDir,
    config: Option<&Path>,
) -> Result<(rotation_ledger::checkpoint::NoteSigner, String)> {
    let loaded;
    let config = match config {
        Some(path) => {
            loaded = load_config(Some(path))?.unwrap_or_default();
            &loaded
        }
        None => super::configured(),
    };
    let key_file = config.keys.checkpoint_key_file(&data.dir);
    Ok(rotation_ledger::checkpoint::service::signer(
        ledger,
        &key_file,
        config.checkpoint.origin.as_deref(),
    )?)
}

/// `verify --checkpoint`: exits 1 naming each thing that does not hold.
pub(super) fn verify(data: &DataDir, file: &Path, key: Option<&str>) -> Result<ExitCode> {
    use rotation_ledger::checkpoint::NoteVerifier;
    let ledger = open_existing(data)?;
    let note = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the checkpoint {}", file.display()))?;
    let verifier: NoteVerifier = match key {
        Some(key) if Path::new(key).is_file() => std::fs::read_to_string(key)
            .with_context(|| format!("cannot read the key file {key}"))?
            .parse()?,
        Some(key) => key.parse()?,
        None => signer(&ledger, data, None)?.0.verifier(),
    };
    let findings = rotation_ledger::checkpoint::audit::hold_to(&ledger, &note, &verifier)?;
    for finding in &findings {
        let verdict = if finding.holds { "ok" } else { "FAILS" };
        println!("{}: {verdict}: {}", finding.what, finding.detail);
    }
    let failed: Vec<_> = findings
        .iter()
        .filter(|f| !f.holds)
        .map(|f| f.what)
        .collect();
    if failed.is_empty() {
        println!("ok: the log is the one the checkpoint describes, or extends it");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("does not hold: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
