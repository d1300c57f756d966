//! The vocabulary seen from outside: what parses, what is refused and with
//! which message, upcasting, and the committed JSON Schemas.

use rotation_events::{CommittedEvent, Envelope, EventData, EventType, TypedEvent, schema};
use serde_json::{Value, json};

fn event(event_type: &str, subject: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": "0193a3c0-0000-7000-8000-000000000001",
        "source": "urn:service:stoke-jobcentre",
        "type": event_type,
        "subject": subject,
        "time": "2026-03-02T09:30:00Z",
        "partnership": "stoke",
        "data": data,
    })
}

const PERSON: &str = "person/0193a3c0-0000-7000-8000-0000000000aa";
const ROTATION: &str = "rotation/0193a3c0-0000-7000-8000-0000000000bb";

/// Parses `value` and returns the refusal message, or "ok".
fn check(value: Value, expected: &str) {
    let got = match Envelope::from_value(value) {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.0,
    };
    assert!(
        got.contains(expected),
        "expected a message containing {expected:?}, got {got:?}"
    );
}

#[test]
fn well_formed_events_parse() {
    check(
        event(
            "jobrotation.jobseeker.referred",
            PERSON,
            json!({"referred_by": "jobcentre"}),
        ),
        "ok",
    );
    check(
        event(
            "jobrotation.rotation.release_started",
            ROTATION,
            json!({
                "release_id": "0193a3c0-0000-7000-8000-0000000000cc",
                "employee": "0193a3c0-0000-7000-8000-0000000000dd",
                "course": {"title": "Level 3 Diploma in Adult Care", "provider": "Stoke College", "rqf_level": 3, "hours_per_week": 7.5},
                "planned_end": "2026-08-30"
            }),
        ),
        "ok",
    );
    check(
        event("jobrotation.rotation.closed", ROTATION, json!({})),
        "ok",
    );
}

#[test]
fn malformed_events_are_refused_with_the_field_named() {
    check(json!([1, 2]), "a CloudEvent is a JSON object");
    let mut missing_id = event(
        "jobrotation.jobseeker.referred",
        PERSON,
        json!({"referred_by": "jobcentre"}),
    );
    missing_id.as_object_mut().unwrap().remove("id");
    check(missing_id, "missing field `id`");
    check(
        event("jobrotation.nothing.happened", PERSON, json!({})),
        "type: unknown event type",
    );
    check(
        event(
            "jobrotation.jobseeker.referred",
            ROTATION,
            json!({"referred_by": "jobcentre"}),
        ),
        "subject:",
    );
    check(
        event(
            "jobrotation.jobseeker.referred",
            PERSON,
            json!({"referred_by": "friend"}),
        ),
        "data.referred_by: unknown variant `friend`",
    );
    check(
        event(
            "jobrotation.jobseeker.referred",
            PERSON,
            json!({"referred_by": "self", "extra": 1}),
        ),
        "data.extra: unknown field `extra`",
    );
    check(
        event(
            "jobrotation.rotation.agreed",
            ROTATION,
            json!({"employer": "0193a3c0-0000-7000-8000-0000000000ee", "planned_start": "2026-05-01", "planned_end": "2026-04-01"}),
        ),
        "data.planned_end: lies before data.planned_start",
    );
    check(
        event(
            "jobrotation.jobseeker.mentoring_session",
            PERSON,
            json!({"minutes": "sixty", "mentor": "employer"}),
        ),
        "data.minutes: invalid type",
    );
    let mut with_position = event(
        "jobrotation.jobseeker.referred",
        PERSON,
        json!({"referred_by": "jobcentre"}),
    );
    with_position["position"] = json!(3);
    check(with_position, "position: set by the ledger");
    let mut bad_slug = event(
        "jobrotation.jobseeker.referred",
        PERSON,
        json!({"referred_by": "jobcentre"}),
    );
    bad_slug["partnership"] = json!("Stoke On Trent");
    check(
        bad_slug,
        "partnership: `Stoke On Trent` is not a partnership slug",
    );
    let mut bad_time = event(
        "jobrotation.jobseeker.referred",
        PERSON,
        json!({"referred_by": "jobcentre"}),
    );
    bad_time["time"] = json!("yesterday");
    check(bad_time, "time: `yesterday` is not RFC 3339");
    check(
        event(
            "jobrotation.participant.registered",
            PERSON,
            json!({"role": "jobseeker"}),
        ),
        "data.unemployed_since: required for jobseekers",
    );
    let good = event(
        "jobrotation.jobseeker.referred",
        PERSON,
        json!({"referred_by": "jobcentre"}),
    );
    let trailing = format!("{good} and more");
    for (bytes, expected) in [
        (&b"{not json"[..], "not JSON"),
        (b"\"an event\"", "a CloudEvent is a JSON object"),
        (trailing.as_bytes(), "not JSON"),
    ] {
        let message = Envelope::from_json(bytes).unwrap_err().0;
        assert!(message.starts_with(expected), "{message}");
    }
    // Read from bytes or from a tree, an event is the same, and so is its
    // typed data.
    let from_bytes = Envelope::from_json_typed(good.to_string().as_bytes()).unwrap();
    assert_eq!(from_bytes, Envelope::from_value_typed(good).unwrap());
}

