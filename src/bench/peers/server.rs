//! A throwaway PostgreSQL server for `bench --peers`: Debian's `initdb`
//! and `pg_ctl` on a temporary directory and a free loopback port, with
//! `fsync` and `synchronous_commit` on (acknowledged means durable, as it
//! does for the ledger), stopped and removed when dropped, so also when a
//! figure fails. `initdb` refuses to run as root, so as root the server
//! runs as `nobody`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::{BenchError, Result};

/// Where Debian installs each PostgreSQL version's programs.
const DEBIAN_BINARIES: &str = "/usr/lib/postgresql";

/// The unprivileged user the server runs as when the bench runs as root.
const UNPRIVILEGED: &str = "nobody";

/// A running throwaway server; dropping it stops it and removes its files.
#[derive(Debug)]
pub(super) struct ThrowawayServer {
    binaries: PathBuf,
    /// Holds the cluster, the socket and the log; removed on drop.
    dir: Option<tempfile::TempDir>,
    port: u16,
    /// Whether the server's programs run as [`UNPRIVILEGED`].
    as_nobody: bool,
}

fn failed(message: impl Into<String>) -> BenchError {
    BenchError::PostgresServer(message.into())
}

impl ThrowawayServer {
    /// Initialises a cluster in a fresh temporary directory and starts it
    /// on a free loopback port.
    pub(super) fn start() -> Result<Self> {
        let binaries = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("rotation-bench-pg")
            .tempdir()
            .map_err(BenchError::TempDir)?;
        let as_nobody = running_as_root();
        if as_nobody {
            run(Command::new("chown").arg(UNPRIVILEGED).arg(dir.path()))?;
        }
        let port = free_port()?;
        let server = Self {
            binaries,
            dir: Some(dir),
            port,
            as_nobody,
        };
        let root = server.root().to_path_buf();
        let data = root.join("data");
        run(server
            .command("initdb")
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
            ])
            .args(["--locale", "C"]))?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=200",
            root.display()
        );
        let started = run(server
            .command("pg_ctl")
            .arg("--pgdata")
            .arg(&data)
            .arg("--log")
            .arg(root.join("server.log"))
            .arg("--options")
            .arg(options)
            .args(["--wait", "start"]));
        if let Err(error) = started {
            let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
            return Err(failed(format!("{error}; its log:\n{log}")));
        }
        Ok(server)
    }

    /// The connection string of the server's `postgres` database.
    pub(super) fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    fn root(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// A command running one of the server's programs, as [`UNPRIVILEGED`]
    /// when the bench runs as root.
    fn command(&self, program: &str) -> Command {
        let program = self.binaries.join(program);
        if self.as_nobody {
            let mut command = Command::new("runuser");
            command.args(["-u", UNPRIVILEGED, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for ThrowawayServer {
    fn drop(&mut self) {
        let data = self.root().join("data");
        if data.join("postmaster.pid").exists() {
            let stopped = run(self.command("pg_ctl").arg("--pgdata").arg(&data).args([
                "--mode",
                "immediate",
                "--wait",
                "stop",
            ]));
            if let Err(error) = stopped {
                tracing::warn!(%error, "cannot stop the throwaway PostgreSQL server");
            }
        }
        // Removing the directory (as the bench's own user) ends it.
        drop(self.dir.take());
    }
}

/// The newest PostgreSQL version's programs under [`DEBIAN_BINARIES`].
fn binaries() -> Result<PathBuf> {
    let versions = std::fs::read_dir(DEBIAN_BINARIES).ok();
    let newest = versions
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        failed(format!(
            "no PostgreSQL programs under {DEBIAN_BINARIES}/<version>/bin: install Debian's PostgreSQL (`apt-get install -y postgresql`), or give an existing server with `--postgres URL`"
        ))
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A loopback port nothing listens on now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Runs a command to its end; an error names it and carries its output.
fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .map_err(|e| failed(format!("cannot run {command:?}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}
