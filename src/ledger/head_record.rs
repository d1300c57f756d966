//! The head record: `head` in the data directory, outside sled, naming the
//! last durable event (position and hash) and the next rejection number.
//!
//! sled 0.34 recovers its log up to the first torn or damaged record and
//! says nothing of what it dropped: without a record of its own, a damaged
//! store would open short and the ledger would carry on from an earlier
//! head, silently losing what it had acknowledged. The flusher therefore
//! rewrites this record after every flush that moved the head, before it
//! answers anyone, and opening refuses a store that is behind it or whose
//! event at its position has another hash.
//!
//! The file holds two copies in fixed slots of [`SLOT`] bytes, each a
//! JSON line with a write sequence and its SHA-256. A rewrite overwrites
//! the older slot in place and syncs the file's data: one small write and
//! one `fdatasync` per group commit, with no file created, renamed or
//! grown (a temporary file, a rename and two fsyncs cost about ten times
//! as much). A write torn by a crash spoils only the slot being written;
//! the other still holds the record before it, which the store is ahead
//! of, and that is sound.
//!
//! A store ahead of the record is sound: a crash came between sled's flush
//! and the record's rewrite, and the record is brought forward on opening.
//! A store without a record was written before it existed, and gets one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Durable;
use crate::store::{Store, StoreError};

/// The file's name in the data directory.
pub const HEAD_FILE: &str = "head";

/// Bytes of one copy: far more than a record takes, and a whole number of
/// sectors, so that a rewrite never touches the other copy.
const SLOT: usize = 512;

/// What the record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadRecord {
    pub position: u64,
    /// Lower-case hex of the event at `position`; 64 zeros for none.
    pub hash: String,
    /// The next rejection sequence number: every one below it is durable.
    pub next_rejection: u64,
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

/// One copy: the record and which write made it.
#[derive(Serialize, Deserialize)]
struct Copy {
    seq: u64,
    #[serde(flatten)]
    record: HeadRecord,
}

impl Copy {
    /// The slot's bytes: the JSON line, its SHA-256 in hex, zeros after.
    fn encode(&self) -> [u8; SLOT] {
        let json = serde_json::to_vec(self).expect("a head record serialises");
        let digest = hex::encode(Sha256::digest(&json));
        let mut slot = [0u8; SLOT];
        let text = [json.as_slice(), b"\n", digest.as_bytes(), b"\n"].concat();
        slot[..text.len()].copy_from_slice(&text);
        slot
    }

    /// A whole copy, or `None` for a slot torn, empty or never written.
    fn decode(slot: &[u8]) -> Option<Self> {
        let mut lines = slot.split(|b| *b == b'\n');
        let json = lines.next()?;
        let digest = lines.next()?;
        (hex::encode(Sha256::digest(json)).as_bytes() == digest)
            .then(|| serde_json::from_slice(json).ok())
            .flatten()
    }
}

/// Where the record lives, and how it is rewritten. Clones share the open
/// file.
#[derive(Debug, Clone)]
pub(super) struct HeadFile {
    dir: PathBuf,
    /// The file, opened on the first rewrite, and the next write's
    /// sequence. A std mutex: held only for one write.
    open: Arc<Mutex<Option<(File, u64)>>>,
}

impl HeadFile {
    pub(super) fn in_data_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            open: Arc::default(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(HEAD_FILE)
    }

    /// The newest whole copy, or `None` for a store written before
    /// records existed.
    pub(super) fn read(&self) -> Result<Option<HeadRecord>, StoreError> {
        Ok(self.newest()?.map(|copy| copy.record))
    }

    fn newest(&self) -> Result<Option<Copy>, StoreError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::HeadRecord(e)),
        };
        bytes
            .chunks(SLOT)
            .filter_map(Copy::decode)
            .max_by_key(|copy| copy.seq)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                key: path.display().to_string(),
                message: "neither copy of the head record is whole".into(),
            })
    }

    /// Replaces the older copy with `record`, durably.
    pub(super) fn write(&self, record: &HeadRecord) -> Result<(), StoreError> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.is_none() {
            *open = Some(self.open_file()?);
        }
        let Some((file, seq)) = open.as_mut() else {
            unreachable!("opened above");
        };
        let copy = Copy {
            seq: *seq,
            record: record.clone(),
        };
        let offset = (*seq % 2) * SLOT as u64;
        let written = file
            .write_all_at(&copy.encode(), offset)
            .and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Opened afresh next time: the failure may have been the file's.
            *open = None;
            return Err(StoreError::HeadRecord(error));
        }
        *seq += 1;
        Ok(())
    }

    /// Opens the file, made with both slots (and made durable in the
    /// directory) when missing, and the sequence after its newest copy.
    fn open_file(&self) -> Result<(File, u64), StoreError> {
        let next = self.newest().ok().flatten().map_or(0, |copy| copy.seq + 1);
        let path = self.path();
        let made = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StoreError::HeadRecord)?;
        if made || file.metadata().map_err(StoreError::HeadRecord)?.len() < 2 * SLOT as u64 {
            file.set_len(2 * SLOT as u64)
                .and_then(|()| file.sync_all())
                .and_then(|()| File::open(&self.dir)?.sync_all())
                .map_err(StoreError::HeadRecord)?;
        }
        Ok((file, next))
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
