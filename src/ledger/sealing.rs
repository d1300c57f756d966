//! Sealing on the submitter's thread (contract section 9): before a
//! submission reaches the writer, each registration's `data.profile` is
//! replaced by `data.sealed_profile` under the person's own data key, and
//! the profiles of a body kept as a rejection are sealed the same way.
//! The idempotency digest is taken of the event as submitted, so a resend
//! of the same clear event is still a duplicate; the chain covers the
//! sealed form the writer frames here. The digest of a clear profile is
//! derived from it, so only the sealed form's is stored: a resend is
//! compared by opening the committed profile ([`resends_clear`]).

use rotation_events::{CommittedEvent, Envelope, ErrorCode, EventData, SealedProfile, Subject};
use serde_json::Value;
use uuid::Uuid;

use super::Submission;
use crate::chain;
use crate::personal::{KeyError, Keyring, SealError};
use crate::rules::Violation;

impl Submission {
    /// Seals every clear profile of the submission under its person's key:
    /// the events to commit and the body kept should it be rejected. A
    /// partner's own `sealed_profile` is refused: only the ledger seals.
    /// Fails when the store cannot say whether a person holds a key.
    pub(super) fn seal(&mut self, keyring: &Keyring) -> Result<(), KeyError> {
        // A sealed profile the ledger did not seal: refused by the writer
        // unless the event is a resend of one already committed.
        self.partner_sealed = self
            .typed
            .iter()
            .map(|data| {
                matches!(data, EventData::ParticipantRegistered(d) if d.sealed_profile.is_some())
            })
            .collect();
        for (index, mut data) in std::mem::take(&mut self.clear_profiles) {
            let envelope = &mut self.envelopes[index];
            let Subject::Person(person) = envelope.subject else {
                continue;
            };
            let Some(profile) = data.as_object_mut().and_then(|d| d.remove("profile")) else {
                continue;
            };
            let sealed = keyring.seal(person, envelope.id, &envelope.subject.key(), &profile)?;
            data["sealed_profile"] =
                serde_json::to_value(&sealed).expect("a sealed profile serialises");
            envelope.data = data;
            self.framed[index] = chain::Framed::new(envelope, &chain::canonical_data(envelope));
            envelope.data = Value::Null;
            if let Some(EventData::ParticipantRegistered(d)) = self.typed.get_mut(index) {
                d.profile = None;
                d.sealed_profile = Some(sealed);
            }
            self.sealed_for.push(person);
        }
        if let Some(body) = &mut self.body
            && memchr::memmem::find(body, b"\"profile\"").is_some()
            && let Ok(mut value) = serde_json::from_slice::<Value>(body)
        {
            match &mut value {
                Value::Array(items) => {
                    for item in items {
                        seal_body_event(item, keyring, &mut self.sealed_for)?;
                    }
                }
                item => seal_body_event(item, keyring, &mut self.sealed_for)?,
            }
            *body = serde_json::to_vec(&value).expect("a JSON value serialises");
        }
        Ok(())
    }
}

/// Why a partner's own `sealed_profile` is refused.
pub(super) fn partner_sealed() -> Violation {
    Violation::new(
        ErrorCode::InvalidEvent,
        "data.sealed_profile is the ledger's own: submit data.profile",
    )
}

/// Whether an event whose clear profile this ledger sealed on submission
/// (`framed`, its clear form's digest `digest`) resends `committed`, which
/// holds its id under another digest: that of its sealed form, as every
/// node stores it. The committed profile is opened and put back in clear,
/// and the digests compared. Once the person's key is destroyed (erased,
/// or not yet installed on this node) the profile cannot be compared, and
/// the rest of the event decides. Fails only when the store cannot say
/// whether the person holds a key.
pub(super) fn resends_clear(
    keyring: &Keyring,
    committed: CommittedEvent,
    framed: &chain::Framed,
    digest: [u8; 32],
) -> Result<bool, KeyError> {
    let mut envelope = committed.envelope;
    let Subject::Person(person) = envelope.subject else {
        return Ok(false);
    };
    let subject = envelope.subject.key();
    let Some(data) = envelope.data.as_object_mut() else {
        return Ok(false);
    };
    let Some(Ok(sealed)) = data
        .remove("sealed_profile")
        .map(serde_json::from_value::<SealedProfile>)
    else {
        return Ok(false);
    };
    match keyring.try_open(person, envelope.id, &subject, &sealed)? {
        Ok(profile) => {
            data.insert("profile".into(), profile);
            Ok(chain::digest(&envelope, &chain::canonical_data(&envelope)) == digest)
        }
        Err(SealError::NoKey) => {
            let Ok(mut resent) = Envelope::from_json(framed.as_bytes()) else {
                return Ok(false);
            };
            if let Some(data) = resent.data.as_object_mut() {
                data.remove("sealed_profile");
            }
            let unsealed = |e: &Envelope| chain::digest(e, &chain::canonical_data(e));
            Ok(unsealed(&resent) == unsealed(&envelope))
        }
        Err(_) => Ok(false),
    }
}

/// The person a `person/<uuid>` subject names.
pub(crate) fn person_of(subject: &str) -> Option<Uuid> {
    subject.strip_prefix("person/")?.parse().ok()
}

/// Seals the profile of one event of a body kept as a rejection, under the
/// key of the person its subject names. A profile with no person to seal
/// it for (a subject that names none) is dropped rather than kept in clear.
fn seal_body_event(
    event: &mut Value,
    keyring: &Keyring,
    sealed_for: &mut Vec<Uuid>,
) -> Result<(), KeyError> {
    let Some(object) = event.as_object_mut() else {
        return Ok(());
    };
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse::<Uuid>().ok());
    let subject = object
        .get("subject")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let Some(profile) = data.remove("profile") else {
        return Ok(());
    };
    let person = subject.as_deref().and_then(person_of);
    if let (Some(person), Some(id), Some(subject)) = (person, id, subject) {
        let sealed = keyring.seal(person, id, &subject, &profile)?;
        data.insert(
            "sealed_profile".into(),
            serde_json::to_value(&sealed).expect("a sealed profile serialises"),
        );
        sealed_for.push(person);
    }
    Ok(())
}
