//! The head record: `head` in the data directory, outside sled, naming the
//! last durable event (position and hash) and the next rejection number.
//!
//! sled 0.34 recovers its log up to the first torn or damaged record and
//! says nothing of what it dropped: without a record of its own, a damaged
//! store would open short and the ledger would carry on from an earlier
//! head, silently losing what it had acknowledged. The flusher therefore
//! rewrites this file after every flush that moved the head, before it
//! answers anyone (write a temporary file, fsync it, rename it over
//! `head`, fsync the directory), and opening refuses a store that is behind
//! it or whose event at its position has another hash.
//!
//! A store ahead of the record is sound: a crash came between sled's flush
//! and the record's rewrite, and the record is brought forward on opening.
//! A store without a record was written before it existed, and gets one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Durable;
use crate::store::{Store, StoreError};

/// The file's name in the data directory.
pub const HEAD_FILE: &str = "head";

/// What the record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct HeadRecord {
    pub(super) position: u64,
    /// Lower-case hex of the event at `position`; 64 zeros for none.
    pub(super) hash: String,
    /// The next rejection sequence number: every one below it is durable.
    pub(super) next_rejection: u64,
}

impl From<&Durable> for HeadRecord {
    fn from(durable: &Durable) -> Self {
        Self {
            position: durable.head.position,
            hash: durable.head.hash.clone(),
            next_rejection: durable.next_rejection,
        }
    }
}

/// Where the record lives, and how it is rewritten.
#[derive(Debug, Clone)]
pub(super) struct HeadFile {
    dir: PathBuf,
}

impl HeadFile {
    pub(super) fn in_data_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(HEAD_FILE)
    }

    /// The record, or `None` for a store written before records existed.
    fn read(&self) -> Result<Option<HeadRecord>, StoreError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: path.display().to_string(),
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::HeadRecord(e)),
        }
    }

    /// Replaces the record, durably: one small file and two fsyncs per
    /// group commit.
    pub(super) fn write(&self, record: &HeadRecord) -> Result<(), StoreError> {
        let temp = self.dir.join(format!("{HEAD_FILE}.tmp"));
        let bytes = serde_json::to_vec(record).expect("a head record serialises");
        let written = (|| {
            let mut file = File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, self.path())?;
            File::open(&self.dir)?.sync_all()
        })();
        written.map_err(StoreError::HeadRecord)
    }

    /// Checks the store against the record, and brings the record up to
    /// the store when the store is ahead (or the record is missing).
    pub(super) fn check(&self, store: &Store, durable: &Durable) -> Result<(), StoreError> {
        let Some(record) = self.read()? else {
            return self.write(&HeadRecord::from(durable));
        };
        let found = durable.head.position;
        if found < record.position || durable.next_rejection < record.next_rejection {
            return Err(StoreError::Short {
                dir: self.dir.clone(),
                found,
                recorded: record.position,
                found_rejections: durable.next_rejection.saturating_sub(1),
                recorded_rejections: record.next_rejection.saturating_sub(1),
            });
        }
        if record.position > 0 {
            let stated = store
                .event(record.position)?
                .map(|event| event.ledger.hash)
                .unwrap_or_default();
            if stated != record.hash {
                return Err(StoreError::Diverged {
                    dir: self.dir.clone(),
                    position: record.position,
                    found: if stated.is_empty() {
                        "no event".to_owned()
                    } else {
                        format!("hash {stated}")
                    },
                    recorded: record.hash,
                });
            }
        }
        if HeadRecord::from(durable) != record {
            self.write(&HeadRecord::from(durable))?;
        }
        Ok(())
    }
}
