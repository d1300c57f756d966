//! Subject access (contract section 9): everything the ledger holds about
//! one person, as one JSON document: their stream's events with the
//! profile opened (or `"erased": true`), the rotation events that name
//! them (as employee, as substitute, or covering their release), and the
//! rejections that name them.

use std::collections::HashSet;

use rotation_events::{CommittedEvent, EventData, Subject};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Keyring, SealError};
use crate::ledger::Ledger;
use crate::store::StoreError;

/// Why no document could be made.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no person {0} is known to the ledger")]
    UnknownPerson(Uuid),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// The subject access document of `person`. Reads the whole log once, for
/// the rotation events that name them. Blocking.
pub fn subject_access(ledger: &Ledger, person: Uuid) -> Result<Value, AccessError> {
    let keyring = ledger.keyring();
    let stream = ledger.stream(&Subject::Person(person))?;
    if stream.is_empty() {
        return Err(AccessError::UnknownPerson(person));
    }
    // Reading the person's key first makes a store that cannot be read an
    // error of the request, never a profile shown as unopenable.
    keyring.holds(person).map_err(StoreError::from)?;
    let mut erased = false;
    let events: Vec<Value> = stream
        .iter()
        .map(|event| {
            let (value, this_erased) = opened(keyring, event);
            erased |= this_erased;
            value
        })
        .collect();
    let rotation_events = rotation_events_naming(ledger, person)?;
    let needle = person.to_string();
    let mut rejections = Vec::new();
    for record in ledger.rejections(0) {
        let record = record?;
        if record.body.as_deref().is_some_and(|b| b.contains(&needle)) {
            let mut value = serde_json::to_value(&record).expect("a rejection serialises");
            if let Some(body) = record
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
            {
                value["body"] = open_body(keyring, body);
            }
            rejections.push(value);
        }
    }
    Ok(json!({
        "person": person,
        "erased": erased,
        "stream": events,
        "rotation_events": rotation_events,
        "rejections": rejections,
    }))
}

/// An event of the person's stream as committed, its sealed profile
/// replaced by the profile opened, or by `"erased": true` when its key is
/// destroyed; and whether it was.
fn opened(keyring: &Keyring, event: &CommittedEvent) -> (Value, bool) {
    let mut value = serde_json::to_value(event).expect("an event serialises");
    let Some(sealed) = value
        .pointer_mut("/data")
        .and_then(Value::as_object_mut)
        .and_then(|data| data.remove("sealed_profile"))
    else {
        return (value, false);
    };
    let opened = serde_json::from_value(sealed.clone())
        .map_err(|_| SealError::Unopenable)
        .and_then(|sealed| {
            let Subject::Person(person) = event.envelope.subject else {
                return Err(SealError::Unopenable);
            };
            keyring.open(
                person,
                event.envelope.id,
                &event.envelope.subject.to_string(),
                &sealed,
            )
        });
    let erased = opened == Err(SealError::NoKey);
    let data = &mut value["data"];
    match opened {
        Ok(profile) => data["profile"] = profile,
        Err(SealError::NoKey) => data["erased"] = json!(true),
        Err(SealError::Unopenable | SealError::Unreadable) => data["unopenable"] = json!(true),
    }
    (value, erased)
}

/// A rejected body with each sealed profile opened where its key lives.
fn open_body(keyring: &Keyring, mut body: Value) -> Value {
    let open_one = |event: &mut Value| {
        let (Some(id), Some(subject)) = (
            event["id"].as_str().and_then(|id| id.parse::<Uuid>().ok()),
            event["subject"].as_str().map(str::to_owned),
        ) else {
            return;
        };
        let Some(person) = subject
            .strip_prefix("person/")
            .and_then(|p| p.parse::<Uuid>().ok())
        else {
            return;
        };
        let Some(data) = event.get_mut("data").and_then(Value::as_object_mut) else {
            return;
        };
        let Some(sealed) = data
            .get("sealed_profile")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
        else {
            return;
        };
        match keyring.open(person, id, &subject, &sealed) {
            Ok(profile) => {
                data.remove("sealed_profile");
                data.insert("profile".into(), profile);
            }
            Err(SealError::NoKey) => {
                data.remove("sealed_profile");
                data.insert("erased".into(), json!(true));
            }
            Err(SealError::Unopenable | SealError::Unreadable) => {}
        }
    };
    match &mut body {
        Value::Array(items) => items.iter_mut().for_each(open_one),
        item => open_one(item),
    }
    body
}

/// The rotation events that name `person`: their releases as employee,
/// their substitutions as substitute, the substitutions covering their
/// releases, and what ends or completes any of these.
fn rotation_events_naming(ledger: &Ledger, person: Uuid) -> Result<Vec<Value>, StoreError> {
    let mut releases: HashSet<Uuid> = HashSet::new();
    let mut substitutions: HashSet<Uuid> = HashSet::new();
    let mut out = Vec::new();
    for typed in ledger.replay_typed(0) {
        let typed = typed?;
        let Ok(data) = &typed.data else { continue };
        let names = match data {
            EventData::ReleaseStarted(d) if d.employee == person => {
                releases.insert(d.release_id);
                true
            }
            EventData::SubstitutionStarted(d)
                if d.substitute == person || d.covers.iter().any(|r| releases.contains(r)) =>
            {
                substitutions.insert(d.substitution_id);
                true
            }
            EventData::TrainingCompleted(d) => releases.contains(&d.release_id),
            EventData::TrainingLeft(d) => releases.contains(&d.release_id),
            EventData::ReleaseEnded(d) => releases.contains(&d.release_id),
            EventData::SubstitutionEnded(d) => substitutions.contains(&d.substitution_id),
            _ => false,
        };
        if names {
            out.push(serde_json::to_value(&typed.event).expect("an event serialises"));
        }
    }
    Ok(out)
}
