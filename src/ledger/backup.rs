//! A consistent copy of a ledger, made while it runs: `rotation-ledger
//! backup`, and `POST /v1/backup` of a running server.
//!
//! sled's iterators are no snapshot, so the copy is made in two passes.
//! The first copies every key while commits go on. The second runs with
//! commits paused: the backup takes the ledger's commit gate alone
//! (every submission holds it shared until it is answered), after the
//! erasures' turn, so that no master key rotation is half done. Once the
//! submissions in flight are answered, nothing is committed until the
//! copy is flushed: the second pass copies the append-only keys written
//! since the first (events, id runs, rejections, tree nodes) and brings
//! the others level (stream states, the head, checkpoints, wrapped
//! keys), and the files are copied. Submissions that arrive meanwhile
//! wait, and are then committed as usual. Readers, the projector's checkpoints and the
//! checkpoint signer go on: each of their writes is one key, whole in
//! the copy either way, and none of them runs ahead of the paused head.
//!
//! The copy is a data directory of its own: a new sled store holding
//! every key of this one (events, id runs, stream states, the head,
//! rejections, checkpoints, the Merkle tree, the ledger's facts, the
//! wrapped data keys), the data directory's `keys/` (mode 0600, in a
//! directory of mode 0700) and its other plain files, and the key files
//! kept outside it, under their default names. sled's own files are
//! never copied as files: a store is copied only through its keys.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Ledger, StoreError};
use crate::config::Config;

/// How long a backup waits for the submissions in flight before it gives up.
const PAUSE_PATIENCE: Duration = Duration::from_secs(30);

/// The files of a data directory that a running server writes for its own
/// callers and that a copy must not claim: its address and credential.
const NOT_COPIED: &[&str] = &[crate::live::FILE_NAME];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not empty: a backup goes into a new or empty directory")]
    NotEmpty(PathBuf),
    #[error("cannot write the backup at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("the ledger did not pause its commits within {0:?}: a submission is still unanswered")]
    Busy(Duration),
    #[error("the backup's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The copy's data directory.
    pub out: PathBuf,
    /// The copy's head, read back from the copy: every event acknowledged
    /// before the backup began is at or below it.
    pub head_position: u64,
    pub head_hash: String,
    /// The store's keys written to the copy, both passes.
    pub store_keys: u64,
    /// The files copied beside the store, as named in the copy.
    pub files: Vec<PathBuf>,
    /// How long commits waited for the copy, in milliseconds.
    pub paused_ms: u64,
}

impl Ledger {
    /// Copies this ledger into `out`, which must be missing or empty.
    /// `outside` names key files kept outside the data directory's
    /// `keys/`, each with the name it takes in the copy
    /// ([`outside_key_files`]).
    pub async fn backup(
        &self,
        out: &Path,
        outside: Vec<(PathBuf, PathBuf)>,
    ) -> Result<BackupReport, BackupError> {
        prepare(out)?;
        let ledger = self.clone();
        let target = out.to_path_buf();
        let first = tokio::task::spawn_blocking(move || ledger.store().copy_to(&target)).await??;
        let _erasures = self.shared.erasures.lock().await;
        let _commits = tokio::time::timeout(PAUSE_PATIENCE, self.shared.commits.write())
            .await
            .map_err(|_| BackupError::Busy(PAUSE_PATIENCE))?;
        let paused = Instant::now();
        let ledger = self.clone();
        let out = out.to_path_buf();
        let mut report =
            tokio::task::spawn_blocking(move || ledger.copy_paused(first, &out, &outside))
                .await??;
        report.paused_ms = u64::try_from(paused.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    /// The copy's second pass and the files, with commits paused.
    fn copy_paused(
        &self,
        first: crate::store::StoreCopy,
        out: &Path,
        outside: &[(PathBuf, PathBuf)],
    ) -> Result<BackupReport, BackupError> {
        // Checkpoints are written without a flush of their own; the copy
        // takes what is written, and the original keeps it too.
        self.store().flush()?;
        let (store_keys, head) = self.store().finish_copy(first)?;
        let mut files = Vec::new();
        copy_files(&self.shared.dir, out, &mut files)?;
        for (from, name) in outside {
            if from.is_file() && !out.join(name).exists() {
                copy_key(from, &out.join(name))?;
                files.push(name.clone());
            }
        }
        sync_dir(out)?;
        Ok(BackupReport {
            out: out.to_path_buf(),
            head_position: head.position,
            head_hash: head.hash,
            store_keys,
            files,
            paused_ms: 0,
        })
    }
}

/// The key files `config` keeps outside the data directory `data`, each
/// with the default name it takes in a copy: the master key, the
/// record-key secret, the checkpoint key.
pub fn outside_key_files(config: &Config, data: &Path) -> Vec<(PathBuf, PathBuf)> {
    let keys = data.join("keys");
    let configured = [
        (
            config.keys.master_key_file.clone(),
            PathBuf::from("keys/master.key"),
        ),
        (
            Some(crate::record_key::path(
                data,
                config.disclosure.record_key_file.as_deref(),
            )),
            PathBuf::from("keys/disclosure.key"),
        ),
        (
            Some(config.keys.checkpoint_key_file(data)),
            PathBuf::from(crate::checkpoint::DEFAULT_KEY_FILE),
        ),
    ];
    configured
        .into_iter()
        .filter_map(|(path, name)| Some((path?, name)))
        .filter(|(path, _)| !path.starts_with(&keys))
        .collect()
}

/// Makes `out`, refusing one that holds anything.
fn prepare(out: &Path) -> Result<(), BackupError> {
    let io = |source| BackupError::Io {
        path: out.to_path_buf(),
        source,
    };
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(out.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(io)?;
        }
        Err(e) => return Err(io(e)),
    }
    Ok(())
}

/// Copies the data directory's `keys/` and its other plain files, but
/// sled's own files and [`NOT_COPIED`].
fn copy_files(data: &Path, out: &Path, files: &mut Vec<PathBuf>) -> Result<(), BackupError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    for entry in std::fs::read_dir(data).map_err(io(data))? {
        let entry = entry.map_err(io(data))?;
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        if kind.is_dir() && text == "keys" {
            for key in std::fs::read_dir(entry.path()).map_err(io(&entry.path()))? {
                let key = key.map_err(io(&entry.path()))?;
                if key.file_type().map_err(io(&key.path()))?.is_file() {
                    let named = Path::new("keys").join(key.file_name());
                    copy_key(&key.path(), &out.join(&named))?;
                    files.push(named);
                }
            }
        } else if kind.is_file() && !is_sleds(text) && !NOT_COPIED.contains(&text) {
            std::fs::copy(entry.path(), out.join(&name)).map_err(io(&entry.path()))?;
            files.push(PathBuf::from(name));
        }
    }
    Ok(())
}

/// sled's files in a data directory: the store is copied through its keys.
fn is_sleds(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Copies a key file to `to`, readable by its owner alone, in a directory
/// only its owner may enter, and makes it durable.
fn copy_key(from: &Path, to: &Path) -> Result<(), BackupError> {
    use std::io::Write;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    let bytes = zeroize::Zeroizing::new(std::fs::read(from).map_err(io(from))?);
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    set_mode(dir, 0o700).map_err(io(dir))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(to).map_err(io(to))?;
    file.write_all(&bytes).map_err(io(to))?;
    file.sync_all().map_err(io(to))?;
    sync_dir(dir)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Makes a directory's entries durable.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| BackupError::Io {
            path: dir.to_path_buf(),
            source,
        })
}
