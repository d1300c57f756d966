//! The CloudEvents 1.0 envelope (structured JSON mode), as submitted by a
//! partner service and as committed by the ledger.
//!
//! Submitted events are parsed strictly: every attribute the contract names
//! is checked, unknown attributes are refused rather than dropped (nothing a
//! publisher sent is silently lost), and attributes the ledger sets are
//! refused on input. Committed events are decoded without re-validation: the
//! ledger validated them once, at intake, and the hash chain guards them
//! since.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::catalogue::{EventData, EventType};
use crate::unique_keys::UniqueKeys;

/// A submitted event that is not well-formed. The message names the
/// attribute or data field at fault; it maps to the contract's
/// `invalid_event` code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

impl InvalidEvent {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The four kinds of stream an event can belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Partnership,
    Employer,
    Person,
    Rotation,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Partnership => "partnership",
            Self::Employer => "employer",
            Self::Person => "person",
            Self::Rotation => "rotation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "partnership" => Some(Self::Partnership),
            "employer" => Some(Self::Employer),
            "person" => Some(Self::Person),
            "rotation" => Some(Self::Rotation),
            _ => None,
        }
    }
}

/// The stream an event belongs to: `partnership/<slug>`, `employer/<uuid>`,
/// `person/<uuid>` or `rotation/<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Partnership(String),
    Employer(Uuid),
    Person(Uuid),
    Rotation(Uuid),
}

impl Subject {
    pub fn kind(&self) -> SubjectKind {
        match self {
            Self::Partnership(_) => SubjectKind::Partnership,
            Self::Employer(_) => SubjectKind::Employer,
            Self::Person(_) => SubjectKind::Person,
            Self::Rotation(_) => SubjectKind::Rotation,
        }
    }

    /// Parses `<kind>/<id>`; the id is a slug for partnerships and a UUID
    /// for every other kind.
    pub fn parse(text: &str) -> Result<Self, InvalidEvent> {
        let (kind, id) = text.split_once('/').ok_or_else(|| {
            InvalidEvent::new(format!(
                "subject: `{text}` is not of the form `<kind>/<id>` (kind: partnership, employer, person or rotation)"
            ))
        })?;
        let kind = SubjectKind::parse(kind).ok_or_else(|| {
            InvalidEvent::new(format!(
                "subject: unknown stream kind `{kind}` (expected partnership, employer, person or rotation)"
            ))
        })?;
        let uuid = || {
            Uuid::parse_str(id)
                .map_err(|_| InvalidEvent::new(format!("subject: `{id}` is not a UUID")))
        };
        Ok(match kind {
            SubjectKind::Partnership => {
                check_slug(id).map_err(|m| InvalidEvent::new(format!("subject: {m}")))?;
                Self::Partnership(id.to_owned())
            }
            SubjectKind::Employer => Self::Employer(uuid()?),
            SubjectKind::Person => Self::Person(uuid()?),
            SubjectKind::Rotation => Self::Rotation(uuid()?),
        })
    }

    /// The entity's UUID, for every kind but partnership.
    pub fn uuid(&self) -> Option<Uuid> {
        match self {
            Self::Partnership(_) => None,
            Self::Employer(id) | Self::Person(id) | Self::Rotation(id) => Some(*id),
        }
    }

    /// The subject as written (`person/<uuid>`), as `to_string` gives it,
    /// made without the formatting machinery: the writer names a few
    /// streams for every event it decides.
    pub fn key(&self) -> String {
        let mut buffer = Uuid::encode_buffer();
        self.written(&mut buffer).concat()
    }

    /// The two pieces of the written form: `<kind>/` and the id, a UUID
    /// encoded into `buffer`.
    fn written<'a>(&'a self, buffer: &'a mut [u8]) -> [&'a str; 2] {
        let (kind, id) = match self {
            Self::Partnership(slug) => return ["partnership/", slug],
            Self::Employer(id) => ("employer/", id),
            Self::Person(id) => ("person/", id),
            Self::Rotation(id) => ("rotation/", id),
        };
        [kind, id.hyphenated().encode_lower(buffer)]
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = Uuid::encode_buffer();
        let [kind, id] = self.written(&mut buffer);
        f.write_str(kind)?;
        f.write_str(id)
    }
}

