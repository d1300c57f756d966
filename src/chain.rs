//! The hash chain (contract section 2): `hash = SHA-256(prevhash_bytes ||
//! JCS(event without hash))`, with 32 zero bytes before position 1.
//!
//! Both the append path and `verify` compute hashes here and nowhere else.
//!
//! RFC 8785 canonicalisation costs tens of microseconds an event with any
//! general-purpose implementation, which would cap the writer far below
//! sled's speed. The envelope's shape is fixed, though: its attribute names
//! are ASCII and known, its integers are below 2^53, and serde_json escapes
//! strings exactly as RFC 8785 does. So only `data`, whose shape is the
//! publisher's, is canonicalised as a whole ([`canonical_data`], done once
//! per event on the submitter's thread); [`Framed`] writes the top level
//! around it in the canonical key order, and the ledger's attributes are
//! written into their places when the event is sealed or verified. A
//! property test holds this equal to the crate's canonicalisation of the
//! whole event.

use std::io::Write;

use rotation_events::{CommittedEvent, Envelope, LedgerAttributes};
use sha2::{Digest, Sha256};

/// The `prevhash` of position 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The RFC 8785 form of an event's `data`.
///
/// Most data is objects with ASCII keys, strings and safe integers, whose
/// compact serde_json form already is the RFC 8785 form: serde_json's maps
/// iterate in byte order (UTF-16 order, for ASCII keys), it escapes strings
/// exactly as RFC 8785 does, and it writes such integers as ECMAScript
/// does. Only data with floats, larger integers, non-ASCII keys or keys
/// out of order goes through the JCS crate, which costs several times as
/// much.
pub fn canonical_data(envelope: &Envelope) -> Vec<u8> {
    canonical_json(&envelope.data)
}

/// The RFC 8785 form of a JSON value (see [`canonical_data`]).
fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    if written_canonically(value) {
        return serde_json::to_vec(value).expect("a JSON value always serialises");
    }
    serde_json_canonicalizer::to_vec(value).expect("JSON data always canonicalises")
}

/// Whether serde_json's compact form of `value` is its RFC 8785 form.
fn written_canonically(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    // Integers up to 2^53 are doubles exactly, written digit for digit.
    const SAFE: u64 = 1 << 53;
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => n.as_u64().map_or_else(
            || n.as_i64().is_some_and(|n| n.unsigned_abs() <= SAFE),
            |n| n <= SAFE,
        ),
        Value::Array(items) => items.iter().all(written_canonically),
        // Maps iterate in key order unless serde_json's `preserve_order`
        // is on (a feature any dependency could turn on): the order is
        // checked, not assumed.
        Value::Object(map) => {
            let mut previous: Option<&str> = None;
            map.iter().all(|(key, value)| {
                let in_order = previous.is_none_or(|p| p < key.as_str());
                previous = Some(key);
                in_order && key.is_ascii() && written_canonically(value)
            })
        }
    }
}

/// A submitted event's RFC 8785 form, with the places where the ledger's
/// attributes go: made once, on the submitter's thread, for both the
/// idempotency digest and the writer's [`seal`].
#[derive(Debug, Clone)]
pub struct Framed {
    canonical: Vec<u8>,
    /// Offsets of the `"id"`, `"source"` and `"subject"` keys: `hash` sorts
    /// just before the first, `position`, `prevhash` and `recordedtime`
    /// before the second, `streamversion` before the third.
    id_at: usize,
    source_at: usize,
    subject_at: usize,
}

