//! Erasure (contract section 9): the ledger commits a
//! `jobrotation.person.erased` of its own on the person's stream, destroys
//! the person's data key, and answers only once both are durable. So that
//! no old copy of the key can be recovered from sled's segments, the
//! master key is rotated in the same commit (see `crate::personal`): every
//! remaining key is wrapped again under a new master key, and the old
//! one's file is replaced once the commit is durable.

use chrono::{SecondsFormat, Utc};
use rotation_events::{CommittedEvent, EventData, EventType, PersonErased, Subject};
use serde::Serialize;
use uuid::Uuid;

use super::{Ledger, LedgerError, Submission};
use crate::auth::Caller;
use crate::personal::KeyError;
use crate::store::StoreError;

/// The `source` of the events the ledger commits itself.
pub const LEDGER_SOURCE: &str = "urn:service:rotation-ledger";

/// The `reason` of the erasures retention makes.
pub const RETENTION_REASON: &str = "retention";

/// An erasure as committed: the answer to `erase`, the first one's again
/// when a person is erased twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Erasure {
    pub person: Uuid,
    /// The `person.erased` event's id.
    pub id: Uuid,
    pub position: u64,
    pub reason: String,
    /// When the ledger committed it.
    pub recordedtime: String,
    /// Whether this request made it; `false` when it answers an earlier one.
    pub erased_now: bool,
}

