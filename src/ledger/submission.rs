//! What a publisher handed in: one event or an all-or-nothing batch,
//! parsed, framed (RFC 8785) and digested on the caller's thread, so that
//! the single writer spends its time only on what must be serial.

use rotation_events::{CommittedEvent, Envelope, EventData, LedgerAttributes};

use crate::auth::Caller;
use crate::chain;
use crate::rules::Violation;
use rotation_events::ErrorCode;

/// What a publisher handed in, with where it came from: one event or an
/// all-or-nothing batch.
///
/// It is parsed when it is made, on the caller's thread, so that the single
/// writer spends its time only on what must be serial.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The bytes as received; `None` for events made in-process.
    pub(super) body: Option<Vec<u8>>,
    /// The envelopes' attributes; their `data` is in `framed` and `typed`.
    pub(super) envelopes: Vec<Envelope>,
    /// The RFC 8785 form of each envelope, made once here so that the
    /// writer only adds its own attributes.
    pub(super) framed: Vec<chain::Framed>,
    /// Each envelope's typed data, upcast: read here rather than by the writer.
    pub(super) typed: Vec<EventData>,
    /// SHA-256 of each envelope's canonical JSON, for idempotency.
    pub(super) digests: Vec<[u8; 32]>,
    /// Why the bytes are not a well-formed event or batch.
    pub(super) parse_error: Option<Violation>,
    /// When they are not: the `id` string of each event in the body, as
    /// far as it reads, so that the refusal is answered and kept under the
    /// ids the publisher gave; and which event was refused.
    pub(super) unparsed: Unparsed,
    /// The clear `data` of each registration that carries a profile, by
    /// index, until [`Submission::seal`] replaces it by its sealed form.
    pub(super) clear_profiles: Vec<(usize, serde_json::Value)>,
    /// The people whose data keys sealed something of this submission:
    /// the writer commits each new key with the submission's events or
    /// its rejection.
    pub(super) sealed_for: Vec<uuid::Uuid>,
    /// Made by the ledger itself (an erasure): only such a submission may
    /// hold a `jobrotation.person.erased`.
    pub(super) by_ledger: bool,
    /// Which events came with a `sealed_profile` of their own (set by
    /// [`Submission::seal`] before the ledger seals anything).
    pub(super) partner_sealed: Vec<bool>,
    /// Where it came from, for the rejection log: `http`, `nats:<subject>`,
    /// `import:<file>:<line>`.
    pub origin: String,
    pub caller: Caller,
    /// The partnership the transport names (NATS subjects do), used for
    /// rejections that cannot be parsed far enough to name one.
    pub partnership_hint: Option<String>,
    /// For a restore: the ledger attributes each event was committed
    /// with, which the writer keeps (position, recorded time, hashes)
    /// instead of making its own.
    pub(super) replica: Vec<LedgerAttributes>,
}

impl Submission {
    /// Bytes as received: one CloudEvent or a JSON array of them.
    pub fn from_json(body: Vec<u8>, origin: impl Into<String>, caller: Caller) -> Self {
        let (parsed, parse_error, unparsed) = parse_body(&body);
        let (envelopes, typed) = parsed.into_iter().unzip();
        Self {
            unparsed,
            ..Self::new(
                Some(body),
                envelopes,
                typed,
                parse_error,
                origin.into(),
                caller,
            )
        }
    }

    /// Events already parsed in-process (the simulator, the benchmarks).
    pub fn from_events(
        envelopes: Vec<Envelope>,
        origin: impl Into<String>,
        caller: Caller,
    ) -> Self {
        let mut typed = Vec::with_capacity(envelopes.len());
        let mut parse_error = None;
        for envelope in &envelopes {
            match envelope.data() {
                Ok(data) => typed.push(data),
                Err(e) => {
                    parse_error.get_or_insert(Violation::new(ErrorCode::InvalidEvent, e.0));
                }
            }
        }
        Self::new(None, envelopes, typed, parse_error, origin.into(), caller)
    }

