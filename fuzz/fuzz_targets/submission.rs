//! The submission decoder: bytes as a publisher sends them, one CloudEvent
//! (structured mode) or a JSON array of them (batch mode), to a
//! `Submission`, and the envelope parser beneath it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotation_events::Envelope;
use rotation_ledger::auth::Caller;
use rotation_ledger::ledger::Submission;

fuzz_target!(|bytes: &[u8]| {
    let _ = Submission::from_json(bytes.to_vec(), "fuzz", Caller::operator());
    if let Ok((envelope, _)) = Envelope::from_json_typed(bytes) {
        let _ = envelope.data();
    }
});