/// Why a person could not be erased.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("no person {0} is known to the ledger")]
    UnknownPerson(Uuid),
    #[error("data.reason: {0}")]
    InvalidReason(String),
    #[error("the erasure was not committed: {0}")]
    NotCommitted(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

impl Ledger {
    /// Erases `person`'s profile: commits `person.erased` with `reason`,
    /// destroys their data key with a rotation of the master key, and
    /// answers once both are durable. A person already erased (and not
    /// registered again with a profile since) gets the first erasure back.
    pub async fn erase(&self, person: Uuid, reason: &str) -> Result<Erasure, EraseError> {
        if reason.trim().is_empty() {
            return Err(EraseError::InvalidReason("must not be empty".into()));
        }
        if reason.chars().count() > PersonErased::MAX_REASON {
            return Err(EraseError::InvalidReason(format!(
                "longer than {} characters",
                PersonErased::MAX_REASON
            )));
        }
        // One erasure at a time: each rotates the master key.
        let _turn = self.shared.erasures.lock().await;
        let subject = Subject::Person(person);
        let Some(state) = self.stream_state(&subject.to_string())? else {
            return Err(EraseError::UnknownPerson(person));
        };
        if !self.shared.keyring.holds(person)?
            && let Some(earlier) = self.last_erasure(person, &subject)?
        {
            self.purge_keys(vec![person]).await?;
            return Ok(earlier);
        }
        let mut erasures = self
            .commit_erasures(vec![(person, state.partnership)], reason)
            .await?;
        erasures
            .pop()
            .ok_or_else(|| EraseError::NotCommitted("no receipt".into()))?
    }

    /// Erases the profile of each of `people` who still holds a data key,
    /// all with `reason`, sharing one rotation of the master key (its cost
    /// is one re-wrap per remaining person, whatever the number erased).
    /// For retention. Answers once every erasure is durable.
    pub async fn erase_all(
        &self,
        people: &[Uuid],
        reason: &str,
    ) -> Result<Vec<Result<Erasure, EraseError>>, EraseError> {
        let _turn = self.shared.erasures.lock().await;
        let mut known = Vec::with_capacity(people.len());
        for person in people {
            let subject = Subject::Person(*person).to_string();
            if let Some(state) = self.stream_state(&subject)?
                && self.shared.keyring.holds(*person)?
            {
                known.push((*person, state.partnership));
            }
        }
        if known.is_empty() {
            return Ok(Vec::new());
        }
        self.commit_erasures(known, reason).await
    }

    /// Commits one `person.erased` for each of `people` (with their
    /// partnerships) and, in the same commit, a rotation of the master key
    /// that destroys those of their keys that exist. The caller holds the
    /// erasures' turn.
    async fn commit_erasures(
        &self,
        people: Vec<(Uuid, String)>,
        reason: &str,
    ) -> Result<Vec<Result<Erasure, EraseError>>, EraseError> {
        // A follower refuses before it begins a rotation it could not commit.
        let fenced = self.admits()?;
        let started = std::time::Instant::now();
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut ids = Vec::with_capacity(people.len());
        let mut submissions = Vec::with_capacity(people.len());
        for (person, partnership) in &people {
            let id = Uuid::now_v7();
            let event = serde_json::json!({
                "specversion": "1.0",
                "id": id,
                "source": LEDGER_SOURCE,
                "type": EventType::PersonErased.as_str(),
                "subject": Subject::Person(*person).to_string(),
                "time": time,
                "partnership": partnership,
                "datacontenttype": "application/json",
                "data": {"reason": reason},
            });
            let mut submission = Submission::from_json(
                serde_json::to_vec(&event).expect("an event serialises"),
                "erasure",
                Caller::operator(),
            );
            submission.by_ledger = true;
            submissions.push(submission);
            ids.push(id);
        }
        // The rotation goes into the same commit as the events: the new
        // master key is durable in its own file first, and replaces the old
        // one only once the commit is.
        let mut holders = Vec::with_capacity(people.len());
        for (person, _) in &people {
            if self.shared.keyring.holds(*person)? {
                holders.push(*person);
            }
        }
        let rotation = if holders.is_empty() {
            None
        } else {
            let next = self.shared.master_key_file.begin_rotation()?;
            Some(self.shared.keyring.rotate(next, &holders)?)
        };
        let rotated = rotation.is_some();
        let (outcomes, head) = self.commit_sealed(submissions, rotation).await?;
        if rotated {
            self.shared.master_key_file.finish_rotation()?;
        }
        // The group's bucket forgets the keys before the erasure is
        // answered; a retry of a failed purge is an erase answered with
        // the first erasure, which purges again.
        self.purge_keys(people.iter().map(|(person, _)| *person).collect())
            .await?;
        // In a group the erasure is answered only once the stream stores
        // it; the rotation above is finished whatever happens here, as the
        // store already holds it.
        if let Some(fenced) = fenced {
            self.replicated_to(head, fenced).await?;
        }
        self.shared.metrics.record(&outcomes, started.elapsed());
        let mut erasures = Vec::with_capacity(people.len());
        for (((person, _), id), outcome) in people.into_iter().zip(ids).zip(outcomes) {
            let receipt = outcome.receipts.into_iter().next();
            erasures.push(match receipt {
                Some(receipt) if receipt.error.is_none() => {
                    let position = receipt.position.unwrap_or_default();
                    Ok(Erasure {
                        person,
                        id,
                        position,
                        reason: reason.to_owned(),
                        recordedtime: self
                            .store()
                            .event(position)?
                            .map(|e| e.ledger.recordedtime)
                            .unwrap_or_default(),
                        erased_now: true,
                    })
                }
                Some(receipt) => Err(EraseError::NotCommitted(
                    receipt.error.map(|e| e.message).unwrap_or_default(),
                )),
                None => Err(EraseError::NotCommitted("no receipt".into())),
            });
        }
        Ok(erasures)
    }

    /// The person's latest `person.erased`, if no registration came after it.
    fn last_erasure(&self, person: Uuid, subject: &Subject) -> Result<Option<Erasure>, StoreError> {
        let mut last = None;
        for event in self.stream(subject)? {
            match event.envelope.data() {
                Ok(EventData::PersonErased(d)) => last = Some(erasure_of(person, &event, d)),
                Ok(EventData::ParticipantRegistered(d)) if d.has_profile() => last = None,
                _ => {}
            }
        }
        Ok(last)
    }
}

fn erasure_of(person: Uuid, event: &CommittedEvent, data: PersonErased) -> Erasure {
    Erasure {
        person,
        id: event.envelope.id,
        position: event.ledger.position,
        reason: data.reason,
        recordedtime: event.ledger.recordedtime.clone(),
        erased_now: false,
    }
}