impl Framed {
    /// Frames an envelope whose `data` is [`canonical_data`], writing the
    /// top level around it in the canonical key order.
    pub fn new(envelope: &Envelope, data: &[u8]) -> Self {
        let mut out = Vec::with_capacity(data.len() + 512);
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, name: &str| {
            out.push(if first { b'{' } else { b',' });
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
        };
        let string = |out: &mut Vec<u8>, value: &str| {
            serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
        };
        // Keys in RFC 8785 order: by UTF-16 code units, which for ASCII
        // names is byte order.
        if let Some(v) = &envelope.causationid {
            key(&mut out, "causationid");
            string(&mut out, v);
        }
        if let Some(v) = &envelope.correlationid {
            key(&mut out, "correlationid");
            string(&mut out, v);
        }
        key(&mut out, "data");
        out.extend_from_slice(data);
        if let Some(v) = &envelope.datacontenttype {
            key(&mut out, "datacontenttype");
            string(&mut out, v);
        }
        if let Some(v) = envelope.expectedversion {
            key(&mut out, "expectedversion");
            write!(out, "{v}").expect("writing to a Vec cannot fail");
        }
        // `key` writes the separator first; none of the marked keys is
        // first (`data` is always before them), so each mark falls just
        // after a comma.
        let id_at = out.len() + 1;
        key(&mut out, "id");
        string(
            &mut out,
            envelope
                .id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
        key(&mut out, "partnership");
        string(&mut out, &envelope.partnership);
        let source_at = out.len() + 1;
        key(&mut out, "source");
        string(&mut out, &envelope.source);
        key(&mut out, "specversion");
        string(&mut out, "1.0");
        let subject_at = out.len() + 1;
        key(&mut out, "subject");
        string(&mut out, &envelope.subject.key());
        key(&mut out, "time");
        string(&mut out, &envelope.time_text);
        key(&mut out, "type");
        string(&mut out, envelope.event_type.as_str());
        out.push(b'}');
        Self {
            canonical: out,
            id_at,
            source_at,
            subject_at,
        }
    }

    /// The form itself: the event's RFC 8785 JSON without the ledger's
    /// attributes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// SHA-256 of the form: the content that idempotency compares.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.canonical).into()
    }

    /// The committed event's form without `hash`: this form with the
    /// ledger's attributes written into their places.
    fn with_ledger(&self, ledger: &LedgerAttributes) -> Committed<'_> {
        let place = Place::of(ledger);
        let mut attributes = Vec::with_capacity(160);
        write_attributes(&mut attributes, place, &ledger.prevhash);
        let mut streamversion = Vec::with_capacity(32);
        write_streamversion(&mut streamversion, place);
        Committed {
            framed: self,
            attributes,
            streamversion,
        }
    }
}

/// Writes `position`, `prevhash` and `recordedtime`, each followed by a
/// comma: the ledger's attributes that sort between `id` and `source`.
fn write_attributes(out: &mut Vec<u8>, place: Place<'_>, prevhash: &str) {
    out.extend_from_slice(b"\"position\":");
    out.extend_from_slice(itoa::Buffer::new().format(place.position).as_bytes());
    out.extend_from_slice(b",\"prevhash\":");
    serde_json::to_writer(&mut *out, prevhash).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"recordedtime\":");
    serde_json::to_writer(&mut *out, place.recordedtime).expect("writing to a Vec cannot fail");
    out.push(b',');
}

/// Writes `streamversion` followed by a comma: the ledger's attribute
/// that sorts just before `subject`.
fn write_streamversion(out: &mut Vec<u8>, place: Place<'_>) {
    out.extend_from_slice(b"\"streamversion\":");
    out.extend_from_slice(itoa::Buffer::new().format(place.streamversion).as_bytes());
    out.push(b',');
}

/// A committed event's RFC 8785 form without `hash`, in pieces: a framed
/// form and the ledger's attributes, never copied into one buffer.
struct Committed<'a> {
    framed: &'a Framed,
    /// `position`, `prevhash` and `recordedtime`, each followed by a comma.
    attributes: Vec<u8>,
    /// `streamversion`, followed by a comma.
    streamversion: Vec<u8>,
}

