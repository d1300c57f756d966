//! The decoders never panic: the submission decoder (one event or a batch),
//! the stored-event decoder and the configuration parser, over arbitrary
//! bytes, over damaged copies of good input, and over events built from the
//! catalogue's own schemas, mostly well formed and sometimes not.
//!
//! The coverage-guided fuzz targets in `fuzz/` drive the same decoders;
//! these property tests keep them honest on every test run.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use rotation_events::{CommittedEvent, Envelope, EventType, TypedEvent};
use rotation_ledger::auth::Caller;
use rotation_ledger::config::Config;
use rotation_ledger::ledger::Submission;
use serde_json::{Map, Value, json};

/// Runs every decoder on `bytes`; any panic fails the test.
fn decode_everything(bytes: &[u8]) {
    let _ = Submission::from_json(bytes.to_vec(), "proptest", Caller::operator());
    if let Ok((envelope, _)) = Envelope::from_json_typed(bytes) {
        let _ = envelope.data();
    }
    if let Ok(event) = CommittedEvent::from_json(bytes) {
        let _ = event.envelope.data();
    }
    let _ = TypedEvent::from_json(bytes);
    let _ = Config::parse(&String::from_utf8_lossy(bytes), "proptest.toml");
}

/// Values that fit `schema` (a JSON Schema as the catalogue writes them),
/// now and then with a field missing, added or of the wrong type.
fn fitting(schema: &Value, defs: &Value, depth: u32) -> BoxedStrategy<Value> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/$defs/");
        return fitting(&defs[name], defs, depth);
    }
    let fits = fitting_exactly(schema, defs, depth);
    prop_oneof![9 => fits, 1 => any_json(1)].boxed()
}

fn fitting_exactly(schema: &Value, defs: &Value, depth: u32) -> BoxedStrategy<Value> {
    if let Some(values) = schema["enum"].as_array() {
        return proptest::sample::select(values.clone()).boxed();
    }
    if let Some(value) = schema.get("const") {
        return Just(value.clone()).boxed();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let options: Vec<_> = options
                .iter()
                .map(|o| fitting(o, defs, depth + 1))
                .collect();
            return proptest::strategy::Union::new(options).boxed();
        }
    }
    if let Some(types) = schema["type"].as_array() {
        let options: Vec<_> = types
            .iter()
            .map(|t| {
                let mut one = schema.clone();
                one["type"] = t.clone();
                fitting_exactly(&one, defs, depth + 1)
            })
            .collect();
        return proptest::strategy::Union::new(options).boxed();
    }
    match schema["type"].as_str().unwrap_or("") {
        "object" => object(schema, defs, depth),
        "array" if depth < 4 => {
            proptest::collection::vec(fitting(&schema["items"], defs, depth + 1), 0..3)
                .prop_map(Value::Array)
                .boxed()
        }
        "string" => string(schema["format"].as_str().unwrap_or("")),
        "integer" => {
            let min = schema["minimum"].as_i64().unwrap_or(-1_000);
            let max = schema["maximum"].as_i64().unwrap_or(100_000);
            prop_oneof![
                8 => (min..=max).prop_map(Value::from),
                1 => any::<i64>().prop_map(Value::from),
                1 => Just(json!(1e300)),
            ]
            .boxed()
        }
        "number" => prop_oneof![
            8 => (-10.0_f64..200.0).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => Just(json!(1e300)),
        ]
        .boxed(),
        "boolean" => any::<bool>().prop_map(Value::from).boxed(),
        "null" => Just(Value::Null).boxed(),
        _ => any_json(1),
    }
}

/// An object of the schema's properties: the required ones nearly always,
/// the others half the time, and now and then one the schema does not know.
fn object(schema: &Value, defs: &Value, depth: u32) -> BoxedStrategy<Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| {
                    let present = if required.contains(&name.as_str()) {
                        0.95
                    } else {
                        0.5
                    };
                    let name = name.clone();
                    proptest::option::weighted(
                        present,
                        fitting(property, defs, depth + 1).prop_map(move |v| (name.clone(), v)),
                    )
                    .boxed()
                })
                .collect()
        })
        .unwrap_or_default();
    let stranger = proptest::option::weighted(0.05, ("[a-z_]{1,8}", any_json(0)));
    (fields, stranger)
        .prop_map(|(fields, stranger)| {
            let mut object: Map<String, Value> = fields.into_iter().flatten().collect();
            if let Some((name, value)) = stranger {
                object.insert(name, value);
            }
            Value::Object(object)
        })
        .boxed()
}

fn string(format: &str) -> BoxedStrategy<Value> {
    let fits = match format {
        "uuid" => any::<u128>()
            .prop_map(|n| uuid::Uuid::from_u128(n).to_string())
            .boxed(),
        "date" => (2000..2040_i32, 1..=12_u32, 1..=31_u32)
            .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
            .boxed(),
        "date-time" => (2000..2040_i32, 1..=12_u32, 1..=28_u32, 0..24_u32)
            .prop_map(|(y, m, d, h)| format!("{y:04}-{m:02}-{d:02}T{h:02}:00:00Z"))
            .boxed(),
        _ => "[a-zA-Z0-9 _-]{0,16}".boxed(),
    };
    prop_oneof![9 => fits, 1 => "\\PC{0,8}".boxed()]
        .prop_map(Value::from)
        .boxed()
}