#[test]
fn time_more_than_a_day_ahead_is_refused() {
    let envelope = Envelope::from_value(event(
        "jobrotation.jobseeker.referred",
        PERSON,
        json!({"referred_by": "jobcentre"}),
    ))
    .unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    assert!(
        envelope
            .check_time(now)
            .unwrap_err()
            .0
            .contains("more than 24 h in the future")
    );
    let later = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .to_utc();
    assert!(envelope.check_time(later).is_ok());
}

/// A `substitution_started` of version 1, which named one `release_id`.
fn substitution_started_v1() -> Value {
    event(
        "jobrotation.rotation.substitution_started",
        ROTATION,
        json!({
            "substitution_id": "0193a3c0-0000-7000-8000-000000000101",
            "substitute": "0193a3c0-0000-7000-8000-000000000102",
            "release_id": "0193a3c0-0000-7000-8000-000000000103",
            "hours_per_week": 37.5,
            "planned_end": "2026-06-01"
        }),
    )
}

#[test]
fn substitution_started_version_1_is_upcast_to_covers() {
    let old = substitution_started_v1();
    let envelope = Envelope::from_value(old.clone()).unwrap();
    // The stored data stays as it was sent; the typed view is the current shape.
    assert_eq!(envelope.data, old["data"]);
    let EventData::SubstitutionStarted(data) = envelope.data().unwrap() else {
        panic!("wrong variant")
    };
    assert_eq!(
        data.covers,
        vec![
            "0193a3c0-0000-7000-8000-000000000103"
                .parse::<uuid::Uuid>()
                .unwrap()
        ]
    );
}

#[test]
fn committed_events_round_trip() {
    let mut value = event(
        "jobrotation.jobseeker.referred",
        PERSON,
        json!({"referred_by": "jobcentre"}),
    );
    value["position"] = json!(1);
    value["streamversion"] = json!(2);
    value["recordedtime"] = json!("2026-03-02T09:30:01Z");
    value["prevhash"] = json!("00".repeat(32));
    value["hash"] = json!("ab".repeat(32));
    let committed = CommittedEvent::from_json(value.to_string().as_bytes()).unwrap();
    assert_eq!(committed.ledger.position, 1);
    let back: Value = serde_json::from_slice(&committed.to_json()).unwrap();
    assert_eq!(back, value);
}

#[test]
fn every_type_round_trips_its_name() {
    for t in EventType::ALL {
        assert_eq!(EventType::parse(t.as_str()), Some(*t));
    }
}

/// The schemas in `events/schema/` are generated; regenerate them with
/// `UPDATE_SCHEMAS=1 cargo test -p rotation-events --test vocabulary`.
#[test]
fn committed_schemas_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in schema::all() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(&name);
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas {stale:?}: run UPDATE_SCHEMAS=1 cargo test -p rotation-events --test vocabulary"
    );
}

/// `TypedEvent::from_json` reads data without a JSON tree; it must give what the
/// tree gives, upcasting included.
#[test]
fn typed_decoding_agrees_with_decoding_the_tree() {
    let commit = |mut value: Value| {
        value["position"] = json!(7);
        value["streamversion"] = json!(2);
        value["recordedtime"] = json!("2026-03-02T09:30:01Z");
        value["prevhash"] = json!("00".repeat(32));
        value["hash"] = json!("ab".repeat(32));
        value.to_string()
    };
    let samples = [
        event(
            "jobrotation.jobseeker.referred",
            PERSON,
            json!({"referred_by": "jobcentre"}),
        ),
        substitution_started_v1(),
        event(
            "jobrotation.rotation.substitution_started",
            ROTATION,
            json!({
                "substitution_id": "0193a3c0-0000-7000-8000-000000000101",
                "substitute": "0193a3c0-0000-7000-8000-000000000102",
                "covers": ["0193a3c0-0000-7000-8000-000000000103"],
                "hours_per_week": 37.5,
                "planned_end": "2026-06-01"
            }),
        ),
        event(
            "jobrotation.jobseeker.referred",
            PERSON,
            json!({"referred_by": "not a referrer"}),
        ),
    ];
    for sample in samples {
        let text = commit(sample);
        let full = CommittedEvent::from_json(text.as_bytes()).unwrap();
        let TypedEvent { event: lean, data } = TypedEvent::from_json(text.as_bytes()).unwrap();
        match (data, full.envelope.data()) {
            (Ok(lean), Ok(full)) => assert_eq!(lean, full),
            // Text decoding adds where in the text the fault lies.
            (Err(lean), Err(full)) => assert!(lean.0.starts_with(&full.0), "{lean} / {full}"),
            (lean, full) => panic!("{text}: {lean:?} / {full:?}"),
        }
        assert_eq!(lean.ledger, full.ledger);
        assert_eq!(lean.envelope.id, full.envelope.id);
        assert_eq!(lean.envelope.subject, full.envelope.subject);
        assert_eq!(lean.envelope.data, Value::Null);
    }
}

