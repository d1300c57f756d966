//! Every read of the log, bounded by the durable head, and the one
//! [`Follower`] of the head.
//!
//! Whoever follows the head (the NATS outbox, the projector, the live
//! HTTP feed, a group's followers) asks here for the events after its
//! cursor, and this file alone decides where they come from: the recent
//! tail in memory when it still holds them (no read back, no parse), the
//! store read in order for a short stretch, or the store decoded on other
//! threads ([`Store::replay`]) for a long one.

use rotation_events::{CommittedEvent, EventType, Subject, TypedEvent};
use serde::Deserialize;
use tokio::sync::watch;
use uuid::Uuid;

use super::{Durable, Ledger, RejectionRecord};
use crate::chain::{Verification, Verifier};
use crate::rules::StreamState;
use crate::store::{StoreError, StoredJson};

pub use super::recent::RecentEvent as FollowedEvent;

/// How far behind the head a typed read must be before it decodes on
/// other threads: below it, starting those threads costs more than they
/// save.
const READ_AHEAD_FROM: u64 = 2048;

impl Ledger {
    /// Durable committed events after `after`, at most `limit`.
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<CommittedEvent>, StoreError> {
        self.events_iter(after).take(limit).collect()
    }

    /// Durable committed events after `after`, up to the durable head now.
    pub fn events_iter(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<CommittedEvent, StoreError>> + use<> {
        self.store().events(after, self.head().position)
    }

    /// Durable events after `after`, up to the durable head now, as the
    /// store holds them (RFC 8785 JSON), with their positions.
    pub fn events_json(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, StoredJson), StoreError>> + use<> {
        self.store().events_json(after, self.head().position)
    }

    /// One durable event as stored.
    pub fn event_json(&self, position: u64) -> Result<Option<StoredJson>, StoreError> {
        if position > self.head().position {
            return Ok(None);
        }
        self.store().event_json(position)
    }

    /// Durable committed events after `after`, up to the durable head now,
    /// decoded in parallel: for whole-log replays.
    pub fn replay(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<CommittedEvent, StoreError>> + use<> {
        self.store().replay(after, self.head().position)
    }

    /// [`Ledger::replay`] of events with their typed data, read straight
    /// from the stored bytes: what folds replay.
    pub fn replay_typed(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<TypedEvent, StoreError>> + use<> {
        self.store().replay_typed(after, self.head().position)
    }

    /// [`Ledger::replay_typed`] with every sealed profile opened, in
    /// memory, on the decoding threads rather than the caller's: what
    /// `export` folds, so that its folding thread never waits on the AEAD.
    pub fn replay_opened(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<TypedEvent, StoreError>> + use<> {
        let keyring = std::sync::Arc::clone(self.keyring());
        self.store()
            .replay_typed_then(after, self.head().position, move |typed| {
                crate::personal::open_typed(&keyring, typed)
            })
    }

    /// One stream's durable events, in version order.
    pub fn stream(&self, subject: &Subject) -> Result<Vec<CommittedEvent>, StoreError> {
        let head = self.head().position;
        let mut out = Vec::new();
        let state: Option<StreamState> = self.stream_state(&subject.to_string())?;
        for position in state.map(|s| s.positions).unwrap_or_default() {
            if position > head {
                break;
            }
            if let Some(event) = self.store().event(position)? {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// How many streams the log holds.
    pub fn stream_count(&self) -> usize {
        self.count_streams()
    }

    /// Durable rejection records after sequence `after`.
    pub fn rejections(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<RejectionRecord, StoreError>> + use<> {
        let next = self.shared.durable.borrow().next_rejection;
        self.store()
            .rejections(after)
            .take_while(move |item| item.as_ref().map_or(true, |(seq, _)| *seq < next))
            .map(|item| {
                let (seq, bytes) = item?;
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    key: format!("rejection {seq}"),
                    message: e.to_string(),
                })
            })
    }

    /// Recomputes the hash chain from position 1 up to the durable head.
    pub fn verify(&self) -> Result<Verification, StoreError> {
        let head = self.head();
        let mut verifier = Verifier::default();
        for item in self.store().events_json(0, head.position) {
            let (position, bytes) = item?;
            let decoded = CommittedEvent::from_json(&bytes).map_err(|e| e.0);
            verifier.check(position, decoded.as_ref().map_err(Clone::clone));
        }
        Ok(verifier.finish(head.position, &head.hash))
    }

    /// A follower of the durable head, starting after `after`.
    pub fn follow(&self, after: u64) -> Follower {
        Follower {
            ledger: self.clone(),
            durable: self.subscribe(),
            after,
        }
    }

    /// Up to `limit` durable events after `after`, as stored, with what a
    /// publisher routes by: from memory when the recent tail holds them,
    /// from the store otherwise. Blocking.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<FollowedEvent>, StoreError> {
        let until = self.head().position.min(after.saturating_add(limit as u64));
        if until <= after {
            return Ok(Vec::new());
        }
        if let Some(events) = self.shared.recent.range(after, until) {
            return Ok(events);
        }
        self.store()
            .events_json(after, until)
            .map(|row| {
                let (position, json) = row?;
                followed(position, &json)
            })
            .collect()
    }

    /// The durable events after `after`, up to the head now, with their
    /// typed data: from memory when recent, read in order when few, decoded
    /// on other threads when many. Blocking.
    pub fn read_typed_after(
        &self,
        after: u64,
    ) -> Box<dyn Iterator<Item = Result<TypedEvent, StoreError>> + Send> {
        let head = self.head().position;
        if head.saturating_sub(after) >= READ_AHEAD_FROM {
            return Box::new(self.store().replay_typed(after, head));
        }
        if let Some(events) = self.shared.recent.range(after, head) {
            return Box::new(events.into_iter().map(|event| {
                TypedEvent::from_json(&event.json).map_err(|e| StoreError::Corrupt {
                    key: format!("event {}", event.position),
                    message: e.0,
                })
            }));
        }
        Box::new(
            self.store()
                .events(after, head)
                .map(|event| event.map(TypedEvent::new)),
        )
    }
}

/// The attributes a publisher routes by, read from a stored event.
#[derive(Deserialize)]
struct Routing<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    partnership: std::borrow::Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: &'a str,
}

fn followed(position: u64, json: &[u8]) -> Result<FollowedEvent, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        key: format!("event {position}"),
        message,
    };
    let routing: Routing<'_> = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    let id = Uuid::parse_str(routing.id).map_err(|e| corrupt(e.to_string()))?;
    let event_type = EventType::parse(routing.event_type)
        .ok_or_else(|| corrupt(format!("unknown type {}", routing.event_type)))?;
    Ok(FollowedEvent {
        position,
        id,
        partnership: routing.partnership.into_owned(),
        event_type,
        json: bytes::Bytes::copy_from_slice(json),
    })
}

/// A reader that follows the durable head from a cursor: each read
/// returns the durable events after the cursor and moves it past them.
#[derive(Debug)]
pub struct Follower {
    ledger: Ledger,
    durable: watch::Receiver<Durable>,
    after: u64,
}

impl Follower {
    /// The last position read.
    pub fn after(&self) -> u64 {
        self.after
    }

    /// Moves the cursor, e.g. after a consumer reconciled with what it
    /// already holds.
    pub fn seek(&mut self, after: u64) {
        self.after = after;
    }

    /// Up to `limit` durable events after the cursor, moving it past them;
    /// empty when the cursor is at the head. Blocking.
    pub fn read(&mut self, limit: usize) -> Result<Vec<FollowedEvent>, StoreError> {
        let events = self.ledger.read_after(self.after, limit)?;
        if let Some(last) = events.last() {
            self.after = last.position;
        }
        Ok(events)
    }

    /// Waits until the durable head is past the cursor; `false` when the
    /// ledger has closed.
    pub async fn wait(&mut self) -> bool {
        loop {
            if self.durable.borrow_and_update().head.position > self.after {
                return true;
            }
            if self.durable.changed().await.is_err() {
                return false;
            }
        }
    }

    /// The ledger it follows.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}