/// Any JSON, shallow.
fn any_json(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(depth, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A CloudEvent of a catalogue type, its data built from that type's schema.
fn catalogue_event() -> BoxedStrategy<Value> {
    let types: Vec<BoxedStrategy<Value>> = EventType::ALL
        .iter()
        .map(|event_type| {
            let schema = serde_json::to_value(event_type.data_schema()).expect("a schema");
            let defs = schema["$defs"].clone();
            let name = event_type.as_str();
            (fitting_exactly(&schema, &defs, 0), subject(), any::<u128>())
                .prop_map(move |(data, subject, id)| {
                    json!({
                        "specversion": "1.0",
                        "id": uuid::Uuid::from_u128(id).to_string(),
                        "source": "urn:service:proptest",
                        "type": name,
                        "subject": subject,
                        "time": "2025-03-03T09:00:00Z",
                        "partnership": "stoke",
                        "data": data,
                    })
                })
                .boxed()
        })
        .collect();
    proptest::strategy::Union::new(types).boxed()
}

fn subject() -> impl Strategy<Value = String> {
    const KINDS: &[&str] = &["partnership", "person", "employer", "rotation", "nonsense"];
    (proptest::sample::select(KINDS), any::<u128>()).prop_map(|(kind, n)| {
        if kind == "partnership" {
            "partnership/stoke".to_owned()
        } else {
            format!("{kind}/{}", uuid::Uuid::from_u128(n))
        }
    })
}

/// The event as the ledger would store it, with its ledger attributes.
fn committed(mut event: Value, position: u64) -> Value {
    event["position"] = json!(position);
    event["streamversion"] = json!(1);
    event["recordedtime"] = json!("2025-03-03T09:00:01Z");
    event["prevhash"] = json!("0".repeat(64));
    event["hash"] = json!("a".repeat(64));
    event
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

#[test]
fn arbitrary_bytes_never_panic_a_decoder() {
    runner(512)
        .run(&proptest::collection::vec(any::<u8>(), 0..600), |bytes| {
            decode_everything(&bytes);
            Ok(())
        })
        .unwrap();
}

/// Events built from the catalogue reach deep into the decoders: some are
/// accepted as envelopes, some refused, and none panics, alone, in a
/// batch, as stored, or with a few bytes damaged.
#[test]
fn catalogue_events_never_panic_a_decoder_and_reach_both_outcomes() {
    let (mut parsed, mut refused) = (0_u32, 0_u32);
    let strategy = (
        proptest::collection::vec(catalogue_event(), 1..4),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    );
    let mut runner = runner(256);
    for _ in 0..256 {
        let (events, damage) = strategy.new_tree(&mut runner).expect("a case").current();
        let one = events[0].to_string().into_bytes();
        match Envelope::from_json_typed(&one) {
            Ok(_) => parsed += 1,
            Err(_) => refused += 1,
        }
        decode_everything(&one);
        decode_everything(Value::Array(events.clone()).to_string().as_bytes());
        decode_everything(committed(events[0].clone(), 7).to_string().as_bytes());
        let mut damaged = one;
        for (at, byte) in damage {
            let at = at.index(damaged.len());
            damaged[at] = byte;
        }
        decode_everything(&damaged);
    }
    assert!(parsed > 10, "only {parsed} of 256 events parsed");
    assert!(refused > 10, "only {refused} of 256 events were refused");
}

/// Configurations built from the shape of a real one, with values of any
/// kind, and damaged copies of it.
#[test]
fn arbitrary_configurations_never_panic_the_parser() {
    let good = format!(
        "[[tokens]]\nsha256 = \"{}\"\nrole = \"board\"\npartnerships = [\"stoke\"]\n\n[disclosure]\nthreshold = 10\nrounding = 5\n\n[partnerships.stoke]\nmin_unemployed_weeks = 26\nmax_substitution_weeks = 26\n\n[limits]\nrejected_bytes_per_hour = 1000\nmax_connections = 8\n",
        "0".repeat(64)
    );
    Config::parse(&good, "good.toml").expect("the model configuration parses");
    let strategy = (
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        "(threshold|rounding|max_connections|role|min_unemployed_weeks) = (-?[0-9]{1,20}|\"[a-z*]{0,6}\"|\\[\\]|1e99|true)",
    );
    runner(256)
        .run(&strategy, |(damage, line)| {
            let mut bytes = good.clone().into_bytes();
            for (at, byte) in damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            decode_everything(&bytes);
            let spliced = good.replace("threshold = 10", &line);
            let _ = Config::parse(&spliced, "spliced.toml");
            Ok(())
        })
        .unwrap();
}