impl Committed<'_> {
    /// The pieces in order; `hash` goes between the first two.
    fn pieces(&self) -> [&[u8]; 6] {
        let Framed {
            canonical: c,
            id_at,
            source_at,
            subject_at,
        } = self.framed;
        [
            &c[..*id_at],
            &c[*id_at..*source_at],
            &self.attributes,
            &c[*source_at..*subject_at],
            &self.streamversion,
            &c[*subject_at..],
        ]
    }

    /// SHA-256 of `prevhash`'s bytes followed by the pieces, in hex.
    fn hash(&self, prevhash: &str) -> String {
        let mut text = [0u8; 64];
        hex::encode_to_slice(chained(prevhash, &self.pieces()), &mut text)
            .expect("a SHA-256 is 64 hex digits");
        String::from_utf8(text.to_vec()).expect("hex digits are UTF-8")
    }
}

/// SHA-256 of `prevhash`'s bytes followed by `runs`.
fn chained(prevhash: &str, runs: &[&[u8]]) -> [u8; 32] {
    let mut previous = [0u8; 32];
    match hex::decode_to_slice(prevhash, &mut previous) {
        Ok(()) => chained_after(&previous, runs),
        // Only a damaged log has another `prevhash`: hash what it holds.
        Err(_) => chained_after(&hex::decode(prevhash).unwrap_or_default(), runs),
    }
}

/// SHA-256 of the previous hash's bytes followed by `runs`.
fn chained_after(previous: &[u8], runs: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    for run in runs {
        hasher.update(run);
    }
    hasher.finalize().into()
}

/// Where a sealed event goes: the ledger's attributes other than the
/// hashes.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub position: u64,
    pub streamversion: u64,
    pub recordedtime: &'a str,
}

impl<'a> Place<'a> {
    /// The place a committed event's attributes name.
    pub fn of(ledger: &'a LedgerAttributes) -> Self {
        Self {
            position: ledger.position,
            streamversion: ledger.streamversion,
            recordedtime: &ledger.recordedtime,
        }
    }
}

/// A sealed event: its hash, as stored and as bytes (the next event's
/// `prevhash` and the event's Merkle leaf), and the JSON to store.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Lower-case hex.
    pub hash: String,
    pub digest: [u8; 32],
    pub json: Vec<u8>,
}

/// Seals an event at `place` onto the chain after the event whose hash is
/// `previous`: returns its hash and the JSON to store, which is the
/// RFC 8785 form of the whole committed event (so the stored bytes without
/// `hash` are exactly the bytes the hash covers). Only the ledger's
/// attributes are written here; the rest is copied from the framed form,
/// straight into the stored buffer.
pub fn seal(framed: &Framed, place: Place<'_>, previous: &[u8; 32]) -> Sealed {
    const MEMBER: &[u8] = b"\"hash\":\"";
    let Framed {
        canonical: c,
        id_at,
        source_at,
        subject_at,
    } = framed;
    let mut stored = Vec::with_capacity(c.len() + 300);
    stored.extend_from_slice(&c[..*id_at]);
    let head = stored.len();
    stored.extend_from_slice(MEMBER);
    let at = stored.len();
    stored.extend_from_slice(&[b'0'; 64]);
    stored.extend_from_slice(b"\",");
    let after = stored.len();
    stored.extend_from_slice(&c[*id_at..*source_at]);
    let mut text = [0u8; 64];
    hex::encode_to_slice(previous, &mut text).expect("a SHA-256 is 64 hex digits");
    let prevhash = std::str::from_utf8(&text).expect("hex digits are UTF-8");
    write_attributes(&mut stored, place, prevhash);
    stored.extend_from_slice(&c[*source_at..*subject_at]);
    write_streamversion(&mut stored, place);
    stored.extend_from_slice(&c[*subject_at..]);
    let digest = chained_after(previous, &[&stored[..head], &stored[after..]]);
    hex::encode_to_slice(digest, &mut text).expect("a SHA-256 is 64 hex digits");
    stored[at..at + 64].copy_from_slice(&text);
    let hash = String::from_utf8(text.to_vec()).expect("hex digits are UTF-8");
    Sealed {
        hash,
        digest,
        json: stored,
    }
}

