//! The signing task: a new checkpoint after new events, at most once a
//! second, off the append path; and the handle that serves the latest.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{KeyFileError, NoteSigner, SignError, keys};
use crate::ledger::{Ledger, StoreError};

/// The least time between two checkpoints.
pub const SIGNING_INTERVAL: Duration = Duration::from_secs(1);

/// Why checkpoints could not be set up or signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Sign(#[from] SignError<StoreError>),
    #[error("the signing task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The default origin: `rotation-ledger/<the ledger's id>`.
pub fn default_origin(ledger: &Ledger) -> Result<String, StoreError> {
    Ok(format!("rotation-ledger/{}", ledger.ledger_id()?))
}

/// The signing key at `key_file` (generated there, named after `origin`,
/// if there is none) and the origin: `origin`, or the default one.
pub fn signer(
    ledger: &Ledger,
    key_file: &Path,
    origin: Option<&str>,
) -> Result<(NoteSigner, String), CheckpointError> {
    let origin = match origin {
        Some(origin) => origin.to_owned(),
        None => default_origin(ledger)?,
    };
    let signer = keys::load_or_generate(key_file, &origin)?;
    Ok((signer, origin))
}

/// Signs the checkpoint of the tree of `size` events, blocking.
pub fn sign_now(
    ledger: &Ledger,
    signer: &NoteSigner,
    origin: &str,
    size: u64,
) -> Result<String, CheckpointError> {
    Ok(ledger.sign_checkpoint(signer, origin, size)?)
}

/// A signed checkpoint note and its tree size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub size: u64,
    pub note: Arc<str>,
}

/// The latest signed checkpoint, as the task keeps it; clones share it.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    latest: watch::Receiver<Option<Signed>>,
    /// The verifier key in the note format.
    verifier_key: Arc<str>,
}

impl Checkpoints {
    /// Signs the checkpoint of the durable head, then starts the task that
    /// signs a new one after new events, at most once a second, until
    /// `shutdown`.
    pub async fn start(
        ledger: Ledger,
        signer: NoteSigner,
        origin: String,
        shutdown: CancellationToken,
    ) -> Result<(Self, JoinHandle<()>), CheckpointError> {
        let signer = Arc::new(signer);
        let origin: Arc<str> = origin.into();
        let mut durable = ledger.subscribe();
        let mut size = durable.borrow_and_update().head.position;
        let note = sign_off_path(&ledger, &signer, &origin, size).await?;
        let (publish, latest) = watch::channel(Some(Signed { size, note }));
        let verifier_key = signer.verifier().to_string().into();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(SIGNING_INTERVAL) => {}
                }
                while durable.borrow_and_update().head.position == size {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        changed = durable.changed() => if changed.is_err() { return },
                    }
                }
                let head = durable.borrow().head.position;
                match sign_off_path(&ledger, &signer, &origin, head).await {
                    Ok(note) => {
                        size = head;
                        publish.send_replace(Some(Signed { size, note }));
                    }
                    // A tree that does not extend the last checkpoint is
                    // never signed; the operator must look at the store.
                    Err(error) => {
                        tracing::error!(%error, "cannot sign a checkpoint; signing stops");
                        return;
                    }
                }
            }
        });
        Ok((
            Self {
                latest,
                verifier_key,
            },
            task,
        ))
    }

    /// The latest signed checkpoint.
    pub fn latest(&self) -> Option<Signed> {
        self.latest.borrow().clone()
    }

    /// The verifier key, in the note format.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// Watches the latest checkpoint: for publishers to witnesses.
    pub fn subscribe(&self) -> watch::Receiver<Option<Signed>> {
        self.latest.clone()
    }
}

async fn sign_off_path(
    ledger: &Ledger,
    signer: &Arc<NoteSigner>,
    origin: &Arc<str>,
    size: u64,
) -> Result<Arc<str>, CheckpointError> {
    let (ledger, signer, origin) = (ledger.clone(), Arc::clone(signer), Arc::clone(origin));
    let note =
        tokio::task::spawn_blocking(move || sign_now(&ledger, &signer, &origin, size)).await??;
    Ok(note.into())
}

/// What `export` signs its head's checkpoint with, for its provenance.
pub fn provenance_signer(
    ledger: Ledger,
    signer: NoteSigner,
    origin: String,
) -> crate::export::CheckpointSigner {
    let verifier_key = signer.verifier().to_string();
    crate::export::CheckpointSigner(Arc::new(move |size| {
        let note = sign_now(&ledger, &signer, &origin, size).map_err(|e| e.to_string())?;
        Ok(crate::export::ProvenanceCheckpoint {
            note,
            verifier_key: verifier_key.clone(),
        })
    }))
}
