//! The file a running server leaves in its data directory, `serve.json`,
//! so that the operator's other verbs can reach it while it holds the
//! store: the address it listens on and a local admin credential, as a
//! notebook server does.
//!
//! sled locks its store for one process, so `verify`, `dump`,
//! `rejections`, `stats` and `backup` cannot open a store that `serve`
//! holds; they find it held ([`crate::ledger::Ledger::held_elsewhere`]),
//! read this file, and ask the server over HTTP instead. The credential
//! is a fresh admin token that only the server that wrote the file
//! accepts; the file is readable by its owner alone, written atomically
//! once the server listens, and removed when the server stops cleanly.
//! A server that was killed leaves its file behind; its store is then
//! not held, so the verbs open the store themselves and never read the
//! stale file, and the next server replaces it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "serve.json";

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a running server's file: {source}")]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What a running server tells the verbs on its data directory.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeFile {
    /// Where the server listens, as a base URL: `http://127.0.0.1:8080`.
    pub url: String,
    /// The address to connect to.
    pub addr: SocketAddr,
    /// The local admin credential: a bearer token only this server takes.
    pub token: String,
    /// The server's process, for the operator who finds the file.
    pub pid: u32,
}

impl std::fmt::Debug for ServeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential stays out of logs and panics.
        f.debug_struct("ServeFile")
            .field("url", &self.url)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl ServeFile {
    /// A file for a server on `addr`, with a fresh credential.
    pub fn new(addr: SocketAddr) -> Self {
        let connect = local_address(addr);
        Self {
            url: format!("http://{connect}"),
            addr: connect,
            token: crate::server::fresh_token(),
            pid: std::process::id(),
        }
    }

    /// The path of the file in data directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Writes the file into `dir`, replacing a stale one in one rename,
    /// readable by its owner alone. It is removed when the returned guard
    /// drops.
    pub fn write(&self, dir: &Path) -> Result<Announced, LiveError> {
        let path = Self::path(dir);
        let write = |source| LiveError::Write {
            path: path.clone(),
            source,
        };
        // A temporary file is made with mode 0600, so the credential is
        // never readable by others, not even for a moment.
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(write)?;
        let json = serde_json::to_vec_pretty(self).expect("the file serialises");
        file.write_all(&json).map_err(write)?;
        file.as_file().sync_all().map_err(write)?;
        file.persist(&path).map_err(|e| write(e.error))?;
        if let Ok(directory) = std::fs::File::open(dir) {
            let _ = directory.sync_all();
        }
        Ok(Announced { path })
    }

    /// The file in `dir`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Self>, LiveError> {
        let path = Self::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LiveError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| LiveError::Malformed { path, source })
    }
}

/// The address a local caller connects to: a server listening on every
/// interface is reached on loopback.
fn local_address(addr: SocketAddr) -> SocketAddr {
    let mut connect = addr;
    if addr.ip().is_unspecified() {
        connect.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    connect
}

/// A written [`ServeFile`]; dropping it removes the file, as a clean
/// shutdown does.
#[derive(Debug)]
pub struct Announced {
    path: PathBuf,
}

impl Drop for Announced {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %self.path.display(), "cannot remove the server's file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ServeFile;

    #[test]
    fn the_file_is_its_owners_alone_and_goes_with_the_guard() {
        let dir = tempfile::tempdir().unwrap();
        let file = ServeFile::new("0.0.0.0:8080".parse().unwrap());
        assert_eq!(file.url, "http://127.0.0.1:8080");
        let guard = file.write(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ServeFile::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(ServeFile::read(dir.path()).unwrap(), Some(file));
        drop(guard);
        assert_eq!(ServeFile::read(dir.path()).unwrap(), None);
    }

    #[test]
    fn the_credential_stays_out_of_debug_output() {
        let file = ServeFile::new("127.0.0.1:1".parse().unwrap());
        assert!(!format!("{file:?}").contains(&file.token));
    }
}