    /// `typed`: each envelope's typed data, as far as it reads; a
    /// submission whose data does not read all carries a `parse_error`.
    fn new(
        body: Option<Vec<u8>>,
        mut envelopes: Vec<Envelope>,
        typed: Vec<EventData>,
        parse_error: Option<Violation>,
        origin: String,
        caller: Caller,
    ) -> Self {
        let framed: Vec<chain::Framed> = envelopes
            .iter()
            .map(|e| chain::Framed::new(e, &chain::canonical_data(e)))
            .collect();
        let digests = framed.iter().map(chain::Framed::digest).collect();
        let clear_profiles = envelopes
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.data.get("profile").is_some_and(|p| !p.is_null()))
            .map(|(i, e)| (i, std::mem::take(&mut e.data)))
            .collect();
        // `data` lives on in `framed` and `typed`; its tree is freed here,
        // on the thread that made it, rather than by the writer.
        for envelope in &mut envelopes {
            envelope.data = serde_json::Value::Null;
        }
        Self {
            body,
            envelopes,
            framed,
            typed,
            digests,
            parse_error,
            unparsed: Unparsed::default(),
            clear_profiles,
            sealed_for: Vec::new(),
            by_ledger: false,
            partner_sealed: Vec::new(),
            origin,
            caller,
            partnership_hint: None,
            replica: Vec::new(),
        }
    }

    /// An event committed by this ledger before, to be committed again as
    /// it was (a restore): same position, recorded time and hashes. Made
    /// by the ledger itself, and never sealed again.
    pub(super) fn committed(event: CommittedEvent, origin: impl Into<String>) -> Self {
        let CommittedEvent { envelope, ledger } = event;
        let mut submission = Self::from_events(vec![envelope], origin, Caller::operator());
        submission.by_ledger = true;
        submission.replica = vec![ledger];
        // A key installed from a group's bucket is stored with the first
        // event sealed under it, as the writer stored it.
        if let (Some(EventData::ParticipantRegistered(data)), Some(envelope)) =
            (submission.typed.first(), submission.envelopes.first())
            && data.sealed_profile.is_some()
            && let rotation_events::Subject::Person(person) = envelope.subject
        {
            submission.sealed_for.push(person);
        }
        submission
    }

    pub fn with_partnership_hint(mut self, partnership: impl Into<String>) -> Self {
        self.partnership_hint = Some(partnership.into());
        self
    }
}

/// The ids of a body that did not parse as a whole.
#[derive(Debug, Clone, Default)]
pub(super) struct Unparsed {
    /// Each event's `id`, when it holds one as a JSON string; empty when
    /// the body is not even a JSON array or object.
    pub(super) ids: Vec<Option<String>>,
    /// The index of the event refused.
    pub(super) failed: usize,
}

impl Unparsed {
    pub(super) fn failed_id(&self) -> Option<String> {
        self.ids.get(self.failed).cloned().flatten()
    }
}

/// The `id` of one event's bytes, when they are a JSON object holding it
/// as a string, whatever else is wrong with them.
fn submitted_id(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Id>(bytes).ok()?.id? {
        serde_json::Value::String(id) => Some(id),
        _ => None,
    }
}

/// Parses a body into envelopes with their typed data. An unparseable
/// event rejects the whole submission; the envelopes that did parse are
/// still returned, and every event's id as far as it reads, so that their
/// receipts can name them.
fn parse_body(bytes: &[u8]) -> (Vec<(Envelope, EventData)>, Option<Violation>, Unparsed) {
    let invalid = |message: String| Some(Violation::new(ErrorCode::InvalidEvent, message));
    if bytes.trim_ascii_start().first() != Some(&b'[') {
        return match Envelope::from_json_typed(bytes) {
            Ok(parsed) => (vec![parsed], None, Unparsed::default()),
            Err(e) => {
                let ids = vec![submitted_id(bytes)];
                (Vec::new(), invalid(e.0), Unparsed { ids, failed: 0 })
            }
        };
    }
    let items: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(bytes) {
        Ok(items) => items,
        Err(e) => {
            let error = invalid(format!("not JSON: {e}"));
            return (Vec::new(), error, Unparsed::default());
        }
    };
    if items.is_empty() {
        let error = invalid("an empty batch holds no events".into());
        return (Vec::new(), error, Unparsed::default());
    }
    let mut parsed = Vec::with_capacity(items.len());
    let mut error = None;
    let mut unparsed = Unparsed::default();
    for (i, item) in items.iter().enumerate() {
        match Envelope::from_json_typed(item.get().as_bytes()) {
            Ok(event) => parsed.push(event),
            Err(e) if error.is_none() => {
                error = invalid(format!("[{i}] {}", e.0));
                unparsed.failed = i;
            }
            Err(_) => {}
        }
    }
    if error.is_some() {
        unparsed.ids = items
            .iter()
            .map(|item| submitted_id(item.get().as_bytes()))
            .collect();
    }
    (parsed, error, unparsed)
}