/// The hash of a committed event, whose `prevhash` is already set, given
/// its [`canonical_data`].
fn hash_with(event: &CommittedEvent, data: &[u8]) -> String {
    Framed::new(&event.envelope, data)
        .with_ledger(&event.ledger)
        .hash(&event.ledger.prevhash)
}

/// The hash of a committed event whose `prevhash` is already set.
pub fn hash(event: &CommittedEvent) -> String {
    hash_with(event, &canonical_data(&event.envelope))
}

/// SHA-256 of an envelope's canonical form: the content that idempotency
/// compares, given its [`canonical_data`].
pub fn digest(envelope: &Envelope, data: &[u8]) -> [u8; 32] {
    Framed::new(envelope, data).digest()
}

/// The result of checking a chain from position 1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub head_position: u64,
    pub head_hash: String,
    pub first_bad_position: Option<u64>,
    /// Why the first bad position is bad; absent when the chain is sound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Checks events in position order, as a fold: feed every event, then
/// [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    expected_position: u64,
    prevhash: String,
    bad: Option<(u64, String)>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            expected_position: 1,
            prevhash: GENESIS.to_owned(),
            bad: None,
        }
    }
}

impl Verifier {
    /// A verifier of the events that follow a head already verified: the
    /// next must take the position after `position` and name `hash` as its
    /// `prevhash` (the genesis hash for an empty log).
    pub fn after(position: u64, hash: &str) -> Self {
        Self {
            expected_position: position + 1,
            prevhash: hash.to_owned(),
            bad: None,
        }
    }

    /// Checks one stored event. `decoded` is the event decoded from the
    /// bytes stored at `position`, or why it could not be decoded.
    pub fn check(&mut self, position: u64, decoded: Result<&CommittedEvent, String>) {
        if self.bad.is_some() {
            return;
        }
        let problem = match decoded {
            Err(message) => Some(format!("undecodable: {message}")),
            Ok(_) if position != self.expected_position => Some(format!(
                "expected position {}, found {position}",
                self.expected_position
            )),
            Ok(event) if event.ledger.position != position => Some(format!(
                "stored under position {position} but says {}",
                event.ledger.position
            )),
            Ok(event) if event.ledger.prevhash != self.prevhash => {
                Some("prevhash does not match the previous event's hash".to_owned())
            }
            Ok(event) => {
                let recomputed = hash(event);
                if recomputed == event.ledger.hash {
                    self.prevhash = recomputed;
                    None
                } else {
                    Some("hash does not match the event's content".to_owned())
                }
            }
        };
        match problem {
            Some(problem) => self.bad = Some((position.min(self.expected_position), problem)),
            None => self.expected_position += 1,
        }
    }

    /// The first bad position found so far, and why, if any.
    pub fn problem(&self) -> Option<(u64, &str)> {
        self.bad
            .as_ref()
            .map(|(position, why)| (*position, why.as_str()))
    }

