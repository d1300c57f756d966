//! What the ledger knows of a ledger group (contract section 11): whether
//! this node may write, how far the group's stream has stored the log (no
//! submission is answered before it), events decided by the writer
//! applied on a follower, and the data keys that travel between nodes.
//! The NATS side (lease, stream, key bucket) is `crate::nats::group`'s.
//!
//! The gate is one watch in the ledger's shared state. Under
//! [`Gate::Single`] a submission pays one read of it and nothing more;
//! under [`Gate::Writer`] its answer waits, after the writer's, for the
//! stream to have stored the durable head it was answered at, so a
//! duplicate of an event not yet stored waits too; a turn to
//! [`Gate::Follower`] meanwhile fails it with
//! [`LedgerError::NotWriter`], as nothing unreplicated is acknowledged.
//! [`Ledger::apply`] is the one way a follower writes, and it bypasses the
//! gate: the events it commits were decided by the writer.

use std::sync::Arc;

use futures::future::BoxFuture;
use rotation_events::{CommittedEvent, EventData, EventType, Subject};
use uuid::Uuid;

use super::{Ledger, LedgerError, RestoreError, Submission};
use crate::chain::Verifier;
use crate::personal::{GroupKey, KeyError};
use crate::store::Head;

/// Events handed to the writer at a time by an apply.
const APPLY_BATCH: usize = 2_000;

/// Who may write through this ledger, and what its answers wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// A single ledger: every durable commit is answered at once.
    Single,
    /// The group's writer: a submission is answered once its events are
    /// durable here and the group's stream has stored every position up to
    /// the durable head it was answered at (`replicated`).
    Writer { replicated: u64 },
    /// A follower, or a writer that lost its lease: submissions are
    /// refused with [`LedgerError::NotWriter`](super::LedgerError::NotWriter),
    /// and every answer still waiting for the stream fails with it.
    Follower,
}

/// The gate with the number of times it turned [`Gate::Follower`]: an
/// answer waiting for the stream fails when that number moves, even if
/// the node became the writer again before the answer looked.
#[derive(Debug, Clone, Copy)]
pub(super) struct GateState {
    gate: Gate,
    fenced: u64,
}

impl GateState {
    pub(super) const SINGLE: Self = Self {
        gate: Gate::Single,
        fenced: 0,
    };
}

/// Where a writer's new data keys go before any event sealed under them is
/// answered, and where an erasure's destroyed keys are purged: the group's
/// key bucket.
pub trait KeySink: Send + Sync + std::fmt::Debug {
    /// Stores each person's key, wrapped under the group key.
    fn publish(&self, keys: Vec<(Uuid, Vec<u8>)>) -> BoxFuture<'_, Result<(), String>>;
    /// Removes each person's key and every earlier revision of it.
    fn purge(&self, people: Vec<Uuid>) -> BoxFuture<'_, Result<(), String>>;
    /// The key the bucket's entries are wrapped under.
    fn group_key(&self) -> &GroupKey;
}

impl Ledger {
    /// Sets who may write. Only the group's runtime calls it; a ledger
    /// opens as [`Gate::Single`].
    pub fn set_gate(&self, gate: Gate) {
        self.shared.gate.send_modify(|state| {
            if gate == Gate::Follower && state.gate != Gate::Follower {
                state.fenced += 1;
            }
            state.gate = gate;
        });
    }

    /// The gate now.
    pub fn gate(&self) -> Gate {
        self.shared.gate.borrow().gate
    }

    /// The group's stream has stored every position up to `position`:
    /// answers waiting for it go out. Ignored unless the gate is
    /// [`Gate::Writer`]; never moves back.
    pub fn set_replicated(&self, position: u64) {
        self.shared
            .gate
            .send_if_modified(|state| match &mut state.gate {
                Gate::Writer { replicated } if *replicated < position => {
                    *replicated = position;
                    true
                }
                _ => false,
            });
    }

    /// Whether a submission may go to the writer now: `None` when it must
    /// not (a follower), else whether its answer must wait for the stream
    /// (`Some(Some(fenced))`, the count to hold it to) or not.
    pub(super) fn admits(&self) -> Result<Option<u64>, LedgerError> {
        let state = *self.shared.gate.borrow();
        match state.gate {
            Gate::Single => Ok(None),
            Gate::Writer { .. } => Ok(Some(state.fenced)),
            Gate::Follower => Err(LedgerError::NotWriter),
        }
    }

