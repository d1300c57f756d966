//! What the integration tests need to damage or inspect a store, as an
//! operator's disk or an older version of the ledger would leave it.
//! Compiled only with the `test-hooks` feature, which release builds leave
//! off.

use uuid::Uuid;

use std::path::Path;

use super::Ledger;
use super::head_record::{HeadFile, HeadRecord};
use crate::rules::StreamState;
use crate::store::StoreError;

/// What the id index keeps of one committed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdEntry {
    pub id: Uuid,
    pub position: u64,
    pub streamversion: u64,
    pub digest: [u8; 32],
}

impl Ledger {
    /// Overwrites the stored bytes of one event, bypassing every check, as
    /// a damaged disk would.
    pub fn tamper(&self, position: u64, json: &[u8]) -> Result<(), StoreError> {
        self.store().tamper(position, json)
    }

    /// Removes every id run, as in a store written before they existed.
    /// Returns how many were removed.
    pub fn forget_id_runs(&self) -> Result<u64, StoreError> {
        self.store().forget_id_runs()
    }

    /// The id run entry of the event at `position`.
    pub fn id_entry(&self, position: u64) -> Result<Option<IdEntry>, StoreError> {
        Ok(self
            .store()
            .id_record(position)?
            .map(|(id, record)| IdEntry {
                id,
                position: record.position,
                streamversion: record.streamversion,
                digest: record.digest,
            }))
    }

    /// Every stream's rule state, in subject order.
    pub fn stream_states(&self) -> Result<Vec<(String, StreamState)>, StoreError> {
        self.all_stream_states()
    }

    /// How many stream state keys this ledger's commits have written since
    /// it opened.
    pub fn state_keys_written(&self) -> u64 {
        self.store().state_writes()
    }

    /// Closes the ledger as a crash would leave it: every acknowledged
    /// group flushed, but no closing snapshot of the stream states.
    pub fn close_without_snapshot(self) {
        self.shared
            .states
            .skip_closing_snapshot
            .store(true, std::sync::atomic::Ordering::Release);
        self.close();
    }
}

/// The head record of the ledger in `dir`, as opening reads it.
pub fn head_record(dir: &Path) -> Result<Option<HeadRecord>, StoreError> {
    HeadFile::in_data_dir(dir).read()
}

/// Writes the head record of the ledger in `dir`, as a flush would.
pub fn write_head_record(dir: &Path, record: &HeadRecord) -> Result<(), StoreError> {
    HeadFile::in_data_dir(dir).write(record)
}
