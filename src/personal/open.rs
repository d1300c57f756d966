//! Opening profiles in memory as readers fold (contract section 9): a
//! registration's `sealed_profile` becomes its `profile` again, in the
//! reader's memory only. An erased or unopenable profile is left out, so
//! it counts as not recorded on the boards and gives empty cells in the
//! datasets; the event itself, and every count of events, stays.

use rotation_events::{CommittedEvent, EventData, Profile, Subject, TypedEvent};

use super::Keyring;

/// The profile of a registration: opened from its sealed form, or as
/// committed in clear before sealing; `None` when there is none, or it
/// was erased, or it does not open.
pub fn profile_of(keyring: &Keyring, event: &CommittedEvent, data: &EventData) -> Option<Profile> {
    let EventData::ParticipantRegistered(d) = data else {
        return None;
    };
    if let Some(profile) = &d.profile {
        return Some(profile.clone());
    }
    let sealed = d.sealed_profile.as_ref()?;
    let Subject::Person(person) = event.envelope.subject else {
        return None;
    };
    let subject = event.envelope.subject.to_string();
    keyring
        .open_profile(person, event.envelope.id, &subject, sealed)
        .ok()
}

/// Opens a registration's sealed profile in place, for a fold.
pub fn open_typed(keyring: &Keyring, mut typed: TypedEvent) -> TypedEvent {
    if let Ok(EventData::ParticipantRegistered(d)) = &typed.data
        && d.sealed_profile.is_some()
    {
        let opened = typed
            .data
            .as_ref()
            .ok()
            .and_then(|data| profile_of(keyring, &typed.event, data));
        if let Ok(EventData::ParticipantRegistered(d)) = &mut typed.data {
            d.profile = opened;
            d.sealed_profile = None;
        }
    }
    typed
}
