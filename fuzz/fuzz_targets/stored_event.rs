//! The stored-event decoders: one line of the log as the store keeps it,
//! to a `CommittedEvent` (with its data upcast) and to a `TypedEvent`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotation_events::{CommittedEvent, TypedEvent};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(event) = CommittedEvent::from_json(bytes) {
        let _ = event.envelope.data();
    }
    let _ = TypedEvent::from_json(bytes);
});
