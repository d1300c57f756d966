//! The checkpoint signing key's file: generated on first start, kept
//! private, read on every later one.
//!
//! The file holds the note format's signer key string (see
//! [`NoteSigner::to_key_string`]), so the key's name travels with it and
//! Go's `note` tools can read it. It is written once, atomically: a
//! private temporary file in the same directory, flushed, then linked
//! into place only if no file is there yet, so two processes starting at
//! once end up with the same key.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::note::{NoteError, NoteSigner};

/// Where the key lives in the data directory unless configured.
pub const DEFAULT_KEY_FILE: &str = "keys/checkpoint.key";

/// Why the signing key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file or its directory could not be read or written.
    #[error("checkpoint key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file holds something other than a signer key string.
    #[error("checkpoint key file {path}: {source}")]
    Malformed {
        path: PathBuf,
        #[source]
        source: NoteError,
    },
    /// Others may read the file, so the key may no longer be secret.
    #[error("checkpoint key file {path} may be read by others (mode {mode:o}); it must be 0600")]
    Exposed { path: PathBuf, mode: u32 },
}

/// Reads the signing key at `path`, or, when there is no file, generates
/// one named `name` and writes it there (mode 0600, in a directory of mode
/// 0700 if it has to be made).
pub fn load_or_generate(path: &Path, name: &str) -> Result<NoteSigner, KeyFileError> {
    match load(path) {
        Err(KeyFileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        loaded => return loaded,
    }
    let signer = NoteSigner::generate(name).map_err(|source| KeyFileError::Malformed {
        path: path.to_owned(),
        source,
    })?;
    match write_new(path, &signer) {
        Ok(()) => Ok(signer),
        // Another process wrote its key first: that one is the key.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => load(path),
        Err(source) => Err(KeyFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads the signing key at `path`, refusing a file others may read.
pub fn load(path: &Path) -> Result<NoteSigner, KeyFileError> {
    let io_error = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mode = fs::metadata(path).map_err(io_error)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(io_error)?;
    NoteSigner::from_key_string(&text).map_err(|source| KeyFileError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// Writes a new key file, failing with `AlreadyExists` if there is one.
fn write_new(path: &Path, signer: &NoteSigner) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // `tempfile` creates its files with mode 0600.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    writeln!(file, "{}", signer.to_key_string())?;
    file.as_file().sync_all()?;
    file.persist_noclobber(path).map_err(|error| error.error)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_key_is_generated_private_on_first_start_and_read_after() {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().join(DEFAULT_KEY_FILE);
        let first = load_or_generate(&path, "rotation-ledger/one").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let again = load_or_generate(&path, "another-name").unwrap();
        assert_eq!(again.verifier(), first.verifier());
        assert_eq!(again.name(), "rotation-ledger/one");
        let files = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(files, 1, "no temporary file is left behind");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().join("checkpoint.key");
        load_or_generate(&path, "ledger").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load(&path),
            Err(KeyFileError::Exposed { mode: 0o644, .. })
        ));
    }

    #[test]
    fn a_malformed_key_file_is_refused_not_replaced() {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().join("checkpoint.key");
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_generate(&path, "ledger"),
            Err(KeyFileError::Malformed { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");
    }
}