/// A `participant.registered` of a jobseeker with the given profile fields.
fn registration(profile_fields: Value) -> Value {
    let mut data = json!({"role": "jobseeker", "unemployed_since": "2025-01-06"});
    data.as_object_mut()
        .unwrap()
        .extend(profile_fields.as_object().unwrap().clone());
    event("jobrotation.participant.registered", PERSON, data)
}

fn sealed() -> Value {
    json!({
        "alg": "XChaCha20-Poly1305",
        "kid": "q1w2e3r4t5y6u7i8o9p0aa",
        "nonce": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX",
        "ciphertext": "c2VhbGVkLWJ5dGVz"
    })
}

#[test]
fn a_registration_carries_a_profile_in_clear_or_sealed_never_both() {
    check(
        registration(json!({"profile": {"birth_year": 1990, "sex": "female"}})),
        "ok",
    );
    check(registration(json!({"sealed_profile": sealed()})), "ok");
    check(registration(json!({})), "ok");
    check(
        registration(json!({"profile": {"sex": "male"}, "sealed_profile": sealed()})),
        "data.sealed_profile: not allowed beside data.profile",
    );
}

#[test]
fn a_sealed_profile_must_have_its_shape() {
    let mut padded = sealed();
    padded["nonce"] = json!("c2VhbGVk==");
    check(
        registration(json!({"sealed_profile": padded})),
        "data.sealed_profile.nonce: not base64url without padding",
    );
    let mut no_kid = sealed();
    no_kid["kid"] = json!("");
    check(
        registration(json!({"sealed_profile": no_kid})),
        "data.sealed_profile.kid: must not be empty",
    );
    let mut extra = sealed();
    extra["key"] = json!("AAAA");
    check(
        registration(json!({"sealed_profile": extra})),
        "data.sealed_profile.key: unknown field `key`",
    );
    let mut missing = sealed();
    missing.as_object_mut().unwrap().remove("ciphertext");
    check(
        registration(json!({"sealed_profile": missing})),
        "missing field `ciphertext`",
    );
}

/// Committed events of either form read back, typed and as a tree alike:
/// those committed before sealing keep their clear profile.
#[test]
fn committed_registrations_read_in_either_form() {
    for fields in [
        json!({"profile": {"birth_year": 1990, "lone_parent": true}}),
        json!({"sealed_profile": sealed()}),
    ] {
        let mut value = registration(fields.clone());
        value["position"] = json!(1);
        value["streamversion"] = json!(1);
        value["recordedtime"] = json!("2026-03-02T09:30:01Z");
        value["prevhash"] = json!("00".repeat(32));
        value["hash"] = json!("ab".repeat(32));
        let text = value.to_string();
        let full = CommittedEvent::from_json(text.as_bytes()).unwrap();
        let TypedEvent { data, .. } = TypedEvent::from_json(text.as_bytes()).unwrap();
        let EventData::ParticipantRegistered(typed) = data.unwrap() else {
            panic!("wrong variant")
        };
        assert!(typed.has_profile());
        assert_eq!(
            EventData::ParticipantRegistered(typed.clone()),
            full.envelope.data().unwrap()
        );
        let back = serde_json::to_value(&typed).unwrap();
        for key in fields.as_object().unwrap().keys() {
            assert_eq!(back[key], fields[key], "{key}");
        }
        assert_eq!(
            serde_json::from_slice::<Value>(&full.to_json()).unwrap(),
            value
        );
    }
}

#[test]
fn the_registration_schema_names_the_sealed_form() {
    let schema = serde_json::to_value(EventType::ParticipantRegistered.data_schema()).unwrap();
    assert!(schema["properties"]["sealed_profile"].is_object());
    let sealed = &schema["$defs"]["SealedProfile"];
    assert_eq!(
        sealed["required"],
        json!(["alg", "kid", "nonce", "ciphertext"])
    );
}