/// Checks a partnership slug: `[a-z0-9-]{1,40}`.
pub fn check_slug(slug: &str) -> Result<(), String> {
    let ok = !slug.is_empty()
        && slug.len() <= 40
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{slug}` is not a partnership slug (1 to 40 of a-z, 0-9 and -)"
        ))
    }
}

/// One event as a publisher submits it.
///
/// `data` is kept as the JSON the publisher sent, so that the committed
/// event (and therefore its hash) is exactly what was received; the typed
/// view is [`Envelope::data`], which also upcasts older shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: Uuid,
    pub source: String,
    pub event_type: EventType,
    pub subject: Subject,
    /// The publisher's text for `time`, kept verbatim.
    pub time_text: String,
    /// `time` parsed, in UTC: when it happened in the world.
    pub time: DateTime<Utc>,
    pub partnership: String,
    pub datacontenttype: Option<String>,
    pub expectedversion: Option<u64>,
    pub correlationid: Option<String>,
    pub causationid: Option<String>,
    pub data: Value,
}

/// The attributes the ledger adds when it commits an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAttributes {
    /// Global, 1-based and gap-free.
    pub position: u64,
    /// 1-based, per stream.
    pub streamversion: u64,
    /// RFC 3339, when the ledger committed the event.
    pub recordedtime: String,
    /// Lower-case hex SHA-256 of the previous event (64 zeros at position 1).
    pub prevhash: String,
    /// Lower-case hex SHA-256 of `prevhash` bytes followed by the JCS of this
    /// event without `hash`.
    pub hash: String,
}

/// An event as the ledger committed it: the envelope plus ledger attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedEvent {
    pub envelope: Envelope,
    pub ledger: LedgerAttributes,
}

/// The wire form: every attribute the contract knows, for both directions.
/// `data` is a JSON tree for submitted events, and JSON text for whole-log
/// replays ([`TypedEvent::from_json`]); the attributes that are
/// only parsed, never kept, are borrowed where the input allows it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a, D> {
    #[serde(borrow)]
    specversion: Cow<'a, str>,
    id: Uuid,
    source: String,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    subject: Cow<'a, str>,
    time: String,
    partnership: String,
    #[serde(default)]
    datacontenttype: Option<String>,
    #[serde(default)]
    expectedversion: Option<u64>,
    #[serde(default)]
    correlationid: Option<String>,
    #[serde(default)]
    causationid: Option<String>,
    data: D,
    #[serde(default)]
    position: Option<u64>,
    #[serde(default)]
    streamversion: Option<u64>,
    #[serde(default)]
    recordedtime: Option<String>,
    #[serde(default)]
    prevhash: Option<String>,
    #[serde(default)]
    hash: Option<String>,
}

impl<'a, D> Wire<'a, D> {
    /// The same attributes with `data` in another form.
    fn map_data<E>(self, f: impl FnOnce(D) -> E) -> Wire<'a, E> {
        Wire {
            specversion: self.specversion,
            id: self.id,
            source: self.source,
            event_type: self.event_type,
            subject: self.subject,
            time: self.time,
            partnership: self.partnership,
            datacontenttype: self.datacontenttype,
            expectedversion: self.expectedversion,
            correlationid: self.correlationid,
            causationid: self.causationid,
            data: f(self.data),
            position: self.position,
            streamversion: self.streamversion,
            recordedtime: self.recordedtime,
            prevhash: self.prevhash,
            hash: self.hash,
        }
    }
}

/// A committed event with its typed data read once, for folds: the JSON
/// tree of `data` is not kept (`event.envelope.data` is [`Value::Null`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TypedEvent {
    pub event: CommittedEvent,
    /// The typed data, or why the stored data does not read as its type.
    pub data: Result<EventData, InvalidEvent>,
}

impl TypedEvent {
    /// Reads the typed data of a decoded event, then drops its JSON tree.
    pub fn new(mut event: CommittedEvent) -> Self {
        let data = event.envelope.data();
        event.envelope.data = Value::Null;
        Self { event, data }
    }

    /// Decodes a stored event straight into its typed form, without ever
    /// building the JSON tree of its data: the fast path of whole-log
    /// replays.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        // One UTF-8 check of the whole line, rather than one per string.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| InvalidEvent::new(format!("not a committed event: {e}")))?;
        let wire: Wire<'_, &serde_json::value::RawValue> = serde_json::from_str(text)
            .map_err(|e| InvalidEvent::new(format!("not a committed event: {e}")))?;
        let (event, raw) = CommittedEvent::from_wire(wire)?;
        let data = EventData::from_json_str(event.envelope.event_type, raw.get());
        Ok(Self { event, data })
    }
}

/// Why a JSON object is not a CloudEvent, at `path` (`.` for the whole).
fn not_a_cloudevent(path: &str, error: &dyn std::fmt::Display) -> InvalidEvent {
    if path == "." {
        InvalidEvent::new(format!("not a CloudEvent: {error}"))
    } else {
        InvalidEvent::new(format!("{path}: {error}"))
    }
}

/// The largest integer a JSON number holds exactly (RFC 8785 numbers are
/// IEEE 754 doubles).
pub const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// How far ahead of the ledger's clock an effective time may lie.
pub const MAX_FUTURE: TimeDelta = TimeDelta::hours(24);

impl Envelope {
    /// Parses and checks one submitted event from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        Self::from_json_typed(bytes).map(|(envelope, _)| envelope)
    }

    /// Parses and checks one submitted event from a JSON value.
    pub fn from_value(value: Value) -> Result<Self, InvalidEvent> {
        Self::from_value_typed(value).map(|(envelope, _)| envelope)
    }

    /// [`Envelope::from_json`], with the typed data that checking it read
    /// (upcast), so that nobody reads it twice. The envelope's attributes
    /// are read straight from the bytes; only `data` becomes a tree.
    pub fn from_json_typed(bytes: &[u8]) -> Result<(Self, EventData), InvalidEvent> {
        // An event that reads is read without tracking the path; only one
        // that does not is read again, tracking it, to name the field.
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        // `data`'s keys are checked to be unique, as the attributes' are.
        let wire = match Wire::<'_, UniqueKeys>::deserialize(&mut deserializer) {
            Ok(wire) => Ok(wire),
            Err(_) => {
                deserializer = serde_json::Deserializer::from_slice(bytes);
                serde_path_to_error::deserialize(&mut deserializer)
            }
        };
        let wire = wire.map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if !matches!(inner.classify(), serde_json::error::Category::Data) {
                InvalidEvent::new(format!("not JSON: {inner}"))
            } else if bytes.trim_ascii_start().first() != Some(&b'{') {
                InvalidEvent::new("a CloudEvent is a JSON object (structured mode)")
            } else {
                not_a_cloudevent(&path, &inner)
            }
        })?;
        deserializer
            .end()
            .map_err(|e| InvalidEvent::new(format!("not JSON: {e}")))?;
        Self::checked(wire.map_data(|data| data.0))
    }

    /// [`Envelope::from_value`], with the typed data (see
    /// [`Envelope::from_json_typed`]).
    pub fn from_value_typed(value: Value) -> Result<(Self, EventData), InvalidEvent> {
        if !value.is_object() {
            return Err(InvalidEvent::new(
                "a CloudEvent is a JSON object (structured mode)",
            ));
        }
        let wire: Wire<'_, Value> = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            not_a_cloudevent(&path, &e.into_inner())
        })?;
        Self::checked(wire)
    }

    /// The checks of a submitted event beyond its shape.
    fn checked(wire: Wire<'_, Value>) -> Result<(Self, EventData), InvalidEvent> {
        for (name, present) in [
            ("position", wire.position.is_some()),
            ("streamversion", wire.streamversion.is_some()),
            ("recordedtime", wire.recordedtime.is_some()),
            ("prevhash", wire.prevhash.is_some()),
            ("hash", wire.hash.is_some()),
        ] {
            if present {
                return Err(InvalidEvent::new(format!(
                    "{name}: set by the ledger, not by publishers"
                )));
            }
        }
        if wire.specversion != "1.0" {
            return Err(InvalidEvent::new(format!(
                "specversion: `{}` is not supported (expected \"1.0\")",
                wire.specversion
            )));
        }
        if wire.source.trim().is_empty() || wire.source.chars().any(char::is_whitespace) {
            return Err(InvalidEvent::new(
                "source: must be a non-empty URI reference, e.g. urn:service:stoke-jobcentre",
            ));
        }
        let event_type = EventType::parse(&wire.event_type).ok_or_else(|| {
            InvalidEvent::new(format!("type: unknown event type `{}`", wire.event_type))
        })?;
        check_slug(&wire.partnership)
            .map_err(|m| InvalidEvent::new(format!("partnership: {m}")))?;
        let subject = Subject::parse(&wire.subject)?;
        if let Some(kind) = event_type.subject_kind()
            && subject.kind() != kind
        {
            return Err(InvalidEvent::new(format!(
                "subject: `{}` events belong to `{}/…` streams, not `{}`",
                event_type.as_str(),
                kind.as_str(),
                wire.subject
            )));
        }
        if let Subject::Partnership(slug) = &subject
            && *slug != wire.partnership
        {
            return Err(InvalidEvent::new(format!(
                "subject: partnership stream `{slug}` differs from the partnership attribute `{}`",
                wire.partnership
            )));
        }
        if wire.expectedversion.is_some_and(|v| v > MAX_SAFE_INTEGER) {
            return Err(InvalidEvent::new(
                "expectedversion: must be at most 2^53 (JSON numbers are doubles)",
            ));
        }
        let time = DateTime::parse_from_rfc3339(&wire.time)
            .map_err(|e| InvalidEvent::new(format!("time: `{}` is not RFC 3339 ({e})", wire.time)))?
            .with_timezone(&Utc);
        if let Some(ct) = &wire.datacontenttype
            && ct != "application/json"
        {
            return Err(InvalidEvent::new(format!(
                "datacontenttype: `{ct}` is not supported (expected application/json)"
            )));
        }
        let envelope = Self {
            id: wire.id,
            source: wire.source,
            event_type,
            subject,
            time_text: wire.time,
            time,
            partnership: wire.partnership,
            datacontenttype: wire.datacontenttype,
            expectedversion: wire.expectedversion,
            correlationid: wire.correlationid,
            causationid: wire.causationid,
            data: wire.data,
        };
        let data = envelope.data()?;
        data.check(envelope.time.date_naive())?;
        Ok((envelope, data))
    }

    /// The typed data, upcast from older shapes where needed.
    pub fn data(&self) -> Result<EventData, InvalidEvent> {
        EventData::from_value(self.event_type, &self.data)
    }

    /// The UTC date of the effective time; the contract's definitions count
    /// in these.
    pub fn date(&self) -> NaiveDate {
        self.time.date_naive()
    }

    /// Refuses an effective time more than [`MAX_FUTURE`] after `now`.
    pub fn check_time(&self, now: DateTime<Utc>) -> Result<(), InvalidEvent> {
        if self.time > now + MAX_FUTURE {
            return Err(InvalidEvent::new(format!(
                "time: `{}` lies more than 24 h in the future",
                self.time_text
            )));
        }
        Ok(())
    }

    /// The envelope as JSON, exactly the attributes a publisher sets.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(View {
            envelope: self,
            ledger: None,
            with_hash: false,
        })
        .expect("an envelope always serialises")
    }
}

impl CommittedEvent {
    /// Decodes a committed event as stored or published by the ledger.
    /// Older data shapes are upcast when [`Envelope::data`] is called.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        // One UTF-8 check of the whole line, rather than one per string.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| InvalidEvent::new(format!("not a committed event: {e}")))?;
        let wire: Wire<'_, Value> = serde_json::from_str(text)
            .map_err(|e| InvalidEvent::new(format!("not a committed event: {e}")))?;
        let (mut event, data) = Self::from_wire(wire)?;
        event.envelope.data = data;
        Ok(event)
    }

    /// The event from its wire form, `data` aside (the event's is null).
    fn from_wire<D>(wire: Wire<'_, D>) -> Result<(Self, D), InvalidEvent> {
        let missing =
            |name: &str| InvalidEvent::new(format!("{name}: missing in a committed event"));
        let ledger = LedgerAttributes {
            position: wire.position.ok_or_else(|| missing("position"))?,
            streamversion: wire.streamversion.ok_or_else(|| missing("streamversion"))?,
            recordedtime: wire.recordedtime.ok_or_else(|| missing("recordedtime"))?,
            prevhash: wire.prevhash.ok_or_else(|| missing("prevhash"))?,
            hash: wire.hash.ok_or_else(|| missing("hash"))?,
        };
        let event_type = EventType::parse(&wire.event_type).ok_or_else(|| {
            InvalidEvent::new(format!("type: unknown event type `{}`", wire.event_type))
        })?;
        let time = DateTime::parse_from_rfc3339(&wire.time)
            .map_err(|e| InvalidEvent::new(format!("time: {e}")))?
            .with_timezone(&Utc);
        let event = Self {
            envelope: Envelope {
                id: wire.id,
                source: wire.source,
                event_type,
                subject: Subject::parse(&wire.subject)?,
                time_text: wire.time,
                time,
                partnership: wire.partnership,
                datacontenttype: wire.datacontenttype,
                expectedversion: wire.expectedversion,
                correlationid: wire.correlationid,
                causationid: wire.causationid,
                data: Value::Null,
            },
            ledger,
        };
        Ok((event, wire.data))
    }

    /// The value the hash covers: the committed event without `hash`.
    pub fn hashed_view(&self) -> impl Serialize + '_ {
        View {
            envelope: &self.envelope,
            ledger: Some(&self.ledger),
            with_hash: false,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a committed event always serialises")
    }
}

impl Serialize for CommittedEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        View {
            envelope: &self.envelope,
            ledger: Some(&self.ledger),
            with_hash: true,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CommittedEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire: Wire<'de, Value> = Wire::deserialize(deserializer)?;
        let (mut event, data) = Self::from_wire(wire).map_err(D::Error::custom)?;
        event.envelope.data = data;
        Ok(event)
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        View {
            envelope: self,
            ledger: None,
            with_hash: false,
        }
        .serialize(serializer)
    }
}

/// One serialiser for every outward form, so that the attributes are
/// written the same way whether hashed, stored or returned.
struct View<'a> {
    envelope: &'a Envelope,
    ledger: Option<&'a LedgerAttributes>,
    with_hash: bool,
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.envelope;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", "1.0")?;
        map.serialize_entry("id", &e.id)?;
        map.serialize_entry("source", &e.source)?;
        map.serialize_entry("type", e.event_type.as_str())?;
        map.serialize_entry("subject", &e.subject.to_string())?;
        map.serialize_entry("time", &e.time_text)?;
        map.serialize_entry("partnership", &e.partnership)?;
        if let Some(v) = &e.datacontenttype {
            map.serialize_entry("datacontenttype", v)?;
        }
        if let Some(v) = &e.expectedversion {
            map.serialize_entry("expectedversion", v)?;
        }
        if let Some(v) = &e.correlationid {
            map.serialize_entry("correlationid", v)?;
        }
        if let Some(v) = &e.causationid {
            map.serialize_entry("causationid", v)?;
        }
        if let Some(l) = self.ledger {
            map.serialize_entry("position", &l.position)?;
            map.serialize_entry("streamversion", &l.streamversion)?;
            map.serialize_entry("recordedtime", &l.recordedtime)?;
            map.serialize_entry("prevhash", &l.prevhash)?;
            if self.with_hash {
                map.serialize_entry("hash", &l.hash)?;
            }
        }
        map.serialize_entry("data", &e.data)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::Subject;

    #[test]
    fn a_subjects_key_is_its_written_form() {
        let id = Uuid::from_u128(0x0193_a3c0_0000_7000_8000_00ab_cdef_0123);
        let written = "0193a3c0-0000-7000-8000-00abcdef0123";
        for (subject, expected) in [
            (
                Subject::Partnership("stoke".into()),
                "partnership/stoke".to_owned(),
            ),
            (Subject::Employer(id), format!("employer/{written}")),
            (Subject::Person(id), format!("person/{written}")),
            (Subject::Rotation(id), format!("rotation/{written}")),
        ] {
            assert_eq!(subject.key(), expected);
            assert_eq!(subject.to_string(), expected);
            assert_eq!(Subject::parse(&expected).ok(), Some(subject));
        }
    }
}
