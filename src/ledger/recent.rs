//! The recent tail: the last events made durable, as stored, kept in memory
//! by the ledger so that whoever follows the head (the NATS outbox) gets
//! them without reading them back from sled and parsing them again.
//!
//! The flusher adds each group's events after its flush and before it
//! announces the new durable head, so the tail never holds an event that
//! is not durable. It keeps the newest events within [`TAIL_BYTES`]; a
//! reader further behind reads the store, as it would without the tail.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use rotation_events::EventType;
use uuid::Uuid;

/// How many bytes the tail keeps at most, its events' JSON and bookkeeping
/// together: about a second of the heaviest ingest measured, and a bounded
/// share of memory.
pub const TAIL_BYTES: usize = 16 << 20;

/// A committed event as stored, with the attributes a publisher routes by.
#[derive(Debug, Clone)]
pub struct RecentEvent {
    pub position: u64,
    pub id: Uuid,
    pub partnership: String,
    pub event_type: EventType,
    /// The event's JSON exactly as the store holds it.
    pub json: Bytes,
}

impl RecentEvent {
    /// What it holds in memory, roughly.
    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.partnership.len() + self.json.len()
    }
}

/// The tail itself, shared by the flusher (which adds) and the readers.
#[derive(Debug)]
pub(crate) struct Recent {
    inner: Mutex<Tail>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Tail {
    events: VecDeque<RecentEvent>,
    bytes: usize,
}

impl Recent {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Tail::default()),
            limit,
        }
    }

    /// Adds durable events, which follow the ones held, and drops the
    /// oldest beyond the limit. Events that do not follow on (never so
    /// while the ledger runs) start the tail afresh.
    pub(crate) fn extend(&self, events: Vec<RecentEvent>) {
        let Ok(mut tail) = self.inner.lock() else {
            return;
        };
        for event in events {
            let follows = tail
                .events
                .back()
                .is_none_or(|last| last.position + 1 == event.position);
            if !follows {
                tail.events.clear();
                tail.bytes = 0;
            }
            tail.bytes += event.size();
            tail.events.push_back(event);
        }
        while tail.bytes > self.limit {
            match tail.events.pop_front() {
                Some(dropped) => tail.bytes -= dropped.size(),
                None => break,
            }
        }
    }

    /// The events after `after` up to `until` (inclusive), when the tail
    /// holds the first of them; `None` when the reader must read the store.
    pub(crate) fn range(&self, after: u64, until: u64) -> Option<Vec<RecentEvent>> {
        let tail = self.inner.lock().ok()?;
        let first = tail.events.front()?.position;
        if after + 1 < first || until <= after {
            return None;
        }
        let start = usize::try_from(after + 1 - first).ok()?;
        let end = usize::try_from(until + 1 - first)
            .ok()?
            .min(tail.events.len());
        Some(tail.events.range(start.min(end)..end).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: u64, size: usize) -> RecentEvent {
        RecentEvent {
            position,
            id: Uuid::new_v4(),
            partnership: "p".into(),
            event_type: EventType::ParticipantRegistered,
            json: Bytes::from(vec![b'x'; size]),
        }
    }

    fn positions(events: Option<Vec<RecentEvent>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|e| e.position).collect())
    }

    #[test]
    fn keeps_the_newest_events_within_its_limit() {
        let each = event(0, 10).size();
        let recent = Recent::new(3 * each);
        recent.extend((1..=5).map(|p| event(p, 10)).collect());
        // Five events offered, room for three: positions 3 to 5.
        assert_eq!(positions(recent.range(2, 5)), Some(vec![3, 4, 5]));
        assert_eq!(positions(recent.range(3, 4)), Some(vec![4]));
        assert_eq!(positions(recent.range(4, 9)), Some(vec![5]));
        assert_eq!(positions(recent.range(5, 9)), Some(vec![]));
        // Position 2 is gone: the reader must go to the store.
        assert_eq!(positions(recent.range(1, 5)), None);
        assert_eq!(positions(recent.range(0, 5)), None);
    }

    #[test]
    fn starts_afresh_when_events_do_not_follow_on() {
        let recent = Recent::new(1 << 20);
        recent.extend((1..=3).map(|p| event(p, 10)).collect());
        recent.extend(vec![event(7, 10)]);
        assert_eq!(positions(recent.range(6, 7)), Some(vec![7]));
        assert_eq!(positions(recent.range(2, 7)), None);
    }

    #[test]
    fn an_empty_tail_sends_readers_to_the_store() {
        let recent = Recent::new(1 << 20);
        assert_eq!(positions(recent.range(0, 10)), None);
    }
}