    /// The verdict, given the head the store records.
    pub fn finish(self, head_position: u64, head_hash: &str) -> Verification {
        let mut bad = self.bad;
        if bad.is_none() && self.expected_position - 1 != head_position {
            bad = Some((
                self.expected_position,
                format!(
                    "the log ends at {} but the head says {head_position}",
                    self.expected_position - 1
                ),
            ));
        }
        if bad.is_none() && self.prevhash != head_hash {
            bad = Some((
                head_position,
                "the head's hash differs from the last event's".to_owned(),
            ));
        }
        Verification {
            ok: bad.is_none(),
            head_position,
            head_hash: head_hash.to_owned(),
            first_bad_position: bad.as_ref().map(|b| b.0),
            problem: bad.map(|b| b.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rotation_events::{EventType, Subject};
    use serde_json::Value;

    /// Any JSON a publisher could send as `data`: nested objects with
    /// non-ASCII keys, integral and fractional floats, escapes.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::from(n % (1 << 53))),
            // Integers a double cannot hold, which RFC 8785 rounds.
            prop_oneof![
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from)
            ],
            prop_oneof![Just(1u64 << 53), Just((1 << 53) + 1)].prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            prop_oneof![Just(37.0f64), Just(7.5), Just(1e-7), Just(1e21), Just(-0.0)]
                .prop_map(Value::from),
            "[ -~\u{0}-\u{1f}é€😀\u{e000}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_é😀\u{e000}]{1,6}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Keys come out sorted whatever order they were received in.
    #[test]
    fn canonical_data_sorts_keys_received_out_of_order() {
        let data: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[true,null],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical_json(&data),
            br#"{"a":{"c":"x","d":[true,null]},"b":1}"#
        );
    }

    proptest! {
        /// The fast path of [`canonical_data`] writes what the JCS crate
        /// writes, for every kind of data, and takes the data it should.
        #[test]
        fn canonical_data_equals_the_crate(data in json_value()) {
            let ours = canonical_json(&data);
            let crate_form = serde_json_canonicalizer::to_vec(&data).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&crate_form));
        }

        /// The framed canonical form equals the JCS crate's form of the
        /// whole committed event, so that anyone recomputing the chain with
        /// any RFC 8785 implementation gets the same hashes.
        #[test]
        fn framing_equals_full_canonicalisation(
            data in json_value(),
            text in "[ -~é\u{1}\"\\\\]{1,20}",
            expected in proptest::option::of(0u64..(1 << 53)),
            optional in any::<bool>(),
            position in 1u64..(1 << 53),
            previous in any::<[u8; 32]>(),
        ) {
            let envelope = Envelope {
                id: uuid::Uuid::from_u128(position.into()),
                source: format!("urn:{text}"),
                event_type: EventType::MentoringSession,
                subject: Subject::Person(uuid::Uuid::from_u128(7)),
                time_text: "2026-01-01T00:00:00+01:00".into(),
                time: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00+01:00")
                    .unwrap()
                    .to_utc(),
                partnership: "stoke".into(),
                datacontenttype: optional.then(|| "application/json".to_owned()),
                expectedversion: expected,
                correlationid: optional.then(|| text.clone()),
                causationid: (!optional).then(|| text.clone()),
                data,
            };
            let event = CommittedEvent {
                envelope,
                ledger: LedgerAttributes {
                    position,
                    streamversion: position / 2 + 1,
                    recordedtime: "2026-01-01T00:00:00.000001Z".into(),
                    prevhash: hex::encode(previous),
                    hash: String::new(),
                },
            };
            let framed = Framed::new(&event.envelope, &canonical_data(&event.envelope));
            let hashed = framed.with_ledger(&event.ledger).pieces().concat();
            let full = serde_json_canonicalizer::to_vec(&event.hashed_view()).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&hashed), String::from_utf8_lossy(&full));

            // Sealing stores the JCS form of the whole committed event,
            // hash included, and the hash is the chain's.
            let place = Place::of(&event.ledger);
            let Sealed { hash, digest, json: stored } = seal(&framed, place, &previous);
            prop_assert_eq!(hex::encode(digest), hash.clone());
            let mut sealed = event.clone();
            sealed.ledger.hash = hash.clone();
            prop_assert_eq!(&hash, &hash_with(&event, &canonical_data(&event.envelope)));
            let whole = serde_json_canonicalizer::to_vec(&sealed).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&stored), String::from_utf8_lossy(&whole));
            // Read back, it is the same event (as JCS sees it: `-0.0` is
            // stored as `0`, `37.0` as `37`).
            let read = CommittedEvent::from_json(&stored).unwrap();
            prop_assert_eq!(&read.ledger, &sealed.ledger);
            prop_assert_eq!(serde_json_canonicalizer::to_vec(&read).unwrap(), whole);
        }
    }
}