    /// Waits until the group's stream has stored `position`, failing if
    /// the node stopped being the writer (`fenced` moved) first.
    pub(super) async fn replicated_to(
        &self,
        position: u64,
        fenced: u64,
    ) -> Result<(), LedgerError> {
        let mut gate = self.shared.gate.subscribe();
        let state = *gate
            .wait_for(|state| {
                state.fenced != fenced
                    || !matches!(state.gate, Gate::Writer { replicated } if replicated < position)
            })
            .await
            .map_err(|_| LedgerError::Closed)?;
        if state.fenced != fenced || state.gate == Gate::Follower {
            return Err(LedgerError::NotWriter);
        }
        Ok(())
    }

    /// Sends new data keys to `sink` before answering, and purges erased
    /// ones there (group writer only).
    pub fn set_key_sink(&self, sink: Option<Arc<dyn KeySink>>) {
        *self
            .shared
            .key_sink
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sink;
    }

    /// The key sink, if one is set.
    pub(super) fn key_sink(&self) -> Option<Arc<dyn KeySink>> {
        self.shared
            .key_sink
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends the data keys of `submissions` not yet committed to the key
    /// sink, if one is set, before anything sealed under them is: a
    /// follower that applies the events finds their keys in the bucket.
    pub(super) async fn share_new_keys(
        &self,
        submissions: &[Submission],
    ) -> Result<(), LedgerError> {
        let Some(sink) = self.key_sink() else {
            return Ok(());
        };
        let keyring = &self.shared.keyring;
        let mut people: Vec<Uuid> = submissions
            .iter()
            .flat_map(|s| &s.sealed_for)
            .copied()
            .filter(|person| keyring.wrap_to_commit(*person).is_some())
            .collect();
        people.sort_unstable();
        people.dedup();
        let mut keys: Vec<(Uuid, Vec<u8>)> = Vec::with_capacity(people.len());
        for person in people {
            let exported = keyring
                .export(person, sink.group_key())
                .map_err(|e| LedgerError::Storage(e.into()))?;
            keys.extend(exported.map(|wrapped| (person, wrapped)));
        }
        if keys.is_empty() {
            return Ok(());
        }
        sink.publish(keys).await.map_err(LedgerError::KeysNotShared)
    }

    /// Purges erased people's keys from the key sink, if one is set.
    pub(super) async fn purge_keys(&self, people: Vec<Uuid>) -> Result<(), LedgerError> {
        match self.key_sink() {
            Some(sink) if !people.is_empty() => {
                sink.purge(people).await.map_err(LedgerError::KeysNotShared)
            }
            _ => Ok(()),
        }
    }

    /// Starts applying events decided by the group's writer after this
    /// ledger's head.
    pub fn apply(&self) -> Result<Apply, RestoreError> {
        Ok(Apply::after_head(self.clone(), "apply"))
    }

    /// `person`'s data key wrapped under `group_key`, for the key bucket;
    /// `None` when this ledger holds none for them.
    pub fn export_key(
        &self,
        person: Uuid,
        group_key: &GroupKey,
    ) -> Result<Option<Vec<u8>>, KeyError> {
        self.shared.keyring.export(person, group_key)
    }

    /// Installs a key from the group's bucket (wrapped under `group_key`);
    /// it is stored with the first event applied that is sealed under it.
    /// Whether it was new here: a person who holds another key keeps it
    /// until the erasure that destroys it is applied (their new key is
    /// then missing again, and asked for again).
    pub fn install_key(
        &self,
        person: Uuid,
        wrapped: &[u8],
        group_key: &GroupKey,
    ) -> Result<bool, KeyError> {
        self.shared.keyring.install(person, wrapped, group_key)
    }

    /// The people whose profiles in `json` (a committed event) are sealed
    /// under a key this ledger does not hold: a follower waits for them in
    /// the key bucket before it applies the event. A key erased later in
    /// the log is never in the bucket again: when the bucket holds none,
    /// the event is applied without it, its profile as erased.
    pub fn missing_keys(&self, json: &[u8]) -> Vec<Uuid> {
        let Ok(event) = CommittedEvent::from_json(json) else {
            return Vec::new();
        };
        let Subject::Person(person) = event.envelope.subject else {
            return Vec::new();
        };
        match event.envelope.data() {
            Ok(EventData::ParticipantRegistered(data)) => data
                .sealed_profile
                .filter(|sealed| {
                    // A key that cannot be read is waited for as missing:
                    // the event is not applied without it.
                    !self
                        .shared
                        .keyring
                        .holds_kid(person, &sealed.kid)
                        .unwrap_or(false)
                })
                .map(|_| person)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Events decided by the writer, applied in order on a follower: each is
/// checked against the chain (position, `prevhash`, hash), committed with
/// the position, recorded time and hash it had, through the one write
/// path (rules state, id index, Merkle tree and keys follow; an applied
/// `person.erased` destroys the key and rotates the master key as the
/// writer's erasure did).
#[derive(Debug)]
pub struct Apply {
    ledger: Ledger,
    /// Seeded with the head the apply started at.
    verifier: Verifier,
    /// The position the next event must have.
    next: u64,
    batch: Vec<(u64, Submission)>,
    /// The origin the writer records: `apply` or `restore`.
    origin: &'static str,
}

impl Apply {
    /// An apply of the events after `ledger`'s durable head.
    pub(super) fn after_head(ledger: Ledger, origin: &'static str) -> Self {
        let head = ledger.head();
        Self {
            verifier: Verifier::after(head.position, &head.hash),
            next: head.position + 1,
            batch: Vec::with_capacity(APPLY_BATCH),
            origin,
            ledger,
        }
    }

    /// The ledger applied to.
    pub(super) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The position the next event must have.
    pub fn next_position(&self) -> u64 {
        self.next
    }

    /// Checks one event (its stored JSON) against the chain and stages it;
    /// commits when a batch is full.
    pub async fn push(&mut self, json: &[u8]) -> Result<(), RestoreError> {
        let decoded = CommittedEvent::from_json(json).map_err(|e| e.0);
        let position = decoded
            .as_ref()
            .map_or(self.next, |event| event.ledger.position);
        self.verifier
            .check(position, decoded.as_ref().map_err(Clone::clone));
        if let Some((position, problem)) = self.verifier.problem() {
            return Err(RestoreError::Broken {
                position,
                problem: problem.to_owned(),
            });
        }
        let event = decoded.map_err(|problem| RestoreError::Broken { position, problem })?;
        self.next = position + 1;
        if event.envelope.event_type == EventType::PersonErased {
            // The staged events go first, so that the erasure commits
            // alone with its rotation, as the writer's erasure did, and
            // so that the keys they carry are in the store.
            self.commit().await?;
            if let Some(person) = self.erases_held_key(&event)? {
                return self.commit_erasure(position, event, person).await;
            }
        }
        self.batch
            .push((position, Submission::committed(event, self.origin)));
        if self.batch.len() >= APPLY_BATCH {
            self.commit().await?;
        }
        Ok(())
    }

    /// Commits what is staged and answers with the durable head.
    pub async fn commit(&mut self) -> Result<Head, RestoreError> {
        if !self.batch.is_empty() {
            let (positions, submissions): (Vec<u64>, Vec<Submission>) =
                std::mem::take(&mut self.batch).into_iter().unzip();
            let (outcomes, _) = self.ledger.commit_sealed(submissions, None).await?;
            refused(&positions, outcomes)?;
        }
        Ok(self.ledger.head())
    }

    /// The person whose `person.erased` this is, when this ledger holds
    /// the key their latest registration was sealed under: it must be
    /// destroyed with a rotation. Another key (installed early from the
    /// bucket for a registration after this erasure) is kept.
    fn erases_held_key(&self, event: &CommittedEvent) -> Result<Option<Uuid>, RestoreError> {
        let Subject::Person(person) = event.envelope.subject else {
            return Ok(None);
        };
        let mut kid = None;
        for earlier in self.ledger.stream(&event.envelope.subject)? {
            if let Ok(EventData::ParticipantRegistered(data)) = earlier.envelope.data()
                && let Some(sealed) = data.sealed_profile
            {
                kid = Some(sealed.kid);
            }
        }
        let keyring = &self.ledger.shared.keyring;
        match kid {
            Some(kid) if keyring.holds_kid(person, &kid)? => Ok(Some(person)),
            _ => Ok(None),
        }
    }

    /// Commits an applied `person.erased` alone, with a rotation of the
    /// master key that destroys `person`'s key: the steps of
    /// `Ledger::commit_erasures`, each durable before the next.
    async fn commit_erasure(
        &mut self,
        position: u64,
        event: CommittedEvent,
        person: Uuid,
    ) -> Result<(), RestoreError> {
        let shared = &self.ledger.shared;
        let _turn = shared.erasures.lock().await;
        let next = shared.master_key_file.begin_rotation()?;
        let rotation = shared.keyring.rotate(next, &[person])?;
        let submission = Submission::committed(event, self.origin);
        let (outcomes, _) = self
            .ledger
            .commit_sealed(vec![submission], Some(rotation))
            .await?;
        shared.master_key_file.finish_rotation()?;
        refused(&[position], outcomes)
    }
}

/// The first of `outcomes` the writer refused, by its position.
fn refused(positions: &[u64], outcomes: Vec<super::Outcome>) -> Result<(), RestoreError> {
    for (position, outcome) in positions.iter().zip(outcomes) {
        if let Some(violation) = outcome.rejection {
            return Err(RestoreError::Refused {
                position: *position,
                message: violation.message,
            });
        }
    }
    Ok(())
}
