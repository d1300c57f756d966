//! The ledger's own secret for the boards' record keys (contract section
//! 6): `keys/disclosure.key` in the data directory, or the file
//! `[disclosure] record_key_file` names, made on first start with mode
//! 0600 and read on every later one. The projections get its bytes only.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// The secret's bytes; its `Debug` shows none of them.
#[derive(Clone, Default)]
pub struct RecordKeyBytes(pub Vec<u8>);

impl fmt::Debug for RecordKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordKeyBytes(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordKeyError {
    #[error("cannot read or make the record-key secret {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the record-key secret {path} holds {got} bytes; it needs at least 16")]
    TooShort { path: String, got: usize },
}

/// Where the secret lives: `configured` (relative to the data directory
/// when relative), else `keys/disclosure.key` in it.
pub fn path(data_dir: &Path, configured: Option<&str>) -> PathBuf {
    match configured {
        Some(file) => data_dir.join(file),
        None => data_dir.join("keys").join("disclosure.key"),
    }
}

/// Reads the secret, making a random 256-bit one first if there is none.
pub fn load_or_create(path: &Path) -> Result<RecordKeyBytes, RecordKeyError> {
    let io = |source| RecordKeyError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() < 16 => Err(RecordKeyError::TooShort {
            path: path.display().to_string(),
            got: bytes.len(),
        }),
        Ok(bytes) => Ok(RecordKeyBytes(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let mut secret = vec![0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(io)?;
            file.write_all(&secret).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(RecordKeyBytes(secret))
        }
        Err(error) => Err(io(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_made_once_with_mode_0600_and_kept() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = path(dir.path(), None);
        let first = load_or_create(&path).expect("made");
        assert_eq!(first.0.len(), 32);
        let again = load_or_create(&path).expect("read");
        assert_eq!(first.0, again.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{first:?}"), "RecordKeyBytes(..)");
    }
}
