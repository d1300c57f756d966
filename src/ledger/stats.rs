//! What `rotation-ledger stats` prints, gathered in one place so that the
//! verb reads it from a stopped store and from a running server
//! (`GET /v1/stats`) alike.

use serde::{Deserialize, Serialize};

use super::{Ledger, Provenance, StoreError};

/// Counts of a ledger, as of its durable head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub events: u64,
    pub streams: u64,
    pub rejections: u64,
    pub head_hash: String,
    pub recordedtime: String,
    /// The bytes sled takes on disk, as it reports them; they change as it
    /// writes and compacts, even with nothing committed.
    pub disk_bytes: u64,
    /// Registrations committed before sealing, whose profiles stay in clear.
    pub clear_profiles: u64,
    /// The old head, when this ledger was resealed from another.
    pub resealed_from: Option<Provenance>,
}

impl Ledger {
    /// The ledger's counts. Blocking: it reads every stream state and
    /// rejection, and replays the log for the profiles in clear.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let head = self.head();
        let rejections = self.rejections(0).count();
        Ok(Stats {
            events: head.position,
            streams: self.stream_count() as u64,
            rejections: rejections as u64,
            head_hash: head.hash,
            recordedtime: head.recordedtime,
            disk_bytes: self.size_on_disk()?,
            clear_profiles: self.clear_profiles()?,
            resealed_from: self.resealed_from()?,
        })
    }
}
