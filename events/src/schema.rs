//! JSON Schemas of the envelope and of every type's data, generated from
//! the Rust types so that they cannot drift apart. The committed copies in
//! `events/schema/` are checked against these by a test.

use schemars::{JsonSchema, Schema};

use crate::EventType;

/// The CloudEvents envelope as a publisher sends it; documentation only.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct CloudEvent {
    /// Always "1.0".
    specversion: String,
    /// UUID chosen by the publisher; the idempotency key.
    id: uuid::Uuid,
    /// URI of the publishing service, e.g. urn:service:stoke-jobcentre.
    source: String,
    /// One of the catalogue's types, e.g. jobrotation.rotation.release_started.
    #[serde(rename = "type")]
    event_type: String,
    /// partnership/<slug>, employer/<uuid>, person/<uuid> or rotation/<uuid>.
    subject: String,
    /// RFC 3339 effective time; at most 24 h in the future.
    time: chrono::DateTime<chrono::FixedOffset>,
    /// The partnership slug, [a-z0-9-]{1,40}.
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,40}$"))]
    partnership: String,
    /// application/json if present.
    datacontenttype: Option<String>,
    /// The stream version the publisher expects (0: the stream must not exist).
    expectedversion: Option<u64>,
    correlationid: Option<String>,
    causationid: Option<String>,
    /// The type's data; see the schema for the type.
    data: serde_json::Map<String, serde_json::Value>,
}

/// Every schema with the file name it is committed under.
pub fn all() -> Vec<(String, Schema)> {
    let mut out = vec![(
        "cloudevent.json".to_owned(),
        schemars::schema_for!(CloudEvent),
    )];
    for t in EventType::ALL {
        out.push((format!("{}.json", t.as_str()), t.data_schema()));
    }
    out
}
