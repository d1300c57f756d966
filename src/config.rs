//! The TOML configuration (contract section 7): tokens, disclosure control
//! and per-partnership scheme-rule limits.

use std::collections::BTreeMap;
use std::path::Path;

use rotation_projections::dashboard::SchemeLimits;
use rotation_projections::disclosure::DisclosureConfig;
use serde::Deserialize;

use crate::auth::{Caller, Role, Scope};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// One configured token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
    pub role: Role,
    pub partnerships: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    #[serde(default)]
    pub disclosure: DisclosureConfig,
    /// Scheme-rule limits by partnership slug; others get the Danish defaults.
    #[serde(default)]
    pub partnerships: BTreeMap<String, SchemeLimits>,
    /// The record-key secret's bytes, read from its file at start
    /// ([`crate::record_key`]), never from the configuration itself.
    #[serde(skip)]
    pub record_key: crate::record_key::RecordKeyBytes,
    /// The digest of the local admin credential a running server writes
    /// to `serve.json` ([`crate::live`]), minted at start; only it may ask
    /// for a backup.
    #[serde(skip)]
    pub local_admin: Option<String>,
    /// `[keys]`: where the ledger's own keys live.
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// `[retention]`: when profiles are erased by themselves.
    #[serde(default)]
    pub retention: crate::personal::retention::RetentionConfig,
    /// What one caller or connection may cost the server.
    #[serde(default)]
    pub limits: Limits,
}

/// Where the ledger's own keys are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The checkpoint signing key; `keys/checkpoint.key` in the data
    /// directory when not given.
    pub checkpoint_key_file: Option<std::path::PathBuf>,
    /// The master key's file (contract section 9); default
    /// `keys/master.key` in the data directory.
    pub master_key_file: Option<std::path::PathBuf>,
}

/// How checkpoints are signed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The checkpoints' origin line; `rotation-ledger/<ledger id>` when
    /// not given.
    pub origin: Option<String>,
}

impl KeysConfig {
    /// The checkpoint key file of a ledger whose data is in `data`.
    pub fn checkpoint_key_file(&self, data: &Path) -> std::path::PathBuf {
        self.checkpoint_key_file
            .clone()
            .unwrap_or_else(|| data.join(crate::checkpoint::DEFAULT_KEY_FILE))
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks the text of a configuration; `path` names it in
    /// errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        for token in &config.tokens {
            let ok = token.sha256.len() == 64
                && token
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !ok {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "token digest `{}` is not a lower-case hex SHA-256",
                        token.sha256
                    ),
                });
            }
        }
        config
            .check_slugs()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        Ok(config)
    }

    /// Every partnership slug the configuration names fits the contract's
    /// `[a-z0-9-]{1,40}`: one that does not could never match an event,
    /// so a token or a limit would silently do nothing.
    fn check_slugs(&self) -> Result<(), String> {
        for (i, token) in self.tokens.iter().enumerate() {
            for slug in token.partnerships.iter().filter(|s| *s != "*") {
                rotation_events::check_slug(slug).map_err(|m| {
                    format!("[[tokens]] entry {}: partnership `{slug}`: {m}", i + 1)
                })?;
            }
        }
        for slug in self.partnerships.keys() {
            rotation_events::check_slug(slug)
                .map_err(|m| format!("[partnerships.\"{slug}\"]: {m}"))?;
        }
        Ok(())
    }

    /// The scheme-rule limits of a partnership.
    pub fn limits(&self, partnership: &str) -> SchemeLimits {
        self.partnerships
            .get(partnership)
            .cloned()
            .unwrap_or_default()
    }

    /// The caller a bearer token stands for, if any.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let digest = crate::auth::token_digest(token);
        self.tokens
            .iter()
            .find(|t| t.sha256 == digest)
            .map(|t| Caller {
                role: t.role,
                scope: Scope::from_list(&t.partnerships),
            })
    }
}

/// `[limits]`: bounds on what callers and connections may cost, so that a
/// careless or hostile client cannot fill the disk or hold the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes of rejected submissions kept per token per hour. Past it the
    /// token's posts get 429 until the hour is over. A publisher whose
    /// events are refused now and then stays far below the default (64
    /// MiB, sixteen of the largest bodies); one that keeps sending garbage
    /// cannot grow the rejection log by more than this an hour.
    pub rejected_bytes_per_hour: u64,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers.
    pub header_timeout_secs: u64,
    /// Seconds a shutdown waits for requests in flight before it closes
    /// their connections.
    pub drain_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rejected_bytes_per_hour: 64 * 1024 * 1024,
            max_connections: 1_024,
            header_timeout_secs: 10,
            drain_secs: 10,
        }
    }
}
